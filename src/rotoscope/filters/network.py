"""The trained filter's network: a feed-forward style transformer (Johnson et al. 2016).

Layout: reflection-padded 9x9 conv, two stride-2 convs, residual blocks, two upsample + conv
stages (bilinear upsampling instead of transposed convs, which leave checkerboards) and a 9x9
conv to RGB. Instance normalisation (Ulyanov et al.) after every conv but the last. ``width``
scales every channel count (1.0 is the paper's 32/64/128).

``stem="unshuffle"`` (the light preset's, with 3x3 outer kernels) replaces the first
full-resolution conv and the stride-2 conv after it with a lossless 2x2 pixel unshuffle (Shi et
al. 2016) and a conv at half resolution. On a CPU the full-resolution convs with 3 to 8 channels
cost more than the whole rest of a thin net (profiled per layer). ``head="shuffle"`` does the
same on the way out: a half-resolution conv to 12 channels and a pixel shuffle to full-resolution
RGB, initialised as nearest-neighbour upsampling (ICNR) so it does not start as a checkerboard.

A model file is a Keras 3 ``.keras`` archive. Loading reads its config first and refuses anything
outside the layer types this module builds (so no Lambda layers, no custom code from the file),
then loads with Keras's ``safe_mode``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from rotoscope.errors import RotoscopeError
from rotoscope.filters.backend import keras, tf

layers = keras.layers

_ALLOWED_LAYERS = {
    "InputLayer",
    "Rescaling",
    "Conv2D",
    "GroupNormalization",
    "ReLU",
    "Activation",
    "Add",
    "Upsample2x",
    "ReflectionPadding2D",
    "PixelUnshuffle2x",
    "PixelShuffle2x",
}

STEMS = ("conv", "unshuffle")
HEADS = ("conv", "shuffle")


@keras.saving.register_keras_serializable(package="rotoscope")
class ReflectionPadding2D(layers.Layer):
    """Pads height and width by mirroring, so convolutions see no dark border."""

    def __init__(self, padding: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, inputs):
        p = self.padding
        return keras.ops.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        grow = 2 * self.padding
        return (
            batch,
            None if height is None else height + grow,
            None if width is None else width + grow,
            channels,
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "padding": self.padding}


@keras.saving.register_keras_serializable(package="rotoscope")
class Upsample2x(layers.Layer):
    """Bilinear 2x upsampling for any input size (Keras's UpSampling2D needs static shapes for it)."""

    def call(self, inputs):
        shape = keras.ops.shape(inputs)
        return tf.image.resize(inputs, (shape[1] * 2, shape[2] * 2), method="bilinear")

    def compute_output_shape(self, input_shape):
        return _rescaled_shape(input_shape, 2, 1)


@keras.saving.register_keras_serializable(package="rotoscope")
class PixelUnshuffle2x(layers.Layer):
    """Each 2x2 block of pixels becomes one pixel with 4x the channels (nothing is lost)."""

    def call(self, inputs):
        return tf.nn.space_to_depth(inputs, 2)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (
            batch,
            None if height is None else height // 2,
            None if width is None else width // 2,
            4 * channels,
        )


@keras.saving.register_keras_serializable(package="rotoscope")
class PixelShuffle2x(layers.Layer):
    """The inverse of :class:`PixelUnshuffle2x`: 4x the channels become a 2x2 block of pixels."""

    def call(self, inputs):
        return tf.nn.depth_to_space(inputs, 2)

    def compute_output_shape(self, input_shape):
        return _rescaled_shape(input_shape, 2, 0.25)


def _rescaled_shape(input_shape, side_factor: float, channel_factor: float) -> tuple:
    """A layer's output shape when it scales height and width (unknown stays unknown) and channels."""
    batch, height, width, depth = input_shape
    side = lambda length: None if length is None else int(length * side_factor)  # noqa: E731
    return (batch, side(height), side(width), int(depth * channel_factor))


def channels(width: float) -> tuple[int, int, int]:
    return tuple(max(4, round(base * width)) for base in (32, 64, 128))  # type: ignore[return-value]


def build_transformer(
    width: float = 1.0,
    residual_blocks: int = 5,
    outer_kernel: int = 9,
    stem: str = "conv",
    head: str = "conv",
) -> keras.Model:
    """RGB 0-255 in, RGB 0-255 out (unclipped), any height and width that are multiples of 4."""
    if stem not in STEMS or head not in HEADS:
        raise ValueError(f"stem must be one of {STEMS} and head one of {HEADS}, not {stem!r}, {head!r}")
    c1, c2, c3 = channels(width)
    picture = keras.Input(shape=(None, None, 3), name="picture")
    x = layers.Rescaling(1 / 255.0)(picture)
    if stem == "conv":
        x = _conv(x, c1, outer_kernel)
        x = _conv(x, c2, 3, stride=2)
    else:
        x = _conv(PixelUnshuffle2x()(x), c2, 3)
    x = _conv(x, c3, 3, stride=2)
    for _ in range(residual_blocks):
        x = _residual(x, c3)
    x = _conv(Upsample2x()(x), c2, 3)
    if head == "conv":
        x = _conv(Upsample2x()(x), c1, 3)
        x = _conv(x, 3, outer_kernel, normalise=False, relu=False)
    else:
        to_pixels = layers.Conv2D(12, 3, padding="valid")
        x = PixelShuffle2x()(to_pixels(ReflectionPadding2D(1)(x)))
        _start_as_nearest_upsampling(to_pixels)
    styled = layers.Rescaling(255.0, name="styled")(x)
    return keras.Model(picture, styled, name="transformer")


def _start_as_nearest_upsampling(conv) -> None:
    """ICNR initialisation (Aitken et al. 2017): the 4 sub-pixels of a shuffle start out equal,
    so the head begins as nearest-neighbour upsampling instead of a 2x2 checkerboard."""
    kernel = keras.ops.convert_to_numpy(conv.kernel)
    conv.kernel.assign(np.tile(kernel[..., : kernel.shape[-1] // 4], (1, 1, 1, 4)))


def _conv(x, filters: int, size: int, stride: int = 1, normalise: bool = True, relu: bool = True):
    x = ReflectionPadding2D(size // 2)(x)
    x = layers.Conv2D(filters, size, strides=stride, padding="valid")(x)
    if normalise:
        x = layers.GroupNormalization(groups=-1, epsilon=1e-5)(x)  # groups=-1: instance norm
    return layers.ReLU()(x) if relu else x


def _residual(x, filters: int):
    y = _conv(x, filters, 3)
    y = _conv(y, filters, 3, relu=False)
    return layers.Add()([x, y])


class FixedNorm(layers.Layer):
    """Instance normalisation with given statistics: every tile of a picture uses the picture's own.

    Used only at inference, in a clone of the trained network; never saved.
    """

    def __init__(self, mean, variance, gamma, beta, epsilon: float, **kwargs) -> None:
        super().__init__(**kwargs)
        scale = gamma / np.sqrt(variance + epsilon)
        self.scale = keras.ops.convert_to_tensor(scale.astype("float32"))
        self.shift = keras.ops.convert_to_tensor((beta - mean * scale).astype("float32"))

    def call(self, inputs):
        return inputs * self.scale + self.shift


def norm_statistics(model: keras.Model, picture: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each instance norm's per-channel mean and variance over ``picture`` (HxWx3, 0-255)."""
    norms = _norm_layers(model)
    probe = keras.Model(model.inputs[0], [layer.input for layer in norms])
    activations = probe(picture[None].astype("float32"))
    activations = activations if isinstance(activations, list | tuple) else [activations]
    stats = []
    for values in activations:
        values = np.asarray(values, dtype=np.float64)
        stats.append((values.mean(axis=(0, 1, 2)), values.var(axis=(0, 1, 2))))
    return stats


def with_fixed_statistics(model: keras.Model, stats: list[tuple[np.ndarray, np.ndarray]]) -> keras.Model:
    """The same network (shared weights) with each instance norm frozen to ``stats``."""
    fixed = {}
    for layer, (mean, variance) in zip(_norm_layers(model), stats, strict=True):
        gamma = np.asarray(layer.gamma, dtype=np.float64)
        beta = np.asarray(layer.beta, dtype=np.float64)
        fixed[id(layer)] = FixedNorm(mean, variance, gamma, beta, layer.epsilon)
    return keras.models.clone_model(model, clone_function=lambda layer: fixed.get(id(layer), layer))


def _norm_layers(model: keras.Model) -> list:
    return [layer for layer in model.layers if isinstance(layer, layers.GroupNormalization)]


def load_transformer(path: Path) -> keras.Model:
    """Load a model file safely, or raise one line naming the file and the problem."""
    config = _read_config(path)
    unknown = sorted(_layer_classes(config) - _ALLOWED_LAYERS)
    if unknown:
        raise RotoscopeError(
            path, f"refused: layer types {', '.join(unknown)} are not part of a rotoscope style network"
        )
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # Keras raises many types for a bad archive
        raise RotoscopeError(path, f"cannot load the model ({type(error).__name__}: {error})") from None
    _check_shapes(path, model)
    return model


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise RotoscopeError(path, "no such model file (run `dvc pull`, or `dvc repro` to make it)")
    if not zipfile.is_zipfile(path):
        raise RotoscopeError(path, "not a Keras .keras archive (pickles and other formats are refused)")
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (KeyError, json.JSONDecodeError, zipfile.BadZipFile) as error:
        raise RotoscopeError(path, f"damaged Keras archive ({error})") from None


def _layer_classes(config: dict) -> set[str]:
    """The class of every layer, nested models' layers included."""
    found: set[str] = set()
    pending = list(config.get("config", {}).get("layers", []))
    while pending:
        layer = pending.pop()
        inner = layer.get("config", {}) if isinstance(layer, dict) else {}
        if isinstance(inner, dict) and isinstance(inner.get("layers"), list):
            pending.extend(inner["layers"])
        else:
            found.add(str(layer.get("class_name") if isinstance(layer, dict) else layer))
    return {name.rsplit(">", 1)[-1] for name in found}


def _check_shapes(path: Path, model: keras.Model) -> None:
    inputs, outputs = model.inputs, model.outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise RotoscopeError(
            path, f"a style network has one input and one output, not {len(inputs)}/{len(outputs)}"
        )
    in_shape, out_shape = tuple(inputs[0].shape), tuple(outputs[0].shape)
    if len(in_shape) != 4 or in_shape[-1] != 3 or any(side is not None for side in in_shape[1:3]):
        raise RotoscopeError(path, f"input shape {in_shape} is not (batch, any height, any width, 3)")
    if len(out_shape) != 4 or out_shape[-1] != 3:
        raise RotoscopeError(path, f"output shape {out_shape} is not (batch, height, width, 3)")
