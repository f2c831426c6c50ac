"""The bodies of the DVC stages: split a video into frames + manifest, stylize a manifest's
frames through a filter, reassemble a manifest.

``dvc.yaml`` runs these through the CLI (``rotoscope split NAME``...). Each writes its outputs
atomically and keeps its finished work in a scratch folder, so a killed run resumes.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rotoscope import manifest as manifests
from rotoscope.credit import render_credit
from rotoscope.errors import ParamsError, RotoscopeError
from rotoscope.estimate import Work, measured_rates, painting_units, place
from rotoscope.executors import Executor, FilterModel, Painter, PaintJob, PaintRequest, executor_for
from rotoscope.filters.apply import APPLY_VERSION, DEFAULT_MEMORY_MB, ApplySettings, fit_size, fit_within
from rotoscope.locks import exclusive, render_lock, video_lock
from rotoscope.manifest import Frame, Lineage, Manifest
from rotoscope.media import (
    EncodeSettings,
    SegmentCache,
    VideoInfo,
    decode_frames,
    encode_segmented,
    encode_video,
    probe,
)
from rotoscope.media.decode import DecodedFrame, output_size
from rotoscope.media.images import save_image
from rotoscope.progress import progress_bar
from rotoscope.store import (
    FrameReuse,
    atomic_copy,
    atomic_write_text,
    clear_killed_writes,
    md5_bytes,
    md5_file,
    replace_dir,
    temp_beside,
)
from rotoscope.studio import RenderJob, SplitSettings, Studio
from rotoscope.temporal import Motion, MotionEstimator, blend, is_cut, thumbnail
from rotoscope.timeline import SCALE, frame_seconds

_WORKERS = max(2, os.cpu_count() or 2)


@dataclass(frozen=True)
class SplitResult:
    manifest_path: Path
    frames: int
    reused: int  # frames found finished in the scratch folder of an interrupted run


def split(studio: Studio, name: str) -> SplitResult:
    """Decode ``name``'s video into frame files named by index, recorded by md5 in a manifest."""
    with exclusive(studio.layout, video_lock(name), f"splitting or reassembling {name!r}"):
        clear_killed_writes(studio.manifest_path(name))
        return _split(studio, name)


def _split(studio: Studio, name: str) -> SplitResult:
    video_path, settings = studio.split_job(name)
    info = probe(video_path)
    video_md5 = md5_file(video_path)
    scratch = studio.partial_dir(f"split-{name}")
    staged = _prepare_scratch(studio, scratch, {"video_md5": video_md5, **settings.as_manifest_extract()})
    estimate = _estimated_count(info, settings)
    with progress_bar(f"split {name}", estimate) as update:
        frames, reused, cuts = _write_frames(info, settings, staged, update)
    if not frames:
        raise RotoscopeError(video_path, "no frames decoded")
    width, height = output_size(info, settings.max_side)
    result = Manifest(
        kind="source",
        name=name,
        video=_video_record(studio, info, video_md5),
        extract=settings.as_manifest_extract(),
        frames_dir=studio.layout.frames_dir_record(name),
        width=width,
        height=height,
        time_base=str(info.time_base.numerator) + "/" + str(info.time_base.denominator),
        end_pts=_end_pts(info, frames),
        frames=frames,
        cuts=cuts,
    )
    text = manifests.render(result, studio.manifest_path(name))  # before any frame is swapped in
    replace_dir(staged, studio.layout.deletable(studio.layout.frames_dir_record(name)))
    atomic_write_text(studio.manifest_path(name), text)
    studio.layout.remove_tree(scratch)
    return SplitResult(studio.manifest_path(name), len(frames), reused)


def _prepare_scratch(studio: Studio, scratch: Path, key: dict[str, object]) -> Path:
    """Reuse an interrupted run's frames only if it split the same video the same way."""
    state = scratch / "state.json"
    wanted = json.dumps(key, sort_keys=True)
    if not state.is_file() or state.read_text() != wanted:
        studio.layout.remove_tree(scratch)
        (scratch / "frames").mkdir(parents=True)
        atomic_write_text(state, wanted)
    return scratch / "frames"


def _estimated_count(info: VideoInfo, settings: SplitSettings) -> int | None:
    if settings.fps is None:
        return info.declared_frames or None
    return int(info.duration * settings.fps) + 1 if info.duration else None


