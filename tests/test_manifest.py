"""The manifest format: one frame per line, strict validation, readable errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rotoscope import manifest as manifests
from rotoscope.errors import RotoscopeError
from rotoscope.manifest import Frame, Manifest


def sample_manifest(count: int = 4) -> Manifest:
    return Manifest(
        kind="source",
        name="shot",
        video={
            "path": "videos/shot.mp4",
            "md5": "0" * 32,
            "width": 64,
            "height": 36,
            "time_base": "1/12800",
            "avg_rate": "25/1",
            "duration": 0.16,
            "codec": "h264",
            "pix_fmt": "yuv420p",
            "rotation": 0,
            "audio": None,
        },
        extract={"fps": "source", "max_side": None, "format": "jpg", "quality": 95},
        frames_dir="frames/shot/source",
        width=64,
        height=36,
        time_base="1/12800",
        end_pts=count * 512,
        frames=[Frame(i=k, pts=k * 512, md5=f"{k:032x}", bytes=1000 + k) for k in range(count)],
    )


def test_one_frame_per_line_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "source.json"
    manifests.save(sample_manifest(), path)
    lines = path.read_text().splitlines()
    frame_lines = [line for line in lines if line.lstrip().startswith('{"i": ')]
    assert len(frame_lines) == 4
    assert frame_lines[2].strip().rstrip(",") == json.dumps(
        {"i": 2, "pts": 1024, "md5": f"{2:032x}", "bytes": 1002}, separators=(", ", ": ")
    )
    assert manifests.load(path) == sample_manifest()
    assert json.loads(path.read_text())["schema"] == "rotoscope.manifest/1"


def test_duration_and_frame_paths() -> None:
    manifest = sample_manifest()
    assert manifest.duration == pytest.approx(4 * 512 / 12800)
    assert manifest.frame_path(Path("/s"), manifest.frames[3]) == Path("/s/frames/shot/source/000003.jpg")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["frames"][1].update(i=7), "frames/1: index is 7"),
        (lambda d: d["frames"][2].update(pts=0), "frames/2: pts 0 does not increase"),
        (lambda d: d.update(end_pts=0), "end_pts must come after"),
        (lambda d: d["frames"].clear(), "frames"),
        (lambda d: d.update(kind="poster"), "at kind"),
        (lambda d: d["extract"].update(format="gif"), "extract/format"),
        (lambda d: d.update(extra=1), "Additional properties"),
        (lambda d: d.update(cuts=[3, 2]), "cuts must be increasing frame indices below 4, not [3, 2]"),
        (lambda d: d.update(cuts=[4]), "cuts must be increasing frame indices below 4"),
        (lambda d: d.update(cuts=[0]), "at cuts/0"),
    ],
)
def test_invalid_documents_are_refused_with_the_place(tmp_path: Path, edit, message: str) -> None:
    document = json.loads(sample_manifest().to_json())
    edit(document)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(RotoscopeError) as raised:
        manifests.load(path)
    assert message in str(raised.value)
    assert str(raised.value).startswith(str(path))


def test_save_refuses_to_write_an_invalid_manifest(tmp_path: Path) -> None:
    broken = sample_manifest()
    broken.frames[1] = Frame(i=1, pts=0, md5="0" * 32, bytes=1)
    path = tmp_path / "source.json"
    with pytest.raises(RotoscopeError):
        manifests.save(broken, path)
    assert not path.exists()
