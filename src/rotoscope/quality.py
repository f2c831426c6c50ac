"""How much a render flickers: the warping error of each frame against the one before, as DVC
metrics and plots (so ``dvc metrics diff`` and ``dvc plots diff`` compare branches), and a
side-by-side preview clip.

Each measure is taken twice, on the render and on the filter's own frame-by-frame stylization,
so one render's report shows what its temporal method bought and what it cost: the distance of
each frame from what the filter alone would paint (ghosting shows up there).

The motion comes from the source frames, with DIS at its ``medium`` preset at full resolution:
a finer estimate than the ``fast`` one that ``temporal: flow`` blends with, so the measure does
not simply grade the blending against its own flow.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rotoscope import manifest as manifests
from rotoscope.errors import RotoscopeError
from rotoscope.locks import exclusive, render_lock
from rotoscope.manifest import Manifest
from rotoscope.pipeline import StylizedFrames, encode_at_timestamps, frame_file
from rotoscope.progress import progress_bar
from rotoscope.store import FrameReuse, atomic_write_text, clear_killed_writes, md5_bytes, md5_file
from rotoscope.studio import RenderJob, Studio
from rotoscope.temporal import Motion, MotionEstimator, grey, mean_squared_distance, warping_error

MEASURE_VERSION = 1  # bump when a measure changes (the cached measures are then taken again)
PREVIEW_PANEL_WIDTH = 640


@dataclass(frozen=True)
class FrameQuality:
    frame: int
    time: float  # seconds
    warping_error: float | None  # None for the first frame of each shot
    per_frame_warping_error: float | None  # the same, for the filter's own frame-by-frame stylization
    distance: float  # mean squared distance from the frame-by-frame stylization, colours 0..1


@dataclass(frozen=True)
class QualityReport:
    render: str
    temporal: str
    frames: list[FrameQuality]
    measured_now: int = 0  # frames measured in this run; the rest were found from earlier runs

    def metrics(self) -> dict[str, object]:
        measured = [f for f in self.frames if f.warping_error is not None]
        mean = _mean([f.warping_error for f in measured])
        own = _mean([f.per_frame_warping_error for f in measured])
        return {
            "warping_error": _round(mean),
            "per_frame_warping_error": _round(own),
            "flicker_ratio": _round(mean / own) if mean is not None and own else None,
            "distance_from_per_frame": _round(_mean([f.distance for f in self.frames])),
            "frames": len(self.frames),
            "pairs_measured": len(measured),
            "temporal": self.temporal,
        }


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _round(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.6g}")


@dataclass(frozen=True)
class QualityPaths:
    metrics: Path
    plot: Path
    preview: Path

    @classmethod
    def for_render(cls, studio: Studio, manifest: Manifest, folder: Path | None = None) -> QualityPaths:
        """``quality/<video>/<render>.json``, ``-frames.csv`` and ``-side-by-side.mp4``."""
        folder = folder or studio.layout.quality_dir(manifest.video_name)
        name = manifest.name
        return cls(
            folder / f"{name}.json", folder / f"{name}-frames.csv", folder / f"{name}-side-by-side.mp4"
        )


def assess(
    studio: Studio, manifest_paths: list[Path], out: Path | None = None, preview: bool = True
) -> Iterator[tuple[QualityReport, QualityPaths]]:
    """The quality stage: measure renders, write each one's report (and preview clip), holding
    each render's lock so nothing rewrites its frames meanwhile. Yields as each is written."""
    with ExitStack() as locks:
        for path in manifest_paths:
            render = manifests.load(studio.layout.inside(path, "manifest"))
            lock = render_lock(render.video_name, render.name)
            locks.enter_context(exclusive(studio.layout, lock, f"writing render {render.name!r}"))
        for report, pictures in measure(studio, manifest_paths):
            paths = QualityPaths.for_render(studio, pictures.render, out)
            _clear_killed_writes(paths)
            write_report(report, paths)
            if preview:
                write_preview(studio, pictures, paths.preview)
            yield report, paths


