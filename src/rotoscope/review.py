"""Looking at what a studio holds: manifest summaries, blob verification, contact sheets, and the
review page of a diff between two revisions."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape
from PIL import Image, ImageDraw, ImageFont

from rotoscope import manifest as manifests
from rotoscope.errors import RotoscopeError
from rotoscope.history import (
    ManifestChange,
    RevisionDiff,
    Revisions,
    card_line,
    describe,
    ranges_text,
    remote_settings,
    value_text,
)
from rotoscope.manifest import Manifest
from rotoscope.store import BlobCheck, BlobStore, atomic_write_text, dvc_fetch_files
from rotoscope.text import terminal
from rotoscope.timeline import setting_text


@dataclass(frozen=True)
class ManifestSummary:
    path: Path
    manifest: Manifest
    bytes_on_disk: int
    frames_present: int

    def lines(self) -> list[str]:
        m = self.manifest
        video = m.video
        gaps = [b.pts - a.pts for a, b in zip(m.frames, m.frames[1:], strict=False)]
        steps = sorted(set(gaps))
        timing = (
            f"constant, every {m.seconds(steps[0]) * 1000:.3f} ms"
            if len(steps) == 1
            else f"variable, {m.seconds(min(gaps)) * 1000:.3f}-{m.seconds(max(gaps)) * 1000:.3f} ms"
            if gaps
            else "single frame"
        )
        audio = video.get("audio")
        audio_text = (
            f"{audio['codec']}, {audio['sample_rate']} Hz, {audio['channels']} ch"
            + (f", {audio['duration']:.3f} s" if audio.get("duration") else "")
            if audio
            else "none"
        )
        extract = m.extract
        lineage = m.lineage
        made_by = (
            [
                f"parent     {lineage.parent}  md5 {lineage.parent_md5}",
                f"filter     {lineage.filter['name']} ({lineage.filter['kind']}), model md5 "
                f"{lineage.filter['model_md5']}",
                *[
                    f"crossfade  to {fade['name']} ({fade['kind']}), model md5 {fade['model_md5']}"
                    for fade in [lineage.filter.get("crossfade")]
                    if fade
                ],
                "render     " + ", ".join(setting_text(key, value) for key, value in lineage.render.items()),
            ]
            if lineage
            else []
        )
        return [
            f"manifest   {self.path}",
            f"kind       {m.kind} ({m.name})",
            *made_by,
            f"video      {video['path']}  md5 {video['md5']}",
            f"source     {video['width']}x{video['height']} {video['codec']} {video['pix_fmt']}, "
            f"rotation {video['rotation']}, avg rate {video['avg_rate']}",
            f"frames     {len(m.frames)} x {m.width}x{m.height} {extract['format']} "
            f"(fps {extract['fps']}, max side {extract['max_side']}, quality {extract['quality']})",
            f"duration   {m.duration:.3f} s",
            f"timestamps {m.time_base} time base, first {m.frames[0].pts}, last {m.frames[-1].pts}, "
            f"end {m.end_pts}; {timing}",
            f"audio      {audio_text}",
            f"size       {_human(sum(f.bytes for f in m.frames))} of frames; "
            f"{self.frames_present}/{len(m.frames)} in the work tree ({_human(self.bytes_on_disk)})",
        ]


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def summarise(studio_root: Path, path: Path) -> ManifestSummary:
    manifest = manifests.load(path)
    present = [p for f in manifest.frames if (p := manifest.frame_path(studio_root, f)).is_file()]
    return ManifestSummary(path, manifest, sum(p.stat().st_size for p in present), len(present))


@dataclass
class VerifyReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    studio_root: Path,
    paths: Iterable[Path],
    on_checked: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check every frame of every manifest exists with its md5, in the work tree or the cache."""
    store = BlobStore(studio_root)
    report = VerifyReport()
    for path in paths:
        try:
            manifest = manifests.load(path)
        except RotoscopeError as error:
            report.problems.append(str(error))
            continue
        try:
            jobs = [(frame, manifest.frame_path(studio_root, frame)) for frame in manifest.frames]
        except RotoscopeError as error:  # a frames folder linked out of the studio, say
            report.problems.append(str(error))
            continue
        with ThreadPoolExecutor(4) as pool:
            checks = pool.map(lambda job: (job[0], job[1], store.check(job[0].md5, job[1])), jobs)
            for frame, where, check in checks:
                report.checked += 1
                if check.state != "ok":
                    report.problems.append(_problem(studio_root, path, frame.i, where, check))
                if on_checked:
                    on_checked(report.checked)
    return report


