"""Progress for long work: frames done, rate and time left, as a bar on standard error or as
events for a listener (a web job, a library caller).

The library reports through :func:`progress_bar`; who listens is chosen around a verb with
:func:`reporting_to` (a callable receiving :class:`ProgressEvent` records), or across processes
with ``ROTOSCOPE_PROGRESS_FILE`` (events appended as JSON lines: how ``dvc repro``'s stage
commands report to the job that started it).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from rotoscope.text import terminal

_console = Console(stderr=True)
PROGRESS_FILE_ENV = "ROTOSCOPE_PROGRESS_FILE"


@dataclass(frozen=True)
class ProgressEvent:
    """Where one piece of long work stands."""

    task: str  # "split clip", "stylize painted"
    done: int
    total: int | None
    unit: str
    rate: float | None  # units per second so far
    seconds_left: float | None
    note: str = ""  # training's losses, say
    finished: bool = False


ProgressCallback = Callable[[ProgressEvent], None]
_listener: ContextVar[ProgressCallback | None] = ContextVar("rotoscope_progress", default=None)


@contextmanager
def reporting_to(callback: ProgressCallback | None) -> Iterator[None]:
    """Send the progress of the work inside the block to ``callback`` (None: the terminal)."""
    if callback is None:
        yield
        return
    token = _listener.set(callback)
    try:
        yield
    finally:
        _listener.reset(token)


def _file_listener() -> ProgressCallback | None:
    path = os.environ.get(PROGRESS_FILE_ENV)
    if not path:
        return None

    def append(event: ProgressEvent) -> None:
        with open(
            path, "a", encoding="utf-8"
        ) as stream:  # one short line per write: O_APPEND keeps lines whole
            stream.write(json.dumps(asdict(event)) + "\n")

    return append


class _Events:
    """``update(done, note)`` turned into events, at most a few a second and always the last one."""

    EVERY_S = 0.25

    def __init__(self, task: str, total: int | None, unit: str, listener: ProgressCallback) -> None:
        self.task, self.total, self.unit, self.listener = task, total, unit, listener
        self.start = time.monotonic()
        self.last_sent = -1.0
        self.done, self.note = 0, ""

    def __call__(self, done: int, note: str = "") -> None:
        self.done, self.note = done, note
        now = time.monotonic()
        if now - self.last_sent >= self.EVERY_S or (self.total is not None and done >= self.total):
            self.send(now)

    def send(self, now: float, finished: bool = False) -> None:
        self.last_sent = now
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 and self.done else None
        left = (self.total - self.done) / rate if rate and self.total is not None else None
        self.listener(
            ProgressEvent(self.task, self.done, self.total, self.unit, rate, left, self.note, finished)
        )


def relay_events(path: Path, callback: ProgressCallback, stop: threading.Event) -> None:
    """Pass the events another process appends to ``path`` on to ``callback`` until ``stop``."""
    offset = 0
    while True:
        stopping = stop.is_set()
        with path.open("rb") as stream:
            stream.seek(offset)
            data = stream.read()
        complete = data[: data.rfind(b"\n") + 1]
        offset += len(complete)
        for line in complete.splitlines():
            try:
                callback(ProgressEvent(**json.loads(line)))
            except (ValueError, TypeError):
                continue
        if stopping:
            return
        stop.wait(0.2)


class _RateColumn(ProgressColumn):
    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:6.1f} {self.unit}/s" if speed else f"    ? {self.unit}/s", style="cyan")


@contextmanager
def progress_bar(description: str, total: int | None, unit: str = "frames") -> Iterator[Callable[..., None]]:
    """Yield ``update(done, note="")``; the bar shows done/total, rate, elapsed, time left and the note
    (training's losses, say). With a listener (see :func:`reporting_to`) it gets events instead."""
    listener = _listener.get() or _file_listener()
    if listener is not None:
        events = _Events(description, total, unit, listener)
        events.send(time.monotonic())
        try:
            yield events
        finally:
            events.send(time.monotonic(), finished=True)
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        _RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
    )
    if not _console.is_terminal:
        yield _LogLines(description, total, unit)
        return
    with Progress(*columns, console=_console, transient=False) as bar:
        task = bar.add_task(description, total=total, note="")
        yield lambda done, note="": bar.update(task, completed=done, note=note)


class _LogLines:
    """Progress for logs (``dvc repro``, CI): a plain line every 30 s, only for work that long."""

    EVERY_S = 30.0

    def __init__(self, description: str, total: int | None, unit: str) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.start = self.last = time.monotonic()

    def __call__(self, done: int, note: str = "") -> None:
        now = time.monotonic()
        if now - self.last < self.EVERY_S:
            return
        self.last = now
        rate = done / (now - self.start)
        of = f"/{self.total}" if self.total else ""
        left = f", {_clock((self.total - done) / rate)} left" if self.total and rate else ""
        _console.print(
            f"{self.description}: {done}{of} {self.unit}, {rate:.2f} {self.unit}/s{left}  {note}".rstrip(),
            highlight=False,
            soft_wrap=True,
        )


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def say(message: str) -> None:
    """A line for the user: never read as rich markup (it quotes names and card text)."""
    _console.print(terminal(message), highlight=False, soft_wrap=True, markup=False)


def console(renderable: object) -> None:
    """Print a table or other rich object to standard output."""
    Console().print(renderable)
