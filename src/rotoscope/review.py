"""Looking at what a studio holds: manifest summaries, blob verification, contact sheets, and the
review page of a diff between two revisions."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from rotoscope import manifest as manifests
from rotoscope.errors import RotoscopeError
from rotoscope.history import ManifestChange, RevisionDiff, Revisions, describe, ranges_text
from rotoscope.manifest import Manifest
from rotoscope.store import BlobCheck, BlobStore, atomic_write_text, dvc_fetch_files


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
                "render     " + ", ".join(f"{key} {value}" for key, value in lineage.render.items()),
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
    before: str | None  # md5 of the frame at the older revision
    after: str | None


def review_page(root: Path, report: RevisionDiff, out: Path, remote: str | None = None) -> int:
    """A self-contained HTML page: side-by-side thumbnails of each changed range. Returns how many.

    Frames come by md5 from the DVC cache; those missing are fetched from the remote, and only
    those (a granular fetch of the sampled frame files at each revision).
    """
    history, store = Revisions(root), BlobStore(root)
    sections: list[tuple[ManifestChange, list[PagePair]]] = []
    for change in report.manifests:
        if change.status != "changed" or not change.frames.changed:
            continue
        before = manifests.from_dict(history.json(report.rev_a, change.path) or {})
        after = manifests.from_dict(history.json(report.rev_b, change.path) or {})
        pairs = [
            PagePair(i, after.seconds(after.frames[i].pts), before.frames[i].md5, after.frames[i].md5)
            for i in sampled_frames(change.frames.changed)
        ]
        _fetch_missing(store, report, before, after, pairs, remote)
        sections.append((change, pairs))
    page = _page_html(report, sections, lambda md5: _thumbnail_uri(store, md5))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page)
    return sum(len(pairs) for _, pairs in sections)


def _fetch_missing(
    store: BlobStore,
    report: RevisionDiff,
    before: Manifest,
    after: Manifest,
    pairs: list[PagePair],
    remote: str | None,
) -> None:
    for rev, manifest, side in ((report.rev_a, before, "before"), (report.rev_b, after, "after")):
        wanted = [
            manifest.frame_path(store.root, manifest.frames[pair.index])
            for pair in pairs
            if not store.cache_path(getattr(pair, side)).is_file()
        ]
        if wanted:
            dvc_fetch_files(store.root, wanted, rev, remote)


def _thumbnail_uri(store: BlobStore, md5: str) -> str | None:
    path = store.cache_path(md5)
    if not path.is_file():
        return None
    with Image.open(path) as picture:
        thumb = picture.convert("RGB")
        thumb.thumbnail((THUMB_WIDTH, THUMB_WIDTH * 4), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        thumb.save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


Thumbnail = Callable[[str], str | None]  # md5 -> a data: URI, or None when the blob is nowhere
_STYLE = (
    "body{font:14px system-ui,sans-serif;margin:24px;color:#222}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
    ".pair{display:inline-block;margin:8px 16px 8px 0;vertical-align:top}"
    ".pair img{display:block;border:1px solid #999}.side{display:inline-block;margin-right:4px}"
    ".missing{width:240px;height:135px;background:#eee;display:flex;align-items:center;"
    "justify-content:center;color:#900}code{font-size:12px}"
)
_COUNT_LOADED_IMAGES = (  # lets a headless browser (and a test) tell that every thumbnail decoded
    "<script>window.addEventListener('load',()=>{const i=[...document.images];"
    "document.body.dataset.imagesLoaded=i.filter(x=>x.complete&&x.naturalWidth>0).length;"
    "document.body.dataset.images=i.length;});</script>"
)


def _page_html(
    report: RevisionDiff, sections: list[tuple[ManifestChange, list[PagePair]]], thumbnail: Thumbnail
) -> str:
    title = f"rotoscope diff {html.escape(report.rev_a)} → {html.escape(report.rev_b)}"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{title}</h1>",
        _params_html(report.params),
        *(_section_html(change, pairs, thumbnail) for change, pairs in sections),
    ]
    others = [c for c in report.manifests if c.status != "unchanged" and not c.frames.changed]
    if others:
        items = "".join(
            f"<li><code>{html.escape(c.path)}</code>: {html.escape(describe(c))}</li>" for c in others
        )
        parts.append(f"<h2>Other changes</h2><ul>{items}</ul>")
    if not sections and not others:
        parts.append("<p>No frame changed.</p>")
    parts.append(f"{_COUNT_LOADED_IMAGES}</body></html>")
    return "\n".join(part for part in parts if part) + "\n"


def _params_html(params: dict[str, tuple[object, object]]) -> str:
    if not params:
        return ""
    esc = html.escape
    rows = "".join(
        f"<tr><td><code>{esc(key)}</code></td><td>{esc(str(a))}</td><td>{esc(str(b))}</td></tr>"
        for key, (a, b) in params.items()
    )
    return f"<h2>Parameters</h2><table><tr><th>key</th><th>before</th><th>after</th></tr>{rows}</table>"


def _section_html(change: ManifestChange, pairs: list[PagePair], thumbnail: Thumbnail) -> str:
    esc = html.escape
    ranges = esc(ranges_text(change.frames.changed))
    parts = [
        f"<h2><code>{esc(change.path)}</code></h2><p>{esc(describe(change))}; changed frames {ranges}</p>"
    ]
    if change.settings:
        items = "".join(
            f"<li><code>{esc(k)}</code>: {esc(str(a))} → {esc(str(b))}</li>"
            for k, (a, b) in change.settings.items()
        )
        parts.append(f"<ul>{items}</ul>")
    for pair in pairs:
        sides = "".join(
            _side_html(label, md5, thumbnail)
            for label, md5 in (("before", pair.before), ("after", pair.after))
        )
        parts.append(f"<div class='pair'><div>frame {pair.index} ({pair.seconds:.3f} s)</div>{sides}</div>")
    return "\n".join(parts)


def _side_html(label: str, md5: str | None, thumbnail: Thumbnail) -> str:
    uri = thumbnail(md5) if md5 else None
    picture = (
        f"<img src='{uri}' alt='{label} {md5}' width='{THUMB_WIDTH}'>"
        if uri
        else f"<div class='missing'>{label}: not in cache or remote</div>"
    )
    return f"<div class='side'>{picture}<code>{label} {html.escape((md5 or '')[:8])}</code></div>"
