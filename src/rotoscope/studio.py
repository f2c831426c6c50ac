"""A studio: the Git + DVC repository that holds videos, manifests, filters and the pipeline.

This module owns the studio's layout and its ``params.yaml``; it talks to Git and DVC through
their Python APIs (GitPython, ``dvc.repo.Repo``).
"""

from __future__ import annotations

import io
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rotoscope import manifest as manifests
from rotoscope import params as studio_params
from rotoscope import schemas
from rotoscope.compute import ComputeSettings
from rotoscope.errors import ParamsError, RotoscopeError, storage_error
from rotoscope.layout import Layout, check_name
from rotoscope.media import FORMATS, EncodeSettings, probe
from rotoscope.store import (
    atomic_copy,
    atomic_write_text,
    dvc_default_remote,
    dvc_init,
    dvc_set_default_remote,
    dvc_track,
    md5_bytes,
    md5_file,
)
from rotoscope.timeline import MIX_KEYS, Timeline
from rotoscope.verbs import StudioVerbs
from rotoscope.yamlsafe import round_trip_yaml

if TYPE_CHECKING:
    from rotoscope.temporal import TemporalSettings

DEFAULT_REMOTE_NAME = "local"


def name_from_path(path: Path) -> str:
    """A video's default name: its file name in plain ASCII letters (accents dropped, not the
    letters), with a digest of the whole name when nothing nameable is left."""
    plain = unicodedata.normalize("NFKD", path.stem).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", plain).strip("-_")[:64].strip("-_")
    return slug or f"video-{md5_bytes(path.stem.encode('utf-8', 'surrogatepass'))[:8]}"


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
            raise ParamsError(where, f"split.fps must be 'source' or a positive number, not {fps!r}")
        max_side = section.get("max_side")
        if max_side is not None and not (isinstance(max_side, int) and max_side >= 2):
            raise ParamsError(where, f"split.max_side must be null or an integer >= 2, not {max_side!r}")
        fmt = section.get("format", "jpg")
        if fmt not in FORMATS:
            raise ParamsError(where, f"split.format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        quality = section.get("quality", 95)
        if not (isinstance(quality, int) and 1 <= quality <= 100):
            raise ParamsError(where, f"split.quality must be an integer 1-100, not {quality!r}")
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
    strength: float | list[dict[str, float]] = 1.0  # a number, or keyframes (rotoscope.timeline)
    preserve_color: bool = False
    max_side: int | None = None
    brush: float = 1.0  # the network paints the frame shrunk by this (rotoscope.filters.brush)
    format: str = "jpg"
    quality: int = 95
    temporal: str = "off"  # off, ema or flow (see rotoscope.temporal)
    temporal_weight: float = 0.7
    crossfade: dict[str, Any] | None = None  # {to: filter, start, end}: seconds
    range: dict[str, float] | None = None  # {start, end}: the seconds the filter covers

    @classmethod
    def from_params(cls, name: str, entry: dict[str, Any], shared: dict[str, Any], where: Path) -> RenderJob:
        fields = {**shared, **entry}
        missing = [key for key in ("video", "filter") if not fields.get(key)]
        if missing:
            raise ParamsError(where, f"renders.{name} needs {' and '.join(missing)}")
        unknown = sorted(set(fields) - (set(cls.__dataclass_fields__) - {"name"}))
        if unknown:
            raise ParamsError(where, f"renders.{name}: unknown keys {unknown}")
        if fields.get("temporal") is False:  # YAML 1.1 readers take a bare `off` for false
            fields["temporal"] = "off"
        job = cls(name=name, **fields)
        job.check(where)
        return job

    def check(self, where: Path) -> None:
        prefix = f"renders.{self.name}"
        try:
            timeline = self.timeline()
        except RotoscopeError as error:
            raise ParamsError(where, f"{prefix}.{error.problem}") from None
        if timeline.crossfade is not None and timeline.crossfade.to == self.filter:
            raise ParamsError(where, f"{prefix}.crossfade.to: {self.filter!r} is the render's own filter")
        if not isinstance(self.preserve_color, bool):
            raise ParamsError(where, f"{prefix}.preserve_color must be true or false")
        if self.max_side is not None and not (isinstance(self.max_side, int) and self.max_side >= 16):
            raise ParamsError(where, f"{prefix}.max_side must be null or an integer >= 16")
        if self.format not in FORMATS:
            raise ParamsError(where, f"{prefix}.format must be one of {', '.join(FORMATS)}")
        if not (isinstance(self.quality, int) and 1 <= self.quality <= 100):
            raise ParamsError(where, f"{prefix}.quality must be an integer 1-100")
        from rotoscope.filters.brush import check_brush  # with OpenCV, like temporal_settings

        try:
            check_brush(self.brush)
            self.temporal_settings()
        except RotoscopeError as error:
            raise ParamsError(where, f"{prefix}: {error.problem}") from None

    def temporal_settings(self) -> TemporalSettings:
        from rotoscope.temporal import TemporalSettings  # OpenCV loads only for the jobs that use it

        return TemporalSettings(self.temporal, self.temporal_weight)

    def timeline(self) -> Timeline:
        """The strength, crossfade and range over time; refused with the key at fault."""
        return Timeline.parse(self.strength, self.crossfade, self.range)

    def look(self) -> dict[str, Any]:
        """What decides a stylized frame's pixels and bytes (besides its source and the model(s));
        the crossfade and range only when set, so a render without them keeps its old record."""
        timed = {"crossfade": self.crossfade, "range": self.range}
        return {
            "strength": self._strength_record(),
            "preserve_color": self.preserve_color,
            "max_side": self.max_side,
            "brush": float(self.brush),
            "format": self.format,
            "quality": self.quality,
        } | {key: dict(value) for key, value in timed.items() if value is not None}

    def painting(self) -> dict[str, Any]:
        """What decides a frame's painting (the filter alone, at full strength): the look but for
        how the painting is mixed over time and how the frames are written."""
        skip = {*MIX_KEYS, "format", "quality"}
        return {key: value for key, value in self.look().items() if key not in skip}

    def _strength_record(self) -> float | list[dict[str, float]]:
        if isinstance(self.strength, list):
            return [{"at": float(key["at"]), "value": float(key["value"])} for key in self.strength]
        return float(self.strength)


def template(name: str) -> str:
    return resources.files("rotoscope").joinpath(f"templates/{name}").read_text()


class Studio(StudioVerbs):
    """A studio folder: its layout (:class:`Layout`), its parameters and the videos in them; its
    verbs (split, stylize, filter_make, diff...) come from :class:`~rotoscope.verbs.StudioVerbs`."""

    def __init__(self, root: Path) -> None:
        self.layout = Layout(root)
        self.root = self.layout.root
        self._loaded: tuple[tuple[int, int], Any, studio_params.StudioParams] | None = None

    # -- finding one -----------------------------------------------------------------------
    @classmethod
    def find(cls, start: Path | None = None) -> Studio:
        here = (start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / "params.yaml").is_file() and (folder / ".dvc").is_dir():
                return cls(folder)
        raise RotoscopeError(here, "not inside a rotoscope studio (run `rotoscope init` first)")

    # -- layout (the paths themselves belong to Layout) -------------------------------------
    @property
    def params_path(self) -> Path:
        return self.layout.params

    def relative(self, path: Path) -> str:
        return self.layout.relative(path)

    def manifest_path(self, video: str, kind: str = "source") -> Path:
        return self.layout.manifest(video, kind)

    def frames_dir(self, video: str, kind: str = "source") -> Path:
        return self.layout.frames_dir(video, kind)

    def render_path(self, video: str, kind: str = "source") -> Path:
        return self.layout.render(video, kind)

    def partial_dir(self, job: str) -> Path:
        return self.layout.partial_dir(job)

    def segments_dir(self) -> Path:
        return self.layout.segments_dir()

    def log_path(self, job: str) -> Path:
        return self.layout.log(job)

    def manifest_paths(self) -> list[Path]:
        return sorted(self.layout.inside(p) for p in self.layout.manifests_dir().glob("*/*.json"))

    # -- parameters ------------------------------------------------------------------------
    def _load(self) -> tuple[Any, studio_params.StudioParams]:
        """params.yaml, read and validated once per change of the file."""
        path = self.params_path
        try:
            stat = path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if self._loaded is None or self._loaded[0] != stamp:
                if path.is_symlink() or not path.is_file():
                    raise ParamsError(path, "must be a plain file (not a symlink or folder)")
                document, model = studio_params.parse(path.read_text(encoding="utf-8"), path)
                self._loaded = (stamp, document, model)
        except FileNotFoundError:
            raise ParamsError(path, "missing (run `rotoscope init`)") from None
        except UnicodeDecodeError:
            raise ParamsError(path, "not a text file (invalid UTF-8)") from None
        return self._loaded[1], self._loaded[2]

    def params(self) -> Any:
        """The validated document, comments kept (edit it and :meth:`save_params` it)."""
        return self._load()[0]

    def config(self) -> studio_params.StudioParams:
        """The validated parameters as records."""
        return self._load()[1]

    def params_text(self, document: Any) -> str:
        """``document`` as params.yaml text, validated: we never write what we could not read back."""
        buffer = io.StringIO()
        round_trip_yaml().dump(document, buffer)
        text = buffer.getvalue()
        studio_params.parse(text, self.params_path)
        return text

    def save_params(self, document: Any) -> None:
        self.write_params_text(self.params_text(document))

    def write_params_text(self, text: str) -> None:
        atomic_write_text(self.params_path, text)
        self._loaded = None

    def videos(self) -> dict[str, studio_params.VideoParams]:
        return self.config().videos

    def video_entry(self, name: str) -> studio_params.VideoParams:
        videos = self.videos()
        if name not in videos:
            known = ", ".join(videos) or "none yet; add one with `rotoscope add VIDEO`"
            raise ParamsError(self.params_path, f"no video named {name!r} (known: {known})")
        return videos[name]

    def video_file(self, name: str) -> Path:
        return self.layout.recorded(self.video_entry(name).file, f"videos.{name}.file")

    def split_job(self, name: str) -> tuple[Path, SplitSettings]:
        """The video file to split and its settings (its own overrides on top of ``split:``)."""
        config = self.config()
        entry = self.video_entry(name)
        section = {**config.split, **entry.split}
        return self.video_file(name), SplitSettings.from_params(section, self.params_path)

    def render_names(self) -> list[str]:
        return list(self.config().renders)

    def compute_settings(self, overrides: Mapping[str, str] | None = None) -> ComputeSettings:
        """Where this studio's work runs: ``compute:``, then the environment, then ``overrides``
        (a command's ``--executor`` and ``--ray``, as :func:`rotoscope.compute.environment_for`)."""
        return ComputeSettings.from_params(self.config().compute, {**os.environ, **(overrides or {})})

    def render_job(self, name: str) -> RenderJob:
        config = self.config()
        if name not in config.renders:
            known = ", ".join(config.renders) or "none yet; add one with `rotoscope render new`"
            raise ParamsError(self.params_path, f"no render named {name!r} (known: {known})")
        job = RenderJob.from_params(name, config.renders[name], config.stylize, self.params_path)
        self.video_entry(job.video)
        return job

    def add_render(self, name: str, entry: dict[str, Any]) -> None:
        """Register (or replace) a render, checked before params.yaml is written (the caller checks
        that its filter exists: filters sit above the studio)."""
        check_name(name, "render name")
        if name == "source":
            raise ParamsError(self.params_path, "'source' names the split frames; pick another name")
        document = self.params()
        self.video_entry(entry["video"])
        RenderJob.from_params(name, entry, self.config().stylize, self.params_path)
        if document.get("renders") is None:
            document["renders"] = {}
        document["renders"][name] = entry
        self.save_params(document)

    def encode_settings(self, overrides: dict[str, Any] | None = None) -> EncodeSettings:
        """The ``reassemble:`` section, with any command-line ``overrides`` (None: keep), checked."""
        section = {**self.config().reassemble}
        section.update({key: value for key, value in (overrides or {}).items() if value is not None})
        return EncodeSettings.from_section(section, self.params_path)

    # -- videos ----------------------------------------------------------------------------
    def add_video(self, source: Path, name: str | None = None) -> tuple[str, Path]:
        """Copy a video in, track it with DVC and register it; refuses bad files before writing."""
        chosen = name
        name = check_name(name or name_from_path(source), "video name")
        probe(source)  # a file we could not split never enters the studio
        target = self.layout.video_file(name, source.suffix.lower() or ".mp4")
        entry = self.videos().get(name)
        same_bytes = target.is_file() and md5_file(target) == md5_file(source)  # hashed once: videos are big
        # a name made from the file ("my clip.mp4" and "my-clip.mp4" both give my-clip) never
        # replaces another video; `--name` given again is a re-shoot of that video
        if entry is not None and (chosen is None or self.layout.recorded(entry.file, "videos") != target):
            registered = self.layout.recorded(entry.file, f"videos.{name}.file")
            if registered != target or not same_bytes:
                raise ParamsError(
                    source,
                    f"a different video is already registered as {name!r} ({entry.file}); "
                    "pick another --name",
                )
        if not same_bytes:
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
    _check_new_home(root, remote)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise storage_error(error) from None
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
    created += ensure_gitignore(root / ".gitignore", template("gitignore"))
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


def _check_new_home(root: Path, remote: Path | None) -> None:
    """Refuse a studio where it cannot be or should not be: on a file, inside another studio (its
    DVC and params would silently take over), or with its remote inside its own work tree."""
    if root.exists() and not root.is_dir():
        raise RotoscopeError(root, "exists and is not a folder")
    for folder in root.parents:
        if (folder / "params.yaml").is_file() and (folder / ".dvc").is_dir():
            raise RotoscopeError(root, f"inside the studio {folder}; make a studio outside it")
    if remote is not None and remote.resolve().is_relative_to(root):
        raise RotoscopeError(
            remote, "the remote is inside the studio, where `git add -A` would take its blobs; put it outside"
        )


def ensure_gitignore(path: Path, wanted: str) -> list[str]:
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
