"""The HTTP API: the studio's verbs as JSON endpoints (the second face over :mod:`rotoscope.verbs`).

Every handler parses, calls one verb (or one read of the studio) and returns a record; the
library raises the same one-line errors the CLI prints, turned into a 4xx here. Names in paths and
queries are checked by the layout's name rule before anything touches the disk, blobs are addressed
by md5 only, and uploads are streamed to the studio's scratch folder under a size limit.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from rotoscope.errors import NotFoundError
from rotoscope.jobs import Job, JobVerb
from rotoscope.layout import NAME
from rotoscope.web import views
from rotoscope.web.context import WebStudio, web_studio
from rotoscope.web.uploads import received

router = APIRouter(prefix="/api")
Name = Annotated[str, Field(pattern=NAME.pattern, max_length=64)]
PathName = Annotated[str, Query(pattern=NAME.pattern, max_length=64)]
Rev = Annotated[str | None, Query(max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/@^~-]*$")]
MD5 = re.compile(r"^[0-9a-f]{32}$")
Here = Annotated[WebStudio, Depends(web_studio)]


class Message(BaseModel):
    detail: str


def _error(description: str) -> dict[str, Any]:
    # JSON whatever the operation's own media type (a picture, a log): errors are always records
    return {
        "description": description,
        "content": {"application/json": {"schema": Message.model_json_schema()}},
    }


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Refused input, with the reason"),
    403: _error("A path that leads outside the studio"),
    404: _error("No such thing in the studio"),
    409: _error("Busy: another writer holds the lock"),
    413: _error("Over the size limit"),
    422: _error("A parameter that does not fit its rule"),
}


# -- the studio --------------------------------------------------------------------------------------


@router.get("/studio", responses=ERRORS)
def studio_summary(here: Here) -> views.StudioSummary:
    return views.studio_summary(here.studio)


@router.get("/filters", responses=ERRORS)
def list_filters(
    here: Here,
    collection: Annotated[str | None, Query(max_length=200)] = None,
    category: Annotated[str | None, Query(max_length=100)] = None,
    licence: Annotated[Literal["open", "restricted", "unknown"] | None, Query()] = None,
) -> list[views.CardView]:
    return views.gallery(here.studio, collection, category, licence)


@router.get("/filters/{name}", responses=ERRORS)
def filter_card(here: Here, name: Annotated[str, views.NAME_PATH]) -> views.CardView:
    return views.card_view(here.studio.filter_card(name))


@router.get("/filters/{name}/style", responses=ERRORS, response_class=Response)
def filter_style(here: Here, name: Annotated[str, views.NAME_PATH]) -> Response:
    """The filter's style image, as a web-sized JPEG."""
    return views.jpeg_response(here.thumbnails.style(here.studio, name), immutable=False)


@router.get("/filters/{name}/archive", responses=ERRORS, response_class=Response)
def filter_archive(here: Here, name: Annotated[str, views.NAME_PATH]) -> Response:
    """The filter as an archive (card, style image, model) for another studio (``filter export``)."""
    folder = here.studio.layout.scratch("exports")
    folder.mkdir(parents=True, exist_ok=True)
    written = here.studio.filter_export(name, folder / f"{name}.rotoscope-filter")
    disposition = f'attachment; filename="{written.name}"'
    return Response(
        written.read_bytes(), media_type="application/gzip", headers={"Content-Disposition": disposition}
    )


@router.get("/photos/{md5}", responses=ERRORS, response_class=Response)
def photo(
    here: Here, md5: Annotated[str, views.MD5_PATH], width: Annotated[int, Query(ge=16, le=2048)] = 320
) -> Response:
    """One of the studio's test photos (``photos/``), web-sized."""
    path = views.grid_photo(here.studio, md5)
    width = views.thumb_width(width)
    return views.jpeg_response(here.thumbnails.photo(path, md5, width), etag=f'"{md5}-{width}"')


@router.get("/grid/{md5}/{name}", responses=ERRORS, response_class=Response)
def grid_cell(
    here: Here,
    md5: Annotated[str, views.MD5_PATH],
    name: Annotated[str, views.NAME_PATH],
    width: Annotated[int, Query(ge=64, le=1024)] = 320,
) -> Response:
    """A test photo through a filter, small: one cell of the photos x filters grid."""
    path = views.grid_photo(here.studio, md5)
    card = here.studio.filter_card(name)
    if card.model is None:
        raise NotFoundError(name, "this filter has no model yet (run `dvc repro`)")
    width = views.thumb_width(width)
    key = f"grid-{md5}-{card.model['md5']}-{width}.jpg"
    data = here.thumbnails.painted(key, lambda: views.grid_preview(here.studio, path, name, width))
    return views.jpeg_response(data, etag=f'"{key}"')


@router.get("/videos", responses=ERRORS)
def list_videos(here: Here) -> list[views.VideoView]:
    return views.videos(here.studio)


@router.get("/renders", responses=ERRORS)
def list_renders(here: Here) -> list[views.RenderView]:
    return views.renders(here.studio)


