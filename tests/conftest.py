"""Shared fixtures: temporary studios, generated clips, the real `rotoscope`/`dvc`/`git` commands."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

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
