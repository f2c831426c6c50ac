"""What an output says about its look: the artwork it came from, the filter, the model, rotoscope.

A stylized still or render is derived from an artwork (the filter's style image), so it carries
the artwork's credit from the filter's card (title, artist, year, collection, source, licence),
the filter's name and model md5, and the rotoscope version that made it. Stills get XMP (Dublin
Core, XMP Rights, the IPTC Extension's ArtworkOrObject structure, which is made for a picture
derived from an artwork, and a rotoscope namespace) plus EXIF and IPTC IIM where the format has
them; videos get container tags. Frames inside the pipeline carry none: they are content-addressed
intermediates, and the render made from them carries the credit.

Card fields arrive from pull requests: each is cleaned (control and format characters dropped,
whitespace collapsed), bounded, and put into an ElementTree (which escapes it), never spliced into
XML; the IIM is packed with struct, each field within its IIM size. Nothing here reads a clock:
the same inputs make the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from rotoscope import __version__
from rotoscope.filters.card import CARD_NAME, FilterCard, load_card

if TYPE_CHECKING:
    from rotoscope.manifest import Manifest
    from rotoscope.studio import Studio

NAMESPACE = "https://rotoscope.invalid/ns/credit/1.0/"
PREFIX = "rotoscope"
FIELD_LIMIT = 300  # characters of one card field: a longer "title" is not a credit any more
URL_LIMIT = 500
# IPTC IIM's own field sizes, in bytes (IIM 4.2): readers may refuse longer ones.
_IIM_LIMITS = {"ObjectName": 64, "Byline": 32, "Copyright": 128, "Caption": 2000}
_YEAR = re.compile(r"^[0-9]{4}$")  # what an XMP Date can hold of a year as written
_UTF8 = "\x1b%G"  # IIM 1:90 CodedCharacterSet: the IIM text is UTF-8
_EXIF_DESCRIPTION, _EXIF_SOFTWARE, _EXIF_ARTIST, _EXIF_COPYRIGHT = 0x010E, 0x0131, 0x013B, 0x8298
_NAMESPACES = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "xmpRights": "http://ns.adobe.com/xap/1.0/rights/",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    PREFIX: NAMESPACE,
}
for _prefix, _uri in _NAMESPACES.items():  # the prefixes readers expect (ElementTree's own: ns0...)
    ET.register_namespace(_prefix, _uri)
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# The XMP packet wrapper (XMP part 1, 7.3): the BOM names the encoding, the id is the fixed one.
_PACKET_BEGIN = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
_PACKET_END = '<?xpacket end="w"?>'


def clean(text: object, limit: int = FIELD_LIMIT) -> str | None:
    """``text`` fit for metadata: printable characters only (no control, format or bidi
    characters, which XML refuses or which disguise text), whitespace runs as one space, at most
    ``limit`` characters (cut with an ellipsis). None for nothing left."""
    if text is None:
        return None
    kept = "".join(ch if ch.isprintable() else " " if ch.isspace() else "" for ch in str(text))
    shown = " ".join(kept.split())
    if len(shown) > limit:
        shown = shown[: limit - 1].rstrip() + "…"
    return shown or None


@dataclass(frozen=True)
class Credit:
    """The credit of one output, every field already cleaned and bounded."""

    filter: str
    kind: str
    model_md5: str | None
    version: str = __version__
    title: str | None = None
    artist: str | None = None
    year: str | None = None
    collection: str | None = None
    source_url: str | None = None
    licence: str | None = None

    def __post_init__(self) -> None:  # every way of making one cleans its fields
        for item in fields(self):
            limit = URL_LIMIT if item.name == "source_url" else FIELD_LIMIT
            object.__setattr__(self, item.name, clean(getattr(self, item.name), limit))

    @classmethod
    def from_card(cls, card: FilterCard, model_md5: str | None = None, version: str = __version__) -> Credit:
        """The credit of what ``card``'s filter made; ``model_md5`` when it is not the card's model
        (a render records the model that made its frames)."""
        about = card.provenance
        recorded = (card.model or {}).get("md5")
        return cls(
            filter=card.name,
            kind=card.kind,
            model_md5=model_md5 or recorded,
            version=version,
            title=about.title,
            artist=about.artist,
            year=about.year,
            collection=about.collection,
            source_url=about.source_url,
            licence=about.licence,
        )

    # -- sentences ---------------------------------------------------------------------------

    @property
    def tool(self) -> str:
        return f"rotoscope {self.version}"

    def artwork(self) -> str | None:
        """Like 'The Scream by Edvard Munch (1893), National Museum, Oslo'; None if the card says nothing."""
        if not (self.title or self.artist or self.year or self.collection):
            return None
        line = self.title or "an untitled work"
        line += f" by {self.artist}" if self.artist else ""
        line += f" ({self.year})" if self.year else ""
        return line + (f", {self.collection}" if self.collection else "")

    def rights(self) -> str | None:
        """The artwork's rights as its card states them (the output's own are not ours to know)."""
        from rotoscope.filters.licence import judge

        artwork = self.artwork()
        standing = judge(self.licence)
        flag = f"; {standing.standing}: {standing.reason}" if standing.standing == "restricted" else ""
        if artwork and self.licence:
            return f"Style: {artwork} (licence: {self.licence}{flag})"
        if self.licence:
            return f"Style licence: {self.licence}{flag}"
        return f"Style: {artwork} (licence not recorded)" if artwork else None

    def description(self) -> str:
        model = f", model md5 {self.model_md5}" if self.model_md5 else ""
        line = f"Stylized with {self.tool}, filter {self.filter!r} ({self.kind}{model})"
        artwork = self.artwork()
        line += f", after {artwork}." if artwork else "."
        line += f" Source: {self.source_url}." if self.source_url else ""
        return line + (f" Licence: {self.licence}." if self.licence else "")

    def machine(self) -> dict[str, str]:
        """What made the output, for programs: filter, kind, model md5, rotoscope version."""
        made = {
            "filter": self.filter,
            "kind": self.kind,
            "model_md5": self.model_md5,
            "version": self.version,
        }
        return {key: value for key, value in made.items() if value}

    # -- the mappings each medium takes --------------------------------------------------------

    def for_container(self) -> dict[str, str]:
        """Container tags of a video (FFmpeg's names; mp4 and mov keep ``rotoscope`` only with
        ``movflags=use_metadata_tags``, which :mod:`rotoscope.media.encode` sets when tags are given)."""
        tags = {
            "title": self.title,
            "artist": self.artist,
            "copyright": self.rights(),
            "comment": self.description(),
            "rotoscope": json.dumps(self.machine(), sort_keys=True, separators=(",", ":")),
        }
        return {key: value for key, value in tags.items() if value}

    def for_still(self) -> StillTags:
        return StillTags(xmp=self._xmp(), exif=self._exif(), iim=self._iim())

    def _xmp(self) -> bytes:
        """An XMP packet, built as an XML tree: ElementTree escapes every value, so a card's text
        stays text whatever markup it holds."""
        meta = ET.Element(_q("x:xmpmeta"))
        rdf = ET.SubElement(meta, _q("rdf:RDF"))
        about = ET.SubElement(rdf, _q("rdf:Description"), {_q("rdf:about"): ""})
        _alt(about, "dc:title", self.title)
        _seq(about, "dc:creator", self.artist)
        _alt(about, "dc:description", self.description())
        _alt(about, "dc:rights", self.rights())
        _text(about, "dc:source", self.source_url)
        _alt(about, "xmpRights:UsageTerms", self.licence)
        _text(about, "xmp:CreatorTool", self.tool)
        self._artwork_structure(about)
        for name, value in (
            ("Filter", self.filter),
            ("FilterKind", self.kind),
            ("ModelMD5", self.model_md5),
            ("Version", self.version),
        ):
            _text(about, f"{PREFIX}:{name}", value)
        body = ET.tostring(meta, encoding="unicode")
        return f"{_PACKET_BEGIN}\n{body}\n{_PACKET_END}".encode()

    def _artwork_structure(self, about: ET.Element) -> None:
        """IPTC Extension ArtworkOrObject: a bag of structures, one per artwork shown (here one)."""
        if not self.artwork():
            return
        bag = ET.SubElement(ET.SubElement(about, _q("Iptc4xmpExt:ArtworkOrObject")), _q("rdf:Bag"))
        item = ET.SubElement(bag, _q("rdf:li"), {_q("rdf:parseType"): "Resource"})
        _alt(item, "Iptc4xmpExt:AOTitle", self.title)
        _seq(item, "Iptc4xmpExt:AOCreator", self.artist)
        dated = self.year if self.year and _YEAR.match(self.year) else None
        _text(item, "Iptc4xmpExt:AODateCreated", dated)
        _text(item, "Iptc4xmpExt:AOCircaDateCreated", self.year)  # as written: "c. 1830", "1920s"
        _text(item, "Iptc4xmpExt:AOSource", self.collection)
        _text(item, "Iptc4xmpExt:AOSourceInvURL", self.source_url if is_web_url(self.source_url) else None)
        _text(item, "Iptc4xmpExt:AOCopyrightNotice", self.licence)

    def _exif(self) -> dict[int, bytes]:
        exif = {
            _EXIF_DESCRIPTION: self.description(),
            _EXIF_ARTIST: self.artist,
            _EXIF_COPYRIGHT: self.rights(),
            _EXIF_SOFTWARE: self.tool,
        }
        # UTF-8 in EXIF's ASCII fields, as exiv2 and exiftool write them (Pillow would turn
        # every other character into "?")
        return {tag: value.encode() for tag, value in exif.items() if value}

    def _iim(self) -> bytes:
        """IPTC IIM datasets: the envelope's character set (UTF-8), then the application record."""
        datasets = (
            (1, 90, _UTF8.encode()),
            (2, 0, b"\x00\x04"),  # 2:00 RecordVersion 4, which the IIM asks for first
            (2, 5, _fit(self.title, "ObjectName")),
            (2, 80, _fit(self.artist, "Byline")),
            (2, 116, _fit(self.rights(), "Copyright")),
            (2, 120, _fit(self.description(), "Caption")),
        )
        # every field is far under the 32767 bytes of the short length form
        return b"".join(
            struct.pack(">BBBH", 0x1C, record, number, len(data)) + data
            for record, number, data in datasets
            if data
        )


