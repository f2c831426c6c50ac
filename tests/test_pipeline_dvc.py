"""The studio as a DVC pipeline, driven by the real `dvc` and `git` commands."""

from __future__ import annotations

from pathlib import Path

from conftest import dvc, git, rotoscope, write_lossless
from PIL import ImageOps

from rotoscope.media.synth import constant_rate_clip, panning_pictures
from rotoscope.store import md5_file
from rotoscope.studio import Studio


def tree_md5s(root: Path, *folders: str) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): md5_file(path)
        for folder in folders
        for path in sorted((root / folder).rglob("*"))
        if path.is_file() and path.name != ".gitignore"
    }


def commit_all(root: Path, message: str) -> None:
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", message, cwd=root)


def test_repro_builds_then_does_nothing(studio: Studio, tmp_path: Path) -> None:
    clip = constant_rate_clip(tmp_path / "clip.mp4", size=(160, 90), seconds=0.8)
    rotoscope("add", str(clip), "--name", "clip", cwd=studio.root)

    first = dvc("repro", cwd=studio.root)
    assert "Running stage 'split@clip'" in first.stdout
    assert "Running stage 'reassemble@clip'" in first.stdout
    assert studio.render_path("clip").is_file()
    lock = (studio.root / "dvc.lock").read_text()
    # a manifest's md5 is the very key DVC stores the frame under
    manifest = studio.load_manifest("clip")
    cache = studio.root / ".dvc" / "cache" / "files" / "md5"
    for frame in manifest.frames:
        assert md5_file(cache / frame.md5[:2] / frame.md5[2:]) == frame.md5

    second = dvc("repro", cwd=studio.root)
    assert "Running stage" not in second.stdout
    assert (studio.root / "dvc.lock").read_text() == lock


def test_push_then_pull_in_a_fresh_clone_restores_bytes(studio: Studio, tmp_path: Path) -> None:
    clip = constant_rate_clip(tmp_path / "clip.mp4", size=(160, 90), seconds=0.8)
    rotoscope("add", str(clip), "--name", "clip", cwd=studio.root)
    dvc("repro", cwd=studio.root)
    commit_all(studio.root, "split and reassemble clip")
    dvc("push", cwd=studio.root)
    original = tree_md5s(studio.root, "frames", "renders", "videos")
    assert len(original) > 20

    clone = tmp_path / "clone"
    git("clone", "-q", str(studio.root), str(clone), cwd=tmp_path)
    assert not (clone / "frames").exists()
    dvc("pull", cwd=clone)
    assert tree_md5s(clone, "frames", "renders", "videos") == original
    assert "up to date" in dvc("status", cwd=clone).stdout
    assert rotoscope("verify", cwd=clone).returncode == 0


def _lossless_clip(path: Path, touched_frame: int | None = None) -> Path:
    pictures = list(panning_pictures((96, 54), 12, step=4))
    if touched_frame is not None:
        pictures[touched_frame] = ImageOps.invert(pictures[touched_frame])
    return write_lossless(path, pictures)


def test_replacing_one_frame_changes_one_manifest_line(studio: Studio, tmp_path: Path) -> None:
    rotoscope("add", str(_lossless_clip(tmp_path / "a.mp4")), "--name", "shot", cwd=studio.root)
    dvc("repro", "split@shot", cwd=studio.root)
    commit_all(studio.root, "first cut")

    edited = _lossless_clip(tmp_path / "b.mp4", touched_frame=5)
    rotoscope("add", str(edited), "--name", "shot", cwd=studio.root)
    dvc("repro", "split@shot", cwd=studio.root)
    diff = git("diff", "--unified=0", "--", "manifests/shot/source.json", cwd=studio.root).stdout

    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    frame_lines = [line for line in changed if '"i": ' in line]
    assert len(frame_lines) == 2, diff  # one frame line out, one in
    assert '"i": 5,' in frame_lines[0] and '"i": 5,' in frame_lines[1]
    # the only other lines that move: the video's own md5, and the scene cuts (an inverted frame
    # is a flash: its own shot, cut into and out of)
    others = [line for line in changed if line not in frame_lines]
    assert sorted(line[1:].split(":")[0] for line in others) == [
        '  "cuts"',
        '  "cuts"',
        '  "video"',
        '  "video"',
    ]
    assert '+  "cuts": [5, 6],' in others


def test_blob_store_finds_the_dvc_cache_where_dvc_does(studio: Studio, tmp_path: Path) -> None:
    """The quick answer (no DVC import) for a default studio, and DVC's own once config moves it."""
    from dvc.repo import Repo

    from rotoscope.store import BlobStore

    def dvc_says() -> Path:
        with Repo(str(studio.root)) as repo:
            return Path(repo.cache.local.path)

    assert BlobStore(studio.root)._default_cache_dir() == dvc_says()
    dvc("cache", "dir", "--local", str(tmp_path / "elsewhere"), cwd=studio.root)
    store = BlobStore(studio.root)
    assert store._default_cache_dir() is None  # the config names a cache: ask DVC
    assert store.cache_dir == dvc_says() and str(store.cache_dir).startswith(str(tmp_path / "elsewhere"))
