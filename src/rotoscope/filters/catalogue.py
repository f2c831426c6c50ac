"""The studio's filters: making a new one from a style image, finding and listing them.

``params.yaml`` registers each filter (``filters: NAME: {kind, style, model}``) so that the
``train`` stage runs once per filter; the card beside the style image tells its story.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rotoscope.errors import ParamsError
from rotoscope.filters.card import (
    CARD_NAME,
    KINDS,
    FilterCard,
    Kind,
    Provenance,
    check_card,
    load_card,
    save_card,
)
from rotoscope.layout import check_name
from rotoscope.media.images import open_picture
from rotoscope.params import FilterParams
from rotoscope.store import atomic_copy, dvc_track, md5_file
from rotoscope.studio import Studio

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
    return studio.layout.filter_dir(name)


def filter_entries(studio: Studio) -> dict[str, FilterEntry]:
    return {name: _entry(studio, item) for name, item in studio.config().filters.items()}


def filter_entry(studio: Studio, name: str) -> FilterEntry:
    entries = filter_entries(studio)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none yet; make one with `rotoscope filter new`"
        raise ParamsError(studio.params_path, f"no filter named {name!r} (known: {known})")
    return entries[name]


def _entry(studio: Studio, item: FilterParams) -> FilterEntry:
    """Paths from params.yaml (checked by its schema to lie in filters/<name>/), resolved inside
    the studio: a committed symlink there is refused, not followed."""
    layout = studio.layout
    folder = layout.filter_dir(item.name)
    model = item.model or f"filters/{item.name}/{MODEL_FILES[item.kind]}"
    return FilterEntry(
        name=item.name,
        kind=item.kind,  # type: ignore[arg-type]
        style=layout.recorded(item.style, f"filters.{item.name}.style"),
        model=layout.recorded(model, f"filters.{item.name}.model"),
        card=layout.inside(folder / CARD_NAME, f"filters/{item.name}/{CARD_NAME}"),
        train=dict(item.train),
    )


def new_filter(
    studio: Studio,
    name: str,
    style: Path,
    kind: Kind,
    provenance: Provenance,
    train: dict[str, Any] | None = None,
    track: bool = True,
) -> FilterEntry:
    """Copy the style image in, track it with DVC, write the card and register the filter.

    The image is read in full first, so a damaged or hostile file never enters the studio. With
    ``track`` False the caller runs one ``dvc add`` for many (a collection's import).
    """
    check_name(name, "filter name")
    if kind not in KINDS:
        raise ParamsError(name, f"unknown filter kind {kind!r}; use {' or '.join(KINDS)}")
    picture = open_picture(style)
    folder = filter_dir(studio, name)
    card_path = folder / CARD_NAME
    if card_path.exists() or name in studio.config().filters:
        raise ParamsError(card_path, f"a filter named {name!r} already exists; pick another name")
    target = studio.layout.inside(folder / f"style{style.suffix.lower() or '.jpg'}")
    card = FilterCard(
        name=name,
        kind=kind,
        style={
            "file": studio.relative(target),
            "md5": md5_file(style),
            "width": picture.width,
            "height": picture.height,
        },
        provenance=provenance,
    )
    check_card(card, card_path)  # everything is checked before anything is written
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
    params_text = studio.params_text(document)
    atomic_copy(style, target)
    if track:
        dvc_track(studio.root, target)
    save_card(card, card_path)
    studio.write_params_text(params_text)
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
