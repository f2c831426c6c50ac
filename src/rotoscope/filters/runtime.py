"""How every ONNX Runtime session in this process runs: its execution provider and its threads.

One owner for both, because the instant network, the trained networks and the probes all make
sessions, and a cluster worker must be able to say once "one CPU is mine" or "here is a GPU".

- Provider: ONNX Runtime's CUDA provider when the installed runtime has it (the ``gpu`` extra,
  ``onnxruntime-gpu``) and a GPU answers, else the CPU. ``ROTOSCOPE_DEVICE=cpu`` forces the CPU.
- Threads: the runtime's default (one per core) unless :func:`use_threads` set a share, as a Ray
  actor holding one CPU of a shared machine does; idle pool threads never spin (they would take
  the cores from the JPEG coding around every frame).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

DEVICE_VARIABLE = "ROTOSCOPE_DEVICE"  # "cpu" forces the CPU where a GPU is present
_threads: int | None = None


@dataclass(frozen=True)
class RuntimeInfo:
    """What ``rotoscope doctor`` reports about the runtime."""

    version: str
    providers: tuple[str, ...]  # the ones sessions are made with, first preferred
    available: tuple[str, ...]  # what the installed runtime offers
    threads: int | None  # None: one per core


def use_threads(count: int | None) -> None:
    """Every session made from now on runs on ``count`` threads (None: one per core)."""
    global _threads
    if count is not None and count < 1:
        raise ValueError(f"threads must be at least 1, not {count}")
    _threads = count


def session_options(quiet: bool = False):
    """Fresh session options with this process's threads and quiet logging."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4 if quiet else 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if _threads is not None:
        options.intra_op_num_threads = _threads
        options.inter_op_num_threads = 1
    return options


def providers() -> list[str]:
    """The execution providers to make sessions with, the preferred first."""
    return list(_chosen_providers(os.environ.get(DEVICE_VARIABLE, "").strip().lower()))


@functools.cache
def _chosen_providers(forced: str) -> tuple[str, ...]:
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if forced != "cpu" and "CUDAExecutionProvider" in available and _cuda_answers():
        return ("CUDAExecutionProvider", "CPUExecutionProvider")
    return ("CPUExecutionProvider",)


def _cuda_answers() -> bool:
    """Whether a CUDA session can actually be made (the gpu wheel is installed on machines
    without a GPU or driver too, and then only warns and falls back)."""
    import onnxruntime
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [value],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    try:
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), session_options(quiet=True), providers=["CUDAExecutionProvider"]
        )
    except Exception:  # no driver, no device: the CPU it is
        return False
    return "CUDAExecutionProvider" in session.get_providers()


def hardware_kind() -> str:
    """What the sessions of this process run on, as the ledger and the price table name it:
    ``gpu``, or ``cpu-N`` with N the threads a session gets."""
    if providers()[0] == "CUDAExecutionProvider":
        return "gpu"
    return f"cpu-{_threads or len(os.sched_getaffinity(0))}"


def info() -> RuntimeInfo:
    import onnxruntime

    return RuntimeInfo(
        onnxruntime.__version__,
        tuple(providers()),
        tuple(onnxruntime.get_available_providers()),
        _threads,
    )
