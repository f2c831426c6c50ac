"""A stranger's fork, reviewed: every file that arrives through Git may be hostile.

A studio with a made render is forked into a branch whose commits attack the reviewer, one class
per test; the reviewer's commands run on it. Around each run a canary folder beside the studio
and the user's home are checksummed: nothing outside the studio is written, deleted, or read into
an output. Each command exits 0 on what is valid, or with one line on what is not, quickly and
within the memory limit.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import git, write_source
from PIL import Image

from rotoscope.errors import OutsideStudioError
from rotoscope.locks import exclusive, render_lock
from rotoscope.media.synth import painting
from rotoscope.studio import Studio, init_studio

MAX_SECONDS = 30.0
MAX_RSS_BYTES = 2 << 30


# -- the reviewer's machine ----------------------------------------------------------------------


@dataclass
class Reviewer:
    """A fork checked out on the reviewer's machine, with the things it must never touch."""

    root: Path
    canary: Path  # beside the studio: a victim folder, a precious file, a private picture
    home: Path

    def snapshot(self) -> dict[str, str]:
        found = {}
        for top in (self.canary, self.home):
            for path in sorted(top.rglob("*")):
                key = str(path.relative_to(top.parent))
                found[key] = "link" if path.is_symlink() else _md5(path) if path.is_file() else "dir"
        found["beside"] = ",".join(sorted(p.name for p in self.root.parent.iterdir()))
        return found

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A command as the reviewer runs it: timed, its memory bounded, its one-line errors checked."""
        env = {**os.environ, "HOME": str(self.home)}
        started = time.monotonic()
        completed = subprocess.run(
            args, cwd=self.root, env=env, capture_output=True, text=True, check=False, timeout=120
        )
        seconds = time.monotonic() - started
        assert seconds < MAX_SECONDS, f"{args} took {seconds:.1f} s"
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
        assert peak < MAX_RSS_BYTES, f"a child used {peak / 2**30:.2f} GiB"
        assert "Traceback" not in completed.stderr, completed.stderr
        assert "\x1b" not in completed.stdout.replace("\x1b[0m", ""), "escape sequences reached the terminal"
        reports_problems = args[3:4] == ("verify",)  # exit 1 with its list of problems
        if (
            completed.returncode != 0
            and args[:3] == (sys.executable, "-m", "rotoscope")
            and not reports_problems
        ):
            lines = completed.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("rotoscope: error: "), completed.stderr
        return completed

    def rotoscope(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "rotoscope", *args)

    def dvc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "dvc", *args)

    def commit(self, message: str) -> None:
        git("add", "-A", "-f", cwd=self.root)
        git("commit", "-qm", message, "--allow-empty", cwd=self.root)

    def params(self) -> dict:
        from ruamel.yaml import YAML

        return YAML(typ="safe").load((self.root / "params.yaml").read_text())

    def write_params(self, document: dict) -> None:
        from ruamel.yaml import YAML

        with open(self.root / "params.yaml", "w") as handle:
            YAML(typ="safe").dump(document, handle)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def made_studio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A studio with a 10-frame clip, an instant filter and its render, all made and committed."""
    base = tmp_path_factory.mktemp("made")
    studio, _ = init_studio(base / "studio", remote=base / "remote")
    root = studio.root
    studio.add_video(write_source(base / "clip.mp4"), "clip")
    Image.fromarray(painting(160, 120)).save(base / "style.png")
    run = [sys.executable, "-m", "rotoscope"]
    for command in (
        ["filter", "new", "swirls", "--style", str(base / "style.png"), "--kind", "instant"],
        ["render", "new", "look", "--video", "clip", "--filter", "swirls", "--strength", "0.8"],
        ["split", "clip"],
        ["stylize", "look"],
    ):
        subprocess.run([*run, *command], cwd=root, check=True, capture_output=True)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "a clip, a filter, a render", cwd=root)
    return root


@pytest.fixture
def fork(made_studio: Path, tmp_path: Path) -> Reviewer:
    """The made studio copied for one test, on a branch `pr` for the hostile commits."""
    root = tmp_path / "studio"
    shutil.copytree(made_studio, root, symlinks=True)
    canary = tmp_path / "canary"
    (canary / "victim").mkdir(parents=True)
    (canary / "victim" / "keep.txt").write_text("the victim's own file\n")
    (canary / "precious.txt").write_text("precious\n")
    Image.fromarray(np.full((96, 128, 3), (250, 0, 200), np.uint8)).save(canary / "private.jpg")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("not really a key\n")
    git("branch", "-qM", "main", cwd=root)
    git("switch", "-qc", "pr", cwd=root)
    return Reviewer(root, canary, home)


def assert_refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0, result.stdout + result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


# -- names in params.yaml ------------------------------------------------------------------------


