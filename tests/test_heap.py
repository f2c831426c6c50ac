"""The heap policy: freed picture buffers kept for small pictures, handed back for large ones."""

from __future__ import annotations

import subprocess
import sys

import pytest

_SCRIPT = """
import sys
import numpy as np
from rotoscope.heap import KEEP_UP_TO_PIXELS, suit_heap_to

def resident() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096

assert suit_heap_to(KEEP_UP_TO_PIXELS if sys.argv[1] == "small" else KEEP_UP_TO_PIXELS + 1)
before = resident()
buffer = np.ones(64 * 2**20, dtype=np.uint8)
del buffer
print((resident() - before) / 2**20)
"""


def _kept_mib(picture: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, picture], capture_output=True, text=True, check=True
    )
    return float(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the policy is glibc's mallopt")
def test_freed_buffers_stay_for_small_pictures_and_go_back_for_large_ones() -> None:
    assert _kept_mib("small") > 48  # the 64 MB buffer's pages are still resident, ready for the next frame
    assert _kept_mib("large") < 16  # unmapped when freed: a 4K photo's tiles do not pile up
