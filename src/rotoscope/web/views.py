"""The studio as the web studio shows it: typed records read through the library, shared by the
JSON API and the pages (so a page never shows what the API would not say)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Path as PathParam
from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

from rotoscope import __version__
from rotoscope.credit import is_web_url
from rotoscope.errors import NotFoundError, RotoscopeError
from rotoscope.filters.card import FilterCard
from rotoscope.filters.licence import Standing, judge
from rotoscope.jobs import JobStore
from rotoscope.layout import NAME, check_name
from rotoscope.manifest import Manifest
from rotoscope.studio import RenderJob, Studio

NAME_PATH = PathParam(pattern=NAME.pattern, max_length=64)
MD5_PATH = PathParam(pattern=r"^[0-9a-f]{32}$")
JOB_PATH = PathParam(pattern=r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
BINARY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


# -- records -----------------------------------------------------------------------------------------


class StudioSummary(BaseModel):
    name: str  # the studio folder's name (never its path on the server)
    version: str
    videos: list[str]
    renders: list[str]
    filters: int


class CardView(BaseModel):
    name: str
    kind: str
    title: str | None
    artist: str | None
    year: str | None
    collection: str | None
    source_url: str | None
    licence: str | None
    licence_standing: Standing
    licence_note: str
    categories: list[str]
    notes: str | None
    style_url: str
    made: bool
    model_md5: str | None
    made_how: str | None  # recipe, in a few words
    seconds: float | None
    hardware: str | None


class VideoView(BaseModel):
    name: str
    file: str
    frames: int | None
    width: int | None
    height: int | None
    duration: float | None
    render_url: str | None


class RenderView(BaseModel):
    name: str
    video: str
    filter: str
    look: dict[str, Any]
    frames: int | None
    render_url: str | None
    flicker: float | None  # the mean warping error of the quality report
    flicker_per_frame_filter: float | None  # the same for the filter frame by frame


class Revision(BaseModel):
    name: str
    commit: str
    subject: str
    kind: str  # branch, tag, commit


class RevisionList(BaseModel):
    head: str
    revisions: list[Revision]


class FrameView(BaseModel):
    i: int
    time: float
    md5: str


class ManifestView(BaseModel):
    video: str
    kind: str
    rev: str | None
    width: int
    height: int
    fps: float | None
    frames: list[FrameView]


class QualityView(BaseModel):
    video: str
    render: str
    rev: str | None
    warping_error: list[float | None]
    per_frame_warping_error: list[float | None]


class FetchView(BaseModel):
    fetched: int
    missing: int


class LogView(BaseModel):
    commit: str
    date: str
    subject: str
    summary: str


class VerifyView(BaseModel):
    ok: bool
    checked: int
    problems: list[str]


# -- reads ------------------------------------------------------------------------------------------


def studio_summary(studio: Studio) -> StudioSummary:
    return StudioSummary(
        name=studio.root.name,
        version=__version__,
        videos=list(studio.videos()),
        renders=studio.render_names(),
        filters=len(studio.config().filters),
    )


def card_view(card: FilterCard) -> CardView:
    about = card.provenance
    standing = judge(about.licence)
    made = card.made or {}
    recipe = made.get("recipe") or {}
    how = ", ".join(f"{key} {value}" for key, value in list(recipe.items())[:6]) or None
    return CardView(
        name=card.name,
        kind=card.kind,
        title=about.title,
        artist=about.artist,
        year=about.year,
        collection=about.collection,
        source_url=about.source_url if is_web_url(about.source_url) else None,
        licence=about.licence,
        licence_standing=standing.standing,
        licence_note=standing.reason,
        categories=list(about.categories),
        notes=about.notes,
        style_url=f"/api/filters/{card.name}/style",
        made=card.model is not None,
        model_md5=(card.model or {}).get("md5"),
        made_how=how,
        seconds=made.get("seconds") if isinstance(made.get("seconds"), int | float) else None,
        hardware=made.get("hardware") if isinstance(made.get("hardware"), str) else None,
    )


def gallery(
    studio: Studio, collection: str | None, category: str | None, licence: Standing | None
) -> list[CardView]:
    views = []
    for card in studio.filters(collection, category):
        view = card_view(card)
        if licence is None or view.licence_standing == licence:
            views.append(view)
    return views


def video_view(studio: Studio, name: str) -> VideoView:
    entry = studio.video_entry(name)
    frames = width = height = duration = None
    try:
        manifest = studio.load_manifest(name)
        frames, width, height = len(manifest.frames), manifest.width, manifest.height
        duration = manifest.duration
    except RotoscopeError:
        pass
    rendered = studio.render_path(name).is_file()
    return VideoView(
        name=name,
        file=entry.file,
        frames=frames,
        width=width,
        height=height,
        duration=duration,
        render_url=f"/media/renders/{name}/source.mp4" if rendered else None,
    )


def videos(studio: Studio) -> list[VideoView]:
    return [video_view(studio, name) for name in studio.videos()]


def render_view(studio: Studio, job: RenderJob) -> RenderView:
    frames = None
    with contextlib.suppress(RotoscopeError):
        frames = len(studio.load_manifest(job.video, job.name).frames)
    flicker = per_frame = None
    try:  # a committed symlink (quality/<video> -> /etc) is refused, not followed
        metrics = studio.layout.quality_dir(job.video) / f"{job.name}.json"
        document = json.loads(_bounded_text(studio.layout.inside(metrics), 100_000))
        flicker = _number(document.get("warping_error"))
        per_frame = _number(document.get("per_frame_warping_error"))
    except (OSError, ValueError, AttributeError, RotoscopeError):
        pass
    rendered = studio.render_path(job.video, job.name).is_file()
    return RenderView(
        name=job.name,
        video=job.video,
        filter=job.filter,
        look=_plain(job.look()),
        frames=frames,
        render_url=f"/media/renders/{job.video}/{job.name}.mp4" if rendered else None,
        flicker=flicker,
        flicker_per_frame_filter=per_frame,
    )


def _bounded_text(path: Path, limit: int) -> str:
    """A tracked text file read only so far: a fork can commit one of any size."""
    with path.open("rb") as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise RotoscopeError(path.name, f"refused: over {limit:,} bytes")
    return data.decode("utf-8")


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _plain(value: Any) -> Any:
    """JSON-safe: what a look holds, through a JSON round trip."""
    return json.loads(json.dumps(value, default=str))


def renders(studio: Studio) -> list[RenderView]:
    return [render_view(studio, job) for job in studio.renders()]


def revisions(studio: Studio) -> RevisionList:
    from rotoscope.history import Revisions

    history = Revisions(studio.root)
    repo = history.repo
    found: list[Revision] = []
    for head in repo.heads:
        found.append(
            Revision(
                name=head.name, commit=head.commit.hexsha[:9], subject=_subject(head.commit), kind="branch"
            )
        )
    for tag in repo.tags:
        try:
            commit = tag.commit
        except ValueError:
            continue
        found.append(Revision(name=tag.name, commit=commit.hexsha[:9], subject=_subject(commit), kind="tag"))
    try:
        for commit in repo.iter_commits("HEAD", max_count=30):
            found.append(
                Revision(
                    name=commit.hexsha[:9], commit=commit.hexsha[:9], subject=_subject(commit), kind="commit"
                )
            )
        head = repo.head.commit.hexsha[:9]
    except ValueError:  # no commit yet
        head = ""
    return RevisionList(head=head, revisions=found)


def _subject(commit: Any) -> str:
    return str(commit.summary)[:200]


def _manifest(studio: Studio, video: str, kind: str, rev: str | None) -> Manifest:
    check_name(video, "video name")
    check_name(kind, "render name")
    if rev is None:
        try:
            return studio.load_manifest(video, kind)
        except RotoscopeError as error:
            if not studio.manifest_path(video, kind).exists():
                raise NotFoundError(
                    f"manifests/{video}/{kind}.json", "no such manifest in the work tree"
                ) from None
            raise error
    from rotoscope.history import Revisions

    history = Revisions(studio.root)
    history.resolve(rev)
    manifest = history.manifest(rev, f"manifests/{video}/{kind}.json")
    if manifest is None:
        raise NotFoundError(f"{rev}:manifests/{video}/{kind}.json", "no such manifest at that revision")
    return manifest


def manifest_view(studio: Studio, video: str, kind: str, rev: str | None) -> ManifestView:
    manifest = _manifest(studio, video, kind, rev)
    frames = [
        FrameView(i=frame.i, time=manifest.seconds(frame.pts), md5=frame.md5) for frame in manifest.frames
    ]
    duration = frames[-1].time - frames[0].time if len(frames) > 1 else 0
    fps = (len(frames) - 1) / duration if duration > 0 else None
    return ManifestView(
        video=video, kind=kind, rev=rev, width=manifest.width, height=manifest.height, fps=fps, frames=frames
    )


def quality_view(studio: Studio, video: str, render: str, rev: str | None) -> QualityView:
    check_name(video, "video name")
    check_name(render, "render name")
    relative = f"quality/{video}/{render}-frames.csv"
    if rev is None:
        try:
            text = _bounded_text(studio.layout.inside(relative), 10_000_000)
        except (FileNotFoundError, UnicodeDecodeError):
            raise NotFoundError(relative, "no quality report (run the quality stage)") from None
    else:
        from rotoscope.history import Revisions

        history = Revisions(studio.root)
        history.resolve(rev)
        found = history.text(rev, relative, limit=10_000_000)
        if found is None:
            raise NotFoundError(f"{rev}:{relative}", "no quality report at that revision")
        text = found
    warping, per_frame = [], []
    try:
        for row in csv.DictReader(io.StringIO(text, newline="")):
            warping.append(_cell(row.get("warping_error")))
            per_frame.append(_cell(row.get("per_frame_warping_error")))
    except csv.Error as error:
        raise RotoscopeError(relative, f"not a quality report ({error})") from None
    return QualityView(
        video=video, render=render, rev=rev, warping_error=warping, per_frame_warping_error=per_frame
    )


def _cell(text: str | None) -> float | None:
    try:
        value = float(text or "")
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def fetch_revision_frames(studio: Studio, video: str, kind: str, rev: str, remote: str | None) -> FetchView:
    from rotoscope.store import BlobStore, dvc_fetch_files

    manifest = _manifest(studio, video, kind, rev)
    store = BlobStore(studio.root)
    missing = [frame for frame in manifest.frames if not store.cache_path(frame.md5).is_file()]
    if missing:
        folder = studio.layout.recorded(manifest.frames_dir, "frames_dir")
        dvc_fetch_files(studio.root, [folder], rev, remote)
    still = sum(1 for frame in manifest.frames if not store.cache_path(frame.md5).is_file())
    return FetchView(fetched=len(missing) - still, missing=still)


def log_view(studio: Studio, video: str, kind: str) -> list[LogView]:
    from rotoscope.history import describe

    path = studio.manifest_path(video, kind)
    return [
        LogView(
            commit=entry.commit, date=entry.date, subject=entry.subject[:200], summary=describe(entry.change)
        )
        for entry in studio.log(path)
    ]


def picture_type(path: Path) -> str:
    with path.open("rb") as stream:
        head = stream.read(8)
    if head.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG"):
        return "image/png"
    return "application/octet-stream"  # never sniffed: nosniff is set on every response


THUMB_WIDTHS = (64, 120, 160, 240, 320, 480, 640, 960, 1280, 1920, 2560, 4096)


def thumb_width(asked: int) -> int:
    """The made size nearest above what was asked: a few sizes cached, not every number."""
    return next((width for width in THUMB_WIDTHS if width >= asked), THUMB_WIDTHS[-1])


def jpeg_response(data: bytes, etag: str | None = None, immutable: bool = True) -> Response:
    headers = dict(IMMUTABLE) if immutable else {"Cache-Control": "no-cache"}
    if etag:
        headers["ETag"] = etag
    return Response(data, media_type="image/jpeg", headers=headers)


@dataclass(frozen=True)
class StylizedUpload:
    data: bytes
    media_type: str
    model_md5: str


def stylized_upload(
    studio: Studio,
    photo: Path,
    filter_name: str,
    strength: float,
    preserve_color: bool,
    brush: float,
    max_side: int | None,
) -> StylizedUpload:
    from rotoscope.filters.apply import ApplySettings

    settings = ApplySettings(strength, preserve_color, max_side, brush)
    out = photo.with_name(f"{photo.stem}.{filter_name}.jpg")
    try:
        written = studio.stylize_image(photo, filter_name, out, settings)[0]
        return StylizedUpload(out.read_bytes(), "image/jpeg", written.model_md5)
    finally:
        out.unlink(missing_ok=True)


def job_log_text(store: JobStore, job_id: str) -> str:
    store.load(job_id)
    path = store.log_path(job_id)
    try:
        with path.open("rb") as stream:
            stream.seek(max(0, path.stat().st_size - 200_000))
            return stream.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


async def job_event_stream(store: JobStore, job_id: str, request: Request) -> AsyncIterator[dict[str, str]]:
    offset = 0
    while True:
        job = store.load(job_id)
        events, offset = store.events_since(job_id, offset)
        for event in events:
            yield {"event": "progress", "data": event.model_dump_json()}
        if job.is_finished:
            yield {"event": "state", "data": job.model_dump_json()}
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.25)


# -- the photos x filters grid ------------------------------------------------------------------------

RENDER_FILE_PATH = PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.mp4$")
MAX_GRID_PHOTOS = 12


class PhotoView(BaseModel):
    name: str
    md5: str
    url: str


def _photo_files(studio: Studio) -> list[tuple[Path, str]]:
    from rotoscope.filters.apply import picture_files
    from rotoscope.store import md5_file

    folder = studio.layout.photos_dir()
    if not folder.is_dir():
        return []
    try:
        paths = picture_files(folder)[:MAX_GRID_PHOTOS]
    except RotoscopeError:  # no photos in it
        return []
    found = []
    for path in paths:
        try:
            inside = studio.layout.inside(path, "photo")  # a committed symlink out of the studio is refused
        except RotoscopeError:
            continue
        found.append((inside, md5_file(inside)))
    return found


def grid_photos(studio: Studio) -> list[PhotoView]:
    """The studio's own test photos (``photos/``), the rows of the filters grid."""
    return [
        PhotoView(name=path.name, md5=md5, url=f"/api/photos/{md5}?width=320")
        for path, md5 in _photo_files(studio)
    ]


def grid_photo(studio: Studio, md5: str) -> Path:
    for path, found in _photo_files(studio):
        if found == md5:
            return path
    raise NotFoundError(md5, "no photo with this md5 in photos/")


def grid_preview(studio: Studio, photo: Path, filter_name: str, width: int) -> bytes:
    """The photo through the filter at ``width`` pixels, as a JPEG."""
    from rotoscope.filters.apply import ApplySettings, apply_filter, load_stylizer
    from rotoscope.media.images import open_picture

    styled = apply_filter(
        load_stylizer(studio, filter_name), open_picture(photo), ApplySettings(max_side=width)
    )
    buffer = io.BytesIO()
    styled.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()
