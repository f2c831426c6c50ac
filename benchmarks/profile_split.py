"""Where ``rotoscope`` split spends its time, and what two of its design decisions are worth.

The design (``src/rotoscope/media/decode.py`` and ``src/rotoscope/pipeline.py``):
``decode_frames`` yields ``DecodedFrame(pts, frame, size)`` holding PyAV's raw
``VideoFrame``, and the main thread of split only decodes. Its worker threads do the rest of
each frame: ``DecodedFrame.image()`` (the conversion to an upright RGBX Pillow picture, mapped
from PyAV's buffer without a copy), the JPEG encode into a temporary file, and the md5. Two
decisions behind it, each measured here by undoing it:

- **Convert on the workers, not on the decoding thread.** PyAV's scaler and Pillow's file
  encoder release the GIL, so conversions run in parallel on the workers; done in the decode
  loop they run one at a time, between decodes.
- **One kept scaler per thread, ``threads=1``.** ``VideoFrame.reformat()`` builds a new scaler
  (SwsContext) for every frame and lets FFmpeg pick its thread count, which starts a pool of
  threads for every frame (on a 2-core machine 2 per frame: 400 ``clone3`` calls for 200
  frames under ``strace -c -f``). ``decode._reformatter()`` keeps one ``VideoReformatter`` per
  thread instead, and ``_upright_rgb`` passes ``threads=1``: the workers already run in parallel.

Two parts, on the same clips as ``bench_split.py``:

1. Stages, one thread, one after another: decode only (``decode_frames``, PyAV with
   ``thread_type`` AUTO), the conversion (``DecodedFrame.image()``, and for comparison the same
   conversion through ``frame.reformat`` as before), the JPEG encode into a file
   (``save_image``: Pillow, quality 95, ``optimize=False``) and the md5 of that file. Decoding
   is a pass of its own; the other stages are timed frame by frame in one more pass.
2. What-if splits: the real ``pipeline.split`` on a fresh studio for every run (studio setup is
   not timed), as it is ("current") and with each decision undone, then both. Each figure is
   the median of ``ROTOSCOPE_BENCH_REPEAT`` runs, the variants' order rotating; the ratio is
   against "current", "CPU s" is this process's CPU time over all its threads (less disturbed
   than the wall clock when other work shares the machine), and "same md5s" says whether every
   run wrote every frame file byte-identical to the current code's.

The variants are small context managers that set module attributes in this process only and
restore them on exit; no file under ``src/`` changes. They rely on private names
(``decode._reformatter``, ``pipeline.decode_frames`` as ``_write_frames`` looks it up), so if
those change this script needs updating.

"threads started" counts how far the kernel's last assigned PID (``/proc/loadavg``) moved during
a step: every thread or process started on the machine takes one, so it counts ours plus
whatever else started meanwhile. The splits print the smallest count of their runs; a step in
which the PIDs wrapped around (at ``/proc/sys/kernel/pid_max``) counts as unknown, and "n/a"
means nothing is known (or not Linux).

Run: ``.venv/bin/python benchmarks/profile_split.py``
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import av
import numpy as np
from benchlib import (
    Clip,
    make_studio,
    median,
    print_table,
    repeat_count,
    split_clips,
    use_tool_env,
)
from PIL import Image

import rotoscope.media.decode as decoding
import rotoscope.pipeline as pipeline
from rotoscope.media import decode_frames, probe
from rotoscope.media.images import save_image
from rotoscope.store import md5_file

QUALITY = 95  # the studio's default, as split uses it
T = TypeVar("T")


# -- threads started -----------------------------------------------------------------------------


def last_pid() -> int | None:
    """The PID the kernel assigned last (threads take PIDs too), or None where unknown."""
    try:
        return int(Path("/proc/loadavg").read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def measured(action: Callable[[], T]) -> tuple[T, float, int | None]:
    """``action()``'s result, its wall-clock seconds, and the PIDs taken meanwhile."""
    before = last_pid()
    start = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - start
    after = last_pid()
    started = None if before is None or after is None or after < before else after - before
    return result, seconds, started  # after < before: the PIDs wrapped around


def started_text(count: int | None) -> str:
    return "n/a" if count is None else str(count)


# -- what-if variants ----------------------------------------------------------------------------


@contextmanager
def patched(module: object, name: str, value: object) -> Iterator[None]:
    """``module.name = value`` for the length of the block, in this process only."""
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


@dataclass(frozen=True)
class PreConverted:
    """A frame converted on the decoding thread: ``image()`` hands back the finished picture."""

    pts: int
    picture: Image.Image

    luma_plane: np.ndarray

    def image(self) -> Image.Image:
        return self.picture

    def luma(self) -> np.ndarray:
        return self.luma_plane


@contextmanager
def convert_on_decoding_thread() -> Iterator[None]:
    """Undo decision 1: ``_write_frames`` gets frames converted in its decode loop (the same
    ``DecodedFrame.image()``), so its workers only encode and md5."""
    real = pipeline.decode_frames

    def decode_and_convert(*args: Any, **kwargs: Any) -> Iterator[PreConverted]:
        for decoded in real(*args, **kwargs):
            yield PreConverted(decoded.pts, decoded.image(), decoded.luma())

    with patched(pipeline, "decode_frames", decode_and_convert):
        yield


class ScalerPerFrame:
    """Stands in for the kept ``VideoReformatter``: converts through ``frame.reformat``, which
    builds a new scaler for every frame, and drops ``threads=1`` so FFmpeg picks the count."""

    def reformat(self, frame: av.VideoFrame, **options: Any) -> av.VideoFrame:
        options.pop("threads", None)
        return frame.reformat(**options)


