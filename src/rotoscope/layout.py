"""The one owner of a studio's layout: where every file lives, and that it stays inside.

Names from ``params.yaml`` and paths from manifests and cards arrive through Git from anyone, and
a committed symlink (``quality/<video>``, ``renders``, ``.rotoscope``) can point anywhere. So every
path the code reads, writes or deletes comes from here: built from checked names, resolved
(symlinks followed), and refused when it leaves the studio. Deletes happen only inside the
studio's own generated folders.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from rotoscope.errors import OutsideStudioError, ParamsError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
NAME_RULE = "use 1-64 letters, digits, '-' or '_', starting with a letter or digit (no '/', '.' or '..')"
SCRATCH = ".rotoscope"  # the studio's own working state: never tracked, safe to delete
_DELETABLE = ("frames", "renders", "quality", SCRATCH)  # generated folders, remade by `dvc repro`


def check_name(name: object, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):  # match's $ would let "a\n" through
        raise ParamsError(None if not isinstance(name, str) else name, f"invalid {what}: {NAME_RULE}")
    return name


class Layout:
    """Paths inside one studio. Every accessor checks its names and resolves its result."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    # -- confinement -----------------------------------------------------------------------------
    def inside(self, path: Path | str, what: str = "path") -> Path:
        """``path`` (relative to the studio, or absolute) resolved through any symlinks; refused
        unless it stays inside the studio."""
        candidate = Path(path)
        if not candidate.is_absolute():
            candidate = self.root / candidate
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            raise OutsideStudioError(path, f"{what} cannot be resolved (a symlink loop?)") from None
        if not resolved.is_relative_to(self.root):
            raise OutsideStudioError(path, f"{what} leads outside the studio ({self.root})")
        return resolved

    def recorded(self, relative: str, what: str) -> Path:
        """A path written in a tracked file (a manifest's ``frames_dir``, a card's ``style``...):
        relative, without '..', and inside the studio once resolved."""
        parts = Path(relative).parts
        if not relative or Path(relative).is_absolute() or ".." in parts:
            raise OutsideStudioError(relative, f"{what} must be a path inside the studio")
        return self.inside(relative, what)

    def output(self, path: Path) -> Path:
        """Where to write a file the user named on the command line. Outside the studio it is the
        user's own choice; a path that names a place inside the studio (``renders/v/r.mp4``, as
        dvc.yaml writes) must stay inside once resolved: a committed symlink cannot move it out."""
        absolute = Path(os.path.abspath(path))
        if absolute.is_relative_to(self.root):
            return self.inside(absolute, "output")
        return absolute

    def relative(self, path: Path) -> str:
        return self.inside(path).relative_to(self.root).as_posix()

    def deletable(self, path: Path) -> Path:
        """``path`` with its folder resolved, if it lies in one of the studio's generated folders
        (frames, renders, quality, scratch) that ``dvc repro`` or a re-run makes again."""
        target = Path(path) if Path(path).is_absolute() else self.root / path
        parent = self.inside(target.parent)
        top = (parent / target.name).relative_to(self.root).parts
        if len(top) < 2 or top[0] not in _DELETABLE:
            raise OutsideStudioError(path, "refusing to delete outside the studio's generated folders")
        return parent / target.name

    def remove_tree(self, path: Path) -> None:
        """Delete a generated folder or file; a symlink is removed, never followed."""
        target = self.deletable(path)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)

    # -- tracked files ---------------------------------------------------------------------------
    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def dvc_yaml(self) -> Path:
        return self.root / "dvc.yaml"

    def video_file(self, name: str, suffix: str) -> Path:
        return self.inside(f"videos/{check_name(name, 'video name')}{suffix}")

    def manifests_dir(self) -> Path:
        return self.inside("manifests")

    def manifest(self, video: str, kind: str = "source") -> Path:
        return self.inside(
            f"manifests/{check_name(video, 'video name')}/{check_name(kind, 'render name')}.json"
        )

    def frames_dir(self, video: str, kind: str = "source") -> Path:
        return self.inside(self.frames_dir_record(video, kind))

    @staticmethod
    def frames_dir_record(video: str, kind: str = "source") -> str:
        """The frames folder as a manifest records it (as named, not where a link leads)."""
        return f"frames/{check_name(video, 'video name')}/{check_name(kind, 'render name')}"

    def render(self, video: str, kind: str = "source") -> Path:
        return self.inside(f"renders/{check_name(video, 'video name')}/{check_name(kind, 'render name')}.mp4")

    def quality_dir(self, video: str) -> Path:
        return self.inside(f"quality/{check_name(video, 'video name')}")

    def photos_dir(self) -> Path:
        """The studio's test photos: the rows of the web studio's photos x filters grid."""
        return self.inside("photos")

    def filter_dir(self, name: str) -> Path:
        return self.inside(f"filters/{check_name(name, 'filter name')}")

    # -- the studio's own state (never tracked) --------------------------------------------------
    def scratch(self, *parts: str) -> Path:
        for part in parts:
            if part in ("", ".", "..") or "/" in part:
                raise OutsideStudioError(part, "not a name inside the studio's scratch folder")
        return self.inside(Path(SCRATCH, *parts))

    def partial_dir(self, job: str) -> Path:
        """Scratch space for a job that may be killed and resumed; never a DVC output."""
        return self.scratch("partial", job)

    def segments_dir(self) -> Path:
        return self.scratch("segments")

    def log(self, job: str) -> Path:
        folder = self.scratch("logs")
        folder.mkdir(parents=True, exist_ok=True)
        return self.inside(folder / f"{job}.json")

    def stylized_index(self) -> Path:
        return self.scratch("stylized", "index")

    def stylized_blobs(self) -> Path:
        return self.scratch("stylized", "blobs")

    def ledger_file(self, worker: str) -> Path:
        """One worker's record of the paintings it made (``host:pid``: one writer a file)."""
        return self.scratch("ledger", worker.replace(":", "-").replace("/", "-") + ".jsonl")

    def ledger_dir(self) -> Path:
        return self.scratch("ledger")

    def quality_cache(self, video: str, render: str) -> Path:
        return self.scratch(
            "quality", check_name(video, "video name"), f"{check_name(render, 'render name')}.json"
        )

    def lock(self, what: str) -> Path:
        folder = self.scratch("locks")
        folder.mkdir(parents=True, exist_ok=True)
        return self.inside(folder / f"{what}.lock")
