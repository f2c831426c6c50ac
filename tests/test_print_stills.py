"""Print-grade stills: 16-bit PNG and TIFF read properly and written back at 16 bits, TIFF lossless,
JPEG at high quality, the photo's ICC profile, DPI and EXIF orientation respected."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from conftest import rotoscope
from PIL import Image, ImageCms, ImageOps, JpegImagePlugin
from test_credit import exiftool, made_studio, model_md5, needs_exiftool, write_style

from rotoscope.media.images import _UPRIGHT, open_picture, png_chunk, with_png_chunks
from rotoscope.studio import Studio

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Studio:
    root = tmp_path_factory.mktemp("print")
    return made_studio(root, write_style(root / "style.png"))


def gradient16(width: int, height: int) -> np.ndarray:
    """Smooth 16-bit RGB: every channel uses values an 8-bit picture cannot hold."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    red = 1000 + 60000 * x / width
    green = 3000 + 50000 * y / height
    blue = 20000 + 9000 * np.sin(x / 7) * np.cos(y / 5) + 17
    return np.stack([red, green, blue], axis=-1).astype(np.uint16)


def read16(path: Path) -> np.ndarray:
    """RGB samples as the file holds them (OpenCV reads BGR, and grey as one channel)."""
    found = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return found[..., ::-1] if found.ndim == 3 else found


def write_png16(path: Path, rgb: np.ndarray, *chunks: bytes) -> None:
    """A 16-bit RGB PNG as OpenCV writes it, with ``chunks`` after its header."""
    ok, encoded = cv2.imencode(".png", rgb[..., ::-1])
    assert ok
    path.write_bytes(with_png_chunks(encoded.tobytes(), list(chunks)))


def write_inputs(folder: Path) -> dict[str, np.ndarray]:
    """16-bit RGB PNG (one upright, one with an EXIF orientation), 16-bit grey PNG, 16-bit RGB TIFF
    (with an ICC profile, 300 dpi and an orientation), an 8-bit TIFF; what each should look like
    upright, in 16 bits."""
    folder.mkdir()
    rgb, grey = gradient16(80, 48), gradient16(80, 48)[..., 1]
    cv2.imwrite(str(folder / "rgb16.png"), rgb[..., ::-1])
    cv2.imwrite(str(folder / "grey16.png"), grey)
    turned = Image.Exif()
    turned[0x0112] = 8  # shown turned 90 degrees anticlockwise
    profile = png_chunk(b"iCCP", b"sRGB\x00\x00" + zlib.compress(SRGB))
    write_png16(folder / "turned16.png", rgb, png_chunk(b"eXIf", turned.tobytes()[6:]), profile)
    tags = [(0x0112, 3, 1, 6, True), (34675, 7, None, SRGB, True)]  # shown turned 90 degrees clockwise
    tifffile.imwrite(folder / "turned16.tif", rgb, photometric="rgb", resolution=(300, 300), extratags=tags)
    eight = np.asarray(Image.open(folder / "rgb16.png").convert("RGB"))
    Image.fromarray(eight).save(folder / "eight.tif", icc_profile=SRGB, dpi=(300, 300))
    return {
        "rgb16.png": rgb,
        "grey16.png": np.repeat(grey[..., None], 3, axis=2),
        "turned16.png": np.rot90(rgb, 1),
        "turned16.tif": np.rot90(rgb, -1),
        "eight.tif": eight.astype(np.uint16) * 257,
    }


def test_16_bit_photos_come_out_16_bit_and_tiff_losslessly(studio: Studio, tmp_path: Path) -> None:
    expected = write_inputs(tmp_path / "in")
    # the old reading: Pillow turned 16-bit grey into white; now it is the photo at 8 bits
    grey8 = np.asarray(open_picture(tmp_path / "in/grey16.png"), dtype=np.float64)
    assert abs(grey8.mean() - expected["grey16.png"].mean() / 257) < 0.6
    for strength in ("0", "1"):
        out = tmp_path / f"out{strength}"
        rotoscope(
            "stylize-image", str(tmp_path / "in"), "-f", "scream", "-o", str(out), "--strength", strength,
            cwd=studio.root,
        )  # fmt: skip
        for name, upright in expected.items():
            made = out / name.replace(".", ".scream.")
            samples = read16(made)
            with Image.open(made) as picture:
                info = dict(picture.info)
            if name.endswith(".tif"):  # lossless, with the photo's profile and resolution
                assert info["compression"] == "tiff_adobe_deflate" and info["icc_profile"] == SRGB, name
                assert info["dpi"] == (300.0, 300.0), name
            if name == "eight.tif":
                assert samples.dtype == np.uint8, "an 8-bit photo stays 8-bit"
                samples = samples.astype(np.uint16) * 257
            else:
                assert samples.dtype == np.uint16 and samples.shape == upright.shape, name
            if strength == "0":  # the photo's own samples, every one of its 16 bits, upright
                assert np.array_equal(samples, upright), name
                continue
            eight = samples / 257
            assert np.abs(eight - upright / 257).mean() > 10, f"{name}: the filter did something"
            assert (eight > 254.5).mean() < 0.2 and eight.std() > 10, f"{name}: a picture, not a white sheet"


