"""Trained filters at inference: the Keras model file read as data and run in ONNX Runtime.

Why not Keras: importing TensorFlow costs 3 to 5 seconds per process, more than stylizing the two
frames an incremental render changes, and its CPU kernels are slower on these thin networks than
ONNX Runtime's. Why this is safe: the ``.keras`` archive's ``config.json`` (the layer graph) and
``model.weights.h5`` (the arrays) are parsed as data and translated layer by layer into an ONNX
graph; only the layer types :mod:`rotoscope.filters.network` builds are understood, so nothing in
the file can run code. Model files come from strangers' pull requests, so every size, nesting
depth, layer argument, link and array is checked against the limits below before it is used, and
anything else is refused with one line (:class:`~rotoscope.errors.RefusedModelError`). TensorFlow
is only needed to train.

The graph keeps Keras's semantics: NHWC in and out, reflection padding, bilinear upsampling with
half-pixel centres (``tf.image.resize``), instance normalisation. For tiled pictures two variants
share the weights: a probe that also returns every norm's per-channel mean and variance, and a
network whose norms take those statistics as inputs, so every tile is lit like the whole picture.
"""

from __future__ import annotations

import functools
import io
import json
import math
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from rotoscope.errors import MissingBlobError, RefusedModelError, RotoscopeError
from rotoscope.filters import runtime

OPSET = 17  # ReduceMean still takes its axes as an attribute
IR_VERSION = 8  # what ONNX Runtime 1.17, the oldest we support, reads

_NORM = "GroupNormalization"
_UNDERSTOOD = {
    "InputLayer",
    "Rescaling",
    "Conv2D",
    _NORM,
    "ReLU",
    "Activation",
    "Add",
    "Upsample2x",
    "ReflectionPadding2D",
    "PixelUnshuffle2x",
    "PixelShuffle2x",
}
_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}
# Linear layers a constant scale passes through unchanged, so it can wait for the next conv
_SCALE_FOLLOWS = {"PixelUnshuffle2x", "PixelShuffle2x", "ReflectionPadding2D", "Upsample2x"}

NormStatistics = list[tuple[np.ndarray, np.ndarray]]  # per norm: per-channel mean and variance


@dataclass(frozen=True)
class _Layer:
    name: str
    kind: str
    config: dict[str, Any]
    inputs: tuple[str, ...]


@dataclass
class StyleNetwork:
    """A trained filter's network: its layers in order, their weights, and ONNX Runtime sessions."""

    path: Path
    layers: list[_Layer]
    weights: dict[str, list[np.ndarray]]
    output: str
    min_side: int = 1  # the smallest picture side its reflection paddings can mirror
    block: int | None = None  # NCHWc channel block of the graph; 0 portable; None: what this runtime runs
    _sessions: dict[str, Any] = field(default_factory=dict, repr=False)
    _graphs: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def norms(self) -> list[_Layer]:
        return [layer for layer in self.layers if layer.kind == _NORM]

    def run(self, batch: np.ndarray) -> np.ndarray:
        """NHWC float32 RGB 0-255 in (sides multiples of 4), the stylized batch out (unclipped)."""
        return self._session("whole").run(["styled"], {"picture": self._picture(batch)})[0]

    def norm_statistics(self, batch: np.ndarray) -> NormStatistics:
        """Each instance norm's per-channel mean and variance over one picture."""
        names = [f"mean{i}" for i in range(len(self.norms))] + [f"var{i}" for i in range(len(self.norms))]
        values = self._session("probe").run(names, {"picture": self._picture(batch)})
        count = len(self.norms)
        return [(values[i].reshape(-1), values[count + i].reshape(-1)) for i in range(count)]

    def with_statistics(self, stats: NormStatistics) -> Callable[[np.ndarray], np.ndarray]:
        """The network with every norm fixed to ``stats`` (each tile lit like the whole picture)."""
        feeds = {}
        for i, (layer, (mean, variance)) in enumerate(zip(self.norms, stats, strict=True)):
            gamma, beta = (w.astype(np.float64) for w in self.weights[layer.name])
            scale = gamma / np.sqrt(variance.astype(np.float64) + float(layer.config["epsilon"]))
            feeds[f"scale{i}"] = scale.astype(np.float32).reshape(1, -1, 1, 1)
            feeds[f"shift{i}"] = (beta - mean * scale).astype(np.float32).reshape(1, -1, 1, 1)
        session = self._session("fixed")
        return lambda batch: session.run(["styled"], {"picture": self._picture(batch), **feeds})[0]

    @property
    def bytes_per_pixel(self) -> int:
        """ONNX Runtime's peak memory for one pass, per input pixel, whichever variant runs."""
        return working_bytes_per_pixel(self.layers)

    def onnx_model(self, variant: str = "whole") -> bytes:
        """The serialised ONNX graph: ``whole``, ``probe`` (adds norm statistics) or ``fixed``."""
        if self.block is None:  # NCHWc is the CPU provider's own layout: elsewhere, the portable graph
            self.block = nchwc_block() if runtime.providers()[0] == "CPUExecutionProvider" else 0
        if variant not in self._graphs:  # read_network builds "whole" once to check it; keep it
            builder = (
                _NchwcGraphBuilder(self, variant, self.block) if self.block else _GraphBuilder(self, variant)
            )
            self._graphs[variant] = builder.build()
        return self._graphs[variant]

    def _picture(self, batch: np.ndarray) -> np.ndarray:
        """The batch as float32, if its pictures are large enough for this network to draw."""
        if min(batch.shape[1:3]) < self.min_side:
            raise RotoscopeError(
                self.path, f"pictures under {self.min_side} pixels a side are too small for this filter"
            )
        if any(side % PICTURE_MULTIPLE for side in batch.shape[1:3]):  # apply.py pads them so
            raise RotoscopeError(self.path, f"picture sides must be multiples of {PICTURE_MULTIPLE}")
        return np.ascontiguousarray(batch, dtype=np.float32)

    def _session(self, variant: str):
        if variant not in self._sessions:
            import onnxruntime

            self._sessions[variant] = onnxruntime.InferenceSession(
                self.onnx_model(variant), session_options(), providers=runtime.providers()
            )
        return self._sessions[variant]


def session_options(quiet: bool = False):
    """How every trained network's session runs (each choice measured on the full network at 720p),
    on :mod:`~rotoscope.filters.runtime`'s threads."""
    options = runtime.session_options(quiet)
    # Not session.set_denormal_as_zero: it sets flush-to-zero on the calling thread as well, so
    # numpy in the caller's thread would lose its subnormal floats too (hypothesis caught it).
    # The memory pattern plans one block per picture size from the first run: it held 1.6 KiB
    # per pixel against 0.8 KiB live, for no speed (the arena reuses memory between runs anyway).
    options.enable_mem_pattern = False
    if _shared_arena():  # the probe and fixed sessions of a tiled photo would each keep their peak
        options.add_session_config_entry("session.use_env_allocators", "1")
    return options


@functools.cache
def _shared_arena() -> bool:
    """One memory arena for all the trained networks' sessions in this process: a tiled photo's
    probe and fixed sessions then share one peak (measured at 720p on the full network: 0.8 KiB
    per pixel for both, against 1.7 KiB with an arena each; an arena grown only by what is asked,
    not in doubling steps, held 1.1 KiB)."""
    import onnxruntime

    try:
        cpu = onnxruntime.OrtMemoryInfo(
            "Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, onnxruntime.OrtMemType.DEFAULT
        )
        onnxruntime.create_and_register_allocator(cpu, onnxruntime.OrtArenaCfg(0, 0, -1, -1))
    except Exception:  # a runtime without it, or one already registered: an arena each
        return False
    return True


# -- limits on what a model file may hold --------------------------------------------------------
#
# Model files arrive through Git and DVC from strangers' pull requests. Every size below is checked
# before the bytes it governs are read or allocated, so a hostile file costs at most the weights'
# limit in memory and well under a second before it is refused. Each limit is far above what
# network.py builds: the full-width network has 67 layers, a 56 KB config.json nested 11 deep,
# 1.7 million parameters and 32 to 128 channels.

