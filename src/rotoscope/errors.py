"""The one error type users see: a path and what is wrong with it, printed on one line."""

from __future__ import annotations

from pathlib import Path


class RotoscopeError(Exception):
    """A problem with the user's input or studio, reported as ``path: problem``."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = str(path) if path is not None else None
        self.problem = " ".join(problem.split())  # keep it on one line
        super().__init__((self.path and f"{self.path}: {self.problem}") or self.problem)
