"""TensorFlow and Keras, imported quietly.

TensorFlow's C++ start-up notes (oneDNN, and a CUDA error where there is no GPU) go straight to
file descriptor 2 before its logging is configured, so no environment variable silences them;
they would break the one-line errors users get. Import Keras from here and they are swallowed.
"""

from __future__ import annotations

import os
import sys


def _import_quietly() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow

        tensorflow.config.list_physical_devices()  # probing for GPUs logs a CUDA error where none is
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_quietly()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

__all__ = ["keras", "tf"]