_MIB = 1 << 20
MAX_ARCHIVE_BYTES = 520 * _MIB  # the largest weights and config below, plus the zip's own records
MAX_ARCHIVE_ENTRIES = 8  # Keras writes three: metadata.json, config.json, model.weights.h5
MAX_CENTRAL_DIRECTORY_BYTES = 64 << 10  # zipfile parses all of it before any check of ours
MAX_MEMBER_BYTES = {  # each member's size once unpacked, declared and read
    "config.json": 4 * _MIB,
    "model.weights.h5": 512 * _MIB,
    "metadata.json": 64 << 10,  # never read, only allowed
}
MAX_JSON_DEPTH = 64  # Keras nests the layer graph 11 deep
MAX_LAYERS = 512
MAX_NAME_LENGTH = 256
MAX_PARAMETERS = 64 * _MIB  # 512 MiB as float64: what the weights file may hold anyway
MAX_CHANNELS = 4096  # the widest conv, 1024 filters, after a pixel unshuffle
FILTERS = (1, 1024)  # bounds, inclusive, of each Conv2D argument
KERNEL_SIDE = (1, 15)
STRIDE = (1, 4)
DILATION = (1, 8)
PADDING = (0, 64)  # ReflectionPadding2D; 0 is what a 1x1 conv's padding would be
MAX_RESCALING = 1e6  # |scale| and |offset| of a Rescaling, so they stay finite in float32
PICTURE_MULTIPLE = 4  # apply.py pads pictures to sides a multiple of 4: no layer may divide them more
MAX_MIN_SIDE = 64  # every filter must draw pictures this small (network.py's need 8 pixels at most)
_FLOAT_SIZES = (2, 4, 8)  # float16, float32, float64: the only weight types read
_HDF5_LAYOUTS = ("CONTIGUOUS", "CHUNKED", "COMPACT")  # not VIRTUAL: that reads other files


class _Refusal(Exception):
    """What is wrong with the model file; :func:`read_network` adds the path and raises it."""


def read_network(path: Path) -> StyleNetwork:
    """The style network in a ``.keras`` file, or one line naming the file and what is wrong."""
    try:
        config_bytes, weights_bytes = _read_archive(path)
        layers, output = _parse_model(_parse_json(config_bytes))
        shapes = _weight_shapes(layers, output)
        weights = _read_weights(weights_bytes, layers, shapes.arrays)
        network = StyleNetwork(path, layers, weights, output, shapes.min_side)
    except _Refusal as refusal:
        raise RefusedModelError(path, f"refused: {refusal}") from None
    network.onnx_model()  # translated once now, so nothing is left to fail once work has started
    return network


# -- the zip archive


def _read_archive(path: Path) -> tuple[bytearray, bytearray]:
    """``config.json`` and ``model.weights.h5``, each read only once its sizes are known to fit."""
    if not path.is_file():
        raise MissingBlobError(path, "no such model file (run `dvc pull`, or `dvc repro` to make it)")
    size = path.stat().st_size
    if size > MAX_ARCHIVE_BYTES:
        raise _Refusal(f"the archive is {size} bytes, more than the {MAX_ARCHIVE_BYTES} a filter may be")
    try:
        with path.open("rb") as file:
            _check_end_record(file, size)
            with zipfile.ZipFile(file) as archive:
                members = _members(archive)
                config = _member_bytes(archive, members["config.json"])
                return config, _member_bytes(archive, members["model.weights.h5"])
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error) as error:
        raise _Refusal(f"damaged Keras archive ({_shown(error, 200)})") from None


_END_RECORD = struct.Struct("<4s4H2LH")  # the zip's end of central directory record
_ZIP64_LOCATOR = b"PK\x06\x07"


def _check_end_record(file: BinaryIO, size: int) -> None:
    """Refuse, from the end record alone, an archive whose central directory is too large.

    zipfile reads the whole central directory into objects before it can be asked anything, so
    millions of tiny entries would exhaust memory first. The record is found as zipfile finds it
    (the last signature in the last 64 KiB), and the zip64 records that could override it, which
    no style network needs, are refused."""
    window = min(size, _END_RECORD.size + (1 << 16))
    file.seek(size - window)
    tail = file.read(window)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _END_RECORD.size:
        raise _Refusal("not a Keras .keras archive (pickles and other formats are refused)")
    _, _, _, disk_entries, entries, directory_size, directory_at, _ = _END_RECORD.unpack_from(tail, at)
    record_at = size - window + at
    file.seek(max(0, record_at - 20))
    if (
        0xFFFF in (disk_entries, entries)
        or 0xFFFFFFFF in (directory_size, directory_at)
        or (record_at >= 20 and file.read(4) == _ZIP64_LOCATOR)
    ):
        raise _Refusal("a zip64 archive (a style network is far smaller than zip64 is for)")
    if entries > MAX_ARCHIVE_ENTRIES or directory_size > MAX_CENTRAL_DIRECTORY_BYTES:
        raise _Refusal(
            f"the archive lists {entries} entries in {directory_size} bytes; "
            f"a style network has at most {MAX_ARCHIVE_ENTRIES}"
        )


def _members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive's entries by name, each a plain one of those Keras writes, at most its size."""
    infos = archive.infolist()
    names = [info.filename for info in infos]
    if len(infos) > MAX_ARCHIVE_ENTRIES or len(set(names)) != len(names):
        raise _Refusal("damaged Keras archive (too many entries, or one name twice)")
    for info in infos:
        shown = _shown(info.filename)
        if info.filename not in MAX_MEMBER_BYTES:
            raise _Refusal(f"the archive holds {shown}, which is not part of a Keras style network")
        if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _Refusal(f"{shown} is encrypted or compressed in a way Keras does not write")
        if info.file_size > MAX_MEMBER_BYTES[info.filename]:
            raise _Refusal(
                f"{shown} unpacks to {info.file_size} bytes, more than {MAX_MEMBER_BYTES[info.filename]}"
            )
    missing = sorted({"config.json", "model.weights.h5"} - set(names))
    if missing:
        raise _Refusal(f"damaged Keras archive (no {' or '.join(missing)})")
    return dict(zip(names, infos, strict=True))


_CHUNK = 1 << 20


