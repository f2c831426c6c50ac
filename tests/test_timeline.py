"""Looks that change over time: strength keyframes, a crossfade to a second filter, a time range;
the pure time logic, then renders whose frames are re-mixed from kept paintings when it changes."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FRAMES, dvc, rotoscope, write_source
from PIL import Image

from rotoscope.errors import ParamsError
from rotoscope.filters.apply import ApplySettings, apply_filter, load_stylizer
from rotoscope.filters.card import Provenance
from rotoscope.filters.catalogue import new_filter
from rotoscope.filters.make import make_filter
from rotoscope.history import compare_manifests
from rotoscope.manifest import Manifest
from rotoscope.media.synth import painting
from rotoscope.pipeline import mix_pixels, split, stylize
from rotoscope.store import md5_file
from rotoscope.studio import Studio
from rotoscope.temporal import blend
from rotoscope.timeline import FrameMix, Timeline, frame_seconds

RAMP = [{"at": 0, "value": 0}, {"at": 0.2, "value": 1}, {"at": 0.36, "value": 0.5}]
RAMP_STRENGTHS = [0, 200, 400, 600, 800, 1000, 875, 750, 625, 500]  # frames 0-9, at k/25 s


# -- the time logic on its own -------------------------------------------------------------------


def test_keyframes_are_linear_between_and_held_outside() -> None:
    timeline = Timeline.parse([{"at": 1, "value": 0.2}, {"at": 3, "value": 1}, {"at": 4, "value": 0.4}])
    strengths = [timeline.at(Fraction(t)).strength for t in ("0", "1", "2", "2.5", "3", "3.5", "4", "9")]
    assert strengths == [200, 200, 600, 800, 1000, 700, 400, 400]
    assert Timeline.parse(0.8).at(Fraction(123)) == FrameMix(800, 0, True)


def test_mix_values_are_exact_thousandths() -> None:
    thirds = Timeline.parse([{"at": 0, "value": 0}, {"at": 3, "value": 1}])
    assert [thirds.at(Fraction(t)).strength for t in range(4)] == [0, 333, 667, 1000]
    # 0.1 + 0.2 is 0.30000000000000004 in floats; parameters are taken by their decimal form
    tenths = Timeline.parse([{"at": 0.1, "value": 0.1}, {"at": 0.3, "value": 0.3}])
    assert tenths.at(Fraction(1, 10) + Fraction(2, 10)).strength == 300
    assert tenths.at(Fraction(2, 10)).strength == 200
    half = Timeline.parse([{"at": 0, "value": 0}, {"at": 1, "value": 0.001}])
    assert half.at(Fraction(1, 2)).strength == 0  # 0.5 thousandths: half to even, the same everywhere


def test_crossfade_weights_and_range_ends() -> None:
    timeline = Timeline.parse(1, {"to": "waves", "start": 6, "end": 8}, {"start": 2, "end": 12})
    mixes = {t: timeline.at(Fraction(t)) for t in (0, 2, 6, 7, 7.5, 8, 11, 12)}
    assert {t: mix.fade for t, mix in mixes.items()} == {
        0: 0, 2: 0, 6: 0, 7: 500, 7.5: 750, 8: 1000, 11: 1000, 12: 1000
    }  # fmt: skip
    assert [t for t, mix in mixes.items() if mix.inside] == [2, 6, 7, 7.5, 8, 11]  # end excluded
    assert mixes[7].paintings() == [(0, 500), (1, 500)] and mixes[11].paintings() == [(1, 1000)]
    assert mixes[0].is_source and not mixes[2].is_source
    open_end = Timeline.parse(1, span={"start": 2})
    assert not open_end.at(Fraction(1)).inside and open_end.at(Fraction(10**6)).inside


def test_frame_times_count_from_the_first_frame() -> None:
    assert frame_seconds([3000, 3512, 4024], Fraction(1, 12800)) == [0, Fraction(512, 12800), Fraction(2, 25)]


def test_the_mix_is_integer_exact() -> None:
    rng = np.random.default_rng(5)
    source, first, second = (rng.integers(0, 256, (9, 7, 3), dtype=np.uint8) for _ in range(3))
    assert np.array_equal(mix_pixels(None, [(first, 1000)], 1000), first)
    mixed = mix_pixels(source, [(first, 250), (second, 750)], 600).astype(float)
    wanted = 0.4 * source + 0.6 * (0.25 * first + 0.75 * second)
    assert np.abs(mixed - wanted).max() <= 0.5 + 1e-9


# -- renders ---------------------------------------------------------------------------------------


@pytest.fixture
def two_filters(studio: Studio, tmp_path: Path) -> Studio:
    """A lossless 10-frame clip (split as jpg), two instant filters made, no render yet."""
    studio.add_video(write_source(tmp_path / "clip.mp4"), "clip")
    for name, seed in (("swirls", 3), ("waves", 11)):
        Image.fromarray(painting(160, 120, seed)).save(tmp_path / f"{name}.png")
        new_filter(studio, name, tmp_path / f"{name}.png", "instant", Provenance(title=name))
        make_filter(studio, name)
    split(studio, "clip")
    return studio


def add_render(studio: Studio, **look: Any) -> None:
    studio.add_render("look", {"video": "clip", "filter": "swirls", **look})


def pixels(studio: Studio, kind: str) -> list[np.ndarray]:
    manifest = studio.load_manifest("clip", kind)
    return [
        np.asarray(Image.open(manifest.frame_path(studio.root, f)).convert("RGB")) for f in manifest.frames
    ]


def paintings(studio: Studio, name: str) -> list[np.ndarray]:
    """Each source frame through the filter at full strength, painted here on its own."""
    stylizer = load_stylizer(studio, name)
    return [
        np.asarray(apply_filter(stylizer, Image.fromarray(frame), ApplySettings()), dtype=float)
        for frame in pixels(studio, "source")
    ]


def hide_models(studio: Studio) -> None:
    """Any network run from now on fails: the models' files are gone."""
    for name in ("swirls", "waves"):
        (studio.root / f"filters/{name}/model.npy").unlink()


