"""Publishing a collection: chosen stills and renders as a static site with an Atom feed.

The site is plain files with relative links (it works opened from a folder and on GitHub Pages):
``index.html``, web-sized pictures that carry their credit (XMP, as every output does), the renders
with a poster frame each, one stylesheet and ``feed.xml``. Every caption comes from the filter's
card, escaped by Jinja2; restricted licences are flagged beside the picture they apply to.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import jinja2
from PIL import Image

from rotoscope import __version__
from rotoscope.credit import NAMESPACE, Credit, filter_credit, render_credit
from rotoscope.errors import RotoscopeError
from rotoscope.filters.licence import LicenceStanding, judge
from rotoscope.layout import check_name
from rotoscope.media.images import open_picture, save_picture
from rotoscope.store import atomic_copy, atomic_write_bytes, atomic_write_text, md5_file

if TYPE_CHECKING:
    from rotoscope.studio import Studio

WEB_SIDE = 1600  # the longest side of a published picture


@dataclass(frozen=True)
class PublishedItem:
    kind: Literal["still", "render"]
    slug: str
    title: str
    picture: str  # relative to the site
    video: str | None
    credit: Credit
    standing: LicenceStanding
    md5: str  # of the published file: the entry's identity in the feed
    updated: datetime


@dataclass(frozen=True)
class PublishedSite:
    folder: Path
    items: list[PublishedItem]
    feed: Path


def still_filter(path: Path) -> str:
    """The filter a still was made with, from the credit its XMP carries."""
    with Image.open(path) as picture:
        packet = picture.info.get("xmp") or picture.info.get("XML:com.adobe.xmp")
    if isinstance(packet, str):
        packet = packet.encode()
    if not packet:
        raise RotoscopeError(
            path, "no rotoscope credit in it (publish stills made by `rotoscope stylize-image`)"
        )
    start, end = packet.find(b"<x:xmpmeta"), packet.rfind(b"</x:xmpmeta>")
    try:
        meta = ET.fromstring(packet[start : end + len(b"</x:xmpmeta>")])  # expat: no external entities
    except ET.ParseError:
        raise RotoscopeError(path, "its XMP credit cannot be read") from None
    found = meta.find(f".//{{{NAMESPACE}}}Filter")
    if found is None or not found.text:
        raise RotoscopeError(path, "no rotoscope filter in its credit")
    return check_name(found.text.strip(), "filter name")


def publish(
    studio: Studio,
    out: Path,
    renders: list[str] | None = None,
    stills: list[Path] | None = None,
    title: str = "Rotoscope collection",
    base_url: str | None = None,
) -> PublishedSite:
    """Write the site into ``out``: the renders (default: every rendered one) and the stills."""
    for folder in (out, out / "media"):
        if folder.is_symlink():  # every write below replaces files; a linked folder would redirect them
            raise RotoscopeError(folder, "is a symlink; publish into a plain folder")
        folder.mkdir(parents=True, exist_ok=True)
    chosen = (
        renders if renders is not None else [j.name for j in studio.renders() if _rendered(studio, j.name)]
    )
    items = [_render_item(studio, name, out) for name in chosen]
    items += [_still_item(studio, path, out) for path in stills or []]
    if not items:
        raise RotoscopeError(out, "nothing to publish: no rendered renders, and no --still given")
    style = resources.files("rotoscope").joinpath("templates/publish.css").read_text()
    atomic_write_text(out / "site.css", style)
    atomic_write_text(out / "index.html", _page(title, items))
    feed = out / "feed.xml"
    atomic_write_bytes(feed, _feed(title, items, base_url))
    return PublishedSite(out, items, feed)


def _rendered(studio: Studio, name: str) -> bool:
    job = studio.render_job(name)
    return studio.render_path(job.video, name).is_file()


def _render_item(studio: Studio, name: str, out: Path) -> PublishedItem:
    job = studio.render_job(name)
    video = studio.render_path(job.video, name)
    if not video.is_file():
        raise RotoscopeError(video, "not rendered yet (run `dvc repro`)")
    manifest = studio.load_manifest(job.video, name)
    credit = render_credit(studio, manifest) or filter_credit(studio, job.filter)
    slug = f"{job.video}-{name}"
    middle = manifest.frames[len(manifest.frames) // 2]
    poster = open_picture(manifest.frame_path(studio.root, middle))
    poster.thumbnail((WEB_SIDE, WEB_SIDE), Image.Resampling.LANCZOS)
    save_picture(poster, out / "media" / f"{slug}.jpg", credit=credit)
    atomic_copy(video, out / "media" / f"{slug}.mp4")
    return PublishedItem(
        "render",
        slug,
        f"{job.video} through {job.filter}",
        f"media/{slug}.jpg",
        f"media/{slug}.mp4",
        credit,
        judge(credit.licence),
        md5_file(video),
        datetime.fromtimestamp(video.stat().st_mtime, UTC),
    )


def _still_item(studio: Studio, path: Path, out: Path) -> PublishedItem:
    credit = filter_credit(studio, still_filter(path))
    picture = open_picture(path)
    picture.thumbnail((WEB_SIDE, WEB_SIDE), Image.Resampling.LANCZOS)
    slug = f"{path.stem}".replace(".", "-")[:80]
    target = out / "media" / f"{slug}.jpg"
    save_picture(picture.convert("RGB"), target, credit=credit)
    return PublishedItem(
        "still",
        slug,
        path.stem,
        f"media/{slug}.jpg",
        None,
        credit,
        judge(credit.licence),
        md5_file(path),
        datetime.fromtimestamp(path.stat().st_mtime, UTC),
    )


def _page(title: str, items: list[PublishedItem]) -> str:
    folder = resources.files("rotoscope").joinpath("templates")
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), autoescape=True)
    return environment.get_template("publish.html").render(title=title, items=items, version=__version__)


def _feed(title: str, items: list[PublishedItem], base_url: str | None) -> bytes:
    from feedgen.feed import FeedGenerator

    site = (base_url or "").rstrip("/")
    generator = FeedGenerator()
    generator.id(f"{site}/" if site else f"tag:rotoscope.invalid,2026:{items[0].md5}")
    generator.title(title)
    generator.author({"name": "Rotoscope studio"})
    generator.link(href=f"{site}/index.html" if site else "index.html", rel="alternate")
    generator.updated(max(item.updated for item in items))
    generator.generator("rotoscope", __version__)
    for item in items:
        entry = generator.add_entry(order="append")
        entry.id(f"tag:rotoscope.invalid,2026:{item.md5}")
        entry.title(item.title)
        entry.updated(item.updated)
        entry.link(href=f"{site}/index.html#{item.slug}" if site else f"index.html#{item.slug}")
        entry.summary(item.credit.description())
        if item.credit.artist:
            entry.author({"name": item.credit.artist})
        if item.credit.rights():
            entry.rights(item.credit.rights())
    return generator.atom_str(pretty=True)
