"""Trained filters at inference: the Keras model file read as data and run in ONNX Runtime.

Why not Keras: importing TensorFlow costs 3 to 5 seconds per process, more than stylizing the two
frames an incremental render changes, and its CPU kernels are slower on these thin networks than
ONNX Runtime's. Why this is safe: the ``.keras`` archive's ``config.json`` (the layer graph) and
``model.weights.h5`` (the arrays) are parsed as data and translated layer by layer into an ONNX
graph; only the layer types :mod:`rotoscope.filters.network` builds are understood, so nothing in
the file can run code. TensorFlow is only needed to train.

The graph keeps Keras's semantics: NHWC in and out, reflection padding, bilinear upsampling with
half-pixel centres (``tf.image.resize``), instance normalisation. For tiled pictures two variants
share the weights: a probe that also returns every norm's per-channel mean and variance, and a
network whose norms take those statistics as inputs, so every tile is lit like the whole picture.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rotoscope.errors import RotoscopeError

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
    _sessions: dict[str, Any] = field(default_factory=dict, repr=False)
    _graphs: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def norms(self) -> list[_Layer]:
        return [layer for layer in self.layers if layer.kind == _NORM]

    @property
    def first_conv_filters(self) -> int:
        return next(int(layer.config["filters"]) for layer in self.layers if layer.kind == "Conv2D")

    def run(self, batch: np.ndarray) -> np.ndarray:
        """NHWC float32 RGB 0-255 in (sides multiples of 4), the stylized batch out (unclipped)."""
        return self._session("whole").run(["styled"], {"picture": _float32(batch)})[0]

    def norm_statistics(self, batch: np.ndarray) -> NormStatistics:
        """Each instance norm's per-channel mean and variance over one picture."""
        names = [f"mean{i}" for i in range(len(self.norms))] + [f"var{i}" for i in range(len(self.norms))]
        values = self._session("probe").run(names, {"picture": _float32(batch)})
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
        return lambda batch: session.run(["styled"], {"picture": _float32(batch), **feeds})[0]

    def onnx_model(self, variant: str = "whole") -> bytes:
        """The serialised ONNX graph: ``whole``, ``probe`` (adds norm statistics) or ``fixed``."""
        if variant not in self._graphs:  # read_network builds "whole" once to check it; keep it
            self._graphs[variant] = _GraphBuilder(self, variant).build()
        return self._graphs[variant]

    def _session(self, variant: str):
        if variant not in self._sessions:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            # idle pool threads would otherwise spin for a while after each run, taking the
            # cores from the JPEG encoding and decoding that surround every frame
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._sessions[variant] = onnxruntime.InferenceSession(
                self.onnx_model(variant), options, providers=["CPUExecutionProvider"]
            )
        return self._sessions[variant]


