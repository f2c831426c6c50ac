"""The command line as a user meets it: init, show, and the demo of the quick start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import dvc, git, rotoscope

from rotoscope.media.synth import constant_rate_clip


def test_init_twice_is_safe_and_never_overwrites(tmp_path: Path) -> None:
    first = rotoscope("init", "studio", "--remote", str(tmp_path / "remote"), cwd=tmp_path)
    assert "created params.yaml" in first.stderr
    root = tmp_path / "studio"
    for expected in (
        "dvc.yaml",
        "params.yaml",
        ".gitignore",
        "schemas/manifest.schema.json",
        ".dvc/config",
        ".git",
    ):
        assert (root / expected).exists(), expected
    assert str(tmp_path / "remote") in dvc("remote", "list", cwd=root).stdout

    (root / "params.yaml").write_text((root / "params.yaml").read_text() + "# my note\n")
    (root / ".gitignore").write_text("/scratch/\n")
    second = rotoscope("init", "studio", cwd=tmp_path)
    assert "params.yaml" not in second.stderr
    assert (root / "params.yaml").read_text().endswith("# my note\n")
    assert (root / ".gitignore").read_text().startswith("/scratch/\n")
    assert "/frames/" in (root / ".gitignore").read_text()
    assert str(tmp_path / "remote") in dvc("remote", "list", cwd=root).stdout


def test_default_remote_is_outside_the_work_tree(tmp_path: Path) -> None:
    rotoscope("init", "studio", cwd=tmp_path)
    listed = dvc("remote", "list", cwd=tmp_path / "studio").stdout
    assert str(tmp_path / "studio-dvc-remote") in listed
    assert (tmp_path / "studio-dvc-remote").is_dir()


def test_show_summarises_a_manifest(tmp_path: Path) -> None:
    rotoscope("init", "studio", cwd=tmp_path)
    root = tmp_path / "studio"
    clip = constant_rate_clip(tmp_path / "c.mp4", size=(160, 90), fps=25, seconds=0.8)
    rotoscope("add", str(clip), "--name", "shot", cwd=root)
    rotoscope("split", cwd=root)
    shown = rotoscope("show", "manifests/shot/source.json", cwd=root).stdout
    assert "20 x 160x90 jpg" in shown
    assert "duration   0.800 s" in shown
    assert "constant, every 40.000 ms" in shown
    assert "aac, 44100 Hz, 2 ch" in shown
    assert "20/20 in the work tree" in shown


def test_version() -> None:
    assert rotoscope("--version", cwd=Path.cwd()).stdout.startswith("rotoscope ")


@pytest.mark.slow
def test_demo_makes_a_studio_and_a_render(tmp_path: Path) -> None:
    result = rotoscope("demo", "demo", cwd=tmp_path)
    root = tmp_path / "demo"
    render = root / "renders" / "sample" / "source.mp4"
    assert f"render: {render}" in result.stderr
    assert render.stat().st_size > 10_000
    painted = root / "renders" / "sample" / "painted.mp4"
    assert f"stylized render: {painted}" in result.stderr
    assert painted.stat().st_size > 10_000 and painted.read_bytes() != render.read_bytes()
    styled = json.loads((root / "manifests/sample/painted.json").read_text())
    assert styled["kind"] == "stylized" and styled["lineage"]["filter"]["name"] == "demo-painting"
    assert styled["lineage"]["render"]["temporal"] == "flow"
    flicker = json.loads((root / "quality/sample/painted.json").read_text())
    assert flicker["warping_error"] < 0.5 * flicker["per_frame_warping_error"]
    assert (root / "quality/sample/painted-side-by-side.mp4").stat().st_size > 10_000
    assert "Running stage" not in dvc("repro", cwd=root).stdout
    again = rotoscope("demo", "demo", cwd=tmp_path)  # run again in place: nothing to redo
    assert f"stylized render: {painted}" in again.stderr and "Running stage" not in again.stdout
    assert "dvc.lock" in git("status", "--short", cwd=root).stdout
