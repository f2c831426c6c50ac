"""Progress for long work: a bar with frames done, rate and time left, on standard error."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
    (training's losses, say)."""
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
