"""One way to apply any filter to a picture: strength, colour preservation, size, and tiling.

A :class:`Stylizer` turns an RGB array into the same-sized stylized array. Trained filters run
their network (in ONNX Runtime, see :mod:`inference`) on the whole picture, or, when it would not
fit the memory budget, on overlapping tiles whose overlaps are cross-faded so no seam shows.
Instant filters paint at the picture's own size too, tiled the same way (see :mod:`instant`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from rotoscope.errors import ParamsError, RotoscopeError
from rotoscope.filters import instant
from rotoscope.filters.brush import check_brush, paint_at_brush
from rotoscope.filters.card import load_card
from rotoscope.filters.catalogue import filter_entry
from rotoscope.filters.inference import StyleNetwork, read_network
from rotoscope.heap import suit_heap_to
from rotoscope.store import md5_file, require_file
from rotoscope.studio import Studio

APPLY_VERSION = 4  # bump when a change here changes what a filter makes of a picture (reuse keys)
DEFAULT_MEMORY_MB = 1024
MIN_MEMORY_MB, MAX_MEMORY_MB = 64, 1 << 20  # below 64 MB a tile is thinner than its overlaps
TILE_OVERLAP = 64


class Stylizer(Protocol):
    name: str

    def stylize(self, picture: np.ndarray) -> np.ndarray:
        """HxWx3 float32 RGB 0-255 in, the same shape out (unclipped)."""
        ...


@dataclass(frozen=True)
class ApplySettings:
    strength: float = 1.0  # 0 keeps the photo, 1 is the filter alone
    preserve_color: bool = False  # keep the photo's colours, take the filter's light and texture
    max_side: int | None = None  # shrink the photo first (longest side, pixels)
    brush: float = 1.0  # the network paints the photo shrunk by this: larger strokes (see brush.py)

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise RotoscopeError(None, f"strength must be between 0 and 1, not {self.strength}")
        if self.max_side is not None and self.max_side < 16:
            raise RotoscopeError(None, f"max side must be at least 16 pixels, not {self.max_side}")
        check_brush(self.brush)


class TrainedStylizer:
    """A trained style network, tiled when a picture is larger than the memory budget allows."""

    def __init__(self, name: str, network: StyleNetwork, memory_mb: int = DEFAULT_MEMORY_MB) -> None:
        self.name = name
        self.model = network
        # the network's measured peak per pixel (inference.working_bytes_per_pixel): whole pictures
        # up to the budget, so 720p runs in one pass at the default and a 4K photo in tiles
        pixels = memory_mb * 2**20 / network.bytes_per_pixel
        self.tile_side = max(4 * TILE_OVERLAP, int(math.sqrt(pixels)) // 4 * 4)

    def stylize(self, picture: np.ndarray) -> np.ndarray:
        height, width = picture.shape[:2]
        if height * width <= self.tile_side**2:
            return self.network(picture)
        return self.tiled(picture, self.tile_side, self.tile_side**2)

    def network(self, picture: np.ndarray) -> np.ndarray:
        """The network on one whole picture."""
        return _padded_run(self.model.run, picture)

    def tiled(self, picture: np.ndarray, tile_side: int, stats_pixels: int) -> np.ndarray:
        """Overlapping tiles that share one set of normalisation statistics.

        Instance norm measured per tile would light each tile differently (a sky tile, a ground
        tile) and leave seams; the statistics are measured once, on the picture shrunk to at most
        ``stats_pixels`` (what the budget allows in one pass), and every tile uses them.
        """
        height, width = picture.shape[:2]
        scale = min(1.0, math.sqrt(stats_pixels / (height * width)))
        proxy = picture
        if scale < 1:
            size = (max(16, round(width * scale)), max(16, round(height * scale)))
            proxy = np.asarray(
                Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8)).resize(size, Image.Resampling.BOX),
                dtype=np.float32,
            )
        frozen = self.model.with_statistics(self.model.norm_statistics(_pad4(proxy)[None]))
        return stylize_tiled(lambda tile: _padded_run(frozen, tile), picture, tile_side, TILE_OVERLAP)


def _pad4(picture: np.ndarray) -> np.ndarray:
    """Reflection padding to a multiple of 4, which the network's two stride-2 convs need."""
    height, width = picture.shape[:2]
    if height % 4 == 0 and width % 4 == 0:
        return picture
    return np.pad(picture, ((0, -height % 4), (0, -width % 4), (0, 0)), mode="reflect")


def _padded_run(run, picture: np.ndarray) -> np.ndarray:
    height, width = picture.shape[:2]
    return np.asarray(run(_pad4(picture)[None]))[0, :height, :width]


# ONNX Runtime's peak for the instant transformer, per painted pixel, its input and output included
# (measured with ru_maxrss at 1 to 3.4 megapixels: 240 to 300 bytes; the arena is off)
_INSTANT_BYTES_PER_PIXEL = 320
# Its receptive field reaches about 60 px (ten 3x3 convolutions at quarter size, two 9x9 ones):
# with 64 px of cross-fade, tiles with the whole picture's statistics matched it at 39 dB; 96, 44 dB
INSTANT_OVERLAP = 96


