"""Uploads: a request body streamed into the studio's scratch folder, never held in memory,
refused the moment it passes its limit; the file then goes through the same checks as the CLI's."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from enum import Enum
from pathlib import Path, PurePosixPath

from starlette.requests import ClientDisconnect, Request

from rotoscope.errors import RotoscopeError
from rotoscope.web.context import WebStudio


class UploadLimits(Enum):
    """The largest body and the file types each kind of upload takes."""

    VIDEO = (8 << 30, (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"))
    PICTURE = (256 << 20, (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"))

    @property
    def max_bytes(self) -> int:
        return self.value[0]

    @property
    def suffixes(self) -> tuple[str, ...]:
        return self.value[1]


class TooLarge(RotoscopeError):
    """An upload over its limit (a 413)."""


def upload_name(filename: str, limits: UploadLimits) -> str:
    """The upload's file name, from its last part only (a name is never a path here), in plain
    letters; its suffix must be one this kind of upload takes."""
    last = PurePosixPath(filename.replace("\\", "/")).name
    suffix = PurePosixPath(last).suffix.lower()
    if suffix not in limits.suffixes:
        raise RotoscopeError(filename[:80], f"not a file type this takes ({', '.join(limits.suffixes)})")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", PurePosixPath(last).stem).strip("-")[:64] or "upload"
    return stem + suffix


@contextlib.asynccontextmanager
async def received(
    request: Request, here: WebStudio, filename: str, limits: UploadLimits
) -> AsyncIterator[Path]:
    """Yield the uploaded body as a file under ``.rotoscope/uploads/``; removed afterwards."""
    name = upload_name(filename, limits)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
        raise TooLarge(filename[:80], f"over the {limits.max_bytes:,}-byte limit for this upload")
    folder = here.studio.layout.scratch("uploads", secrets.token_hex(8))
    folder.mkdir(parents=True)
    path = folder / name
    try:
        written = 0
        with path.open("xb") as out:
            try:
                async for chunk in request.stream():
                    written += len(chunk)
                    if written > limits.max_bytes:
                        raise TooLarge(
                            filename[:80], f"over the {limits.max_bytes:,}-byte limit for this upload"
                        )
                    out.write(chunk)
            except ClientDisconnect:
                raise RotoscopeError(filename[:80], "the upload was cut off") from None
        if written == 0:
            raise RotoscopeError(filename[:80], "empty upload")
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            folder.rmdir()
