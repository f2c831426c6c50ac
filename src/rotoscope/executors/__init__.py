"""Executors: where a stylize run's missing paintings are made.

The stylize stage's process is always the driver: it works out every frame's reuse key, hands
only the paintings never made to an executor, then mixes, blends and writes the frames and the
manifest itself, so DVC sees the same outputs whichever executor painted.

- :class:`LocalExecutor`: this process, one painting after another.
- :class:`~rotoscope.executors.ray_pool.RayExecutor`: a pool of Ray actors, each holding its
  filters' ONNX Runtime sessions on its share of the cluster's CPUs (or a GPU).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from rotoscope.compute import ComputeSettings
from rotoscope.executors.painter import FilterModel, Painted, Painter, PaintJob, PaintRequest

__all__ = [
    "Executor",
    "FilterModel",
    "LocalExecutor",
    "PaintJob",
    "PaintRequest",
    "Painted",
    "Painter",
    "executor_for",
]

Update = Callable[[int], None]  # paintings done so far


class Executor(Protocol):
    name: str
    hardware: str  # the hardware kind each worker paints on (the ledger's and the prices' name)
    workers: int  # how many painted at once in the last run

    def paint(self, job: PaintJob, requests: Sequence[PaintRequest], update: Update) -> list[Painted]:
        """Every request painted into the studio's reuse store (in any order)."""
        ...


class LocalExecutor:
    name = "local"
    workers = 1

    @property
    def hardware(self) -> str:
        from rotoscope.filters import runtime

        return runtime.hardware_kind()

    def paint(self, job: PaintJob, requests: Sequence[PaintRequest], update: Update) -> list[Painted]:
        painter = Painter(job)
        done = []
        for request in requests:
            done.append(painter.paint(request))
            update(len(done))
        return done


def executor_for(settings: ComputeSettings) -> Executor:
    if settings.executor == "ray":
        from rotoscope.executors.ray_pool import RayExecutor

        return RayExecutor(settings)
    return LocalExecutor()