def _write_frames(
    info: VideoInfo, settings: SplitSettings, folder: Path, update: Callable[[int], None]
) -> tuple[list[Frame], int, list[int]]:
    """Convert and encode on worker threads while this thread decodes; find the scene cuts.

    PyAV's scaler, Pillow writing to a file and OpenCV's flow all release the GIL, so the
    workers run in parallel with each other and with FFmpeg's own decoding threads. This thread
    only decodes and hands out work: judging a cut (which needs two frames' thumbnails) is sent
    to the workers as soon as both thumbnails are made.
    """
    frames: list[Frame] = []
    reused = 0
    cut_checks: list[Future[bool]] = []
    previous: np.ndarray | None = None
    in_flight: deque[tuple[int, int, Future[_StoredFrame]]] = deque()

    def collect() -> None:
        nonlocal reused, previous
        index, pts, future = in_flight.popleft()
        stored = future.result()
        reused += stored.was_there
        frames.append(Frame(i=index, pts=pts, md5=stored.md5, bytes=stored.size))
        if previous is not None:
            cut_checks.append(pool.submit(is_cut, previous, stored.thumbnail))
        previous = stored.thumbnail
        update(len(frames))

    with ThreadPoolExecutor(_WORKERS) as pool:
        for index, decoded in enumerate(decode_frames(info, settings.fps, settings.max_side)):
            target = folder / f"{index:0{manifests.FRAME_NAME_DIGITS}d}.{settings.format}"
            in_flight.append((index, decoded.pts, pool.submit(_store_frame, decoded, target, settings)))
            if len(in_flight) > 4 * _WORKERS:
                collect()
        while in_flight:
            collect()
        cuts = [index for index, check in enumerate(cut_checks, start=1) if check.result()]
    return frames, reused, cuts


@dataclass(frozen=True)
class _StoredFrame:
    md5: str
    size: int
    was_there: bool  # written by an interrupted run
    thumbnail: np.ndarray  # for scene cuts


def _store_frame(decoded: DecodedFrame, target: Path, settings: SplitSettings) -> _StoredFrame:
    small = thumbnail(decoded.luma())
    was_there = target.is_file()  # written atomically by an earlier run, so complete
    if not was_there:
        with temp_beside(target) as temp:
            save_image(decoded.image(), temp, settings.format, settings.quality)
            os.replace(temp, target)
    return _StoredFrame(md5_file(target), target.stat().st_size, was_there, small)


def _video_record(studio: Studio, info: VideoInfo, md5: str) -> dict[str, object]:
    width, height = info.display_size
    return {
        "path": studio.relative(info.path),
        "md5": md5,
        "width": width,
        "height": height,
        "time_base": f"{info.time_base.numerator}/{info.time_base.denominator}",
        "avg_rate": f"{info.avg_rate.numerator}/{info.avg_rate.denominator}" if info.avg_rate else None,
        "duration": round(info.duration, 6) if info.duration else 0.0,
        "codec": info.codec,
        "pix_fmt": info.pix_fmt,
        "rotation": info.rotation,
        "audio": info.audio_dict(),
    }


def _end_pts(info: VideoInfo, frames: list[Frame]) -> int:
    """When the last frame stops showing: the file's declared end, else one frame step later."""
    last = frames[-1].pts
    if info.end_pts is not None and info.end_pts > last:
        return info.end_pts
    if info.avg_rate:
        return last + max(1, round(1 / (info.avg_rate * info.time_base)))
    return last + (last - frames[-2].pts if len(frames) > 1 else 1)


# -- stylize ---------------------------------------------------------------------------------

MIX_VERSION = 1  # bump when a change changes how paintings are kept or mixed (reuse keys)


@dataclass(frozen=True)
class PaintingTime:
    """How a run's paintings were made: where, and the estimate from earlier runs' rates beside
    the seconds they took (the stage's log keeps both)."""

    executor: str
    hardware: str
    workers: int
    estimate_s: float | None  # None: no earlier painting on that hardware to go by
    took_s: float


@dataclass(frozen=True)
class StylizeResult:
    manifest_path: Path
    frames: int
    stylized: int  # paintings made: the filters' network runs
    blended: int  # frames blended with the one before (temporal ema or flow)
    reused: int  # frames found already made the same way (or, outside the range, the source's own)
    mixed: int = 0  # frames mixed anew from their paintings and the source (paintings found or made)

    def counts(self) -> dict[str, int]:
        return {
            "frames": self.frames,
            "stylized": self.stylized,
            "mixed": self.mixed,
            "blended": self.blended,
            "reused": self.reused,
        }