class NewRender(BaseModel):
    name: Name
    video: Name
    filter: Name
    strength: float = Field(1.0, ge=0, le=1)
    preserve_color: bool = False
    max_side: int | None = Field(None, ge=16, le=16384)
    brush: float | None = Field(None, ge=1, le=32)
    temporal: Literal["off", "ema", "flow"] | None = None
    temporal_weight: float | None = Field(None, ge=0, le=1)


@router.post("/renders", responses=ERRORS, status_code=201)
def new_render(here: Here, render: NewRender) -> views.RenderView:
    from rotoscope.verbs import RenderSpec

    spec = RenderSpec(**render.model_dump(exclude={"name"}))
    with here.writing():
        job = here.studio.render_new(render.name, spec)
    return views.render_view(here.studio, job)


# -- revisions, manifests, frames ------------------------------------------------------------------


@router.get("/revisions", responses=ERRORS)
def list_revisions(here: Here) -> views.RevisionList:
    return views.revisions(here.studio)


@router.get("/manifests/{video}/{kind}", responses=ERRORS)
def manifest_frames(
    here: Here,
    video: Annotated[str, views.NAME_PATH],
    kind: Annotated[str, views.NAME_PATH],
    rev: Rev = None,
) -> views.ManifestView:
    """A manifest's frames at ``rev`` (a branch, tag or commit; default: the work tree), read from
    Git without checking anything out."""
    return views.manifest_view(here.studio, video, kind, rev)


@router.get("/quality/{video}/{render}", responses=ERRORS)
def render_quality(
    here: Here,
    video: Annotated[str, views.NAME_PATH],
    render: Annotated[str, views.NAME_PATH],
    rev: Rev = None,
) -> views.QualityView:
    """The per-frame warping errors of a render's quality report at ``rev``."""
    return views.quality_view(here.studio, video, render, rev)


class FetchFrames(BaseModel):
    video: Name
    kind: Name
    rev: str = Field(max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/@^~-]*$")
    remote: Name | None = None


@router.post("/fetch", responses=ERRORS)
def fetch_frames(here: Here, wanted: FetchFrames) -> views.FetchView:
    """Bring a revision's frames of one manifest into the cache from the remote (by md5)."""
    return views.fetch_revision_frames(here.studio, wanted.video, wanted.kind, wanted.rev, wanted.remote)


@router.get("/blobs/{md5}", responses=ERRORS, response_class=Response)
def blob(
    here: Here,
    md5: Annotated[str, views.MD5_PATH],
    width: Annotated[int | None, Query(ge=16, le=4096)] = None,
) -> Response:
    """A frame by md5, from the work tree or the DVC cache: as stored, or as a JPEG ``width`` wide.
    Content-addressed, so cached for good."""
    if width is None:
        path = here.blobs.find(md5)
        return FileResponse(
            path, media_type=views.picture_type(path), headers=views.IMMUTABLE | {"ETag": f'"{md5}"'}
        )
    width = views.thumb_width(width)
    return views.jpeg_response(here.thumbnails.frame(here.blobs, md5, width), etag=f'"{md5}-{width}"')


