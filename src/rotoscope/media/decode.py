"""Decoding a video into upright RGB pictures with their exact presentation timestamps."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from rotoscope.errors import ParamsError, RotoscopeError
from rotoscope.media.probe import VideoInfo, normalise_rotation, open_input

# Turning the stored picture counter-clockwise by the display rotation makes it upright.
_UPRIGHT = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}


@dataclass(frozen=True)
class DecodedFrame:
    """A decoded picture still in the codec's pixel format; ``image()`` makes the upright RGB.

    The conversion is left to the caller so it can run on a worker thread: PyAV's scaler and
    Pillow's encoders release the GIL, and doing it on the decoding thread serialises the split.
    The picture is RGBX (RGB plus a padding byte): Pillow maps that layout straight from PyAV's
    buffer where RGB would cost a copy, and its JPEG encoder takes it as it is.
    """

    pts: int
    frame: av.VideoFrame
    size: tuple[int, int]  # stored (pre-rotation) output size

    def image(self) -> Image.Image:
        return _upright_rgb(self.frame, self.size)

    def luma(self) -> np.ndarray:
        """The stored picture's brightness (uint8, not rotated or resized): the codec's own Y
        plane where it has one, so no colour conversion is needed to judge scene cuts."""
        frame = self.frame
        if frame.format.name not in _EIGHT_BIT_LUMA_FIRST:
            return np.asarray(self.image().convert("L"))
        plane = frame.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
        return rows[:, : frame.width]


# 8-bit formats whose first plane is the luma (Y) at full size
_EIGHT_BIT_LUMA_FIRST = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p", "nv12", "nv21", "gray"}
)


def output_size(info: VideoInfo, max_side: int | None) -> tuple[int, int]:
    """Upright frame size; a resize keeps the aspect ratio and rounds to even numbers."""
    width, height = info.display_size
    longest = max(width, height)
    if not max_side or longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


# ``split.fps`` bounds: below one frame in about 17 minutes nothing useful is left of a clip, and
# above 1000 a second no camera films; outside them the value is surely a typo (1e9, .inf).
MIN_FPS = 0.001
MAX_FPS = 1000.0


def check_fps(value: object) -> float | None:
    """``split.fps`` as the picker takes it: None (``source``: every frame) or a sane rate.

    Raises :class:`ParamsError` without a path; the caller names the file it came from.
    """
    if value is None or value == "source":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParamsError(None, f"split.fps must be 'source' or a number of frames a second, not {value!r}")
    if not math.isfinite(value) or not MIN_FPS <= value <= MAX_FPS:
        bounds = f"between {MIN_FPS:g} and {MAX_FPS:g} frames a second"
        raise ParamsError(None, f"split.fps must be 'source' or {bounds}, not {value!r}")
    return float(value)


class FramePicker:
    """Keeps every frame, or the first frame at or after each tick of a sampling clock.

    The ticks are ``start + k * step``; after keeping a frame the next tick is found by
    arithmetic, so a clock far faster than the video (which keeps every frame) costs the same as
    a slow one, one step per frame.
    """

    def __init__(self, fps: float | None, time_base: Fraction, start_pts: int) -> None:
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise ParamsError(None, f"frames a second must be a finite number over 0, not {fps!r}")
        self._step = None if fps is None else Fraction(1) / _rate(fps)
        self._time_base = time_base
        self._start = Fraction(start_pts) * time_base
        self._next = self._start

    def wants(self, pts: int) -> bool:
        if self._step is None:
            return True
        time = pts * self._time_base
        if time < self._next:
            return False
        ticks_passed = (time - self._start) // self._step + 1  # ticks at or before ``time``
        self._next = self._start + ticks_passed * self._step
        return True


def _rate(fps: float) -> Fraction:
    """The rate as a small fraction (29.97 as 2997/100, not the float's binary expansion); a rate
    too small for that (under 1/2000) is kept exact rather than rounded to 0."""
    return Fraction(fps).limit_denominator(1000) or Fraction(fps)


def decode_frames(
    info: VideoInfo, fps: float | None = None, max_side: int | None = None
) -> Iterator[DecodedFrame]:
    """Yield the picked frames, upright and resized; raise if the file ends before it says."""
    width, height = output_size(info, max_side)
    stored = (height, width) if info.rotation in (90, 270) else (width, height)
    picker = FramePicker(fps, info.time_base, info.start_pts)
    decoded = 0
    last_pts: int | None = None
    with open_input(info.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in _frames(container, stream, info):
            decoded += 1
            if frame.pts is None:
                raise RotoscopeError(info.path, f"frame {decoded - 1} has no timestamp")
            if last_pts is not None and frame.pts <= last_pts:
                continue  # a repeated timestamp cannot be shown; keep the first picture
            last_pts = frame.pts
            if picker.wants(frame.pts):
                yield DecodedFrame(frame.pts, frame, stored)
    if info.declared_frames and decoded < info.declared_frames:
        raise RotoscopeError(
            info.path,
            f"truncated or damaged: decoded {decoded} of the {info.declared_frames} frames it declares",
        )


def _frames(container: av.container.InputContainer, stream: av.VideoStream, info: VideoInfo):
    try:
        yield from container.decode(stream)
    except av.error.FFmpegError as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise RotoscopeError(info.path, f"damaged video data ({reason})") from None


_LOCAL = threading.local()


def _reformatter() -> VideoReformatter:
    """One scaler per thread, kept: building one per frame costs more than the conversion."""
    if not hasattr(_LOCAL, "reformatter"):
        _LOCAL.reformatter = VideoReformatter()
    return _LOCAL.reformatter


def _upright_rgb(frame: av.VideoFrame, stored_size: tuple[int, int]) -> Image.Image:
    width, height = stored_size
    resized = (width, height) != (frame.width, frame.height)
    rgbx = _reformatter().reformat(
        frame,
        width=width,
        height=height,
        format="rgb0",
        interpolation="AREA" if resized else None,
        src_colorspace=frame.colorspace,
        threads=1,  # callers convert frames in parallel; a scaler pool per frame only costs
    )
    plane = rgbx.planes[0]
    image = Image.frombuffer("RGBX", (width, height), plane, "raw", "RGBX", plane.line_size, 1)
    rotation = normalise_rotation(frame.rotation)
    return image.transpose(_UPRIGHT[rotation]) if rotation else image
