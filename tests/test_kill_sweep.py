"""A kill sweep: SIGKILL every pipeline command at seeded random moments, re-run it, compare with a clean run.

The studio is copied before anything runs; the copy runs each command once uninterrupted (the reference,
and the measure of how long each takes). The original then runs the same commands in order, each killed
at four moments drawn uniformly over its measured duration and re-run to completion after every kill.
What they leave must match the reference byte for byte.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import git, rotoscope, write_source
from PIL import Image

from rotoscope.media.synth import painting
from rotoscope.studio import Studio

COMMANDS: list[tuple[str, ...]] = [
    ("split", "clip"),
    ("filter", "make", "swirls"),
    ("stylize", "look"),
    ("reassemble", "manifests/clip/look.json", "-o", "renders/clip/look.mp4"),
    ("quality", "manifests/clip/look.json"),
]
KILLS_EACH = 4  # 20 kills in all
OUTPUTS = ("manifests", "frames", "renders", "quality")


def outputs(root: Path) -> dict[str, bytes]:
    """Every output file's bytes, by path; the filter card without its timing (when and how long)."""
    found = {
        str(path.relative_to(root)): path.read_bytes()
        for folder in OUTPUTS
        for path in sorted((root / folder).rglob("*"))
        if path.is_file()
    }
    found["filters/swirls/model.npy"] = (root / "filters/swirls/model.npy").read_bytes()
    card = json.loads((root / "filters/swirls/filter.json").read_text())
    for timing in ("seconds", "finished"):
        card.get("made", {}).pop(timing, None)
    found["filters/swirls/filter.json (less timing)"] = json.dumps(card, sort_keys=True).encode()
    return found


def kill_after(command: tuple[str, ...], root: Path, delay: float) -> int | None:
    """Start a command, SIGKILL its process group after `delay` seconds; its exit status."""
    child = subprocess.Popen(
        [sys.executable, "-m", "rotoscope", *command],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        child.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    return child.returncode


@pytest.mark.slow
def test_commands_killed_at_random_moments_finish_identically(studio: Studio, tmp_path: Path) -> None:
    root = studio.root
    rotoscope("add", str(write_source(tmp_path / "clip.mp4", frames=40)), "--name", "clip", cwd=root)
    Image.fromarray(painting(160, 120)).save(tmp_path / "style.png")
    style = str(tmp_path / "style.png")
    rotoscope("filter", "new", "swirls", "--style", style, "--kind", "instant", cwd=root)
    rotoscope(
        "render", "new", "look", "--video", "clip", "--filter", "swirls", "--temporal", "flow", cwd=root
    )
    git("add", "-A", cwd=root)
    git("commit", "-qm", "a 40-frame clip, an instant filter, a flow render", cwd=root)

    reference = tmp_path / "reference"
    shutil.copytree(root, reference, symlinks=True)
    durations, expected = [], []
    for command in COMMANDS:
        started = time.monotonic()
        rotoscope(*command, cwd=reference)
        durations.append(time.monotonic() - started)
        expected.append(outputs(reference))

    chance = random.Random(12)
    killed = 0
    for step, (command, duration) in enumerate(zip(COMMANDS, durations, strict=True)):
        for attempt in range(KILLS_EACH):
            # Each kill but the last lands in a copy of the studio as it stands before this command, so
            # that every one interrupts real work (a re-run to completion leaves nothing more to do);
            # the last is in the swept studio itself, which then goes on to the next command.
            trial = root if attempt == KILLS_EACH - 1 else tmp_path / f"trial-{step}-{attempt}"
            if trial != root:
                shutil.copytree(root, trial, symlinks=True)
            if command[:2] == ("filter", "make"):
                (trial / "filters/swirls/model.npy").unlink(missing_ok=True)  # so the kill lands on real work
            delay = chance.uniform(0, duration)
            status = kill_after(command, trial, delay)
            killed += status == -signal.SIGKILL
            again = rotoscope(*command, cwd=trial, check=False)
            where = (
                f"{' '.join(command)} after a kill at {delay:.2f} s (attempt {attempt + 1}, exit {status})"
            )
            assert "already" not in again.stderr, f"{where}: the re-run was refused\n{again.stderr}"
            assert again.returncode == 0, f"{where}: the re-run failed\n{again.stdout}\n{again.stderr}"
            got = outputs(trial)
            assert sorted(got) == sorted(expected[step]), f"{where}: other output files than the reference's"
            differing = [path for path in got if got[path] != expected[step][path]]
            assert not differing, f"{where}: not byte-identical to the uninterrupted run: {differing}"
            if trial != root:
                shutil.rmtree(trial)

    assert killed >= len(COMMANDS) * KILLS_EACH * 3 // 4, f"only {killed} of the runs were killed mid-way"
