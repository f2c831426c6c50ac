"""What a licence lets people do with a filter's pictures: the one place licences are judged.

Curators hand out collections whose artworks carry rights statements; a filter made from a
non-commercial or scholarly-only image, or one whose licence nobody recorded, must say so on its
card, in the gallery and on what it paints. The judgement is by recognised words, deliberately
cautious: anything not recognised as open is shown as restricted or unknown, never as open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Standing = Literal["open", "restricted", "unknown"]

_RESTRICTED = (
    (r"\bn\.?c\b|non[- ]?commercial", "non-commercial use only"),
    (r"\bn\.?d\b|no[- ]?deriv", "no derivatives allowed"),
    (r"scholar|educational|academic|research only|study only", "scholarly or educational use only"),
    (r"all rights reserved|\bcopyright(ed)?\b|©|permission", "all rights reserved"),
    (r"personal use|private use", "personal use only"),
    (r"editorial", "editorial use only"),
)
_OPEN = r"public[- ]domain|\bcc0\b|\bpdm\b|no known copyright|\bcc[- ]by(?![- ]?n)(-sa)?\b|\bmit\b|apache"


@dataclass(frozen=True)
class LicenceStanding:
    standing: Standing
    reason: str  # why, in a few words, for a badge's title


def judge(licence: str | None) -> LicenceStanding:
    text = (licence or "").strip().casefold()
    if not text or text in {"unknown", "?", "n/a", "none", "unspecified"}:
        return LicenceStanding("unknown", "no licence recorded: check the rights before publishing")
    for pattern, reason in _RESTRICTED:
        if re.search(pattern, text):
            return LicenceStanding("restricted", reason)
    if re.search(_OPEN, text):
        return LicenceStanding("open", "free to use, with credit where the licence asks")
    return LicenceStanding("unknown", "licence not recognised: check the rights before publishing")