class InstantStylizer:
    """Magenta's arbitrary-style transformer driven by one style's embedding, painting at the
    picture's own size: in one pass when it fits the memory budget, else in tiles sharing one set
    of normalisation statistics (as :meth:`TrainedStylizer.tiled` does)."""

    def __init__(self, name: str, embedding: np.ndarray, memory_mb: int = DEFAULT_MEMORY_MB) -> None:
        self.name = name
        self.embedding = embedding
        self.max_pixels = memory_mb * 2**20 // _INSTANT_BYTES_PER_PIXEL
        self.tile_side = max(4 * INSTANT_OVERLAP, math.isqrt(self.max_pixels) // 4 * 4)

    def stylize(self, picture: np.ndarray) -> np.ndarray:
        height, width = picture.shape[:2]
        if height * width <= self.max_pixels:
            return self.network(picture)
        return self.tiled(picture, self.tile_side_for(height, width), self.max_pixels)

    def tile_side_for(self, height: int, width: int) -> int:
        """The smallest tile side (a multiple of 4) that covers the picture in as few tiles as the
        budget's largest would: a 3840x2160 photo takes 3x2 tiles of 1828 px, or of 1344."""
        side = 4 * INSTANT_OVERLAP
        for length in (height, width):
            count = len(tile_starts(length, self.tile_side, INSTANT_OVERLAP))
            side = max(side, math.ceil((length - INSTANT_OVERLAP) / count) + INSTANT_OVERLAP)
        return min(self.tile_side, -(-side // 4) * 4)

    def network(self, picture: np.ndarray) -> np.ndarray:
        """The transformer on one whole picture (0-255 in and out)."""
        painted = instant.transform(picture / np.float32(255), self.embedding)
        painted *= 255
        return painted

    def tiled(self, picture: np.ndarray, tile_side: int, stats_pixels: int) -> np.ndarray:
        """Overlapping tiles lit by the statistics of the picture shrunk to ``stats_pixels``."""
        proxy = _shrunk_to(picture, stats_pixels) / np.float32(255)
        stats = instant.norm_statistics(proxy, self.embedding)

        def paint(tile: np.ndarray) -> np.ndarray:
            painted = instant.transform_with(tile / np.float32(255), self.embedding, stats)
            painted *= 255
            return painted

        return stylize_tiled(paint, picture, tile_side, INSTANT_OVERLAP)


def _shrunk_to(picture: np.ndarray, pixels: int) -> np.ndarray:
    """The picture box-filtered down to at most ``pixels`` (unchanged if it is that small)."""
    height, width = picture.shape[:2]
    scale = math.sqrt(pixels / (height * width))
    if scale >= 1:
        return picture
    size = (max(16, math.floor(width * scale)), max(16, math.floor(height * scale)))
    small = Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8)).resize(size, Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)


def load_stylizer(studio: Studio, name: str, memory_mb: int = DEFAULT_MEMORY_MB) -> Stylizer:
    """The filter ``name``, checked against its card: a model that is not the card's is refused."""
    if not isinstance(memory_mb, int) or not MIN_MEMORY_MB <= memory_mb <= MAX_MEMORY_MB:
        raise ParamsError(
            None,
            f"--memory-mb must be a whole number from {MIN_MEMORY_MB} to {MAX_MEMORY_MB}, not {memory_mb}",
        )
    entry = filter_entry(studio, name)
    card = load_card(entry.card)
    if card.model is None:
        raise RotoscopeError(entry.card, f"filter {name!r} has no model yet (run `dvc repro`)")
    if not entry.model.is_file():
        raise RotoscopeError(entry.model, "model file missing (run `dvc pull` or `dvc repro`)")
    if md5_file(entry.model) != card.model["md5"]:
        raise RotoscopeError(entry.model, "model file is not the one its card records (run `dvc checkout`)")
    return stylizer_from_file(name, entry.kind, entry.model, memory_mb)


def stylizer_from_file(name: str, kind: str, model: Path, memory_mb: int = DEFAULT_MEMORY_MB) -> Stylizer:
    """A filter from its model file alone (a cluster worker's copy, already checked by md5)."""
    if kind == "instant":
        return InstantStylizer(name, instant.load_embedding(model), memory_mb)
    return TrainedStylizer(name, read_network(model), memory_mb)


def apply_filter(stylizer: Stylizer, photo: Image.Image, settings: ApplySettings) -> Image.Image:
    """The photo through the filter, at ``settings``' strength, colour and size."""
    photo = fit_within(photo, settings.max_side)
    suit_heap_to(photo.width * photo.height)
    if settings.strength == 0:
        return photo.copy()
    original = np.asarray(photo, dtype=np.float32)
    styled = np.clip(paint_at_brush(stylizer.stylize, original, settings.brush), 0, 255)  # new, writable
    if settings.preserve_color:
        styled = keep_colours(styled, original)
    if settings.strength < 1:  # in place: a 4K picture is 100 MB per float copy
        styled *= settings.strength
        styled += (1 - settings.strength) * original
    styled += 0.5
    return Image.fromarray(np.clip(styled, 0, 255, out=styled).astype(np.uint8))


def fit_within(photo: Image.Image, max_side: int | None) -> Image.Image:
    """The photo shrunk (never enlarged) so its longest side is at most ``max_side``."""
    size = fit_size(photo.size, max_side)
    return photo if size == photo.size else photo.resize(size, Image.Resampling.LANCZOS)


def fit_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """A picture's size once :func:`fit_within` has shrunk it."""
    if not max_side or max(size) <= max_side:
        return size
    scale = max_side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def keep_colours(styled: np.ndarray, original: np.ndarray) -> np.ndarray:
    """The stylized luminance with the original's chroma (Gatys et al. 2016, luminance transfer)."""
    luma = Image.fromarray(styled.astype(np.uint8)).convert("YCbCr").getchannel("Y")
    _, cb, cr = Image.fromarray(original.astype(np.uint8)).convert("YCbCr").split()
    return np.asarray(Image.merge("YCbCr", (luma, cb, cr)).convert("RGB"), dtype=np.float32)


# -- tiles ---------------------------------------------------------------------------------------


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles start along one axis so they cover it with at least ``overlap`` shared pixels."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1)
    return [round(i * step) for i in range(count)]


def _ramp(length: int, start: int, size: int, overlap: int) -> np.ndarray:
    """1 inside the tile, rising linearly across an overlap at any edge that is not the picture's."""
    weights = np.ones(size, dtype=np.float32)
    fade = np.linspace(0, 1, overlap + 2, dtype=np.float32)[1:-1]
    if start > 0:
        weights[:overlap] = np.minimum(weights[:overlap], fade)
    if start + size < length:
        weights[-overlap:] = np.minimum(weights[-overlap:], fade[::-1])
    return weights


def stylize_tiled(network, picture: np.ndarray, tile: int, overlap: int) -> np.ndarray:
    """Run ``network`` on overlapping tiles and cross-fade them into one picture."""
    height, width = picture.shape[:2]
    if tile < 3 * overlap:  # thinner tiles would be mostly fade, and their edges meet
        raise ValueError(f"tiles of {tile} px are too small for an overlap of {overlap} px")
    total = np.zeros((height, width, 3), dtype=np.float32)
    weight = np.zeros((height, width, 1), dtype=np.float32)
    for top in tile_starts(height, tile, overlap):
        for left in tile_starts(width, tile, overlap):
            bottom, right = min(height, top + tile), min(width, left + tile)
            styled = network(picture[top:bottom, left:right])
            ramp = np.outer(
                _ramp(height, top, bottom - top, overlap), _ramp(width, left, right - left, overlap)
            )[..., None]
            total[top:bottom, left:right] += styled * ramp
            weight[top:bottom, left:right] += ramp
    total /= weight
    return total


@dataclass(frozen=True)
class PictureJob:
    source: Path
    target: Path


def picture_jobs(source: Path, out: Path, filter_name: str) -> list[PictureJob]:
    """Which pictures ``stylize-image`` reads and writes. A folder's photos go into the folder ``out``
    as ``<stem>.<filter>.<ext>`` (PNG where the type cannot be written, a BMP say), skipping its
    own earlier outputs when ``out`` is the same folder; one photo goes to ``out``, or into it
    when ``out`` is a folder."""
    if not source.is_dir():
        require_file(source, "photo")
        target = out / _output_name(source, filter_name) if out.is_dir() else out
        return [PictureJob(source, target)]
    if out.exists() and not out.is_dir():
        raise RotoscopeError(out, "a folder of photos needs a folder to write into, not a file")
    same_folder = out.resolve() == source.resolve()
    jobs = [
        PictureJob(photo, out / _output_name(photo, filter_name))
        for photo in picture_files(source)
        if not (same_folder and _is_output(photo, filter_name))
    ]
    if not jobs:
        raise RotoscopeError(source, "only stylized outputs in this folder, no photos")
    return jobs


def _output_name(photo: Path, filter_name: str) -> str:
    suffix = photo.suffix.lower() if photo.suffix.lower() in WRITABLE_SUFFIXES else ".png"
    return f"{photo.stem}.{filter_name}{suffix}"


def _is_output(photo: Path, filter_name: str) -> bool:
    """``<stem>.<filter>.<ext>``: what an earlier run with this filter wrote."""
    return Path(photo.stem).suffix == f".{filter_name}"


def picture_files(path: Path) -> list[Path]:
    """A photo, or the photos in a folder (not recursive), sorted."""
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
        if not found:
            raise RotoscopeError(path, f"no photos in this folder ({', '.join(PHOTO_SUFFIXES)})")
        return found
    return [path]


PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")
WRITABLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff")  # see images.save_picture
