"""Shared fixtures: temporary studios, generated clips, the real `rotoscope`/`dvc`/`git` commands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rotoscope.media.synth import LOSSLESS, painting, panning_pictures, write_clip
from rotoscope.pipeline import split
from rotoscope.studio import Studio, init_studio

REPO = Path(__file__).resolve().parents[1]


def media_dir() -> Path:
    return Path(os.environ.get("ROTOSCOPE_MEDIA", REPO.parent / "shared" / "media"))


@pytest.fixture(scope="session")
def media() -> Path:
    folder = media_dir()
    if not (folder / "videos").is_dir():
        pytest.skip(f"shared test media not found at {folder} (set ROTOSCOPE_MEDIA)")
    return folder


@pytest.fixture(autouse=True, scope="session")
def _quiet_tools() -> Iterator[None]:
    """Commits need an identity; DVC must not try the network."""
    saved = dict(os.environ)
    os.environ.update(
        {
            "GIT_AUTHOR_NAME": "Rotoscope Tests",
            "GIT_AUTHOR_EMAIL": "tests@rotoscope.invalid",
            "GIT_COMMITTER_NAME": "Rotoscope Tests",
            "GIT_COMMITTER_EMAIL": "tests@rotoscope.invalid",
            "DVC_NO_ANALYTICS": "1",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        }
    )
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def studio(tmp_path: Path) -> Studio:
    made, _ = init_studio(tmp_path / "studio", remote=tmp_path / "remote")
    return made


def run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if check and completed.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {completed.returncode}\n{completed.stdout}\n{completed.stderr}"
        )
    return completed


def ffmpeg(*args: str) -> None:
    """The ffmpeg command line (from imageio-ffmpeg) as an independent reference."""
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


def rotoscope(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "rotoscope", *args], cwd, check)


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "dvc", *args], cwd, check)


def git(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["git", *args], cwd, check)


# -- a studio with a render (the stylize stage) --------------------------------------------------

FRAMES = 10
SIZE = (128, 96)
CHANGED = (3, 7)  # the frames a re-shot clip replaces


def write_source(path: Path, changed: tuple[int, ...] = (), frames: int = FRAMES) -> Path:
    """A lossless clip (unchanged frames decode to identical pixels), optionally with some re-shot."""
    pictures = list(panning_pictures(SIZE, frames))
    for index in changed:
        pictures[index] = Image.fromarray(255 - np.asarray(pictures[index]))
    return write_lossless(path, pictures)


def write_lossless(path: Path, pictures: list[Image.Image]) -> Path:
    """Pictures as a silent lossless clip at 25 fps, so each decodes back to its exact pixels."""
    write_clip(
        path,
        pictures,
        [k * 512 for k in range(len(pictures))],
        time_base=Fraction(1, 12800),
        end_pts=len(pictures) * 512,
        size=pictures[0].size,
        audio=False,
        settings=LOSSLESS,
    )
    return path


def repro(root: Path) -> int | None:
    """`dvc repro`; how many frames the filter ran on (None: the stylize stage did not run)."""
    log = root / ".rotoscope/logs/stylize-look.json"
    log.unlink(missing_ok=True)
    dvc("repro", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "repro", "--allow-empty", cwd=root)
    return json.loads(log.read_text())["stylized"] if log.is_file() else None


def set_param(root: Path, section: str, key: str, value: object) -> None:
    studio = Studio(root)
    document = studio.params()
    target = document[section]
    for part in key.split(".")[:-1]:
        target = target[part]
    target[key.split(".")[-1]] = value
    studio.save_params(document)


@pytest.fixture
def render_studio(studio: Studio, tmp_path: Path) -> Studio:
    """A studio with a lossless 10-frame clip, an instant filter and a render of one through the other."""
    return with_a_render(studio, write_source(tmp_path / "clip.mp4"), tmp_path)


def with_a_render(studio: Studio, clip: Path, scratch: Path) -> Studio:
    """``clip`` added as "clip", an instant filter "swirls" and a render "look" at strength 0.8."""
    root = studio.root
    rotoscope("add", str(clip), "--name", "clip", cwd=root)
    Image.fromarray(painting(160, 120)).save(scratch / "style.png")
    style = scratch / "style.png"
    rotoscope("filter", "new", "swirls", "--style", str(style), "--kind", "instant", cwd=root)
    rotoscope("render", "new", "look", "--video", "clip", "--filter", "swirls", "--strength", "0.8", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "a clip, a filter, a render", cwd=root)
    return studio


# -- a studio with history, for the web studio ------------------------------------------------------


@pytest.fixture(scope="session")
def history_studio_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once: a 10-frame clip, an instant filter with a card, a render made by `dvc repro` on
    main, and a branch `lighter` where the render's strength is lower (so frames differ). Tests copy
    it (:func:`history_studio`) rather than change it."""
    base = tmp_path_factory.mktemp("history")
    made, _ = init_studio(base / "studio", remote=base / "remote")
    root = made.root
    rotoscope("add", str(write_source(base / "clip.mp4")), "--name", "clip", cwd=root)
    Image.fromarray(painting(160, 120)).save(base / "style.png")
    about = ["--title", "Swirls", "--artist", "The Tests", "--year", "2026", "--licence", "CC BY-NC 4.0"]
    rotoscope(
        "filter", "new", "swirls", "--style", str(base / "style.png"), "--kind", "instant", *about, cwd=root
    )
    rotoscope("render", "new", "look", "--video", "clip", "--filter", "swirls", "--strength", "0.9", cwd=root)
    dvc("repro", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "a clip, a filter, a render", cwd=root)
    git("tag", "v1", cwd=root)
    first_branch = git("branch", "--show-current", cwd=root).stdout.strip()
    git("checkout", "-qb", "lighter", cwd=root)
    set_param(root, "renders", "look.strength", 0.4)
    dvc("repro", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "a lighter look", cwd=root)
    git("checkout", "-q", first_branch, cwd=root)
    dvc("checkout", "-q", cwd=root)
    return root


@pytest.fixture(scope="module")
def history_studio(history_studio_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the studio with history, one per test module."""
    import shutil

    target = tmp_path_factory.mktemp("copy") / "studio"
    shutil.copytree(history_studio_template, target, symlinks=True)
    return target


# -- a split clip and a render, for the executors --------------------------------------------------


@pytest.fixture
def split_studio(studio: Studio, tmp_path: Path) -> Studio:
    """A studio with a split 24-frame clip, an instant filter and a render of one by the other."""
    clip = write_lossless(tmp_path / "clip.mp4", list(panning_pictures((192, 128), 24)))
    split(with_a_render(studio, clip, tmp_path), "clip")
    return studio


def outputs(studio: Studio) -> dict[str, bytes]:
    """The render's manifest and every frame file, by path."""
    manifest = studio.manifest_path("clip", "look")
    frames = sorted(studio.frames_dir("clip", "look").iterdir())
    return {str(path.relative_to(studio.root)): path.read_bytes() for path in [manifest, *frames]}


def forget_paintings(studio: Studio) -> None:
    """The reuse store and the ledger gone: the next run paints every frame again."""
    for folder in ("stylized", "ledger"):
        shutil.rmtree(studio.root / ".rotoscope" / folder, ignore_errors=True)


def ledger(studio: Studio) -> list[dict[str, object]]:
    folder = studio.root / ".rotoscope" / "ledger"
    files = sorted(folder.glob("*.jsonl"))
    return [json.loads(line) for file in files for line in file.read_text().splitlines()]