@dataclass(frozen=True)
class StillTags:
    """A still's credit in the forms files hold: an XMP packet, EXIF IFD0 text fields (tag ->
    UTF-8) and IPTC IIM datasets; :func:`rotoscope.media.images.save_picture` writes each where
    the format has a place for it."""

    xmp: bytes
    exif: dict[int, bytes]
    iim: bytes

    def photoshop(self) -> bytes:
        """A JPEG APP13 body: Photoshop image resources holding the IIM (0x0404) and its MD5
        (0x0425, IPTCDigest), which tells readers the IIM was written with the XMP, not after it."""
        digest = hashlib.md5(self.iim, usedforsecurity=False).digest()
        return b"Photoshop 3.0\x00" + _resource(0x0404, self.iim) + _resource(0x0425, digest)


def _resource(ident: int, data: bytes) -> bytes:
    """One 8BIM image resource, with an empty name (a Pascal string padded to even length)."""
    pad = b"\x00" * (len(data) % 2)
    return b"8BIM" + struct.pack(">H", ident) + b"\x00\x00" + struct.pack(">I", len(data)) + data + pad


def _q(name: str) -> str:
    """ElementTree's name of ``prefix:local``."""
    prefix, local = name.split(":")
    return f"{{{_NAMESPACES[prefix]}}}{local}"


