"""Helpers shared by the benchmark scripts: media lookup, studios, timing and result tables.

Not a test module and not part of the package: the scripts in this folder import it by name
(Python puts a script's own folder first on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rotoscope.media.synth import constant_rate_clip
from rotoscope.studio import Studio, init_studio

REPO = Path(__file__).resolve().parents[1]
AERIAL = "aerial_parking_lot_intel_16s.mp4"
_IDENTITY = {
    "GIT_AUTHOR_NAME": "Rotoscope Benchmarks",
    "GIT_AUTHOR_EMAIL": "benchmarks@rotoscope.invalid",
    "GIT_COMMITTER_NAME": "Rotoscope Benchmarks",
    "GIT_COMMITTER_EMAIL": "benchmarks@rotoscope.invalid",
    "DVC_NO_ANALYTICS": "1",
}


def media_dir() -> Path:
    """The shared test media folder: $ROTOSCOPE_MEDIA, else ../shared/media beside the repo."""
    return Path(os.environ.get("ROTOSCOPE_MEDIA", REPO.parent / "shared" / "media"))


def aerial_clip() -> Path | None:
    """The real aerial clip, or None (with a message saying why it is skipped)."""
    path = media_dir() / "videos" / AERIAL
    if path.is_file():
        return path
    print(f"skipping the aerial clip: {path} not found (set ROTOSCOPE_MEDIA to the media folder)")
    return None


@dataclass(frozen=True)
class Clip:
    label: str
    path: Path


def split_clips(scratch: Path) -> list[Clip]:
    """The aerial clip (when present) and a generated 1080p 60 fps 10 s clip in ``scratch``."""
    found: list[Clip] = []
    aerial = aerial_clip()
    if aerial is not None:
        found.append(Clip("aerial 768x432 12.5fps 16s", aerial))
    print("generating a 1920x1080 60 fps 10 s clip (not timed)...", flush=True)
    generated = constant_rate_clip(
        scratch / "generated.mp4", size=(1920, 1080), fps=60, seconds=10, audio=True
    )
    found.append(Clip("generated 1920x1080 60fps 10s", generated))
    return found


def repeat_count() -> int:
    """How many timed runs a measurement takes the median of ($ROTOSCOPE_BENCH_REPEAT, 3)."""
    return max(1, int(os.environ.get("ROTOSCOPE_BENCH_REPEAT", "3")))


def tool_env() -> dict[str, str]:
    """The environment for DVC and Git: an identity, no analytics, this venv's scripts on PATH."""
    env = dict(os.environ)
    env.update(_IDENTITY)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def use_tool_env() -> None:
    """Apply :func:`tool_env` to this process, for the in-process Git and DVC calls."""
    os.environ.update(tool_env())


def make_studio(root: Path, video: Path, name: str) -> Studio:
    """A fresh studio at ``root`` with its remote beside it and ``video`` added as ``name``."""
    with contextlib.redirect_stdout(io.StringIO()):  # DVC's "Initialized DVC repository." notes
        studio, _ = init_studio(root, remote=root.with_name(f"{root.name}-remote"))
        studio.add_video(video, name)
    return studio


def timed(action: Callable[[], object]) -> float:
    """Wall-clock seconds that ``action()`` takes."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A plain text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first = str(cells[0]).ljust(widths[0])
        rest = (str(cell).rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    print(line(headers))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print(line(row))
