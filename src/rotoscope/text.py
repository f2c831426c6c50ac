"""Showing untrusted text: names, card fields and commit subjects arrive through Git from anyone.

One place decides how text from a tracked file is shown in each medium: a terminal (no control
characters, so no escape sequences; no rich markup), Markdown (its punctuation escaped, code spans
that cannot be broken out of). HTML goes through Jinja2's autoescaping, never through here.
"""

from __future__ import annotations

import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&])")


def terminal(text: object) -> str:
    """``text`` safe to print: control characters (ESC, BEL, CR, C1...) become '?', tabs and
    newlines spaces. Rich markup is not interpreted where this is printed (see progress.say)."""
    shown = str(text)
    return "".join(ch if ch.isprintable() else " " if ch in "\t\n" else "?" for ch in shown)


def markdown(text: object) -> str:
    """``text`` as literal Markdown: every character Markdown or HTML could act on is escaped,
    and line breaks cannot start a new block."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", terminal(text))


def code_span(text: object) -> str:
    """``text`` in an inline code span that no backtick inside it can close early (CommonMark:
    a fence longer than any run of backticks inside, padded with spaces)."""
    shown = terminal(text).replace("|", "\\|")  # a pipe would still split a table cell
    longest = max((len(run) for run in re.findall(r"`+", shown)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {shown} {fence}"