def _text(parent: ET.Element, name: str, text: str | None) -> None:
    if text:
        ET.SubElement(parent, _q(name)).text = text


def _alt(parent: ET.Element, name: str, text: str | None) -> None:
    """A language alternative with the default language only."""
    if text:
        alt = ET.SubElement(ET.SubElement(parent, _q(name)), _q("rdf:Alt"))
        ET.SubElement(alt, _q("rdf:li"), {_XML_LANG: "x-default"}).text = text


def _seq(parent: ET.Element, name: str, text: str | None) -> None:
    """An ordered array (creators), of one."""
    if text:
        seq = ET.SubElement(ET.SubElement(parent, _q(name)), _q("rdf:Seq"))
        ET.SubElement(seq, _q("rdf:li")).text = text


def _fit(text: str | None, field: str) -> bytes | None:
    """``text`` within an IIM field's size in UTF-8 bytes, cut at a character boundary."""
    if not text:
        return None
    limit = _IIM_LIMITS[field]
    data = text.encode()
    if len(data) <= limit:
        return data
    return (data[: limit - 3].decode("utf-8", "ignore").rstrip() + "…").encode()


def is_web_url(text: str | None) -> bool:
    """Whether a card's URL is an http(s) address (a ``javascript:`` one never becomes a link)."""
    if not text or " " in text:
        return False
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# -- which credit an output has --------------------------------------------------------------------


def filter_credit(studio: Studio, name: str, model_md5: str | None = None, kind: str = "unknown") -> Credit:
    """The credit of what filter ``name`` makes, from its card (validated on reading). A filter
    whose card is gone (a render of an older revision) is still credited by name and model."""
    card = studio.layout.filter_dir(name) / CARD_NAME
    if not card.is_file():
        return Credit(filter=name, kind=kind, model_md5=model_md5)
    return Credit.from_card(load_card(card), model_md5)


def render_credit(studio: Studio, manifest: Manifest) -> Credit | None:
    """A stylized manifest's credit, with the model md5 that made its frames; None for a
    source manifest (the source video is its maker's, not an artwork's)."""
    if manifest.lineage is None:
        return None
    made_by = manifest.lineage.filter
    return filter_credit(studio, made_by["name"], made_by["model_md5"], made_by["kind"])
