"""The studio's filters: making a new one from a style image, finding and listing them.

``params.yaml`` registers each filter (``filters: NAME: {kind, style, model}``) so that the
``train`` stage runs once per filter; the card beside the style image tells its story.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rotoscope.errors import RotoscopeError
from rotoscope.filters.card import CARD_NAME, KINDS, FilterCard, Kind, Provenance, load_card, save_card
from rotoscope.media.images import open_picture
from rotoscope.store import atomic_copy, dvc_track, md5_file
from rotoscope.studio import Studio, check_name

MODEL_FILES: dict[str, str] = {"trained": "model.keras", "instant": "model.npy"}


@dataclass(frozen=True)
class FilterEntry:
    """A filter as ``params.yaml`` registers it."""

    name: str
    kind: Kind
    style: Path
    model: Path
    card: Path
    train: dict[str, Any]  # this filter's own training overrides


def filter_dir(studio: Studio, name: str) -> Path:
    return studio.root / "filters" / name


def filter_entries(studio: Studio, document: Any = None) -> dict[str, FilterEntry]:
    section = (document or studio.params()).get("filters") or {}
    return {name: _entry(studio, name, dict(item or {})) for name, item in section.items()}


def filter_entry(studio: Studio, name: str, document: Any = None) -> FilterEntry:
    entries = filter_entries(studio, document)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none yet; make one with `rotoscope filter new`"
        raise RotoscopeError(studio.params_path, f"no filter named {name!r} (known: {known})")
    return entries[name]


def _entry(studio: Studio, name: str, item: dict[str, Any]) -> FilterEntry:
    kind = item.get("kind")
    if kind not in KINDS:
        raise RotoscopeError(studio.params_path, f"filters.{name}.kind must be one of {', '.join(KINDS)}")
    folder = filter_dir(studio, name)
    return FilterEntry(
        name=name,
        kind=kind,
        style=studio.root / str(item.get("style", "")),
        model=studio.root / str(item.get("model", studio.relative(folder / MODEL_FILES[kind]))),
        card=folder / CARD_NAME,
        train=dict(item.get("train") or {}),
    )


def new_filter(
    studio: Studio,
    name: str,
    style: Path,
    kind: Kind,
    provenance: Provenance,
    train: dict[str, Any] | None = None,
) -> FilterEntry:
    """Copy the style image in, track it with DVC, write the card and register the filter.

    The image is read in full first, so a damaged or hostile file never enters the studio.
    """
    check_name(name, "filter name")
    if kind not in KINDS:
        raise RotoscopeError(name, f"unknown filter kind {kind!r}; use {' or '.join(KINDS)}")
    picture = open_picture(style)
    folder = filter_dir(studio, name)
    card_path = folder / CARD_NAME
    if card_path.exists():
        raise RotoscopeError(card_path, f"a filter named {name!r} already exists; pick another name")
    target = folder / f"style{style.suffix.lower() or '.jpg'}"
    atomic_copy(style, target)
    dvc_track(studio.root, target)
    card = FilterCard(
        name=name,
        kind=kind,
        style={
            "file": studio.relative(target),
            "md5": md5_file(target),
            "width": picture.width,
            "height": picture.height,
        },
        provenance=provenance,
    )
    save_card(card, card_path)
    document = studio.params()
    if document.get("filters") is None:
        document["filters"] = {}
    item: dict[str, Any] = {
        "kind": kind,
        "style": studio.relative(target),
        "model": studio.relative(folder / MODEL_FILES[kind]),
    }
    if train:
        item["train"] = train
    document["filters"][name] = item
    studio.save_params(document)
    return filter_entry(studio, name)


def list_cards(
    studio: Studio, collection: str | None = None, category: str | None = None
) -> list[FilterCard]:
    """Every registered filter's card, optionally only one collection's or one category's."""
    cards = [load_card(entry.card) for entry in filter_entries(studio).values()]
    if collection:
        wanted = collection.casefold()
        cards = [card for card in cards if wanted in (card.provenance.collection or "").casefold()]
    if category:
        wanted = category.casefold()
        cards = [card for card in cards if wanted in card.provenance.categories]
    return sorted(cards, key=lambda card: card.name)
