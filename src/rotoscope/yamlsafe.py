"""YAML from untrusted files, read under limits.

A branch's ``params.yaml`` may be hostile: a "billion laughs" document of nested aliases is a few
hundred bytes that expands to billions of nodes in whatever walks it. Before anything is built,
the document's events are counted with every alias expanded to the size of what it names, and a
document past the limits (size, depth, expanded nodes) is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    ScalarEvent,
)

from rotoscope.errors import ParamsError

MAX_BYTES = 1 << 20  # a studio's params.yaml is a few KiB even with hundreds of videos
MAX_DEPTH = 32
MAX_NODES = 100_000  # after expanding aliases


def round_trip_yaml() -> YAML:
    """The reader and writer that keeps comments and layout (``params.yaml`` is edited by hand)."""
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def load(text: str, where: str | Path, *, round_trip: bool = False) -> Any:
    """The document in ``text``, checked against the limits first; one line naming ``where`` if not."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise ParamsError(where, f"too large for a parameters file (over {MAX_BYTES // 1024} KiB)")
    try:
        check_expansion(text, where)
        return (round_trip_yaml() if round_trip else YAML(typ="safe")).load(text)
    except ParamsError:
        raise
    except RecursionError:
        raise ParamsError(where, f"invalid YAML (nested deeper than {MAX_DEPTH})") from None
    except Exception as error:  # ruamel raises many types, all meaning "not valid YAML"
        raise ParamsError(where, f"invalid YAML ({error})") from None


def check_expansion(text: str, where: str | Path) -> None:
    """Count the nodes the document would have with every alias expanded; refuse past the limits."""
    sizes: dict[str, int] = {}
    stack: list[list[Any]] = [[None, 0]]  # per open collection: its anchor, nodes so far
    for event in YAML(typ="safe").parse(text):
        if isinstance(event, CollectionStartEvent):
            if len(stack) > MAX_DEPTH:
                raise ParamsError(where, f"invalid YAML (nested deeper than {MAX_DEPTH})")
            stack.append([event.anchor, 1])
            continue
        if isinstance(event, CollectionEndEvent):
            anchor, size = stack.pop()
        elif isinstance(event, ScalarEvent):
            anchor, size = event.anchor, 1
        elif isinstance(event, AliasEvent):
            anchor, size = None, sizes.get(event.anchor, 1)
        else:
            continue
        if anchor is not None:
            sizes[anchor] = size
        stack[-1][1] += size
        if stack[-1][1] > MAX_NODES:
            raise ParamsError(
                where, f"refused: expands to over {MAX_NODES:,} values (YAML aliases nested too deep)"
            )
