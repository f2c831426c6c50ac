"""`rotoscope estimate`: the paintings a render still needs, and their time and price from the
studio's own ledger of paintings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ledger, rotoscope, write_source
from PIL import Image

from rotoscope.compute import ComputeSettings
from rotoscope.estimate import Work, place, price_per_hour
from rotoscope.executors import LocalExecutor
from rotoscope.filters import runtime
from rotoscope.media.synth import painting
from rotoscope.pipeline import stylize
from rotoscope.studio import Studio


def forget_frames(studio: Studio) -> None:
    shutil.rmtree(studio.root / ".rotoscope" / "stylized", ignore_errors=True)


def test_an_estimate_is_the_ledger_s_rate_over_the_paintings_left(split_studio: Studio) -> None:
    (before,) = split_studio.estimate(["look"])
    assert (before.frames, before.to_paint) == (24, 24)
    here, cluster = before.placements
    assert here.seconds is None and cluster.seconds is None  # nothing painted here yet: no guess
    stylize(split_studio, "look", LocalExecutor())
    lines = ledger(split_studio)
    assert len(lines) == 24 and {line["hardware"] for line in lines} == {runtime.hardware_kind()}
    assert all(line["units"] == pytest.approx(192 * 128 / 1e6) for line in lines)  # megapixels painted
    (done,) = split_studio.estimate(["look"])
    assert done.to_paint == 0 and done.placements[0].seconds == 0
    forget_frames(split_studio)  # the paintings gone, the ledger kept: all 24 again
    (again,) = split_studio.estimate(["look"], workers=4)
    painted = sum(float(line["seconds"]) for line in lines)
    assert again.to_paint == 24 and again.placements[0].seconds == pytest.approx(painted)
    cores = int(runtime.hardware_kind().removeprefix("cpu-"))  # cpu-N: N cores at the cpu price
    assert again.placements[0].dollars == pytest.approx(painted / 3600 * 0.048 * cores)
    assert again.placements[1].workers == 4 and again.placements[1].hardware == "cpu-1"
    assert again.placements[1].seconds is None  # no one-core actor has painted here


def test_a_run_s_log_keeps_its_estimate_beside_its_time(split_studio: Studio) -> None:
    stylize(split_studio, "look", LocalExecutor())
    first = json.loads((split_studio.root / ".rotoscope/logs/stylize-look.json").read_text())["painting"]
    assert first["estimate_s"] is None and first["took_s"] > 0  # nothing to go by the first time
    forget_frames(split_studio)
    stylize(split_studio, "look", LocalExecutor())
    second = json.loads((split_studio.root / ".rotoscope/logs/stylize-look.json").read_text())["painting"]
    painted_first = sum(float(line["seconds"]) for line in ledger(split_studio)[:24])
    assert second["estimate_s"] == pytest.approx(painted_first, rel=1e-3)
    assert second["took_s"] >= sum(float(line["seconds"]) for line in ledger(split_studio)[24:]) * 0.99


def test_an_unsplit_video_counts_every_frame(studio: Studio, tmp_path: Path) -> None:
    root = studio.root
    rotoscope("add", str(write_source(tmp_path / "clip.mp4", frames=12)), "--name", "clip", cwd=root)
    Image.fromarray(painting(64, 64)).save(tmp_path / "style.png")
    style = str(tmp_path / "style.png")
    rotoscope("filter", "new", "swirls", "--style", style, "--kind", "instant", cwd=root)
    rotoscope("render", "new", "look", "--video", "clip", "--filter", "swirls", "--brush", "2", cwd=root)
    (found,) = studio.estimate()
    assert (found.frames, found.to_paint) == (12, 12)
    assert found.work[0].units == pytest.approx(12 * 64 * 48 / 1e6)  # 128x96 painted at half size
    wide = {**os.environ, "COLUMNS": "200"}  # rich wraps its table to the terminal otherwise
    shown = subprocess.run(
        [sys.executable, "-m", "rotoscope", "estimate"], cwd=root, env=wide, capture_output=True, text=True
    ).stdout
    assert "look" in shown and "not measured" in shown and "16 x cpu-1" in shown


def test_prices_per_hardware_kind() -> None:
    prices = ComputeSettings.from_params({"prices": {"cpu-8": 0.2, "gpu": 2.5}}, {}).prices
    assert price_per_hour(prices, "cpu-8") == 0.2  # its own price
    assert price_per_hour(prices, "cpu-4") == pytest.approx(4 * 0.048)  # four cores
    assert price_per_hour(prices, "gpu") == 2.5
    assert price_per_hour({}, "cpu-2") is None
    rates = {("cpu-4", "trained"): type("R", (), {"seconds_per_unit": 0.5})()}
    spread = place([Work("trained", 10, 100.0)], rates, "ray", "cpu-4", 5, prices)  # type: ignore[arg-type]
    assert spread.seconds == pytest.approx(10.0)  # 100 GFLOP at 0.5 s each over 5 workers
    assert spread.dollars == pytest.approx(10 / 3600 * 5 * 4 * 0.048)


def test_logs_are_never_written_through_a_committed_link(split_studio: Studio) -> None:
    """A fork may commit a link where a log goes: the run is logged nowhere, params.yaml is intact."""
    from rotoscope import runlog

    logs = split_studio.root / ".rotoscope" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "runs.jsonl").symlink_to(split_studio.params_path)
    before = split_studio.params_path.read_bytes()
    runlog.record(["stylize", "look"], 0.0, 0, split_studio.root)
    assert split_studio.params_path.read_bytes() == before
