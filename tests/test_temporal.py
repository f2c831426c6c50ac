"""Temporal consistency: the flow, cut detection and blending on their own, then in a studio:
flicker measured on a known pan, resets at a scene cut, and reuse up to the next cut."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import dvc, git, rotoscope, set_param, write_lossless
from PIL import Image
from ruamel.yaml import YAML

from rotoscope.errors import RotoscopeError
from rotoscope.media.synth import landscape, painting
from rotoscope.pipeline import split, stylize
from rotoscope.studio import Studio
from rotoscope.temporal import (
    CutDetector,
    Motion,
    MotionEstimator,
    TemporalSettings,
    blend,
    grey,
    thumbnail,
    warping_error,
)

SIZE = (192, 128)
STEP = 4  # pixels the camera pans right each frame
SHOT = 8  # frames per shot


def pan(count: int, seed: int = 7, step: int = STEP, upside_down: bool = False) -> list[np.ndarray]:
    """A textured scene sliding left by exactly ``step`` pixels a frame (the camera pans right)."""
    width, height = SIZE
    scene = landscape(width + step * count + 8, height + 8, seed)
    if upside_down:  # another shot: the generated landscapes all share one sky
        scene = np.ascontiguousarray(scene[::-1])
    return [scene[4 : 4 + height, step * k : step * k + width] for k in range(count)]


def write_shots(path: Path, seeds: tuple[int, ...] = (7, 11), changed: tuple[int, ...] = ()) -> Path:
    """A lossless clip of one pan per seed, cut straight from one to the next."""
    pictures = [
        frame for shot, seed in enumerate(seeds) for frame in pan(SHOT, seed, upside_down=shot % 2 == 1)
    ]
    for index in changed:  # a retouched frame: a patch painted over
        pictures[index] = pictures[index].copy()
        pictures[index][40:80, 60:110] = (250, 240, 40)
    return write_lossless(path, [Image.fromarray(p) for p in pictures])


# -- the parts on their own --------------------------------------------------------------------


def test_flow_follows_a_known_pan() -> None:
    before, after = (grey(frame) for frame in pan(2))
    motion = MotionEstimator().motion(before, after)
    inner = motion.backward[8:-8, 8:-8]
    assert np.median(inner[..., 0]) == pytest.approx(STEP, abs=0.25)  # it was STEP px further right
    assert np.median(inner[..., 1]) == pytest.approx(0, abs=0.25)
    assert motion.visible_share > 0.8
    assert motion.visible[:, -STEP - 1 :].mean() < 0.5  # the strip that came into view was hidden
    moved = motion.warp(before).astype(float)
    seen = motion.visible > 0
    assert np.abs(moved - after)[seen].mean() < 3  # levels of 255


def cuts(thumbnails: list[np.ndarray]) -> list[int]:
    detector = CutDetector()
    return [i for i, thumb in enumerate(thumbnails) if detector.starts_shot(thumb)]


def test_cuts_are_new_content_not_motion() -> None:
    one_shot = [thumbnail(grey(frame)) for frame in pan(12, step=9)]
    assert cuts(one_shot) == []
    two_shots = [thumbnail(grey(frame)) for flip in (False, True) for frame in pan(6, upside_down=flip)]
    assert cuts(two_shots) == [6]


def test_blends_keep_the_filter_where_the_past_is_hidden() -> None:
    rng = np.random.default_rng(0)
    styled, previous = (rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(2))
    expected = 0.75 * styled + 0.25 * previous
    ema = blend(TemporalSettings("ema", 0.25), styled, previous, None)
    assert np.abs(ema - expected).max() <= 0.5 + 1e-3  # rounded to the nearest level
    still = np.zeros((16, 16, 2), np.float32)
    hidden = Motion(still, np.zeros((16, 16), np.float32))
    np.testing.assert_array_equal(blend(TemporalSettings("flow", 0.9), styled, previous, hidden), styled)
    seen = Motion(still, np.ones((16, 16), np.float32))
    followed = blend(TemporalSettings("flow", 0.9), styled, previous, seen)
    assert np.abs(followed - (0.1 * styled + 0.9 * previous)).max() <= 0.5 + 1e-3


def test_warping_error_is_zero_for_what_moves_with_the_scene() -> None:
    frames = pan(2)
    motion = MotionEstimator("medium", max_side=None).motion(*(grey(f) for f in frames))
    assert warping_error(frames[0], frames[1], motion) < 1e-3
    rng = np.random.default_rng(1)
    noise = [rng.integers(0, 256, frames[0].shape, dtype=np.uint8) for _ in range(2)]
    assert warping_error(noise[0], noise[1], motion) > 0.3


@pytest.mark.parametrize(
    ("method", "weight", "problem"),
    [
        ("smooth", 0.5, "temporal must be one of off, ema, flow"),
        ("flow", 1.0, "below 1"),
        ("ema", "a", "a number"),
    ],
)
def test_bad_settings_are_refused(method: str, weight: object, problem: str) -> None:
    from rotoscope.errors import RotoscopeError

    with pytest.raises(RotoscopeError, match=problem):
        TemporalSettings(method, weight)  # type: ignore[arg-type]


# -- in a studio ---------------------------------------------------------------------------------


@pytest.fixture
def shots_studio(studio: Studio, tmp_path: Path) -> Studio:
    """Two 8-frame pans cut together, an instant filter, and renders off, ema and flow."""
    root = studio.root
    rotoscope("add", str(write_shots(tmp_path / "clip.mp4")), "--name", "clip", cwd=root)
    Image.fromarray(painting(160, 120)).save(tmp_path / "style.png")
    rotoscope(
        "filter", "new", "swirls", "--style", str(tmp_path / "style.png"), "--kind", "instant", cwd=root
    )
    for method in ("off", "ema", "flow"):
        rotoscope(
            "render", "new", method, "--video", "clip", "--filter", "swirls", "--temporal", method, cwd=root
        )
    rotoscope("filter", "make", "swirls", cwd=root)
    split(studio, "clip")
    return studio


def md5s(studio: Studio, render: str) -> list[str]:
    return [frame.md5 for frame in studio.load_manifest("clip", render).frames]


def test_split_records_the_scene_cut(shots_studio: Studio) -> None:
    assert shots_studio.load_manifest("clip").cuts == [SHOT]


def test_flow_cuts_the_flicker_of_a_pan(shots_studio: Studio) -> None:
    root = shots_studio.root
    errors = {}
    for method in ("off", "ema", "flow"):
        stylize(shots_studio, method)
        rotoscope("quality", f"manifests/clip/{method}.json", "--no-preview", cwd=root)
        errors[method] = json.loads((root / f"quality/clip/{method}.json").read_text())
    assert errors["off"]["warping_error"] > 0.005  # the filter alone does flicker on this pan
    assert errors["off"]["warping_error"] == errors["off"]["per_frame_warping_error"]
    assert errors["flow"]["warping_error"] < 0.3 * errors["off"]["warping_error"]
    assert errors["flow"]["per_frame_warping_error"] == errors["off"]["warping_error"]
    # ema smooths too, but drifts further from what the filter paints: it ghosts the moving scene
    assert errors["ema"]["distance_from_per_frame"] > 1.5 * errors["flow"]["distance_from_per_frame"]


def test_a_scene_cut_starts_afresh(shots_studio: Studio) -> None:
    for method in ("off", "ema", "flow"):
        stylize(shots_studio, method)
    off = md5s(shots_studio, "off")
    for method in ("ema", "flow"):
        blended = md5s(shots_studio, method)
        assert blended[0] == off[0] and blended[SHOT] == off[SHOT]  # nothing carried across the cut
        assert all(blended[i] != off[i] for i in range(1, 2 * SHOT) if i != SHOT)
    rotoscope("quality", "manifests/clip/flow.json", "--no-preview", cwd=shots_studio.root)
    with open(shots_studio.root / "quality/clip/flow-frames.csv") as rows:
        unmeasured = [int(row["frame"]) for row in csv.DictReader(rows) if row["warping_error"] == ""]
    assert unmeasured == [0, SHOT]


def test_one_changed_frame_reblends_only_to_the_next_cut(shots_studio: Studio, tmp_path: Path) -> None:
    first = stylize(shots_studio, "flow")
    assert (first.stylized, first.blended) == (2 * SHOT, 2 * SHOT - 2)
    before = md5s(shots_studio, "flow")
    reshot = write_shots(tmp_path / "reshot.mp4", changed=(3,))
    rotoscope("add", str(reshot), "--name", "clip", cwd=shots_studio.root)
    split(shots_studio, "clip")
    assert shots_studio.load_manifest("clip").cuts == [SHOT]  # a retouch is not a cut
    again = stylize(shots_studio, "flow")
    assert (again.stylized, again.blended) == (1, SHOT - 3)  # frame 3 painted; 3..7 blended again
    after = md5s(shots_studio, "flow")
    changed = [i for i in range(2 * SHOT) if before[i] != after[i]]
    assert changed == list(range(3, SHOT))
    measured = rotoscope("quality", "manifests/clip/flow.json", "--no-preview", cwd=shots_studio.root)
    assert "(16 frames measured now" in measured.stderr
    rotoscope(
        "add",
        str(write_shots(tmp_path / "again.mp4", changed=(3, 12))),
        "--name",
        "clip",
        cwd=shots_studio.root,
    )
    split(shots_studio, "clip")
    stylize(shots_studio, "flow")
    again = rotoscope("quality", "manifests/clip/flow.json", "--no-preview", cwd=shots_studio.root)
    assert "(4 frames measured now" in again.stderr  # 12..15: each pair holding a changed frame


def test_a_resumed_run_blends_the_same_bytes(shots_studio: Studio) -> None:
    """Each blend starts from the previous output as written, so a run that stops after frame 4
    and resumes makes the frames an uninterrupted run makes, byte for byte."""
    from rotoscope.pipeline import StylizedFrames
    from rotoscope.store import FrameReuse

    stylize(shots_studio, "flow")
    whole = md5s(shots_studio, "flow")
    job = shots_studio.render_job("flow")
    model_md5 = json.loads((shots_studio.root / "filters/swirls/filter.json").read_text())["model"]["md5"]
    frames = StylizedFrames(
        shots_studio, job, shots_studio.load_manifest("clip"), model_md5, FrameReuse(shots_studio.layout)
    )
    index = shots_studio.root / ".rotoscope/stylized/index"
    for key in frames.output_keys()[5:]:
        (index / key[:2] / key).unlink(missing_ok=True)  # as if killed after frame 4
    resumed = stylize(shots_studio, "flow")
    # frame 8 starts a shot: its output is its own mix, made again from its kept painting
    assert (resumed.stylized, resumed.mixed, resumed.blended) == (0, 1, 2 * SHOT - 5 - 1)
    assert md5s(shots_studio, "flow") == whole


def test_a_new_weight_reblends_without_the_filter(shots_studio: Studio) -> None:
    stylize(shots_studio, "flow")
    set_param(shots_studio.root, "renders", "flow.temporal_weight", 0.4)
    again = stylize(shots_studio, "flow")
    assert (again.stylized, again.blended) == (0, 2 * SHOT - 2)


def test_bad_temporal_params_name_the_file(shots_studio: Studio) -> None:
    with pytest.raises(RotoscopeError, match=r"renders\.flow\.temporal"):  # never written by us
        set_param(shots_studio.root, "renders", "flow.temporal", "smooth")
    params = shots_studio.params_path
    document = YAML(typ="safe").load(params.read_text())
    document["renders"]["flow"]["temporal"] = "smooth"
    YAML(typ="safe").dump(document, params)  # as a hand edit or a pull request would
    failed = rotoscope("stylize", "flow", cwd=shots_studio.root, check=False)
    assert failed.returncode != 0
    assert "params.yaml: renders.flow.temporal: 'smooth' is not one of" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
    refused = rotoscope("quality", "manifests/clip/source.json", cwd=shots_studio.root, check=False)
    assert refused.returncode != 0
    assert "source.json: quality measures a render's manifest" in refused.stderr


def test_metrics_and_plots_diff_across_branches(shots_studio: Studio, tmp_path: Path) -> None:
    """The studio workflow: flicker before and after a branch turns flow on, compared by DVC."""
    root = shots_studio.root
    set_param(root, "renders", "flow.temporal", "off")
    document = shots_studio.params()
    del document["renders"]["off"], document["renders"]["ema"]
    shots_studio.save_params(document)
    dvc("repro", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "frame by frame", cwd=root)
    git("checkout", "-qb", "smooth", cwd=root)
    set_param(root, "renders", "flow.temporal", "flow")
    dvc("repro", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "flow", cwd=root)
    diff = json.loads(dvc("metrics", "diff", "HEAD~1", "--json", cwd=root).stdout)
    change = diff["quality/clip/flow.json"]["warping_error"]
    assert change["new"] < 0.3 * change["old"]
    plots = dvc("plots", "diff", "HEAD~1", "-o", str(tmp_path / "plots"), cwd=root)
    assert (tmp_path / "plots" / "index.html").is_file(), plots.stdout
    assert "warping_error" in (tmp_path / "plots" / "index.html").read_text()
    import av

    with av.open(str(root / "quality/clip/flow-side-by-side.mp4")) as clip:
        stream = clip.streams.video[0]
        assert (stream.width, stream.height) == (2 * SIZE[0], SIZE[1])
        assert sum(1 for _ in clip.decode(video=0)) == 2 * SHOT


def test_a_stopped_quality_run_resumes(shots_studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    from rotoscope import quality

    stylize(shots_studio, "flow")
    manifest = shots_studio.manifest_path("clip", "flow")
    monkeypatch.setattr(quality._MeasureCache, "SAVE_EVERY", 5)
    measure = quality._Pictures.measure
    taken = []

    def stopping(self, index, starts_shot, motion):  # the run dies while measuring frame 12
        if index == 12:
            raise KeyboardInterrupt
        taken.append(index)
        return measure(self, index, starts_shot, motion)

    monkeypatch.setattr(quality._Pictures, "measure", stopping)
    with pytest.raises(KeyboardInterrupt):
        quality.measure(shots_studio, [manifest])
    assert taken == list(range(12))
    monkeypatch.setattr(quality._Pictures, "measure", measure)
    [(report, _)] = quality.measure(shots_studio, [manifest])
    assert report.measured_now == 2 * SHOT - 10  # frames 0-9 were saved (twice five); 10 on again


@pytest.mark.parametrize("size", [(160, 16), (120, 8), (16, 200)])
def test_thin_frames_get_a_finite_flow(size: tuple[int, int]) -> None:
    """OpenCV's DIS crashes on frames under 32 px high and returns NaN under 12; they are enlarged."""
    width, height = size
    scene = landscape(width + 16, height + 16)
    before, after = (grey(np.ascontiguousarray(scene[8 : 8 + height, x : x + width])) for x in (0, 2))
    for preset in ("ultrafast", "fast", "medium"):
        motion = MotionEstimator(preset).motion(before, after)
        assert motion.backward.shape == (height, width, 2)
        assert np.isfinite(motion.backward).all()


def test_quality_refuses_a_render_whose_params_moved_on(shots_studio: Studio) -> None:
    stylize(shots_studio, "flow")
    set_param(shots_studio.root, "renders", "flow.strength", 0.5)
    refused = rotoscope(
        "quality", "manifests/clip/flow.json", "--no-preview", cwd=shots_studio.root, check=False
    )
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "rotoscope: error: manifests/clip/flow.json: made with other settings than params.yaml has now "
        "(run `dvc repro`)"
    )
