"""Segment-parallel reassembly against one encoder at a time, at 1920x1080 60 fps.

One studio holds a generated 1920x1080 60 fps clip with audio (``--seconds``, default 6), split
once (not timed). Its source manifest is reassembled (``Studio.reassemble``: JPEG frames decoded,
encoded with libx264 at the studio's settings, muxed with the audio) three ways, the segment
cache emptied before each run so every segment is encoded:

- parallel: 1-second segments, ``compute.encoders`` at its default (one per core, at most 8),
- serial: the same segments, one encoder at a time (``compute.encoders: 1``),
- one pass: ``reassemble.segment_seconds: null``, a single encoder over the whole clip.

Each figure is the median of ``ROTOSCOPE_BENCH_REPEAT`` (default 3) runs, the three taking turns;
the parallel and serial outputs must hold the same video packets. "cores busy" is the process's
CPU seconds over the wall seconds: how much of the machine each way kept working. Target (issue
15): parallel at least 1.7x faster than one encoder at a time on 2 cores.

Run: ``.venv/bin/python benchmarks/bench_reassemble.py`` (about 3 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import av
from benchlib import make_studio, median, print_table, repeat_count, timed, use_tool_env

from rotoscope.media.synth import constant_rate_clip
from rotoscope.studio import Studio

TARGET = 1.7
WAYS = ("parallel", "serial", "one pass")


def packets_md5(path: Path) -> str:
    digest = hashlib.md5()
    with av.open(str(path)) as container:
        for packet in container.demux(container.streams.video[0]):
            digest.update(bytes(packet))
    return digest.hexdigest()


def reassemble(studio: Studio, way: str, out: Path) -> None:
    document = studio.params()
    document["compute"] = {"encoders": 1} if way == "serial" else {}
    studio.save_params(document)
    overrides = {"segment_seconds": None} if way == "one pass" else {}
    shutil.rmtree(studio.segments_dir(), ignore_errors=True)
    studio.reassemble(studio.manifest_path("clip"), out, overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    use_tool_env()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        print(f"generating a 1920x1080 60 fps {args.seconds:g} s clip and splitting it (not timed)...")
        clip = constant_rate_clip(
            folder / "clip.mp4", size=(1920, 1080), fps=60, seconds=args.seconds, audio=True
        )
        studio = make_studio(folder / "studio", clip, "clip")
        studio.split(["clip"])
        seconds: dict[str, list[float]] = {way: [] for way in WAYS}
        busy: dict[str, list[float]] = {way: [] for way in WAYS}  # CPU seconds over wall seconds
        outputs = {way: folder / f"{way.replace(' ', '-')}.mp4" for way in WAYS}
        for _ in range(repeat_count()):
            for way in WAYS:
                cpu = time.process_time()
                seconds[way].append(timed(lambda way=way: reassemble(studio, way, outputs[way])))
                busy[way].append((time.process_time() - cpu) / seconds[way][-1])
                print(".", end="", flush=True)
        print()
        frames = len(studio.load_manifest("clip").frames)
        same = packets_md5(outputs["parallel"]) == packets_md5(outputs["serial"])
    rows = []
    for way in WAYS:
        took = median(seconds[way])
        rows.append([way, f"{took:.2f}", f"{frames / took:.1f}", f"{median(busy[way]):.2f}"])
    print(f"{frames} frames at 1920x1080, {cores} cores, {repeat_count()} runs each")
    print_table(["reassembly", "seconds", "frames/s", "cores busy"], rows)
    speedup = median(seconds["serial"]) / median(seconds["parallel"])
    over_one_pass = median(seconds["one pass"]) / median(seconds["parallel"])
    met = "meets" if speedup >= TARGET else "MISSES"
    print(f"parallel segments: {speedup:.2f}x one encoder at a time (target at least {TARGET:g}x): {met}")
    print(f"parallel segments: {over_one_pass:.2f}x one pass over the whole clip")
    print(f"parallel and serial video packets identical: {same}")


if __name__ == "__main__":
    main()