def _clear_killed_writes(paths: QualityPaths) -> None:
    """Half-written files a killed run left beside the reports (we hold the render's lock)."""
    for target in (paths.metrics, paths.plot, paths.preview):
        clear_killed_writes(target)


def measure(studio: Studio, manifest_paths: list[Path]) -> list[tuple[QualityReport, _Pictures]]:
    """Warping errors and distances of stylized manifests, reusing the measures of frame pairs
    measured before (kept in ``.rotoscope/quality``). Renders of one video are measured frame by
    frame together, so they share the motion of its source frames, estimated once."""
    opened = [_Pictures.open(studio, path) for path in manifest_paths]
    videos: dict[str, list[_Pictures]] = {}
    for pictures in opened:
        videos.setdefault(pictures.source_key, []).append(pictures)
    reports: dict[int, QualityReport] = {}
    total = sum(len(p.render.frames) for p in opened)
    with progress_bar("quality", total) as update:
        done = 0
        for renders in videos.values():
            motion = _SourceMotion()
            measures = [_Measures(studio, pictures) for pictures in renders]
            for index in range(len(renders[0].source.frames)):
                for measured in measures:
                    measured.take(index, motion)
                    done += 1
                update(done)
            for measured in measures:
                reports[id(measured.pictures)] = measured.report()
    return [(reports[id(pictures)], pictures) for pictures in opened]


class _Measures:
    """One render's measures, frame by frame, found again in its cache or taken."""

    def __init__(self, studio: Studio, pictures: _Pictures) -> None:
        self.pictures = pictures
        video, name = pictures.render.video_name, pictures.render.name
        self.cache = _MeasureCache(studio.layout.quality_cache(video, name))
        self.starts = {0, *(pictures.source.cuts or [])}
        self.frames: list[FrameQuality] = []
        self.measured_now = 0

    def take(self, index: int, motion: _SourceMotion) -> None:
        starts_shot = index in self.starts
        key = self.pictures.pair_key(index, starts_shot)
        values = self.cache.get(key)
        if values is None:
            values = self.pictures.measure(index, starts_shot, motion)
            self.cache.put(key, values)
            self.measured_now += 1
        frame = self.pictures.render.frames[index]
        self.frames.append(FrameQuality(index, self.pictures.render.seconds(frame.pts), *values))

    def report(self) -> QualityReport:
        self.cache.save()
        pictures = self.pictures
        return QualityReport(pictures.render.name, pictures.temporal, self.frames, self.measured_now)


class _SourceMotion:
    """The motion of one video's source frames into the frame being measured, shared by every
    render of the video (renders of another size get their own)."""

    def __init__(self) -> None:
        self._estimator = MotionEstimator("medium", max_side=None)
        self._kept: dict[tuple[int, tuple[int, ...]], Motion] = {}

    def into(self, index: int, before: np.ndarray, now: np.ndarray) -> Motion:
        key = (index, now.shape)
        if key not in self._kept:
            if any(kept_index != index for kept_index, _ in self._kept):
                self._kept.clear()
            self._kept[key] = self._estimator.motion(before, now)
        return self._kept[key]


def write_report(report: QualityReport, paths: QualityPaths) -> None:
    paths.metrics.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths.metrics, json.dumps(report.metrics(), indent=2) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(FrameQuality.__dataclass_fields__), lineterminator="\n")
    writer.writeheader()
    for row in report.frames:
        writer.writerow({key: _cell(value) for key, value in asdict(row).items()})
    atomic_write_text(paths.plot, buffer.getvalue())


def _cell(value: object) -> object:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else value


