"""A render's look over time: its strength as keyframes, a crossfade to a second filter, and the
time range the filter covers. Pure time logic: parameters in, each frame's mix values out.

Times are seconds of presentation time from the video's first frame. Values are computed exactly
(as fractions, a parameter's float taken by its shortest decimal form) and rounded to whole
thousandths, the unit of every mix value: a frame's reuse key and pixels never depend on float
noise, and moving a keyframe changes only the frames whose thousandths change.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from rotoscope.errors import RotoscopeError

SCALE = 1000  # mix values are whole thousandths
MIX_KEYS = ("strength", "crossfade", "range")  # the render keys that say how a painting is mixed in
MAX_KEYFRAMES = 10_000
MAX_SECONDS = 10_000_000  # about 16 weeks: any real video, and no huge exact fractions

_Number = int | float


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def exact(value: _Number) -> Fraction:
    """A parameter as an exact fraction; a float by its shortest decimal form (0.1 is 1/10)."""
    return Fraction(repr(value)) if isinstance(value, float) else Fraction(value)


def thousandths(value: Fraction) -> int:
    """``value`` (0-1) in whole thousandths, rounded half to even: exact, the same everywhere."""
    return round(value * SCALE)


def _refuse(problem: str) -> RotoscopeError:
    return RotoscopeError(None, problem)


def _seconds(value: object, what: str) -> Fraction:
    if not _is_number(value) or not 0 <= value <= MAX_SECONDS:  # type: ignore[operator]
        raise _refuse(f"{what} must be a time in seconds, 0 to {MAX_SECONDS}, not {value!r}")
    return exact(value)  # type: ignore[arg-type]


def _share(value: object, what: str) -> Fraction:
    if not _is_number(value) or not 0 <= value <= 1:  # type: ignore[operator]
        raise _refuse(f"{what} must be between 0 and 1, not {value!r}")
    return exact(value)  # type: ignore[arg-type]


def _mapping(value: object, what: str, allowed: tuple[str, ...], required: tuple[str, ...]) -> Mapping:
    if not isinstance(value, Mapping):
        raise _refuse(f"{what} must be a mapping with {', '.join(allowed)}, not {value!r}")
    unknown = sorted(set(map(str, value)) - set(allowed))
    if unknown:
        raise _refuse(f"{what}: unknown key {unknown[0]!r} (known: {', '.join(allowed)})")
    missing = [key for key in required if key not in value]
    if missing:
        raise _refuse(f"{what} needs {' and '.join(missing)}")
    return value


@dataclass(frozen=True)
class Keyframe:
    at: Fraction  # seconds
    value: Fraction  # 0-1


@dataclass(frozen=True)
class Crossfade:
    """From the render's filter to ``to``: the render's before ``start``, ``to``'s after ``end``."""

    to: str
    start: Fraction
    end: Fraction

    def weight(self, seconds: Fraction) -> Fraction:
        """The share of ``to``'s painting at ``seconds``."""
        if seconds <= self.start:
            return Fraction(0)
        if seconds >= self.end:
            return Fraction(1)
        return (seconds - self.start) / (self.end - self.start)


@dataclass(frozen=True)
class TimeRange:
    """The stretch the filter covers, ``start`` included, ``end`` not; None: open on that side."""

    start: Fraction | None
    end: Fraction | None

    def holds(self, seconds: Fraction) -> bool:
        return (self.start is None or seconds >= self.start) and (self.end is None or seconds < self.end)


@dataclass(frozen=True)
class FrameMix:
    """One frame's mix in thousandths: ``strength`` of the painting over the source frame, the
    painting ``fade`` parts the crossfade's second filter's and the rest the render's own. A frame
    outside the range (``inside`` false) is the source frame."""

    strength: int
    fade: int
    inside: bool

    @property
    def is_source(self) -> bool:
        """Whether the frame shows the source alone (outside the range, or at strength 0)."""
        return not self.inside or self.strength == 0

    def paintings(self) -> list[tuple[int, int]]:
        """(0: the render's filter, 1: the crossfade's; thousandths) of each painting it takes."""
        shares = ((0, SCALE - self.fade), (1, self.fade))
        return [(which, share) for which, share in shares if share]