def stylize(studio: Studio, name: str, executor: Executor | None = None) -> StylizeResult:
    """Run the render ``name``'s filter over its video's frames, reusing every frame made before.

    Each frame's painting (the filter alone at full strength) is kept under its (source md5,
    model md5, painting settings) and painted again only when that was never made or its bytes are
    gone; the filter is not even loaded when every painting is found. A frame is its painting(s)
    mixed over the source at its moment's strength and crossfade (:mod:`rotoscope.timeline`), kept
    under a key of the paintings and those values: a changed keyframe re-mixes only the frames whose
    values changed, with no network run. With a temporal method each output also depends on the
    output before it, back to the last scene cut, and is found again by that chain.

    The paintings never made are made first, all together, by ``executor`` (by default the one
    ``params.yaml``'s ``compute:`` and the environment choose: :mod:`rotoscope.executors`).
    """
    job = studio.render_job(name)
    with exclusive(studio.layout, render_lock(job.video, name), f"writing render {name!r}"):
        clear_killed_writes(studio.manifest_path(job.video, name))
        return _stylize(studio, job, executor)


def _stylize(studio: Studio, job: RenderJob, executor: Executor | None) -> StylizeResult:
    name = job.name
    parent_path = studio.manifest_path(job.video)
    parent = manifests.load(parent_path)
    used = filter_used(studio, job.filter)
    fade = crossfade_used(studio, job)
    if job.temporal_settings().on and parent.cuts is None:
        raise RotoscopeError(
            parent_path,
            f"no scene cuts recorded (split by an older rotoscope; run `dvc repro -f split@{job.video}`)",
        )
    reuse = FrameReuse(studio.layout)
    reuse.tidy()
    staged = studio.partial_dir(f"stylize-{name}")
    studio.layout.remove_tree(staged)
    staged.mkdir(parents=True)
    made = StylizedFrames(studio, job, parent, used["model_md5"], reuse, fade and fade["model_md5"])
    made.paint_missing(executor or executor_for(studio.compute_settings()))
    with progress_bar(f"stylize {name}", len(parent.frames)) as update:
        frames = made.stage_all(staged, update)
    width, height = made.size or (parent.width, parent.height)
    look = job.look()
    render = {key: look[key] for key in ("strength", "preserve_color", "max_side")}
    render |= {key: look[key] for key in ("crossfade", "range") if key in look}
    if made.temporal.on:
        render |= {"temporal": made.temporal.method, "temporal_weight": made.temporal.weight}
    result = Manifest(
        kind="stylized",
        name=name,
        video=parent.video,
        extract={**parent.extract, **_frame_files(job)},
        frames_dir=studio.layout.frames_dir_record(job.video, name),
        width=width,
        height=height,
        time_base=parent.time_base,
        end_pts=parent.end_pts,
        frames=frames,
        lineage=Lineage(
            parent=studio.relative(parent_path),
            parent_md5=md5_file(parent_path),
            filter=used | ({"crossfade": fade} if fade else {}),
            render=render,
        ),
    )
    target = studio.manifest_path(job.video, name)
    text = manifests.render(result, target)
    replace_dir(staged, studio.layout.deletable(studio.layout.frames_dir_record(job.video, name)))
    atomic_write_text(target, text)
    outcome = StylizeResult(target, len(frames), made.stylized, made.blended, made.reused, made.mixed)
    timing = {"painting": asdict(made.painting_time)} if made.painting_time else {}
    atomic_write_text(studio.log_path(f"stylize-{name}"), json.dumps(outcome.counts() | timing) + "\n")
    return outcome


def render_work(studio: Studio, name: str) -> tuple[int, list[Work]]:
    """A render's frames and the work of the paintings it still needs (none of them painted:
    nothing is loaded but the filters' model files, read as data to count their work). Before
    its video is split every frame counts, from the video's own record of its length."""
    job = studio.render_job(name)
    used = filter_used(studio, job.filter)
    fade = crossfade_used(studio, job)
    parent_path = studio.manifest_path(job.video)
    if parent_path.is_file():
        parent = manifests.load(parent_path)
        reuse, fade_md5 = FrameReuse(studio.layout), fade and fade["model_md5"]
        made = StylizedFrames(studio, job, parent, used["model_md5"], reuse, fade_md5)
        return len(parent.frames), made.work(made.missing_paintings())
    return _unsplit_work(studio, job, fade)


