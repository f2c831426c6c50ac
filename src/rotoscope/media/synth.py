"""Generated media: the built-in sample clip and the clips the tests need.

Nothing here is third-party media: a landscape is drawn from noise and sines, the camera pans
and drifts over it, and a chord plays underneath.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from rotoscope.media.encode import EncodeSettings, encode_video
from rotoscope.store import temp_beside

CLIP_QUALITY = EncodeSettings(crf=16, preset="veryfast")
LOSSLESS = EncodeSettings(
    codec="libx264", crf=None, preset="veryfast", pix_fmt="yuv444p", options={"qp": "0"}
)


def landscape(width: int, height: int, seed: int = 7) -> np.ndarray:
    """A sunset over layered hills with textured ground, as an RGB array."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height)[:, None]
    x = np.linspace(0.0, 1.0, width)[None, :]
    sky_top, sky_low = np.array([40, 80, 160.0]), np.array([250, 170, 90.0])
    picture = sky_top + (sky_low - sky_top) * (y[..., None] ** 0.8) + 0 * x[..., None]
    sun = np.hypot((x - 0.62) * width / height, y - 0.42) < 0.07
    picture[sun] = [255, 230, 160]
    ridges = [(0.45, [95, 90, 130]), (0.58, [60, 85, 80]), (0.72, [40, 70, 40])]
    for depth, (base, colour) in enumerate(ridges):
        line = np.full(width, base)
        for _ in range(5):
            frequency = rng.uniform(1.5, 9.0) * (depth + 1)
            line += rng.uniform(0.01, 0.05) * np.sin(2 * np.pi * (frequency * x[0] + rng.random()))
        mask = y >= line[None, :]
        shade = np.asarray(colour, dtype=float) * (0.85 + 0.3 * (y - base).clip(0, 1))[..., None]
        picture = np.where(mask[..., None], shade, picture)
    grain = rng.normal(0, 9, (height, width, 1)) * (y[..., None] > 0.5)
    return np.clip(picture + grain, 0, 255).astype(np.uint8)


def panning_pictures(
    size: tuple[int, int],
    count: int,
    step: float = 3.0,
    seed: int = 7,
) -> Iterator[Image.Image]:
    """Pictures of a camera moving right across a landscape, drifting and zooming slightly."""
    width, height = size
    scene = landscape(int(width * 1.5 + step * count) + 8, int(height * 1.3) + 8, seed)
    for k in range(count):
        zoom = 1.0 + 0.15 * k / max(count - 1, 1)
        crop_w, crop_h = width * 1.2 / zoom, height * 1.2 / zoom
        left = step * k
        top = (scene.shape[0] - crop_h) * (0.5 + 0.3 * np.sin(k / 17.0)) / 1.0
        box = (left, top, left + crop_w, top + crop_h)
        yield Image.fromarray(scene).resize(size, Image.Resampling.BILINEAR, box=box)


def chord(seconds: float, rate: int = 44100) -> np.ndarray:
    """A slowly breathing A major chord, stereo, as float32 planes in -1..1."""
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63)) / 3
    left = 0.4 * tone * (0.75 + 0.25 * np.sin(2 * np.pi * 0.5 * t))
    right = 0.4 * tone * (0.75 + 0.25 * np.cos(2 * np.pi * 0.5 * t))
    return np.stack([left, right]).astype(np.float32)


def write_audio(path: Path, samples: np.ndarray, rate: int = 44100) -> None:
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "stereo"
        chunk = 1024
        for start in range(0, samples.shape[1], chunk):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[:, start : start + chunk]),
                format="fltp",
                layout="stereo",
            )
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def write_clip(
    path: Path,
    pictures: Sequence[Image.Image] | Iterator[Image.Image],
    pts: Sequence[int],
    *,
    time_base: Fraction,
    end_pts: int,
    size: tuple[int, int],
    audio: bool = True,
    rotation: int = 0,
    settings: EncodeSettings = CLIP_QUALITY,
) -> None:
    """Encode generated pictures at the given timestamps, with a chord as long as the clip."""
    seconds = float((end_pts - pts[0]) * time_base)
    with temp_beside(path.with_suffix(".m4a")) as sound:
        if audio:
            write_audio(sound, chord(seconds))
        encode_video(
            path,
            pictures,
            pts,
            time_base=time_base,
            end_pts=end_pts,
            size=size,
            settings=settings,
            audio_source=sound if audio else None,
            display_rotation=rotation,
        )


def constant_rate_clip(
    path: Path,
    *,
    size: tuple[int, int] = (320, 180),
    fps: int = 25,
    seconds: float = 2.0,
    audio: bool = True,
    rotation: int = 0,
    settings: EncodeSettings | None = None,
    seed: int = 7,
) -> Path:
    count = round(fps * seconds)
    time_base = Fraction(1, fps * 512)
    pts = [k * 512 for k in range(count)]
    write_clip(
        path,
        panning_pictures(size, count, seed=seed),
        pts,
        time_base=time_base,
        end_pts=count * 512,
        size=size,
        audio=audio,
        rotation=rotation,
        settings=settings or CLIP_QUALITY,
    )
    return path


def make_sample(path: Path) -> Path:
    """The built-in sample: 4 s of a camera gliding over a generated valley at dusk, with sound."""
    return constant_rate_clip(path, size=(640, 360), fps=25, seconds=4.0, audio=True)


def painting(width: int, height: int, seed: int = 3) -> np.ndarray:
    """A generated style image: bold swirling bands in a strong palette, like thick brushwork."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    field = np.zeros((height, width))
    for _ in range(6):
        cx, cy, k = rng.random(), rng.random(), rng.uniform(8, 20)
        angle = np.arctan2(y - cy, x - cx)
        field += np.sin(k * np.hypot(x - cx, y - cy) + 3 * angle + rng.uniform(0, 6.28))
    bands = (np.floor((field - field.min()) / np.ptp(field) * 5.999)).astype(int)
    palette = np.array([[20, 40, 120], [240, 200, 40], [200, 60, 30], [30, 130, 160], [245, 240, 220]])
    strokes = rng.normal(0, 18, (height, width, 1)) * np.sin(40 * (x + y))[..., None]
    colours = palette[bands % len(palette)]
    return np.clip(colours + strokes, 0, 255).astype(np.uint8)
