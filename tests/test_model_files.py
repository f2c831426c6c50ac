"""Model files are untrusted input: hostile ``.keras`` archives and ``.npy`` embeddings are refused
with one line naming the file, quickly and in little memory, and valid ones still work.

The networks here are written without TensorFlow, as Keras 3 writes them: a ``config.json`` layer
graph and a ``model.weights.h5`` whose arrays sit at ``layers/<class_name>[_n]/vars/<i>``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from rotoscope.errors import MissingBlobError, RefusedModelError, RotoscopeError
from rotoscope.filters.inference import read_network
from rotoscope.filters.instant import load_embedding
from rotoscope.media.synth import landscape

Mutation = Callable[[dict[str, Any]], None]

# -- a genuine small style network, built as Keras 3 saves one ------------------------------------

_STEMS = {
    "InputLayer": "input_layer",
    "Rescaling": "rescaling",
    "ReflectionPadding2D": "reflection_padding2d",
    "Conv2D": "conv2d",
    "GroupNormalization": "group_normalization",
    "ReLU": "re_lu",
    "Activation": "activation",
    "Add": "add",
    "Upsample2x": "upsample2x",
    "PixelUnshuffle2x": "pixel_unshuffle2x",
    "PixelShuffle2x": "pixel_shuffle2x",
}
_OURS = {"ReflectionPadding2D", "Upsample2x", "PixelUnshuffle2x", "PixelShuffle2x"}
_POLICY = {
    "module": "keras",
    "class_name": "DTypePolicy",
    "config": {"name": "float32"},
    "registered_name": None,
}


def _tensor(source: str, channels: int | None = None) -> dict[str, Any]:
    shape = [None, None, None, channels]
    return {
        "class_name": "__keras_tensor__",
        "config": {"shape": shape, "dtype": "float32", "keras_history": [source, 0, 0]},
    }


class TinyNet:
    """Layers and weights in Keras 3's layout; each layer named as Keras names it by default."""

    def __init__(self, seed: int = 3) -> None:
        self.rng = np.random.default_rng(seed)
        self.layers: list[dict[str, Any]] = []
        self.arrays: dict[str, list[np.ndarray]] = {}  # by HDF5 group, which is the layer's name
        self.channels: dict[str, int] = {}
        self.used: dict[str, int] = {}

    def add(self, kind: str, inputs: list[str], channels: int, arrays=(), **config: Any) -> str:
        stem = _STEMS[kind]
        count = self.used.get(stem, -1) + 1
        self.used[stem] = count
        group = stem if count == 0 else f"{stem}_{count}"
        name = "picture" if kind == "InputLayer" else config.pop("name", group)
        nodes = []
        if inputs:
            tensors = [_tensor(source, self.channels[source]) for source in inputs]
            nodes = [{"args": [tensors] if kind == "Add" else tensors, "kwargs": {}}]
        self.layers.append(
            {
                "module": "rotoscope.filters.network" if kind in _OURS else "keras.layers",
                "class_name": kind,
                "config": {"name": name, "trainable": True, "dtype": _POLICY, **config},
                "registered_name": f"rotoscope>{kind}" if kind in _OURS else None,
                "name": name,
                "inbound_nodes": nodes,
            }
        )
        self.arrays[group] = [np.asarray(array, dtype=np.float32) for array in arrays]
        self.channels[name] = channels
        return name

    def conv(
        self, x: str, filters: int, size: int, stride: int = 1, norm: bool = True, relu: bool = True
    ) -> str:
        before = self.channels[x]
        x = self.add("ReflectionPadding2D", [x], before, padding=size // 2)
        kernel = self.rng.normal(0, 0.4, (size, size, before, filters))
        bias = self.rng.normal(0, 0.1, filters)
        x = self.add(
            "Conv2D",
            [x],
            filters,
            [kernel, bias],
            filters=filters,
            kernel_size=[size, size],
            strides=[stride, stride],
            padding="valid",
            data_format="channels_last",
            dilation_rate=[1, 1],
            groups=1,
            activation="linear",
            use_bias=True,
        )
        if norm:
            gamma, beta = self.rng.uniform(0.5, 1.5, filters), self.rng.normal(0, 0.2, filters)
            x = self.add(
                "GroupNormalization",
                [x],
                filters,
                [gamma, beta],
                groups=filters,
                axis=-1,
                epsilon=1e-5,
                center=True,
                scale=True,
            )
        if relu:
            x = self.add("ReLU", [x], filters, max_value=None, negative_slope=0.0, threshold=0.0)
        return x

    def document(self, output: str) -> dict[str, Any]:
        return {
            "module": "keras.src.models.functional",
            "class_name": "Functional",
            "config": {
                "name": "transformer",
                "trainable": True,
                "layers": self.layers,
                "input_layers": ["picture", 0, 0],
                "output_layers": [output, 0, 0],
            },
            "registered_name": "Functional",
            "build_config": {"input_shape": None},
            "compile_config": {},
        }


def tiny_network() -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    """Every layer type read_network understands, in 27 layers with about 3,000 weights."""
    net = TinyNet()
    x = net.add("InputLayer", [], 3, batch_shape=[None, None, None, 3], sparse=False, ragged=False)
    x = net.add("Rescaling", [x], 3, scale=1 / 255, offset=0.0)
    x = net.conv(x, 4, 3)
    x = net.conv(x, 8, 3, stride=2)
    y = net.conv(x, 8, 3)
    y = net.conv(y, 8, 3, relu=False)
    x = net.add("Add", [x, y], 8)
    x = net.add("Upsample2x", [x], 8)
    x = net.add("PixelUnshuffle2x", [x], 32)
    x = net.conv(x, 12, 3, norm=False, relu=False)
    x = net.add("Activation", [x], 12, activation="tanh")
    x = net.add("PixelShuffle2x", [x], 3)
    x = net.conv(x, 3, 3, norm=False, relu=False)
    x = net.add("Rescaling", [x], 3, scale=255.0, offset=0.0, name="styled")
    return net.document(x), net.arrays


def plain_network() -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    """Rescaling, two padded convs with an instance norm and a ReLU between: easy to redo in numpy."""
    net = TinyNet(seed=11)
    x = net.add("InputLayer", [], 3, batch_shape=[None, None, None, 3])
    x = net.add("Rescaling", [x], 3, scale=1 / 255, offset=0.0)
    x = net.conv(x, 4, 3)
    x = net.conv(x, 3, 5, norm=False, relu=False)
    x = net.add("Activation", [x], 3, activation="sigmoid")
    x = net.add("Rescaling", [x], 3, scale=255.0, offset=0.0, name="styled")
    return net.document(x), net.arrays


def weights_file(
    arrays: dict[str, list[np.ndarray]], edit: Callable[[h5py.File], None] | None = None
) -> bytes:
    """model.weights.h5 as Keras 3 writes it (``edit`` may then make it hostile)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5.create_group("vars").attrs["name"] = "transformer"
        for group, values in arrays.items():
            stored = h5.create_group(f"layers/{group}/vars")
            stored.attrs["name"] = group
            for i, value in enumerate(values):
                stored.create_dataset(str(i), data=value)
        if edit is not None:
            edit(h5)
    return buffer.getvalue()


def write_model(path: Path, document: dict[str, Any] | bytes, weights: bytes) -> Path:
    config = document if isinstance(document, bytes) else json.dumps(document).encode()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", config)
        archive.writestr("model.weights.h5", weights)
    return path


def layer(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(entry for entry in document["config"]["layers"] if entry["name"] == name)


def hostile(path: Path, mutate: Mutation, edit: Callable[[h5py.File], None] | None = None) -> Path:
    """The tiny network with its config changed by ``mutate`` and its weights by ``edit``."""
    document, arrays = tiny_network()
    mutate(document)
    return write_model(path, document, weights_file(arrays, edit))


def refused(path: Path, reader: Callable[[Path], Any] = read_network) -> str:
    """The refusal's message, checked to be one line that names the file."""
    with pytest.raises(RefusedModelError) as caught:
        reader(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: refused: "), message
    assert len(message) < len(str(path)) + 400, message
    return message


# -- a numpy reference for the plain network -------------------------------------------------------


def _conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    pad = kernel.shape[0] // 2
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    windows = sliding_window_view(x, kernel.shape[:2], axis=(1, 2))  # n, h, w, c, kh, kw
    return np.einsum("nhwcij,ijco->nhwo", windows, kernel) + bias


def plain_reference(picture: np.ndarray, arrays: dict[str, list[np.ndarray]]) -> np.ndarray:
    x = picture.astype(np.float64) / 255
    x = _conv(x, *arrays["conv2d"])
    gamma, beta = arrays["group_normalization"]
    mean, variance = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    x = np.maximum((x - mean) / np.sqrt(variance + 1e-5) * gamma + beta, 0)
    x = _conv(x, *arrays["conv2d_1"])
    return 255 / (1 + np.exp(-x))


# -- valid networks --------------------------------------------------------------------------------


def test_a_valid_network_draws_what_numpy_draws(tmp_path: Path) -> None:
    document, arrays = plain_network()
    network = read_network(write_model(tmp_path / "model.keras", document, weights_file(arrays)))
    picture = landscape(64, 48).astype(np.float32)[None]
    expected = plain_reference(picture, arrays)
    np.testing.assert_allclose(network.run(picture), expected, atol=0.02)
    fixed = network.with_statistics(network.norm_statistics(picture))(picture)
    np.testing.assert_allclose(fixed, expected, atol=0.02)


def test_every_understood_layer_type_loads_and_keeps_the_picture_size(tmp_path: Path) -> None:
    document, arrays = tiny_network()
    network = read_network(write_model(tmp_path / "model.keras", document, weights_file(arrays)))
    assert {entry.kind for entry in network.layers} == set(_STEMS)
    assert network.min_side == 4  # a 3x3 conv's padding of 1 at half resolution mirrors 2 pixels
    picture = landscape(64, 48).astype(np.float32)[None]
    out = network.run(picture)
    assert out.shape == picture.shape and np.isfinite(out).all()
    with pytest.raises(RotoscopeError, match="too small for this filter"):
        network.run(picture[:, :2, :2])


def test_float16_and_float64_weights_are_read_as_float32(tmp_path: Path) -> None:
    document, arrays = plain_network()
    wide = {group: [value.astype(np.float64) for value in values] for group, values in arrays.items()}
    wide["conv2d"] = [value.astype(np.float16) for value in arrays["conv2d"]]
    network = read_network(write_model(tmp_path / "model.keras", document, weights_file(wide)))
    assert all(array.dtype == np.float32 for values in network.weights.values() for array in values)


def test_a_missing_model_file_says_how_to_get_it(tmp_path: Path) -> None:
    for reader in (read_network, load_embedding):
        with pytest.raises(MissingBlobError, match="dvc pull"):
            reader(tmp_path / "absent")


# -- HDF5 arrays stored outside the file -----------------------------------------------------------

_CANARY = b"CANARY-7f3a9c-local-secret!" * 40  # 1080 bytes: more than any array it is asked for


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "canary.txt"
    path.write_bytes(_CANARY)
    return path


@pytest.fixture
def canary_h5(tmp_path: Path) -> Path:
    """An HDF5 file elsewhere on the disk holding arrays of the shapes the first conv needs."""
    path = tmp_path / "elsewhere.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("kernel", data=np.full((3, 3, 3, 4), 1234.5, dtype=np.float32))
        h5.create_dataset("layers/conv2d/vars/0", data=np.full((3, 3, 3, 4), 1234.5, dtype=np.float32))
        h5.create_dataset("layers/conv2d/vars/1", data=np.full(4, 1234.5, dtype=np.float32))
    return path


def _replace(h5: h5py.File, name: str, make: Callable[[h5py.Group, str], None]) -> None:
    group_name, leaf = name.rsplit("/", 1)
    del h5[name]
    make(h5[group_name], leaf)


@pytest.mark.parametrize("target", ["canary", "missing"])
def test_external_storage_is_refused_before_it_is_read(tmp_path: Path, canary: Path, target: str) -> None:
    """A dataset whose bytes live in another local file (HDF5 external storage): the file is never
    read, so neither its content nor its absence shows in what comes back."""
    source = canary if target == "canary" else tmp_path / "no-such-file"

    def external(group: h5py.Group, leaf: str) -> None:
        group.create_dataset(leaf, shape=(3, 3, 3, 4), dtype="<f4", external=[(str(source), 0, 432)])

    path = hostile(
        tmp_path / "model.keras", lambda d: None, lambda h5: _replace(h5, "layers/conv2d/vars/0", external)
    )
    message = refused(path)
    assert "stored outside the file" in message
    assert b"CANARY" not in message.encode() and "7f3a9c" not in message


def test_external_storage_in_any_array_is_refused(tmp_path: Path, canary: Path) -> None:
    def external(group: h5py.Group, leaf: str) -> None:
        group.create_dataset(leaf, shape=(3,), dtype="<f4", external=[(str(canary), 0, 12)])

    path = hostile(
        tmp_path / "model.keras", lambda d: None, lambda h5: _replace(h5, "layers/conv2d_5/vars/1", external)
    )
    assert "stored outside the file" in refused(path)


def test_a_virtual_dataset_reading_another_file_is_refused(tmp_path: Path, canary_h5: Path) -> None:
    def virtual(group: h5py.Group, leaf: str) -> None:
        layout = h5py.VirtualLayout(shape=(3, 3, 3, 4), dtype="<f4")
        layout[...] = h5py.VirtualSource(str(canary_h5), "kernel", shape=(3, 3, 3, 4))
        group.create_virtual_dataset(leaf, layout)

    path = hostile(
        tmp_path / "model.keras", lambda d: None, lambda h5: _replace(h5, "layers/conv2d/vars/0", virtual)
    )
    message = refused(path)
    assert "virtual" in message and "1234.5" not in message


@pytest.mark.parametrize(
    "name, link",
    [
        ("layers/conv2d/vars/0", lambda elsewhere: h5py.ExternalLink(elsewhere, "kernel")),
        ("layers/conv2d", lambda elsewhere: h5py.ExternalLink(elsewhere, "layers/conv2d")),
        ("layers/conv2d/vars/0", lambda elsewhere: h5py.SoftLink("/layers/conv2d_1/vars/0")),
        (
            "layers/group_normalization/vars",
            lambda elsewhere: h5py.SoftLink("/layers/group_normalization_1/vars"),
        ),
    ],
    ids=["external-link-to-array", "external-link-to-group", "soft-link-to-array", "soft-link-to-group"],
)
def test_links_out_of_place_are_refused(tmp_path: Path, canary_h5: Path, name: str, link) -> None:
    def relink(h5: h5py.File) -> None:
        del h5[name]
        h5[name] = link(str(canary_h5))

    message = refused(hostile(tmp_path / "model.keras", lambda d: None, relink))
    assert "Link, not stored in the file" in message


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda g, leaf: g.create_dataset(leaf, data=np.zeros((3, 3, 3, 4), np.int32)), "not float16"),
        (lambda g, leaf: g.create_dataset(leaf, data=np.zeros((3, 3, 3, 4), np.complex64)), "not float16"),
        (lambda g, leaf: g.create_dataset(leaf, data=np.full((3, 3, 3, 4), b"ab")), "not float16"),
        (lambda g, leaf: g.create_dataset(leaf, data=np.zeros((3, 3, 4, 4), np.float32)), "its layer needs"),
        (lambda g, leaf: g.create_dataset(leaf, data=np.zeros((108,), np.float32)), "its layer needs"),
        (
            lambda g, leaf: g.create_dataset(leaf, data=np.full((3, 3, 3, 4), np.nan, np.float32)),
            "not finite",
        ),
        (
            lambda g, leaf: g.create_dataset(leaf, data=np.full((3, 3, 3, 4), np.inf, np.float32)),
            "not finite",
        ),
        (lambda g, leaf: g.create_group(leaf), "is not a Dataset"),
        # a kernel declared with 1e8 output channels, chunked so the file stays tiny
        (
            lambda g, leaf: g.create_dataset(
                leaf, shape=(3, 3, 3, 10**8), dtype="<f4", chunks=(1, 1, 1, 1024)
            ),
            "its layer needs",
        ),
    ],
    ids=["int32", "complex", "bytes", "wrong-shape", "flat", "nan", "inf", "group", "1e8-channels"],
)
def test_arrays_of_the_wrong_kind_are_refused(tmp_path: Path, make, needle: str) -> None:
    path = hostile(
        tmp_path / "model.keras", lambda d: None, lambda h5: _replace(h5, "layers/conv2d/vars/0", make)
    )
    assert needle in refused(path)