def test_a_render_named_to_escape_cannot_delete_or_write_outside(fork: Reviewer) -> None:
    before = fork.snapshot()
    params = fork.params()
    params["renders"]["../../../../" + str(fork.canary / "victim").lstrip("/")] = {
        "video": "clip",
        "filter": "swirls",
    }
    params["renders"]["../canary/victim"] = {"video": "clip", "filter": "swirls"}
    fork.write_params(params)
    fork.commit("a render with a path for a name")

    assert_refused(fork.rotoscope("stylize", "../canary/victim"), "params.yaml", "valid name")
    assert_refused(fork.rotoscope("stylize"), "params.yaml")
    assert fork.dvc("repro").returncode != 0
    fork.rotoscope("diff", "main", "pr")
    assert fork.snapshot() == before


def test_a_video_named_to_escape_cannot_reach_outside(fork: Reviewer) -> None:
    before = fork.snapshot()
    params = fork.params()
    params["videos"]["../../canary/victim"] = {"file": "videos/clip.mp4"}
    fork.write_params(params)
    fork.commit("a video with a path for a name")
    assert_refused(fork.rotoscope("split"), "params.yaml", "valid name")
    assert_refused(fork.rotoscope("split", "../../canary/victim"), "invalid video name")
    assert fork.snapshot() == before


@pytest.mark.parametrize("model", ["../precious.txt", "ABSOLUTE", "filters/other/model.npy"])
def test_a_filter_model_path_cannot_overwrite_another_file(fork: Reviewer, model: str) -> None:
    before = fork.snapshot()
    params = fork.params()
    params["filters"]["swirls"]["model"] = str(fork.canary / "precious.txt") if model == "ABSOLUTE" else model
    fork.write_params(params)
    fork.commit("the filter's model points elsewhere")
    assert_refused(fork.rotoscope("filter", "make", "swirls"), "params.yaml", "filters.swirls.model")
    assert_refused(fork.rotoscope("stylize", "look"), "params.yaml")
    assert fork.snapshot() == before


# -- symlinks ------------------------------------------------------------------------------------


def test_committed_symlinks_cannot_redirect_writes(fork: Reviewer) -> None:
    before = fork.snapshot()
    (fork.root / "quality").mkdir(exist_ok=True)
    (fork.root / "quality" / "clip").symlink_to(fork.canary / "victim")
    shutil.rmtree(fork.root / "renders", ignore_errors=True)
    (fork.root / "renders").symlink_to(fork.canary / "victim")
    fork.commit("symlinks out of the studio")

    assert_refused(fork.rotoscope("quality", "manifests/clip/look.json"), "outside the studio")
    assert_refused(
        fork.rotoscope("reassemble", "manifests/clip/look.json", "-o", "renders/clip/look.mp4"),
        "outside the studio",
    )
    (fork.root / ".rotoscope").rename(fork.root / ".rotoscope-gone")
    (fork.root / ".rotoscope").symlink_to(fork.canary / "victim")
    assert_refused(fork.rotoscope("stylize", "look"), "outside the studio")
    assert_refused(fork.rotoscope("split", "clip"), "outside the studio")
    assert fork.snapshot() == before


def test_a_symlinked_folder_inside_the_studio_is_never_deleted(fork: Reviewer) -> None:
    """A frames folder linked to the studio's own videos/: swapping in new frames replaces the
    link, never what it points at."""
    videos_before = {p.name: _md5(p) for p in (fork.root / "videos").iterdir() if p.is_file()}
    look = fork.root / "frames" / "clip" / "look"
    shutil.rmtree(look)
    look.symlink_to(fork.root / "videos")
    assert fork.rotoscope("stylize", "look").returncode == 0
    assert {p.name: _md5(p) for p in (fork.root / "videos").iterdir() if p.is_file()} == videos_before
    assert look.is_dir() and not look.is_symlink() and len(list(look.iterdir())) == 10
    (fork.root / "scratch-link").symlink_to(fork.root / "videos")
    with pytest.raises(OutsideStudioError):
        Studio(fork.root).layout.remove_tree(fork.root / "scratch-link")
    with pytest.raises(OutsideStudioError):
        Studio(fork.root).layout.remove_tree(fork.root / ".rotoscope" / "partial" / ".." / ".." / "videos")


# -- manifests pointing outside ------------------------------------------------------------------