def _unsplit_work(studio: Studio, job: RenderJob, fade: dict[str, str] | None) -> tuple[int, list[Work]]:
    """Every frame of a video not split yet, by each filter the render takes (a crossfade's
    second filter counted over the whole clip: an upper bound)."""
    from rotoscope.filters.catalogue import filter_entry
    from rotoscope.filters.inference import read_network

    video, settings = studio.split_job(job.video)
    info = probe(video)
    every_frame = settings.fps is None and info.declared_frames
    frames = (
        info.declared_frames
        if every_frame
        else round((info.duration or 0) * float(settings.fps or info.avg_rate or 0))
    )
    size = fit_size(output_size(info, settings.max_side), job.max_side)
    work = []
    for name in [job.filter, *([fade["name"]] if fade else [])]:
        entry = filter_entry(studio, name)
        layers = None if entry.kind == "instant" else read_network(entry.model).layers
        work.append(Work(entry.kind, frames, frames * painting_units(entry.kind, layers, *size, job.brush)))
    return frames, work


def filter_used(studio: Studio, name: str) -> dict[str, str]:
    """A filter's name, kind and model md5, from its card; refused while it has no model."""
    from rotoscope.filters.card import load_card
    from rotoscope.filters.catalogue import filter_entry

    entry = filter_entry(studio, name)
    card = load_card(entry.card)
    if card.model is None:
        raise RotoscopeError(entry.card, f"filter {name!r} has no model yet (run `dvc repro`)")
    return {"name": name, "kind": card.kind, "model_md5": card.model["md5"]}


def crossfade_used(studio: Studio, job: RenderJob) -> dict[str, str] | None:
    """The filter a render crossfades to (as :func:`filter_used`), or None."""
    crossfade = job.timeline().crossfade
    if crossfade is None:
        return None
    try:
        return filter_used(studio, crossfade.to)
    except ParamsError as error:  # an unknown name, refused as an unknown `filter` is
        raise ParamsError(error.path, f"renders.{job.name}.crossfade.to: {error.problem}") from None


def _frame_files(job: RenderJob) -> dict[str, object]:
    """How the stylized frame files were written: the render's size limit (if any) and format."""
    shrink = {"max_side": job.max_side} if job.max_side is not None else {}
    return {**shrink, "format": job.format, "quality": job.quality}


def mix_pixels(
    source: np.ndarray | None, paintings: list[tuple[np.ndarray, int]], strength: int
) -> np.ndarray:
    """``strength`` thousandths of the paintings (their shares in thousandths, summing to 1000)
    over the rest of the source, in integers: the same bytes on every machine, rounded half up.

    At full strength the source is not needed (None), and one painting comes back unchanged."""
    scale = SCALE * SCALE  # 255 * 10**6 still fits an int32
    total = np.zeros(paintings[0][0].shape, dtype=np.int32)
    for painting, share in paintings:
        total += painting.astype(np.int32) * (share * strength)
    if strength < SCALE:
        assert source is not None
        total += source.astype(np.int32) * ((SCALE - strength) * SCALE)
    total += scale // 2
    total //= scale
    return total.astype(np.uint8)


