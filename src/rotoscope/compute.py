"""Where the studio's work runs: this process, or a Ray cluster.

``params.yaml``'s ``compute:`` section says which executor and how large its workers are; it
arrives through Git like the rest of the file, so it may say "ray" but never *which* cluster: a
cluster sends pickled results back to the driver, and a hostile pull request must not pick the
machine that does. The address comes only from the person running the job: ``--ray ADDRESS``
(which sets :data:`ADDRESS_VARIABLE` for the stages ``dvc repro`` runs) or ``RAY_ADDRESS``.
Without one, ``executor: ray`` starts a Ray of its own on this machine.

The section is not a stage parameter: the executor changes where frames are painted, never their
bytes, so switching it re-runs nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from rotoscope.errors import RotoscopeError

EXECUTORS = ("local", "ray")
EXECUTOR_VARIABLE = "ROTOSCOPE_EXECUTOR"  # overrides params.yaml's compute.executor
ADDRESS_VARIABLE = "RAY_ADDRESS"  # Ray's own: `ray start` prints it, `ray.init` reads it
# Dollars an hour (rotoscope.estimate) until params.yaml's compute.prices says otherwise: "cpu" is
# per core (a kind "cpu-N" costs N of them unless priced itself), "gpu" per GPU; rough on-demand
# cloud prices of late 2026 (a general-purpose vCPU, a mid-range inference GPU).
DEFAULT_PRICES = {"cpu": 0.048, "gpu": 1.00}
MAX_AUTO_ENCODERS = 8  # each holds its encoder's look-ahead frames: 4K ones are 12 MB apiece


@dataclass(frozen=True)
class ComputeSettings:
    executor: str = "local"
    address: str | None = None  # a Ray cluster's; None: a Ray of its own on this machine
    workers: int | None = None  # actors; None: as many as the cluster's CPUs (or GPUs) hold
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    encoders: int | None = None  # video segments encoded at once; None: one per core, at most 8
    prices: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PRICES))

    @classmethod
    def from_params(cls, section: dict[str, Any], environ: dict[str, str] | None = None) -> ComputeSettings:
        """The (schema-checked) ``compute:`` section, then this person's environment."""
        env = os.environ if environ is None else environ
        executor = env.get(EXECUTOR_VARIABLE) or section.get("executor") or "local"
        if executor not in EXECUTORS:
            choices = ", ".join(EXECUTORS)
            raise RotoscopeError(None, f"{EXECUTOR_VARIABLE} must be one of {choices}, not {executor!r}")
        return cls(
            executor=executor,
            address=env.get(ADDRESS_VARIABLE) or None,
            workers=section.get("workers"),
            cpus_per_worker=float(section.get("cpus_per_worker", 1.0)),
            gpus_per_worker=float(section.get("gpus_per_worker", 0.0)),
            encoders=section.get("encoders"),
            prices={**DEFAULT_PRICES, **{str(k): float(v) for k, v in (section.get("prices") or {}).items()}},
        )

    @property
    def encode_workers(self) -> int:
        return self.encoders or min(len(os.sched_getaffinity(0)), MAX_AUTO_ENCODERS)


def environment_for(executor: str | None, address: str | None) -> dict[str, str]:
    """What a command's ``--executor`` / ``--ray ADDRESS`` mean for the stages it starts."""
    env: dict[str, str] = {}
    if address:
        env |= {EXECUTOR_VARIABLE: "ray", ADDRESS_VARIABLE: address}
    if executor:
        env[EXECUTOR_VARIABLE] = executor
    return env