def test_a_strength_ramp_mixes_each_frame_at_its_moment(two_filters: Studio) -> None:
    add_render(two_filters, strength=RAMP, format="png")
    done = stylize(two_filters, "look")
    assert (done.stylized, done.mixed, done.reused) == (FRAMES - 1, FRAMES, 0)  # frame 0 is at 0
    painted, source = paintings(two_filters, "swirls"), pixels(two_filters, "source")
    for index, frame in enumerate(pixels(two_filters, "look")):
        strength = RAMP_STRENGTHS[index] / 1000
        wanted = (1 - strength) * source[index] + strength * painted[index]
        assert np.abs(frame - wanted).max() <= 1, index
    styled = two_filters.load_manifest("clip", "look")
    assert styled.lineage is not None and styled.lineage.render["strength"] == [
        {"at": 0.0, "value": 0.0}, {"at": 0.2, "value": 1.0}, {"at": 0.36, "value": 0.5}
    ]  # fmt: skip


def test_moving_a_keyframe_remixes_only_its_frames_without_the_network(two_filters: Studio) -> None:
    add_render(two_filters, strength=RAMP)
    stylize(two_filters, "look")
    before = two_filters.load_manifest("clip", "look")
    hide_models(two_filters)
    later = [*RAMP[:2], {"at": 0.36, "value": 0.3}]  # frames 6-9 change, 0-5 do not
    add_render(two_filters, strength=later)
    done = stylize(two_filters, "look")
    assert (done.stylized, done.mixed, done.reused) == (0, 4, FRAMES - 4)
    after = two_filters.load_manifest("clip", "look")
    changed = [i for i, (a, b) in enumerate(zip(before.frames, after.frames, strict=True)) if a.md5 != b.md5]
    assert changed == [6, 7, 8, 9]
    settings = compare_manifests("look", manifest_json(before), manifest_json(after)).settings
    assert list(settings) == ["lineage.render.strength"]  # what a diff of the two versions shows

    add_render(two_filters, strength=RAMP)  # back to the first ramp: every frame is found
    assert stylize(two_filters, "look").counts() == {
        "frames": FRAMES, "stylized": 0, "mixed": 0, "blended": 0, "reused": FRAMES
    }  # fmt: skip


def manifest_json(manifest: Manifest) -> dict[str, Any]:
    return json.loads(manifest.to_json())


def test_a_crossfade_mixes_two_filters_paintings(two_filters: Studio) -> None:
    add_render(two_filters, crossfade={"to": "waves", "start": 0.08, "end": 0.24}, format="png")
    done = stylize(two_filters, "look")
    assert done.stylized == 6 + 7  # swirls for frames 0-5 (fade < 1), waves for 3-9 (fade > 0)
    swirls, waves = paintings(two_filters, "swirls"), paintings(two_filters, "waves")
    fades = [0, 0, 0, 250, 500, 750, 1000, 1000, 1000, 1000]
    for index, frame in enumerate(pixels(two_filters, "look")):
        fade = fades[index] / 1000
        assert np.abs(frame - ((1 - fade) * swirls[index] + fade * waves[index])).max() <= 1, index
    lineage = two_filters.load_manifest("clip", "look").lineage
    assert lineage is not None
    assert lineage.render["crossfade"] == {"to": "waves", "start": 0.08, "end": 0.24}
    card = json.loads((two_filters.root / "filters/waves/filter.json").read_text())
    assert lineage.filter["crossfade"] == {
        "name": "waves",
        "kind": "instant",
        "model_md5": card["model"]["md5"],
    }
    shown = rotoscope("show", "manifests/clip/look.json", cwd=two_filters.root).stdout
    assert "crossfade to waves 0.08-0.24s" in shown and "crossfade  to waves (instant)" in shown