class StylizedFrames:
    """A render's frames. Each frame's painting by each filter it takes (the filter alone at full
    strength, kept losslessly) is found in the reuse store or painted; the frame itself is those
    paintings mixed over the source frame at its moment's values, or, outside the render's range
    or at strength 0, the source frame; with a temporal method that is blended with the output
    before it. Every stage is kept under its own key, so an edit redoes only what it changes."""

    def __init__(
        self,
        studio: Studio,
        job: RenderJob,
        parent: Manifest,
        model_md5: str,
        reuse: FrameReuse,
        fade_md5: str | None = None,
    ) -> None:
        self.studio, self.job, self.parent, self.reuse = studio, job, parent, reuse
        self.temporal = job.temporal_settings()
        timeline = job.timeline()
        self.filters = [job.filter]  # 0: the render's filter, 1: the one it crossfades to
        self.models = [model_md5]
        if timeline.crossfade is not None:
            self.filters.append(timeline.crossfade.to)
            self.models.append(fade_md5 or filter_used(studio, timeline.crossfade.to)["model_md5"])
        seconds = frame_seconds([frame.pts for frame in parent.frames], parent.time_base_fraction)
        self.mixes = timeline.frames(seconds)  # by frame index
        self.painting = {**job.painting(), "apply": APPLY_VERSION, "memory_mb": DEFAULT_MEMORY_MB}
        self.stylized = 0  # paintings made (network runs)
        self.mixed = 0  # frames mixed from their paintings (or the source re-encoded)
        self.blended = 0  # temporal blends made
        self.reused = 0  # output frames found, or taken from the source as they are
        self.size: tuple[int, int] | None = None
        self._painter: Painter | None = None
        self._source_files: dict[int, Path] = {}
        self.painting_time: PaintingTime | None = None  # set when the executor painted
        self._motion: _MotionAhead | None = None
        # the source's own file serves a frame left as the source when it is what we would write
        self._source_as_is = job.format == parent.extract.get("format") and (
            job.max_side is None or max(parent.width, parent.height) <= job.max_side
        )
        self._own_keys = [self._own_key(source) for source in parent.frames]

    # -- keys --------------------------------------------------------------------------------
    def painting_key(self, source: Frame, which: int = 0) -> str:
        """A painting's key: the source frame, the model, the painting settings."""
        return FrameReuse.key(source.md5, self.models[which], self.painting)

    def own_key(self, source: Frame) -> str:
        return self._own_keys[source.i]

    def _own_key(self, source: Frame) -> str:
        """The frame before any temporal blend: its paintings and its mix values (or the source
        frame, which is then all that decides it), and how it is written."""
        mix = self.mixes[source.i]
        what: dict[str, object] = {"format": self.job.format, "quality": self.job.quality, "mix": MIX_VERSION}
        if mix.is_source:
            what |= {"source": source.md5, "max_side": self.job.max_side}
        else:
            shares = [[self.painting_key(source, which), share] for which, share in mix.paintings()]
            what |= {"source": source.md5, "strength": mix.strength, "paintings": shares}
        return md5_bytes(json.dumps(what, sort_keys=True).encode())

    def output_keys(self) -> list[str]:
        """Each output's reuse key: the frame's own, or where it is blended with the output before
        it, that chained to the key of the output before it."""
        if not self.temporal.on:
            return list(self._own_keys)
        alone = self.unblended()
        keys: list[str] = []
        for index, key in enumerate(self._own_keys):
            chained = {"own": key, "after": keys[-1] if keys else None, **self.temporal.key()}
            keys.append(key if index in alone else md5_bytes(json.dumps(chained, sort_keys=True).encode()))
        return keys

    def shot_starts(self) -> set[int]:
        return {0, *(self.parent.cuts or [])}

    def unblended(self) -> set[int]:
        """The frames never blended with the one before: each shot's first, every frame outside
        the range, and the first one inside it (the filter comes in afresh there)."""
        outside = {index for index, mix in enumerate(self.mixes) if not mix.inside}
        entering = {index + 1 for index in outside if index + 1 < len(self.mixes)} - outside
        return self.shot_starts() | outside | entering

    # -- making them -------------------------------------------------------------------------
    def missing_paintings(self) -> list[PaintRequest]:
        """The paintings the frames need that were never made (or whose bytes are gone): the
        frames whose output and own frame are not found either (as :meth:`stage_all` goes)."""
        wanted: dict[str, PaintRequest] = {}
        for source, key in zip(self.parent.frames, self.output_keys(), strict=True):
            mix = self.mixes[source.i]
            if mix.is_source or self._found(source, key) or self.reuse.find(self.own_key(source)):
                continue
            for which, _share in mix.paintings():
                painting = self.painting_key(source, which)
                if painting not in wanted and self.reuse.find(painting) is None:
                    wanted[painting] = PaintRequest(painting, self._source_file(source), source.md5, which)
        return list(wanted.values())

    def paint_missing(self, executor: Executor) -> None:
        """Every missing painting made by ``executor`` (in this process or on a cluster), with
        what the studio's measured rates said it would take beside what it took."""
        requests = self.missing_paintings()
        if not requests:
            return
        rates = measured_rates(self.studio.layout)  # before this run adds its own
        job = self.paint_job()
        start = time.perf_counter()
        with progress_bar(f"paint {self.job.name} ({executor.name})", len(requests)) as update:
            painted = executor.paint(job, requests, update)
        took = time.perf_counter() - start
        self.stylized += sum(1 for item in painted if item.seconds > 0)
        prices = self.studio.compute_settings().prices
        where, hardware, workers = executor.name, executor.hardware, executor.workers
        expected = place(self.work(requests, job), rates, where, hardware, workers, prices)
        self.painting_time = PaintingTime(where, hardware, workers, expected.seconds, round(took, 3))

    def work(self, requests: list[PaintRequest], job: PaintJob | None = None) -> list[Work]:
        """The paintings' work per filter kind, in the units :mod:`rotoscope.estimate` rates."""
        from rotoscope.filters.inference import read_network

        size = fit_size((self.parent.width, self.parent.height), self.job.max_side)
        job = job or self.paint_job()
        totals: dict[str, list[float]] = {}
        for which, model in enumerate(job.models):
            count = sum(1 for request in requests if request.which == which)
            if count:
                layers = None if model.kind == "instant" else read_network(model.path).layers
                units = painting_units(model.kind, layers, *size, self.job.brush)
                entry = totals.setdefault(model.kind, [0, 0.0])
                entry[0] += count
                entry[1] += count * units
        return [Work(kind, int(count), units) for kind, (count, units) in totals.items()]

    def paint_job(self) -> PaintJob:
        from rotoscope.filters.catalogue import filter_entry

        models = tuple(
            FilterModel(name, entry.kind, entry.model, md5)
            for name, md5 in zip(self.filters, self.models, strict=True)
            for entry in [filter_entry(self.studio, name)]
        )
        settings = ApplySettings(1.0, self.job.preserve_color, self.job.max_side, self.job.brush)
        return PaintJob(self.studio.root, models, settings)

    def stage_all(self, staged: Path, update: Callable[..., None]) -> list[Frame]:
        """Every output frame copied into ``staged`` (in order: each may need the one before)."""
        if self.temporal.method != "flow":
            return self._stage_in_order(staged, update)
        with _MotionAhead(self.parent, self.unblended(), self._source_file) as self._motion:
            return self._stage_in_order(staged, update)

    def _stage_in_order(self, staged: Path, update: Callable[..., None]) -> list[Frame]:
        frames = []
        for source, key in zip(self.parent.frames, self.output_keys(), strict=True):
            found = self._found(source, key)
            self.reused += found is not None
            blob, md5, size = found or self._output(source, key, staged)
            target = staged / self._name(source)
            atomic_copy(blob, target)
            if self.size is None:
                with Image.open(target) as picture:
                    self.size = picture.size
            blended = f", {self.blended} blended" if self.temporal.on else ""
            update(source.i + 1, f"{self.stylized} stylized, {self.mixed} mixed{blended}")
            frames.append(Frame(i=source.i, pts=source.pts, md5=md5, bytes=size, src=source.md5))
        return frames

    def _found(self, source: Frame, key: str) -> tuple[Path, str, int] | None:
        if key == self.own_key(source) and self.mixes[source.i].is_source and self._source_as_is:
            return self._source_blob(source)
        return self.reuse.find(key)

    def own(self, source: Frame) -> tuple[Path, str, int]:
        """The frame before any temporal blend, found or made: its paintings mixed over the source
        at its values, or the source frame itself."""
        mix = self.mixes[source.i]
        if mix.is_source and self._source_as_is:
            return self._source_blob(source)
        key = self.own_key(source)
        return self.reuse.find(key) or self._mix(source, key)

    def _name(self, source: Frame) -> str:
        return f"{source.i:0{manifests.FRAME_NAME_DIGITS}d}.{self.job.format}"

    def _output(self, source: Frame, key: str, staged: Path) -> tuple[Path, str, int]:
        own = self.own(source)
        if key == self.own_key(source):
            return own
        previous = _rgb(staged / self._name(self.parent.frames[source.i - 1]))
        styled = _rgb(own[0])
        motion = self._motion.into(source.i, styled.shape[:2]) if self._motion else None
        mixed = Image.fromarray(blend(self.temporal, styled, previous, motion))
        self.blended += 1
        return self._keep(key, mixed)

    def _mix(self, source: Frame, key: str) -> tuple[Path, str, int]:
        mix = self.mixes[source.i]
        picture = self._source_picture(source) if mix.strength < SCALE or mix.is_source else None
        if not mix.is_source:
            paintings = [(self._painting(source, which), share) for which, share in mix.paintings()]
            under = None if picture is None else _same_size(picture, paintings[0][0])
            picture = Image.fromarray(mix_pixels(under, paintings, mix.strength))
        assert picture is not None
        self.mixed += 1
        return self._keep(key, picture)

    def _painting(self, source: Frame, which: int) -> np.ndarray:
        key = self.painting_key(source, which)
        found = self.reuse.find(key)
        return _rgb(found[0]) if found else self._paint(source, which, key)

    def _paint(self, source: Frame, which: int, key: str) -> np.ndarray:
        """One painting made here: one the executor's run did not leave (its bytes lost since)."""
        if self._painter is None:
            self._painter = Painter(self.paint_job())
        made = self._painter.paint(PaintRequest(key, self._source_file(source), source.md5, which))
        self.stylized += made.seconds > 0
        found = self.reuse.find(key)
        assert found is not None, "a painting just kept is in the store"
        return _rgb(found[0])

    def _keep(self, key: str, picture: Image.Image) -> tuple[Path, str, int]:
        with temp_beside(self.reuse.blob_dir / f"made-{key}") as temp:
            save_image(picture, temp, self.job.format, self.job.quality)
            return self.reuse.keep(key, temp)

    def _source_picture(self, source: Frame) -> Image.Image:
        """The source frame at the render's size (what the filter paints over)."""
        with Image.open(self._source_file(source)) as picture:
            return fit_within(picture.convert("RGB"), self.job.max_side)

    def _source_blob(self, source: Frame) -> tuple[Path, str, int]:
        path = self._source_file(source)
        return path, source.md5, path.stat().st_size

    def _source_file(self, source: Frame) -> Path:
        """The source frame's file, hashed once a run (the painting prepass and the mix both ask)."""
        if source.i not in self._source_files:
            self._source_files[source.i] = self._checked_source_file(source)
        return self._source_files[source.i]

    def _checked_source_file(self, source: Frame) -> Path:
        check = self.reuse.blobs.check(source.md5, self.parent.frame_path(self.studio.root, source))
        if check.state != "ok" or check.where is None:
            raise RotoscopeError(
                self.parent.frame_path(self.studio.root, source),
                f"source frame {source.i} is {check.state} (run `dvc pull` or `dvc checkout`)",
            )
        return check.where


