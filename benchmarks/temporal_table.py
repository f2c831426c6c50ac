"""Flicker on the shared clips: warping error and distance from the frame-by-frame stylization for
temporal off, ema and flow at several weights, two filters, the three shared clips.

A studio (resumable) with the three clips of ``$ROTOSCOPE_MEDIA/videos``, the instant filter of
Hokusai's Great Wave and a trained filter. The trained one is The Scream from the filter
showcase studio (``benchmarks/showcase_filters.sh``; pass ``--trained-from STUDIO``), its card
and model copied in, since training one takes 25 minutes; without it, the second filter is the
instant Starry Night. Every render is stylized by the stylize stage and measured by
``rotoscope.quality.measure`` (all renders of a clip at once, sharing its motion), exactly as the
``quality`` stage measures one.

Run: ``.venv/bin/python benchmarks/temporal_table.py [STUDIO] [--trained-from SHOWCASE]``
(about 15 minutes on 2 cores; the table is printed as Markdown)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
from pathlib import Path

from benchlib import make_studio, media_dir, use_tool_env

from rotoscope.filters.card import Provenance
from rotoscope.filters.catalogue import filter_entry, new_filter
from rotoscope.filters.make import make_filter
from rotoscope.pipeline import split, stylize
from rotoscope.quality import measure
from rotoscope.studio import Studio

CLIPS = {
    "aerial": "aerial_parking_lot_intel_16s.mp4",
    "butterfly": "butterfly_thistle_pixabay209.mp4",
    "bee": "bee_flower_pixabay211.mp4",
}
SETTINGS = (
    [("off", None)] + [("ema", w) for w in (0.3, 0.5, 0.7, 0.85)] + [("flow", w) for w in (0.5, 0.7, 0.85)]
)


def studio_with_clips(root: Path, media: Path) -> Studio:
    if (root / "params.yaml").is_file():
        return Studio(root)
    first, *others = CLIPS.items()
    studio = make_studio(root, media / "videos" / first[1], first[0])
    for name, file in others:
        studio.add_video(media / "videos" / file, name)
    return studio


def add_filters(studio: Studio, media: Path, trained_from: Path | None) -> list[str]:
    styles = media / "styles"
    names = []
    known = studio.params().get("filters") or {}
    if "great-wave" not in known:
        art = Provenance(
            title="The Great Wave off Kanagawa", artist="Katsushika Hokusai", licence="public domain"
        )
        new_filter(studio, "great-wave", styles / "hokusai_great_wave_off_kanagawa.jpg", "instant", art)
        make_filter(studio, "great-wave")
    names.append("great-wave")
    if trained_from is not None:
        if "scream" not in known:
            art = Provenance(title="The Scream", artist="Edvard Munch", licence="public domain")
            new_filter(studio, "scream", trained_from / "filters/scream/style.jpg", "trained", art)
            for file in ("model.keras", "filter.json"):
                shutil.copyfile(
                    trained_from / "filters/scream" / file, filter_entry(studio, "scream").card.parent / file
                )
        names.append("scream")
    else:
        if "starry-night" not in known:
            art = Provenance(title="The Starry Night", artist="Vincent van Gogh", licence="public domain")
            new_filter(studio, "starry-night", styles / "vangogh_starry_night_1889.jpg", "instant", art)
            make_filter(studio, "starry-night")
        names.append("starry-night")
    return names


def render_name(clip: str, filter_name: str, method: str, weight: float | None) -> str:
    return f"{clip}-{filter_name}-{method}" + (f"-{round(weight * 100)}" if weight is not None else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studio", nargs="?", type=Path, default=Path("/tmp/rotoscope-temporal"))
    parser.add_argument("--trained-from", type=Path, default=None)
    args = parser.parse_args()
    use_tool_env()
    media = media_dir()
    if not (media / "videos").is_dir():
        raise SystemExit(f"no shared media at {media} (set ROTOSCOPE_MEDIA)")
    with contextlib.redirect_stdout(io.StringIO()):
        studio = studio_with_clips(args.studio.resolve(), media)
        filters = add_filters(studio, media, args.trained_from)
    for clip in CLIPS:
        if not studio.manifest_path(clip).is_file() or studio.load_manifest(clip).cuts is None:
            split(studio, clip)
    renders = {}
    for clip in CLIPS:
        for filter_name in filters:
            for method, weight in SETTINGS:
                name = render_name(clip, filter_name, method, weight)
                entry = {"video": clip, "filter": filter_name, "temporal": method}
                if weight is not None:
                    entry["temporal_weight"] = weight
                studio.add_render(name, entry)
                renders[name] = (clip, filter_name, method, weight)
    for name in renders:
        done = stylize(studio, name)
        print(f"stylize {name}: {done.counts()}", flush=True)
    results = measure(studio, [studio.manifest_path(clip, name) for name, (clip, *_) in renders.items()])
    print("\n| clip | filter | temporal | weight | warping error | vs off | distance from per-frame |")
    print("|---|---|---|---|---|---|---|")
    for report, _ in results:
        clip, filter_name, method, weight = renders[report.render]
        metrics = report.metrics()
        print(
            f"| {clip} | {filter_name} | {method} | {'' if weight is None else weight} "
            f"| {metrics['warping_error']:.5f} | {metrics['flicker_ratio']:.2f} "
            f"| {metrics['distance_from_per_frame']:.5f} |"
        )


if __name__ == "__main__":
    main()