class _MeasureCache:
    """Measures by what they were taken from; rewritten each run with the pairs still in use, and
    every few hundred new measures on the way, so a killed run resumes."""

    SAVE_EVERY = 200

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._old = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            self._old = {}
        self._new: dict[str, list[float | None]] = {}
        self._unsaved = 0

    def get(self, key: str) -> tuple[float | None, float | None, float] | None:
        found = self._old.get(key) or self._new.get(key)
        if found is None:
            return None
        self._new[key] = found
        return found[0], found[1], found[2]

    def put(self, key: str, values: tuple[float | None, float | None, float]) -> None:
        self._new[key] = list(values)
        self._unsaved += 1
        if self._unsaved >= self.SAVE_EVERY:
            self._write({**self._old, **self._new})

    def save(self) -> None:
        self._write(self._new)

    def _write(self, measures: dict[str, list[float | None]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(measures, sort_keys=True))
        self._unsaved = 0


class _Pictures:
    """The three pictures of each frame: the source, the filter's own stylization, the render."""

    def __init__(self, studio: Studio, render: Manifest, source: Manifest, own: StylizedFrames) -> None:
        self.studio, self.render, self.source = studio, render, source
        self.temporal = render.lineage.render.get("temporal", "off") if render.lineage else "off"
        self._own = [own.own(frame) for frame in source.frames] if own.temporal.on else None
        self._recent: dict[int, dict[str, np.ndarray]] = {}

    @classmethod
    def open(cls, studio: Studio, path: Path) -> _Pictures:
        from rotoscope.filters.card import load_card
        from rotoscope.filters.catalogue import filter_entry

        render = manifests.load(studio.layout.inside(path, "manifest"))
        if render.kind != "stylized" or render.lineage is None:
            raise RotoscopeError(path, "quality measures a render's manifest, not a source one")
        parent_path = studio.layout.recorded(render.lineage.parent, "lineage.parent")
        source = manifests.load(parent_path)
        job = studio.render_job(render.name)
        card = load_card(filter_entry(studio, job.filter).card)
        model_md5 = card.model["md5"] if card.model else None
        if model_md5 != render.lineage.filter["model_md5"] or _stale(job, render, parent_path):
            raise RotoscopeError(path, "made with other settings than params.yaml has now (run `dvc repro`)")
        return cls(
            studio, render, source, StylizedFrames(studio, job, source, model_md5, FrameReuse(studio.layout))
        )

    def own_md5(self, index: int) -> str:
        return self._own[index][1] if self._own else self.render.frames[index].md5

    def md5(self, index: int, which: str) -> str:
        if which == "own":
            return self.own_md5(index)
        return (self.source if which == "source" else self.render).frames[index].md5

    def pair_key(self, index: int, starts_shot: bool) -> str:
        indices = [index] if starts_shot else [index - 1, index]
        what = {
            "version": MEASURE_VERSION,
            "frames": [
                (self.source.frames[i].md5, self.render.frames[i].md5, self.own_md5(i)) for i in indices
            ],
        }
        return md5_bytes(json.dumps(what).encode())

    @property
    def source_key(self) -> str:
        return self.render.lineage.parent if self.render.lineage else self.render.name

    def measure(
        self, index: int, starts_shot: bool, motion: _SourceMotion
    ) -> tuple[float | None, float | None, float]:
        now = self._load(index)
        distance = mean_squared_distance(now["render"], now["own"])
        if starts_shot:
            return None, None, distance
        before = self._load(index - 1)
        moved = motion.into(index, before["grey"], now["grey"])
        return (
            warping_error(before["render"], now["render"], moved),
            warping_error(before["own"], now["own"], moved),
            distance,
        )

    def _load(self, index: int) -> dict[str, np.ndarray]:
        if index in self._recent:
            return self._recent[index]
        render = self.picture(index, "render")
        own = self.picture(index, "own")
        source = self.picture(index, "source")
        if source.shape != render.shape:
            source = np.asarray(
                Image.fromarray(source).resize(render.shape[1::-1], Image.Resampling.BILINEAR)
            )
        loaded = {"render": render, "own": own, "grey": grey(source)}
        # each frame is measured against the one before, and serves as that for the one after
        self._recent = {key: value for key, value in self._recent.items() if abs(key - index) == 1}
        self._recent[index] = loaded
        return loaded

    def picture(self, index: int, which: str) -> np.ndarray:
        """One frame as RGB uint8: the "source", the filter's "own" stylization, or the "render"."""
        if which == "own" and self._own:
            path = self._own[index][0]
        else:
            manifest = self.source if which == "source" else self.render
            path = frame_file(self.studio, manifest, manifest.frames[index])
        with Image.open(path) as picture:
            return np.asarray(picture.convert("RGB"))


def _stale(job: RenderJob, render: Manifest, source_path: Path) -> bool:
    """Whether params.yaml or the source changed since the render was made: the filter's own
    frames would then be another look's, and the measures wrong."""
    assert render.lineage is not None
    made_with = render.lineage.render
    now = job.look()
    return (
        md5_file(source_path) != render.lineage.parent_md5
        or any(made_with.get(key) != now.get(key) for key in ("strength", "preserve_color", "max_side"))
        or any(made_with.get(key) != now.get(key) for key in ("crossfade", "range"))
        or (render.extract.get("format"), render.extract.get("quality")) != (now["format"], now["quality"])
        or made_with.get("temporal", "off") != job.temporal
        or made_with.get("temporal_weight", job.temporal_weight) != job.temporal_weight
    )


# -- the side-by-side preview ----------------------------------------------------------------


def write_preview(studio: Studio, pictures: _Pictures, out: Path) -> None:
    """The frame-by-frame stylization beside the render (for a render without temporal blending,
    the source beside it), labelled, with the source video's audio."""
    render = pictures.render
    temporal = pictures.temporal
    left, left_label = ("own", "frame by frame") if temporal != "off" else ("source", "source")
    weight = render.lineage.render.get("temporal_weight") if render.lineage else None
    right_label = f"{temporal} {weight}" if temporal != "off" else "frame by frame"
    scale = min(1.0, PREVIEW_PANEL_WIDTH / render.width)
    panel = (max(2, round(render.width * scale / 2) * 2), max(2, round(render.height * scale / 2) * 2))
    font = ImageFont.load_default(size=max(12, panel[1] // 18))

    def side_by_side(index: int) -> Image.Image:
        sheet = Image.new("RGB", (panel[0] * 2, panel[1]))
        for slot, (which, label) in enumerate(((left, left_label), ("render", right_label))):
            image = Image.fromarray(pictures.picture(index, which)).resize(panel, Image.Resampling.BILINEAR)
            sheet.paste(image, (slot * panel[0], 0))
            ImageDraw.Draw(sheet).text(
                (slot * panel[0] + 8, 6), label, fill="white", font=font, stroke_width=2, stroke_fill="black"
            )
        return sheet

    labels = [left_label, right_label, *panel]
    identities = [
        md5_bytes(json.dumps([pictures.md5(i, left), pictures.md5(i, "render"), labels]).encode())
        for i in range(len(render.frames))
    ]
    with progress_bar(f"preview {render.name}", len(render.frames)) as update:
        size = (panel[0] * 2, panel[1])
        encode_at_timestamps(
            studio, render, out, studio.encode_settings(), size, identities, side_by_side, update
        )


def summary_lines(report: QualityReport) -> list[str]:
    metrics = report.metrics()

    def show(value: object) -> str:
        return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.5f}"

    return [
        f"{report.render}: temporal {report.temporal}, {metrics['pairs_measured']} frame pairs "
        f"({report.measured_now} frames measured now, the rest found from earlier runs)",
        f"  warping error            {show(metrics['warping_error'])}",
        f"  frame by frame           {show(metrics['per_frame_warping_error'])}"
        + (f"  (ratio {metrics['flicker_ratio']:.2f})" if metrics["flicker_ratio"] is not None else ""),
        f"  distance from per-frame  {show(metrics['distance_from_per_frame'])}",
    ]
