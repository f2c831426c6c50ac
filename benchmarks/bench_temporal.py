"""Temporal flow: the time `temporal: flow` adds to each stylized frame at 720p and 1080p.

For each size, a studio with a generated 48-frame clip (a camera gliding over a landscape), an
instant filter and one render; each run is the stylize stage, in-process:

- filter: the first run, which paints every frame (for scale).
- off: every frame found already made; the stage copies them into place (the baseline).
- flow: the filter's frames found again too, every blend made anew (each run uses a new weight,
  so no blended frame can be reused): decode the frame, the previous output and the source's
  luma, DIS flow both ways, the occlusion checks, the warp, the blend, and the JPEG written.

The added time per frame is (flow - off) / frames; the target is <= 0.1 s per 1080p frame on
2 cores.

Run: ``.venv/bin/python benchmarks/bench_temporal.py`` (about 4 minutes on 2 cores)
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

from benchlib import make_studio, median, print_table, repeat_count, timed, use_tool_env
from PIL import Image

from rotoscope.filters.card import Provenance
from rotoscope.filters.catalogue import new_filter
from rotoscope.filters.make import make_filter
from rotoscope.media.synth import constant_rate_clip, painting
from rotoscope.pipeline import split, stylize
from rotoscope.studio import Studio

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
FRAMES = 48
TARGET_1080P = 0.1


def prepared(scratch: Path, label: str, size: tuple[int, int]) -> Studio:
    clip = constant_rate_clip(scratch / f"{label}.mp4", size=size, fps=24, seconds=FRAMES / 24, audio=False)
    studio = make_studio(scratch / f"studio-{label}", clip, "clip")
    Image.fromarray(painting(480, 360)).save(scratch / "style.png")
    new_filter(studio, "swirls", scratch / "style.png", "instant", Provenance(title="generated swirls"))
    make_filter(studio, "swirls")
    studio.add_render("look", {"video": "clip", "filter": "swirls", "temporal": "off"})
    split(studio, "clip")
    return studio


def set_temporal(studio: Studio, method: str, weight: float) -> None:
    document = studio.params()
    document["renders"]["look"]["temporal"] = method
    document["renders"]["look"]["temporal_weight"] = weight
    studio.save_params(document)


def quiet(action) -> float:
    with contextlib.redirect_stderr(io.StringIO()):
        return timed(action)


def main() -> None:
    use_tool_env()
    repeat = repeat_count()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        for label, size in SIZES.items():
            print(f"{label}: preparing a studio and the filter's own frames (not timed)...", flush=True)
            studio = prepared(scratch, label, size)
            painting_s = quiet(lambda studio=studio: stylize(studio, "look")) / FRAMES
            off, flow = [], []
            for run in range(repeat):
                set_temporal(studio, "off", 0.7)
                off.append(quiet(lambda studio=studio: stylize(studio, "look")))
                set_temporal(studio, "flow", 0.5 + 0.01 * run)
                flow.append(quiet(lambda studio=studio: stylize(studio, "look")))
                counts = studio.root / ".rotoscope/logs/stylize-look.json"
                assert '"blended": 47' in counts.read_text(), counts.read_text()
            added = (median(flow) - median(off)) / FRAMES
            verdict = "" if label != "1080p" else (" meets" if added <= TARGET_1080P else " misses")
            rows.append(
                (
                    f"{label} {size[0]}x{size[1]}",
                    f"{median(off) / FRAMES:.3f}",
                    f"{median(flow) / FRAMES:.3f}",
                    f"{added:.3f}{verdict}",
                    f"{painting_s:.3f}",
                    f"{added / painting_s:.2f}",
                )
            )
    print(f"\nmedian of {repeat} runs, {FRAMES} frames, seconds per frame")
    headers = ("size", "off (copy)", "flow", "added by flow", "filter (instant)", "added / filter")
    print_table(headers, rows)
    print(f"target: added by flow <= {TARGET_1080P} s per 1080p frame")


if __name__ == "__main__":
    main()
