"""One writer at a time per video and per render.

DVC's own lock guards ``dvc repro``, but the stage commands can be run by hand (or by a second
terminal, or a web job) while it runs: two ``rotoscope stylize`` of one render would both stage and
swap frame folders and leave a manifest naming frames that are gone. An advisory ``flock`` on a
file under ``.rotoscope/locks/`` is released by the kernel when its process ends however it ends,
so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from rotoscope.errors import BusyError
from rotoscope.layout import Layout, check_name


def video_lock(video: str) -> str:
    return f"video-{check_name(video, 'video name')}"


def render_lock(video: str, render: str) -> str:
    return f"render-{check_name(video, 'video name')}-{check_name(render, 'render name')}"


def filter_lock(name: str) -> str:
    return f"filter-{check_name(name, 'filter name')}"


@contextmanager
def exclusive(layout: Layout, lock: str, doing: str) -> Iterator[None]:
    """Hold ``lock`` while the block runs; refused at once (one line) while another process has it."""
    path = layout.lock(lock)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise BusyError(
                layout.relative(path),
                f"another rotoscope command is already {doing} (pid {holder}); "
                "wait for it to finish, then run this again",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
