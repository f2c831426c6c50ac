"""Distilling a trained filter from the instant network: the teacher's paintings and the loss.

On a CPU the perceptual recipe (a VGG16 forward and backward pass per step) gets a few hundred
steps in a quarter of an hour, and a light network trained that way barely carries its painting.
Magenta's arbitrary-style network (the instant filter) already paints the style well; what it
lacks is speed. So the recipe ``teacher: instant`` has the instant filter of the same style image
paint crops of the training pictures, and trains the network to paint each crop as the teacher
did, with a pixel loss: no loss network, so a step costs a few passes of the light network.

The teacher paints each *crop*, not the whole picture then cropped, and crops are not mirrored,
because its painting of a place depends on more than that place (measured on a shared photo):

- its instance norms take the statistics of what it is given: a 160 px crop of its painting of
  a whole photo differs from its painting of that crop by 26 levels (of 255) on average, 23
  away from the crop's borders, mostly in colour. The student, normalising over its crop,
  could only learn the average of the two.
- its two stride-2 convolutions make its strokes depend on where a pixel falls in a 4x4 grid:
  shifting the photo by 1 or 2 pixels changes the painting by 27 levels, by 4 pixels by 8.

Crops are taken from the pictures shrunk to ``teacher_side`` at most (never enlarged, unless a
short side is below the crop), the scale footage is painted at, so the strokes are the size the
instant filter paints. They are cached in the studio's scratch folder under a key of what made
them (the picture's md5 and scale, the crop, the style's embedding, the network file, the apply
code's version), so a resumed or repeated training repaints nothing; the cache keeps only the
last run's crops.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from rotoscope.filters import instant
from rotoscope.media.images import open_picture
from rotoscope.store import temp_beside

if TYPE_CHECKING:
    from rotoscope.filters.train import Objective, Progress, TrainRecipe

PAINTING_SUFFIX = ".png"  # lossless: the painting is learnt pixel for pixel


@dataclass(frozen=True)
class Teacher:
    """The instant network driven by the style image's embedding, and what identifies it."""

    embedding: np.ndarray

    @classmethod
    def for_style(cls, style_path: Path) -> Teacher:
        return cls(instant.embed_style(open_picture(style_path)))

    def identity(self) -> dict[str, Any]:
        """What the card records and the resume key holds: another teacher paints differently."""
        from rotoscope.filters.apply import APPLY_VERSION

        return {
            "kind": "instant",
            "network": instant.NETWORK_NAME,
            "network_md5": instant.network_md5(),
            "embedding_md5": hashlib.md5(self.embedding.astype("<f4").tobytes()).hexdigest(),
            "apply_version": APPLY_VERSION,
        }

    def paint(self, picture: np.ndarray) -> np.ndarray:
        """The instant filter's painting of an HxWx3 uint8 picture, as uint8 (what it writes)."""
        from rotoscope.filters.apply import InstantStylizer

        painted = InstantStylizer("teacher", self.embedding).stylize(picture.astype(np.float32))
        return np.clip(painted + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Crops:
    pictures: np.ndarray  # N x size x size x 3 uint8: crops of the training pictures
    paintings: np.ndarray  # the teacher's painting of each
    painted: int  # how many were painted in this run (the others came from the cache)
    seconds: float  # spent painting them


def scaled_picture(path: Path, side: int, crop: int) -> np.ndarray:
    """The picture with its longest side at most ``side``, enlarged only if a short side is
    below ``crop``."""
    picture = open_picture(path)
    scale = max(min(1.0, side / max(picture.size)), crop / min(picture.size))
    if scale != 1.0:
        size = (max(crop, round(picture.width * scale)), max(crop, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(picture, dtype=np.uint8)


def crop_counts(pictures: int, crops: int) -> list[int]:
    """``crops`` spread as evenly as can be over ``pictures`` (the first ones get one more)."""
    share, extra = divmod(crops, pictures)
    return [share + (i < extra) for i in range(pictures)]


def crop_corners(md5: str, shape: tuple[int, ...], count: int, size: int, seed: int) -> list[tuple[int, int]]:
    """Where a picture's crops lie: drawn from its own md5 and the seed, so they stay the same
    (and stay cached) when other pictures come or go."""
    rng = np.random.default_rng([seed, int(md5, 16)])
    return [
        (int(rng.integers(shape[0] - size + 1)), int(rng.integers(shape[1] - size + 1))) for _ in range(count)
    ]


def paint_crops(
    files: list[Path],
    md5s: list[str],
    teacher: Teacher,
    recipe: TrainRecipe,
    cache: Path,
    progress: Progress,
) -> Crops:
    """Every crop of the training pictures beside the teacher's painting of it."""
    import time

    began = time.monotonic()
    size, identity = recipe.size, teacher.identity()
    counts = crop_counts(len(files), recipe.teacher_crops)
    pictures = np.empty((sum(counts), size, size, 3), dtype=np.uint8)
    paintings = np.empty_like(pictures)
    cache.mkdir(parents=True, exist_ok=True)
    keep, slot, painted = set(), 0, 0
    with progress("paint", len(pictures), "crops") as update:
        for path, md5, count in zip(files, md5s, counts, strict=True):
            if not count:
                continue
            picture = scaled_picture(path, recipe.teacher_side, size)
            for top, left in crop_corners(md5, picture.shape, count, size, recipe.seed):
                crop = picture[top : top + size, left : left + size]
                key = _painting_key(md5, picture.shape, (top, left, size), identity)
                target = cache / f"{key}{PAINTING_SUFFIX}"
                painting = _cached(target, crop.shape)
                if painting is None:
                    painting = teacher.paint(crop)
                    _write_painting(painting, target)
                    painted += 1
                pictures[slot], paintings[slot] = crop, painting
                keep.add(target.name)
                slot += 1
                update(slot, f"{painted} painted, {slot - painted} cached")
    for stale in cache.iterdir():  # crops of pictures no longer trained on, or of another teacher
        if stale.name not in keep:
            stale.unlink(missing_ok=True)
    return Crops(pictures, paintings, painted, time.monotonic() - began)


def _painting_key(
    md5: str, shape: tuple[int, ...], crop: tuple[int, int, int], identity: dict[str, Any]
) -> str:
    made_of = {"picture": md5, "scaled": list(shape), "crop": list(crop), "teacher": identity}
    return hashlib.md5(json.dumps(made_of, sort_keys=True).encode()).hexdigest()


def _cached(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """A painting an earlier run wrote, or None when it is missing, damaged or the wrong size."""
    try:
        with Image.open(path) as stored:
            if stored.format != "PNG" or stored.mode != "RGB" or stored.size != (shape[1], shape[0]):
                return None
            return np.asarray(stored, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _write_painting(painting: np.ndarray, target: Path) -> None:
    with temp_beside(target) as temp:
        Image.fromarray(painting).save(temp, format="PNG", compress_level=1)
        temp.replace(target)


def draw_crops(crops: Crops, batch: int, seed: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """A batch of crops and their paintings, drawn by (seed, step) so a resumed run sees the
    batches an uninterrupted one would."""
    picks = np.random.default_rng([seed, step]).integers(len(crops.pictures), size=batch)
    return crops.pictures[picks].astype(np.float32), crops.paintings[picks].astype(np.float32)


def objective(
    files: list[Path],
    md5s: list[str],
    teacher: Teacher,
    recipe: TrainRecipe,
    cache: Path,
    progress: Progress,
) -> Objective:
    """The distillation objective: paint (or find) the crops, then a pixel loss against them."""
    from rotoscope.filters.train import Objective

    crops = paint_crops(files, md5s, teacher, recipe, cache, progress)
    record = {
        **teacher.identity(),
        "crops": len(crops.pictures),
        "painted": crops.painted,
        "paint_seconds": round(crops.seconds, 2),
    }
    return Objective(
        lambda step: draw_crops(crops, recipe.batch, recipe.seed, step),
        _losses(recipe.edge_weight, recipe.texture_weight),
        record,
    )


def _losses(edge_weight: float, texture_weight: float):
    """Charbonnier distance to the teacher's painting (colours 0-1), the same on the image
    gradients (strokes' edges), and the energy of fine detail per channel."""
    from rotoscope.filters.backend import tf

    def gradients(picture):
        return picture[:, 1:] - picture[:, :-1], picture[:, :, 1:] - picture[:, :, :-1]

    def losses(transformer, pictures, paintings):
        out = transformer(pictures, training=True) / 255.0
        target = paintings / 255.0
        pixel = _charbonnier(tf, out - target)
        edge = edge_weight * tf.add_n(
            [tf.reduce_mean(tf.abs(a - b)) for a, b in zip(gradients(out), gradients(target), strict=True)]
        )
        terms = {"pixel": pixel, "edge": edge}
        if texture_weight:  # on what is applied: a few unclipped spikes would fake the energy
            clipped = tf.clip_by_value(out, 0.0, 1.0)
            terms["texture"] = texture_weight * _detail_energy_gap(tf, clipped, target)
        return {"total": tf.add_n(list(terms.values())), **terms}

    return losses


def _charbonnier(tf: Any, difference):
    return tf.reduce_mean(tf.sqrt(difference * difference + 1e-6))


def _detail_energy_gap(tf: Any, out, target):
    """How far the spread of fine detail (the picture minus its 3x3 mean, at full and half size)
    of each crop and channel is from the teacher's. A pixel loss alone learns the average of
    strokes it cannot place exactly: a blur with ~40% of the teacher's Laplacian energy."""
    box = tf.constant(np.full((3, 3, 3, 1), 1 / 9, dtype=np.float32))

    def detail(picture):
        return picture[:, 1:-1, 1:-1] - tf.nn.depthwise_conv2d(picture, box, [1, 1, 1, 1], "VALID")

    gaps = []
    for level in range(2):
        if level:
            out, target = tf.nn.avg_pool2d(out, 2, 2, "VALID"), tf.nn.avg_pool2d(target, 2, 2, "VALID")
        spread_out = tf.math.reduce_std(detail(out), axis=[1, 2])
        spread_target = tf.math.reduce_std(detail(target), axis=[1, 2])
        gaps.append(tf.reduce_mean(tf.abs(spread_out - spread_target)))
    return tf.add_n(gaps)
