"""Timelines: what a keyframe edit costs against painting the frames, and what keeping each frame's
painting adds to a render.

For each size, a studio with a generated 24-frame clip, an instant filter and one render whose
strength is a ramp of keyframes; each run is the stylize stage, in-process:

- paint: the first run, which paints every frame (the network) and mixes it.
- re-mix: the last keyframe moved so that every frame's strength changes: every frame mixed again
  from its kept painting and the source frame, no network run (each run a new value).
- found: nothing changed; every frame found and copied into place (the floor).

Then, on one frame, the parts of a painted frame: the network, keeping the painting (lossless
WebP), reading it back, the mix, and the JPEG written.

Run: ``.venv/bin/python benchmarks/bench_timeline.py`` (about 3 minutes on 2 cores)
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np
from benchlib import make_studio, median, print_table, repeat_count, timed, use_tool_env
from PIL import Image

from rotoscope.filters.apply import ApplySettings, apply_filter, load_stylizer
from rotoscope.filters.card import Provenance
from rotoscope.filters.catalogue import new_filter
from rotoscope.filters.make import make_filter
from rotoscope.media.images import save_image
from rotoscope.media.synth import constant_rate_clip, painting
from rotoscope.pipeline import mix_pixels, split, stylize
from rotoscope.studio import Studio

SIZES = {"720p": (1280, 720)}
FRAMES = 24


def prepared(scratch: Path, label: str, size: tuple[int, int]) -> Studio:
    clip = constant_rate_clip(scratch / f"{label}.mp4", size=size, fps=24, seconds=FRAMES / 24, audio=False)
    studio = make_studio(scratch / f"studio-{label}", clip, "clip")
    Image.fromarray(painting(480, 360)).save(scratch / "style.png")
    new_filter(studio, "swirls", scratch / "style.png", "instant", Provenance(title="generated swirls"))
    make_filter(studio, "swirls")
    set_ramp(studio, 0.5)
    split(studio, "clip")
    return studio


def set_ramp(studio: Studio, last: float) -> None:
    ramp = [{"at": 0, "value": 0.2}, {"at": 1, "value": last}]  # every frame's strength depends on it
    studio.add_render("look", {"video": "clip", "filter": "swirls", "strength": ramp})


def quiet(studio: Studio) -> float:
    with contextlib.redirect_stderr(io.StringIO()):
        return timed(lambda: stylize(studio, "look"))


def kept_bytes(studio: Studio) -> tuple[int, int]:
    """The bytes of the paintings kept (the blob folder less the frames, not in DVC's cache yet)
    and of the render's frames."""
    frames = sum(path.stat().st_size for path in (studio.root / "frames/clip/look").iterdir())
    blobs = sum(path.stat().st_size for path in (studio.root / ".rotoscope/stylized/blobs").iterdir())
    return blobs - frames, frames


def counts(studio: Studio) -> dict[str, int]:
    return json.loads((studio.root / ".rotoscope/logs/stylize-look.json").read_text())


def parts(studio: Studio, scratch: Path, repeat: int) -> dict[str, float]:
    """Seconds for each part of one painted frame (the median of ``repeat``)."""
    manifest = studio.load_manifest("clip")
    with Image.open(manifest.frame_path(studio.root, manifest.frames[0])) as opened:
        source = opened.convert("RGB")
    stylizer = load_stylizer(studio, "swirls")
    styled = apply_filter(stylizer, source, ApplySettings())
    kept, out = scratch / "painting.webp", scratch / "frame.jpg"
    actions = {
        "network (strength 1)": lambda: apply_filter(stylizer, source, ApplySettings()),
        "keep painting (webp lossless)": lambda: styled.save(
            kept, "WEBP", lossless=True, quality=0, method=0
        ),
        "read painting back": lambda: np.asarray(Image.open(kept).convert("RGB")),
        "mix (integers)": lambda: mix_pixels(np.asarray(source), [(np.asarray(styled), 1000)], 600),
        "write frame (jpg 95)": lambda: save_image(styled, out, "jpg", 95),
    }
    return {name: median([timed(action) for _ in range(repeat)]) for name, action in actions.items()}


def main() -> None:
    use_tool_env()
    repeat = repeat_count()
    rows, profile_rows, disk = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        for label, size in SIZES.items():
            print(f"{label}: preparing a studio (not timed)...", flush=True)
            studio = prepared(scratch, label, size)
            paint = quiet(studio)
            assert counts(studio)["stylized"] == FRAMES, counts(studio)
            disk.append((label, *kept_bytes(studio)))
            remix, found = [], []
            for run in range(repeat):
                set_ramp(studio, 0.6 + 0.1 * run)
                remix.append(quiet(studio))
                assert counts(studio)["stylized"] == 0 and counts(studio)["mixed"] == FRAMES - 1
                found.append(quiet(studio))
                assert counts(studio)["reused"] == FRAMES, counts(studio)
            per = [value / FRAMES for value in (paint, median(remix), median(found))]
            rows.append(
                (f"{label} {size[0]}x{size[1]}", *(f"{value:.3f}" for value in per), f"{per[1] / per[0]:.2f}")
            )
            profile = parts(studio, scratch, repeat)
            network = profile["network (strength 1)"]
            profile_rows += [
                (f"{label} {name}", f"{seconds:.4f}", f"{seconds / network:.3f}")
                for name, seconds in profile.items()
            ]
    print(f"\nmedian of {repeat} runs, {FRAMES} frames, seconds per frame")
    print_table(("size", "paint", "re-mix", "found", "re-mix / paint"), rows)
    for label, kept, frames in disk:
        print(
            f"{label}: paintings kept {kept / FRAMES / 1e6:.2f} MB a frame, "
            f"the render's frames {frames / FRAMES / 1e6:.2f} MB"
        )
    print("\none frame, seconds (median), and as a share of the network's time")
    print_table(("part", "seconds", "/ network"), profile_rows)


if __name__ == "__main__":
    main()
