"""The web studio's pages: server-rendered with Jinja2 (autoescaped), enhanced by studio.js.

Pages read the studio through the same :mod:`rotoscope.web.views` records as the JSON API; anything
a page needs after it loads (frames, progress) it asks the API for.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Annotated, Any

import jinja2
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from rotoscope.errors import NotFoundError, RotoscopeError
from rotoscope.filters.licence import Standing
from rotoscope.history import ManifestChange, ranges_text, value_text
from rotoscope.layout import NAME, check_name
from rotoscope.text import terminal
from rotoscope.web import views
from rotoscope.web.api import Here, Rev

router = APIRouter(include_in_schema=False)
NameQuery = Annotated[str | None, Query(pattern=NAME.pattern, max_length=64)]


@cache
def _templates() -> jinja2.Environment:
    folder = resources.files("rotoscope.web").joinpath("templates")
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,  # every value from a card, a manifest or Git is someone else's words
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["value"] = lambda value: terminal(value_text(value))
    environment.filters["ranges"] = ranges_text
    return environment


def page(name: str, request: Request, **values: Any) -> HTMLResponse:
    html = _templates().get_template(name).render(page=name.removesuffix(".html"), **values)
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


@router.get("/")
def home() -> Response:
    return RedirectResponse("/filters", status_code=307)


@router.get("/filters")
def filters_page(
    request: Request,
    here: Here,
    collection: Annotated[str | None, Query(max_length=200)] = None,
    category: Annotated[str | None, Query(max_length=100)] = None,
    licence: Standing | None = None,
) -> HTMLResponse:
    every = views.gallery(here.studio, None, None, None)
    shown = views.gallery(here.studio, collection, category, licence)
    return page(
        "filters.html",
        request,
        cards=shown,
        total=len(every),
        collections=sorted({card.collection for card in every if card.collection}),
        categories=sorted({category for card in every for category in card.categories}),
        chosen={"collection": collection or "", "category": category or "", "licence": licence or ""},
        photos=views.grid_photos(here.studio),
    )


@router.get("/renders")
def renders_page(request: Request, here: Here) -> HTMLResponse:
    return page("renders.html", request, videos=views.videos(here.studio), renders=views.renders(here.studio))


@router.get("/compare")
def compare_page(
    request: Request,
    here: Here,
    video: NameQuery = None,
    render: NameQuery = None,
    a: Rev = None,
    b: Rev = None,
) -> HTMLResponse:
    all_renders = views.renders(here.studio)
    if video is None and all_renders:
        video, render = all_renders[0].video, render or all_renders[0].name
    listing = views.revisions(here.studio)
    return page(
        "compare.html",
        request,
        renders=all_renders,
        video=video or "",
        render=render or "source",
        a=a or (listing.revisions[0].name if listing.revisions else "HEAD"),
        b=b or "",
        revisions=listing.revisions,
    )


@dataclass(frozen=True)
class ReviewFrame:
    index: int
    md5_a: str | None
    md5_b: str | None


@dataclass(frozen=True)
class ReviewRange:
    anchor: str
    first: int
    last: int
    frames: list[ReviewFrame]


@dataclass(frozen=True)
class ReviewManifest:
    change: ManifestChange
    video: str | None
    kind: str | None
    ranges: list[ReviewRange]


@router.get("/review")
def review_page(
    request: Request,
    here: Here,
    a: Rev = None,
    b: Rev = None,
) -> HTMLResponse:
    listing = views.revisions(here.studio)
    if a is None:
        return page(
            "review.html",
            request,
            report=None,
            manifests=[],
            revisions=listing.revisions,
            a="",
            b=b or "HEAD",
        )
    report = here.studio.diff(a, b or "HEAD")
    return page(
        "review.html",
        request,
        report=report,
        manifests=[_review_manifest(here, report.rev_a, report.rev_b, change) for change in report.manifests],
        revisions=listing.revisions,
        a=a,
        b=b or "HEAD",
    )


def _review_manifest(here: Any, a: str, b: str, change: ManifestChange) -> ReviewManifest:
    from rotoscope.history import Revisions
    from rotoscope.review import sampled_frames

    parts = change.path.removeprefix("manifests/").removesuffix(".json").split("/")
    video, kind = (parts[0], parts[1]) if len(parts) == 2 else (None, None)
    ranges: list[ReviewRange] = []
    if change.frames.changed and change.status not in ("invalid",):
        history = Revisions(here.studio.root)
        try:
            before = history.manifest(a, change.path)
            after = history.manifest(b, change.path)
        except RotoscopeError:
            before = after = None
        chosen = set(sampled_frames(change.frames.changed))
        for first, last in change.frames.changed:
            frames = [
                ReviewFrame(i, _md5_at(before, i), _md5_at(after, i))
                for i in range(first, last + 1)
                if i in chosen
            ]
            ranges.append(ReviewRange(f"{'-'.join(parts)}-{first}-{last}", first, last, frames))
    return ReviewManifest(change, video, kind, ranges)


def _md5_at(manifest: Any, index: int) -> str | None:
    if manifest is None or not 0 <= index < len(manifest.frames):
        return None
    return manifest.frames[index].md5


@router.get("/jobs")
def jobs_page(request: Request, here: Here) -> HTMLResponse:
    return page("jobs.html", request, jobs=here.runner.store.all()[:100])


@router.get("/media/renders/{video}/{file_name}")
def render_file(
    here: Here,
    video: Annotated[str, views.NAME_PATH],
    file_name: Annotated[str, views.RENDER_FILE_PATH],
) -> Response:
    """A render's video file, with range requests (so the player can seek)."""
    name = check_name(file_name.removesuffix(".mp4"), "render name")
    path = here.studio.render_path(video, name)
    if not path.is_file():
        raise NotFoundError(f"renders/{video}/{file_name}", "no such render (run `dvc repro`)")
    return FileResponse(path, media_type="video/mp4", headers={"Cache-Control": "no-cache"})
