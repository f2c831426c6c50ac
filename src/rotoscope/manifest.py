"""Frame manifests: the Git-tracked JSON list of a video's frames, one frame per line.

The layout is part of the format: every top-level field sits on its own line and every frame on
its own line, so ``git diff`` and a pull request show exactly which frames changed.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

from rotoscope import schemas
from rotoscope.errors import ManifestError
from rotoscope.layout import Layout
from rotoscope.store import atomic_write_text

SCHEMA_ID = "rotoscope.manifest/1"
FRAME_NAME_DIGITS = 6


@dataclass(frozen=True)
class Frame:
    i: int
    pts: int
    md5: str
    bytes: int
    src: str | None = None  # a stylized frame: the md5 of the source frame it was made from


@dataclass(frozen=True)
class Lineage:
    """Where a stylized manifest came from: its parent manifest, the filter and the render."""

    parent: str  # the source manifest, relative to the studio
    parent_md5: str  # the md5 of the parent manifest's file when this one was made
    filter: dict[str, Any]  # name, kind, model_md5; a crossfade's second filter as "crossfade"
    render: dict[str, Any]  # strength (or keyframes), preserve_color, max_side, crossfade, range, temporal


@dataclass
class Manifest:
    kind: str
    name: str
    video: dict[str, Any]
    extract: dict[str, Any]
    frames_dir: str
    width: int
    height: int
    time_base: str
    end_pts: int
    frames: list[Frame] = field(default_factory=list)
    lineage: Lineage | None = None  # stylized manifests only
    cuts: list[int] | None = None  # source manifests: indices of the frames that start a new shot

    @property
    def video_name(self) -> str:
        """The studio's name for the video: a source manifest's own name, a render's parent's."""
        return Path(self.lineage.parent).parent.name if self.lineage else self.name

    @property
    def time_base_fraction(self) -> Fraction:
        return Fraction(self.time_base)

    @property
    def duration(self) -> float:
        start = self.frames[0].pts if self.frames else 0
        return float((self.end_pts - start) * self.time_base_fraction)

    def seconds(self, pts: int) -> float:
        return float(pts * self.time_base_fraction)

    def frames_between(self, first: int, last: int) -> list[Frame]:
        """Frames by index, ``first`` to ``last`` inclusive."""
        return [frame for frame in self.frames if first <= frame.i <= last]

    def frames_shown(self, start: float, end: float) -> list[Frame]:
        """Frames on screen at some moment from ``start`` to ``end`` seconds, both included."""
        ends = [frame.pts for frame in self.frames[1:]] + [self.end_pts]
        return [
            frame
            for frame, until in zip(self.frames, ends, strict=True)
            if self.seconds(frame.pts) <= end and self.seconds(until) > start
        ]

    def frame_filename(self, frame: Frame) -> str:
        return f"{frame.i:0{FRAME_NAME_DIGITS}d}.{self.extract['format']}"

    def frame_path(self, studio_root: Path, frame: Frame) -> Path:
        """The frame's file, resolved inside the studio (a symlinked folder that leaves it is refused)."""
        return _layout(studio_root).recorded(f"{self.frames_dir}/{self.frame_filename(frame)}", "frames_dir")

    def video_path(self, studio_root: Path) -> Path:
        """The source video (for its audio), resolved inside the studio."""
        return _layout(studio_root).recorded(self.video["path"], "video.path")

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        lineage = body.pop("lineage")
        if body["cuts"] is None:
            del body["cuts"]
        body["frames"] = [_without_none(frame) for frame in body["frames"]]
        return {"schema": SCHEMA_ID, **body, **({"lineage": lineage} if lineage else {})}

    def to_json(self) -> str:
        body = self.to_dict()
        frames = body.pop("frames")  # last, one per line, after the header (lineage included)
        lines = [f"  {json.dumps(key)}: {_compact(value)}," for key, value in body.items()]
        frame_lines = ",\n".join(f"    {_compact(frame)}" for frame in frames)
        return "{\n" + "\n".join(lines) + '\n  "frames": [\n' + frame_lines + "\n  ]\n}\n"


def _without_none(frame: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in frame.items() if value is not None}


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


@lru_cache(maxsize=8)
def _layout(studio_root: Path) -> Layout:
    return Layout(studio_root)


def validate(document: Any, path: Path | str) -> None:
    """Check a manifest's shape and its internal consistency; raise one readable error."""
    schemas.check(document, "manifest", path, ManifestError)
    frames = document["frames"]
    for position, frame in enumerate(frames):
        if frame["i"] != position:
            raise ManifestError(path, f"frames/{position}: index is {frame['i']}, expected {position}")
        if position and frame["pts"] <= frames[position - 1]["pts"]:
            raise ManifestError(path, f"frames/{position}: pts {frame['pts']} does not increase")
    if document["end_pts"] <= frames[-1]["pts"]:
        raise ManifestError(path, "end_pts must come after the last frame's pts")
    cuts = document.get("cuts", [])
    if any(later <= earlier for earlier, later in itertools.pairwise(cuts)) or (
        cuts and cuts[-1] >= len(frames)
    ):
        raise ManifestError(path, f"cuts must be increasing frame indices below {len(frames)}, not {cuts}")


def from_dict(document: dict[str, Any]) -> Manifest:
    body = {key: value for key, value in document.items() if key != "schema"}
    body["frames"] = [Frame(**frame) for frame in body["frames"]]
    if "lineage" in body:
        body["lineage"] = Lineage(**body["lineage"])
    return Manifest(**body)


def load(path: Path) -> Manifest:
    return checked(schemas.read_json(path, "manifest", ManifestError), path)


def checked(document: Any, path: Path | str) -> Manifest:
    """A manifest from any source (a file, another Git revision), validated before use."""
    validate(document, path)
    return from_dict(document)


def render(manifest: Manifest, path: Path) -> str:
    """The manifest's text, validated: we never write what we could not read back."""
    text = manifest.to_json()
    validate(json.loads(text), path)
    return text


def save(manifest: Manifest, path: Path) -> None:
    atomic_write_text(path, render(manifest, path))