def _same_size(picture: Image.Image, painting: np.ndarray) -> np.ndarray:
    """The source frame as pixels the size of its painting (a filter keeps the size it is given;
    this guards the mix should one ever round a side differently)."""
    height, width = painting.shape[:2]
    if picture.size != (width, height):
        picture = picture.resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(picture)


class _MotionAhead:
    """The source frames' motion into each frame being blended, estimated one frame ahead on a
    worker thread: it depends on the source alone, so it overlaps blending the frame before."""

    def __init__(self, parent: Manifest, starts: set[int], source_file: Callable[[Frame], Path]) -> None:
        self._frames, self._starts, self._source_file = parent.frames, starts, source_file
        self._estimator = MotionEstimator()
        self._pool = ThreadPoolExecutor(1)
        self._pending: dict[int, Future[Motion]] = {}
        self._grey: tuple[int, np.ndarray] | None = None  # the last source frame's, worker only

    def __enter__(self) -> _MotionAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(cancel_futures=True)

    def into(self, index: int, shape: tuple[int, ...]) -> Motion:
        """The motion from source frame ``index - 1`` to ``index``, at ``shape`` (height, width)."""
        future = self._pending.pop(index, None) or self._pool.submit(self._estimate, index, shape)
        following = index + 1
        if following < len(self._frames) and following not in self._starts:
            self._pending[following] = self._pool.submit(self._estimate, following, shape)
        return future.result()

    def _estimate(self, index: int, shape: tuple[int, ...]) -> Motion:
        return self._estimator.motion(self._source_grey(index - 1, shape), self._source_grey(index, shape))

    def _source_grey(self, index: int, shape: tuple[int, ...]) -> np.ndarray:
        if self._grey is not None and self._grey[0] == index:
            return self._grey[1]
        with Image.open(self._source_file(self._frames[index])) as picture:
            picture.draft("L", picture.size)  # a JPEG decodes its luma alone
            small = picture.convert("L")
            if small.size != (shape[1], shape[0]):
                small = small.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
            self._grey = (index, np.asarray(small))
        return self._grey[1]


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture if picture.mode == "RGB" else picture.convert("RGB"))


