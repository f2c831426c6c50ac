"""The Ray executor: a pool of actors painting a stylize run's missing frames.

Each actor builds its filters' ONNX Runtime sessions once, on the threads of its CPU share
(``compute.cpus_per_worker``), and paints one frame at a time into the studio's reuse store.
An actor that dies (its process killed, its node lost) is restarted and the frame it held is
handed to it again; the painter finds a painting kept before the death and does not paint it
twice. The driver (the stylize stage) waits, counting frames, then frees the actors' CPUs.

Workers read the studio's files where the driver does: on one machine, or on nodes that mount
the studio at the same path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from rotoscope.compute import ComputeSettings
from rotoscope.errors import RotoscopeError
from rotoscope.estimate import worker_hardware
from rotoscope.executors.painter import Painted, Painter, PaintJob, PaintRequest

ACTOR_RESTARTS = 4  # per actor: a node lost more often than this is a cluster to fix first
INSTALL_HINT = "the Ray executor needs Ray: pip install 'rotoscope[cluster]'"


class _PainterActor:
    """One worker: a :class:`Painter` on its share of the machine's cores."""

    def __init__(self, job: PaintJob, threads: int) -> None:
        import ray

        from rotoscope.filters import runtime

        runtime.use_threads(threads)
        self.painter = Painter(job, node=ray.get_runtime_context().get_node_id())

    def paint(self, request: PaintRequest) -> Painted:
        return self.painter.paint(request)

    def pid(self) -> int:
        return os.getpid()


class RayExecutor:
    name = "ray"

    def __init__(self, settings: ComputeSettings) -> None:
        self.settings = settings
        self.hardware = worker_hardware(settings)
        self.workers = settings.workers or 1  # the actors of the last run, once it ran

    def paint(self, job: PaintJob, requests: Sequence[PaintRequest], update) -> list[Painted]:
        if not requests:
            return []
        ray = _ray()
        started = _connect(ray, self.settings.address)
        try:
            actors = self._actors(ray, job, len(requests))
            try:
                return self._run(ray, actors, requests, update)
            finally:
                for actor in actors:
                    ray.kill(actor)
        finally:
            if started:
                ray.shutdown()

    def _actors(self, ray: Any, job: PaintJob, wanted: int) -> list[Any]:
        settings = self.settings
        actor = ray.remote(
            num_cpus=settings.cpus_per_worker,
            num_gpus=settings.gpus_per_worker,
            max_restarts=ACTOR_RESTARTS,
            max_task_retries=ACTOR_RESTARTS,
        )(_PainterActor)
        threads = max(1, round(settings.cpus_per_worker))
        count = min(wanted, settings.workers or _room(ray.cluster_resources(), settings))
        self.workers = count
        return [actor.remote(job, threads) for _ in range(count)]

    @staticmethod
    def _run(ray: Any, actors: list[Any], requests: Sequence[PaintRequest], update) -> list[Painted]:
        from ray.util import ActorPool

        pool = ActorPool(actors)
        done: list[Painted] = []
        try:
            for painted in pool.map_unordered(lambda actor, request: actor.paint.remote(request), requests):
                done.append(painted)
                update(len(done))
        except ray.exceptions.RayTaskError as error:  # a painting refused: the worker's own error
            cause = error.as_instanceof_cause()
            if isinstance(cause, RotoscopeError):
                raise RotoscopeError(cause.path, cause.problem) from None
            raise RotoscopeError(None, f"a Ray worker failed: {_first_line(error)}") from None
        except ray.exceptions.RayError as error:  # actors lost beyond their restarts
            raise RotoscopeError(None, f"the Ray cluster lost the painting: {_first_line(error)}") from None
        return done


def _room(resources: dict[str, float], settings: ComputeSettings) -> int:
    """Actors the cluster holds at once: by its GPUs when each takes one, else by its CPUs."""
    if settings.gpus_per_worker > 0:
        return max(1, int(resources.get("GPU", 0) // settings.gpus_per_worker))
    return max(1, int(resources.get("CPU", 1) // settings.cpus_per_worker))


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RotoscopeError(None, INSTALL_HINT) from None
    return ray


def _connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at ``address`` (or start one here); True if this call started Ray."""
    if ray.is_initialized():
        return False
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            configure_logging=True,
        )
    except Exception as error:  # ConnectionError, a version mismatch...: one line, not Ray's story
        where = address or "this machine"
        raise RotoscopeError(None, f"could not start or reach Ray at {where}: {_first_line(error)}") from None
    return True


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
