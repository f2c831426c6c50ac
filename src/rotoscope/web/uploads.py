"""Uploads: a request body streamed into the studio's scratch folder, never held in memory,
refused the moment it passes its limit; the file then goes through the same checks as the CLI's."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal

from starlette.requests import ClientDisconnect, Request

from rotoscope.errors import RotoscopeError

if TYPE_CHECKING:
    from rotoscope.web.context import WebStudio


UploadKind = Literal["video", "picture", "archive"]
SUFFIXES: dict[UploadKind, tuple[str, ...]] = {
    "video": (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"),
    "picture": (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"),
    "archive": (".rotoscope-filter",),
}


@dataclass(frozen=True)
class UploadLimits:
    """The largest body each kind of upload may have."""

    video_bytes: int = 8 << 30
    picture_bytes: int = 256 << 20

    def max_bytes(self, kind: UploadKind) -> int:
        return self.video_bytes if kind in ("video", "archive") else self.picture_bytes


class TooLarge(RotoscopeError):
    """An upload over its limit (a 413)."""


def upload_name(filename: str, kind: UploadKind) -> str:
    """The upload's file name, from its last part only (a name is never a path here), in plain
    letters; its suffix must be one this kind of upload takes."""
    last = PurePosixPath(filename.replace("\\", "/")).name
    suffix = PurePosixPath(last).suffix.lower()
    if suffix not in SUFFIXES[kind]:
        raise RotoscopeError(filename[:80], f"not a file type this takes ({', '.join(SUFFIXES[kind])})")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", PurePosixPath(last).stem).strip("-")[:64] or "upload"
    return stem + suffix


@contextlib.asynccontextmanager
async def received(request: Request, here: WebStudio, filename: str, kind: UploadKind) -> AsyncIterator[Path]:
    """Yield the uploaded body as a file under ``.rotoscope/uploads/``; removed afterwards."""
    name = upload_name(filename, kind)
    limit = here.limits.max_bytes(kind)
    too_large = f"over the {limit:,}-byte limit for this upload"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(filename[:80], too_large)
    folder = here.studio.layout.scratch("uploads", secrets.token_hex(8))
    folder.mkdir(parents=True)
    path = folder / name
    try:
        written = 0
        with path.open("xb") as out:
            try:
                async for chunk in request.stream():
                    written += len(chunk)
                    if written > limit:
                        raise TooLarge(filename[:80], too_large)
                    out.write(chunk)
            except ClientDisconnect:
                raise RotoscopeError(filename[:80], "the upload was cut off") from None
        if written == 0:
            raise RotoscopeError(filename[:80], "empty upload")
        try:
            yield path
        except RotoscopeError as error:  # name the file as the user sent it, not our scratch copy
            if error.path is None or not error.path.endswith(str(path)):
                raise
            raise type(error)(filename[:80], error.problem) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            folder.rmdir()