def test_missing_or_extra_arrays_are_refused(tmp_path: Path) -> None:
    def extra(h5: h5py.File) -> None:
        h5["layers/conv2d/vars"].create_dataset("2", data=np.zeros(4, np.float32))

    assert "holds 3 arrays" in refused(hostile(tmp_path / "a.keras", lambda d: None, extra))
    missing = hostile(tmp_path / "b.keras", lambda d: None, lambda h5: h5.__delitem__("layers/conv2d_2"))
    assert "no layers/conv2d_2" in refused(missing)


def test_a_weights_file_addressing_past_two_to_the_63_is_refused(tmp_path: Path) -> None:
    """Found by the fuzzer: one byte of the superblock zeroed, and h5py's file driver raised an
    OverflowError seeking to the address it now names."""
    document, arrays = tiny_network()
    weights = bytearray(weights_file(arrays))
    weights[48] = 0
    path = write_model(tmp_path / "model.keras", document, bytes(weights))
    assert "damaged model weights" in refused(path)


def test_big_endian_weights_are_plain_floats(tmp_path: Path) -> None:
    def swapped(group: h5py.Group, leaf: str) -> None:
        group.create_dataset(leaf, data=np.ones((3, 3, 3, 4), dtype=">f4"))

    path = hostile(
        tmp_path / "model.keras", lambda d: None, lambda h5: _replace(h5, "layers/conv2d/vars/0", swapped)
    )
    np.testing.assert_array_equal(read_network(path).weights["conv2d"][0], np.ones((3, 3, 3, 4)))


