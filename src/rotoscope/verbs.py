"""The studio's verbs: the library API that the command line and the web studio are two faces of.

:class:`~rotoscope.studio.Studio` owns the layout and ``params.yaml``; this mixin gives it one
method per thing a user does. Each verb takes typed arguments, reports long work to ``progress``
(a callable receiving :class:`~rotoscope.progress.ProgressEvent` records; the terminal's bar when
None) and raises the taxonomy of :mod:`rotoscope.errors`. The faces only parse, call one verb and
show its result. Imports are lazy, as DVC's ``Repo`` binds its verbs: a ``rotoscope --help`` or a
web page never pays for TensorFlow or DVC it does not use.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rotoscope.errors import RotoscopeError
from rotoscope.progress import ProgressCallback, relay_events, reporting_to

if TYPE_CHECKING:
    from rotoscope.compute import ComputeSettings
    from rotoscope.estimate import RenderEstimate
    from rotoscope.filters.apply import ApplySettings
    from rotoscope.filters.card import FilterCard, Kind, Provenance
    from rotoscope.filters.collection import ImportReport
    from rotoscope.history import LogEntry, RevisionDiff
    from rotoscope.manifest import Frame
    from rotoscope.pipeline import ReassembleResult, SplitResult, StylizeResult
    from rotoscope.publish import PublishedSite
    from rotoscope.quality import QualityPaths, QualityReport
    from rotoscope.review import ManifestSummary, VerifyReport
    from rotoscope.studio import RenderJob, Studio


@dataclass(frozen=True)
class AddedVideo:
    name: str
    path: Path


@dataclass(frozen=True)
class RenderSpec:
    """A render as ``render new`` registers it (keyframed strength and crossfades are written in
    params.yaml directly; see the README's looks over time)."""

    video: str
    filter: str
    strength: float = 1.0
    preserve_color: bool = False
    max_side: int | None = None
    brush: float | None = None
    temporal: str | None = None
    temporal_weight: float | None = None

    def entry(self) -> dict[str, Any]:
        required = {
            "video": self.video,
            "filter": self.filter,
            "strength": self.strength,
            "preserve_color": self.preserve_color,
        }
        optional = {
            "max_side": self.max_side,
            "brush": self.brush,
            "temporal": self.temporal,
            "temporal_weight": self.temporal_weight,
        }
        return required | {key: value for key, value in optional.items() if value is not None}


@dataclass(frozen=True)
class FrameSelection:
    """Which frames of a manifest: indices (first-last, both included) or seconds shown."""

    frames: tuple[int, int] | None = None
    seconds: tuple[float, float] | None = None


@dataclass(frozen=True)
class FetchedFrames:
    manifest: Path
    first: int
    last: int
    count: int


@dataclass(frozen=True)
class StylizedPicture:
    source: Path
    target: Path
    filter: str
    model_md5: str


@dataclass(frozen=True)
class DvcRun:
    command: str
    output: str  # what DVC printed (its own words; shown through text.terminal)


class StudioVerbs:
    """The verbs of :class:`~rotoscope.studio.Studio` (mixed in there)."""

    # -- videos and renders ----------------------------------------------------------------------
    def add(self: Studio, video: Path, name: str | None = None) -> AddedVideo:
        """Copy a video in, track it with DVC and register it in params.yaml."""
        added, path = self.add_video(video, name)
        return AddedVideo(added, path)

    def split(
        self: Studio, names: list[str] | None = None, progress: ProgressCallback | None = None
    ) -> list[SplitResult]:
        """Decode videos (default: all) into frame files and their source manifests."""
        from rotoscope.pipeline import split

        with reporting_to(progress):
            return [split(self, name) for name in names or list(self.videos())]

    def render_new(self: Studio, name: str, spec: RenderSpec) -> RenderJob:
        """Register (or replace) a render; ``dvc repro`` stylizes and reassembles it."""
        from rotoscope.filters.catalogue import filter_entry

        filter_entry(self, spec.filter)
        self.add_render(name, spec.entry())
        return self.render_job(name)

    def renders(self: Studio) -> list[RenderJob]:
        return [self.render_job(name) for name in self.render_names()]

    def stylize(
        self: Studio,
        names: list[str] | None = None,
        progress: ProgressCallback | None = None,
        compute: ComputeSettings | None = None,
    ) -> list[StylizeResult]:
        """Run renders' filters (default: every render) over their videos' frames, painting on
        ``compute``'s executor (default: :meth:`compute_settings`)."""
        from rotoscope.executors import executor_for
        from rotoscope.pipeline import stylize

        executor = executor_for(compute or self.compute_settings())
        with reporting_to(progress):
            return [stylize(self, name, executor) for name in names or self.render_names()]

    def estimate(
        self: Studio, names: list[str] | None = None, workers: int | None = None
    ) -> list[RenderEstimate]:
        """Renders' (default: every render's) paintings still to make, and how long and how much
        they would take here and on ``workers`` Ray actors, from this studio's measured rates."""
        from rotoscope.estimate import DEFAULT_CLUSTER_WORKERS, RenderEstimate, measured_rates, placements
        from rotoscope.filters import runtime
        from rotoscope.pipeline import render_work

        compute = self.compute_settings()
        rates = measured_rates(self.layout)
        cluster = workers or compute.workers or DEFAULT_CLUSTER_WORKERS
        found = []
        for name in names or self.render_names():
            frames, work = render_work(self, name)
            ways = placements(work, rates, runtime.hardware_kind(), compute, cluster)
            found.append(RenderEstimate(name, frames, sum(part.paintings for part in work), work, ways))
        return found

    def reassemble(
        self: Studio,
        manifest: Path,
        out: Path,
        overrides: Mapping[str, object] | None = None,
        progress: ProgressCallback | None = None,
    ) -> ReassembleResult:
        """Encode a manifest's frames at their timestamps, with the source's audio; ``overrides``
        (codec, crf, preset, audio) replace params.yaml's ``reassemble:`` settings."""
        from rotoscope.pipeline import reassemble

        with reporting_to(progress):
            return reassemble(manifest, out, self.encode_settings(dict(overrides or {})))

    def repro(
        self: Studio, targets: list[str] | None = None, progress: ProgressCallback | None = None
    ) -> DvcRun:
        """``dvc repro``: rebuild what changed. The stage commands report their progress too."""
        return self.dvc("repro", *(targets or []), progress=progress)

    def dvc(self: Studio, *args: str, progress: ProgressCallback | None = None) -> DvcRun:
        """A DVC command in the studio (repro, push, pull, status), stage scripts on PATH."""
        return run_dvc(self.root, list(args), progress)

    # -- looking ---------------------------------------------------------------------------------
    def show(self: Studio, manifest: Path) -> ManifestSummary:
        from rotoscope.review import summarise

        return summarise(self.root, self.layout.inside(manifest, "manifest"))

    def verify(
        self: Studio, manifests: list[Path] | None = None, progress: ProgressCallback | None = None
    ) -> VerifyReport:
        """Every frame of every manifest (default: all) present with its md5, here or in the cache."""
        from rotoscope.progress import progress_bar
        from rotoscope.review import verify

        paths = [self.layout.inside(path, "manifest") for path in manifests or self.manifest_paths()]
        with reporting_to(progress), progress_bar("verify", None) as update:
            return verify(self.root, paths, update)

    def quality(
        self: Studio,
        manifests: list[Path],
        out: Path | None = None,
        preview: bool = True,
        progress: ProgressCallback | None = None,
    ) -> list[tuple[QualityReport, QualityPaths]]:
        """Measure renders' flicker (DVC metrics and plots), with side-by-side preview clips."""
        from rotoscope.quality import assess

        folder = self.layout.output(out) if out is not None else None
        with reporting_to(progress):
            return list(assess(self, manifests, folder, preview))

    def diff(self: Studio, rev_a: str, rev_b: str = "HEAD", under: Path | None = None) -> RevisionDiff:
        """What changed between two revisions, read from Git without checking anything out."""
        from rotoscope.history import diff_revisions, studio_path

        return diff_revisions(self.root, rev_a, rev_b, studio_path(self.root, under) if under else "")

    def review_page(self: Studio, report: RevisionDiff, out: Path, remote: str | None = None) -> int:
        """The diff as a page of side-by-side thumbnails; returns how many pairs it shows."""
        from rotoscope.review import review_page

        return review_page(self.root, report, self.layout.output(out), remote)

    def log(self: Studio, manifest: Path) -> list[LogEntry]:
        from rotoscope.history import manifest_log

        return manifest_log(self.root, manifest.resolve())

    def fetch(
        self: Studio, manifest: Path, selection: FrameSelection, remote: str | None = None
    ) -> FetchedFrames:
        """Pull only the chosen frames' blobs from the remote (by md5), not the whole folder."""
        from rotoscope import manifest as manifests
        from rotoscope.store import dvc_pull_files

        loaded = manifests.load(self.layout.inside(manifest, "manifest"))
        if (selection.frames is None) == (selection.seconds is None):
            raise RotoscopeError(manifest, "give exactly one of --frames FIRST-LAST or --time START-END")
        chosen: list[Frame] = (
            loaded.frames_between(*selection.frames)
            if selection.frames is not None
            else loaded.frames_shown(*selection.seconds)  # type: ignore[misc]
        )
        if not chosen:
            problem = f"no frames in that range (it has frames 0-{len(loaded.frames) - 1})"
            raise RotoscopeError(manifest, problem)
        dvc_pull_files(self.root, [loaded.frame_path(self.root, frame) for frame in chosen], remote)
        return FetchedFrames(manifest, chosen[0].i, chosen[-1].i, len(chosen))

    def remote_add(
        self: Studio, name: str, url: str, endpoint_url: str | None = None, default: bool = True
    ) -> None:
        """An S3 remote in .dvc/config (credentials come from the usual AWS sources, never Git)."""
        from rotoscope.layout import check_name
        from rotoscope.store import dvc_add_s3_remote

        dvc_add_s3_remote(self.root, check_name(name, "remote name"), url, endpoint_url, default)

    def publish(
        self: Studio,
        out: Path,
        renders: list[str] | None = None,
        stills: list[Path] | None = None,
        title: str = "Rotoscope collection",
        base_url: str | None = None,
    ) -> PublishedSite:
        """Chosen stills and renders (default: every rendered render) as a static site with an
        Atom feed, each picture web-sized and credited."""
        from rotoscope.publish import publish

        return publish(self, self.layout.output(out), renders, stills, title, base_url)

    # -- filters ---------------------------------------------------------------------------------
    def filter_new(
        self: Studio,
        name: str,
        style: Path,
        kind: Kind,
        provenance: Provenance,
        train: Mapping[str, object] | None = None,
    ) -> FilterCard:
        """A filter from a style image: card, image tracked by DVC, params entry. An instant one is
        made at once (a second's work); a trained one is trained by ``dvc repro`` or filter_make."""
        from rotoscope.filters.catalogue import new_filter

        chosen = {key: value for key, value in (train or {}).items() if value is not None}
        if kind == "trained":
            from rotoscope.filters.train import TrainRecipe

            TrainRecipe.from_params(dict(self.params().get("train") or {}), chosen, self.params_path)
        elif chosen:
            raise RotoscopeError(name, "training options apply to --kind trained only")
        new_filter(self, name, style, kind, provenance, chosen)
        if kind == "instant":
            return self.filter_make(name)
        return self.filter_card(name)

    def filter_make(
        self: Studio, name: str, resume: bool = False, progress: ProgressCallback | None = None
    ) -> FilterCard:
        """Make a filter's model: embed its style (instant) or train its network (trained)."""
        from rotoscope.filters.make import make_filter
        from rotoscope.locks import exclusive, filter_lock

        with reporting_to(progress), exclusive(self.layout, filter_lock(name), f"making filter {name!r}"):
            return make_filter(self, name, resume)

    def filters(self: Studio, collection: str | None = None, category: str | None = None) -> list[FilterCard]:
        from rotoscope.filters.catalogue import list_cards

        return list_cards(self, collection, category)

    def filter_card(self: Studio, name: str) -> FilterCard:
        from rotoscope.filters.card import load_card
        from rotoscope.filters.catalogue import filter_entry

        return load_card(filter_entry(self, name).card)

    def filter_import(
        self: Studio, path: Path, dry_run: bool = False, name: str | None = None
    ) -> ImportReport | FilterCard:
        """A collection CSV (one instant filter per good row; a report of the refused ones) or a
        filter archive (``filter export``'s, checked member by member)."""
        from rotoscope.filters import collection

        if path.suffix.lower() == ".csv":
            if name is not None:
                raise RotoscopeError(path, "--name is for one filter's archive, not a collection")
            return collection.import_collection(self, path, dry_run)
        if dry_run:
            return collection.read_archive(path).card
        return collection.import_archive(self, path, name)

    def filter_export(self: Studio, name: str, out: Path) -> Path:
        """The filter (card, style image, model) as one archive another studio can import."""
        from rotoscope.filters import collection

        return collection.export_filter(self, name, out)

    def stylize_image(
        self: Studio,
        photo: Path,
        filter_name: str,
        out: Path,
        settings: ApplySettings,
        memory_mb: int | None = None,
        progress: ProgressCallback | None = None,
        on_written: Callable[[StylizedPicture], None] | None = None,
    ) -> list[StylizedPicture]:
        """A filter over a photo or a folder of photos; each output credits the artwork and model."""
        from rotoscope.credit import filter_credit
        from rotoscope.filters.apply import DEFAULT_MEMORY_MB, apply_filter, load_stylizer, picture_jobs
        from rotoscope.media.images import open_photo, save_picture
        from rotoscope.progress import progress_bar

        jobs = picture_jobs(photo, out, filter_name)
        stylizer = load_stylizer(self, filter_name, memory_mb or DEFAULT_MEMORY_MB)
        credit = filter_credit(self, filter_name)  # the card whose model md5 load_stylizer checked
        written: list[StylizedPicture] = []
        with (
            reporting_to(progress),
            progress_bar(f"stylize {filter_name}", len(jobs), unit="photos") as update,
        ):
            for job in jobs:
                source = open_photo(job.source)  # keeps its ICC profile, DPI and 16 bits
                save_picture(
                    apply_filter(stylizer, source.picture, settings), job.target, like=source, credit=credit
                )
                written.append(StylizedPicture(job.source, job.target, filter_name, credit.model_md5))
                if on_written:
                    on_written(written[-1])
                update(len(written))
        return written

    def sheet(
        self: Studio,
        photo: Path,
        out: Path,
        collection: str | None = None,
        category: str | None = None,
        max_side: int = 640,
        progress: ProgressCallback | None = None,
    ) -> list[FilterCard]:
        """Every made filter (or one collection's, one category's) on one photo, in a contact sheet."""
        from rotoscope.filters.apply import ApplySettings, apply_filter, fit_within, load_stylizer
        from rotoscope.media.images import open_picture, save_picture
        from rotoscope.progress import progress_bar
        from rotoscope.review import SheetTile, contact_sheet

        picture = open_picture(photo)
        cards = [card for card in self.filters(collection, category) if card.model]
        if not cards:
            raise RotoscopeError(self.params_path, "no made filters to show (run `dvc repro`)")
        tiles = [SheetTile(fit_within(picture, max_side), "original", photo.name)]
        settings = ApplySettings(max_side=max_side)
        with reporting_to(progress), progress_bar("sheet", len(cards), unit="filters") as update:
            for done, card in enumerate(cards, 1):
                styled = apply_filter(load_stylizer(self, card.name), picture, settings)
                about = card.provenance
                caption = " · ".join(part for part in (about.artist, about.title, card.kind) if part)
                tiles.append(SheetTile(styled, card.name, caption))
                update(done)
        save_picture(contact_sheet(tiles), out)
        return cards


# -- DVC as a command ------------------------------------------------------------------------------


def run_dvc(root: Path, args: list[str], progress: ProgressCallback | None = None) -> DvcRun:
    """The DVC command line in ``root``, with this interpreter's scripts on PATH for the stages.

    Its output goes to the terminal as it comes; with ``progress``, it is kept instead, and the
    stage commands' progress events (written to a file named in the environment) are relayed.
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("DVC_NO_ANALYTICS", "1")
    command = " ".join(("dvc", *args))
    if progress is None:
        done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=env, check=False)
        if done.returncode != 0:
            raise RotoscopeError(root, f"`{command}` failed with exit code {done.returncode}")
        return DvcRun(command, "")
    with _relayed(progress) as events_file:
        env["ROTOSCOPE_PROGRESS_FILE"] = str(events_file)
        done = subprocess.run(
            [sys.executable, "-m", "dvc", *args],
            cwd=root,
            env=env,
            check=False,
            capture_output=True,
            text=True,
            errors="replace",
        )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        last = [line for line in output.splitlines() if line.strip()][-1:] or ["no output"]
        raise RotoscopeError(root, f"`{command}` failed with exit code {done.returncode}: {last[0]}")
    return DvcRun(command, output)


@contextmanager
def _relayed(progress: ProgressCallback) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="rotoscope-progress-") as folder:
        events_file = Path(folder, "events.jsonl")
        events_file.touch()
        stop = threading.Event()
        relay = threading.Thread(target=relay_events, args=(events_file, progress, stop), daemon=True)
        relay.start()
        try:
            yield events_file
        finally:
            stop.set()
            relay.join()


__all__ = [
    "AddedVideo",
    "DvcRun",
    "FetchedFrames",
    "FrameSelection",
    "RenderSpec",
    "StudioVerbs",
    "StylizedPicture",
]
