"""Brush size: the network paints the picture shrunk by ``brush``; the painting is enlarged back
guided by the full-resolution picture, so strokes stay large while edges stay sharp.

``brush`` 1 paints at the output's own size; 4 paints a quarter-size picture, so every stroke
covers 4x4 times the pixels. Enlarging that painting alone (Lanczos) blurs the photo's edges by
the same factor. The guided enlargement keeps them, after He & Sun's fast guided filter (2015):
on the low-resolution pair (source shrunk, painting) it fits, per painted channel, a local linear
model ``painting ~ a . source`` over (2r+1)^2 windows with box filters (colour guide: ``a`` is
three numbers per channel), averages ``a`` like the guided filter does and enlarges it
bilinearly. Where the fast guided filter then takes ``A * guide + B``, with ``B`` the enlarged
box mean of the painting, here the painting itself is enlarged (Lanczos) and the source's detail
that shrinking removed, ``guide - enlarged(shrunk guide)``, is added through ``A``::

    out = lanczos(painting) + A . (source - lanczos(shrunk source))

The two agree where the linear model holds; the box mean would blur away the strokes the brush
is there to make. Measured on the 4 shared photos through the instant network (Starry Night and
the Great Wave) at brush 2, 4 and 8: the output shrunk back is within 38-39 dB of the painting
(the fast guided filter's ``A * guide + B``: 23-24 dB, Lanczos 38.5 dB); its gradient-magnitude
correlation with the source's is 0.33 / 0.46 / 0.59 against Lanczos's 0.26 / 0.18 / 0.12; and a
per-pixel colour map, whose answer at full size is known, is recovered at 38.9 / 35.2 / 32.8 dB
against Lanczos's 27.7 / 24.1 / 22.3 dB. A colour guide beat a grey one by 1.2-1.6 dB on that map
at the same fidelity. Radius 1 in low-resolution pixels (so ``brush`` pixels at full size) was
within 0.4 dB of radius 2 everywhere; epsilon 1e-4 of the 0-1 range squared (a window whose
standard deviation is under 1 % counts as flat, so JPEG noise is not amplified) lost at most 1 dB
to 1e-5 and gained 2-3 dB over 1e-3. Checked in tests/test_brush.py.

Memory at 3840x2160, at full size and float32: the caller's source, the three detail planes, the
three painted planes, their interleaved enlargement or the output, and one scratch plane, about
430 MB.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from rotoscope.errors import RotoscopeError

MIN_BRUSH, MAX_BRUSH = 1.0, 32.0
RADIUS = 1  # in low-resolution pixels: the window grows with the brush
EPSILON = 1e-4 * 255.0**2  # regularises a in flat windows (0-255 values, so scaled by 255^2)


def check_brush(brush: object) -> float:
    """``brush`` as a float, or one line that names the range (callers add where it came from)."""
    if isinstance(brush, int | float) and not isinstance(brush, bool) and MIN_BRUSH <= brush <= MAX_BRUSH:
        return float(brush)  # NaN fails the comparison, so it is refused too
    raise RotoscopeError(None, f"brush must be a number from {MIN_BRUSH:g} to {MAX_BRUSH:g}, not {brush!r}")


def painting_size(width: int, height: int, brush: float) -> tuple[int, int]:
    """The size the network paints at: the picture shrunk by ``brush``, at least 1 px a side."""
    return max(1, round(width / brush)), max(1, round(height / brush))


def paint_at_brush(
    stylize: Callable[[np.ndarray], np.ndarray], picture: np.ndarray, brush: float
) -> np.ndarray:
    """``stylize`` (HxWx3 float32 RGB 0-255 -> the same shape) run at ``brush``, at the picture's size.

    Brush 1 (or a picture too small to shrink) is exactly ``stylize(picture)``."""
    brush = check_brush(brush)
    height, width = picture.shape[:2]
    size = painting_size(width, height, brush)
    if size == (width, height):
        return stylize(picture)
    source = np.asarray(picture, dtype=np.float32)
    small = cv2.resize(source, size, interpolation=cv2.INTER_AREA)
    painting = np.clip(np.asarray(stylize(small), dtype=np.float32), 0, 255)
    return guided_enlarge(painting, small, source)


def guided_enlarge(painting: np.ndarray, small: np.ndarray, source: np.ndarray) -> np.ndarray:
    """``painting`` (of ``small``, the shrunk ``source``) at ``source``'s size, with its edges."""
    height, width = source.shape[:2]
    full = (width, height)
    slopes = _local_models(painting, small)
    detail = _lanczos(small, full)
    np.subtract(source, detail, out=detail)  # what shrinking took from the source
    # planes, not interleaved pixels, for OpenCV's single-channel kernels below; the enlargements
    # are made interleaved (one pass of a multi-channel kernel) and then split
    details = _planes(detail)
    del detail
    planes = _planes(_lanczos(painting, full))
    scratch = np.empty((height, width), dtype=np.float32)
    for channel, plane in enumerate(planes):
        for k, plane_detail in enumerate(details):
            cv2.resize(slopes[channel][k], full, dst=scratch, interpolation=cv2.INTER_LINEAR)
            cv2.accumulateProduct(scratch, plane_detail, plane)
    return cv2.merge(planes)


def _planes(picture: np.ndarray) -> list[np.ndarray]:
    return list(np.ascontiguousarray(picture.transpose(2, 0, 1)))


def _lanczos(picture: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(np.ascontiguousarray(picture), size, interpolation=cv2.INTER_LANCZOS4)


def _box(plane: np.ndarray) -> np.ndarray:
    side = 2 * RADIUS + 1
    return cv2.boxFilter(plane, -1, (side, side), borderType=cv2.BORDER_REFLECT)


def _local_models(painting: np.ndarray, small: np.ndarray) -> list[list[np.ndarray]]:
    """Per painted channel c, the three box-averaged slopes a[c][k] of painting_c ~ a . source."""
    guide = [np.ascontiguousarray(small[..., k]) for k in range(3)]
    means = [_box(plane) for plane in guide]
    covariance = {
        (i, j): _box(guide[i] * guide[j]) - means[i] * means[j] for i in range(3) for j in range(i, 3)
    }
    for k in range(3):
        covariance[k, k] += EPSILON
    inverse = _symmetric_inverse(covariance)
    slopes = []
    for channel in range(3):
        target = np.ascontiguousarray(painting[..., channel])
        mean = _box(target)
        cross = [_box(guide[k] * target) - means[k] * mean for k in range(3)]
        slopes.append(
            [_box(sum(inverse[min(k, j), max(k, j)] * cross[j] for j in range(3))) for k in range(3)]
        )
    return slopes


def _symmetric_inverse(m: dict[tuple[int, int], np.ndarray]) -> dict[tuple[int, int], np.ndarray]:
    """The inverse of a field of symmetric positive-definite 3x3 matrices (upper triangle), by
    cofactors: one pass over planes instead of a batched ``np.linalg.inv``."""
    a, b, c, d, e, f = m[0, 0], m[0, 1], m[0, 2], m[1, 1], m[1, 2], m[2, 2]
    cofactors = {
        (0, 0): d * f - e * e,
        (0, 1): c * e - b * f,
        (0, 2): b * e - c * d,
        (1, 1): a * f - c * c,
        (1, 2): b * c - a * e,
        (2, 2): a * d - b * b,
    }
    determinant = a * cofactors[0, 0] + b * cofactors[0, 1] + c * cofactors[0, 2]
    return {key: value / determinant for key, value in cofactors.items()}