# -- the zip archive -------------------------------------------------------------------------------


def _raw_zip(members: list[dict[str, Any]], *, directory_only: bool = False) -> bytes:
    """A zip written by hand: name, data (as stored), method, crc, size and flags as given."""
    out, central = bytearray(), bytearray()
    for member in members:
        name, data = member["name"].encode(), member["data"]
        crc, size = member.get("crc", zlib.crc32(data)), member.get("size", len(data))
        method, flags = member.get("method", zipfile.ZIP_STORED), member.get("flags", 0)
        offset = len(out)
        if not directory_only:
            out += struct.pack(
                "<4s5H3L2H", b"PK\x03\x04", 20, flags, method, 0, 33, crc, len(data), size, len(name), 0
            )
            out += name + data
        central += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            20,
            20,
            flags,
            method,
            0,
            33,
            crc,
            len(data),
            size,
            len(name),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += name
    count = min(len(members), 0xFFFF)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(central), len(out), 0)
    return bytes(out + central + end)


def _zeros_deflated(size: int) -> bytes:
    """A raw deflate stream of ``size`` zero bytes, made in milliseconds: after a full flush the
    compressor forgets its history, so one compressed MiB repeated is many MiB of zeros."""
    mib = 1 << 20
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(mib)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * (size // mib) + compressor.flush()


def _valid_members() -> list[dict[str, Any]]:
    document, arrays = tiny_network()
    return [
        {"name": "config.json", "data": json.dumps(document).encode()},
        {"name": "model.weights.h5", "data": weights_file(arrays)},
    ]


def _bomb(declared: int | None) -> bytes:
    """config.json unpacking to 3 GiB of zeros, declaring that or a smaller size."""
    stream, real = _zeros_deflated(3 << 30), 3 << 30
    bomb = {
        "name": "config.json",
        "data": stream,
        "method": zipfile.ZIP_DEFLATED,
        "crc": 0,
        "size": declared or real,
    }
    return _raw_zip([bomb, _valid_members()[1]])


def _many_entries() -> bytes:
    """A central directory of 65,000 entries (3.6 MB): zipfile alone would build them all."""
    members = [{"name": f"m{i}", "data": b""} for i in range(65_000)]
    return _raw_zip(members, directory_only=True)


def _weights_bomb() -> bytes:
    stream = _zeros_deflated(1 << 30)
    bomb = {
        "name": "model.weights.h5",
        "data": stream,
        "method": zipfile.ZIP_DEFLATED,
        "crc": 0,
        "size": 1 << 30,
    }
    return _raw_zip([_valid_members()[0], bomb])


def _with_zip64_locator(data: bytes) -> bytes:
    at = data.rfind(b"PK\x05\x06")
    return data[:at] + b"PK\x06\x07" + bytes(16) + data[at:]


def _duplicated() -> bytes:
    buffer = io.BytesIO()
    members = _valid_members()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as archive:
        warnings.simplefilter("ignore")
        for member in [*members, members[0]]:
            archive.writestr(member["name"], member["data"])
    return buffer.getvalue()


def _flipped(data: bytes) -> bytes:
    at = data.find(b"HDF") + 4000  # inside the weights' arrays: the stored CRC no longer matches
    return data[:at] + bytes(byte ^ 0xFF for byte in data[at : at + 16]) + data[at + 16 :]


_ARCHIVES: dict[str, tuple[Callable[[], bytes], str]] = {
    "pickle": (lambda: b"\x80\x04\x95\x1a\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x07weights\x94.", "pickles"),
    "empty": (lambda: b"", "pickles"),
    "truncated": (lambda: _raw_zip(_valid_members())[:5000], "pickles"),
    "flipped-bytes": (lambda: _flipped(_raw_zip(_valid_members())), "damaged Keras archive"),
    "unknown-member": (
        lambda: _raw_zip([*_valid_members(), {"name": "run_me.py", "data": b"x"}]),
        "run_me.py",
    ),
    "no-weights": (lambda: _raw_zip(_valid_members()[:1]), "no model.weights.h5"),
    "duplicate-member": (_duplicated, "one name twice"),
    "encrypted": (lambda: _raw_zip([{**_valid_members()[0], "flags": 1}, _valid_members()[1]]), "encrypted"),
    "deflate64": (lambda: _raw_zip([{**_valid_members()[0], "method": 9}, _valid_members()[1]]), "encrypted"),
    "zip64-locator": (lambda: _with_zip64_locator(_raw_zip(_valid_members())), "zip64"),
    "large-config": (
        lambda: _raw_zip([{"name": "config.json", "data": b" " * (5 << 20)}, _valid_members()[1]]),
        "unpacks to 5242880 bytes",
    ),
}


@pytest.mark.parametrize("name", list(_ARCHIVES))
def test_damaged_and_odd_archives_are_refused(tmp_path: Path, name: str) -> None:
    make, needle = _ARCHIVES[name]
    path = tmp_path / "model.keras"
    path.write_bytes(make())
    assert needle in refused(path)


def test_a_valid_hand_written_zip_loads(tmp_path: Path) -> None:
    """The hand-made archives above differ from a valid one only in what they are refused for."""
    path = tmp_path / "model.keras"
    path.write_bytes(_raw_zip(_valid_members()))
    assert read_network(path).output == "styled"


# -- hostile files that would exhaust memory, refused in a memory-limited process ------------------

_ADDRESS_SPACE = 2 << 30  # the child may map at most 2 GiB; what it reads must fit well inside
_PROBE = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    import h5py, numpy
    from rotoscope.errors import RotoscopeError
    from rotoscope.filters.inference import read_network
    from rotoscope.filters.instant import load_embedding
    reader = read_network if sys.argv[1].endswith(".keras") else load_embedding
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        reader(Path(sys.argv[1]))
        outcome = "accepted"
    except RotoscopeError as error:
        outcome = type(error).__name__ + ": " + str(error)
    seconds = time.perf_counter() - start
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({{"outcome": outcome, "seconds": seconds, "grown_kib": grown}}))
    """
).format(limit=_ADDRESS_SPACE)


def _npy_declaring(shape: tuple[int, ...] | str, data: bytes = bytes(400)) -> bytes:
    shown = shape if isinstance(shape, str) else repr(shape)
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shown}, }}".encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


_HEAVY: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "zip-bomb-declared": (".keras", lambda: _bomb(None), "unpacks to 3221225472 bytes"),
    "zip-bomb-lying-small": (".keras", lambda: _bomb(1000), "damaged Keras archive"),
    "zip-bomb-lying-at-limit": (".keras", lambda: _bomb(4 << 20), "damaged Keras archive"),
    "weights-bomb": (".keras", _weights_bomb, "unpacks to 1073741824 bytes"),
    "65k-entries": (".keras", _many_entries, "65000 entries"),
    "npy-1e11-floats": (".npy", lambda: _npy_declaring((10**11,)), "100 floats, not float32 (100000000000,)"),
    "npy-1e11-floats-4d": (".npy", lambda: _npy_declaring((1, 1, 10**5, 10**6)), "100 floats"),
}


@pytest.mark.parametrize("name", list(_HEAVY))
def test_memory_bombs_are_refused_in_little_memory(tmp_path: Path, name: str) -> None:
    suffix, make, needle = _HEAVY[name]
    path = tmp_path / f"model{suffix}"
    path.write_bytes(make())
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["outcome"].startswith(f"RefusedModelError: {path}: refused: "), report
    assert needle in report["outcome"], report
    assert report["grown_kib"] < 64 * 1024, report  # the bomb was never unpacked
    assert report["seconds"] < 5, report


# -- config.json: size, depth, numbers -------------------------------------------------------------


def _deep(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def _deep_json(depth: int) -> bytes:
    document, _ = tiny_network()
    text = json.dumps(document)
    return text.replace('"sparse": false', '"sparse": ' + "[" * depth + "0" + "]" * depth, 1).encode()


@pytest.mark.parametrize("depth", [65, 500, 200_000], ids=["65", "500", "200k"])
def test_deeply_nested_json_is_refused(tmp_path: Path, depth: int) -> None:
    _, arrays = tiny_network()
    path = write_model(tmp_path / "model.keras", _deep_json(depth), weights_file(arrays))
    assert "nests deeper than 64 levels" in refused(path)


@pytest.mark.parametrize(
    "text, needle",
    [
        (b"[1, 2, 3]", "not a JSON object"),
        (b'{"class_name": "Sequential"}', "'Sequential' model is not a style network"),
        (b'{"class_name": "Functional", "config": []}', "'config' is [], not dict"),
        (b'{"class_name": "Functional", "config": {"layers": {}}}', "'layers' is {}, not list"),
        (b'{"class_name": "Functional", "config": {"layers": []}}', "1 to 512 layers, not 0"),
        (b"\xff\xfe\x00{", "damaged Keras archive (config.json"),
        (b'{"class_name": "Functional", "x": ' + b"9" * 5000 + b"}", "damaged Keras archive (config.json"),
        (b'{"class_name": "Functional"', "damaged Keras archive (config.json"),
    ],
    ids=["list", "sequential", "config-list", "layers-dict", "no-layers", "bad-utf", "huge-int", "truncated"],
)
def test_config_documents_of_the_wrong_shape_are_refused(tmp_path: Path, text: bytes, needle: str) -> None:
    _, arrays = tiny_network()
    assert needle in refused(write_model(tmp_path / "model.keras", text, weights_file(arrays)))


def _set(name: str, key: str, value: Any) -> Mutation:
    return lambda document: layer(document, name)["config"].__setitem__(key, value)


def _drop(name: str, key: str, inside: str = "config") -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        entry = layer(document, name)
        (entry[inside] if inside else entry).pop(key)

    return mutate


def _feed(name: str, *sources: str) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        tensors = [_tensor(source) for source in sources]
        entry = layer(document, name)
        entry["inbound_nodes"] = [
            {"args": [tensors] if entry["class_name"] == "Add" else tensors, "kwargs": {}}
        ]

    return mutate


def _both(*mutations: Mutation) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(document)

    return mutate


def _replace_text(old: str, new: str) -> Callable[[dict[str, Any]], bytes]:
    """config.json's text with ``old`` replaced: for what json.dumps would not write."""

    def mutate(document: dict[str, Any]) -> bytes:
        text = json.dumps(document)
        assert old in text
        return text.replace(old, new).encode()

    return mutate


