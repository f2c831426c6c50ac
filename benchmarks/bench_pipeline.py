"""Time the whole ``dvc repro`` of a studio against doing its work directly in-process.

For each clip three identical studios are made (not timed). In one, ``dvc repro`` runs as a
subprocess (the split and reassemble stages, each a ``rotoscope`` command, plus DVC's hashing,
caching and lock file); in another, ``split`` and ``reassemble`` are called in this process.
The ratio is repro / direct: what DVC and the command line add. To split that overhead, the
third studio runs the two stage commands as processes without DVC ("commands"). A second
``dvc repro`` with nothing changed is timed too (the no-op check). Each figure is the median of
runs on fresh studios, rotating the order, and all studios must end with the same frame md5s.

Run: ``.venv/bin/python benchmarks/bench_pipeline.py``
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchlib import (
    Clip,
    aerial_clip,
    make_studio,
    median,
    print_table,
    repeat_count,
    timed,
    tool_env,
    use_tool_env,
)

from rotoscope.media.synth import make_sample
from rotoscope.pipeline import reassemble, split
from rotoscope.studio import Studio

NAME = "clip"
UP_TO_DATE = "Data and pipelines are up to date"


@dataclass(frozen=True)
class Run:
    frames: int
    repro_s: float
    noop_s: float
    cli_s: float
    direct_s: float


@dataclass(frozen=True)
class Result:
    label: str
    frames: int
    repro_s: float
    noop_s: float
    cli_s: float
    direct_s: float

    @property
    def ratio(self) -> float:
        return self.repro_s / self.direct_s


def dvc_repro(studio: Studio) -> str:
    """``dvc repro`` in the studio, as a user would run it; returns its standard output."""
    completed = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=studio.root,
        env=tool_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"dvc repro failed ({completed.returncode}):\n{completed.stderr}")
    return completed.stdout


def direct(studio: Studio) -> None:
    """The same two stages, called in-process."""
    result = split(studio, NAME)
    reassemble(result.manifest_path, studio.render_path(NAME))


def cli(studio: Studio) -> None:
    """The two stage commands exactly as ``dvc.yaml`` runs them, without DVC around them."""
    manifest = studio.relative(studio.manifest_path(NAME))
    render = studio.relative(studio.render_path(NAME))
    for args in (["split", NAME], ["reassemble", manifest, "-o", render]):
        subprocess.run(
            [str(Path(sys.executable).parent / "rotoscope"), *args],
            cwd=studio.root,
            env=tool_env(),
            capture_output=True,
            check=True,
        )


def time_repro(studio: Studio) -> dict[str, float]:
    """Seconds for the first ``dvc repro`` and for a second one that has nothing to do."""
    first = timed(lambda: dvc_repro(studio))
    output: list[str] = []
    second = timed(lambda: output.append(dvc_repro(studio)))
    if UP_TO_DATE not in output[0]:
        print(f"  warning: the second dvc repro did work:\n{output[0]}")
    return {"repro_s": first, "noop_s": second}


def time_cli(studio: Studio) -> dict[str, float]:
    return {"cli_s": timed(lambda: cli(studio))}


def time_direct(studio: Studio) -> dict[str, float]:
    return {"direct_s": timed(lambda: direct(studio))}


WAYS: dict[str, Callable[[Studio], dict[str, float]]] = {
    "repro": time_repro,
    "cli": time_cli,
    "direct": time_direct,
}


def frame_md5s(studio: Studio) -> list[str]:
    return [frame.md5 for frame in studio.load_manifest(NAME).frames]


def check_same(studios: list[Studio]) -> None:
    if any(frame_md5s(studio) != frame_md5s(studios[0]) for studio in studios):
        raise RuntimeError("dvc repro, the commands and the direct calls made different frames")
    for studio in studios:
        if not studio.render_path(NAME).is_file():
            raise RuntimeError(f"no render in {studio.root}")


def one_run(clip: Clip, folder: Path, index: int) -> Run:
    """Fresh studios, then each way; the order rotates from one run to the next."""
    studios = {way: make_studio(folder / way, clip.path, NAME) for way in WAYS}
    order = [*WAYS][index % len(WAYS) :] + [*WAYS][: index % len(WAYS)]
    times: dict[str, float] = {}
    for way in order:
        times.update(WAYS[way](studios[way]))
    check_same(list(studios.values()))
    return Run(frames=len(frame_md5s(studios["direct"])), **times)


def bench_clip(clip: Clip, scratch: Path, repeat: int) -> Result:
    print(f"{clip.label}: {repeat} runs", flush=True)
    runs: list[Run] = []
    for index in range(repeat):
        folder = scratch / f"run-{index}"
        runs.append(one_run(clip, folder, index))
        shutil.rmtree(folder, ignore_errors=True)
    return Result(
        clip.label,
        runs[0].frames,
        median([r.repro_s for r in runs]),
        median([r.noop_s for r in runs]),
        median([r.cli_s for r in runs]),
        median([r.direct_s for r in runs]),
    )


def clips(scratch: Path) -> list[Clip]:
    found: list[Clip] = []
    aerial = aerial_clip()
    if aerial is not None:
        found.append(Clip("aerial 768x432 12.5fps 16s", aerial))
    found.append(Clip("sample 640x360 25fps 4s", make_sample(scratch / "sample.mp4")))
    return found


def report(results: list[Result], repeat: int) -> None:
    headers = ["clip", "frames", "dvc repro s", "direct s", "ratio", "commands s", "no-op repro s"]
    rows = [
        [
            r.label,
            f"{r.frames}",
            f"{r.repro_s:.2f}",
            f"{r.direct_s:.2f}",
            f"{r.ratio:.2f}",
            f"{r.cli_s:.2f}",
            f"{r.noop_s:.2f}",
        ]
        for r in results
    ]
    print(f"\nsplit + reassemble, median of {repeat} runs (ratio = dvc repro / direct in-process calls)")
    print_table(headers, rows)
    print(
        "commands = the two `rotoscope` stage commands run as processes without DVC: "
        "commands - direct is process start-up, dvc repro - commands is DVC's own work"
    )


def main() -> None:
    use_tool_env()
    repeat = repeat_count()
    with tempfile.TemporaryDirectory(prefix="rotoscope-bench-pipeline-") as scratch:
        results = [bench_clip(clip, Path(scratch), repeat) for clip in clips(Path(scratch))]
    report(results, repeat)


if __name__ == "__main__":
    main()