@contextmanager
def scaler_per_frame() -> Iterator[None]:
    """Undo decision 2: ``_upright_rgb`` unchanged, but its ``_reformatter()`` gives a
    :class:`ScalerPerFrame`."""
    with patched(decoding, "_reformatter", ScalerPerFrame):
        yield


@contextmanager
def both_undone() -> Iterator[None]:
    """Close to the design before (which also converted to RGB rather than RGBX)."""
    with convert_on_decoding_thread(), scaler_per_frame():
        yield


VARIANTS: dict[str, Callable[[], AbstractContextManager[None]]] = {
    "current": nullcontext,
    "convert on the decoding thread": convert_on_decoding_thread,
    "a new scaler per frame, automatic threads": scaler_per_frame,
    "both of those (about the design before)": both_undone,
}


# -- 1. stages -----------------------------------------------------------------------------------


@dataclass
class Stage:
    seconds: float = 0.0
    started: int | None = 0

    def add(self, seconds: float, started: int | None) -> None:
        self.seconds += seconds
        self.started = None if self.started is None or started is None else self.started + started


def decode_only(path: Path) -> tuple[Stage, int]:
    """One pass of split's own ``decode_frames`` with nothing else done; and the frame count."""
    info = probe(path)
    count, seconds, started = measured(lambda: sum(1 for _ in decode_frames(info)))
    return Stage(seconds, started), count


def later_stages(path: Path, folder: Path) -> dict[str, Stage]:
    """One more decoding pass, timing each later step of every frame on this thread."""
    stages = {name: Stage() for name in ("convert", "convert before", "encode", "md5")}

    def step(name: str, action: Callable[[], T]) -> T:
        result, seconds, started = measured(action)
        stages[name].add(seconds, started)
        return result

    for index, decoded in enumerate(decode_frames(probe(path))):
        target = folder / f"{index:06d}.jpg"
        picture = step("convert", decoded.image)
        with scaler_per_frame():
            step("convert before", decoded.image)
        step("encode", partial(save_image, picture, target, "jpg", QUALITY))
        step("md5", partial(md5_file, target))
        target.unlink()  # not timed; keeps the scratch folder small
    return stages


def stage_rows(clip: Clip, scratch: Path) -> list[list[str]]:
    decode, frames = decode_only(clip.path)
    folder = scratch / "stages"
    folder.mkdir(exist_ok=True)
    later = later_stages(clip.path, folder)
    shutil.rmtree(folder)
    total = Stage()
    for stage in (decode, later["convert"], later["encode"], later["md5"]):
        total.add(stage.seconds, stage.started)
    rows = {
        "decode only (PyAV, thread_type AUTO)": decode,
        "convert: DecodedFrame.image() (kept scaler, threads=1)": later["convert"],
        "  same, a new scaler per frame, automatic threads": later["convert before"],
        f"JPEG encode into a file (Pillow, q{QUALITY}, optimize=False)": later["encode"],
        "md5 of the file": later["md5"],
        "sum of the current stages": total,
    }
    return [
        [name, f"{s.seconds:.2f}", f"{1000 * s.seconds / frames:.2f}", started_text(s.started)]
        for name, s in rows.items()
    ]


# -- 2. what-if splits ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    seconds: float  # wall clock
    cpu: float  # this process's CPU seconds, all threads: less disturbed by other work
    started: int | None
    md5s: list[str]


def split_once(clip: Clip, root: Path, variant: str) -> Run:
    """One split of ``clip`` in a fresh studio at ``root`` (removed afterwards)."""
    studio = make_studio(root, clip.path, "clip")
    try:
        with VARIANTS[variant]():
            cpu = time.process_time()
            _, seconds, started = measured(lambda: pipeline.split(studio, "clip"))
            cpu = time.process_time() - cpu
        md5s = [frame.md5 for frame in studio.load_manifest("clip").frames]
        return Run(seconds, cpu, started, md5s)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(root.with_name(f"{root.name}-remote"), ignore_errors=True)


def whatif_rows(clip: Clip, scratch: Path, repeat: int) -> list[list[str]]:
    root = scratch / "whatif"
    split_once(clip, root, "current")  # warm-up, not counted
    names = list(VARIANTS)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for turn in range(repeat):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            runs[name].append(split_once(clip, root, name))
    reference = runs["current"][0].md5s
    base = median([run.seconds for run in runs["current"]])
    rows = []
    for name in names:
        seconds = median([run.seconds for run in runs[name]])
        known = [run.started for run in runs[name] if run.started is not None]
        rows.append(
            [
                name,
                f"{seconds:.2f}",
                f"{seconds / base:.2f}",
                f"{median([run.cpu for run in runs[name]]):.2f}",
                started_text(min(known) if known else None),
                "yes" if all(run.md5s == reference for run in runs[name]) else "NO",
            ]
        )
    return rows


# -- report --------------------------------------------------------------------------------------


def profile_clip(clip: Clip, scratch: Path, repeat: int) -> None:
    print(f"\n== {clip.label}")
    print("\n1. stages, one thread, one after another")
    print_table(["stage", "total s", "ms/frame", "threads started"], stage_rows(clip, scratch))
    print(f"\n2. whole split, median of {repeat} (ratio = / current)")
    print_table(
        ["split", "s", "ratio", "CPU s", "threads started", "same md5s"], whatif_rows(clip, scratch, repeat)
    )


def main() -> None:
    use_tool_env()
    repeat = repeat_count()
    with tempfile.TemporaryDirectory(prefix="rotoscope-profile-split-") as scratch:
        start = time.perf_counter()
        for clip in split_clips(Path(scratch)):
            profile_clip(clip, Path(scratch), repeat)
    print(f"\n(all of it took {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
