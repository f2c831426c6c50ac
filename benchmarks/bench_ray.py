"""The Ray executor against the local one at equal cores: a 200-frame render.

One studio holds a generated clip (``--frames``, default 200, at ``--size``, default 640x360),
split once, an instant filter and a render of the one by the other (not timed). The render is
stylized (``pipeline.stylize``: every painting made, then every frame mixed and written) with
the reuse store emptied before each run, so every frame is painted:

- local: the stage's own process, ONNX Runtime on all the machine's cores,
- ray: a local Ray cluster of the same cores (started once, before the runs, as a cluster a user
  keeps running), one actor a core, each with a one-thread session; the actors' start-up (their
  imports and sessions) is part of each run.

Each figure is the median of ``ROTOSCOPE_BENCH_REPEAT`` (default 3) runs, the two taking turns,
and the two must write the same frames. Target (issue 15): ray at most 1.15x local's time.

Run: ``.venv/bin/python benchmarks/bench_ray.py`` (about 3 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

from benchlib import make_studio, median, print_table, repeat_count, timed, use_tool_env
from PIL import Image

from rotoscope.compute import ComputeSettings
from rotoscope.executors import LocalExecutor
from rotoscope.executors.ray_pool import RayExecutor
from rotoscope.media.synth import LOSSLESS, painting, panning_pictures, write_clip
from rotoscope.pipeline import stylize

TARGET = 1.15


def frames_md5(studio) -> str:
    digest = hashlib.md5()
    for path in sorted(studio.frames_dir("clip", "look").iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", default="640x360")
    args = parser.parse_args()
    size = tuple(int(side) for side in args.size.split("x"))
    use_tool_env()
    cores = len(os.sched_getaffinity(0))
    import ray

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        print(f"making a {args.frames}-frame {args.size} clip, an instant filter and a render (not timed)...")
        clip = folder / "clip.mp4"
        pictures = list(panning_pictures(size, args.frames))
        pts = [k * 512 for k in range(args.frames)]
        end = args.frames * 512
        timing = {"time_base": Fraction(1, 12800), "end_pts": end}
        write_clip(clip, pictures, pts, **timing, size=size, audio=False, settings=LOSSLESS)
        studio = make_studio(folder / "studio", clip, "clip")
        Image.fromarray(painting(256, 256)).save(folder / "style.png")
        style = str(folder / "style.png")
        rotoscope = [sys.executable, "-m", "rotoscope"]
        for command in (
            ["filter", "new", "swirls", "--style", style, "--kind", "instant"],
            ["render", "new", "look", "--video", "clip", "--filter", "swirls", "--strength", "0.8"],
        ):
            subprocess.run([*rotoscope, *command], cwd=studio.root, check=True, capture_output=True)
        studio.split(["clip"])
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        executors = {"local": LocalExecutor(), "ray": RayExecutor(ComputeSettings(executor="ray"))}
        seconds: dict[str, list[float]] = {name: [] for name in executors}
        md5s: dict[str, str] = {}
        for _ in range(repeat_count()):
            for name, executor in executors.items():
                shutil.rmtree(studio.root / ".rotoscope" / "stylized", ignore_errors=True)
                seconds[name].append(timed(lambda executor=executor: stylize(studio, "look", executor)))
                md5s[name] = frames_md5(studio)
                print(".", end="", flush=True)
        print()
        ray.shutdown()
    rows = [[name, f"{median(t):.2f}", f"{args.frames / median(t):.1f}"] for name, t in seconds.items()]
    print(f"{args.frames} frames at {args.size}, instant filter, {cores} cores, {repeat_count()} runs each")
    print_table(["executor", "seconds", "frames/s"], rows)
    ratio = median(seconds["ray"]) / median(seconds["local"])
    met = "meets" if ratio <= TARGET else "MISSES"
    print(f"ray: {ratio:.2f}x local's time at equal cores (target at most {TARGET:g}x): {met}")
    print(f"same frames from both: {md5s['ray'] == md5s['local']}")


if __name__ == "__main__":
    main()
