"""Where ``rotoscope`` split spends its time, and what two small changes would save.

Three parts, on the same clips as ``bench_split.py``:

1. Stages, one thread, one after another: decode (PyAV), the conversion to a Pillow picture as
   split does it (``VideoFrame.to_image``) and an equivalent one (``reformat`` to rgb24, then
   ``Image.frombuffer`` with the plane's stride), JPEG encode, md5, and the write with and
   without ``fsync``.
2. Threads: JPEG encoding on 1 and 2 threads, into a ``BytesIO`` (as split does) and into a
   real file (``os.devnull``, so no disk work is timed). Pillow holds the GIL while it encodes
   into a ``BytesIO`` but not into a file that has a descriptor.
3. What-if splits: the real ``split`` with its private helpers swapped, in this process only
   (``src/`` is untouched), timed as the median of ``ROTOSCOPE_BENCH_REPEAT`` runs and checked
   to write byte-identical frames (same md5s).

Run: ``.venv/bin/python benchmarks/profile_split.py``
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import av
from benchlib import (
    Clip,
    make_studio,
    median,
    print_table,
    repeat_count,
    split_clips,
    timed,
    use_tool_env,
)
from PIL import Image

import rotoscope.media.decode as decoding
import rotoscope.pipeline as pipeline
from rotoscope.media import decode_frames, probe
from rotoscope.media.decode import DecodedFrame
from rotoscope.store import atomic_write_bytes, md5_bytes, md5_file, temp_beside
from rotoscope.studio import SplitSettings, Studio

QUALITY = 95
THREAD_SAMPLE = 24  # pictures kept in memory for the threading test
Picture = Image.Image
Store = Callable[[DecodedFrame, Path, SplitSettings], tuple[str, int, bool]]
Convert = Callable[[av.VideoFrame, tuple[int, int]], Picture]


# -- 1. stages ---------------------------------------------------------------------------------


def decoded(path: Path) -> Iterator[av.VideoFrame]:
    """Every frame, decoded the way split decodes (FFmpeg's own threads)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield from container.decode(stream)


def frombuffer_rgb(frame: av.VideoFrame, size: tuple[int, int]) -> Picture:
    """The same pixels as ``to_image``: one C copy from the plane, no per-row Python loop."""
    width, height = size
    resized = size != (frame.width, frame.height)
    plane = frame.reformat(
        format="rgb24",
        width=width,
        height=height,
        interpolation="AREA" if resized else None,
        src_colorspace=frame.colorspace,
    ).planes[0]
    return Image.frombuffer("RGB", size, plane, "raw", "RGB", plane.line_size, 1)


def time_decode(path: Path) -> tuple[float, int]:
    """Seconds to decode every frame, and how many there are."""
    count: list[int] = []
    seconds = timed(lambda: count.append(sum(1 for _ in decoded(path))))
    return seconds, count[0]


def convert_all(path: Path) -> None:
    for frame in decoded(path):  # one picture at a time: keeping them all would swap
        frombuffer_rgb(frame, (frame.width, frame.height))


def time_frombuffer(path: Path) -> float:
    return timed(lambda: convert_all(path))


def time_writes(path: Path, folder: Path) -> dict[str, float]:
    """One pass of split's own decode_frames, timing each later step of every frame."""
    spent = dict.fromkeys(["decode+to_image", "encode", "md5", "write+fsync", "write"], 0.0)
    frames = decode_frames(probe(path))
    while True:
        start = time.perf_counter()
        item = next(frames, None)
        spent["decode+to_image"] += time.perf_counter() - start
        if item is None:
            return spent
        _one_frame(item, folder / f"{item.pts}.jpg", spent)


def _jpeg_in_memory(image: Image.Image) -> bytes:
    """Split's encode before it wrote straight to files: into a BytesIO, holding the GIL."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=QUALITY, optimize=False)
    return buffer.getvalue()


def _one_frame(item: DecodedFrame, target: Path, spent: dict[str, float]) -> None:
    data = _step(spent, "encode", lambda: _jpeg_in_memory(item.image))
    _step(spent, "md5", lambda: md5_bytes(data))
    _step(spent, "write+fsync", lambda: atomic_write_bytes(target, data))
    _step(spent, "write", lambda: target.with_suffix(".plain").write_bytes(data))


def _step(spent: dict[str, float], name: str, action: Callable[[], object]) -> object:
    start = time.perf_counter()
    result = action()
    spent[name] += time.perf_counter() - start
    return result


def stage_rows(clip: Clip, scratch: Path) -> list[list[str]]:
    decode_s, frames = time_decode(clip.path)
    folder = scratch / "stages"
    folder.mkdir(exist_ok=True)
    spent = time_writes(clip.path, folder)
    shutil.rmtree(folder)
    stages = {
        "decode (PyAV)": decode_s,
        "to_image (as split)": spent.pop("decode+to_image") - decode_s,
        "reformat + frombuffer (alternative)": time_frombuffer(clip.path) - decode_s,
        "JPEG encode (Pillow, to bytes)": spent["encode"],
        "md5": spent["md5"],
        "atomic write + fsync (as split)": spent["write+fsync"],
        "plain write, no fsync (alternative)": spent["write"],
    }
    return [[name, f"{s:.2f}", f"{1000 * s / frames:.2f}"] for name, s in stages.items()]


# -- 2. threads --------------------------------------------------------------------------------


def sample_pictures(path: Path) -> list[Picture]:
    pictures: list[Picture] = []
    for frame in decoded(path):
        pictures.append(frombuffer_rgb(frame, (frame.width, frame.height)))
        if len(pictures) == THREAD_SAMPLE:
            break
    return pictures


def to_bytesio(picture: Picture, _: int) -> None:
    picture.save(io.BytesIO(), "JPEG", quality=QUALITY, optimize=False)


def to_devnull(picture: Picture, _: int) -> None:
    """A real file descriptor, so Pillow encodes without the GIL, but no disk work."""
    with open(os.devnull, "wb") as handle:
        picture.save(handle, "JPEG", quality=QUALITY, optimize=False)


def encode_rate(pictures: list[Picture], save: Callable[[Picture, int], None], threads: int) -> float:
    """Milliseconds of wall time per picture, encoding every picture twice over."""
    work = pictures * 2
    with ThreadPoolExecutor(threads) as pool:
        seconds = timed(lambda: list(pool.map(save, work, range(len(work)))))
    return 1000 * seconds / len(work)


def thread_rows(clip: Clip) -> list[list[str]]:
    pictures = sample_pictures(clip.path)
    rows = []
    for label, save in (("into BytesIO (as split)", to_bytesio), ("into a file", to_devnull)):
        encode_rate(pictures[:4], save, 2)  # warm-up
        one, two = encode_rate(pictures, save, 1), encode_rate(pictures, save, 2)
        rows.append([label, f"{one:.2f}", f"{two:.2f}", f"{one / two:.2f}"])
    return rows


# -- 3. what-if splits -------------------------------------------------------------------------


def upright_frombuffer(frame: av.VideoFrame, stored: tuple[int, int]) -> Picture:
    """``decode._upright_rgb`` with the conversion swapped for :func:`frombuffer_rgb`."""
    picture = frombuffer_rgb(frame, stored)
    rotation = decoding.normalise_rotation(frame.rotation)
    return picture.transpose(decoding._UPRIGHT[rotation]) if rotation else picture


def store_via_file(fsync: bool) -> Store:
    """``pipeline._store_frame`` encoding straight into the temporary file (JPEG only)."""

    def store(item: DecodedFrame, target: Path, settings: SplitSettings) -> tuple[str, int, bool]:
        if target.is_file():
            return md5_file(target), target.stat().st_size, True
        with temp_beside(target) as temp:
            with open(temp, "wb") as handle:
                item.image.save(handle, "JPEG", quality=settings.quality, optimize=False)
                handle.flush()
                if fsync:
                    os.fsync(handle.fileno())
            os.chmod(temp, 0o644)
            os.replace(temp, target)
        return md5_file(target), target.stat().st_size, False

    return store


def variants() -> dict[str, tuple[Convert, Store]]:
    current = (decoding._upright_rgb, pipeline._store_frame)
    return {
        "current": current,
        "frombuffer conversion": (upright_frombuffer, current[1]),
        "frombuffer + encode into the file": (upright_frombuffer, store_via_file(True)),
        "frombuffer + encode into the file, no fsync": (upright_frombuffer, store_via_file(False)),
    }


@contextmanager
def swapped(convert: Convert, store: Store) -> Iterator[None]:
    saved = decoding._upright_rgb, pipeline._store_frame
    decoding._upright_rgb, pipeline._store_frame = convert, store
    try:
        yield
    finally:
        decoding._upright_rgb, pipeline._store_frame = saved


def time_variant(studio: Studio, convert: Convert, store: Store) -> tuple[float, list[str]]:
    shutil.rmtree(studio.frames_dir("clip"), ignore_errors=True)
    with swapped(convert, store):
        seconds = timed(lambda: pipeline.split(studio, "clip"))
    return seconds, [frame.md5 for frame in studio.load_manifest("clip").frames]


def whatif_rows(clip: Clip, scratch: Path, repeat: int) -> list[list[str]]:
    studio = make_studio(scratch / "whatif", clip.path, "clip")
    time_variant(studio, *variants()["current"])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in variants()}
    md5s: dict[str, list[str]] = {}
    for _ in range(repeat):
        for name, (convert, store) in variants().items():
            seconds, md5s[name] = time_variant(studio, convert, store)
            times[name].append(seconds)
    base = median(times["current"])
    return [
        [
            name,
            f"{median(runs):.2f}",
            f"{median(runs) / base:.2f}",
            "yes" if md5s[name] == md5s["current"] else "NO",
        ]
        for name, runs in times.items()
    ]


# -- report ------------------------------------------------------------------------------------


def profile_clip(clip: Clip, scratch: Path, repeat: int) -> None:
    print(f"\n== {clip.label}")
    print("\n1. stages, one thread, one after another")
    print_table(["stage", "total s", "ms/frame"], stage_rows(clip, scratch))
    print(f"\n2. JPEG encode on threads ({THREAD_SAMPLE} pictures, each twice; ms/picture)")
    print_table(["encode", "1 thread", "2 threads", "speed-up"], thread_rows(clip))
    print(f"\n3. whole split with swapped helpers, median of {repeat} (ratio = / current)")
    print_table(["split", "s", "ratio", "same md5s"], whatif_rows(clip, scratch, repeat))


def main() -> None:
    use_tool_env()
    repeat = repeat_count()
    with tempfile.TemporaryDirectory(prefix="rotoscope-profile-split-") as scratch:
        for clip in split_clips(Path(scratch)):
            profile_clip(clip, Path(scratch), repeat)


if __name__ == "__main__":
    main()
