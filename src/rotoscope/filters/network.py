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
``head="refine"`` (the light preset's) adds one full-resolution 3x3 conv from RGB to RGB after the
shuffle: the shuffle alone leaves 2x2 blocks and, in short trainings, follows its input less
(measured: a 300-step filter painted an upside-down photo almost as near the photo as the photo
itself; an identity-initialised refining conv stayed near that). It costs about 15% of the
light net's time.

``decoder="conv-upsample"`` (the light preset's) runs the first decoder conv at quarter
resolution, before the upsampling instead of after it: a quarter of that conv's work and of its
padding (profiled at 720p on the light net: the half-resolution conv and its padding were a fifth
of the whole pass).

A model file is a Keras 3 ``.keras`` archive. Filters are applied without Keras: see
:mod:`rotoscope.filters.inference`, which reads the archive as data and understands exactly the
layer types this module builds.
"""

from __future__ import annotations

import numpy as np

from rotoscope.filters.backend import keras, tf

layers = keras.layers

STEMS = ("conv", "unshuffle")
HEADS = ("conv", "shuffle", "refine")
DECODERS = ("upsample-conv", "conv-upsample")


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
    decoder: str = "upsample-conv",
) -> keras.Model:
    """RGB 0-255 in, RGB 0-255 out (unclipped), any height and width that are multiples of 4."""
    if stem not in STEMS or head not in HEADS or decoder not in DECODERS:
        raise ValueError(
            f"stem must be one of {STEMS}, head one of {HEADS} and decoder one of {DECODERS},"
            f" not {stem!r}, {head!r}, {decoder!r}"
        )
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
    late = decoder == "conv-upsample"
    x = Upsample2x()(_conv(x, c2, 3)) if late else _conv(Upsample2x()(x), c2, 3)
    if head == "conv":
        x = _conv(Upsample2x()(x), c1, 3)
        x = _conv(x, 3, outer_kernel, normalise=False, relu=False)
    else:
        to_pixels = layers.Conv2D(12, 3, padding="valid")
        x = PixelShuffle2x()(to_pixels(ReflectionPadding2D(1)(x)))
        _start_as_nearest_upsampling(to_pixels)
        if head == "refine":  # one full-resolution 3x3 conv smooths the 2x2 blocks a shuffle leaves
            x = _conv(x, 3, 3, normalise=False, relu=False)  # randomly initialised, like conv's last
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