# -- reassemble ------------------------------------------------------------------------------


def reassemble(manifest_path: Path, out: Path, settings: EncodeSettings | None = None) -> ReassembleResult:
    """Encode a manifest's frames at their recorded timestamps, with the source video's audio.

    In segments (the default): only the segments holding frames that changed since an earlier
    run are encoded; the others come from the segment cache by stream copy.
    """
    studio = Studio.find(manifest_path.parent)
    manifest = manifests.load(studio.layout.inside(manifest_path, "manifest"))
    settings = studio.encode_settings() if settings is None else settings.validate("reassemble settings")
    out = studio.layout.output(out)
    with exclusive(studio.layout, manifest_lock(manifest), f"writing {manifest.name!r}"):
        clear_killed_writes(out)
        return _reassemble(studio, manifest, out, settings)


def manifest_lock(manifest: Manifest) -> str:
    """The lock of the video (a source manifest) or render (a stylized one) a manifest belongs to."""
    if manifest.kind == "source":
        return video_lock(manifest.name)
    return render_lock(manifest.video_name, manifest.name)


def _reassemble(studio: Studio, manifest: Manifest, out: Path, settings: EncodeSettings) -> ReassembleResult:
    audio_source = manifest.video_path(studio.root)
    if manifest.video.get("audio") and not audio_source.is_file():
        raise RotoscopeError(
            audio_source,
            "source video missing; its audio cannot be copied "
            "(run `dvc pull`, or set reassemble.audio: none)",
        )
    frames = manifest.frames
    credit = render_credit(studio, manifest)  # a render credits its filter's artwork; a source none
    with progress_bar(f"reassemble {manifest.name}", len(frames)) as update:
        return encode_at_timestamps(
            studio,
            manifest,
            out,
            settings,
            (manifest.width, manifest.height),
            [frame.md5 for frame in frames],
            lambda i: _picture(studio, manifest, frames[i]),
            update,
            metadata=credit.for_container() if credit else None,
        )


