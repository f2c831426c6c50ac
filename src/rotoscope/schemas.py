"""The JSON Schemas (2020-12) of the studio's Git-tracked files, shipped in ``rotoscope/schemas``."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from rotoscope.errors import MissingBlobError, RotoscopeError


def schema_text(filename: str) -> str:
    return resources.files("rotoscope").joinpath(f"schemas/{filename}").read_text()


def schema_names() -> list[str]:
    folder = resources.files("rotoscope").joinpath("schemas")
    return sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".schema.json"))


@cache
def _validator(kind: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(schema_text(f"{kind}.schema.json")))


def check(
    document: Any, kind: str, path: Path | str, error_type: type[RotoscopeError] = RotoscopeError
) -> None:
    """Raise one readable error naming ``path`` and the first place ``document`` breaks schema."""
    error = jsonschema.exceptions.best_match(_validator(kind).iter_errors(document))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        message = error.message if len(error.message) < 200 else error.message[:200] + "..."
        raise error_type(path, f"does not match rotoscope.{kind}/1 at {where}: {message}")


MAX_JSON_BYTES = 256 << 20  # a 100k-frame manifest is about 10 MiB


def read_json(path: Path, what: str, error_type: type[RotoscopeError] = RotoscopeError) -> Any:
    """Parse a JSON file, turning every way it can fail into one line naming the file."""
    if not path.is_file():
        raise MissingBlobError(path, f"no such {what}")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise error_type(path, f"too large for a {what} (over {MAX_JSON_BYTES >> 20} MiB)")
    return parse_json(path.read_bytes(), path, error_type)


def parse_json(data: bytes | str, path: Path | str, error_type: type[RotoscopeError] = RotoscopeError) -> Any:
    """JSON from an untrusted file: bad syntax, bad UTF-8, nesting too deep are one line each."""
    try:
        return json.loads(data)
    except json.JSONDecodeError as error:
        raise error_type(
            path, f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    except UnicodeDecodeError:
        raise error_type(path, "not a text file (invalid UTF-8)") from None
    except RecursionError:
        raise error_type(path, "invalid JSON (nested too deep)") from None
