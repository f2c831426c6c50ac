"""Still pictures: the frame file formats, and photos read and written for print.

Frames (:func:`save_image`) are content-addressed pipeline intermediates: plain pixels, no
metadata. Photos people bring (:func:`open_photo`) and the stills made from them
(:func:`save_picture`) keep what a print needs: the ICC profile, the DPI, EXIF orientation
applied, 16-bit PNG and TIFF read and written at 16 bits, TIFF lossless, JPEG at quality 95.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from rotoscope.errors import RotoscopeError
from rotoscope.store import atomic_write_bytes, require_file

if TYPE_CHECKING:
    from rotoscope.credit import Credit, StillTags

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
DEEP = 65535  # the top of a 16-bit sample; 8-bit value v is 16-bit v * 257 (255 * 257 = 65535)


@dataclass(frozen=True)
class Photo:
    """A photo as read for a print: the 8-bit RGB picture the filters paint, and what the output
    keeps of the photo (its colour profile, resolution, and the 16 bits of a 16-bit photo)."""

    picture: Image.Image  # RGB, upright
    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None
    deep: np.ndarray | None = None  # HxWx3 uint16, upright: a 16-bit photo's own samples


def open_picture(path: Path, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> Image.Image:
    """An RGB picture, upright by its EXIF orientation, refused with a one-line reason if unusable.

    The declared size is checked before any pixel is decoded, so a bomb costs nothing.
    """
    return open_photo(path, max_pixels, min_side, keep_depth=False).picture


def open_photo(
    path: Path, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE, *, keep_depth: bool = True
) -> Photo:
    """Like :func:`open_picture`, with the ICC profile, the DPI and (``keep_depth``) the 16-bit
    samples of a 16-bit PNG or TIFF, so that :func:`save_picture` can keep them."""
    require_file(path, "image")
    try:
        with Image.open(path) as picture:
            _check_size(path, picture, max_pixels, min_side)
            deep_file = _is_deep(picture)  # before getexif(), which may decode a PNG's pixels
            orientation = picture.getexif().get(_ORIENTATION, 1)
            icc, dpi = _print_info(picture)
            picture.load()
            upright = _flatten(ImageOps.exif_transpose(picture))
            deep = _read_deep(path, upright, orientation) if deep_file else None
            if deep is None:
                return Photo(upright, icc, dpi)
            return Photo(_eight_bits(deep), icc, dpi, deep if keep_depth else None)
    except UnidentifiedImageError:
        raise RotoscopeError(path, "not an image Pillow can read (jpg, png, webp, tiff, ...)") from None
    except Image.DecompressionBombError as error:
        raise RotoscopeError(path, f"refused as a decompression bomb ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise RotoscopeError(path, f"damaged image data ({error})") from None


def _check_size(path: Path, picture: Image.Image, max_pixels: int, min_side: int) -> None:
    width, height = picture.size
    if width * height > max_pixels:
        raise RotoscopeError(
            path,
            f"declares {width}x{height} pixels, over the {max_pixels:,}-pixel limit "
            "(a decompression bomb, or resize it first)",
        )
    if min(width, height) < min_side:
        raise RotoscopeError(path, f"too small ({width}x{height}); both sides need {min_side}+ px")


def _print_info(picture: Image.Image) -> tuple[bytes | None, tuple[float, float] | None]:
    """The colour profile and resolution a print needs, as the file declares them."""
    icc = picture.info.get("icc_profile") or None
    dpi = picture.info.get("dpi")
    valid = isinstance(dpi, tuple) and len(dpi) == 2 and all(0 < float(d) < 1e6 for d in dpi)
    return icc, (float(dpi[0]), float(dpi[1])) if valid else None


def _flatten(picture: Image.Image) -> Image.Image:
    """RGB, with any transparency laid over white (as a print would show it). 16-bit grey
    ("I;16", "I") is scaled to 8 bits, not clipped (Pillow's own conversion clips at 255)."""
    if picture.mode.startswith("I"):
        grey = np.clip(np.asarray(picture, dtype=np.float32) / 257 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
        rgba = picture.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return picture.convert("RGB")


# -- 16-bit photos ----------------------------------------------------------------------------------
# Pillow holds no 16-bit colour mode: it reads a 16-bit RGB PNG or TIFF as 8-bit RGB and a 16-bit
# grey one as "I;16", which its RGB conversion clips to white. OpenCV reads and writes them whole.

_ORIENTATION = 0x0112
# EXIF orientation -> the numpy steps that make the stored picture upright (as ImageOps.exif_transpose)
_UPRIGHT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _is_deep(picture: Image.Image) -> bool:
    """A PNG or TIFF with 16 bits a sample (grey, grey + alpha, RGB or RGBA)."""
    if picture.format not in ("PNG", "TIFF") or not picture.tile:
        return False
    args = picture.tile[0].args
    rawmode = args[0] if isinstance(args, tuple) else args
    return isinstance(rawmode, str) and ";16" in rawmode


def _read_deep(path: Path, upright: Image.Image, orientation: object) -> np.ndarray | None:
    """The 16-bit samples, upright, as HxWx3 RGB (alpha laid over white): the picture Pillow
    reads at 8 bits (``upright``), at 16. None when OpenCV reads another picture (signed
    samples, another page), and the photo is then taken at 8 bits."""
    import cv2  # imported here: most photos are 8-bit, and OpenCV takes a while to load

    found = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if found is None or found.dtype != np.uint16:
        return None
    stored = _rgb16(found)
    # TIFF readers turn the picture by its Orientation tag themselves (Pillow 13 and OpenCV 5
    # do), PNG readers do not: whichever way up matches Pillow's upright picture is the one.
    reference = np.asarray(upright, dtype=np.int16)[::8, ::8]
    for turned in (False, True):
        candidate = _upright(stored, orientation) if turned else stored
        eight = np.asarray(_eight_bits(candidate[::8, ::8]), dtype=np.int16)
        if eight.shape == reference.shape and np.abs(eight - reference).mean() < 2:
            return candidate
    return None


def _rgb16(found: np.ndarray) -> np.ndarray:
    """OpenCV's grey, grey + alpha, BGR or BGRA 16-bit samples as RGB (alpha over white)."""
    if found.ndim == 2:
        found = found[..., None]
    colour = found[..., :3][..., ::-1] if found.shape[2] >= 3 else np.repeat(found[..., :1], 3, axis=2)
    if found.shape[2] in (2, 4):  # grey + alpha, or BGRA
        alpha = found[..., -1:].astype(np.float32) / DEEP
        colour = colour * alpha + DEEP * (1 - alpha) + 0.5
    return np.ascontiguousarray(colour, dtype=np.uint16)


def _upright(samples: np.ndarray, orientation: object) -> np.ndarray:
    turn = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return np.ascontiguousarray(turn(samples)) if turn else samples


def _eight_bits(deep: np.ndarray) -> Image.Image:
    """The 8-bit picture of 16-bit samples, rounded: v / 257 to the nearest whole number."""
    return Image.fromarray(((deep.astype(np.uint32) + 128) // 257).astype(np.uint8), "RGB")


def _deepened(picture: Image.Image, photo: Photo) -> np.ndarray:
    """The finished 8-bit picture in 16 bits. Same size as the photo: the photo's own 16-bit
    samples plus the filter's change (so strength 0 gives them back exactly, and smooth skies keep
    their 16-bit gradations); resized: simply widened."""
    styled = np.asarray(picture.convert("RGB"))
    if photo.deep is None or photo.deep.shape != styled.shape:
        return styled.astype(np.uint16) * 257
    painted = np.asarray(photo.picture)
    out = np.empty(styled.shape, dtype=np.uint16)
    for top in range(0, styled.shape[0], 256):  # in bands: a 100 MP photo stays a few MB at a time
        rows = slice(top, top + 256)
        change = (styled[rows].astype(np.int32) - painted[rows]) * 257
        out[rows] = np.clip(change + photo.deep[rows], 0, DEEP)
    return out


# -- writing finished pictures ------------------------------------------------------------------

_SAVE_NAMES = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
# Print grade: JPEG at quality 95 without chroma subsampling; WebP at 95; TIFF lossless (deflate,
# see _encode_tiff).
_SAVE_OPTIONS: dict[str, dict[str, object]] = {
    "JPEG": {"quality": 95, "subsampling": 0},
    "WEBP": {"quality": 95, "method": 4},
    "PNG": {"compress_level": 6},
}
_TIFF_INCH = 2  # the TIFF ResolutionUnit of dots per inch


def save_picture(
    picture: Image.Image, target: Path, *, like: Photo | None = None, credit: Credit | None = None
) -> None:
    """Write a finished picture atomically, in the format its name asks for, with the ICC profile
    and DPI of the photo it was made from (``like``; 16 bits in PNG and TIFF when that photo had
    them) and ``credit`` in its metadata (see :func:`_metadata_options` for what goes where)."""
    fmt = _SAVE_NAMES.get(target.suffix.lower())
    if fmt is None:
        raise RotoscopeError(target, f"unknown picture type; use one of {', '.join(_SAVE_NAMES)}")
    tags = credit.for_still() if credit is not None else None
    deep = like is not None and like.deep is not None
    if fmt == "TIFF":
        samples = _deepened(picture, like) if like is not None and deep else np.asarray(_plain(picture))
        data = _encode_tiff(samples, like, tags)
    elif like is not None and deep and fmt == "PNG":
        data = _encode_deep_png(_deepened(picture, like), like, tags, target)
    else:
        data = _encode(picture, fmt, like, tags)
    atomic_write_bytes(target, data)


def _plain(picture: Image.Image) -> Image.Image:
    return picture if picture.mode in ("RGB", "L") else picture.convert("RGB")


def _encode(picture: Image.Image, fmt: str, like: Photo | None, tags: StillTags | None) -> bytes:
    options = dict(_SAVE_OPTIONS[fmt])
    if like is not None and like.icc_profile:
        options["icc_profile"] = like.icc_profile
    if like is not None and like.dpi and fmt != "WEBP":  # WebP has no resolution field
        options["dpi"] = like.dpi
    if tags is not None:
        options.update(_metadata_options(fmt, tags))
    encoded = io.BytesIO()
    _plain(picture).save(encoded, fmt, **options)
    if tags is not None and fmt == "JPEG":
        return _with_jpeg_segment(encoded.getvalue(), _APP13, tags.photoshop())
    return encoded.getvalue()


# Where a still's credit goes: XMP in every format (JPEG APP1, WebP's XMP chunk, PNG iTXt, TIFF
# tag 700), EXIF IFD0 text in every format (PNG: eXIf; TIFF: its own IFD0), IPTC IIM in TIFF
# (tag 33723) and JPEG (APP13); WebP and PNG have no IIM place (their XMP holds the same). TIFF
# is written by tifffile (:func:`_encode_tiff`), the others by Pillow (and OpenCV for 16-bit PNG).
_PNG_XMP = "XML:com.adobe.xmp"  # the iTXt keyword of XMP in PNG (XMP part 3)
_TIFF_XMP, _TIFF_IPTC, _TIFF_ICC = 700, 33723, 34675
_APP13 = 0xED  # JPEG's Photoshop image resources segment


def _metadata_options(fmt: str, tags: StillTags) -> dict[str, object]:
    """Pillow's save options that write ``tags``."""
    exif = _exif(tags)
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt(_PNG_XMP, tags.xmp.decode())
        return {"exif": exif, "pnginfo": info}
    return {"exif": exif, "xmp": tags.xmp}  # JPEG (Pillow 11+), WebP


def _exif(tags: StillTags) -> Image.Exif:
    exif = Image.Exif()
    for tag, value in tags.exif.items():
        exif[tag] = value
    return exif


def _with_jpeg_segment(data: bytes, marker: int, body: bytes) -> bytes:
    """A JPEG with one more application segment, after those the encoder wrote (JFIF, EXIF,
    XMP, ICC) and before its tables, where readers look for it."""
    at = 2  # after SOI
    while data[at] == 0xFF and 0xE0 <= data[at + 1] <= 0xEF:
        at += 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
    segment = bytes((0xFF, marker)) + struct.pack(">H", 2 + len(body)) + body
    return data[:at] + segment + data[at:]


def _encode_tiff(samples: np.ndarray, like: Photo | None, tags: StillTags | None) -> bytes:
    """A TIFF through tifffile, 8 or 16 bits a sample (Pillow writes no 16-bit colour, nor the
    IIM tag with the LONG type TIFF/EP gives it): deflated with the horizontal predictor, the
    photo's resolution and ICC profile, ``tags`` as TIFF tags."""
    import tifffile  # imported here: only TIFF outputs need it

    icc = like.icc_profile if like is not None else None
    dpi = like.dpi if like is not None else None
    extra: list[tuple[int, int, int | None, object, bool]] = []  # (tag, TIFF type, count, value, once)
    if icc:
        extra.append((_TIFF_ICC, _UNDEFINED, None, icc, True))
    if tags is not None:
        extra += [(tag, _ASCII, None, value, True) for tag, value in tags.exif.items()]
        iim = np.frombuffer(tags.iim + b"\x00" * (-len(tags.iim) % 4), "<u4")  # as LONGs, padded
        extra += [(_TIFF_XMP, _BYTE, None, tags.xmp, True), (_TIFF_IPTC, _LONG, len(iim), iim, True)]
    encoded = io.BytesIO()
    tifffile.imwrite(
        encoded,
        samples,
        byteorder="<",  # the IIM's LONGs above are little-endian
        photometric="rgb" if samples.ndim == 3 else "minisblack",
        compression="adobe_deflate",
        predictor=True,
        resolution=dpi,
        resolutionunit=_TIFF_INCH if dpi else None,
        metadata=None,  # no tifffile shape description
        software=False,
        extratags=extra,
    )
    return encoded.getvalue()


_BYTE, _ASCII, _LONG, _UNDEFINED = 1, 2, 4, 7  # TIFF field types


def _encode_deep_png(samples: np.ndarray, like: Photo, tags: StillTags | None, target: Path) -> bytes:
    """16-bit RGB PNG through OpenCV (Pillow writes no 16-bit colour), then the resolution,
    ICC profile and ``tags`` as chunks."""
    import cv2

    bgr = np.ascontiguousarray(samples[..., ::-1])
    ok, encoded = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise RotoscopeError(target, "OpenCV could not encode the 16-bit picture")
    chunks = []
    if like.dpi:
        pixels_per_metre = (round(like.dpi[0] / 0.0254), round(like.dpi[1] / 0.0254))
        chunks.append(png_chunk(b"pHYs", struct.pack(">IIB", *pixels_per_metre, 1)))
    if like.icc_profile:  # name, NUL, compression method 0 (deflate), the deflated profile
        chunks.append(png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(like.icc_profile)))
    if tags is not None:
        chunks.append(png_chunk(b"eXIf", _exif(tags).tobytes()[6:]))  # without "Exif\0\0"
        # keyword, NUL, uncompressed (0, 0), no language tag, no translated keyword, the text
        chunks.append(png_chunk(b"iTXt", _PNG_XMP.encode() + b"\x00" * 5 + tags.xmp))
    return with_png_chunks(encoded.tobytes(), chunks)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC of type and data."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def with_png_chunks(data: bytes, chunks: list[bytes]) -> bytes:
    """A PNG with ``chunks`` right after its IHDR: before any PLTE and IDAT, where pHYs, iCCP and
    eXIf must be."""
    after_header = 8 + 8 + 13 + 4  # signature, IHDR length + type, IHDR body, its CRC
    return data[:after_header] + b"".join(chunks) + data[after_header:]
