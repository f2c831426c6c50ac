"""Curators' collections: many filters from one CSV of artworks, and one filter moved between
studios as a checked archive.

A collection CSV has a row per artwork: ``image`` (a path, relative to the CSV's folder), and
``name``, ``title``, ``artist``, ``year``, ``collection``, ``source_url``, ``licence``,
``categories`` (comma- or semicolon-separated) and ``notes``. Every row is checked before anything
is written; the rows that pass become instant filters, the rest are reported with the reason.

A filter archive (``.rotoscope-filter``, a tar file) holds ``filter.json`` (the card), the style
image, the model and ``archive.json`` (each member's md5 and size). Importing one reads every
member as bounded data, checks the md5s, the card's schema and the model (as any model from a
stranger is read), and refuses links, extra members and names that are paths.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rotoscope import __version__
from rotoscope.errors import CardError, RotoscopeError
from rotoscope.filters.card import (
    CARD_NAME,
    FilterCard,
    Provenance,
    check_card,
    load_card,
    normalise_categories,
    save_card,
)
from rotoscope.layout import NAME, check_name
from rotoscope.store import atomic_write_bytes, md5_bytes, md5_file

if TYPE_CHECKING:
    from rotoscope.studio import Studio

COLUMNS = (
    "image",
    "name",
    "title",
    "artist",
    "year",
    "collection",
    "source_url",
    "licence",
    "categories",
    "notes",
)
MAX_ROWS = 5000
MAX_CSV_BYTES = 5 << 20
ARCHIVE_SUFFIX = ".rotoscope-filter"
ARCHIVE_FORMAT = "rotoscope.filter-archive/1"
MAX_MEMBER_BYTES = {"card": 1 << 20, "style": 256 << 20, "model": 512 << 20, "index": 1 << 16}
MAX_ARCHIVE_BYTES = 600 << 20  # a style and a model together


# -- a collection CSV -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CollectionRow:
    line: int  # the CSV's line number, for the report
    name: str
    image: Path
    provenance: Provenance


@dataclass(frozen=True)
class RefusedRow:
    line: int
    reason: str


@dataclass
class ImportReport:
    accepted: list[CollectionRow] = field(default_factory=list)
    refused: list[RefusedRow] = field(default_factory=list)
    imported: list[str] = field(default_factory=list)  # filters made (none on a dry run)


def read_collection(studio: Studio, path: Path) -> ImportReport:
    """Every row of the CSV checked (pictures opened, names against the studio); nothing written."""
    from rotoscope.media.images import open_picture

    rows = _csv_rows(path)
    report = ImportReport()
    taken = set(studio.config().filters)
    for line, row in rows:
        try:
            candidate = _row(path, line, row, taken)
            open_picture(candidate.image)  # a damaged or hostile picture never becomes a filter
        except RotoscopeError as error:
            report.refused.append(RefusedRow(line, error.problem if error.path is None else str(error)))
            continue
        taken.add(candidate.name)
        report.accepted.append(candidate)
    return report


def import_collection(studio: Studio, path: Path, dry_run: bool = False) -> ImportReport:
    """The CSV's good rows as instant filters (made at once); on a dry run only the report."""
    from rotoscope.filters.catalogue import new_filter
    from rotoscope.filters.make import make_filter
    from rotoscope.store import dvc_track

    report = read_collection(studio, path)
    if dry_run:
        return report
    styles = []
    for row in report.accepted:
        entry = new_filter(studio, row.name, row.image, "instant", row.provenance, track=False)
        styles.append(entry.style)
        make_filter(studio, row.name)
        report.imported.append(row.name)
    if styles:
        dvc_track(studio.root, *styles)  # one `dvc add` for the lot
    return report


def _csv_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    try:
        if path.stat().st_size > MAX_CSV_BYTES:
            raise RotoscopeError(path, f"refused: over {MAX_CSV_BYTES:,} bytes")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RotoscopeError(path, "no such file") from None
    except UnicodeDecodeError:
        raise RotoscopeError(path, "not a UTF-8 text file") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if "image" not in header:
        raise RotoscopeError(path, f"needs an 'image' column (columns: {', '.join(COLUMNS)})")
    unknown = sorted(set(header) - set(COLUMNS))
    if unknown:
        raise RotoscopeError(path, f"unknown columns {unknown} (known: {', '.join(COLUMNS)})")
    rows = []
    try:
        for record in reader:
            if len(rows) >= MAX_ROWS:
                raise RotoscopeError(path, f"refused: more than {MAX_ROWS} rows")
            cleaned = {key.strip().lower(): (value or "").strip() for key, value in record.items() if key}
            if any(cleaned.values()):
                rows.append((reader.line_num, cleaned))
    except csv.Error as error:
        raise RotoscopeError(path, f"line {reader.line_num}: {error}") from None
    return rows


_SLUG = re.compile(r"[^a-z0-9]+")