def _layers(mutate: Callable[[list[Any]], None]) -> Mutation:
    return lambda document: mutate(document["config"]["layers"])


def _spec(kind: str, **config: Any) -> dict[str, Any]:
    return {"class_name": kind, "config": config}


_STRIDED_CONV = _spec("Conv2D", filters=3, kernel_size=[1, 1], strides=[2, 2])
_TINY_LAYERS = len(tiny_network()[0]["config"]["layers"])


def _append(*entries: dict[str, Any]) -> Mutation:
    """Layers added after the last, each fed by the one before, the last made the output."""

    def mutate(document: dict[str, Any]) -> None:
        layers = document["config"]["layers"]
        for i, entry in enumerate(entries):
            source = layers[-1]["name"]
            layers.append(
                {**copy.deepcopy(entry), "name": f"more_{i}", "inbound_nodes": [{"args": [_tensor(source)]}]}
            )
        document["config"]["output_layers"] = [layers[-1]["name"], 0, 0]

    return mutate


_BAD_CONFIGS: dict[str, tuple[Mutation, str]] = {
    # layer arguments out of their ranges
    "padding-20000": (_set("reflection_padding2d", "padding", 20000), "padding 20000 is not from 0 to 64"),
    "padding-negative": (_set("reflection_padding2d", "padding", -1), "padding -1 is not from 0 to 64"),
    "padding-string": (_set("reflection_padding2d", "padding", "1"), "'padding' is '1', not int"),
    "padding-bool": (_set("reflection_padding2d", "padding", True), "'padding' is True, not int"),
    "padding-float": (_set("reflection_padding2d", "padding", 1.0), "not int"),
    "filters-1e8": (_set("conv2d", "filters", 10**8), "filters 100000000 is not from 1 to 1024"),
    "filters-zero": (_set("conv2d", "filters", 0), "filters 0 is not from 1 to 1024"),
    "kernel-zero": (_set("conv2d", "kernel_size", [0, 0]), "kernel_size [0, 0] is not from 1 to 15"),
    "kernel-16": (_set("conv2d", "kernel_size", [16, 16]), "is not from 1 to 15"),
    "kernel-one-number": (_set("conv2d", "kernel_size", [3]), "is not two whole numbers"),
    "kernel-nested": (_set("conv2d", "kernel_size", [[3], [3]]), "is not two whole numbers"),
    "strides-zero": (_set("conv2d", "strides", [0, 0]), "strides [0, 0] is not from 1 to 4"),
    "strides-5": (_set("conv2d", "strides", 5), "strides 5 is not from 1 to 4"),
    "strides-3": (_set("conv2d_1", "strides", [3, 3]), "divides its sides by more than 4"),
    "dilation-9": (_set("conv2d", "dilation_rate", [9, 9]), "dilation_rate [9, 9] is not from 1 to 8"),
    "dilation-2": (_set("conv2d", "dilation_rate", [2, 2]), "kernel does not fit"),
    "groups-zero": (_set("conv2d", "groups", 0), "groups 0 is not from 1 to 1024"),
    "groups-not-dividing": (_set("conv2d", "groups", 3), "3 groups do not divide"),
    "same-padding": (_set("conv2d", "padding", "same"), "only 'valid' channels-last"),
    "channels-first": (_set("conv2d", "data_format", "channels_first"), "only 'valid' channels-last"),
    "no-bias": (_set("conv2d", "use_bias", False), "holds 2 arrays, not the 1"),
    "activation-softmax": (_set("conv2d", "activation", "softmax"), "activation 'softmax' is not one of"),
    "activation-dict": (_set("activation", "activation", {"class_name": "Lambda"}), "'activation' is {"),
    "epsilon-zero": (_set("group_normalization", "epsilon", 0), "epsilon 0.0 is not between 0 and 1"),
    "epsilon-negative": (_set("group_normalization", "epsilon", -1e-5), "not between 0 and 1"),
    "epsilon-one": (_set("group_normalization", "epsilon", 1.0), "not between 0 and 1"),
    "epsilon-huge": (_set("group_normalization", "epsilon", 1e300), "not a number within 1"),
    "epsilon-string": (
        _set("group_normalization", "epsilon", "1e-5"),
        "'epsilon' is '1e-5', not int or float",
    ),
    "norm-groups": (_set("group_normalization", "groups", 2), "only instance normalisation"),
    "norm-no-centre": (_set("group_normalization", "center", False), "without its scale and centre"),
    "norm-axis": (_set("group_normalization", "axis", 1), "axis -1"),
    "relu-leaky": (_set("re_lu", "negative_slope", 0.1), "only a plain ReLU"),
    "relu-capped": (_set("re_lu", "max_value", 6), "only a plain ReLU"),
    "scale-huge": (_set("rescaling", "scale", 1e30), "is not a number within 1e+06"),
    "offset-null": (_set("rescaling", "offset", None), "'offset' is None, not int or float"),
    "input-fixed-size": (_set("picture", "batch_shape", [None, 64, 64, 3]), "input shape"),
    "input-grey": (_set("picture", "batch_shape", [None, None, None, 1]), "input shape"),
    # missing and ill-typed fields
    "no-config": (_drop("conv2d", "config", inside=""), "layer conv2d: no 'config'"),
    "no-name": (_drop("conv2d", "name", inside=""), "a layer: no 'name'"),
    "no-class": (_drop("conv2d", "class_name", inside=""), "no 'class_name'"),
    "no-filters": (_drop("conv2d", "filters"), "layer conv2d: no 'filters'"),
    "no-kernel-size": (_drop("conv2d", "kernel_size"), "no 'kernel_size'"),
    "no-norm-groups": (_drop("group_normalization", "groups"), "no 'groups'"),
    "no-batch-shape": (_drop("picture", "batch_shape"), "no 'batch_shape'"),
    "config-list": (lambda d: layer(d, "conv2d").__setitem__("config", [1]), "'config' is [1], not dict"),
    "name-number": (lambda d: layer(d, "conv2d").__setitem__("name", 7), "'name' is 7, not str"),
    "name-empty": (lambda d: layer(d, "conv2d").__setitem__("name", ""), "empty, too long or used twice"),
    "name-twice": (lambda d: layer(d, "conv2d").__setitem__("name", "rescaling"), "used twice"),
    "layer-a-string": (_layers(lambda entries: entries.insert(3, "Conv2D")), "layer 3 is not a JSON object"),
    "nodes-string": (
        lambda d: layer(d, "conv2d").__setitem__("inbound_nodes", "x"),
        "'inbound_nodes' is 'x'",
    ),
    "node-not-object": (lambda d: layer(d, "conv2d").__setitem__("inbound_nodes", [[]]), "not a JSON object"),
    "args-missing": (lambda d: layer(d, "conv2d")["inbound_nodes"][0].pop("args"), "no 'args'"),
    "kwargs-list": (lambda d: layer(d, "conv2d")["inbound_nodes"][0].__setitem__("kwargs", []), "'kwargs'"),
    "tensor-not-tensor": (
        lambda d: layer(d, "conv2d")["inbound_nodes"][0].__setitem__("args", [{"class_name": "x"}]),
        "not a Keras tensor",
    ),
    "history-missing": (
        lambda d: layer(d, "conv2d")["inbound_nodes"][0]["args"][0]["config"].pop("keras_history"),
        "no 'keras_history'",
    ),
    "history-node-1": (
        lambda d: layer(d, "conv2d")["inbound_nodes"][0]["args"][0]["config"]["keras_history"].__setitem__(
            1, 1
        ),
        "is not [layer name, 0, 0]",
    ),
    "unknown-layer-type": (
        lambda d: layer(d, "re_lu").__setitem__("class_name", "Lambda"),
        "layer types Lambda",
    ),
    # the graph
    "self-reference": (_feed("conv2d", "conv2d"), "its input 'conv2d' is not an earlier layer"),
    "forward-reference": (_feed("conv2d", "styled"), "its input 'styled' is not an earlier layer"),
    "cycle": (
        _both(_feed("re_lu", "re_lu_1"), _feed("re_lu_1", "re_lu")),
        "layer re_lu: its input 're_lu_1' is not an earlier layer",
    ),
    "unknown-input": (_feed("conv2d", "ghost"), "its input 'ghost' is not an earlier layer"),
    "two-inputs": (_feed("conv2d", "reflection_padding2d", "picture"), "takes one input, not 2"),
    "add-one-input": (_feed("add", "re_lu_1"), "two or more inputs"),
    "add-mismatched": (_feed("add", "re_lu_1", "re_lu"), "its inputs differ in shape"),
    "applied-twice": (
        lambda d: layer(d, "conv2d")["inbound_nodes"].append(layer(d, "conv2d")["inbound_nodes"][0]),
        "applied 2 times",
    ),
    "input-with-inputs": (_feed("picture", "picture"), "an input layer takes no inputs"),
    "two-input-layers": (
        _layers(lambda entries: entries.insert(1, {**copy.deepcopy(entries[0]), "name": "second"})),
        "one input and one output, not 2/1",
    ),
    "no-output": (lambda d: d["config"].pop("output_layers"), "one input and one output, not 1/0"),
    "output-unknown": (lambda d: d["config"].__setitem__("output_layers", ["ghost", 0, 0]), "output 'ghost'"),
    "output-grey": (lambda d: d["config"].__setitem__("output_layers", ["re_lu", 0, 0]), "is not RGB"),
    "output-half-size": (_append(_STRIDED_CONV), "the output is not the size of the input picture"),
    "upscaled": (_append(_spec("Upsample2x")), "makes the picture larger than the input"),
    "unshuffled-thrice": (_append(*[_spec("PixelUnshuffle2x")] * 3), "divides its sides by more than 4"),
    "unshuffled-to-12288-channels": (
        _append(*[_spec("PixelUnshuffle2x"), _spec("Upsample2x")] * 6),
        "12288 channels, more than 4096",
    ),
    "shuffle-uneven": (_feed("pixel_shuffle2x", "picture"), "3 channels cannot be shuffled"),
    "norm-of-padded": (_feed("group_normalization", "reflection_padding2d"), "only a convolution may take"),
    "conv-unpadded": (_feed("conv2d", "rescaling"), "kernel does not fit"),
    "513-layers": (_append(*[_spec("Activation", activation="linear")] * (513 - _TINY_LAYERS)), "not 513"),
    "padding-past-64px": (
        _both(
            _set("reflection_padding2d_2", "padding", 32),
            _set("conv2d_2", "kernel_size", [9, 9]),
            _set("conv2d_2", "dilation_rate", [8, 8]),
        ),
        "needs pictures of 66 pixels, more than 64",
    ),
    "scale-infinite": (_replace_text('"scale": 255.0', '"scale": 1e999'), "scale inf is not a number within"),
    "nan-epsilon": (_replace_text('"epsilon": 1e-05', '"epsilon": NaN'), "NaN is not a number"),
}


