"""The stylize stage: renders through `dvc repro`, per-frame reuse counted, lineage per frame."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CHANGED, FRAMES, dvc, git, repro, rotoscope, set_param, write_source
from PIL import Image

from rotoscope import manifest as manifests
from rotoscope.media.synth import painting
from rotoscope.pipeline import StylizedFrames
from rotoscope.store import FrameReuse
from rotoscope.studio import Studio


def test_model_runs_only_for_frames_it_has_not_made(render_studio: Studio, tmp_path: Path) -> None:
    root = render_studio.root
    assert repro(root) == FRAMES  # full run
    render = root / "renders/clip/look.mp4"
    first_render = render.read_bytes()

    set_param(root, "reassemble", "crf", 30)  # an encoder change re-stylizes nothing
    assert repro(root) is None
    assert render.read_bytes() != first_render

    rotoscope("add", str(write_source(tmp_path / "reshot.mp4", CHANGED)), "--name", "clip", cwd=root)
    assert repro(root) == len(CHANGED)  # two re-shot frames, two model runs

    set_param(root, "renders", "look.strength", 0.5)
    assert repro(root) == 0  # a new strength: every frame mixed again from its kept painting

    set_param(root, "renders", "look.strength", 0.8)  # back to a look made before
    assert repro(root) == 0


def test_reuse_survives_dvc_removing_outputs(render_studio: Studio) -> None:
    root = render_studio.root
    assert repro(root) == FRAMES
    dvc("repro", "--force", "stylize@look", cwd=root)  # DVC deletes the outputs first
    assert json.loads((root / ".rotoscope/logs/stylize-look.json").read_text())["stylized"] == 0
    dvc("status", cwd=root)


def test_stylized_manifest_records_lineage_per_frame(render_studio: Studio) -> None:
    root = render_studio.root
    repro(root)
    source = manifests.load(root / "manifests/clip/source.json")
    styled = manifests.load(root / "manifests/clip/look.json")
    assert styled.kind == "stylized" and styled.lineage is not None
    assert styled.lineage.parent == "manifests/clip/source.json"
    assert styled.lineage.filter["name"] == "swirls" and styled.lineage.filter["kind"] == "instant"
    card = json.loads((root / "filters/swirls/filter.json").read_text())
    assert styled.lineage.filter["model_md5"] == card["model"]["md5"]
    assert styled.lineage.render == {"strength": 0.8, "preserve_color": False, "max_side": None}
    assert [f.src for f in styled.frames] == [f.md5 for f in source.frames]
    assert [f.pts for f in styled.frames] == [f.pts for f in source.frames]
    assert len({f.md5 for f in styled.frames}) == FRAMES  # every frame its own picture
    for frame in styled.frames:  # what the manifest says is what is on disk
        path = styled.frame_path(root, frame)
        assert path.stat().st_size == frame.bytes
    shown = rotoscope("show", "manifests/clip/look.json", cwd=root).stdout
    assert "filter     swirls (instant)" in shown and "strength 0.8" in shown
    rotoscope("verify", cwd=root)


def test_bad_render_entries_are_refused(render_studio: Studio) -> None:
    root = render_studio.root
    before = (root / "params.yaml").read_text()
    for args, problem in [
        (["--video", "nope", "--filter", "swirls"], "no video named 'nope'"),
        (["--video", "clip", "--filter", "nope"], "no filter named 'nope'"),
        (["--video", "clip", "--filter", "swirls", "--strength", "1.5"], "strength must be between 0 and 1"),
    ]:
        failed = rotoscope("render", "new", "other", *args, cwd=root, check=False)
        assert failed.returncode == 1 and problem in failed.stderr, failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1
    source = ["render", "new", "source", "--video", "clip", "--filter", "swirls"]
    failed = rotoscope(*source, cwd=root, check=False)
    assert failed.returncode == 1 and "'source' names the split frames" in failed.stderr
    assert (root / "params.yaml").read_text() == before


def test_two_branches_reproduce_and_diff_names_the_changes(render_studio: Studio, tmp_path: Path) -> None:
    """main: strength 0.8; softer: strength 0.5 and two re-shot frames. Switch back and forth."""
    root = render_studio.root
    git("branch", "-M", "main", cwd=root)  # whatever the machine's default branch name
    repro(root)
    main_frames = {f.md5 for f in manifests.load(root / "manifests/clip/look.json").frames}
    git("switch", "-qc", "softer", cwd=root)
    set_param(root, "renders", "look.strength", 0.5)
    rotoscope("add", str(write_source(tmp_path / "reshot.mp4", CHANGED)), "--name", "clip", cwd=root)
    repro(root)
    softer_frames = {f.md5 for f in manifests.load(root / "manifests/clip/look.json").frames}
    assert not main_frames & softer_frames

    for branch, expected in (("main", main_frames), ("softer", softer_frames), ("main", main_frames)):
        git("switch", "-q", branch, cwd=root)
        dvc("checkout", cwd=root)
        styled = manifests.load(root / "manifests/clip/look.json")
        assert {f.md5 for f in styled.frames} == expected
        assert "Running stage" not in dvc("repro", cwd=root).stdout  # both versions are complete
        rotoscope("verify", cwd=root)

    report = json.loads(rotoscope("diff", "main", "softer", "--json", cwd=root).stdout)
    assert report["params"]["renders.look.strength"] == [0.8, 0.5]
    changes = {m["path"]: m for m in report["manifests"]}
    source = changes["manifests/clip/source.json"]
    assert source["frames"]["changed"] == [[3, 3], [7, 7]] and source["frames"]["same"] == FRAMES - 2
    look = changes["manifests/clip/look.json"]
    assert look["frames"]["changed"] == [[0, FRAMES - 1]]
    assert look["settings"]["lineage.render.strength"] == [0.8, 0.5]
    assert look["frames"]["added"] == 0 and look["frames"]["removed"] == 0

    markdown = rotoscope("diff", "main", "softer", "--md", cwd=root).stdout
    assert "`renders.look.strength` | `0.8` | `0.5`" in markdown
    assert "changed frames: 3, 7" in markdown
    only_source = json.loads(
        rotoscope("diff", "main", "softer", "manifests/clip/source.json", "--json", cwd=root).stdout
    )
    assert [m["path"] for m in only_source["manifests"]] == ["manifests/clip/source.json"]

    every_frame = []  # frame md5s of every manifest on both branches, repeats included
    for branch in ("main", "softer"):
        for path in ("manifests/clip/source.json", "manifests/clip/look.json"):
            shown = git("show", f"{branch}:{path}", cwd=root).stdout
            every_frame += [frame["md5"] for frame in json.loads(shown)["frames"]]
    dvc("push", "--all-branches", cwd=root)
    remote = root.parent / "remote"
    stored = [p.parent.name + p.name for p in (remote / "files/md5").rglob("*") if p.is_file()]
    assert len(stored) == len(set(stored))
    frame_objects = [md5 for md5 in stored if md5 in set(every_frame)]
    assert sorted(frame_objects) == sorted(set(every_frame))  # each frame once, shared ones too
    assert len(every_frame) - len(frame_objects) == FRAMES - len(CHANGED)  # the shared source frames

    git("switch", "-q", "softer", cwd=root)
    history = rotoscope("log", "manifests/clip/source.json", cwd=root).stdout
    assert "changed frames: 3, 7" in history and "added (10 frames)" in history


def test_fetch_pulls_only_the_chosen_frames(render_studio: Studio, tmp_path: Path) -> None:
    root = render_studio.root
    repro(root)
    dvc("push", cwd=root)
    clone = tmp_path / "clone"
    git("clone", "-q", str(root), str(clone), cwd=tmp_path)
    styled = manifests.load(clone / "manifests/clip/look.json")

    rotoscope("fetch", "manifests/clip/look.json", "--frames", "2-4", cwd=clone)
    present = {f.i for f in styled.frames if styled.frame_path(clone, f).is_file()}
    assert present == {2, 3, 4}
    blobs = {p.parent.name + p.name for p in (clone / ".dvc/cache/files/md5").rglob("*") if p.is_file()}
    assert {f.md5 for f in styled.frames} & blobs == {f.md5 for f in styled.frames if f.i in present}

    step = styled.seconds(styled.frames[1].pts)  # 0.04 s a frame
    rotoscope(
        "fetch", "manifests/clip/look.json", "--time", f"{6 * step + 0.001}-{7 * step + 0.001}", cwd=clone
    )
    present = {f.i for f in styled.frames if styled.frame_path(clone, f).is_file()}
    assert present == {2, 3, 4, 6, 7}

    for args, problem in [
        (["--frames", "7-3"], "the end comes before the start"),
        (["--frames", "a-b"], "takes FIRST-LAST"),
        (["--frames", "50-60"], "no frames in that range"),
        ([], "give exactly one of"),
    ]:
        failed = rotoscope("fetch", "manifests/clip/look.json", *args, cwd=clone, check=False)
        assert failed.returncode == 1 and problem in failed.stderr, failed.stderr


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        pytest.skip("no Chromium on PATH (./run tests installs Debian's chromium with apt-get)")
    return found


def headless(browser: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={cwd / 'chromium-profile'}",
        "--virtual-time-budget=5000",
    ]
    return subprocess.run(
        [browser, *flags, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=True
    )


def three_versions_and_a_review(root: Path, tmp_path: Path) -> Path:
    """main, reshot (frames 3 and 7 re-shot) and softer (strength 0.5), all pushed; a reviewer's
    fresh clone, sitting on softer, writes the review page of main..reshot. Returns the clone."""
    git("branch", "-M", "main", cwd=root)
    repro(root)
    dvc("push", cwd=root)
    git("switch", "-qc", "reshot", cwd=root)
    rotoscope("add", str(write_source(tmp_path / "reshot.mp4", CHANGED)), "--name", "clip", cwd=root)
    repro(root)
    dvc("push", cwd=root)
    git("switch", "-qc", "softer", "main", cwd=root)
    set_param(root, "renders", "look.strength", 0.5)
    repro(root)
    dvc("push", cwd=root)

    clone = tmp_path / "clone"  # nothing in its cache
    git("clone", "-q", str(root), str(clone), cwd=tmp_path)
    git("switch", "-q", "softer", cwd=clone)
    rotoscope("diff", "origin/main", "origin/reshot", "--html", str(tmp_path / "review.html"), cwd=clone)
    return clone


def test_review_page_fetches_only_the_sampled_frames(render_studio: Studio, tmp_path: Path) -> None:
    clone = three_versions_and_a_review(render_studio.root, tmp_path)
    cached = [p for p in (clone / ".dvc/cache/files/md5").rglob("*") if p.is_file() and p.suffix != ".dir"]
    assert len(cached) == 2 * 2 * len(CHANGED)  # frames 3 and 7, before and after, source and look
    wanted = set()
    for rev in ("origin/main", "origin/reshot"):
        for path in ("manifests/clip/source.json", "manifests/clip/look.json"):
            frames = json.loads(git("show", f"{rev}:{path}", cwd=clone).stdout)["frames"]
            wanted |= {frames[i]["md5"] for i in CHANGED}
    assert {p.parent.name + p.name for p in cached} == wanted  # not the checked-out branch's
    text = (tmp_path / "review.html").read_text()
    assert "changed frames 3, 7" in text and text.count("<img ") == 2 * 2 * len(CHANGED)
    assert "not in cache or remote" not in text


def test_review_page_opens_in_a_browser(render_studio: Studio, tmp_path: Path) -> None:
    browser = chromium()
    three_versions_and_a_review(render_studio.root, tmp_path)
    page = tmp_path / "review.html"
    dom = headless(browser, "--dump-dom", page.as_uri(), cwd=tmp_path).stdout
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    assert loaded and int(loaded.group(1)) == 2 * 2 * len(CHANGED), dom[-400:]
    shot = tmp_path / "shot.png"
    headless(browser, f"--screenshot={shot}", "--window-size=1100,1400", page.as_uri(), cwd=tmp_path)
    with Image.open(shot) as picture:
        colours = np.asarray(picture.convert("RGB"), dtype=np.float32)
    assert colours.std() > 20  # thumbnails on the page, not a blank one


def test_a_killed_stylize_run_resumes(render_studio: Studio, tmp_path: Path) -> None:
    root = render_studio.root
    frames = 40
    rotoscope("add", str(write_source(tmp_path / "long.mp4", frames=frames)), "--name", "clip", cwd=root)
    dvc("repro", "split@clip", "train@swirls", cwd=root)
    index = root / ".rotoscope/stylized/index"
    child = subprocess.Popen(
        [sys.executable, "-m", "rotoscope", "stylize", "look"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(list(index.rglob("*"))) < 8:  # a few frames made (index folders count too)
        assert child.poll() is None and time.monotonic() < deadline, "stylize ended before it could be killed"
        time.sleep(0.02)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    made = {p.name for p in index.rglob("*") if p.is_file()}  # paintings and finished frames
    source = render_studio.load_manifest("clip")
    model = json.loads((root / "filters/swirls/filter.json").read_text())["model"]["md5"]
    job = render_studio.render_job("look")
    keys = StylizedFrames(render_studio, job, source, model, FrameReuse(render_studio.layout))
    painted = sum(keys.painting_key(frame) in made for frame in source.frames)
    finished = sum(key in made for key in keys.output_keys())
    assert 0 < painted < frames and finished <= painted  # paintings come first, then the frames
    assert not (root / "manifests/clip/look.json").exists()  # nothing half-written where it shows
    rotoscope("stylize", "look", cwd=root)
    log = json.loads((root / ".rotoscope/logs/stylize-look.json").read_text())
    counts = {key: value for key, value in log.items() if key != "painting"}
    assert log["painting"]["executor"] == "local" and log["painting"]["took_s"] > 0
    # the killed run's paintings are in the ledger: the resumed one was estimated from them
    assert log["painting"]["estimate_s"] > 0
    assert counts == {
        "frames": frames,
        "stylized": frames - painted,  # the paintings the killed run had not kept
        "mixed": frames - finished,
        "blended": 0,
        "reused": finished,
    }
    rotoscope("verify", "manifests/clip/look.json", cwd=root)


def test_stylize_and_diff_refuse_bad_requests(render_studio: Studio, tmp_path: Path) -> None:
    root = render_studio.root
    dvc("repro", "split@clip", cwd=root)
    Image.fromarray(painting(160, 120)).save(tmp_path / "deep.png")
    rotoscope("filter", "new", "deep", "--style", str(tmp_path / "deep.png"), cwd=root)  # trained: not yet
    rotoscope("render", "new", "look", "--video", "clip", "--filter", "deep", cwd=root)
    no_model = rotoscope("stylize", "look", cwd=root, check=False)
    assert no_model.returncode == 1 and "has no model yet" in no_model.stderr
    assert len(no_model.stderr.strip().splitlines()) == 1
    unknown = rotoscope("diff", "no-such-branch", cwd=root, check=False)
    assert unknown.returncode == 1 and "unknown revision 'no-such-branch'" in unknown.stderr
    outside = rotoscope("diff", "HEAD", "HEAD", str(tmp_path), cwd=root, check=False)
    assert outside.returncode == 1 and "outside the studio" in outside.stderr
    nothing = rotoscope("diff", "HEAD", "HEAD", "manifests/nope", cwd=root, check=False)
    assert nothing.returncode == 1 and "no manifest under this path" in nothing.stderr


def test_diff_lists_a_render_added_on_a_branch(render_studio: Studio, tmp_path: Path) -> None:
    root = render_studio.root
    git("branch", "-M", "main", cwd=root)
    dvc("repro", "split@clip", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "split only", cwd=root)
    repro(root)
    report = json.loads(rotoscope("diff", "HEAD~1", "HEAD", "--json", cwd=root).stdout)
    added = {m["path"]: m for m in report["manifests"]}["manifests/clip/look.json"]
    assert added["status"] == "added" and added["frames_b"] == FRAMES
    page = tmp_path / "page.html"
    rotoscope("diff", "HEAD~1", "HEAD", "--html", str(page), cwd=root)
    assert "manifests/clip/look.json</code>: added (10 frames)" in page.read_text()


def test_stylize_clears_what_killed_runs_left_half_written(render_studio: Studio) -> None:
    blobs = render_studio.root / ".rotoscope/stylized/blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    old, fresh = blobs / ".made-1.x.partial.jpg", blobs / ".made-2.y.partial.jpg"
    for leftover in (old, fresh):
        leftover.write_bytes(b"half a frame")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    dvc("repro", "split@clip", "train@swirls", cwd=render_studio.root)
    rotoscope("stylize", "look", cwd=render_studio.root)
    assert not old.exists()
    assert fresh.exists()  # it may belong to a run going on beside this one


def test_reassemble_and_stylize_clear_the_half_written_files_of_a_killed_run(render_studio: Studio) -> None:
    root = render_studio.root
    dvc("repro", "split@clip", "train@swirls", cwd=root)
    half_manifest = root / "manifests/clip/.look.k1ll3d.partial.json"
    half_render = root / "renders/clip/.look.k1ll3d.partial.mp4"
    for leftover in (half_manifest, half_render):
        leftover.parent.mkdir(parents=True, exist_ok=True)
        leftover.write_bytes(b"half a file")
    rotoscope("stylize", "look", cwd=root)
    assert not half_manifest.exists()
    rotoscope("reassemble", "manifests/clip/look.json", "-o", "renders/clip/look.mp4", cwd=root)
    assert not half_render.exists()
    assert sorted(path.name for path in (root / "renders/clip").iterdir()) == ["look.mp4"]
