"""What each stage command took: ``.rotoscope/logs/runs.jsonl``, a line per run.

The stage commands ``dvc repro`` runs (split, filter make, stylize, reassemble, quality) each
append their wall seconds, CPU seconds, peak memory and exit code, so a studio knows what its own
stages cost (and how much of a ``dvc repro`` was DVC's bookkeeping around them). Writing it never
fails a command: a studio that cannot be found or written to is simply not logged.
"""

from __future__ import annotations

import json
import resource
import time
from contextlib import suppress
from pathlib import Path

from rotoscope.store import append_line

STAGE_COMMANDS = ("split", "stylize", "reassemble", "quality", "filter make")


def stage_of(argv: list[str]) -> str | None:
    """The stage command ``argv`` (after the program name) runs, or None."""
    words = [word for word in argv if not word.startswith("-")]
    for command in STAGE_COMMANDS:
        if words[: len(command.split())] == command.split():
            return command
    return None


def record(argv: list[str], started: float, code: int, cwd: Path | None = None) -> None:
    command = stage_of(argv)
    if command is None:
        return
    with suppress(Exception):  # the log is a convenience: never the reason a command fails
        from rotoscope.studio import Studio

        studio = Studio.find(cwd)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        line = {
            "at": round(time.time(), 3),
            "command": command,
            "args": argv[len(command.split()) :][:8],
            "seconds": round(time.monotonic() - started, 3),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "exit": code,
        }
        append_line(studio.layout.log("runs").with_suffix(".jsonl"), json.dumps(line))