@router.get("/diff", responses=ERRORS)
def diff(
    here: Here,
    a: Annotated[str, Query(max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/@^~-]*$")],
    b: Annotated[str, Query(max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/@^~-]*$")] = "HEAD",
) -> dict[str, Any]:
    """What changed between two revisions (the JSON of ``rotoscope diff --json``)."""
    return here.studio.diff(a, b).to_dict()


@router.get("/log/{video}/{kind}", responses=ERRORS)
def manifest_log(
    here: Here, video: Annotated[str, views.NAME_PATH], kind: Annotated[str, views.NAME_PATH]
) -> list[views.LogView]:
    return views.log_view(here.studio, video, kind)


@router.get("/verify", responses=ERRORS)
def verify(here: Here) -> views.VerifyView:
    report = here.studio.verify()
    return views.VerifyView(ok=report.ok, checked=report.checked, problems=report.problems[:200])


# -- uploads (streamed to disk under a limit, then checked as the CLI checks a file) -----------------


@router.post(
    "/uploads/videos",
    responses=ERRORS,
    status_code=201,
    openapi_extra=views.BINARY_BODY,
)
async def upload_video(
    here: Here,
    request: Request,
    filename: Annotated[str, Query(max_length=200)],
    name: Annotated[str | None, Query(pattern=NAME.pattern, max_length=64)] = None,
) -> views.VideoView:
    async with received(request, here, filename, "video") as path:
        with here.writing():
            added = await run_in_threadpool(here.studio.add, path, name or None)
    return views.video_view(here.studio, added.name)


@router.post(
    "/uploads/filters",
    responses=ERRORS,
    status_code=201,
    openapi_extra=views.BINARY_BODY,
)
async def upload_filter(
    here: Here,
    request: Request,
    filename: Annotated[str, Query(max_length=200)],
    name: PathName,
    title: Annotated[str | None, Query(max_length=500)] = None,
    artist: Annotated[str | None, Query(max_length=500)] = None,
    year: Annotated[str | None, Query(max_length=50)] = None,
    collection: Annotated[str | None, Query(max_length=500)] = None,
    source_url: Annotated[str | None, Query(max_length=2000)] = None,
    licence: Annotated[str | None, Query(max_length=500)] = None,
    categories: Annotated[str | None, Query(max_length=500)] = None,
    notes: Annotated[str | None, Query(max_length=5000)] = None,
    kind: Literal["instant", "trained"] = "instant",
) -> views.CardView:
    """A filter from an uploaded style image: an instant one is made at once; a trained one is
    registered, and trained by a ``filter-make`` (or ``repro``) job."""
    from rotoscope.filters.card import Provenance, normalise_categories

    about = Provenance(
        title=title or None,
        artist=artist or None,
        year=year or None,
        collection=collection or None,
        source_url=source_url or None,
        licence=licence or None,
        categories=normalise_categories([categories or ""]),
        notes=notes or None,
    )
    async with received(request, here, filename, "picture") as path:
        with here.writing():
            card = await run_in_threadpool(here.studio.filter_new, name, path, kind, about)
    return views.card_view(card)


@router.post("/uploads/filter-archive", responses=ERRORS, status_code=201, openapi_extra=views.BINARY_BODY)
async def upload_filter_archive(
    here: Here,
    request: Request,
    filename: Annotated[str, Query(max_length=200)],
    name: Annotated[str | None, Query(pattern=NAME.pattern, max_length=64)] = None,
) -> views.CardView:
    """A filter exported from another studio, every member checked (``filter import``)."""
    async with received(request, here, filename, "archive") as path:
        with here.writing():
            card = await run_in_threadpool(here.studio.filter_import, path, False, name)
    return views.card_view(card)  # type: ignore[arg-type]


@router.post(
    "/uploads/stylize",
    responses=ERRORS,
    response_class=Response,
    openapi_extra=views.BINARY_BODY,
)
async def stylize_upload(
    here: Here,
    request: Request,
    filename: Annotated[str, Query(max_length=200)],
    filter: PathName,
    strength: Annotated[float, Query(ge=0, le=1)] = 1.0,
    preserve_color: bool = False,
    brush: Annotated[float, Query(ge=1, le=32)] = 1.0,
    max_side: Annotated[int | None, Query(ge=16, le=16384)] = 1600,
) -> Response:
    """An uploaded photo through a filter, returned with its credit (XMP) embedded."""
    async with received(request, here, filename, "picture") as path:
        picture = await run_in_threadpool(
            views.stylized_upload, here.studio, path, filter, strength, preserve_color, brush, max_side
        )
    return Response(
        picture.data, media_type=picture.media_type, headers={"X-Rotoscope-Model-Md5": picture.model_md5}
    )


# -- jobs -----------------------------------------------------------------------------------------------


class NewJob(BaseModel):
    verb: JobVerb
    args: dict[str, Any] = Field(default_factory=dict)


@router.post("/jobs", responses=ERRORS, status_code=202)
def submit_job(here: Here, job: NewJob) -> Job:
    """Queue long work (repro, split, stylize, filter-make, quality, push, pull); one runs at a time."""
    return here.runner.submit(job.verb, job.args)


@router.get("/jobs", responses=ERRORS)
def list_jobs(here: Here) -> list[Job]:
    return here.runner.store.all()[:100]


@router.get("/jobs/{job_id}", responses=ERRORS)
def job(here: Here, job_id: Annotated[str, views.JOB_PATH]) -> Job:
    return here.runner.store.load(job_id)


@router.post("/jobs/{job_id}/cancel", responses=ERRORS)
def cancel_job(here: Here, job_id: Annotated[str, views.JOB_PATH]) -> Job:
    return here.runner.cancel(job_id)


@router.post("/jobs/{job_id}/rerun", responses=ERRORS, status_code=202)
def rerun_job(here: Here, job_id: Annotated[str, views.JOB_PATH]) -> Job:
    """The same job again: an interrupted or cancelled one resumes from what it had finished."""
    return here.runner.rerun(job_id)


@router.get("/jobs/{job_id}/log", responses=ERRORS, response_class=PlainTextResponse)
def job_log(here: Here, job_id: Annotated[str, views.JOB_PATH]) -> PlainTextResponse:
    return PlainTextResponse(views.job_log_text(here.runner.store, job_id))


@router.get("/jobs/{job_id}/events", responses=ERRORS, response_class=Response)
async def job_events(here: Here, request: Request, job_id: Annotated[str, views.JOB_PATH]) -> Response:
    """Server-sent events: ``progress`` (stage, frames done, rate, time left) as the job goes, then
    one ``state`` event with the finished record."""
    here.runner.store.load(job_id)  # a 404 before the stream starts
    return EventSourceResponse(views.job_event_stream(here.runner.store, job_id, request), ping=15)
