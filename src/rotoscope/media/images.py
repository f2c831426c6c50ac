"""Still pictures: the frame file formats and their encoding."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from rotoscope.errors import RotoscopeError
from rotoscope.store import require_file, temp_beside

FORMATS = ("jpg", "png", "webp")
_PIL_NAMES = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
_ACCEPTS = {"jpg": ("RGB", "RGBX"), "png": ("RGB",), "webp": ("RGB",)}  # RGBX is RGB + padding


def save_image(image: Image.Image, target: Path, fmt: str, quality: int) -> None:
    """Encode straight into a file: Pillow then releases the GIL, so threads encode in parallel
    (encoding into a BytesIO holds it)."""
    options = _options(fmt, quality)
    if image.mode not in _ACCEPTS[fmt]:
        image = image.convert("RGB")
    image.save(target, _PIL_NAMES[fmt], **options)


def _options(fmt: str, quality: int) -> dict[str, object]:
    if fmt not in _PIL_NAMES:
        raise ValueError(f"unknown frame format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "jpg":
        return {"quality": quality, "optimize": False}
    if fmt == "webp":
        return {"quality": quality, "method": 4}
    return {"compress_level": 6}


# -- reading pictures people bring: photos and style images ------------------------------------

MAX_PIXELS = 120_000_000  # 12000x10000; more is far beyond any photo and likely a decompression bomb
MIN_SIDE = 16  # the networks downsample 4x and pad by reflection; smaller pictures carry no style


def open_picture(path: Path, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> Image.Image:
    """An RGB picture, upright by its EXIF orientation, refused with a one-line reason if unusable.

    The declared size is checked before any pixel is decoded, so a bomb costs nothing.
    """

    require_file(path, "image")
    try:
        with Image.open(path) as picture:
            width, height = picture.size
            if width * height > max_pixels:
                raise RotoscopeError(
                    path,
                    f"declares {width}x{height} pixels, over the {max_pixels:,}-pixel limit "
                    "(a decompression bomb, or resize it first)",
                )
            if min(width, height) < min_side:
                raise RotoscopeError(path, f"too small ({width}x{height}); both sides need {min_side}+ px")
            picture.load()
            upright = ImageOps.exif_transpose(picture)
            return _flatten(upright)
    except UnidentifiedImageError:
        raise RotoscopeError(path, "not an image Pillow can read (jpg, png, webp, tiff, ...)") from None
    except Image.DecompressionBombError as error:
        raise RotoscopeError(path, f"refused as a decompression bomb ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise RotoscopeError(path, f"damaged image data ({error})") from None


def _flatten(picture: Image.Image) -> Image.Image:
    """RGB, with any transparency laid over white (as a print would show it)."""
    if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
        rgba = picture.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return picture.convert("RGB")


_SAVE_NAMES = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


def save_picture(picture: Image.Image, target: Path) -> None:
    """Write a finished picture atomically, in the format its name asks for."""
    fmt = _SAVE_NAMES.get(target.suffix.lower())
    if fmt is None:
        raise RotoscopeError(target, f"unknown picture type; use one of {', '.join(_SAVE_NAMES)}")
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    with temp_beside(target) as temp:
        picture.save(temp, fmt, **options)
        os.replace(temp, target)