@pytest.mark.parametrize("name", list(_BAD_CONFIGS))
def test_hostile_and_ill_typed_configs_are_refused(tmp_path: Path, name: str) -> None:
    mutate, needle = _BAD_CONFIGS[name]
    document, arrays = tiny_network()
    text = mutate(document)  # the changed text, where json.dumps could not have written it
    text = text if isinstance(text, bytes) else json.dumps(document).encode()
    path = write_model(tmp_path / "model.keras", text, weights_file(arrays))
    message = refused(path)
    assert needle in message, message


# -- .npy embeddings -------------------------------------------------------------------------------


def _npy(array: np.ndarray, **save: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, **save)
    return buffer.getvalue()


def _npy_v3() -> bytes:
    data = _npy(np.zeros(100, np.float32))
    return data[:6] + b"\x03\x00" + struct.pack("<I", struct.unpack("<H", data[8:10])[0]) + data[10:]


_BAD_NPYS: dict[str, tuple[Callable[[], bytes], str]] = {
    "pickle": (
        lambda: _npy(np.array([{"a": 1}] * 100, dtype=object), allow_pickle=True),
        "not object (100,)",
    ),
    "structured": (lambda: _npy(np.zeros(100, [("a", "<f4")])), "100 floats"),
    "big-endian": (lambda: _npy(np.zeros(100, ">f4")), ">f4"),
    "ints": (lambda: _npy(np.zeros(100, np.int32)), "int32"),
    "complex": (lambda: _npy(np.zeros(100, np.complex64)), "complex64"),
    "99-floats": (lambda: _npy(np.zeros(99, np.float32)), "(99,)"),
    "10x10": (lambda: _npy(np.zeros((10, 10), np.float32)), "(10, 10)"),
    "scalar": (lambda: _npy(np.float32(1)), "()"),
    "5-kib": (lambda: _npy(np.zeros(1200, np.float32)), "at most 4096 bytes"),
    "truncated-data": (lambda: _npy(np.zeros(100, np.float32))[:-4], "holds 396 bytes"),
    "trailing-data": (lambda: _npy(np.zeros(100, np.float32)) + b"\0" * 8, "holds 408 bytes"),
    "nan": (lambda: _npy(np.full(100, np.nan, np.float32)), "not finite"),
    "version-3": (_npy_v3, "not 1.0 or 2.0"),
    "not-npy": (lambda: b"PK\x03\x04" + bytes(200), "not a plain .npy array"),
    "empty": (lambda: b"", "not a plain .npy array"),
    "header-truncated": (lambda: _npy(np.zeros(100, np.float32))[:40], "not a plain .npy array"),
    "header-code": (lambda: _npy_declaring("__import__('os').getcwd()"), "not a plain .npy array"),
    "negative-shape": (lambda: _npy_declaring((-100,)), "100 floats"),
}


