"""What a user meets at the edges: names, spellings, one-line errors, interruptions."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import git, rotoscope
from PIL import Image

from rotoscope.errors import StorageError, storage_error
from rotoscope.media.synth import constant_rate_clip, painting
from rotoscope.studio import Studio, name_from_path


def one_line(result: subprocess.CompletedProcess[str], *needles: str, code: int = 1) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rotoscope: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- names -----------------------------------------------------------------------------------------


def test_a_derived_name_never_replaces_another_video(studio: Studio, tmp_path: Path) -> None:
    first = constant_rate_clip(tmp_path / "my clip.mp4", size=(64, 36), seconds=0.2)
    other = constant_rate_clip(tmp_path / "my-clip.mp4", size=(96, 54), seconds=0.2)
    rotoscope("add", str(first), cwd=studio.root)
    kept = (studio.root / "videos" / "my-clip.mp4").read_bytes()
    one_line(rotoscope("add", str(other), cwd=studio.root, check=False), "already registered", "--name")
    assert (studio.root / "videos" / "my-clip.mp4").read_bytes() == kept
    rotoscope("add", str(first), cwd=studio.root)  # the same file again is harmless


def test_non_ascii_names_keep_their_letters() -> None:
    assert name_from_path(Path("émoji🎬.mp4")) == "emoji"
    assert name_from_path(Path("Ärger über Öl.mov")) == "Arger-uber-Ol"
    only_symbols = name_from_path(Path("🎬🎥.mp4"))
    assert only_symbols.startswith("video-") and only_symbols != name_from_path(Path("🌊.mp4"))


# -- one-line errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ("videos:\n  x: null\n", "videos.x"),
        ("videos:\n  x: {}\n", "'file' is a required property"),
        ("split: hello\n", "split"),
        ("filters: oops\n", "filters"),
        ("renders: [1]\n", "renders"),
        ("split: {fsp: 3}\n", "did you mean 'fps'"),
        ("render: {}\n", "did you mean 'renders'"),
        ("reassemble: {crf: abc}\n", "reassemble.crf"),
        ("reassemble: {preset: warp9}\n", "warp9"),
        ("reassemble: {pix_fmt: bogus}\n", "bogus"),
        ("reassemble: {pix_fmt: rgb24}\n", "rgb24"),
        ("reassemble: {codec: aac}\n", "aac"),
        ("reassemble: {segment_seconds: abc}\n", "segment_seconds"),
        ("stylize: {strength: .nan}\n", "not a finite number"),
    ],
)
def test_params_of_the_wrong_shape_are_one_line(
    studio: Studio, tmp_path: Path, params: str, needle: str
) -> None:
    clip = constant_rate_clip(tmp_path / "clip.mp4", size=(64, 36), seconds=0.2)
    studio.add_video(clip, "clip")
    rotoscope("split", "clip", cwd=studio.root)
    studio.params_path.write_text(params)
    result = rotoscope(
        "reassemble", "manifests/clip/source.json", "-o", "out.mp4", cwd=studio.root, check=False
    )
    one_line(result, "params.yaml", needle)
    assert not (studio.root / "out.mp4").exists()


def test_init_refuses_files_nesting_and_a_remote_inside(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    one_line(rotoscope("init", "a-file", cwd=tmp_path, check=False), "not a folder")
    rotoscope("init", "outer", cwd=tmp_path)
    one_line(rotoscope("init", "outer/inner", cwd=tmp_path, check=False), "inside the studio")
    remote = tmp_path / "third" / "blobs"
    one_line(
        rotoscope("init", "third", "--remote", str(remote), cwd=tmp_path, check=False), "remote is inside"
    )
    one_line(rotoscope("init", "/proc/rotoscope-studio", cwd=tmp_path, check=False), "/proc")


def test_storage_errors_name_the_file_and_the_cause() -> None:
    for code, words in ((errno.ENOSPC, "disk full"), (errno.EROFS, "read-only"), (errno.EFBIG, "too large")):
        error = storage_error(OSError(code, os.strerror(code), "/studio/frames/x.jpg"))
        assert (
            isinstance(error, StorageError) and words in str(error) and "/studio/frames/x.jpg" in str(error)
        )


def test_a_split_killed_by_a_file_size_limit_is_one_line_and_resumes(studio: Studio, tmp_path: Path) -> None:
    clip = constant_rate_clip(tmp_path / "clip.mp4", size=(160, 90), seconds=1.0)
    studio.add_video(clip, "clip")
    limited = (
        "import resource, signal, runpy, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, resource.RLIM_INFINITY));"
        "sys.argv = ['rotoscope', 'split', 'clip']; runpy.run_module('rotoscope', run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", limited], cwd=studio.root, capture_output=True, text=True)
    one_line(result, "too large")
    assert not studio.manifest_path("clip").exists()
    assert "25 frames" in rotoscope("split", "clip", cwd=studio.root).stderr


def test_memory_budget_is_checked(render_studio: Studio, tmp_path: Path) -> None:
    Image.fromarray(painting(64, 48)).save(tmp_path / "photo.png")
    result = rotoscope(
        "stylize-image",
        str(tmp_path / "photo.png"),
        "-f",
        "swirls",
        "-o",
        str(tmp_path / "o.png"),
        "--memory-mb",
        "-5",
        cwd=render_studio.root,
        check=False,
    )
    one_line(result, "--memory-mb")


# -- usability slips -------------------------------------------------------------------------------


def test_both_spellings_and_an_instant_filter_usable_at_once(studio: Studio, tmp_path: Path) -> None:
    Image.fromarray(painting(160, 120)).save(tmp_path / "style.png")
    made = rotoscope(
        "filter",
        "new",
        "wave",
        "--style",
        str(tmp_path / "style.png"),
        "--kind",
        "instant",
        "--license",
        "public domain",
        cwd=studio.root,
    )
    assert "ready to use" in made.stderr
    assert "public domain" in rotoscope("filter", "show", "wave", cwd=studio.root).stdout
    photo = tmp_path / "photo.jpg"
    Image.fromarray(painting(96, 64)).save(photo)
    rotoscope(
        "stylize-image",
        str(photo),
        "-f",
        "wave",
        "-o",
        str(tmp_path / "out.jpg"),
        "--preserve-colour",
        cwd=studio.root,
    )
    assert (tmp_path / "out.jpg").stat().st_size > 1000
    assert "model.npy" not in git("status", "--porcelain", "--untracked-files=all", cwd=studio.root).stdout


def test_a_refused_filter_leaves_nothing_staged(studio: Studio, tmp_path: Path) -> None:
    Image.fromarray(painting(160, 120)).save(tmp_path / "style.png")
    before = git("status", "--porcelain", cwd=studio.root).stdout
    result = rotoscope(
        "filter",
        "new",
        "bad",
        "--style",
        str(tmp_path / "style.png"),
        "--category",
        "!!!",
        cwd=studio.root,
        check=False,
    )
    one_line(result, "categories")
    assert git("status", "--porcelain", cwd=studio.root).stdout == before
    assert not (studio.root / "filters" / "bad").exists()


def test_stylize_image_folders(render_studio: Studio, tmp_path: Path) -> None:
    root = render_studio.root
    rotoscope("filter", "make", "swirls", cwd=root)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(painting(96, 64)).save(photos / "a.jpg")
    Image.fromarray(painting(96, 64)).save(photos / "b.bmp")
    rotoscope("stylize-image", str(photos), "-f", "swirls", "-o", str(photos), cwd=root)
    assert sorted(p.name for p in photos.iterdir()) == ["a.jpg", "a.swirls.jpg", "b.bmp", "b.swirls.png"]
    again = rotoscope("stylize-image", str(photos), "-f", "swirls", "-o", str(photos), cwd=root)
    assert "2 picture(s)" in again.stderr and len(list(photos.iterdir())) == 4
    into = tmp_path / "into"
    into.mkdir()
    rotoscope("stylize-image", str(photos / "a.jpg"), "-f", "swirls", "-o", str(into), cwd=root)
    assert (into / "a.swirls.jpg").is_file()


def test_fetch_takes_a_single_frame_or_a_range() -> None:
    from rotoscope.cli import _parse_range
    from rotoscope.errors import RotoscopeError

    assert _parse_range("5", int, "--frames") == (5, 5)
    assert _parse_range("5-9", int, "--frames") == (5, 9)
    assert _parse_range("4.0-8.5", float, "--time") == (4.0, 8.5)
    for bad in ("9-5", "a-b", "", "5-"):
        with pytest.raises(RotoscopeError):
            _parse_range(bad, int, "--frames")


def test_ctrl_c_says_it_was_interrupted_and_a_rerun_resumes(studio: Studio, tmp_path: Path) -> None:
    clip = constant_rate_clip(tmp_path / "long.mp4", size=(640, 360), seconds=12.0)
    studio.add_video(clip, "long")
    saved = signal.signal(signal.SIGINT, signal.SIG_DFL)  # a runner in the background ignores it
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "rotoscope", "split", "long"],
            cwd=studio.root,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        signal.signal(signal.SIGINT, saved)
    partial = studio.root / ".rotoscope" / "partial" / "split-long" / "frames"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(partial.glob("*.jpg"))) < 5:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    lines = err.strip().splitlines()
    assert (
        lines and lines[-1].startswith("rotoscope: interrupted") and "run the same command again" in lines[-1]
    )
    assert "Traceback" not in err
    assert "reused from an interrupted run" in rotoscope("split", "long", cwd=studio.root).stderr
