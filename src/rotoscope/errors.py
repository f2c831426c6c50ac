"""The errors users see: a path and what is wrong with it, printed on one line.

Every refusal of bad input is a :class:`RotoscopeError`; its subclasses say which kind of input
was wrong, so callers (the CLI, a test, a future HTTP API) can tell them apart without parsing
the message. Nothing else should reach a user: the CLI turns anything else into one line too.
"""

from __future__ import annotations

import errno
from pathlib import Path


class RotoscopeError(Exception):
    """A problem with the user's input or studio, reported as ``path: problem``."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = _one_line(str(path)) if path is not None else None
        self.problem = _one_line(problem)
        super().__init__((self.path and f"{self.path}: {self.problem}") or self.problem)

    def __reduce__(self):  # pickled back from a cluster worker with both parts, not the message
        return (type(self), (self.path, self.problem))


class ParamsError(RotoscopeError):
    """``params.yaml`` (or a command-line value bound for it) is not a valid studio configuration."""


class ManifestError(RotoscopeError):
    """A manifest is malformed or inconsistent."""


class CardError(RotoscopeError):
    """A filter card is malformed."""


class MediaError(RotoscopeError):
    """A video, picture or encoder setting that cannot be read or written."""


class MissingBlobError(RotoscopeError):
    """A frame, model or video that should be in the work tree or the DVC cache is not."""


class RefusedModelError(RotoscopeError):
    """A model file that is damaged, hostile, or past the reader's limits."""


class OutsideStudioError(RotoscopeError):
    """A path (named in a tracked file, or reached through a symlink) that leaves the studio."""


class NotFoundError(RotoscopeError):
    """Something asked for by name that the studio does not hold (a job, a manifest, a frame)."""


class BusyError(RotoscopeError):
    """Another rotoscope command is writing the same video or render."""


class StorageError(RotoscopeError):
    """The disk refused a write: full, read-only, or not permitted."""


def _one_line(text: str) -> str:
    """Whitespace (newlines included) collapsed, control characters dropped: a message quotes
    untrusted text (a name from params.yaml, a card's title) and must not move the terminal."""
    shown = "".join(ch if ch.isprintable() or ch == " " else " " for ch in text)
    return " ".join(shown.split())


_STORAGE_PROBLEMS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for this filesystem or limit",
    errno.EROFS: "read-only filesystem",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def storage_error(error: OSError) -> RotoscopeError:
    """An operating system error as one line naming the file: ``disk full``, ``read-only``..."""
    problem = _STORAGE_PROBLEMS.get(error.errno or 0, error.strerror or type(error).__name__)
    kind = StorageError if error.errno in _STORAGE_PROBLEMS else RotoscopeError
    path = error.filename if error.filename is not None else None
    return kind(path, f"{problem}; nothing finished was lost, free space or fix it and run again")
