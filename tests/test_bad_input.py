"""Bad input: one line naming the file, a non-zero exit, and nothing half-written left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ffmpeg, rotoscope
from PIL import Image

from rotoscope.media.synth import chord, constant_rate_clip, write_audio
from rotoscope.studio import Studio


def assert_refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"error is not one line: {result.stderr!r}"
    assert lines[0].startswith("rotoscope: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def assert_untouched(studio: Studio) -> None:
    assert studio.videos() == {}
    assert sorted(p.name for p in (studio.root / "videos").iterdir()) == [".gitkeep"]
    assert sorted(p.name for p in (studio.root / "manifests").iterdir()) == [".gitkeep"]
    assert not (studio.root / "frames").exists()


def _text_file(path: Path) -> Path:
    path.write_text("this is not a video\n" * 50)
    return path


def _empty_file(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _moov_last_cut_in_half(path: Path) -> Path:
    clip = constant_rate_clip(path.with_name("whole.mp4"), size=(160, 90), seconds=1.0)
    data = clip.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _faststart(clip: Path, out: Path) -> Path:
    """The same clip with its index (moov) first, as streaming sites and phones write it."""
    ffmpeg("-i", str(clip), "-c", "copy", "-movflags", "+faststart", str(out))
    return out


def _moov_first_cut_in_half(path: Path) -> Path:
    whole = _faststart(
        constant_rate_clip(path.with_name("whole.mp4"), size=(160, 90)),
        path.with_name("whole-faststart.mp4"),
    )
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _audio_only(path: Path) -> Path:
    write_audio(path, chord(1.0))
    return path


def _still_image(path: Path) -> Path:
    Image.new("RGB", (64, 48), (200, 30, 30)).save(path, "PNG")
    return path


@pytest.mark.parametrize(
    ("make", "filename", "reason"),
    [
        (lambda p: p, "missing.mp4", "no such video file"),
        (_empty_file, "empty.mp4", "empty video file"),
        (_text_file, "notes.mp4", "not a video"),
        (_moov_last_cut_in_half, "half.mp4", "not a video"),
        (_audio_only, "sound.m4a", "audio only"),
        (_still_image, "still.mp4", "still"),
        (_moov_first_cut_in_half, "faststart-half.mp4", "truncated"),
    ],
)
def test_add_refuses_what_is_not_a_video(studio: Studio, tmp_path: Path, make, filename, reason) -> None:
    path = make(tmp_path / filename)
    result = rotoscope("add", str(path), cwd=studio.root, check=False)
    assert_refused(result, filename, reason)
    assert_untouched(studio)


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".hidden", "x" * 65])
def test_add_refuses_unsafe_names(studio: Studio, tmp_path: Path, name: str) -> None:
    clip = constant_rate_clip(tmp_path / "clip.mp4", size=(64, 36), seconds=0.2)
    result = rotoscope("add", str(clip), "--name", name, cwd=studio.root, check=False)
    assert_refused(result, name, "invalid video name")
    assert_untouched(studio)
    assert not (studio.root.parent / "escape.mp4").exists()


def test_split_refuses_truncated_video_and_leaves_nothing(studio: Studio, tmp_path: Path) -> None:
    """A video that was whole when added and was cut afterwards: split notices the frames stop."""
    clip = constant_rate_clip(tmp_path / "clip.mp4", size=(160, 90), seconds=2.0)
    faststart = _faststart(clip, tmp_path / "faststart.mp4")
    data = faststart.read_bytes()
    studio.add_video(faststart, "cut")
    (studio.root / "videos" / "cut.mp4").write_bytes(data[: len(data) // 2])

    result = rotoscope("split", "cut", cwd=studio.root, check=False)
    assert_refused(result, "videos/cut.mp4", "truncated")
    assert not studio.manifest_path("cut").exists()
    assert not studio.frames_dir("cut").exists()


def _write_manifest(studio: Studio, tmp_path: Path) -> Path:
    clip = constant_rate_clip(tmp_path / "clip.mp4", size=(64, 36), seconds=0.4)
    studio.add_video(clip, "clip")
    rotoscope("split", "clip", cwd=studio.root)
    return studio.manifest_path("clip")


def test_manifest_edited_into_invalid_json(studio: Studio, tmp_path: Path) -> None:
    path = _write_manifest(studio, tmp_path)
    path.write_text(path.read_text().replace('"kind": "source",', '"kind": "source"', 1))
    for command in (["show", str(path)], ["verify"], ["reassemble", str(path), "-o", "out.mp4"]):
        result = rotoscope(*command, cwd=studio.root, check=False)
        if command[0] == "verify":
            assert result.returncode == 1 and "invalid JSON at line 4" in result.stdout
        else:
            assert_refused(result, "source.json", "invalid JSON at line 4")
    assert not (studio.root / "out.mp4").exists()


def test_manifest_that_violates_the_schema(studio: Studio, tmp_path: Path) -> None:
    path = _write_manifest(studio, tmp_path)
    document = json.loads(path.read_text())
    document["frames"][3]["md5"] = "not-an-md5"
    path.write_text(json.dumps(document))
    result = rotoscope("show", str(path), cwd=studio.root, check=False)
    assert_refused(result, "source.json", "frames/3/md5")


def test_verify_names_a_corrupt_and_a_missing_frame(studio: Studio, tmp_path: Path) -> None:
    path = _write_manifest(studio, tmp_path)
    assert rotoscope("verify", cwd=studio.root).returncode == 0
    frames = sorted(studio.frames_dir("clip").iterdir())
    with open(frames[2], "r+b") as handle:  # flip bytes in the middle of the JPEG
        handle.seek(200)
        handle.write(b"\x00" * 16)
    frames[4].unlink()  # never cached (split ran outside DVC), so really gone

    result = rotoscope("verify", cwd=studio.root, check=False)
    assert result.returncode == 1
    assert f"frames/clip/source/{frames[2].name}: corrupt" in result.stdout
    assert f"frames/clip/source/{frames[4].name}: missing" in result.stdout
    assert path.exists()


def test_killed_split_resumes_and_finishes_correctly(studio: Studio, tmp_path: Path) -> None:
    clip = constant_rate_clip(tmp_path / "long.mp4", size=(640, 360), fps=25, seconds=12)
    studio.add_video(clip, "long")
    scratch = studio.partial_dir("split-long") / "frames"
    process = subprocess.Popen(
        [sys.executable, "-m", "rotoscope", "split", "long"],
        cwd=studio.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if scratch.is_dir() and len(list(scratch.glob("*.jpg"))) >= 60:
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "split finished before it could be killed"
    assert not studio.manifest_path("long").exists()

    resumed = rotoscope("split", "long", cwd=studio.root)
    assert "reused from an interrupted run" in resumed.stderr
    resumed_manifest = studio.manifest_path("long").read_text()
    assert len(studio.load_manifest("long").frames) == 300
    assert not studio.partial_dir("split-long").exists()

    rotoscope("split", "long", cwd=studio.root)  # from scratch: the same bytes, the same md5s
    assert studio.manifest_path("long").read_text() == resumed_manifest
    assert rotoscope("verify", cwd=studio.root).returncode == 0