def encode_at_timestamps(
    studio: Studio,
    manifest: Manifest,
    out: Path,
    settings: EncodeSettings,
    size: tuple[int, int],
    identities: list[str],
    picture_at: Callable[[int], Image.Image],
    update: Callable[[int], None],
    metadata: dict[str, str] | None = None,
) -> ReassembleResult:
    """Pictures shown at a manifest's timestamps, with its source video's audio when present,
    and ``metadata`` as the container's tags.

    In segments when the codec allows: ``identities[i]`` names picture ``i``, and segments whose
    pictures all kept their names come from the segment cache by stream copy.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    audio_source = manifest.video_path(studio.root)
    pts = [frame.pts for frame in manifest.frames]
    common = {
        "time_base": manifest.time_base_fraction,
        "end_pts": manifest.end_pts,
        "size": size,
        "settings": settings,
        "audio_source": audio_source if audio_source.is_file() else None,
        "metadata": metadata,
    }
    if not settings.segmented:
        encode_video(out, (picture_at(i) for i in range(len(pts))), pts, on_frame=update, **common)
        return ReassembleResult(out, len(pts), 1, 1)
    cache = SegmentCache(studio.segments_dir())
    workers = studio.compute_settings().encode_workers
    done = encode_segmented(
        out, identities, picture_at, pts, cache=cache, on_frame=update, workers=workers, **common
    )
    cache.tidy()
    return ReassembleResult(out, done.frames_encoded, done.encoded, done.segments)


@dataclass(frozen=True)
class ReassembleResult:
    path: Path
    frames_encoded: int
    segments_encoded: int
    segments: int


def frame_file(studio: Studio, manifest: Manifest, frame: Frame) -> Path:
    """A frame's file in the work tree; refused with a hint when it is not there."""
    path = manifest.frame_path(studio.root, frame)
    if not path.is_file():
        raise RotoscopeError(path, f"frame {frame.i} is missing (run `dvc pull` or `dvc checkout`)")
    return path


def _picture(studio: Studio, manifest: Manifest, frame: Frame) -> Image.Image:
    path = frame_file(studio, manifest, frame)
    with Image.open(path) as picture:
        if picture.size != (manifest.width, manifest.height):
            raise RotoscopeError(
                path,
                f"frame is {picture.size[0]}x{picture.size[1]}, manifest "
                f"says {manifest.width}x{manifest.height}",
            )
        return picture.convert("RGB")
