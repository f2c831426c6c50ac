"""The web studio: the compare page's first paint and frame-step latency on the aerial clip (in
Chromium, from key press to both frames drawn), and the HTTP API's overhead against calling the
library directly. Run from the repository root: .venv/bin/python benchmarks/bench_web.py (~2 min).
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("ROTOSCOPE_MEDIA", REPO.parent / "shared" / "media"))
AERIAL = MEDIA / "videos" / "aerial_parking_lot_intel_16s.mp4"
STEPS = 60
TARGET_MS = 100.0


def run(*args: str, cwd: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env |= {"DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@x.invalid"}
    env |= {"GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@x.invalid"}
    subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True)


def make_studio(folder: Path) -> Path:
    from rotoscope.studio import init_studio

    studio, _ = init_studio(folder / "studio", remote=folder / "remote")
    studio.add(AERIAL, "aerial")
    run(sys.executable, "-m", "dvc", "repro", "split@aerial", cwd=studio.root)  # frames into the cache
    run("git", "add", "-A", cwd=studio.root)
    run("git", "commit", "-qm", "aerial", cwd=studio.root)
    return studio.root


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def browser_figures(url: str) -> tuple[float, float, list[float]]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.goto(f"{url}/compare?video=aerial&render=source&a=HEAD")
        page.wait_for_selector("#compare[data-ready=true]")
        paint = page.evaluate("() => performance.getEntriesByName('first-contentful-paint')[0].startTime")
        ready = page.evaluate("() => performance.now()")  # both first frames drawn
        for step in range(STEPS):
            page.keyboard.press("ArrowRight")
            page.wait_for_function(
                f"() => Number(document.getElementById('compare').dataset.steps) >= {step + 2}"
            )
        steps = page.evaluate("() => window.rotoscopeTimings.slice(1)")
        browser.close()
    return paint, ready, steps


def api_overhead(url: str, root: Path, repeat: int = 30) -> list[tuple[str, float, float]]:
    from rotoscope.studio import Studio
    from rotoscope.web import views

    studio = Studio(root)
    cases = [
        ("filters (verb: Studio.filters)", "/api/filters", lambda: views.gallery(studio, None, None, None)),
        (
            "manifest, 200 frames",
            "/api/manifests/aerial/source",
            lambda: views.manifest_view(studio, "aerial", "source", None),
        ),
        (
            "manifest at HEAD (from Git)",
            "/api/manifests/aerial/source?rev=HEAD",
            lambda: views.manifest_view(studio, "aerial", "source", "HEAD"),
        ),
    ]
    rows = []
    for label, path, direct in cases:
        http_times, direct_times = [], []
        for _ in range(repeat):  # alternating, after one warm-up of each
            started = time.perf_counter()
            urllib.request.urlopen(url + path).read()
            http_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            record = direct()
            (
                record.model_dump_json()
                if hasattr(record, "model_dump_json")
                else [r.model_dump_json() for r in record]
            )
            direct_times.append(time.perf_counter() - started)
        rows.append(
            (label, statistics.median(http_times[1:]) * 1000, statistics.median(direct_times[1:]) * 1000)
        )
    return rows


def main() -> None:
    if not AERIAL.is_file():
        print(f"skipped: the aerial clip is not at {AERIAL} (set ROTOSCOPE_MEDIA)")
        return
    with tempfile.TemporaryDirectory() as scratch:
        root = make_studio(Path(scratch))
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "rotoscope", "serve", str(root), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"{url}/api/studio").read()
                    break
                except OSError:
                    time.sleep(0.1)
            paint, ready, steps = browser_figures(url)
            rows = api_overhead(url, root)
        finally:
            server.terminate()
            server.wait()
    steps.sort()
    median, p95 = statistics.median(steps), steps[int(len(steps) * 0.95) - 1]
    print("compare page on the aerial clip (768x432, 200 frames; frames from the DVC cache)")
    print(f"  first contentful paint {paint:.0f} ms; both first frames drawn at {ready:.0f} ms")
    print(
        f"  frame step, key press to both frames drawn, {len(steps)} steps: median {median:.1f} ms, "
        f"95th percentile {p95:.1f} ms, worst {steps[-1]:.1f} ms"
    )
    print(f"  target: under {TARGET_MS:.0f} ms per step: {'meets' if p95 < TARGET_MS else 'MISSES'}")
    print()
    print(f"{'API call':32s} {'HTTP ms':>8s} {'direct ms':>10s} {'overhead ms':>12s} {'ratio':>6s}")
    for label, http_ms, direct_ms in rows:
        overhead, ratio = http_ms - direct_ms, http_ms / direct_ms
        print(f"{label:32s} {http_ms:8.2f} {direct_ms:10.2f} {overhead:12.2f} {ratio:6.2f}")


if __name__ == "__main__":
    main()
