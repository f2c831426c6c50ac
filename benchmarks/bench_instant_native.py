"""Instant filters at the picture's own size against the old 384 px path, and 4K peak memory.

Speed: seconds per frame through ``apply_filter`` at 1280x720 and 1920x1080 for the native
``InstantStylizer`` (one pass at these sizes under the default 1 GB budget) and for the old path
(shrunk to 384 px on its longest side, painted, enlarged with Lanczos), alternating in the same
run; medians of ``ROTOSCOPE_BENCH_REPEAT`` (default 3) runs after one warm-up. The sharpness
column is the Laplacian variance of the grey painting of a generated picture with fine stripes.

Memory: a 3840x2160 photo in a child process (default budget: 3x2 tiles sharing the statistics of
the photo shrunk to one pass), its peak resident size from ``ru_maxrss``.

Run: ``.venv/bin/python benchmarks/bench_instant_native.py`` (about a minute on 2 cores)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from benchlib import median, print_table, repeat_count, timed
from PIL import Image

from rotoscope.filters import instant
from rotoscope.filters.apply import ApplySettings, InstantStylizer, apply_filter
from rotoscope.media.synth import painting

SIZES = ((1280, 720), (1920, 1080))

_PEAK = """
import json, resource, sys
from pathlib import Path
import numpy as np
from PIL import Image
from rotoscope.filters import instant
from rotoscope.filters.apply import ApplySettings, InstantStylizer, apply_filter
sys.path.insert(0, sys.argv[2])
from bench_instant_native import fine_detail
photo = Image.fromarray(fine_detail(3840, 2160).astype(np.uint8))
stylizer = InstantStylizer("instant", instant.load_embedding(Path(sys.argv[1])))
apply_filter(stylizer, photo, ApplySettings())
print(json.dumps({"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def fine_detail(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    picture = np.empty((height, width, 3), np.float32)
    picture[..., 0] = 128 + 90 * np.sign(np.sin(x / 3))
    picture[..., 1] = 128 + 90 * np.sign(np.sin(y / 4 + x / 9))
    picture[..., 2] = 128 + 60 * np.sin((x * x + y * y) / 4000)
    return picture


class Old384:
    """What InstantStylizer did before apply version 3."""

    name = "instant at 384 px"

    def __init__(self, embedding: np.ndarray) -> None:
        self.embedding = embedding

    def stylize(self, picture: np.ndarray) -> np.ndarray:
        height, width = picture.shape[:2]
        scale = 384 / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8))
        small = small.resize(size, Image.Resampling.LANCZOS)
        drawn = instant.transform(np.asarray(small, dtype=np.float32) / 255, self.embedding)
        out = Image.fromarray((np.clip(drawn, 0, 1) * 255 + 0.5).astype(np.uint8))
        return np.asarray(out.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float32)


def sharpness(photo: Image.Image) -> float:
    grey = cv2.cvtColor(np.asarray(photo), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def main() -> None:
    embedding = instant.embed_style(Image.fromarray(painting(320, 240)))
    candidates = {"native": InstantStylizer("instant", embedding), "384 px": Old384(embedding)}
    rows = []
    for width, height in SIZES:
        photo = Image.fromarray(fine_detail(width, height).astype(np.uint8))
        times: dict[str, list[float]] = {name: [] for name in candidates}
        painted = {name: apply_filter(s, photo, ApplySettings()) for name, s in candidates.items()}
        for _ in range(repeat_count()):
            for name, stylizer in candidates.items():
                times[name].append(timed(lambda s=stylizer, p=photo: apply_filter(s, p, ApplySettings())))
        for name in candidates:
            seconds, sharp = median(times[name]), sharpness(painted[name])
            rows.append([f"{width}x{height} {name}", f"{seconds:.2f}", f"{sharp:.0f}"])
    print_table(["picture, path", "s/frame", "sharpness"], rows)
    with tempfile.TemporaryDirectory() as scratch:
        np.save(Path(scratch) / "style.npy", embedding)
        child = subprocess.run(
            [sys.executable, "-c", _PEAK, str(Path(scratch) / "style.npy"), str(Path(__file__).parent)],
            capture_output=True,
            text=True,
            check=True,
        )
    print(f"3840x2160 native: peak RSS {json.loads(child.stdout)['peak'] / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
