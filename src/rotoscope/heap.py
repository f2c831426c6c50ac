"""Keep freed picture buffers for the next picture instead of handing them back to the kernel.

Painting a frame allocates a dozen float buffers of 4-100 MB (network activations, enlarged
planes). glibc serves blocks that large with ``mmap`` and unmaps them when freed, so the next frame
page-faults every page in again; in a virtual machine that was a fifth of a 720p painting's time
(the guided enlargement at 720p: 29 ms against 20 ms with the pages kept). Raising glibc's mmap
and trim thresholds keeps them in the heap to be reused.

Kept pages fragment, though: a 3840x2160 photo painted in tiles peaked at 2.1 GiB with them kept
against 1.6 GiB without. So they are kept only for pictures up to :data:`KEEP_UP_TO_PIXELS` (video
frames up to 1080p, painted over and over), and a larger picture first hands everything free back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache

KEEP_UP_TO_PIXELS = 1920 * 1088
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_KEPT = (512 * 2**20, 1024 * 2**20)  # (mmap, trim): blocks above 512 MB still get their own mapping
_RETURNED = (128 * 2**10, 128 * 2**10)  # glibc's starting defaults, held fixed
_current: list[bool] = []  # the policy in force, once one is set


@cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):
        return None  # musl and others: no mallopt, and their own policies
    return libc


def suit_heap_to(pixels: int) -> bool:
    """Keep freed pages for a picture of ``pixels`` or hand them back; False off glibc."""
    libc = _libc()
    if libc is None:
        return False
    keep = pixels <= KEEP_UP_TO_PIXELS
    if _current != [keep]:
        mmap_threshold, trim_threshold = _KEPT if keep else _RETURNED
        libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
        libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
        if not keep:
            libc.malloc_trim(0)
        _current[:] = [keep]
    return True