@pytest.mark.parametrize("name", list(_BAD_NPYS))
def test_hostile_embeddings_are_refused(tmp_path: Path, name: str) -> None:
    make, needle = _BAD_NPYS[name]
    path = tmp_path / "model.npy"
    path.write_bytes(make())
    assert needle in refused(path, load_embedding)


@pytest.mark.parametrize(
    "array",
    [np.arange(100, dtype="<f4"), np.arange(100, dtype="<f8").reshape(1, 1, 1, 100), np.ones(100, "<f2")],
    ids=["float32", "float64-4d", "float16"],
)
def test_valid_embeddings_load(tmp_path: Path, array: np.ndarray) -> None:
    path = tmp_path / "model.npy"
    path.write_bytes(_npy(array))
    embedding = load_embedding(path)
    assert embedding.dtype == np.float32 and embedding.shape == (100,)
    np.testing.assert_array_equal(embedding, array.reshape(100).astype(np.float32))


# -- fuzzing: whatever the bytes, the answer is a network or a RotoscopeError ---------------------

_FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_VALID_DOCUMENT, _VALID_ARRAYS = tiny_network()
_VALID_WEIGHTS = weights_file(_VALID_ARRAYS)
_VALID_ARCHIVE = _raw_zip(_valid_members())
_PICTURE = landscape(64, 48).astype(np.float32)[None]


