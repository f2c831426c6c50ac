"""Comparing manifests: frame ranges, settings, sampling, time ranges; a studio inside a repository."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import CHANGED, dvc, git, rotoscope, write_source

from rotoscope.history import compare_frames, compare_manifests, flat_changes
from rotoscope.manifest import Frame, Manifest
from rotoscope.review import MAX_SAMPLES, sampled_frames
from rotoscope.studio import init_studio


def frames(md5s: str, step: int = 10) -> list[dict]:
    """One frame per letter: the letter stands for its md5."""
    return [{"i": i, "pts": i * step, "md5": letter * 32, "bytes": 1} for i, letter in enumerate(md5s)]


def test_changed_frames_come_as_inclusive_ranges() -> None:
    found = compare_frames(frames("abcdefgh"), frames("abXXeYgh"))
    assert found.changed == [(2, 3), (5, 5)] and found.changed_count == 3
    assert (found.added, found.removed, found.same) == (0, 0, 5)


def test_frames_added_and_removed_at_the_end() -> None:
    longer = compare_frames(frames("abc"), frames("abcde"))
    assert (longer.changed, longer.added, longer.removed) == ([], 2, 0)
    shorter = compare_frames(frames("abcde"), frames("aXc"))
    assert (shorter.changed, shorter.added, shorter.removed) == ([(1, 1)], 0, 2)


def test_a_retimed_frame_counts_as_changed() -> None:
    retimed = frames("abc")
    retimed[2] = {**retimed[2], "pts": 25}
    assert compare_frames(frames("abc"), retimed).changed == [(2, 2)]


def test_flat_changes_name_dotted_keys() -> None:
    before = {"renders": {"look": {"strength": 0.8, "filter": "scream"}}, "split": {"fps": "source"}}
    after = {
        "renders": {"look": {"strength": 0.5, "filter": "scream"}, "new": {"x": 1}},
        "split": {"fps": "source"},
    }
    assert flat_changes(before, after) == {
        "renders.look.strength": (0.8, 0.5),
        "renders.new": (None, {"x": 1}),
    }


def test_manifest_status() -> None:
    header = {"video": {"md5": "v" * 32}, "extract": {"format": "jpg"}, "width": 4, "height": 4}
    same = {**header, "frames": frames("abc")}
    assert compare_manifests("m.json", same, same).status == "unchanged"
    assert compare_manifests("m.json", None, same).status == "added"
    assert compare_manifests("m.json", same, None).status == "removed"
    resized = {**same, "width": 8}
    change = compare_manifests("m.json", same, resized)
    assert change.status == "changed" and change.settings == {"width": (4, 8)}


def test_sampling_keeps_range_ends_and_is_capped() -> None:
    assert sampled_frames([(3, 3), (10, 20)]) == [3, 10, 15, 20]
    assert len(sampled_frames([(k * 10, k * 10 + 5) for k in range(100)])) == MAX_SAMPLES


def test_frames_shown_in_a_time_range() -> None:
    manifest = Manifest(
        kind="source",
        name="m",
        video={},
        extract={"format": "jpg"},
        frames_dir="frames/m/source",
        width=4,
        height=4,
        time_base="1/10",
        end_pts=40,
        frames=[Frame(i, i * 10, "a" * 32, 1) for i in range(4)],  # one frame a second
    )
    assert [f.i for f in manifest.frames_shown(1.5, 2.5)] == [1, 2]  # on screen at some moment
    assert [f.i for f in manifest.frames_shown(1.0, 2.0)] == [1, 2]  # both ends count
    assert [f.i for f in manifest.frames_shown(2.5, 2.5)] == [2]  # an instant
    assert [f.i for f in manifest.frames_shown(3.5, 9.0)] == [3]
    assert [f.i for f in manifest.frames_between(1, 2)] == [1, 2]


def test_diff_and_log_in_a_studio_inside_a_larger_repository(tmp_path: Path) -> None:
    """The studio is a folder of a project repository: paths stay the studio's own."""
    top = tmp_path / "project"
    top.mkdir()
    git("init", "-q", cwd=top)
    (top / "README.md").write_text("a project with a studio inside\n")
    git("add", "-A", cwd=top)
    git("commit", "-qm", "project", cwd=top)
    studio, _ = init_studio(top / "studio", remote=tmp_path / "remote")
    rotoscope("add", str(write_source(tmp_path / "clip.mp4")), "--name", "clip", cwd=studio.root)
    dvc("repro", cwd=studio.root)
    git("add", "-A", cwd=top)
    git("commit", "-qm", "split", cwd=top)
    rotoscope("add", str(write_source(tmp_path / "reshot.mp4", CHANGED)), "--name", "clip", cwd=studio.root)
    dvc("repro", cwd=studio.root)
    git("add", "-A", cwd=top)
    git("commit", "-qm", "re-shot", cwd=top)

    report = json.loads(rotoscope("diff", "HEAD~1", "HEAD", "--json", cwd=studio.root).stdout)
    (change,) = report["manifests"]
    assert change["path"] == "manifests/clip/source.json" and change["frames"]["changed"] == [[3, 3], [7, 7]]
    history = rotoscope("log", "manifests/clip/source.json", cwd=studio.root).stdout
    assert "re-shot" in history and "changed frames: 3, 7" in history
