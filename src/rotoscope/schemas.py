"""The JSON Schemas (2020-12) of the studio's Git-tracked files, shipped in ``rotoscope/schemas``."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from rotoscope.errors import RotoscopeError


def schema_text(filename: str) -> str:
    return resources.files("rotoscope").joinpath(f"schemas/{filename}").read_text()


def schema_names() -> list[str]:
    folder = resources.files("rotoscope").joinpath("schemas")
    return sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".schema.json"))


@cache
def _validator(kind: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(schema_text(f"{kind}.schema.json")))


def check(document: Any, kind: str, path: Path | str) -> None:
    """Raise one readable error naming ``path`` and the first place ``document`` breaks schema."""
    error = jsonschema.exceptions.best_match(_validator(kind).iter_errors(document))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        raise RotoscopeError(path, f"does not match rotoscope.{kind}/1 at {where}: {error.message}")


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file, turning every way it can fail into one line naming the file."""
    if not path.is_file():
        raise RotoscopeError(path, f"no such {what}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RotoscopeError(
            path, f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    except UnicodeDecodeError:
        raise RotoscopeError(path, "not a text file (invalid UTF-8)") from None