def test_jpeg_out_is_high_quality_with_the_profile(studio: Studio, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    original = gradient16(120, 80)
    write_png16(photo, original, png_chunk(b"iCCP", b"sRGB\x00\x00" + zlib.compress(SRGB)))  # 16-bit
    made = tmp_path / "photo.jpg"
    rotoscope(
        "stylize-image", str(photo), "-f", "scream", "-o", str(made), "--strength", "0", cwd=studio.root
    )
    with Image.open(made) as picture:
        assert picture.info["icc_profile"] == SRGB
        assert JpegImagePlugin.get_sampling(picture) == 0  # 4:4:4, no chroma subsampling
        pixels = np.asarray(picture.convert("RGB"), dtype=np.float64)
    error = pixels - original / 257
    psnr = 10 * np.log10(255**2 / np.mean(error**2))
    assert psnr > 40, f"JPEG at {psnr:.1f} dB"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_16_bit_photos_turn_upright_as_pillow_turns_8_bit_ones(orientation: int) -> None:
    stored = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(5, 3, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    encoded = io.BytesIO()
    Image.fromarray(stored).save(encoded, "PNG", exif=exif)
    with Image.open(encoded) as tagged:
        expected = np.asarray(ImageOps.exif_transpose(tagged))
    turned = _UPRIGHT[orientation](stored) if orientation in _UPRIGHT else stored
    assert np.array_equal(turned, expected)


@needs_exiftool
def test_16_bit_stills_carry_the_credit_and_profile(studio: Studio, tmp_path: Path) -> None:
    write_inputs(tmp_path / "in")
    for name in ("rgb16.png", "grey16.png", "eight.tif"):
        (tmp_path / "in" / name).unlink()
    out = tmp_path / "out"
    rotoscope("stylize-image", str(tmp_path / "in"), "-f", "scream", "-o", str(out), cwd=studio.root)
    made = [out / "turned16.scream.png", out / "turned16.scream.tif"]
    for path, tags in zip(made, exiftool(*made), strict=True):
        assert tags["XMP-rotoscope:ModelMD5"] == model_md5(studio) and tags["IFD0:Artist"] == "Edvard Munch"
        assert tags["XMP-dc:Title"] == "The Scream" and "IFD0:Orientation" not in tags, path.name
        assert tags["ICC_Profile:ProfileDescription"] == "sRGB built-in", path.name  # the photo's
        assert tags["IFD0:Software"].startswith("rotoscope"), path.name
    png, tiff = exiftool(*made)
    assert png["PNG:BitDepth"] == 16 and not any(key.startswith("IPTC:") for key in png)
    assert tiff["IFD0:BitsPerSample"] == "16 16 16" and tiff["IFD0:Compression"] == "Adobe Deflate"
    assert tiff["IPTC:By-line"] == "Edvard Munch" and tiff["IPTC:CodedCharacterSet"] == "UTF8"
    assert tiff["IFD0:Predictor"] == "Horizontal differencing" and tiff["IFD0:ResolutionUnit"] == "inches"
    with Image.open(made[1]) as picture:  # Pillow reads what tifffile wrote, and our PNG chunks
        assert picture.info["icc_profile"] == SRGB and picture.info["dpi"] == (300.0, 300.0)
    with Image.open(made[0]) as picture:
        assert picture.info["icc_profile"] == SRGB
        assert b"rotoscope:ModelMD5" in picture.info["xmp"] and picture.getexif()[0x013B] == "Edvard Munch"