def _row(csv_path: Path, line: int, row: dict[str, str], taken: set[str]) -> CollectionRow:
    where = f"line {line}"
    image_text = row.get("image", "")
    if not image_text:
        raise RotoscopeError(None, f"{where}: no image")
    image = Path(image_text).expanduser()
    image = image if image.is_absolute() else csv_path.parent / image
    if not image.is_file():
        raise RotoscopeError(None, f"{where}: image {image_text!r} not found")
    name = row.get("name") or _SLUG.sub("-", (row.get("title") or image.stem).lower()).strip("-")[:64]
    if not NAME.fullmatch(name):
        raise RotoscopeError(None, f"{where}: {name!r} is not a filter name (letters, digits, '-', '_')")
    if name in taken:
        raise RotoscopeError(None, f"{where}: a filter named {name!r} already exists")
    url = row.get("source_url") or None
    if url and not re.match(r"^https?://[^\s]+$", url):
        raise RotoscopeError(None, f"{where}: source_url {url[:60]!r} is not an http(s) address")
    year = row.get("year") or None
    if year and len(year) > 40:
        raise RotoscopeError(None, f"{where}: year {year[:40]!r}... is not a year")
    about = Provenance(
        title=row.get("title") or None,
        artist=row.get("artist") or None,
        year=year,
        collection=row.get("collection") or None,
        source_url=url,
        licence=row.get("licence") or None,
        categories=normalise_categories(re.split(r"[;,]", row.get("categories") or "")),
        notes=row.get("notes") or None,
    )
    style = {"file": f"filters/{name}/style.jpg", "md5": "0" * 32, "width": 1, "height": 1}
    check_card(FilterCard(name, "instant", style, about), csv_path)  # the schema's limits, as a card would
    return CollectionRow(line, name, image, about)


# -- one filter as an archive --------------------------------------------------------------------------


def export_filter(studio: Studio, name: str, out: Path) -> Path:
    """The filter's card, style image and model as one archive (the model must be made)."""
    from rotoscope.filters.catalogue import filter_entry

    entry = filter_entry(studio, name)
    card = load_card(entry.card)
    if card.model is None or not entry.model.is_file():
        raise RotoscopeError(entry.model, "no model to export yet (run `dvc repro` or `filter make`)")
    if md5_file(entry.model) != card.model["md5"] or md5_file(entry.style) != card.style["md5"]:
        raise RotoscopeError(entry.card, "the style image or model is not the one the card records")
    members = {
        CARD_NAME: entry.card.read_bytes(),
        f"style{entry.style.suffix.lower()}": entry.style.read_bytes(),
        f"model{entry.model.suffix.lower()}": entry.model.read_bytes(),
    }
    index = {
        "format": ARCHIVE_FORMAT,
        "rotoscope": __version__,
        "filter": name,
        "kind": card.kind,
        "members": {member: {"md5": md5_bytes(data), "bytes": len(data)} for member, data in members.items()},
    }
    buffer = io.BytesIO()
    # the same filter, the same bytes: no time in the gzip header (tarfile's "w:gz" writes one)
    # nor in the members
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as packed,
        tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for member, data in {"archive.json": json.dumps(index, indent=2).encode(), **members}.items():
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    target = out if out.suffix else out.with_suffix(ARCHIVE_SUFFIX)
    atomic_write_bytes(target, buffer.getvalue())
    return target


@dataclass(frozen=True)
class FilterArchive:
    card: FilterCard
    style_name: str
    style: bytes
    model_name: str
    model: bytes


def read_archive(path: Path) -> FilterArchive:
    """An archive's members, every one checked; one line naming the archive otherwise."""
    members = _members(path)
    index = _json(members.pop("archive.json", None), path, "archive.json")
    if index.get("format") != ARCHIVE_FORMAT or not isinstance(index.get("members"), dict):
        raise RotoscopeError(path, f"not a filter archive ({ARCHIVE_FORMAT})")
    listed: dict[str, Any] = index["members"]
    if set(listed) != set(members):
        raise RotoscopeError(path, f"holds {sorted(members)}, but its index lists {sorted(listed)}")
    for member, data in members.items():
        if not isinstance(listed[member], dict) or listed[member].get("md5") != md5_bytes(data):
            raise RotoscopeError(path, f"{member} does not match its md5 in archive.json")
    card_document = _json(members.get(CARD_NAME), path, CARD_NAME)
    card = _checked_card(card_document, path)
    styles = [m for m in members if m.startswith("style.")]
    models = [m for m in members if m.startswith("model.")]
    if len(styles) != 1 or len(models) != 1:
        raise RotoscopeError(path, "needs one style image and one model")
    style, model = members[styles[0]], members[models[0]]
    if (
        card.model is None
        or card.model.get("md5") != md5_bytes(model)
        or card.style.get("md5") != md5_bytes(style)
    ):
        raise RotoscopeError(path, "its card does not record the style image and model it holds")
    expected = ".npy" if card.kind == "instant" else ".keras"
    if models[0] != f"model{expected}":
        raise RotoscopeError(path, f"a {card.kind} filter's model is a {expected} file")
    return FilterArchive(card, styles[0], style, models[0], model)


