"""A filter's card, ``filters/<name>/filter.json``: the artwork's provenance and how the model was made.

The card lives in Git. ``rotoscope filter new`` writes its provenance; making the model (the
``train`` stage) fills in ``model`` and ``made``. Editing provenance never retrains anything.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rotoscope import schemas
from rotoscope.errors import CardError
from rotoscope.store import atomic_write_text

SCHEMA_ID = "rotoscope.filter/1"
CARD_NAME = "filter.json"
Kind = Literal["trained", "instant"]
KINDS: tuple[Kind, ...] = ("trained", "instant")


@dataclass
class Provenance:
    title: str | None = None
    artist: str | None = None
    year: str | None = None
    collection: str | None = None
    source_url: str | None = None
    licence: str | None = None
    categories: list[str] = field(default_factory=list)
    notes: str | None = None


@dataclass
class FilterCard:
    name: str
    kind: Kind
    style: dict[str, Any]  # file, md5, width, height
    provenance: Provenance
    model: dict[str, Any] | None = None  # file, md5, bytes (+ network for instant filters)
    made: dict[str, Any] | None = None  # recipe, seconds, hardware, finished, losses, ...

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_ID, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"


def load_card(path: Path) -> FilterCard:
    document = schemas.read_json(path, "filter card", CardError)
    schemas.check(document, "filter", path, CardError)
    body = {key: value for key, value in document.items() if key != "schema"}
    body["provenance"] = Provenance(**body["provenance"])
    return FilterCard(**body)


def check_card(card: FilterCard, path: Path) -> str:
    """The card's text, validated: a card on disk always reads back."""
    text = card.to_json()
    schemas.check(json.loads(text), "filter", path, CardError)
    return text


def save_card(card: FilterCard, path: Path) -> None:
    atomic_write_text(path, check_card(card, path))


def normalise_categories(categories: list[str]) -> list[str]:
    seen: list[str] = []
    for category in categories:
        for part in category.split(","):
            cleaned = " ".join(part.strip().lower().split())
            if cleaned and cleaned not in seen:
                seen.append(cleaned)
    return seen