def _float32(batch: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(batch, dtype=np.float32)


# -- reading the archive -------------------------------------------------------------------------


def read_network(path: Path) -> StyleNetwork:
    """The style network in a ``.keras`` file, or one line naming the file and what is wrong."""
    config, weights_file = _read_archive(path)
    if config.get("class_name") != "Functional":
        raise RotoscopeError(path, f"refused: a {config.get('class_name')!r} model is not a style network")
    layers = [_parse_layer(path, entry) for entry in config.get("config", {}).get("layers", [])]
    unknown = sorted({layer.kind for layer in layers} - _UNDERSTOOD)
    if unknown:
        raise RotoscopeError(
            path, f"refused: layer types {', '.join(unknown)} are not part of a rotoscope style network"
        )
    inputs = [layer for layer in layers if layer.kind == "InputLayer"]
    outputs = config["config"].get("output_layers") or []
    if outputs and isinstance(outputs[0], str):  # Keras writes one output as [name, node, index]
        outputs = [outputs]
    if len(inputs) != 1 or len(outputs) != 1:
        raise RotoscopeError(
            path, f"a style network has one input and one output, not {len(inputs)}/{len(outputs)}"
        )
    in_shape = tuple(inputs[0].config.get("batch_shape") or ())
    if len(in_shape) != 4 or in_shape[-1] != 3 or any(side is not None for side in in_shape[1:3]):
        raise RotoscopeError(path, f"input shape {in_shape} is not (batch, any height, any width, 3)")
    network = StyleNetwork(path, layers, _read_weights(path, weights_file, layers), str(outputs[0][0]))
    out_channels = _channels(network)[network.output]
    if out_channels != 3:
        raise RotoscopeError(path, f"output shape (batch, height, width, {out_channels}) is not RGB")
    network.onnx_model()  # refuses what the translation does not understand, before any work starts
    return network


def _read_archive(path: Path) -> tuple[dict[str, Any], bytes]:
    if not path.is_file():
        raise RotoscopeError(path, "no such model file (run `dvc pull`, or `dvc repro` to make it)")
    if not zipfile.is_zipfile(path):
        raise RotoscopeError(path, "not a Keras .keras archive (pickles and other formats are refused)")
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json")), archive.read("model.weights.h5")
    except (KeyError, json.JSONDecodeError, zipfile.BadZipFile) as error:
        raise RotoscopeError(path, f"damaged Keras archive ({error})") from None


def _parse_layer(path: Path, entry: dict[str, Any]) -> _Layer:
    if not isinstance(entry, dict) or "name" not in entry:
        raise RotoscopeError(path, "damaged Keras archive (a layer without a name)")
    inputs: list[str] = []
    for node in entry.get("inbound_nodes", []):
        inputs.extend(_tensor_sources(node.get("args", [])))
    kind = str(entry.get("class_name", "")).rsplit(">", 1)[-1]
    return _Layer(str(entry["name"]), kind, dict(entry.get("config") or {}), tuple(inputs))


def _tensor_sources(args: Any) -> Iterator[str]:
    """The layers whose outputs a node's arguments name (a tensor, or a list of them for Add)."""
    if isinstance(args, dict) and args.get("class_name") == "__keras_tensor__":
        yield str(args["config"]["keras_history"][0])
    elif isinstance(args, list | tuple):
        for item in args:
            yield from _tensor_sources(item)


def _read_weights(path: Path, data: bytes, layers: list[_Layer]) -> dict[str, list[np.ndarray]]:
    import h5py

    weights: dict[str, list[np.ndarray]] = {}
    try:
        with h5py.File(io.BytesIO(data), "r") as h5:
            for layer, stored_as in zip(layers, _weight_groups(layers), strict=True):
                group = h5.get(f"layers/{stored_as}/vars")
                count = 0 if group is None else len(group)
                weights[layer.name] = [np.asarray(group[str(i)], dtype=np.float32) for i in range(count)]
    except (OSError, KeyError, ValueError) as error:
        raise RotoscopeError(path, f"damaged model weights ({error})") from None
    return weights


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


def _channels(network: StyleNetwork) -> dict[str, int]:
    """Each layer's output channel count, checking every layer's weights against its inputs."""
    found: dict[str, int] = {}
    for layer in network.layers:
        before = found[layer.inputs[0]] if layer.inputs else 3
        weights = network.weights[layer.name]
        if layer.kind == "Conv2D":
            if not weights or weights[0].ndim != 4 or weights[0].shape[2] != before:
                raise RotoscopeError(network.path, f"layer {layer.name}: kernel does not fit its input")
            found[layer.name] = int(weights[0].shape[3])
        elif layer.kind == _NORM and [w.shape for w in weights] != [(before,), (before,)]:
            raise RotoscopeError(network.path, f"layer {layer.name}: norm weights do not fit its input")
        elif layer.kind == "PixelUnshuffle2x":
            found[layer.name] = before * 4
        elif layer.kind == "PixelShuffle2x":
            found[layer.name] = before // 4
        else:
            found[layer.name] = before
    return found


# -- building the ONNX graph ---------------------------------------------------------------------


class _GraphBuilder:
    """Translates a :class:`StyleNetwork` into ONNX nodes, one Keras layer at a time."""

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

    def build(self) -> bytes:
        helper = self.helper
        self._fold_output_rescaling()
        tensors = {}
        for layer in self.network.layers:
            if layer.kind == "InputLayer":
                tensors[layer.name] = self.node("Transpose", ["picture"], perm=[0, 3, 1, 2])
                continue
            sources = [tensors[name] for name in layer.inputs]
            if layer.kind not in (*_SCALE_FOLLOWS, "Rescaling", "Conv2D"):  # these take a pending scale
                sources = [self.materialise(source) for source in sources]
            tensors[layer.name] = self.layer(layer, sources)
            if layer.kind in _SCALE_FOLLOWS:
                self.gain[tensors[layer.name]] = self.gain.get(sources[0], 1.0)
        last = self.materialise(tensors[self.network.output])
        self.nodes.append(helper.make_node("Transpose", [last], ["styled"], perm=[0, 2, 3, 1]))
        picture = helper.make_tensor_value_info("picture", self.float, ["n", "h", "w", 3])
        styled = helper.make_tensor_value_info("styled", self.float, ["n", "h", "w", 3])
        graph = helper.make_graph(
            self.nodes,
            "rotoscope_style_network",
            [picture, *self.extra_inputs],
            [styled, *self.extra_outputs],
            self.constants,
        )
        opsets = [helper.make_opsetid("", OPSET)]
        model = helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION)
        return model.SerializeToString()

    def layer(self, layer: _Layer, sources: list[str]) -> str:
        translate = getattr(self, f"_{layer.kind}")
        return translate(layer, sources[0] if len(sources) == 1 else sources)

    # one method per Keras layer type, named after it

    def _Rescaling(self, layer: _Layer, x: str) -> str:
        scale, offset = float(layer.config.get("scale", 1.0)), float(layer.config.get("offset", 0.0))
        if layer.name in self.folded:  # already inside the conv before it
            return x
        if offset == 0:  # carried forward into the next conv's kernel: no full-resolution pass
            out = self.node("Identity", [x])
            self.gain[out] = self.gain.get(x, 1.0) * scale
            return out
        scaled = self.node("Mul", [self.materialise(x), self.constant(np.float32(scale))])
        return self.node("Add", [scaled, self.constant(np.float32(offset))])

    def _Conv2D(self, layer: _Layer, x: str) -> str:
        config = layer.config
        if config.get("padding", "valid") != "valid" or config.get("data_format", "channels_last") != (
            "channels_last"
        ):
            self.refuse(layer, "only 'valid' channels-last convolutions are part of a style network")
        kernel, *bias = self.network.weights[layer.name]
        after = self.folded.get(layer.name, 1.0)  # a rescaling of this conv's output
        kernel = kernel * np.float32(self.gain.get(x, 1.0) * after)
        inputs = [x, self.constant(np.transpose(kernel, (3, 2, 0, 1)))]
        if bias:
            inputs.append(self.constant(bias[0] * np.float32(after)))
        out = self.node(
            "Conv",
            inputs,
            strides=list(config.get("strides", [1, 1])),
            dilations=list(config.get("dilation_rate", [1, 1])),
            group=int(config.get("groups", 1)),
        )
        return self.activation(layer, out, config.get("activation", "linear"))

    def _GroupNormalization(self, layer: _Layer, x: str) -> str:
        gamma, beta = self.network.weights[layer.name]
        if layer.config.get("groups") not in (-1, gamma.shape[0]):
            self.refuse(layer, "only instance normalisation (one group per channel) is supported")
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
        epsilon = float(layer.config.get("epsilon", 1e-3))
        return self.node(
            "InstanceNormalization", [x, self.constant(gamma), self.constant(beta)], epsilon=epsilon
        )

    def _ReLU(self, layer: _Layer, x: str) -> str:
        config = layer.config
        if config.get("max_value") is not None or config.get("negative_slope") or config.get("threshold"):
            self.refuse(layer, "only a plain ReLU is supported")
        return self.node("Relu", [x])

    def _Activation(self, layer: _Layer, x: str) -> str:
        return self.activation(layer, x, layer.config.get("activation", "linear"))

    def _Add(self, layer: _Layer, xs: list[str]) -> str:
        return self.node("Sum", list(xs))

    def _Upsample2x(self, layer: _Layer, x: str) -> str:
        scales = self.constant(np.array([1, 1, 2, 2], dtype=np.float32))
        return self.node(
            "Resize", [x, "", scales], mode="linear", coordinate_transformation_mode="half_pixel"
        )

    def _ReflectionPadding2D(self, layer: _Layer, x: str) -> str:
        """Mirror ``padding`` rows then columns with slices and concats: ONNX Runtime's own
        reflect Pad is several times slower (profiled: 83 of 175 ms on a 720p light network)."""
        padding = int(layer.config.get("padding", 1))
        for axis in (2, 3):
            before = [self.slice(x, axis, i, i + 1) for i in range(padding, 0, -1)]
            after = [self.slice(x, axis, -1 - i, -i) for i in range(1, padding + 1)]
            x = self.node("Concat", [*before, x, *after], axis=axis)
        return x

    def _PixelUnshuffle2x(self, layer: _Layer, x: str) -> str:
        return self.node("SpaceToDepth", [x], blocksize=2)

    def _PixelShuffle2x(self, layer: _Layer, x: str) -> str:
        return self.node("DepthToSpace", [x], blocksize=2, mode="DCR")  # tf.nn.depth_to_space's order

    # graph plumbing

    def _fold_output_rescaling(self) -> None:
        """A rescaling right after the last conv becomes part of that conv's weights."""
        by_name = {layer.name: layer for layer in self.network.layers}
        last = by_name[self.network.output]
        if last.kind != "Rescaling" or float(last.config.get("offset", 0.0)) != 0 or len(last.inputs) != 1:
            return
        conv = by_name[last.inputs[0]]
        users = [layer for layer in self.network.layers if conv.name in layer.inputs]
        if conv.kind == "Conv2D" and conv.config.get("activation", "linear") == "linear" and users == [last]:
            self.folded = {conv.name: float(last.config.get("scale", 1.0)), last.name: 1.0}

    def materialise(self, x: str) -> str:
        """``x`` with any scale still carried forward applied (before a non-linear layer)."""
        gain = self.gain.get(x, 1.0)
        return x if gain == 1.0 else self.node("Mul", [x, self.constant(np.float32(gain))])

    def activation(self, layer: _Layer, x: str, name: str) -> str:
        if name == "linear":
            return x
        if name not in _ACTIVATIONS:
            self.refuse(layer, f"activation {name!r} is not supported")
        return self.node(_ACTIVATIONS[name], [x])

    def slice(self, x: str, axis: int, start: int, end: int) -> str:
        bounds = [self.constant(np.array([value], dtype=np.int64)) for value in (start, end, axis)]
        return self.node("Slice", [x, *bounds])

    def node(self, op: str, inputs: list[str], **attributes: Any) -> str:
        out = self.fresh(op)
        self.nodes.append(self.helper.make_node(op, inputs, [out], **attributes))
        return out

    def constant(self, value: np.ndarray | np.generic) -> str:
        from onnx import numpy_helper

        name = self.fresh("const")
        self.constants.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def declare_input(self, name: str) -> str:
        self.extra_inputs.append(self.helper.make_tensor_value_info(name, self.float, [1, None, 1, 1]))
        return name

    def declare_output(self, tensor: str, name: str) -> None:
        self.nodes.append(self.helper.make_node("Identity", [tensor], [name]))
        self.extra_outputs.append(self.helper.make_tensor_value_info(name, self.float, [1, None, 1, 1]))

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_{self.counter}"

    def refuse(self, layer: _Layer, problem: str) -> None:
        raise RotoscopeError(self.network.path, f"refused: layer {layer.name}: {problem}")
