"""The studio's ``params.yaml`` as one typed, validated model.

``params.yaml`` arrives through Git from anyone who sends a pull request, so it is read once per
change of the file, under limits (:mod:`rotoscope.yamlsafe`), checked against
``schemas/params.schema.json`` (unknown keys refused with a suggestion) and turned into records.
Every name in it (video, filter, render) and every path it names is checked here, wherever the
file came from; the modules that use a section get a record, never the raw document.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from rotoscope import schemas, yamlsafe
from rotoscope.errors import ParamsError
from rotoscope.layout import NAME_RULE

SECTIONS = ("videos", "filters", "renders", "split", "stylize", "reassemble", "train", "compute")


@dataclass(frozen=True)
class VideoParams:
    name: str
    file: str  # relative to the studio: videos/<name>.<ext>
    split: dict[str, Any] = field(default_factory=dict)  # this video's own split overrides


@dataclass(frozen=True)
class FilterParams:
    name: str
    kind: str  # trained or instant
    style: str  # relative to the studio: filters/<name>/style.<ext>
    model: str | None  # relative to the studio; None: the kind's default file
    train: dict[str, Any] = field(default_factory=dict)  # this filter's own training overrides


@dataclass(frozen=True)
class StudioParams:
    """A validated ``params.yaml``: the registered videos, filters and renders, and each shared
    section as the schema allows it (the stages' own settings records read those)."""

    videos: dict[str, VideoParams]
    filters: dict[str, FilterParams]
    renders: dict[str, dict[str, Any]]
    split: dict[str, Any]
    stylize: dict[str, Any]
    reassemble: dict[str, Any]
    train: dict[str, Any]
    compute: dict[str, Any] = field(default_factory=dict)  # where the work runs (rotoscope.compute)


def parse(text: str, where: str | Path) -> tuple[Any, StudioParams]:
    """The round-trip document (for saving with its comments) and its validated model."""
    document = yamlsafe.load(text, where, round_trip=True)
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ParamsError(where, "must be a mapping of sections (videos:, filters:, renders:...)")
    return document, model(_plain(document), where)


def model(document: dict[str, Any], where: str | Path) -> StudioParams:
    """Check a plain (JSON-like) parameters document and build its records."""
    _check_finite(document, where, "")
    check(document, where)
    videos = {
        name: VideoParams(name, entry["file"], dict(entry.get("split") or {}))
        for name, entry in (document.get("videos") or {}).items()
    }
    filters = {
        name: FilterParams(
            name, entry["kind"], entry["style"], entry.get("model"), dict(entry.get("train") or {})
        )
        for name, entry in (document.get("filters") or {}).items()
    }
    for name, item in filters.items():
        for key in ("style", "model"):
            value = getattr(item, key)
            if value is not None and not value.startswith(f"filters/{name}/"):
                raise ParamsError(
                    where, f"filters.{name}.{key} must be a file in filters/{name}/, not {value!r}"
                )
    return StudioParams(
        videos=videos,
        filters=filters,
        renders={name: dict(entry) for name, entry in (document.get("renders") or {}).items()},
        **{key: dict(document.get(key) or {}) for key in SECTIONS[3:]},
    )


def check(document: Any, where: str | Path) -> None:
    """One line naming the first place ``document`` breaks the schema, with a suggestion for a
    misspelt key."""
    error = jsonschema.exceptions.best_match(_validator().iter_errors(document))
    if error is None:
        return
    at = ".".join(str(part) for part in error.absolute_path)
    raise ParamsError(where, f"{at or '(top level)'}: {_explain(error)}")


def _explain(error: jsonschema.ValidationError) -> str:
    if error.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(
        error.instance, dict
    ):
        known = _known_keys(error.schema)
        unknown = [key for key in error.instance if key not in known]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(sorted(known))})"
            return f"unknown key {key!r}{hint}"
    if "propertyNames" in error.absolute_schema_path:
        return f"{error.instance!r} is not a valid name: {NAME_RULE}; not 'source' for a render"
    if error.validator == "pattern":
        return f"{error.instance!r} is not allowed here (names and paths must stay inside the studio)"
    return error.message


def _known_keys(schema: dict[str, Any]) -> list[str]:
    return sorted(_resolve(schema).get("properties", {}))


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    return _schema()["$defs"][ref.rsplit("/", 1)[-1]] if ref.startswith("#/$defs/") else schema


@cache
def _schema() -> dict[str, Any]:
    return json.loads(schemas.schema_text("params.schema.json"))


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(_schema())


def _check_finite(value: Any, where: str | Path, at: str) -> None:
    """NaN and infinity pass every range check of a schema (comparisons with NaN are false)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ParamsError(where, f"{at or '(top level)'}: {value} is not a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, where, f"{at}.{key}" if at else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_finite(item, where, f"{at}.{index}")


def _plain(value: Any) -> Any:
    """ruamel's commented containers as plain dicts and lists (what the schema and records take)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