def _places(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key or index path in a JSON document."""
    yield at
    children = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, child in children:
        yield from _places(child, (*at, key))


_PLACES = list(_places(_VALID_DOCUMENT))[1:]
_NAMES = [entry["name"] for entry in _VALID_DOCUMENT["config"]["layers"]]
_junk = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from([0, 1, -1, 2, 3, 4, 5, 8, 15, 16, 64, 65, 1024, 1025, 10**8, 2**31, 2**63, -(2**63)]),
        st.integers(),
        st.floats(),  # NaN and infinities too: json.dumps writes them as NaN, Infinity
        st.sampled_from([*_NAMES, "__keras_tensor__", "valid", "same", "relu", "Conv2D", "Lambda", ""]),
        st.text(max_size=8),
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)


def _mutate(document: dict[str, Any], place: tuple[Any, ...], operation: str, value: Any) -> None:
    *parent_at, key = place
    parent = document
    for step in parent_at:
        parent = parent[step]
    if operation == "delete":
        del parent[key]
    elif operation == "wrap":
        parent[key] = [parent[key]]
    elif operation == "duplicate" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(parent[key]))
    else:
        parent[key] = value


@_FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_PLACES),
            st.sampled_from(["replace", "replace", "delete", "wrap", "duplicate"]),
            _junk,
        ),
        min_size=1,
        max_size=3,
    )
)
def test_fuzzed_configs_are_accepted_or_refused(
    tmp_path: Path, mutations: list[tuple[Any, str, Any]]
) -> None:
    document = copy.deepcopy(_VALID_DOCUMENT)
    for place, operation, value in mutations:
        with contextlib.suppress(KeyError, IndexError, TypeError):  # an earlier one removed the place
            _mutate(document, place, operation, value)
    path = write_model(tmp_path / "fuzz.keras", json.dumps(document).encode(), _VALID_WEIGHTS)
    try:
        network = read_network(path)
    except RotoscopeError as error:
        assert "\n" not in str(error)
        return
    try:
        out = network.run(_PICTURE)  # what is accepted runs, at the picture's size
    except RotoscopeError as error:  # a picture too small for its paddings
        assert "too small for this filter" in str(error)
        return
    assert out.shape == _PICTURE.shape


@_FUZZ
@given(st.binary(max_size=2048))
def test_fuzzed_bytes_are_refused(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.keras"
    path.write_bytes(data)
    with pytest.raises(RotoscopeError):
        read_network(path)


@_FUZZ
@given(st.data())
def test_fuzzed_archives_are_accepted_or_refused(tmp_path: Path, data: st.DataObject) -> None:
    """The valid archive cut short, or with a few bytes changed, in its zip records or its arrays."""
    archive = bytearray(_VALID_ARCHIVE)
    for _ in range(data.draw(st.integers(0, 6))):
        at = data.draw(st.integers(0, len(archive) - 1))
        archive[at] = data.draw(st.integers(0, 255))
    archive = archive[: data.draw(st.integers(0, len(archive)))] if data.draw(st.booleans()) else archive
    path = tmp_path / "fuzz.keras"
    path.write_bytes(bytes(archive))
    with contextlib.suppress(RotoscopeError):
        read_network(path)


@_FUZZ
@given(st.data())
def test_fuzzed_weights_files_are_accepted_or_refused(tmp_path: Path, data: st.DataObject) -> None:
    """model.weights.h5 itself damaged (inside a sound zip, so HDF5 parses the damage)."""
    weights = bytearray(_VALID_WEIGHTS)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(weights) - 1))
        weights[at] = data.draw(st.integers(0, 255))
    weights = weights[: data.draw(st.integers(0, len(weights)))] if data.draw(st.booleans()) else weights
    path = write_model(tmp_path / "fuzz.keras", _VALID_DOCUMENT, bytes(weights))
    with contextlib.suppress(RotoscopeError):
        read_network(path).run(_PICTURE)


_descr = st.one_of(
    st.sampled_from(
        ["<f4", "<f8", "<f2", ">f4", "|O", "<i4", "|b1", "<c8", "|V4", "<U4", "[('a', '<f4')]", "'"]
    ),
    st.text(max_size=6).map(repr),
)
_shape = st.one_of(
    st.sampled_from(["(100,)", "(1, 1, 1, 100)", "(100000000000,)", "()", "(-1,)", "[100]", "(100, 1)"]),
    st.lists(st.integers(-5, 10**12), max_size=5).map(lambda sides: repr(tuple(sides))),
)


@_FUZZ
@given(
    st.sampled_from([b"\x01\x00", b"\x02\x00", b"\x03\x00", b"\x00\x00", b"\xff\xff"]),
    _descr,
    st.sampled_from(["False", "True", "1", "None"]),
    _shape,
    st.one_of(st.integers(0, 900), st.just(400), st.just(800)),
    st.booleans(),
)
def test_fuzzed_npy_headers_are_accepted_or_refused(
    tmp_path: Path, version: bytes, descr: str, fortran: str, shape: str, data_size: int, garble: bool
) -> None:
    header = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"
    if garble:
        header = header[: len(header) // 2]
    body = header.encode() + b"\n"
    length = struct.pack("<I" if version == b"\x02\x00" else "<H", len(body))
    path = tmp_path / "fuzz.npy"
    path.write_bytes(b"\x93NUMPY" + version + length + body + bytes(data_size))
    try:
        embedding = load_embedding(path)
    except RotoscopeError as error:
        assert "\n" not in str(error)
        return
    assert embedding.shape == (100,) and embedding.dtype == np.float32