@dataclass(frozen=True)
class Timeline:
    """A render's strength keyframes (linear between them, held before the first and after the
    last), its crossfade and its range."""

    keyframes: tuple[Keyframe, ...]
    crossfade: Crossfade | None = None
    range: TimeRange | None = None

    @classmethod
    def parse(cls, strength: object, crossfade: object = None, span: object = None) -> Timeline:
        """params.yaml's ``strength``, ``crossfade`` and ``range``; refused with the key at fault."""
        return cls(_keyframes(strength), _crossfade(crossfade), _range(span))

    def strength(self, seconds: Fraction) -> Fraction:
        frames = self.keyframes
        if seconds <= frames[0].at:
            return frames[0].value
        for before, after in itertools.pairwise(frames):
            if seconds < after.at:
                return before.value + (after.value - before.value) * (seconds - before.at) / (
                    after.at - before.at
                )
        return frames[-1].value

    def at(self, seconds: Fraction) -> FrameMix:
        """The mix of the frame shown at ``seconds`` (from the first frame)."""
        inside = self.range is None or self.range.holds(seconds)
        fade = thousandths(self.crossfade.weight(seconds)) if self.crossfade else 0
        return FrameMix(thousandths(self.strength(seconds)), fade, inside)

    def frames(self, seconds: Sequence[Fraction]) -> list[FrameMix]:
        return [self.at(when) for when in seconds]


def frame_seconds(pts: Sequence[int], time_base: Fraction) -> list[Fraction]:
    """Each frame's time from the first frame, exactly."""
    first = pts[0] if pts else 0
    return [(value - first) * time_base for value in pts]


def _keyframes(strength: object) -> tuple[Keyframe, ...]:
    if _is_number(strength):
        return (Keyframe(Fraction(0), _share(strength, "strength")),)
    if isinstance(strength, str | bytes) or not isinstance(strength, Sequence) or not strength:
        raise _refuse(f"strength must be a number 0-1 or a list of {{at, value}} keyframes, not {strength!r}")
    if len(strength) > MAX_KEYFRAMES:
        raise _refuse(f"strength has {len(strength)} keyframes; at most {MAX_KEYFRAMES}")
    frames = []
    for index, item in enumerate(strength):
        what = f"strength.{index}"
        entry = _mapping(item, what, ("at", "value"), ("at", "value"))
        frames.append(Keyframe(_seconds(entry["at"], f"{what}.at"), _share(entry["value"], f"{what}.value")))
    for index, (before, after) in enumerate(itertools.pairwise(frames), start=1):
        if after.at <= before.at:
            raise _refuse(
                f"strength.{index}.at: keyframes must come in increasing time "
                f"({float(after.at):g} s is not after {float(before.at):g} s)"
            )
    return tuple(frames)


def _crossfade(value: object) -> Crossfade | None:
    if value is None:
        return None
    entry = _mapping(value, "crossfade", ("to", "start", "end"), ("to", "start", "end"))
    if not isinstance(entry["to"], str) or not entry["to"]:
        raise _refuse(f"crossfade.to must name a filter, not {entry['to']!r}")
    start, end = _seconds(entry["start"], "crossfade.start"), _seconds(entry["end"], "crossfade.end")
    if end <= start:
        raise _refuse(
            f"crossfade.end must come after crossfade.start ({float(end):g} s <= {float(start):g} s)"
        )
    return Crossfade(entry["to"], start, end)


def _range(value: object) -> TimeRange | None:
    if value is None:
        return None
    entry = _mapping(value, "range", ("start", "end"), ())
    if not entry:
        raise _refuse("range needs a start, an end or both (leave it out to cover the whole video)")
    start = _seconds(entry["start"], "range.start") if entry.get("start") is not None else None
    end = _seconds(entry["end"], "range.end") if entry.get("end") is not None else None
    if start is not None and end is not None and end <= start:
        raise _refuse(f"range.end must come after range.start ({float(end):g} s <= {float(start):g} s)")
    return TimeRange(start, end)


def setting_text(key: str, value: Any) -> str:
    """One lineage.render setting as ``rotoscope show`` prints it: keyframes as ``0@0s 1@4.5s``."""
    if key == "strength" and isinstance(value, list):
        return "strength " + " ".join(f"{_g(k.get('value'))}@{_g(k.get('at'))}s" for k in value)
    if key == "crossfade" and isinstance(value, dict):
        return f"crossfade to {value.get('to')} {_g(value.get('start'))}-{_g(value.get('end'))}s"
    if key == "range" and isinstance(value, dict):
        start, end = value.get("start"), value.get("end")
        if start is None or end is None:
            return f"range from {_g(start)}s" if end is None else f"range until {_g(end)}s"
        return f"range {_g(start)}-{_g(end)}s"
    return f"{key} {value}"


def _g(value: object) -> str:
    return f"{value:g}" if _is_number(value) else str(value)
