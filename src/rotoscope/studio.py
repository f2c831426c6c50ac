"""A studio: the Git + DVC repository that holds videos, manifests, filters and the pipeline.

This module owns the studio's layout and its ``params.yaml``; it talks to Git and DVC through
their Python APIs (GitPython, ``dvc.repo.Repo``).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML

from rotoscope import manifest as manifests
from rotoscope import schemas
from rotoscope.errors import RotoscopeError
from rotoscope.media import FORMATS, EncodeSettings, probe
from rotoscope.store import (
    atomic_copy,
    atomic_write_text,
    dvc_default_remote,
    dvc_init,
    dvc_set_default_remote,
    dvc_track,
    md5_file,
)

if TYPE_CHECKING:
    from rotoscope.temporal import TemporalSettings

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
DEFAULT_REMOTE_NAME = "local"


def check_name(name: str, what: str = "name") -> str:
    if not _NAME.match(name):
        raise RotoscopeError(
            name,
            f"invalid {what}: use 1-64 letters, digits, '-' or '_', starting with a letter or "
            "digit (no '/', '.' or '..')",
        )
    return name


def name_from_path(path: Path) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem).strip("-_")
    return slug[:64] or "video"


@dataclass(frozen=True)
class SplitSettings:
    fps: float | None  # None keeps every frame
    max_side: int | None
    format: str
    quality: int

    @classmethod
    def from_params(cls, section: dict[str, Any], where: Path) -> SplitSettings:
        fps = section.get("fps", "source")
        if fps != "source" and not (isinstance(fps, int | float) and fps > 0):
            raise RotoscopeError(where, f"split.fps must be 'source' or a positive number, not {fps!r}")
        max_side = section.get("max_side")
        if max_side is not None and not (isinstance(max_side, int) and max_side >= 2):
            raise RotoscopeError(where, f"split.max_side must be null or an integer >= 2, not {max_side!r}")
        fmt = section.get("format", "jpg")
        if fmt not in FORMATS:
            raise RotoscopeError(where, f"split.format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        quality = section.get("quality", 95)
        if not (isinstance(quality, int) and 1 <= quality <= 100):
            raise RotoscopeError(where, f"split.quality must be an integer 1-100, not {quality!r}")
        return cls(None if fps == "source" else float(fps), max_side, fmt, quality)

    def as_manifest_extract(self) -> dict[str, Any]:
        fps: float | str = "source" if self.fps is None else self.fps
        return {
            "fps": fps,
            "max_side": self.max_side,
            "format": self.format,
            "quality": self.quality,
        }


@dataclass(frozen=True)
class RenderJob:
    """One render of ``params.yaml``: a video through a filter, and how its frames are written."""

    name: str
    video: str
    filter: str
    strength: float = 1.0
    preserve_color: bool = False
    max_side: int | None = None
    format: str = "jpg"
    quality: int = 95
    temporal: str = "off"  # off, ema or flow (see rotoscope.temporal)
    temporal_weight: float = 0.7

    @classmethod
    def from_params(cls, name: str, entry: dict[str, Any], shared: dict[str, Any], where: Path) -> RenderJob:
        fields = {**shared, **entry}
        missing = [key for key in ("video", "filter") if not fields.get(key)]
        if missing:
            raise RotoscopeError(where, f"renders.{name} needs {' and '.join(missing)}")
        unknown = sorted(set(fields) - (set(cls.__dataclass_fields__) - {"name"}))
        if unknown:
            raise RotoscopeError(where, f"renders.{name}: unknown keys {unknown}")
        if fields.get("temporal") is False:  # YAML 1.1 readers take a bare `off` for false
            fields["temporal"] = "off"
        job = cls(name=name, **fields)
        job.check(where)
        return job

    def check(self, where: Path) -> None:
        prefix = f"renders.{self.name}"
        if isinstance(self.strength, bool) or not isinstance(self.strength, int | float):
            raise RotoscopeError(where, f"{prefix}.strength must be a number 0-1, not {self.strength!r}")
        if not 0 <= self.strength <= 1:
            raise RotoscopeError(where, f"{prefix}.strength must be between 0 and 1, not {self.strength}")
        if not isinstance(self.preserve_color, bool):
            raise RotoscopeError(where, f"{prefix}.preserve_color must be true or false")
        if self.max_side is not None and not (isinstance(self.max_side, int) and self.max_side >= 16):
            raise RotoscopeError(where, f"{prefix}.max_side must be null or an integer >= 16")
        if self.format not in FORMATS:
            raise RotoscopeError(where, f"{prefix}.format must be one of {', '.join(FORMATS)}")
        if not (isinstance(self.quality, int) and 1 <= self.quality <= 100):
            raise RotoscopeError(where, f"{prefix}.quality must be an integer 1-100")
        try:
            self.temporal_settings()
        except RotoscopeError as error:
            raise RotoscopeError(where, f"{prefix}: {error.problem}") from None

    def temporal_settings(self) -> TemporalSettings:
        from rotoscope.temporal import TemporalSettings  # OpenCV loads only for the jobs that use it

        return TemporalSettings(self.temporal, self.temporal_weight)

    def look(self) -> dict[str, Any]:
        """What decides a stylized frame's pixels and bytes (besides its source and the model)."""
        return {
            "strength": float(self.strength),
            "preserve_color": self.preserve_color,
            "max_side": self.max_side,
            "format": self.format,
            "quality": self.quality,
        }


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def template(name: str) -> str:
    return resources.files("rotoscope").joinpath(f"templates/{name}").read_text()


