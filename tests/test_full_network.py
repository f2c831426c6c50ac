"""The trained networks' fast translations draw what Keras draws, and their memory is what tiling
assumes.

Two graphs run a ``.keras`` file (see rotoscope.filters.inference): the portable one (standard
ONNX operators) and, where this runtime passes its check, one in ONNX Runtime's NCHWc layout.
Both are compared with Keras itself on pictures whose sides are multiples of 4 but not of 16, so
blocked convolutions, reflection padding on a 5-D view of the blocks and thin convolutions whose
outputs are computed as 4x4 (or, at half resolution, 2x2) blocks of channels all meet edges that
do not line up with their blocks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rotoscope.errors import RotoscopeError
from rotoscope.filters.inference import StyleNetwork, nchwc_block, read_network
from rotoscope.media.synth import landscape

LAYOUTS = ["portable", "nchwc"]


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split()[2:]}


def _trained_looking(model) -> None:
    """Norms with scales and shifts away from 1 and 0, so a swapped or dropped one would show."""
    from rotoscope.filters.backend import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.GroupNormalization):
            rng = np.random.default_rng(len(layer.name))
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])


def _half_resolution_thin_model():
    """A net whose thin convs sit at half resolution (2x2 blocks) and full (4x4), with a norm on
    a thin conv's output (plain, so it is reordered into blocks) and upsampling of blocks."""
    from rotoscope.filters.backend import keras
    from rotoscope.filters.network import ReflectionPadding2D, Upsample2x

    layers = keras.layers
    picture = keras.Input(shape=(None, None, 3))
    x = layers.Rescaling(1 / 255.0)(picture)
    x = layers.Conv2D(16, 3, strides=2)(ReflectionPadding2D(1)(x))
    x = layers.ReLU()(layers.GroupNormalization(groups=-1, epsilon=1e-5)(x))
    x = layers.Conv2D(8, 3)(ReflectionPadding2D(1)(x))
    x = layers.ReLU()(layers.GroupNormalization(groups=-1, epsilon=1e-5)(x))
    x = layers.Conv2D(3, 5)(ReflectionPadding2D(2)(Upsample2x()(x)))
    return keras.Model(picture, layers.Rescaling(255.0)(x))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[object, Path]]:
    """Keras models and their saved files: the full network (the defaults), the light preset, and
    the half-resolution thin one."""
    from rotoscope.filters.network import build_transformer
    from rotoscope.filters.train import LIGHT

    folder = tmp_path_factory.mktemp("networks")
    made = {}
    for name, model in (
        ("full", build_transformer()),
        ("light", build_transformer(**LIGHT)),
        ("thin", _half_resolution_thin_model()),
    ):
        _trained_looking(model)
        path = folder / f"{name}.keras"
        model.save(path)
        made[name] = (model, path)
    return made


def _network(path: Path, layout: str) -> StyleNetwork:
    network = read_network(path)
    block = 0 if layout == "portable" else nchwc_block()
    if layout == "nchwc" and not block:
        pytest.skip("this ONNX Runtime has no NCHWc layout (the portable graph runs)")
    network.block = block
    network._graphs.clear()  # read_network built the default one
    return network


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name, size", [("full", (36, 52)), ("light", (44, 28)), ("thin", (20, 36))])
def test_every_variant_draws_what_keras_draws(models, name: str, size: tuple[int, int], layout: str) -> None:
    model, path = models[name]
    network = _network(path, layout)
    picture = landscape(size[1], size[0], seed=3).astype(np.float32)[None]
    expected = np.asarray(model(picture))
    assert expected.std() > 10  # a real picture, not a flat one that any graph would match
    np.testing.assert_allclose(network.run(picture), expected, atol=0.05)
    stats = network.norm_statistics(picture)
    np.testing.assert_allclose(network.with_statistics(stats)(picture), expected, atol=0.05)
    other = network.with_statistics(network.norm_statistics(picture * 0.5 + 40))(picture)
    assert np.abs(other - expected).max() > 1  # another picture's statistics do change it


def test_both_layouts_measure_the_same_statistics(models) -> None:
    _, path = models["full"]
    picture = landscape(52, 36, seed=4).astype(np.float32)[None]
    portable, fast = (_network(path, layout).norm_statistics(picture) for layout in LAYOUTS)
    assert len(portable) == len(fast) == 15  # 3 down, 10 in residual blocks, 2 up
    for (mean, variance), (fast_mean, fast_variance) in zip(portable, fast, strict=True):
        assert mean.shape == fast_mean.shape and variance.shape == fast_variance.shape
        np.testing.assert_allclose(fast_mean, mean, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(fast_variance, variance, rtol=1e-3, atol=1e-5)


def test_the_thin_convs_run_as_blocks(models) -> None:
    """The last conv to RGB becomes a stride-4 conv with 48 outputs (2x2 blocks at half size)."""
    import onnx

    for name, block, filters in (("full", 4, 3), ("thin", 2, 8)):
        graph = onnx.load_from_string(_network(models[name][1], "portable").onnx_model()).graph
        shapes = {init.name: tuple(init.dims) for init in graph.initializer}
        convs = [node for node in graph.node if node.op_type == "Conv"]
        blocked = [n for n in convs if shapes[n.input[1]][0] == filters * block * block]
        assert blocked, f"no conv with {filters * block * block} outputs in the {name} network"
        assert any(n.op_type == "DepthToSpace" for n in graph.node)


@pytest.mark.skipif(not {"avx2", "fma"} <= _cpu_flags(), reason="NCHWc needs AVX2 (x86-64)")
def test_the_fast_layout_is_the_one_that_runs_here(models) -> None:
    """On a CPU with AVX2 the runtime check passes, so filters run in the NCHWc layout."""
    assert nchwc_block() == (16 if "avx512f" in _cpu_flags() else 8)
    network = read_network(models["light"][1])
    assert network.block == nchwc_block()
    assert b"com.microsoft.nchwc" in network.onnx_model()


def test_sides_that_are_not_multiples_of_4_are_refused_in_one_line(models) -> None:
    network = read_network(models["light"][1])
    with pytest.raises(RotoscopeError, match="multiples of 4") as caught:
        network.run(np.zeros((1, 30, 40, 3), np.float32))
    assert "\n" not in str(caught.value)


_MEASURE = """
import json, sys
from pathlib import Path
import numpy as np
from rotoscope.filters.inference import read_network

def peak():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

network = read_network(Path(sys.argv[1]))
small = np.zeros((1, 64, 64, 3), np.float32)
network.with_statistics(network.norm_statistics(small))(network.run(small))  # all three sessions
before = peak()
picture = np.random.default_rng(0).uniform(0, 255, (1, 384, 640, 3)).astype(np.float32)
network.run(picture)
network.with_statistics(network.norm_statistics(picture))(picture)
print(json.dumps({"added": peak() - before, "estimate": network.bytes_per_pixel * 384 * 640}))
"""


def test_the_memory_estimate_is_what_a_pass_takes(models) -> None:
    """The tile size comes from ``bytes_per_pixel``: the peak a whole pass, then a probe and a
    fixed pass, add to a fresh process stays under it, and not far under (it is not a guess)."""
    child = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(models["full"][1])], capture_output=True, text=True, check=True
    )
    found = json.loads(child.stdout.strip().splitlines()[-1])
    assert 0.75 * found["estimate"] < found["added"] <= found["estimate"], found