def import_archive(studio: Studio, path: Path, name: str | None = None) -> FilterCard:
    """A filter from an archive, registered under ``name`` (default: its own), model and all."""
    from rotoscope.filters.catalogue import filter_entry, new_filter
    from rotoscope.media.images import open_picture
    from rotoscope.store import dvc_track
    from rotoscope.studio import ensure_gitignore

    archive = read_archive(path)
    name = check_name(name or archive.card.name, "filter name")
    parent = studio.layout.scratch("import")
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=parent))  # new and ours: nothing committed can sit in it
    style = scratch / archive.style_name
    model = scratch / archive.model_name
    for target, data in ((style, archive.style), (model, archive.model)):
        with target.open("xb") as out:
            out.write(data)
    try:
        open_picture(style)
        _check_model(archive.card.kind, model)
        entry = new_filter(studio, name, style, archive.card.kind, archive.card.provenance, track=False)
        ensure_gitignore(entry.model.parent / ".gitignore", f"/{entry.model.name}\n")  # a DVC output
        # the train stage's output is remade by `dvc repro` (DVC clears outputs first): the model
        # itself is kept beside it, tracked, and "making" this filter copies it (filters/make.py)
        kept = imported_model_path(entry.model)
        atomic_write_bytes(kept, archive.model)
        atomic_write_bytes(entry.model, archive.model)
        dvc_track(studio.root, entry.style, kept)
        made = {**(archive.card.made or {}), "imported": {"from": path.name, "filter": archive.card.name}}
        recorded = {**(archive.card.model or {}), "file": studio.relative(entry.model)}
        card = replace(load_card(entry.card), model=recorded, made=made)
        save_card(card, entry.card)
        return load_card(filter_entry(studio, name).card)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def imported_model_path(model: Path) -> Path:
    """Where an imported filter keeps the model it came with: ``filters/<name>/imported.<ext>``."""
    return model.with_name(f"imported{model.suffix}")


def _members(path: Path) -> dict[str, bytes]:
    try:
        archive = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed by the with block below
    except FileNotFoundError:
        raise RotoscopeError(path, "no such file") from None
    except (tarfile.TarError, OSError):
        raise RotoscopeError(path, "not a filter archive (not a tar file)") from None
    try:
        with archive:
            return _read_members(path, archive)
    except (tarfile.TarError, EOFError, OSError, zlib.error):  # cut off or corrupt on the way
        raise RotoscopeError(path, "not a filter archive (damaged or cut off)") from None


def _read_members(path: Path, archive: tarfile.TarFile) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    total = 0
    for info in archive:
        if not info.isreg():
            raise RotoscopeError(path, f"refused: {info.name[:60]!r} is not a plain file (a link?)")
        if "/" in info.name or info.name in ("", ".", "..") or info.name.startswith("."):
            raise RotoscopeError(path, f"refused: member {info.name[:60]!r} is a path, not a name")
        kind = _member_kind(info.name)
        limit = MAX_MEMBER_BYTES.get(kind)
        if limit is None:
            raise RotoscopeError(path, f"refused: unexpected member {info.name[:60]!r}")
        if info.size > limit or any(_member_kind(name) == kind for name in members):
            raise RotoscopeError(path, f"refused: member {info.name[:60]!r} is too large or repeated")
        if len(members) >= 4:  # index, card, style, model: a fifth is one too many
            raise RotoscopeError(path, "refused: too many members")
        total += info.size
        if total > MAX_ARCHIVE_BYTES:
            raise RotoscopeError(path, f"refused: over {MAX_ARCHIVE_BYTES:,} bytes unpacked")
        stream = archive.extractfile(info)
        members[info.name] = stream.read(limit + 1) if stream else b""
    return members


def _member_kind(name: str) -> str:
    return {"archive.json": "index", CARD_NAME: "card"}.get(name, name.split(".")[0])


def _json(data: bytes | None, path: Path, member: str) -> dict[str, Any]:
    if data is None:
        raise RotoscopeError(path, f"has no {member}")
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RotoscopeError(path, f"{member} is not JSON") from None
    if not isinstance(document, dict):
        raise RotoscopeError(path, f"{member} is not a JSON object")
    return document


def _checked_card(document: dict[str, Any], path: Path) -> FilterCard:
    from rotoscope import schemas

    schemas.check(document, "filter", path, CardError)
    body = {key: value for key, value in document.items() if key != "schema"}
    body["provenance"] = Provenance(**body["provenance"])
    return FilterCard(**body)


def _check_model(kind: str, model: Path) -> None:
    if kind == "instant":
        from rotoscope.filters.instant import load_embedding

        load_embedding(model)
    else:
        from rotoscope.filters.inference import read_network

        read_network(model)