def _problem(root: Path, manifest: Path, index: int, where: Path, check: BlobCheck) -> str:
    name = manifest.relative_to(root) if manifest.is_relative_to(root) else manifest
    if check.state == "missing":
        shown = where.relative_to(root) if where.is_relative_to(root) else where
        return f"{shown}: missing (frame {index} of {name}, md5 {check.md5}; not in the cache either)"
    held = check.where.relative_to(root) if check.where and check.where.is_relative_to(root) else check.where
    return f"{held}: corrupt (frame {index} of {name}: content does not match md5 {check.md5})"


# -- contact sheets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SheetTile:
    picture: Image.Image
    title: str  # the filter's name, or "original"
    caption: str  # artist and title of the artwork, kind of filter


def contact_sheet(tiles: list[SheetTile], tile_side: int = 320, columns: int = 4) -> Image.Image:
    """Labelled thumbnails on a grid, the way a user compares filters at a glance."""
    thumbs = []
    for tile in tiles:
        thumb = tile.picture.copy()
        thumb.thumbnail((tile_side, tile_side), Image.Resampling.LANCZOS)
        thumbs.append(thumb)
    cell_w = max(thumb.width for thumb in thumbs)
    cell_h = max(thumb.height for thumb in thumbs)
    pad, label = 12, 40
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (pad + columns * (cell_w + pad), pad + rows * (cell_h + label + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    bold, small = ImageFont.load_default(size=15), ImageFont.load_default(size=12)
    for n, (tile, thumb) in enumerate(zip(tiles, thumbs, strict=True)):
        row, column = divmod(n, columns)
        x, y = pad + column * (cell_w + pad), pad + row * (cell_h + label + pad)
        sheet.paste(thumb, (x + (cell_w - thumb.width) // 2, y))
        draw.text((x, y + cell_h + 4), _fit(draw, tile.title, bold, cell_w), fill="black", font=bold)
        draw.text((x, y + cell_h + 22), _fit(draw, tile.caption, small, cell_w), fill="#555555", font=small)
    return sheet


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    """``text`` cut with an ellipsis so it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


# -- the review page of a diff ------------------------------------------------------------------

THUMB_WIDTH = 240
SAMPLES_PER_RANGE = 3  # first, middle and last frame of each changed range
MAX_SAMPLES = 36  # per manifest: a page a reviewer can scroll, whatever the change
MAX_PICTURE_PIXELS = 64 << 20  # a blob bigger than any frame is not decoded for a thumbnail


def sampled_frames(ranges: list[tuple[int, int]]) -> list[int]:
    """Frame indices to show for changed ranges: their ends and middles, at most MAX_SAMPLES."""
    chosen: list[int] = []
    for first, last in ranges:
        chosen += sorted({first, (first + last) // 2, last})[:SAMPLES_PER_RANGE]
    return chosen[:MAX_SAMPLES]


@dataclass(frozen=True)
class PagePair:
    index: int
    seconds: float
    before: str | None  # md5 of the frame at the older revision (validated: 32 hex digits)
    after: str | None


@dataclass(frozen=True)
class PageSide:
    label: str  # before, after
    md5: str
    uri: str | None  # a data: URI of the thumbnail; None when the blob is nowhere
    note: str  # why there is no thumbnail


@dataclass(frozen=True)
class PageFrame:
    index: int
    seconds: float
    sides: tuple[PageSide, PageSide]  # before, after


@dataclass(frozen=True)
class PageSection:
    """One manifest whose frames changed, as the template shows it (plain text: it escapes)."""

    path: str
    description: str
    ranges: str
    settings: list[tuple[str, str, str]]  # key, before, after
    card: str | None  # the new filter card's name, kind and artwork
    pairs: list[PageFrame]


@dataclass(frozen=True)
class PageItem:
    path: str
    description: str


def review_page(root: Path, report: RevisionDiff, out: Path, remote: str | None = None) -> int:
    """A self-contained HTML page: side-by-side thumbnails of each changed range. Returns how many.

    Frames come by md5 from the DVC cache; those missing are fetched from the remote, and only
    those (a granular fetch of the sampled frame files at each revision). Manifests are validated
    again here (a report may come from anywhere): one that fails is listed as refused, and no
    frame of it is fetched or shown.
    """
    history, store = Revisions(root), BlobStore(root)
    fetchable = fetchable_revisions(history, report)
    sections: list[PageSection] = []
    refused = [PageItem(c.path, describe(c)) for c in report.manifests if c.status == "invalid"]
    for change in report.manifests:
        if change.status != "changed" or not change.frames.changed:
            continue
        try:
            before = history.manifest(report.rev_a, change.path)
            after = history.manifest(report.rev_b, change.path)
        except RotoscopeError as error:
            refused.append(PageItem(change.path, f"refused: {error}"))
            continue
        if before is None or after is None:
            refused.append(PageItem(change.path, "refused: no longer in both revisions"))
            continue
        pairs = [
            PagePair(i, after.seconds(after.frames[i].pts), before.frames[i].md5, after.frames[i].md5)
            for i in sampled_frames(change.frames.changed)
            if i < len(before.frames) and i < len(after.frames)
        ]
        _fetch_missing(store, report, before, after, pairs, remote, fetchable)
        sections.append(_section(change, pairs, store, fetchable, report))
    others = [
        PageItem(c.path, describe(c))
        for c in report.manifests
        if c.status not in ("unchanged", "invalid") and not c.frames.changed
    ]
    page = page_html(report, sections, refused, others)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page)
    return sum(len(section.pairs) for section in sections)


def fetchable_revisions(history: Revisions, report: RevisionDiff) -> set[str]:
    """The revisions whose frames may be fetched: DVC fetches a revision's frames from the remotes
    that revision's own ``.dvc/config`` names, so the newer one only when they are the older one's
    (a fork's remote could be anyone's server, or a local folder of someone else's pictures)."""
    base = remote_settings(history, report.rev_a)
    newer = remote_settings(history, report.rev_b)
    return {report.rev_a} | ({report.rev_b} if newer is not None and newer == base else set())


def _fetch_missing(
    store: BlobStore,
    report: RevisionDiff,
    before: Manifest,
    after: Manifest,
    pairs: list[PagePair],
    remote: str | None,
    fetchable: set[str],
) -> None:
    for rev, manifest, side in ((report.rev_a, before, "before"), (report.rev_b, after, "after")):
        if rev not in fetchable:
            continue
        # The frame's path as the revision tracks it (frames_dir is validated: frames/NAME/NAME),
        # not resolved through whatever the work tree holds there now.
        wanted = [
            store.root / manifest.frames_dir / manifest.frame_filename(manifest.frames[pair.index])
            for pair in pairs
            if not store.cache_path(getattr(pair, side)).is_file()
        ]
        if wanted:
            dvc_fetch_files(store.root, wanted, rev, remote)


def _section(
    change: ManifestChange, pairs: list[PagePair], store: BlobStore, fetchable: set[str], report: RevisionDiff
) -> PageSection:
    settings = [(key, value_text(a), value_text(b)) for key, (a, b) in change.settings.items()]
    shown = [
        PageFrame(
            pair.index,
            pair.seconds,
            (
                _side(store, "before", pair.before, report.rev_a in fetchable),
                _side(store, "after", pair.after, report.rev_b in fetchable),
            ),
        )
        for pair in pairs
    ]
    card = card_line(change.filter_card) if change.filter_card else None
    return PageSection(
        change.path, describe(change), ranges_text(change.frames.changed), settings, card, shown
    )


def _side(store: BlobStore, label: str, md5: str | None, fetched: bool) -> PageSide:
    note = "not in cache or remote" if fetched else "not fetched: this revision moves the DVC remotes"
    return PageSide(label, md5 or "", thumbnail_uri(store, md5) if md5 else None, note)


def thumbnail_uri(store: BlobStore, md5: str) -> str | None:
    """The cached blob ``md5`` as a small JPEG data: URI; None when it is not there or not a picture."""
    try:
        path = store.cache_path(md5)  # refuses anything but 32 hex digits
    except RotoscopeError:
        return None
    if not path.is_file():
        return None
    try:
        with Image.open(path) as picture:
            if picture.width * picture.height > MAX_PICTURE_PIXELS:
                return None
            picture.draft("RGB", (THUMB_WIDTH, THUMB_WIDTH * 4))  # JPEG: decode at a fraction
            thumb = picture.convert("RGB")
        thumb.thumbnail((THUMB_WIDTH, THUMB_WIDTH * 4), Image.Resampling.LANCZOS)
    except (OSError, ValueError, Image.DecompressionBombError):  # a blob that is not a picture
        return None
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


_STYLE = Markup(  # the page's own: not escaped, allowed by hash in the Content-Security-Policy
    "body{font:14px system-ui,sans-serif;margin:24px;color:#222}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
    ".pair{display:inline-block;margin:8px 16px 8px 0;vertical-align:top}"
    ".pair img{display:block;border:1px solid #999}.side{display:inline-block;margin-right:4px}"
    ".missing{width:240px;height:135px;background:#eee;display:flex;align-items:center;"
    "justify-content:center;color:#900}code{font-size:12px;white-space:pre-wrap;word-break:break-all}"
    ".warnings{border:2px solid #c60;background:#fff4e5;padding:4px 16px;margin-bottom:16px}"
)
_COUNT_LOADED_IMAGES = Markup(  # lets a headless browser (and a test) tell that every thumbnail decoded
    "window.addEventListener('load',()=>{const i=[...document.images];"
    "document.body.dataset.imagesLoaded=i.filter(x=>x.complete&&x.naturalWidth>0).length;"
    "document.body.dataset.images=i.length;});"
)


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


# Nothing but the page itself: its one style and script (by hash), pictures only as data: URIs,
# no request anywhere, so a value that slipped through could still neither load nor send a thing.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; img-src data:; style-src {_csp_hash(_STYLE)}; "
    f"script-src {_csp_hash(_COUNT_LOADED_IMAGES)}; base-uri 'none'; form-action 'none'"
)


def _printable(value: Any) -> Any:
    """Every value shown without control characters (an ESC from a card title means nothing on a
    page, and a reviewer who copies it into a terminal should not carry it along), escaped, with
    '=' too: hostile text never reads as ``name=value`` in the page's source, whatever reads it."""
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    return Markup(str(escape(terminal(value))).replace("=", "&#61;"))


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("rotoscope", "templates"),
        autoescape=True,  # every value on the page is escaped unless it is one of our Markup constants
        finalize=_printable,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def page_html(
    report: RevisionDiff,
    sections: list[PageSection],
    refused: list[PageItem],
    others: list[PageItem],
) -> str:
    return (
        _templates()
        .get_template("review.html.j2")
        .render(
            title=f"rotoscope diff {report.rev_a} → {report.rev_b}",
            csp=CONTENT_SECURITY_POLICY,
            style=_STYLE,
            script=_COUNT_LOADED_IMAGES,
            warnings=report.warnings,
            params=[(key, value_text(a), value_text(b)) for key, (a, b) in report.params.items()],
            sections=sections,
            refused=refused,
            others=others,
            thumb_width=THUMB_WIDTH,
        )
    )
