"""Keep freed picture buffers for the next picture instead of handing them back to the kernel.

Painting a frame allocates a dozen float buffers of 4-100 MB (network activations, enlarged
planes). glibc serves blocks that large with ``mmap`` and unmaps them when freed, so the next frame
page-faults every page in again; in a virtual machine that was a fifth of a 720p painting's time
(the guided enlargement at 720p: 29 ms against 20 ms with the pages kept). Raising glibc's mmap
and trim thresholds keeps them in the heap to be reused. The peak is unchanged (the same buffers
are alive at once); what stays resident after a picture is at most that peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_MMAP_THRESHOLD = 512 * 2**20  # blocks above this still get their own mapping (glibc's cap is 32 MB)
_TRIM_THRESHOLD = 1024 * 2**20


@cache
def keep_freed_pages() -> bool:
    """Set glibc's thresholds once per process; False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # musl and others: no mallopt, and their own policies
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