def test_frames_outside_the_range_are_the_source_frames(two_filters: Studio) -> None:
    add_render(two_filters, strength=0.7, range={"start": 0.12, "end": 0.28})
    done = stylize(two_filters, "look")
    assert done.stylized == 4  # frames 3-6: 0.12 s up to, not including, 0.28 s
    source = two_filters.load_manifest("clip")
    styled = two_filters.load_manifest("clip", "look")
    same = [i for i, (a, b) in enumerate(zip(source.frames, styled.frames, strict=True)) if a.md5 == b.md5]
    assert same == [0, 1, 2, 7, 8, 9]  # the source's very bytes, not re-encoded
    assert styled.lineage is not None and styled.lineage.render["range"] == {"start": 0.12, "end": 0.28}

    add_render(two_filters, strength=0.7, range={"start": 0.12, "end": 0.28}, format="png")
    assert stylize(two_filters, "look").stylized == 0  # another format: the paintings are kept
    as_png, decoded = pixels(two_filters, "look"), pixels(two_filters, "source")
    assert all(np.array_equal(as_png[i], decoded[i]) for i in (0, 1, 2, 7, 8, 9))  # re-encoded, same pixels
    assert not np.array_equal(as_png[3], decoded[3])


def test_ema_blends_a_keyframed_render_and_reblends_from_the_change(two_filters: Studio) -> None:
    from rotoscope.pipeline import StylizedFrames
    from rotoscope.store import FrameReuse

    add_render(two_filters, strength=RAMP, temporal="ema", format="png")
    first = stylize(two_filters, "look")
    assert (first.stylized, first.blended) == (FRAMES - 1, FRAMES - 1)
    job = two_filters.render_job("look")
    model = json.loads((two_filters.root / "filters/swirls/filter.json").read_text())["model"]["md5"]
    frames = StylizedFrames(
        two_filters, job, two_filters.load_manifest("clip"), model, FrameReuse(two_filters.layout)
    )
    own = [np.asarray(Image.open(frames.own(f)[0])) for f in two_filters.load_manifest("clip").frames]
    out = pixels(two_filters, "look")
    assert np.array_equal(out[0], own[0])
    for index in range(1, FRAMES):  # each output: its own mix blended with the output before
        assert np.array_equal(out[index], blend(job.temporal_settings(), own[index], out[index - 1], None))

    hide_models(two_filters)
    add_render(two_filters, strength=[*RAMP[:2], {"at": 0.36, "value": 0.3}], temporal="ema", format="png")
    again = stylize(two_filters, "look")
    assert (again.stylized, again.mixed, again.blended, again.reused) == (0, 4, 4, FRAMES - 4)


def test_bad_timelines_are_refused_in_one_line(two_filters: Studio) -> None:
    root = two_filters.root
    add_render(two_filters)
    text = (root / "params.yaml").read_text()
    entry = "    filter: swirls\n"
    for look, problem in [
        ("strength: [{at: 1, value: 0}, {at: 1, value: 1}]", "renders.look.strength.1.at: keyframes must"),
        ("strength: [{at: 0, value: 1.5}]", "renders.look.strength.0.value: 1.5 is greater than"),
        ("crossfade: {to: waves, start: 3, end: 2}", "renders.look.crossfade.end must come after"),
        ("crossfade: {to: swirls, start: 1, end: 2}", "'swirls' is the render's own filter"),
        ("crossfade: {to: nope, start: 1, end: 2}", "renders.look.crossfade.to: no filter named 'nope'"),
        ("range: {strat: 2}", "unknown key 'strat'; did you mean 'start'?"),
        ("range: {start: 4, end: 4}", "renders.look.range.end must come after range.start"),
    ]:
        (root / "params.yaml").write_text(text.replace(entry, f"{entry}    {look}\n"))
        with pytest.raises(ParamsError) as refused:
            stylize(two_filters, "look")
        assert problem in str(refused.value) and str(refused.value).startswith(f"{root / 'params.yaml'}: ")
    failed = rotoscope("stylize", "look", cwd=root, check=False)
    assert failed.returncode == 1 and len(failed.stderr.strip().splitlines()) == 1
    assert "range.end must come after" in failed.stderr


def test_the_stylize_stage_depends_on_the_crossfades_second_filter(two_filters: Studio) -> None:
    root = two_filters.root
    add_render(two_filters, crossfade={"to": "waves", "start": 0.08, "end": 0.24})
    stylize(two_filters, "look")
    dvc("commit", "--force", "stylize@look", cwd=root)  # as `dvc repro` would have left it
    assert "up to date" in dvc("status", "stylize@look", cwd=root).stdout
    style, card_path = root / "filters/waves/style.png", root / "filters/waves/filter.json"
    Image.fromarray(painting(160, 120, 29)).save(style)  # waves re-made from another painting
    card = json.loads(card_path.read_text())
    card["style"]["md5"] = md5_file(style)  # the same size, 160x120
    card_path.write_text(json.dumps(card))
    make_filter(two_filters, "waves")  # what the train@waves stage runs
    status = dvc("status", "stylize@look", cwd=root).stdout
    assert "stylize@look" in status and re.search(r"modified:\s+filters$", status, re.MULTILINE), status
    assert stylize(two_filters, "look").stylized == 7  # waves again; the swirls paintings are kept
