"""Content addressing and safe writes: a blob's identity is the md5 DVC stores it under.

DVC 3 keys every file in its cache by the plain md5 of its bytes
(``<cache>/files/md5/ab/cdef...``); manifests record that same md5, so any frame can be found in
the work tree, the cache or a remote. The one index of our own, :class:`FrameReuse`, answers
"was this frame already stylized this way?" by naming a blob that DVC (or we) still hold.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rotoscope.errors import ManifestError, RotoscopeError

if TYPE_CHECKING:
    from dvc.repo import Repo

    from rotoscope.layout import Layout

_CHUNK = 1 << 20
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_UMASK = os.umask(0)
os.umask(_UMASK)


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def temp_beside(path: Path) -> Iterator[Path]:
    """A temporary file in the target's folder, so the final rename stays on one filesystem.

    It keeps the target's extension, so tools that pick a file format by name still can.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    temp = Path(name)
    os.chmod(temp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a finished file gets the usual mode
    try:
        yield temp
    finally:
        temp.unlink(missing_ok=True)


def clear_killed_writes(path: Path) -> None:
    """Remove the temporary twins of ``path`` that a killed writer left behind.

    Only for a caller that holds the lock of whatever owns ``path``: no other run can be
    writing one of them now.
    """
    if path.parent.is_dir():
        for leftover in path.parent.glob(f".{glob.escape(path.stem)}.*.partial{path.suffix}"):
            leftover.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` holds either its old content or all of the new."""
    with temp_beside(path) as temp:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)


def append_line(path: Path, line: str) -> None:
    """``line`` added at the end of a log file, never through a link (a fork may commit one
    where a log goes): one small write with O_APPEND, so writers in other processes interleave
    whole lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(source: Path, target: Path) -> None:
    with temp_beside(target) as temp:
        shutil.copyfile(source, temp)
        os.replace(temp, target)


def replace_dir(staged: Path, target: Path) -> None:
    """Swap a fully written folder into place; the old one is removed only after the swap.
    (Callers pass folders :class:`rotoscope.layout.Layout` resolved and checked as deletable.)"""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        trash = target.with_name(f".{target.name}.old")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(target, trash)
        os.replace(staged, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staged, target)


BlobState = Literal["ok", "missing", "corrupt"]


@dataclass(frozen=True)
class BlobCheck:
    md5: str
    state: BlobState
    where: Path | None  # the file that holds (or wrongly holds) the blob


_SYSTEM_DVC_CONFIG = Path("/etc/xdg/dvc/config")


class BlobStore:
    """Where a studio's blobs live: its work tree and its DVC cache."""

    def __init__(self, studio_root: Path) -> None:
        self.root = studio_root
        self._cache_dir: Path | None = None

    @property
    def cache_dir(self) -> Path:
        if self._cache_dir is None:
            self._cache_dir = self._default_cache_dir() or self._configured_cache_dir()
        return self._cache_dir

    def _default_cache_dir(self) -> Path | None:
        """DVC's default cache folder when no config level moves it: asking DVC itself costs
        half a second of imports, more than an incremental stylize run has to spend."""
        dvc_dir = self.root / ".dvc"
        if not dvc_dir.is_dir():
            return None
        home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        configs = [dvc_dir / "config", dvc_dir / "config.local", home / "dvc" / "config", _SYSTEM_DVC_CONFIG]
        for config in configs:
            try:
                if "[cache]" in config.read_text().replace(" ", ""):
                    return None
            except OSError:
                continue
        return dvc_dir / "cache" / "files" / "md5"

    def _configured_cache_dir(self) -> Path:
        from dvc.repo import Repo  # slow import

        with Repo(str(self.root)) as repo:
            return Path(repo.cache.local.path)

    def cache_path(self, md5: str) -> Path:
        """Where the cache holds ``md5``: only ever a 32-digit hex name (manifests come from anyone)."""
        if not isinstance(md5, str) or not _MD5.match(md5):
            raise ManifestError(None, f"not an md5 (32 hex digits): {str(md5)[:40]!r}")
        return self.cache_dir / md5[:2] / md5[2:]

    def check(self, md5: str, worktree_path: Path) -> BlobCheck:
        """Find ``md5`` in the work tree first, then in the cache, hashing what is found."""
        for candidate in (worktree_path, self.cache_path(md5)):
            if candidate.is_file():
                state: BlobState = "ok" if md5_file(candidate) == md5 else "corrupt"
                return BlobCheck(md5, state, candidate)
        return BlobCheck(md5, "missing", None)


def require_file(path: Path, what: str = "file") -> Path:
    if not path.exists():
        raise RotoscopeError(path, f"no such {what}")
    if not path.is_file():
        raise RotoscopeError(path, f"not a {what} (a folder or special file)")
    if path.stat().st_size == 0:
        raise RotoscopeError(path, f"empty {what} (0 bytes)")
    return path


# -- the DVC repository around the blobs ---------------------------------------------------------


def _dvc_repo(root: Path) -> Repo:  # imported lazily: importing DVC takes a second
    from dvc.repo import Repo

    return Repo(str(root))


def dvc_init(root: Path, *, subdir: bool) -> None:
    """Initialise DVC in ``root`` unless it already is; quiet: no analytics, no update checks."""
    from dvc.repo import Repo

    if not (root / ".dvc").is_dir():
        Repo.init(str(root), subdir=subdir)
    with _dvc_repo(root) as repo, repo.config.edit() as config:
        config["core"]["analytics"] = False
        config["core"]["check_update"] = False
        config["core"]["autostage"] = True  # DVC's pointer files reach the Git index by themselves


def dvc_track(root: Path, *paths: Path) -> None:
    """``dvc add`` files: their blobs go to the cache, a ``.dvc`` pointer each goes to Git."""
    with _dvc_repo(root) as repo:
        repo.add([str(path) for path in paths])


def dvc_default_remote(root: Path) -> str | None:
    with _dvc_repo(root) as repo:
        name = repo.config["core"].get("remote")
        return repo.config["remote"].get(name, {}).get("url") if name else None


def dvc_set_default_remote(root: Path, name: str, url: str) -> None:
    with _dvc_repo(root) as repo, repo.config.edit() as config:
        config["remote"][name] = {"url": url}
        config["core"]["remote"] = name


def dvc_pull_files(root: Path, paths: list[Path], remote: str | None) -> None:
    """Fetch and check out only these files of DVC-tracked folders (a granular pull)."""
    targets = [str(path.relative_to(root)) for path in paths]
    with _dvc_repo(root) as repo:
        try:
            repo.pull(targets=targets, remote=remote)
        except Exception as error:  # DVC's errors name the remote and the cause
            raise RotoscopeError(root, f"pull failed: {error}") from None


def dvc_fetch_files(root: Path, paths: list[Path], rev: str, remote: str | None) -> None:
    """Bring only these files (as they are at Git revision ``rev``) into the DVC cache."""
    targets = [str(path.relative_to(root)) for path in paths]
    with _dvc_repo(root) as repo:
        try:
            repo.fetch(targets=targets, revs=[rev], remote=remote, workspace=False)
        except Exception as error:  # DVC's errors name the remote and the cause
            raise RotoscopeError(root, f"fetch failed: {error}") from None


_S3_URL = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")  # S3's bucket naming rules


def dvc_add_s3_remote(root: Path, name: str, url: str, endpoint_url: str | None, default: bool) -> None:
    """An S3 remote in ``.dvc/config`` (in Git). Credentials are never written there: DVC reads
    them from the usual AWS sources (environment, ~/.aws, an instance role)."""
    config = root / ".dvc" / "config"
    if not _S3_URL.match(url):
        raise RotoscopeError(config, f"an S3 remote URL looks like s3://bucket/prefix, not {url!r}")
    if endpoint_url is not None and not endpoint_url.startswith(("http://", "https://")):
        raise RotoscopeError(config, f"--endpoint-url must be http(s)://host:port, not {endpoint_url!r}")
    settings: dict[str, str] = {"url": url}
    if endpoint_url:
        settings["endpointurl"] = endpoint_url
    with _dvc_repo(root) as repo, repo.config.edit() as config:
        config["remote"][name] = settings
        if default:
            config["core"]["remote"] = name


class FrameReuse:
    """Stylized frames already made, found by what made them: (source md5, model md5, look).

    DVC deletes a stage's outputs before it runs the stage again, so the answers live outside
    them: an index entry per key under ``.rotoscope/stylized/index/`` names the result's md5, and
    the result's bytes are in the DVC cache once ``dvc repro`` has committed them, or in
    ``.rotoscope/stylized/blobs/`` until then (a run killed before DVC commits loses nothing).
    """

    def __init__(self, layout: Layout) -> None:
        self.blobs = BlobStore(layout.root)
        self.index_dir = layout.stylized_index()
        self.blob_dir = layout.stylized_blobs()

    @staticmethod
    def key(source_md5: str, model_md5: str, look: dict[str, object]) -> str:
        what = {"source": source_md5, "model": model_md5, **look}
        return md5_bytes(json.dumps(what, sort_keys=True).encode())

    def find(self, key: str) -> tuple[Path, str, int] | None:
        """The file holding ``key``'s result, its md5 and size; None if never made or since lost."""
        entry = self.index_dir / key[:2] / key
        if not entry.is_file():
            return None
        try:  # our own file, but a torn or edited one must mean "not found", not a crash
            md5, size = entry.read_text().split()
            int(size)
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        if not _MD5.match(md5):
            return None
        for candidate in (self.blobs.cache_path(md5), self.blob_dir / md5):
            if candidate.is_file() and candidate.stat().st_size == int(size):
                return candidate, md5, int(size)
        return None

    def keep(self, key: str, made: Path) -> tuple[Path, str, int]:
        """Move a freshly made file into the blob folder and index it under ``key``."""
        with open(made, "rb") as handle:  # on disk before the index points at it
            os.fsync(handle.fileno())
        md5, size = md5_file(made), made.stat().st_size
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        blob = self.blob_dir / md5
        os.replace(made, blob)
        entry = self.index_dir / key[:2] / key
        entry.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(entry, f"{md5} {size}\n")
        return blob, md5, size

    def tidy(self) -> None:
        """Drop blob copies that the DVC cache now holds, and what killed runs left half-written
        (an hour on: a run beside this one may still be writing)."""
        if not self.blob_dir.is_dir():
            return
        stale_before = time.time() - 3600
        for blob in self.blob_dir.iterdir():
            if blob.name.startswith("."):
                if ".partial" in blob.name and blob.stat().st_mtime < stale_before:
                    blob.unlink(missing_ok=True)
            elif self.blobs.cache_path(blob.name).is_file():
                blob.unlink(missing_ok=True)
