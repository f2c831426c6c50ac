"""Still pictures: the frame file formats and their encoding."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from rotoscope.errors import RotoscopeError

FORMATS = ("jpg", "png", "webp")
_PIL_NAMES = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}


def save_image(image: Image.Image, target: Path, fmt: str, quality: int) -> None:
    """Encode straight into a file: Pillow then releases the GIL, so threads encode in parallel
    (encoding into a BytesIO holds it)."""
    image.save(target, _PIL_NAMES[fmt], **_options(fmt, quality))


def _options(fmt: str, quality: int) -> dict[str, object]:
    if fmt not in _PIL_NAMES:
        raise ValueError(f"unknown frame format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "jpg":
        return {"quality": quality, "optimize": False}
    if fmt == "webp":
        return {"quality": quality, "method": 4}
    return {"compress_level": 6}


def encode_image(image: Image.Image, fmt: str, quality: int) -> bytes:
    """Encode deterministically: the same picture and settings give the same bytes, so the same md5."""
    options = _options(fmt, quality)
    buffer = io.BytesIO()
    image.save(buffer, _PIL_NAMES[fmt], **options)
    return buffer.getvalue()


def load_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise RotoscopeError(path, f"not a readable image ({error})") from None
