"""The library API: the studio's verbs with typed arguments, progress as events, the error
taxonomy; the CLI as a thin face over them (run in-process with Typer's runner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rotoscope.cli import app
from rotoscope.errors import ParamsError, RotoscopeError
from rotoscope.progress import ProgressEvent
from rotoscope.studio import Studio
from rotoscope.verbs import FrameSelection, RenderSpec


@pytest.fixture(scope="module")
def studio(history_studio: Path) -> Studio:
    return Studio(history_studio)


def test_a_verb_reports_progress_as_events(studio: Studio) -> None:
    events: list[ProgressEvent] = []
    (result,) = studio.stylize(["look"], progress=events.append)
    assert result.frames == 10 and result.reused == 10
    assert events[0].task == "stylize look" and events[0].done == 0 and events[0].total == 10
    assert events[-1].finished and events[-1].done == 10 and events[-1].seconds_left == 0
    assert [e.done for e in events] == sorted(e.done for e in events)


def test_progress_of_dvc_stages_reaches_the_caller(studio: Studio) -> None:
    """`dvc repro` runs the stage commands as processes; their progress comes back as events."""
    studio.render_new("faint", RenderSpec("clip", "swirls", strength=0.2))
    events: list[ProgressEvent] = []
    run = studio.repro(["stylize@faint"], progress=events.append)
    assert run.command == "dvc repro stylize@faint"
    assert any(e.task == "stylize faint" and e.finished and e.done == 10 for e in events), events
    assert (
        json.loads(studio.manifest_path("clip", "faint").read_text())["lineage"]["render"]["strength"] == 0.2
    )


def test_verbs_take_typed_records_and_raise_the_taxonomy(studio: Studio) -> None:
    job = studio.render_new("bold", RenderSpec("clip", "swirls", strength=1.0, brush=2.0))
    assert job.filter == "swirls" and job.brush == 2.0
    with pytest.raises(ParamsError, match="no filter named 'nope'"):
        studio.render_new("bad", RenderSpec("clip", "nope"))
    with pytest.raises(RotoscopeError, match="exactly one of"):
        studio.fetch(studio.manifest_path("clip"), FrameSelection())
    (card,) = [card for card in studio.filters() if card.name == "swirls"]
    assert card.provenance.artist == "The Tests"
    assert studio.diff("v1", "lighter").params["renders.look.strength"] == (0.9, 0.4)
    assert studio.verify([studio.manifest_path("clip", "look")]).ok


def test_cli_commands_are_thin_faces_in_process(history_studio: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["filter", "list", "-C", str(history_studio)])
    assert listed.exit_code == 0 and "swirls" in listed.output and "The Tests" in listed.output
    shown = runner.invoke(app, ["filter", "show", "swirls", "-C", str(history_studio)])
    assert shown.exit_code == 0 and "CC BY-NC 4.0" in shown.output
    made = runner.invoke(
        app, ["render", "new", "cli-made", "--video", "clip", "--filter", "swirls", "-C", str(history_studio)]
    )
    assert made.exit_code == 0, made.output
    assert Studio(history_studio).render_job("cli-made").strength == 1.0
    refused = runner.invoke(
        app, ["render", "new", "x", "--video", "clip", "--filter", "none", "-C", str(history_studio)]
    )
    assert isinstance(refused.exception, ParamsError)  # main() turns it into one line; see test_usability


def test_the_python_api_example_of_the_readme_runs(history_studio: Path, tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = readme.split("<!-- python-api-example -->")[1].split("```python")[1].split("```")[0]
    example = example.replace('Studio.find("my-studio")', f"Studio.find(Path({str(history_studio)!r}))")
    namespace: dict[str, object] = {"Path": Path}
    exec(compile(example, "README.md", "exec"), namespace)  # the README's own code
    assert namespace["events"], "the example's progress callback saw no events"