class Studio:
    """A studio folder: layout, parameters and the videos registered in them."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    # -- finding one -----------------------------------------------------------------------
    @classmethod
    def find(cls, start: Path | None = None) -> Studio:
        here = (start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / "params.yaml").is_file() and (folder / ".dvc").is_dir():
                return cls(folder)
        raise RotoscopeError(here, "not inside a rotoscope studio (run `rotoscope init` first)")

    # -- layout ----------------------------------------------------------------------------
    @property
    def params_path(self) -> Path:
        return self.root / "params.yaml"

    def relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.root).as_posix()

    def manifest_path(self, video: str, kind: str = "source") -> Path:
        return self.root / "manifests" / video / f"{kind}.json"

    def frames_dir(self, video: str, kind: str = "source") -> Path:
        return self.root / "frames" / video / kind

    def render_path(self, video: str, kind: str = "source") -> Path:
        return self.root / "renders" / video / f"{kind}.mp4"

    def partial_dir(self, job: str) -> Path:
        """Scratch space for a job that may be killed and resumed; never a DVC output."""
        return self.root / ".rotoscope" / "partial" / job

    def segments_dir(self) -> Path:
        """Encoded video segments kept for incremental reassembly; never a DVC output."""
        return self.root / ".rotoscope" / "segments"

    def log_path(self, job: str) -> Path:
        """The last run of a job, as JSON (a stylize run's counts, say); never a DVC output."""
        folder = self.root / ".rotoscope" / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{job}.json"

    def manifest_paths(self) -> list[Path]:
        return sorted((self.root / "manifests").glob("*/*.json"))

    # -- parameters ------------------------------------------------------------------------
    def params(self) -> Any:
        try:
            document = _yaml().load(self.params_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RotoscopeError(self.params_path, "missing (run `rotoscope init`)") from None
        except Exception as error:  # ruamel raises many types, all meaning "not valid YAML"
            raise RotoscopeError(self.params_path, f"invalid YAML ({error})") from None
        if not isinstance(document, dict):
            raise RotoscopeError(self.params_path, "must be a mapping of sections")
        return document

    def save_params(self, document: Any) -> None:
        buffer = io.StringIO()
        _yaml().dump(document, buffer)
        atomic_write_text(self.params_path, buffer.getvalue())

    def videos(self, document: Any = None) -> dict[str, Any]:
        return dict((document or self.params()).get("videos") or {})

    def video_entry(self, name: str, document: Any = None) -> dict[str, Any]:
        videos = self.videos(document)
        if name not in videos:
            known = ", ".join(videos) or "none yet; add one with `rotoscope add VIDEO`"
            raise RotoscopeError(self.params_path, f"no video named {name!r} (known: {known})")
        return dict(videos[name])

    def split_job(self, name: str) -> tuple[Path, SplitSettings]:
        """The video file to split and its settings (its own overrides on top of ``split:``)."""
        document = self.params()
        entry = self.video_entry(name, document)
        section = dict(document.get("split") or {})
        section.update(entry.get("split") or {})
        return self.root / entry["file"], SplitSettings.from_params(section, self.params_path)

    def render_job(self, name: str) -> RenderJob:
        document = self.params()
        renders = dict(document.get("renders") or {})
        if name not in renders:
            known = ", ".join(renders) or "none yet; add one with `rotoscope render new`"
            raise RotoscopeError(self.params_path, f"no render named {name!r} (known: {known})")
        shared = dict(document.get("stylize") or {})
        job = RenderJob.from_params(name, dict(renders[name] or {}), shared, self.params_path)
        self.video_entry(job.video, document)
        return job

    def add_render(self, name: str, entry: dict[str, Any]) -> None:
        """Register (or replace) a render, checked before params.yaml is written (the caller checks
        that its filter exists: filters sit above the studio)."""
        check_name(name, "render name")
        if name == "source":
            raise RotoscopeError(self.params_path, "'source' names the split frames; pick another name")
        document = self.params()
        self.video_entry(entry["video"], document)
        RenderJob.from_params(name, entry, dict(document.get("stylize") or {}), self.params_path)
        if document.get("renders") is None:
            document["renders"] = {}
        document["renders"][name] = entry
        self.save_params(document)

    def encode_settings(self) -> EncodeSettings:
        section = dict(self.params().get("reassemble") or {})
        known = set(EncodeSettings.__dataclass_fields__)
        unknown = set(section) - known
        if unknown:
            raise RotoscopeError(self.params_path, f"reassemble: unknown keys {sorted(unknown)}")
        return EncodeSettings(**section)

    # -- videos ----------------------------------------------------------------------------
    def add_video(self, source: Path, name: str | None = None) -> tuple[str, Path]:
        """Copy a video in, track it with DVC and register it; refuses bad files before writing."""
        name = check_name(name or name_from_path(source), "video name")
        probe(source)  # a file we could not split never enters the studio
        target = self.root / "videos" / f"{name}{source.suffix.lower() or '.mp4'}"
        entry = self.videos().get(name)
        if entry is not None and (self.root / entry["file"]) != target:
            raise RotoscopeError(source, f"a video named {name!r} is already registered; pick --name")
        if not (target.exists() and md5_file(target) == md5_file(source)):
            atomic_copy(source, target)
        dvc_track(self.root, target)
        document = self.params()
        if document.get("videos") is None:
            document["videos"] = {}
        document["videos"][name] = {"file": self.relative(target)}
        self.save_params(document)
        return name, target

    def load_manifest(self, video: str, kind: str = "source") -> manifests.Manifest:
        return manifests.load(self.manifest_path(video, kind))


# -- making one ----------------------------------------------------------------------------------

_FOLDERS = ("videos", "manifests", "filters")


def default_remote_for(root: Path) -> Path:
    """A folder beside the studio: outside the work tree, so ``git clean`` never touches it."""
    return root.parent / f"{root.name}-dvc-remote"


def init_studio(root: Path, remote: Path | None = None) -> tuple[Studio, list[str]]:
    """Make ``root`` a studio. Safe to run again: it only adds what is missing, never overwrites."""
    import git

    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    created: list[str] = []
    try:
        repo = git.Repo(root, search_parent_directories=True)
    except git.InvalidGitRepositoryError:
        repo = git.Repo.init(root)
        created.append(".git")
    subdir = Path(repo.working_tree_dir).resolve() != root
    if not (root / ".dvc").is_dir():
        created.append(".dvc")
    dvc_init(root, subdir=subdir)
    for name, text in (
        ("params.yaml", template("params.yaml")),
        ("dvc.yaml", template("dvc.yaml")),
    ):
        if not (root / name).exists():
            atomic_write_text(root / name, text)
            created.append(name)
    created += _ensure_gitignore(root / ".gitignore", template("gitignore"))
    for folder in _FOLDERS:
        keep = root / folder / ".gitkeep"
        if not (root / folder).exists():
            keep.parent.mkdir(parents=True)
            keep.touch()
            created.append(f"{folder}/")
    for schema_file in schemas.schema_names():
        target = root / "schemas" / schema_file
        if not target.exists():
            atomic_write_text(target, schemas.schema_text(schema_file))
            created.append(f"schemas/{schema_file}")
    if dvc_default_remote(root) is None:
        location = (remote or default_remote_for(root)).resolve()
        location.mkdir(parents=True, exist_ok=True)
        dvc_set_default_remote(root, DEFAULT_REMOTE_NAME, str(location))
        created.append(f"remote {DEFAULT_REMOTE_NAME} -> {location}")
    repo.git.add("--", *(str(p) for p in _stageable(root)))
    return Studio(root), created


def _ensure_gitignore(path: Path, wanted: str) -> list[str]:
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    have = set(current.splitlines())
    rules = [line for line in wanted.splitlines() if line and not line.startswith("#")]
    if all(rule in have for rule in rules):
        return []
    prefix = current if not current or current.endswith("\n") else current + "\n"
    missing = [line for line in wanted.splitlines() if line and line not in have]
    atomic_write_text(path, prefix + "\n".join(missing) + "\n")
    return [".gitignore"]


def _stageable(root: Path) -> list[Path]:
    names = [
        ".gitignore",
        "params.yaml",
        "dvc.yaml",
        ".dvc/config",
        ".dvc/.gitignore",
        ".dvcignore",
        "schemas",
        *(f"{folder}/.gitkeep" for folder in _FOLDERS),
    ]
    return [root / name for name in names if (root / name).exists()]
