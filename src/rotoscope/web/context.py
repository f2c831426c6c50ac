"""What a running web studio holds: the studio, its job runner, and the frame and thumbnail lookups.

One :class:`WebStudio` per server, built by :func:`rotoscope.web.app.create_app` and handed to each
request through FastAPI's dependency injection.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import Request
from PIL import Image

from rotoscope import manifest as manifests
from rotoscope.errors import BusyError, NotFoundError, RotoscopeError
from rotoscope.jobs import JobRunner, JobStore
from rotoscope.store import BlobStore, atomic_write_bytes, md5_file
from rotoscope.studio import Studio
from rotoscope.web.uploads import UploadLimits

MAX_THUMB_SOURCE_PIXELS = 80_000_000


class FrameBlobs:
    """Frames by md5: the DVC cache first, then the work tree's frame files (named by the work
    tree's manifests, read again whenever one of them changes)."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.store = BlobStore(studio.root)
        self._index: dict[str, Path] = {}
        self._stamp: tuple[tuple[str, int], ...] = ()
        self._checked: dict[tuple[str, int, int], str] = {}  # work-tree files hashed: (path, mtime, size)
        self._lock = threading.Lock()

    def find(self, md5: str) -> Path:
        cached = self.store.cache_path(md5)  # refuses anything but 32 hex digits
        if _plain_file_inside(cached, self.store.cache_dir):  # a committed symlink there is not a blob
            return cached
        path = self._worktree().get(md5)
        if path is None or not path.is_file():
            raise NotFoundError(md5, "no frame with this md5 in the cache or the work tree (fetch it first)")
        if not self._holds(path, md5):  # a manifest may claim any md5 for any file
            raise NotFoundError(md5, "the work tree's frame does not have this md5")
        return path

    def _holds(self, path: Path, md5: str) -> bool:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            known = self._checked.get(key)
        if known is None:
            known = md5_file(path)
            with self._lock:
                self._checked[key] = known
        return known == md5

    def _worktree(self) -> dict[str, Path]:
        paths = self.studio.manifest_paths()
        stamp = tuple((str(path), path.stat().st_mtime_ns) for path in paths)
        with self._lock:
            if stamp != self._stamp:
                index: dict[str, Path] = {}
                for path in paths:
                    try:
                        manifest = manifests.load(path)
                        for frame in manifest.frames:
                            index.setdefault(frame.md5, manifest.frame_path(self.studio.root, frame))
                    except RotoscopeError:
                        continue  # a hostile or broken manifest names no frames
                self._index, self._stamp = index, stamp
            return self._index


class Thumbnails:
    """Web-sized JPEGs of frames and style images, made once and kept under ``.rotoscope/thumbs``."""

    def __init__(self, studio: Studio) -> None:
        self.folder = studio.layout.scratch("thumbs")

    def _target(self, key: str) -> Path:
        """Where a made picture is kept; anything but a plain file there (a committed link) is
        removed, never followed."""
        target = self.folder / key
        if target.is_symlink():
            target.unlink()
        elif target.exists() and not target.is_file():
            raise RotoscopeError(key, "not a picture the studio made")
        return target

    def frame(self, blobs: FrameBlobs, md5: str, width: int) -> bytes:
        return self._made(f"{md5}-{width}.jpg", lambda: blobs.find(md5), width)

    def style(self, studio: Studio, name: str) -> bytes:
        card = studio.filter_card(name)
        from rotoscope.filters.catalogue import filter_entry

        entry = filter_entry(studio, name)
        return self._made(f"style-{card.style['md5']}-640.jpg", lambda: entry.style, 640)

    def photo(self, path: Path, md5: str, width: int) -> bytes:
        return self._made(f"photo-{md5}-{width}.jpg", lambda: path, width)

    def painted(self, key: str, paint: Callable[[], bytes]) -> bytes:
        """A picture made by ``paint`` once per ``key`` (which names everything it depends on)."""
        target = self._target(key)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            pass
        data = paint()
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)
        return data

    def _made(self, key: str, source: Callable[[], Path], width: int) -> bytes:
        target = self._target(key)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            pass
        path: Path = source()
        try:
            with Image.open(path) as picture:
                if picture.width * picture.height > MAX_THUMB_SOURCE_PIXELS:
                    raise RotoscopeError(key, "picture too large to show")
                picture.draft("RGB", (width, width * 4))
                thumb = picture.convert("RGB")
        except FileNotFoundError:
            raise NotFoundError(key, "not in the studio (fetch it first)") from None
        except (OSError, ValueError, Image.DecompressionBombError):
            raise RotoscopeError(key, "not a picture") from None
        thumb.thumbnail((width, width * 4), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        thumb.save(buffer, "JPEG", quality=88)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, buffer.getvalue())
        return buffer.getvalue()


def _plain_file_inside(path: Path, folder: Path) -> bool:
    """A regular file, reached without a symlink, inside ``folder`` once resolved."""
    try:
        return path.is_file() and not path.is_symlink() and path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


class WebStudio:
    def __init__(self, studio: Studio, runner: JobRunner, limits: UploadLimits | None = None) -> None:
        self.studio = studio
        self.runner = runner
        self.limits = limits or UploadLimits()
        self.blobs = FrameBlobs(studio)
        self.thumbnails = Thumbnails(studio)
        self._writer = threading.Lock()

    @classmethod
    def open(cls, root: Path, limits: UploadLimits | None = None) -> WebStudio:
        studio = Studio.find(root)
        return cls(studio, JobRunner(JobStore(studio.layout)), limits)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """One quick write (params.yaml, a card) at a time; refused while a job writes the studio."""
        if not self._writer.acquire(blocking=False):
            raise BusyError(self.studio.params_path, "another change is being written; try again")
        try:
            yield
        finally:
            self._writer.release()


def web_studio(request: Request) -> WebStudio:
    return request.app.state.web_studio