def _member_bytes(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytearray:
    """The member's bytes, read in chunks into one buffer of its declared size (already checked
    against its limit): a stream longer than declared is refused, not trusted, and the bytes are
    never in memory twice (``ZipExtFile.read`` would concatenate them into a second copy)."""
    data = bytearray(info.file_size)
    filled = 0
    with archive.open(info) as member, memoryview(data) as view:
        while chunk := member.read(min(_CHUNK, len(data) - filled + 1)):
            if filled + len(chunk) > len(data):
                raise _Refusal(f"{info.filename} unpacks to more than the {len(data)} bytes it declares")
            view[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
    del data[filled:]
    return data


# -- config.json: typed, bounded fields


def _parse_json(data: bytearray) -> dict[str, Any]:
    try:
        document = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise _Refusal(f"config.json nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as error:  # JSONDecodeError, bad UTF-8, an integer of thousands of digits
        raise _Refusal(f"damaged Keras archive (config.json: {_shown(error, 200)})") from None
    if _nests_deeper(document, MAX_JSON_DEPTH):
        raise _Refusal(f"config.json nests deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(document, dict):
        raise _Refusal("damaged Keras archive (config.json is not a JSON object)")
    return document


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a model may hold")


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether lists and objects nest deeper than ``limit`` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


_REQUIRED = object()


def _shown(value: Any, width: int = 60) -> str:
    """A value from the file as a message may quote it: short."""
    text = str(value) if isinstance(value, BaseException) else repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _field(
    mapping: dict[str, Any], key: str, kinds: type | tuple[type, ...], where: str, default: Any
) -> Any:
    """``mapping[key]`` if it is one of ``kinds`` (a bool is not a number), ``default`` if absent."""
    if key not in mapping:
        if default is _REQUIRED:
            raise _Refusal(f"{where}: no {key!r}")
        return default
    value = mapping[key]
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        wanted = " or ".join("null" if kind is type(None) else kind.__name__ for kind in kinds)
        raise _Refusal(f"{where}: {key!r} is {_shown(value)}, not {wanted}")
    return value


def _int(
    mapping: dict[str, Any], key: str, where: str, bounds: tuple[int, int], default: Any = _REQUIRED
) -> int:
    value = _field(mapping, key, int, where, default)
    if not bounds[0] <= value <= bounds[1]:
        raise _Refusal(f"{where}: {key} {_shown(value)} is not from {bounds[0]} to {bounds[1]}")
    return value


def _pair(
    mapping: dict[str, Any], key: str, where: str, bounds: tuple[int, int], default: Any = _REQUIRED
) -> tuple[int, int]:
    """Two whole numbers within ``bounds`` (Keras writes a list; one number means both)."""
    value = _field(mapping, key, (int, list), where, default)
    values = [value, value] if isinstance(value, int) else value
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise _Refusal(f"{where}: {key} {_shown(value)} is not two whole numbers")
    if not all(bounds[0] <= v <= bounds[1] for v in values):
        raise _Refusal(f"{where}: {key} {_shown(value)} is not from {bounds[0]} to {bounds[1]}")
    return values[0], values[1]


def _number(mapping: dict[str, Any], key: str, where: str, default: float, limit: float) -> float:
    value = float(_field(mapping, key, (int, float), where, default))
    if not math.isfinite(value) or abs(value) > limit:
        raise _Refusal(f"{where}: {key} {_shown(value)} is not a number within {limit:g}")
    return value


def _choice(mapping: dict[str, Any], key: str, where: str, allowed: Collection[str], default: str) -> str:
    value = _field(mapping, key, str, where, default)
    if value not in allowed:
        raise _Refusal(f"{where}: {key} {_shown(value)} is not one of {', '.join(sorted(allowed))}")
    return value


def _parse_model(document: dict[str, Any]) -> tuple[list[_Layer], str]:
    """The layers, in order, and the output layer's name."""
    if document.get("class_name") != "Functional":
        raise _Refusal(f"a {_shown(document.get('class_name'))} model is not a style network")
    model = _field(document, "config", dict, "the model", _REQUIRED)
    entries = _field(model, "layers", list, "the model", _REQUIRED)
    if not 1 <= len(entries) <= MAX_LAYERS:
        raise _Refusal(f"a style network has 1 to {MAX_LAYERS} layers, not {len(entries)}")
    kinds = [_kind(entry, index) for index, entry in enumerate(entries)]
    unknown = sorted(set(kinds) - _UNDERSTOOD)
    if unknown:
        shown = ", ".join(kind[:40] for kind in unknown[:8])
        raise _Refusal(f"layer types {shown} are not part of a rotoscope style network")
    layers: dict[str, _Layer] = {}
    for entry, kind in zip(entries, kinds, strict=True):
        layer = _parse_layer(entry, kind, layers)
        layers[layer.name] = layer
    inputs = [layer for layer in layers.values() if layer.kind == "InputLayer"]
    output = _endpoint(model, "output_layers", layers)
    if len(inputs) != 1 or output is None:
        raise _Refusal(
            f"a style network has one input and one output, not {len(inputs)}/{int(output is not None)}"
        )
    return list(layers.values()), output


def _kind(entry: Any, index: int) -> str:
    if not isinstance(entry, dict):
        raise _Refusal(f"damaged Keras archive (layer {index} is not a JSON object)")
    return _field(entry, "class_name", str, f"layer {index}", _REQUIRED).rsplit(">", 1)[-1]


def _parse_layer(entry: dict[str, Any], kind: str, earlier: dict[str, _Layer]) -> _Layer:
    name = _field(entry, "name", str, "a layer", _REQUIRED)
    if not 1 <= len(name) <= MAX_NAME_LENGTH or name in earlier:
        raise _Refusal(f"layer name {_shown(name)} is empty, too long or used twice")
    where = f"layer {name}"
    config = _field(entry, "config", dict, where, _REQUIRED)
    return _Layer(name, kind, _CONFIG_CHECKS[kind](config, where), _inputs(entry, kind, where, earlier))


def _inputs(entry: dict[str, Any], kind: str, where: str, earlier: Collection[str]) -> tuple[str, ...]:
    """The layers feeding this one, each an earlier layer: no cycles, no forward references."""
    nodes = _field(entry, "inbound_nodes", list, where, [])
    if kind == "InputLayer":
        if nodes:
            raise _Refusal(f"{where}: an input layer takes no inputs")
        return ()
    if len(nodes) != 1:
        raise _Refusal(f"{where}: is applied {len(nodes)} times, not once")
    if not isinstance(nodes[0], dict):
        raise _Refusal(f"{where}: its inbound node is not a JSON object")
    args = _field(nodes[0], "args", list, where, _REQUIRED)
    _field(nodes[0], "kwargs", dict, where, {})
    if kind == "Add":  # Keras writes Add's inputs as one list argument
        tensors = args[0] if len(args) == 1 and isinstance(args[0], list) else []
        if len(tensors) < 2:
            raise _Refusal(f"{where}: an Add takes a list of two or more inputs")
    elif len(args) != 1:
        raise _Refusal(f"{where}: takes one input, not {len(args)}")
    else:
        tensors = args
    sources = tuple(_tensor_source(tensor, where) for tensor in tensors)
    for source in sources:
        if source not in earlier:
            raise _Refusal(f"{where}: its input {_shown(source)} is not an earlier layer")
    return sources


def _tensor_source(tensor: Any, where: str) -> str:
    """The layer whose output a serialised Keras tensor is: ``keras_history`` [name, 0, 0]."""
    if not isinstance(tensor, dict) or tensor.get("class_name") != "__keras_tensor__":
        raise _Refusal(f"{where}: an input is not a Keras tensor")
    history = _field(
        _field(tensor, "config", dict, where, _REQUIRED), "keras_history", list, where, _REQUIRED
    )
    if len(history) != 3 or not isinstance(history[0], str) or history[1:] != [0, 0]:
        raise _Refusal(f"{where}: keras_history {_shown(history)} is not [layer name, 0, 0]")
    return history[0]


def _endpoint(model: dict[str, Any], key: str, layers: Collection[str]) -> str | None:
    """The one layer ``output_layers`` names ([name, 0, 0], or a list of one such), else None."""
    value = _field(model, key, list, "the model", [])
    if len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    if len(value) != 3 or not isinstance(value[0], str) or value[1:] != [0, 0]:
        return None
    if value[0] not in layers:
        raise _Refusal(f"the model's output {_shown(value[0])} is not one of its layers")
    return value[0]


# one check per layer type: the config fields the translation uses, typed and within bounds


def _input_config(config: dict[str, Any], where: str) -> dict[str, Any]:
    shape = _field(config, "batch_shape", list, where, _REQUIRED)
    sides_ok = all(side is None or (isinstance(side, int) and not isinstance(side, bool)) for side in shape)
    if not sides_ok or len(shape) != 4 or shape[-1] != 3 or any(side is not None for side in shape[1:3]):
        raise _Refusal(f"input shape {_shown(tuple(shape))} is not (batch, any height, any width, 3)")
    return {}


def _rescaling_config(config: dict[str, Any], where: str) -> dict[str, Any]:
    return {
        "scale": _number(config, "scale", where, 1.0, MAX_RESCALING),
        "offset": _number(config, "offset", where, 0.0, MAX_RESCALING),
    }


def _conv_config(config: dict[str, Any], where: str) -> dict[str, Any]:
    valid = _field(config, "padding", str, where, "valid") == "valid"
    if not valid or _field(config, "data_format", str, where, "channels_last") != "channels_last":
        raise _Refusal(f"{where}: only 'valid' channels-last convolutions are part of a style network")
    return {
        "filters": _int(config, "filters", where, FILTERS),
        "kernel_size": _pair(config, "kernel_size", where, KERNEL_SIDE),
        "strides": _pair(config, "strides", where, STRIDE, [1, 1]),
        "dilation_rate": _pair(config, "dilation_rate", where, DILATION, [1, 1]),
        "groups": _int(config, "groups", where, FILTERS, 1),
        "activation": _choice(config, "activation", where, {"linear", *_ACTIVATIONS}, "linear"),
        "use_bias": _field(config, "use_bias", bool, where, True),
    }


def _norm_config(config: dict[str, Any], where: str) -> dict[str, Any]:
    epsilon = _number(config, "epsilon", where, 1e-3, 1.0)
    if not 0 < epsilon < 1:
        raise _Refusal(f"{where}: epsilon {epsilon!r} is not between 0 and 1")
    if _field(config, "axis", int, where, -1) not in (-1, 3):
        raise _Refusal(f"{where}: only normalisation over channels (axis -1) is supported")
    if not (_field(config, "center", bool, where, True) and _field(config, "scale", bool, where, True)):
        raise _Refusal(f"{where}: a norm without its scale and centre is not part of a style network")
    return {"groups": _int(config, "groups", where, (-1, MAX_CHANNELS)), "epsilon": epsilon}


def _relu_config(config: dict[str, Any], where: str) -> dict[str, Any]:
    capped = _field(config, "max_value", (int, float, type(None)), where, None) is not None
    slope = _field(config, "negative_slope", (int, float), where, 0.0)
    if capped or slope or _field(config, "threshold", (int, float), where, 0.0):
        raise _Refusal(f"{where}: only a plain ReLU is supported")
    return {}


def _activation_config(config: dict[str, Any], where: str) -> dict[str, Any]:
    return {"activation": _choice(config, "activation", where, {"linear", *_ACTIVATIONS}, "linear")}


def _padding_config(config: dict[str, Any], where: str) -> dict[str, Any]:
    return {"padding": _int(config, "padding", where, PADDING, 1)}


def _no_config(config: dict[str, Any], where: str) -> dict[str, Any]:
    return {}


_CONFIG_CHECKS: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    "InputLayer": _input_config,
    "Rescaling": _rescaling_config,
    "Conv2D": _conv_config,
    _NORM: _norm_config,
    "ReLU": _relu_config,
    "Activation": _activation_config,
    "Add": _no_config,
    "Upsample2x": _no_config,
    "ReflectionPadding2D": _padding_config,
    "PixelUnshuffle2x": _no_config,
    "PixelShuffle2x": _no_config,
}


# -- the shapes the config implies, checked before any weight is read


@dataclass(frozen=True)
class _Plane:
    """What a layer puts out: channels, height and width as fractions of the input picture's, and
    the reflection padding on each side that a convolution has yet to take off."""

    channels: int
    scale: tuple[Fraction, Fraction]
    border: int = 0

    def resized(self, channels: int, factors: tuple[Fraction, Fraction]) -> _Plane:
        return _Plane(channels, (self.scale[0] * factors[0], self.scale[1] * factors[1]))


_SAME = (Fraction(1), Fraction(1))
_HALF = (Fraction(1, 2), Fraction(1, 2))
_DOUBLE = (Fraction(2), Fraction(2))
_TAKES_PADDED = ("ReflectionPadding2D", "Conv2D")


@dataclass(frozen=True)
class _Shapes:
    arrays: dict[str, list[tuple[int, ...]]]  # per layer, the arrays it must store
    min_side: int  # the smallest picture side every reflection padding can mirror


def _weight_shapes(layers: list[_Layer], output: str) -> _Shapes:
    """The arrays each layer must store, from its config and the channels its input carries; and
    every layer's picture, so that the network draws any picture apply.py gives it at its size."""
    planes: dict[str, _Plane] = {}
    arrays: dict[str, list[tuple[int, ...]]] = {}
    min_side = 1
    for layer in layers:
        ins = [planes[name] for name in layer.inputs] or [_Plane(3, _SAME)]
        if any(plane != ins[0] for plane in ins):
            raise _Refusal(f"layer {layer.name}: its inputs differ in shape")
        if ins[0].border and layer.kind not in _TAKES_PADDED:
            raise _Refusal(f"layer {layer.name}: only a convolution may take a reflection-padded picture")
        planes[layer.name], arrays[layer.name] = _layer_shape(layer, ins[0])
        min_side = max(min_side, _side_needed(layer, ins[0]))
        _check_plane(layer, planes[layer.name])
    parameters = sum(math.prod(shape) for shapes in arrays.values() for shape in shapes)
    if parameters > MAX_PARAMETERS:
        raise _Refusal(f"{parameters} parameters, more than the {MAX_PARAMETERS} a filter may have")
    if min_side > MAX_MIN_SIDE:
        raise _Refusal(
            f"its reflection padding needs pictures of {min_side} pixels, more than {MAX_MIN_SIDE}"
        )
    out = planes[output]
    if out.channels != 3:
        raise _Refusal(f"output shape (batch, height, width, {out.channels}) is not RGB")
    if out.scale != _SAME or out.border:
        raise _Refusal("the output is not the size of the input picture")
    return _Shapes(arrays, min_side)


def _check_plane(layer: _Layer, plane: _Plane) -> None:
    if plane.channels > MAX_CHANNELS:
        raise _Refusal(f"layer {layer.name}: {plane.channels} channels, more than {MAX_CHANNELS}")
    if not all(0 < side <= 1 and (side * PICTURE_MULTIPLE).denominator == 1 for side in plane.scale):
        raise _Refusal(
            f"layer {layer.name}: makes the picture larger than the input, "
            f"or divides its sides by more than {PICTURE_MULTIPLE}"
        )


def _side_needed(layer: _Layer, before: _Plane) -> int:
    """The input side below which this layer's reflection padding would mirror past the edge."""
    if layer.kind != "ReflectionPadding2D":
        return 1
    mirrored = layer.config["padding"] + 1 - 2 * before.border  # pixels the layer's input needs
    return max(math.ceil(mirrored / side) for side in before.scale)


def _layer_shape(layer: _Layer, before: _Plane) -> tuple[_Plane, list[tuple[int, ...]]]:
    config, channels = layer.config, before.channels
    if layer.kind == "ReflectionPadding2D":
        return _Plane(channels, before.scale, before.border + config["padding"]), []
    if layer.kind == "Conv2D":
        return _conv_shape(layer, before)
    if layer.kind == _NORM:
        if config["groups"] not in (-1, channels):
            raise _Refusal(
                f"layer {layer.name}: only instance normalisation (one group per channel) is supported"
            )
        return before, [(channels,), (channels,)]
    if layer.kind == "PixelUnshuffle2x":
        return before.resized(channels * 4, _HALF), []
    if layer.kind == "PixelShuffle2x":
        if channels % 4:
            raise _Refusal(f"layer {layer.name}: {channels} channels cannot be shuffled into 2x2 pixels")
        return before.resized(channels // 4, _DOUBLE), []
    if layer.kind == "Upsample2x":
        return before.resized(channels, _DOUBLE), []
    return before, []


def _conv_shape(layer: _Layer, before: _Plane) -> tuple[_Plane, list[tuple[int, ...]]]:
    """A convolution keeps the picture's size, divided by its strides: the reflection padding before
    it makes up exactly for what its kernel takes off (Keras's 'valid' convolution)."""
    config, channels = layer.config, before.channels
    filters, groups = config["filters"], config["groups"]
    if channels % groups or filters % groups:
        raise _Refusal(f"layer {layer.name}: {groups} groups do not divide {channels} in, {filters} out")
    sides = zip(config["kernel_size"], config["strides"], config["dilation_rate"], strict=True)
    for kernel, stride, dilation in sides:
        slack = 2 * before.border - dilation * (kernel - 1)
        if not 1 - stride <= slack <= 0:
            raise _Refusal(
                f"layer {layer.name}: a {kernel}-wide kernel does not fit the {before.border} pixels "
                "of reflection padding before it (the picture would change size)"
            )
    steps = (Fraction(1, config["strides"][0]), Fraction(1, config["strides"][1]))
    kernel_shape = (*config["kernel_size"], channels // groups, filters)
    bias_shape = [(filters,)] if config["use_bias"] else []
    return before.resized(filters, steps), [kernel_shape, *bias_shape]


# -- model.weights.h5: only plain arrays stored inside it

# what h5py raises for a damaged file (OverflowError: its file driver asked to seek past 2**63)
_HDF5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError, OverflowError)


class _ReadOnlyFile(io.RawIOBase):
    """A file over bytes already in memory, for h5py (which calls seek, tell and readinto): an
    ``io.BytesIO`` would first copy the bytearray, up to 512 MiB."""

    def __init__(self, data: bytearray) -> None:
        super().__init__()
        self._view, self._at = memoryview(data).toreadonly(), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._at = base + offset
        return self._at

    def tell(self) -> int:
        return self._at

    def readinto(self, buffer: Any) -> int:
        chunk = self._view[self._at : self._at + len(buffer)]
        buffer[: len(chunk)] = chunk
        self._at += len(chunk)
        return len(chunk)


def _read_weights(
    data: bytearray, layers: list[_Layer], shapes: dict[str, list[tuple[int, ...]]]
) -> dict[str, list[np.ndarray]]:
    import h5py

    weights: dict[str, list[np.ndarray]] = {}
    try:
        with h5py.File(_ReadOnlyFile(data), "r") as h5:
            for layer, stored_as in zip(layers, _weight_groups(layers), strict=True):
                wanted = shapes[layer.name]
                weights[layer.name] = (
                    _layer_arrays(h5, ("layers", stored_as, "vars"), wanted) if wanted else []
                )
    except _HDF5_ERRORS as error:
        raise _Refusal(f"damaged model weights ({_shown(error, 200)})") from None
    return weights


def _layer_arrays(h5: Any, path: tuple[str, ...], shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """The arrays at ``path``/0, ``path``/1... reached through hard links only."""
    import h5py

    group = h5
    for depth in range(len(path)):
        group = _member(group, path[: depth + 1], h5py.Group)
    where = "/".join(path)
    if len(group) != len(shapes):
        raise _Refusal(f"{where} holds {len(group)} arrays, not the {len(shapes)} its layer needs")
    return [_array(_member(group, (*path, str(i)), h5py.Dataset), shape) for i, shape in enumerate(shapes)]


def _member(group: Any, path: tuple[str, ...], kind: type) -> Any:
    """``group``'s member ``path[-1]``, if it is a ``kind`` stored in this file (a hard link: soft
    and external links could lead anywhere, an external link even to another file)."""
    import h5py

    where = "/".join(path)
    link = group.get(path[-1], getlink=True)
    if link is None:
        raise _Refusal(f"damaged model weights (no {where})")
    if not isinstance(link, h5py.HardLink):
        raise _Refusal(f"model weights: {where} is a {type(link).__name__}, not stored in the file")
    member = group[path[-1]]
    if not isinstance(member, kind):
        raise _Refusal(f"damaged model weights ({where} is not a {kind.__name__})")
    return member


def _array(dataset: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The dataset's numbers, once its storage, type and shape are known to be what they should."""
    import h5py

    where = dataset.name
    layout = dataset.id.get_create_plist().get_layout()
    allowed = [getattr(h5py.h5d, name) for name in _HDF5_LAYOUTS]
    if dataset.is_virtual or dataset.external or layout not in allowed:
        raise _Refusal(f"model weights: {where} is stored outside the file (virtual or external)")
    if dataset.dtype.kind != "f" or dataset.dtype.itemsize not in _FLOAT_SIZES:
        raise _Refusal(f"model weights: {where} holds {dataset.dtype}, not float16, 32 or 64")
    if dataset.shape != shape:
        raise _Refusal(f"model weights: {where} is {dataset.shape}, but its layer needs {shape}")
    array = np.asarray(dataset[()], dtype=np.float32)
    if array.shape != shape or not np.isfinite(array).all():
        raise _Refusal(f"model weights: {where} holds numbers that are not finite")
    return array


def _weight_groups(layers: list[_Layer]) -> list[str]:
    """Where Keras 3 stores each layer's arrays: by class, not by layer name (``conv2d_3`` is the
    fourth Conv2D, whatever that layer is called), following keras.saving's own naming."""
    used: dict[str, int] = {}
    groups = []
    for layer in layers:
        stem = re.sub(r"\W+", "", layer.kind)
        stem = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", stem)
        stem = re.sub("([a-z])([A-Z])", r"\1_\2", stem).lower()
        count = used.get(stem, -1) + 1
        used[stem] = count
        groups.append(stem if count == 0 else f"{stem}_{count}")
    return groups


# -- building the ONNX graph ---------------------------------------------------------------------
#
# Two translations of the same layers. The portable one uses standard ONNX operators only. The
# NCHWc one is written in the blocked layout ONNX Runtime's CPU convolutions use inside (channels
# in blocks of 16 with AVX-512, 8 with AVX2: its com.microsoft.nchwc operators). From a portable
# graph ONNX Runtime itself converts each conv's output back to plain NCHW for the norm, ReLU and
# padding between two convs and converts it again for the next conv: profiled on the full network
# at 720p, those reorders and the separate norm, ReLU and add passes took a third of the time.
# Here the norm's statistics come from the blocked tensor, its scale and shift, a ReLU after it
# and a residual add run as one depthwise 1x1 conv, padding works on a 5-D view of the blocks, and
# only the picture's own 3 channels are ever reordered. Those operators are ONNX Runtime's own,
# not a published format, so that graph is built only where a small network translated both ways
# draws the same picture in this very runtime (:func:`nchwc_block`); elsewhere the portable runs.

_NCHWC = "com.microsoft.nchwc"
# A stride-1 conv with this few filters (the 3 of the last conv to RGB) fills a few lanes of each
# vector; it runs as a stride-4 conv whose outputs are each 4x4 block of the output's pixels as
# channels (3 filters become 48: measured on the full network's last 9x9 conv, 6x faster).
THIN_FILTERS = 8
THIN_BLOCK = 4


def _layer_sides(layers: list[_Layer]) -> dict[str, tuple[Fraction, Fraction]]:
    """Each layer's output height and width as fractions of the picture's."""
    sides: dict[str, tuple[Fraction, Fraction]] = {}
    for layer in layers:
        height, width = sides[layer.inputs[0]] if layer.inputs else (Fraction(1), Fraction(1))
        if layer.kind == "Conv2D":
            height, width = height / layer.config["strides"][0], width / layer.config["strides"][1]
        elif layer.kind in ("Upsample2x", "PixelShuffle2x"):
            height, width = height * 2, width * 2
        elif layer.kind == "PixelUnshuffle2x":
            height, width = height / 2, width / 2
        sides[layer.name] = (height, width)
    return sides


def working_bytes_per_pixel(layers: list[_Layer]) -> int:
    """What one pass holds in memory per input pixel at its peak, for a budget to size tiles by:
    the largest sum of the tensors one layer reads and writes (those of more than THIN_FILTERS
    channels counted in whole blocks of 16, as the NCHWc graph stores them), times the arena's
    slack, plus the picture in and out. Measured peaks at 720p and 1080p, whole and tiled (probe,
    then fixed): full network 817 to 827 bytes a pixel (this gives 868), light 75 to 77 (151)."""
    sides = _layer_sides(layers)
    channels = _layer_channels(layers)

    def size(name: str) -> float:
        stored = channels[name] if channels[name] <= THIN_FILTERS else -(-channels[name] // 16) * 16
        height, width = sides[name]
        return float(stored * height * width)

    peak = max(size(layer.name) + sum(size(name) for name in layer.inputs) for layer in layers)
    return math.ceil(4 * peak * _ARENA_SLACK) + _PICTURE_BYTES


def network_flops(layers: list[_Layer], height: int, width: int) -> int:
    """The floating-point operations of one pass over a ``height`` x ``width`` picture: two per
    multiply-add of every conv as Keras defines it (the NCHWc graph's zero taps not counted)."""
    sides = _layer_sides(layers)
    channels = _layer_channels(layers)
    total = 0
    for layer in layers:
        if layer.kind == "Conv2D":
            config = layer.config
            side_h, side_w = sides[layer.name]
            depth = channels[layer.inputs[0]] // config["groups"]
            taps = config["kernel_size"][0] * config["kernel_size"][1] * depth
            total += 2 * round(height * side_h) * round(width * side_w) * config["filters"] * taps
    return total


_ARENA_SLACK = 1.6  # the measured peaks over the largest layer's tensors: 1.52 on the full network
_PICTURE_BYTES = 48  # the NHWC picture, its NCHW copy, the output and its cropped copy (float32 RGB)


def _layer_channels(layers: list[_Layer]) -> dict[str, int]:
    channels: dict[str, int] = {}
    for layer in layers:
        before = channels[layer.inputs[0]] if layer.inputs else 3
        if layer.kind == "Conv2D":
            before = layer.config["filters"]
        elif layer.kind == "PixelUnshuffle2x":
            before *= 4
        elif layer.kind == "PixelShuffle2x":
            before //= 4
        channels[layer.name] = before
    return channels


def _thin_block(layer: _Layer, side: tuple[Fraction, Fraction]) -> int:
    """The block a thin conv's output pixels are computed in as channels (1: computed as it is).
    The output's sides must divide by it for every picture (they are multiples of 4)."""
    config = layer.config
    plain = config["strides"] == config["dilation_rate"] == (1, 1) and config["groups"] == 1
    if not plain or config["filters"] > THIN_FILTERS:
        return 1
    block = THIN_BLOCK
    while block > 1 and any((length * PICTURE_MULTIPLE / block).denominator != 1 for length in side):
        block //= 2
    return block


def _blocked_kernel(kernel: np.ndarray, block: int) -> np.ndarray:
    """A stride-1 OIHW kernel as the stride-``block`` kernel whose output channel
    ``(dy * block + dx) * filters + f`` is filter ``f`` at pixel ``(dy, dx)`` of each block of the
    output (DepthToSpace's DCR order); the extra taps are zeros, so the sums are the same."""
    filters, depth, height, width = kernel.shape
    out = np.zeros((block * block * filters, depth, height + block - 1, width + block - 1), np.float32)
    for dy in range(block):
        for dx in range(block):
            first = (dy * block + dx) * filters
            out[first : first + filters, :, dy : dy + height, dx : dx + width] = kernel
    return out


class _GraphBuilder:
    """Translates a :class:`StyleNetwork` into standard ONNX nodes, one Keras layer at a time."""

    def __init__(self, network: StyleNetwork, variant: str) -> None:
        from onnx import TensorProto, helper

        if variant not in ("whole", "probe", "fixed"):
            raise ValueError(f"unknown graph variant {variant!r}")
        self.network, self.variant, self.helper = network, variant, helper
        self.float = TensorProto.FLOAT
        self.nodes: list[Any] = []
        self.constants: list[Any] = []
        self.extra_inputs: list[Any] = []
        self.extra_outputs: list[Any] = []
        self.norm_index = 0
        self.counter = 0
        self.gain: dict[str, float] = {}  # tensor -> a scale not yet applied to it (folded later)
        self.folded: dict[str, float] = {}  # layer -> a rescaling folded into its weights
        self.sides = _layer_sides(network.layers)
        self.layer_inputs = {layer.name: layer.inputs for layer in network.layers}

    def build(self) -> bytes:
        self._fold_output_rescaling()
        tensors = {}
        for layer in self.network.layers:
            if layer.kind == "InputLayer":
                tensors[layer.name] = self.input_picture()
                continue
            sources = [tensors[name] for name in layer.inputs]
            if layer.kind not in (*_SCALE_FOLLOWS, "Rescaling", "Conv2D"):  # these take a pending scale
                sources = [self.materialise(source) for source in sources]
            tensors[layer.name] = self.layer(layer, sources)
            if layer.kind in _SCALE_FOLLOWS:
                self.gain[tensors[layer.name]] = self.gain.get(sources[0], 1.0)
        self.output_picture(self.materialise(tensors[self.network.output]))
        return self.serialise()

    def input_picture(self) -> str:
        return self.node("Transpose", ["picture"], perm=[0, 3, 1, 2])

    def output_picture(self, last: str) -> None:
        self.nodes.append(self.helper.make_node("Transpose", [last], ["styled"], perm=[0, 2, 3, 1]))

    def serialise(self, domains: tuple[str, ...] = ()) -> bytes:
        helper = self.helper
        picture = helper.make_tensor_value_info("picture", self.float, ["n", "h", "w", 3])
        styled = helper.make_tensor_value_info("styled", self.float, ["n", "h", "w", 3])
        graph = helper.make_graph(
            self.nodes,
            "rotoscope_style_network",
            [picture, *self.extra_inputs],
            [styled, *self.extra_outputs],
            self.constants,
        )
        opsets = [helper.make_opsetid("", OPSET), *(helper.make_opsetid(domain, 1) for domain in domains)]
        model = helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION)
        return model.SerializeToString()

    def layer(self, layer: _Layer, sources: list[str]) -> str:
        translate = getattr(self, f"_{layer.kind}")
        return translate(layer, sources[0] if len(sources) == 1 else sources)

    # one method per Keras layer type, named after it

    def _Rescaling(self, layer: _Layer, x: str) -> str:
        scale, offset = layer.config["scale"], layer.config["offset"]
        if layer.name in self.folded:  # already inside the conv before it
            return x
        if offset == 0:  # carried forward into the next conv's kernel: no full-resolution pass
            out = self.node("Identity", [x])
            self.gain[out] = self.gain.get(x, 1.0) * scale
            return out
        scaled = self.node("Mul", [self.materialise(x), self.constant(np.float32(scale))])
        return self.node("Add", [scaled, self.constant(np.float32(offset))])

    def _Conv2D(self, layer: _Layer, x: str) -> str:
        kernel, bias, strides, block = self.conv_arrays(layer, x)
        inputs = [x, self.constant(kernel), self.constant(bias)]
        dilations = list(layer.config["dilation_rate"])
        out = self.node("Conv", inputs, strides=strides, dilations=dilations, group=layer.config["groups"])
        if block > 1:
            out = self.node("DepthToSpace", [out], blocksize=block, mode="DCR")
        return self.activation(out, layer.config["activation"])

    def conv_arrays(self, layer: _Layer, x: str) -> tuple[np.ndarray, np.ndarray, list[int], int]:
        """The conv's OIHW kernel and bias with the scales folded in, its strides, its thin block."""
        kernel, *bias = self.network.weights[layer.name]
        after = self.folded.get(layer.name, 1.0)  # a rescaling of this conv's output
        kernel = np.transpose(kernel * np.float32(self.gain.get(x, 1.0) * after), (3, 2, 0, 1))
        shift = bias[0] * np.float32(after) if bias else np.zeros(kernel.shape[0], np.float32)
        block = _thin_block(layer, self.sides[layer.name])
        if block == 1:
            return kernel, shift, list(layer.config["strides"]), 1
        return _blocked_kernel(kernel, block), np.tile(shift, block * block), [block, block], block

    def _GroupNormalization(self, layer: _Layer, x: str) -> str:
        gamma, beta = self.network.weights[layer.name]
        index, self.norm_index = self.norm_index, self.norm_index + 1
        if self.variant == "fixed":
            scale, shift = self.declare_input(f"scale{index}"), self.declare_input(f"shift{index}")
            return self.node("Add", [self.node("Mul", [x, scale]), shift])
        if self.variant == "probe":
            mean = self.node("ReduceMean", [x], axes=[2, 3], keepdims=1)
            centred = self.node("Sub", [x, mean])
            squares = self.node("Mul", [centred, centred])
            variance = self.node("ReduceMean", [squares], axes=[2, 3], keepdims=1)
            self.declare_output(mean, f"mean{index}")
            self.declare_output(variance, f"var{index}")
        return self.node(
            "InstanceNormalization",
            [x, self.constant(gamma), self.constant(beta)],
            epsilon=layer.config["epsilon"],
        )

    def _ReLU(self, layer: _Layer, x: str) -> str:
        return self.node("Relu", [x])

    def _Activation(self, layer: _Layer, x: str) -> str:
        return self.activation(x, layer.config["activation"])

    def _Add(self, layer: _Layer, xs: list[str]) -> str:
        return self.node("Sum", list(xs))

    def _Upsample2x(self, layer: _Layer, x: str) -> str:
        scales = self.constant(np.array([1, 1, 2, 2], dtype=np.float32))
        return self.node(
            "Resize", [x, "", scales], mode="linear", coordinate_transformation_mode="half_pixel"
        )

    def _ReflectionPadding2D(self, layer: _Layer, x: str) -> str:
        """ONNX Runtime 1.32's reflect Pad: 2 to 3 times faster than slices and concats (measured on
        32 to 128 channels, 1 to 4 pixels of padding)."""
        padding = layer.config["padding"]
        pads = self.constant(np.array([0, 0, padding, padding] * 2, dtype=np.int64))
        return self.node("Pad", [x, pads], mode="reflect")

    def _PixelUnshuffle2x(self, layer: _Layer, x: str) -> str:
        return self.node("SpaceToDepth", [x], blocksize=2)

    def _PixelShuffle2x(self, layer: _Layer, x: str) -> str:
        return self.node("DepthToSpace", [x], blocksize=2, mode="DCR")  # tf.nn.depth_to_space's order

    # graph plumbing

    def _fold_output_rescaling(self) -> None:
        """A rescaling right after the last conv becomes part of that conv's weights."""
        by_name = {layer.name: layer for layer in self.network.layers}
        last = by_name[self.network.output]
        if last.kind != "Rescaling" or last.config["offset"] != 0 or len(last.inputs) != 1:
            return
        conv = by_name[last.inputs[0]]
        users = [layer for layer in self.network.layers if conv.name in layer.inputs]
        if conv.kind == "Conv2D" and conv.config["activation"] == "linear" and users == [last]:
            self.folded = {conv.name: last.config["scale"], last.name: 1.0}

    def materialise(self, x: str) -> str:
        """``x`` with any scale still carried forward applied (before a non-linear layer)."""
        gain = self.gain.get(x, 1.0)
        return x if gain == 1.0 else self.node("Mul", [x, self.constant(np.float32(gain))])

    def activation(self, x: str, name: str) -> str:
        """``x`` through a named activation (read_network allows only "linear" and _ACTIVATIONS)."""
        return x if name == "linear" else self.node(_ACTIVATIONS[name], [x])

    def slice(self, x: str, axis: int, start: int, end: int) -> str:
        bounds = [self.constant(np.array([value], dtype=np.int64)) for value in (start, end, axis)]
        return self.node("Slice", [x, *bounds])

    def node(self, op: str, inputs: list[str], domain: str = "", **attributes: Any) -> str:
        out = self.fresh(op)
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, domain=domain, **attributes))
        return out

    def constant(self, value: np.ndarray | np.generic) -> str:
        from onnx import numpy_helper

        name = self.fresh("const")
        self.constants.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def shape(self, *values: int) -> str:
        return self.constant(np.array(values, dtype=np.int64))

    def declare_input(self, name: str) -> str:
        self.extra_inputs.append(self.helper.make_tensor_value_info(name, self.float, [1, None, 1, 1]))
        return name

    def declare_output(self, tensor: str, name: str) -> None:
        self.nodes.append(self.helper.make_node("Identity", [tensor], [name]))
        self.extra_outputs.append(self.helper.make_tensor_value_info(name, self.float, [1, None, 1, 1]))

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_{self.counter}"


@dataclass(frozen=True)
class _Pending:
    """An instance norm not applied yet: ``source * scale + shift`` per channel, which the layer
    after it runs as one depthwise 1x1 conv with its ReLU or its residual add."""

    source: str
    scale: str  # (blocked channels, 1, 1, 1): the depthwise conv's kernel
    shift: str  # (blocked channels,): its bias


class _NchwcGraphBuilder(_GraphBuilder):
    """The same translation in ONNX Runtime's NCHWc layout (see the section's comment).

    Every tensor is either plain NCHW or blocked: stored as (N, C/b, H, W, b) with C rounded up
    to the block b, the extra channels zero (or harmless: each conv ignores them, each norm
    zeroes them, the output drops them)."""

    def __init__(self, network: StyleNetwork, variant: str, block: int) -> None:
        super().__init__(network, variant)
        self.block = block
        self.channels: dict[str, int] = {}  # tensor -> channels, for every tensor built
        self.blocked: set[str] = set()
        self.pending: dict[str, _Pending] = {}

    def build(self) -> bytes:
        self._fold_output_rescaling()
        tensors = {}
        for layer in self.network.layers:
            if layer.kind == "InputLayer":
                tensors[layer.name] = self.like(self.input_picture(), channels=3, blocked=False)
                continue
            sources = [tensors[name] for name in layer.inputs]
            if layer.kind not in (*_SCALE_FOLLOWS, "Rescaling", "Conv2D"):
                sources = [self.materialise(source) for source in sources]
            if layer.kind not in ("ReLU", "Activation", "Add"):  # these apply a pending norm themselves
                sources = [self.apply(source) for source in sources]
            tensors[layer.name] = self.layer(layer, sources)
            if layer.kind in _SCALE_FOLLOWS:
                self.gain[tensors[layer.name]] = self.gain.get(sources[0], 1.0)
        last = self.apply(self.materialise(tensors[self.network.output]))
        if last in self.blocked:  # straight back to NHWC, the picture's own channels only
            reorder = self.helper.make_node(
                "ReorderOutput", [last], ["styled"], domain=_NCHWC, channels=3, channels_last=1
            )
            self.nodes.append(reorder)
        else:
            self.output_picture(last)
        return self.serialise((_NCHWC,))

    # layouts

    def like(self, out: str, source: str | None = None, channels: int | None = None, blocked=None) -> str:
        """Record ``out``'s channels and layout: ``source``'s unless given."""
        self.channels[out] = self.channels[source] if channels is None else channels
        if (source in self.blocked) if blocked is None else blocked:
            self.blocked.add(out)
        return out

    def padded(self, channels: int) -> int:
        return -(-channels // self.block) * self.block

    def to_plain(self, x: str) -> str:
        if x not in self.blocked:
            return x
        out = self.node("ReorderOutput", [x], domain=_NCHWC, channels=self.channels[x])
        return self.like(out, x, blocked=False)

    def to_blocked(self, x: str) -> str:
        return (
            x
            if x in self.blocked
            else self.like(self.node("ReorderInput", [x], domain=_NCHWC), x, blocked=True)
        )

    def blocks(self, x: str, *inner: int) -> str:
        """A view of blocked ``x`` as (N, C/b, ..., b): ``inner`` is what goes between (0 keeps a side)."""
        return self.node(
            "Reshape", [x, self.shape(0, self.padded(self.channels[x]) // self.block, *inner, self.block)]
        )

    def materialise(self, x: str) -> str:
        gain = self.gain.get(x, 1.0)
        return x if gain == 1.0 else self.like(self.node("Mul", [x, self.constant(np.float32(gain))]), x)

    def apply(self, x: str, activation: str = "linear", residual: str | None = None) -> str:
        """A pending norm applied, with an activation and a residual added before it (else ``x``)."""
        if x not in self.pending:
            return x
        norm = self.pending[x]
        inputs = [norm.source, norm.scale, norm.shift, *([residual] if residual else [])]
        attributes = {} if activation == "linear" else {"activation": _ACTIVATIONS[activation]}
        depthwise = self.padded(self.channels[x])
        return self.like(self.node("Conv", inputs, domain=_NCHWC, group=depthwise, **attributes), x)

    # layers

    def _Rescaling(self, layer: _Layer, x: str) -> str:
        out = super()._Rescaling(layer, x)
        return out if out == x else self.like(out, x)

    def _Conv2D(self, layer: _Layer, x: str) -> str:
        kernel, bias, strides, block = self.conv_arrays(layer, x)
        config = layer.config
        if config["groups"] != 1:  # network.py never groups: the standard conv, on plain NCHW
            x = self.to_plain(self.materialise(x))
            out = super()._Conv2D(layer, x)
            return self.like(out, channels=config["filters"], blocked=False)
        filters, depth = kernel.shape[:2]
        out_blocks = self.padded(filters) // self.block
        reshaped = np.zeros((self.padded(filters), *kernel.shape[1:]), np.float32)
        reshaped[:filters] = kernel
        if depth < self.block and x not in self.blocked:  # reads the NCHW picture as it is
            order = reshaped.reshape(out_blocks, self.block, *kernel.shape[1:]).transpose(0, 2, 3, 4, 1)
        else:
            x = self.to_blocked(x)
            wide = np.zeros((reshaped.shape[0], self.padded(depth), *kernel.shape[2:]), np.float32)
            wide[:, :depth] = reshaped
            shape = (out_blocks, self.block, wide.shape[1] // self.block, self.block, *kernel.shape[2:])
            order = wide.reshape(shape).transpose(0, 2, 4, 5, 3, 1)
            reshaped = wide
        weights = self.constant(np.ascontiguousarray(order).reshape(reshaped.shape))
        shift = np.zeros(self.padded(filters), np.float32)
        shift[:filters] = bias
        attributes = {"strides": strides, "dilations": list(config["dilation_rate"])}
        if config["activation"] != "linear":
            attributes["activation"] = _ACTIVATIONS[config["activation"]]
        out = self.node("Conv", [x, weights, self.constant(shift)], domain=_NCHWC, **attributes)
        out = self.like(out, channels=filters, blocked=True)
        if block > 1:
            plain = self.to_plain(out)
            out = self.node("DepthToSpace", [plain], blocksize=block, mode="DCR")
            out = self.like(out, channels=filters // (block * block), blocked=False)
        return out

    def _GroupNormalization(self, layer: _Layer, x: str) -> str:
        gamma, beta = self.network.weights[layer.name]
        index, self.norm_index = self.norm_index, self.norm_index + 1
        x = self.to_blocked(x)
        channels, wide = self.channels[x], self.padded(self.channels[x])
        out = self.like(self.fresh("norm"), x)
        if self.variant == "fixed":
            scale, shift = (
                self.to_width(self.declare_input(f"{kind}{index}"), channels, wide)
                for kind in ("scale", "shift")
            )
            self.pending[out] = _Pending(
                x,
                self.node("Reshape", [scale, self.shape(wide, 1, 1, 1)]),
                self.node("Reshape", [shift, self.shape(wide)]),
            )
            return out
        mean = self.node("GlobalAveragePool", [x], domain=_NCHWC)  # (1, wide, 1, 1)
        ones = self.constant(np.ones((wide, 1, 1, 1), np.float32))
        negated = self.node("Reshape", [self.node("Neg", [mean]), self.shape(wide)])
        centred = self.like(self.node("Conv", [x, ones, negated], domain=_NCHWC, group=wide), x)
        # the squares stay blocked, so the blocked pool averages them (ReduceMean over the
        # (N, C/b, H*W, b) view took 4 times as long at 720p, ReduceSumSquare 40 times)
        squares = self.like(self.node("Mul", [centred, centred]), centred)
        variance = self.node("GlobalAveragePool", [squares], domain=_NCHWC)
        if self.variant == "probe":
            self.declare_output(self.slice(mean, 1, 0, channels), f"mean{index}")
            self.declare_output(self.slice(variance, 1, 0, channels), f"var{index}")
        spread = self.node(
            "Sqrt", [self.node("Add", [variance, self.constant(np.float32(layer.config["epsilon"]))])]
        )
        scale = self.node("Div", [self.constant(self.widened(gamma, wide).reshape(1, wide, 1, 1)), spread])
        self.pending[out] = _Pending(
            centred,
            self.node("Reshape", [scale, self.shape(wide, 1, 1, 1)]),
            self.constant(self.widened(beta, wide)),
        )
        return out

    def to_width(self, vector: str, channels: int, wide: int) -> str:
        """A (1, channels, 1, 1) input padded with zeros to the blocked width."""
        if channels == wide:
            return vector
        return self.node("Pad", [vector, self.shape(0, 0, 0, 0, 0, wide - channels, 0, 0)])

    @staticmethod
    def widened(values: np.ndarray, wide: int) -> np.ndarray:
        out = np.zeros(wide, np.float32)
        out[: values.shape[0]] = values
        return out

    def _ReLU(self, layer: _Layer, x: str) -> str:
        return self.apply(x, "relu") if x in self.pending else self.like(self.node("Relu", [x]), x)

    def _Activation(self, layer: _Layer, x: str) -> str:
        name = layer.config["activation"]
        if x in self.pending:
            return self.apply(x, name)
        return self.like(self.activation(x, name), x) if name != "linear" else x

    def _Add(self, layer: _Layer, xs: list[str]) -> str:
        waiting = [x for x in xs if x in self.pending]
        if len(xs) == 2 and waiting:  # the norm's conv adds the other input as it writes
            other = xs[1] if xs[0] == waiting[0] else xs[0]
            return self.apply(waiting[0], residual=self.to_blocked(self.apply(other)))
        xs = [self.apply(x) for x in xs]
        if any(x in self.blocked for x in xs):
            xs = [self.to_blocked(x) for x in xs]
        return self.like(self.node("Sum", xs), xs[0])

    def _Upsample2x(self, layer: _Layer, x: str) -> str:
        if x not in self.blocked:
            return self.like(super()._Upsample2x(layer, x), x)
        out = self.node(
            "Upsample",
            [x],
            domain=_NCHWC,
            scales=[1, 1, 2, 2],
            mode="linear",
            coordinate_transformation_mode="half_pixel",
        )
        return self.like(out, x)

    def _ReflectionPadding2D(self, layer: _Layer, x: str) -> str:
        if x not in self.blocked:
            return self.like(super()._ReflectionPadding2D(layer, x), x)
        padding = layer.config["padding"]
        pads = self.shape(0, 0, padding, padding, 0, 0, 0, padding, padding, 0)
        padded = self.node("Pad", [self.blocks(x, 0, 0), pads], mode="reflect")
        back = self.node("Reshape", [padded, self.shape(0, self.padded(self.channels[x]), 0, 0)])
        return self.like(back, x)

    def _PixelUnshuffle2x(self, layer: _Layer, x: str) -> str:
        x = self.to_plain(x)
        return self.like(super()._PixelUnshuffle2x(layer, x), x, channels=self.channels[x] * 4)

    def _PixelShuffle2x(self, layer: _Layer, x: str) -> str:
        x = self.to_plain(x)
        return self.like(super()._PixelShuffle2x(layer, x), x, channels=self.channels[x] // 4)


# -- which graph this runtime runs


@functools.cache
def nchwc_block() -> int:
    """The channel block of this runtime's NCHWc layout, or 0 where the portable graph runs: the
    one (16, then 8) whose translation of a small network draws, whole and tiled, what the
    portable translation draws. Its channels are multiples of 16, so a wrong guess reads no
    array past its end; it costs about 0.1 s, once per process."""
    network = _check_network()
    picture = np.random.default_rng(0).uniform(0, 255, (1, 16, 24, 3)).astype(np.float32)
    portable = StyleNetwork(network.path, network.layers, network.weights, network.output, block=0)
    expected = portable.run(picture)
    stats = portable.norm_statistics(picture)
    for block in (16, 8):
        candidate = StyleNetwork(network.path, network.layers, network.weights, network.output, block=block)
        try:
            drawn = [candidate.run(picture), candidate.with_statistics(stats)(picture)]
            probed = candidate.norm_statistics(picture)
        except Exception:  # no such operators in this runtime, or not for this block
            continue
        same_stats = all(
            np.allclose(mine, theirs, rtol=1e-3, atol=1e-4)
            for pair_mine, pair_theirs in zip(probed, stats, strict=True)
            for mine, theirs in zip(pair_mine, pair_theirs, strict=True)
        )
        if same_stats and all(np.allclose(out, expected, rtol=1e-3, atol=0.05) for out in drawn):
            return block
    return 0


def _check_network() -> StyleNetwork:
    """A small network with every path the NCHWc translation takes: a 9x9 conv from the NCHW
    picture, norms, ReLUs, a stride-2 conv, a residual add, bilinear upsampling, a thin last conv."""
    rng = np.random.default_rng(1)
    layers: list[_Layer] = []
    weights: dict[str, list[np.ndarray]] = {}
    channels = {"picture": 3}

    def add(kind: str, inputs: tuple[str, ...], config: dict[str, Any], arrays: list[np.ndarray] = ()) -> str:
        name = f"{kind.lower()}_{len(layers)}"
        layers.append(_Layer(name, kind, config, inputs))
        weights[name] = list(arrays)
        if kind == "Conv2D":
            channels[name] = config["filters"]
        else:
            channels[name] = channels[inputs[0]] if inputs else 3
        return name

    def conv(x: str, filters: int, size: int, stride: int = 1, norm: bool = True, relu: bool = True) -> str:
        x = add("ReflectionPadding2D", (x,), {"padding": size // 2})
        fan_in = size * size * channels[x]
        kernel = rng.normal(0, 1 / math.sqrt(fan_in), (size, size, channels[x], filters)).astype(np.float32)
        config = {
            "filters": filters,
            "kernel_size": (size, size),
            "strides": (stride, stride),
            "dilation_rate": (1, 1),
            "groups": 1,
            "activation": "linear",
            "use_bias": True,
        }
        x = add("Conv2D", (x,), config, [kernel, rng.normal(0, 0.1, filters).astype(np.float32)])
        if norm:
            norm_arrays = [
                rng.uniform(0.5, 1.5, filters).astype(np.float32),
                rng.normal(0, 0.2, filters).astype(np.float32),
            ]
            x = add(_NORM, (x,), {"groups": -1, "epsilon": 1e-5}, norm_arrays)
        return add("ReLU", (x,), {}) if relu else x

    x = add("InputLayer", (), {})
    x = add("Rescaling", (x,), {"scale": 1 / 255, "offset": 0.0})
    x = conv(x, 16, 9)
    x = conv(x, 32, 3, stride=2)
    x = add("Add", (x, conv(x, 32, 3, relu=False)), {})
    x = conv(add("Upsample2x", (x,), {}), 16, 3)
    x = conv(x, 3, 9, norm=False, relu=False)
    x = add("Rescaling", (x,), {"scale": 255.0, "offset": 0.0})
    return StyleNetwork(Path("<runtime check>"), layers, weights, x, block=0)
