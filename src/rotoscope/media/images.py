"""Still pictures: the frame file formats and their encoding."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

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
