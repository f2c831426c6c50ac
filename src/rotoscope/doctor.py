"""What this machine offers the studio: ``rotoscope doctor``.

Which execution provider paints (CUDA or the CPU) and on how many threads, whether TensorFlow
sees a GPU to train on, whether Ray is installed and which cluster a job would join, and the
versions of the engines a bug report needs.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from importlib import metadata

from rotoscope.compute import ADDRESS_VARIABLE, EXECUTOR_VARIABLE


@dataclass(frozen=True)
class Finding:
    what: str
    value: str
    note: str = ""


def diagnose(check_training: bool = True) -> list[Finding]:
    """Every finding, cheapest first; ``check_training`` imports TensorFlow (a few seconds)."""
    from rotoscope import __version__
    from rotoscope.filters import runtime

    found = [
        Finding("rotoscope", __version__),
        Finding("python", platform.python_version(), sys.executable),
        Finding("cpu cores", str(len(os.sched_getaffinity(0))), platform.machine()),
    ]
    info = runtime.info()
    paints_on = "GPU (CUDA)" if info.providers[0] == "CUDAExecutionProvider" else "CPU"
    found.append(Finding("painting", paints_on, f"onnxruntime {info.version}: {', '.join(info.available)}"))
    found.append(Finding("hardware kind", runtime.hardware_kind(), "as the ledger names it"))
    if check_training:
        found.append(_training())
    found += [_package("ray", "executor: ray"), _package("dvc"), _package("av", "PyAV")]
    address = os.environ.get(ADDRESS_VARIABLE)
    found.append(Finding("ray cluster", address or "none set", f"{ADDRESS_VARIABLE} (or --ray ADDRESS)"))
    if os.environ.get(EXECUTOR_VARIABLE):
        found.append(Finding("executor", os.environ[EXECUTOR_VARIABLE], f"from {EXECUTOR_VARIABLE}"))
    return found


def _training() -> Finding:
    from rotoscope.filters.backend import tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return Finding("training", f"GPU x{len(gpus)}", f"tensorflow {tf.__version__}, mixed precision")
    return Finding("training", "CPU", f"tensorflow {tf.__version__} sees no GPU")


def _package(name: str, note: str = "") -> Finding:
    try:
        return Finding(name, metadata.version(name), note)
    except metadata.PackageNotFoundError:
        hint = {"ray": "pip install 'rotoscope[cluster]'"}.get(name, "")
        return Finding(name, "not installed", hint)
