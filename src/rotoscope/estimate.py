"""Time and cost before a job: ``rotoscope estimate``.

A render's work is the paintings it still needs (after reuse: what the stylize stage would hand
to its executor). Each painting is measured in the unit its network's time follows: GFLOP for a
trained network (counted from its layers, so a new filter of a known shape is known too), and
painted megapixels for the instant network (one architecture). The rates are this studio's own:
every painting made is a ledger line (:mod:`rotoscope.executors.painter`) with its hardware, its
work and its seconds, and a rate is the seconds over the work of that hardware's lines. Nothing
here is a constant measured elsewhere: a hardware kind never seen says so instead of guessing.

Dollars come from ``compute.prices`` (per hour of a hardware kind; ``cpu`` and ``gpu`` are per
core-hour and per GPU-hour for kinds not named). After a run the stage's log records the
estimate beside what the painting took.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rotoscope.compute import ComputeSettings
from rotoscope.layout import Layout

DEFAULT_CLUSTER_WORKERS = 16  # what `estimate` shows a cluster as, unless told or compute.workers
MAX_LEDGER_LINES = 200_000  # the newest lines read (our own scratch, but kept bounded)
MAX_LEDGER_FILE_BYTES = 64 << 20  # of each worker's file (a line is about 300 bytes)
TRAINED_UNIT, INSTANT_UNIT = "GFLOP", "megapixel"


@dataclass(frozen=True)
class Work:
    """Paintings of one filter kind to make, and their work in that kind's unit."""

    kind: str  # trained or instant
    paintings: int
    units: float


@dataclass(frozen=True)
class Rate:
    hardware: str
    kind: str
    seconds_per_unit: float
    samples: int


@dataclass(frozen=True)
class Placement:
    """One way to run the work: where, on how many workers, how long and for how much."""

    where: str  # "this machine", "ray"
    hardware: str
    workers: int
    seconds: float | None  # None: no painting measured on that hardware yet
    dollars: float | None


@dataclass(frozen=True)
class RenderEstimate:
    render: str
    frames: int
    to_paint: int  # paintings after reuse
    work: list[Work]
    placements: list[Placement]


def unit_of(kind: str) -> str:
    return INSTANT_UNIT if kind == "instant" else TRAINED_UNIT


def measured_rates(layout: Layout) -> dict[tuple[str, str], Rate]:
    """(hardware, kind) -> the studio's measured seconds per unit, from the ledger."""
    totals: dict[tuple[str, str], list[float]] = {}
    for line in _ledger_lines(layout.ledger_dir()):
        try:
            hardware, kind = str(line["hardware"]), str(line["kind"])
            units, seconds = float(line["units"]), float(line["seconds"])
        except (KeyError, TypeError, ValueError):
            continue  # an older line without its work, or a torn one
        if units > 0 and seconds > 0:
            entry = totals.setdefault((hardware, kind), [0.0, 0.0, 0])
            entry[0] += seconds
            entry[1] += units
            entry[2] += 1
    return {
        (hardware, kind): Rate(hardware, kind, seconds / units, int(count))
        for (hardware, kind), (seconds, units, count) in totals.items()
    }


def _ledger_lines(folder: Path) -> list[dict]:
    if not folder.is_dir():
        return []
    lines: list[str] = []
    for file in sorted(folder.glob("*.jsonl")):
        if file.is_file() and not file.is_symlink():
            with open(file, "rb") as handle:  # the newest part of a file grown past the bound
                handle.seek(max(0, file.stat().st_size - MAX_LEDGER_FILE_BYTES))
                lines.extend(handle.read().decode("utf-8", errors="replace").splitlines())
    parsed = []
    for text in lines[-MAX_LEDGER_LINES:]:
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            parsed.append(value)
    return parsed


def price_per_hour(prices: dict[str, float], hardware: str) -> float | None:
    """Dollars an hour of one worker of ``hardware``: its own price, else ``cpu`` per core."""
    if hardware in prices:
        return prices[hardware]
    kind, _, count = hardware.partition("-")
    if kind in prices and count.isdigit():
        return prices[kind] * int(count)
    return prices.get(kind)


def place(
    work: list[Work],
    rates: dict[tuple[str, str], Rate],
    where: str,
    hardware: str,
    workers: int,
    prices: dict[str, float],
) -> Placement:
    """The work spread evenly over ``workers`` of ``hardware`` (paintings are independent)."""
    total = 0.0
    for part in work:
        if part.paintings == 0:
            continue
        rate = rates.get((hardware, part.kind))
        if rate is None:
            return Placement(where, hardware, workers, None, None)
        total += part.units * rate.seconds_per_unit
    seconds = total / max(1, workers)
    price = price_per_hour(prices, hardware)
    dollars = None if price is None else seconds / 3600 * workers * price
    return Placement(where, hardware, workers, seconds, dollars)


def worker_hardware(compute: ComputeSettings) -> str:
    """The hardware kind of one Ray actor of ``compute``'s size, as its ledger lines name it."""
    return "gpu" if compute.gpus_per_worker > 0 else f"cpu-{max(1, round(compute.cpus_per_worker))}"


def placements(
    work: list[Work],
    rates: dict[tuple[str, str], Rate],
    here: str,
    compute: ComputeSettings,
    cluster_workers: int,
) -> list[Placement]:
    """This machine, and the cluster of ``cluster_workers`` actors of ``compute``'s size."""
    return [
        place(work, rates, "this machine", here, 1, compute.prices),
        place(work, rates, "ray", worker_hardware(compute), cluster_workers, compute.prices),
    ]


def painting_units(kind: str, layers: list | None, width: int, height: int, brush: float) -> float:
    """One painting's work: a trained network's GFLOP at the size it paints, or the instant
    network's painted megapixels (``width`` x ``height`` is the output; the brush shrinks it)."""
    from rotoscope.filters.brush import painting_size

    painted_w, painted_h = painting_size(width, height, brush)
    if kind == "instant" or layers is None:
        return painted_w * painted_h / 1e6
    from rotoscope.filters.inference import network_flops

    return network_flops(layers, painted_h, painted_w) / 1e9