def _edit_manifest(fork: Reviewer, change) -> Path:
    path = fork.root / "manifests" / "clip" / "look.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("frames_dir", "../canary"),
        ("frames_dir", "/etc"),
        ("video", "../canary/private.jpg"),
        ("md5", "../../canary/private.jpg"),
        ("md5", "a' onerror='alert(1)"),
    ],
)
def test_manifest_paths_that_leave_the_studio_are_refused(fork: Reviewer, field: str, value: str) -> None:
    before = fork.snapshot()

    def change(document: dict) -> None:
        if field == "video":
            document["video"]["path"] = value
        elif field == "md5":
            document["frames"][2]["md5"] = value
        else:
            document[field] = value

    _edit_manifest(fork, change)
    fork.commit(f"manifest {field} points outside")
    verified = fork.rotoscope("verify", "manifests/clip/look.json")
    assert verified.returncode == 1 and "does not match" in verified.stdout
    assert_refused(fork.rotoscope("show", "manifests/clip/look.json"), "look.json")
    assert_refused(fork.rotoscope("reassemble", "manifests/clip/look.json", "-o", "out.mp4"), "look.json")
    assert_refused(fork.rotoscope("fetch", "manifests/clip/look.json", "--frames", "0-3"), "look.json")
    page = fork.root / "review.html"
    fork.rotoscope("diff", "main", "pr", "--html", str(page))
    if page.exists():
        text = page.read_text()
        assert "onerror" not in text.replace("&#39;", "'").split("<img")[0] or "onerror=" not in text
        assert _md5(fork.canary / "private.jpg") not in text
    assert not (fork.root / "out.mp4").exists()
    assert fork.snapshot() == before


def test_frames_reached_through_a_symlink_are_not_intact(fork: Reviewer) -> None:
    """A frames folder swapped for a link to outside copies of the frames: verify must not call
    them intact, reassemble must not encode them."""
    outside = fork.canary / "frames"
    shutil.copytree(fork.root / "frames" / "clip" / "look", outside)
    shutil.rmtree(fork.root / "frames" / "clip" / "look")
    (fork.root / "frames" / "clip" / "look").symlink_to(outside)
    verified = fork.rotoscope("verify", "manifests/clip/look.json")
    assert verified.returncode == 1 and "outside the studio" in verified.stdout
    assert_refused(
        fork.rotoscope("reassemble", "manifests/clip/look.json", "-o", "out.mp4"), "outside the studio"
    )


# -- exhausting memory or time -------------------------------------------------------------------


def _alias_bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\nvideos: {}\n"


def test_a_yaml_alias_bomb_is_refused_fast(fork: Reviewer) -> None:
    (fork.root / "params.yaml").write_text(_alias_bomb())
    fork.commit("a billion laughs")
    diffed = fork.rotoscope("diff", "main", "pr")
    assert diffed.returncode == 0 or "alias" in diffed.stderr
    assert_refused(fork.rotoscope("stylize", "look"), "params.yaml", "aliases")
    assert_refused(fork.rotoscope("filter", "list"), "params.yaml")


@pytest.mark.parametrize("fps", ["1e9", ".inf", "1e-300", ".nan", "-3"])
def test_absurd_frame_rates_are_refused(fork: Reviewer, fps: str) -> None:
    text = (fork.root / "params.yaml").read_text().replace("fps: source", f"fps: {fps}")
    (fork.root / "params.yaml").write_text(text)
    assert_refused(fork.rotoscope("split", "clip"), "params.yaml", "split.fps")


# -- text that reaches a terminal or a Markdown comment ------------------------------------------


def test_card_text_and_commit_subjects_cannot_drive_the_terminal(fork: Reviewer) -> None:
    card_path = fork.root / "filters" / "swirls" / "filter.json"
    card = json.loads(card_path.read_text())
    card["provenance"]["title"] = "The Kiss [/i] [bold red]x[/]"
    card["provenance"]["artist"] = "Klimt\x1b]0;pwned\x07\x1b[31m"
    card_path.write_text(json.dumps(card))
    fork.commit("a title with markup and \x1b[31mescapes\x1b[0m")
    listed = fork.rotoscope("filter", "list")
    assert listed.returncode == 0
    assert "The Kiss [/i]" in listed.stdout
    shown = fork.rotoscope("filter", "show", "swirls")
    assert "The Kiss [/i] [bold red]x[/]" in shown.stdout and "\x1b" not in shown.stdout
    logged = fork.rotoscope("log", "filters/swirls/filter.json")
    assert "\x1b" not in logged.stdout + logged.stderr
    markdown = fork.rotoscope("diff", "main", "pr", "--md")
    assert markdown.returncode == 0 and "\x1b" not in markdown.stdout


# -- two writers ---------------------------------------------------------------------------------


def test_a_second_writer_of_a_render_is_refused(fork: Reviewer) -> None:
    studio = Studio(fork.root)
    manifest = studio.manifest_path("clip", "look")
    before = manifest.read_bytes()
    with exclusive(studio.layout, render_lock("clip", "look"), "writing render 'look'"):
        assert_refused(fork.rotoscope("stylize", "look"), "already writing render 'look'", "wait")
        assert_refused(
            fork.rotoscope("reassemble", "manifests/clip/look.json", "-o", "renders/clip/look.mp4"),
            "already",
        )
        assert_refused(fork.rotoscope("quality", "manifests/clip/look.json", "--no-preview"), "already")
    assert manifest.read_bytes() == before
    assert fork.rotoscope("stylize", "look").returncode == 0
    verified = fork.rotoscope("verify", "manifests/clip/look.json")
    assert verified.returncode == 0, verified.stdout
