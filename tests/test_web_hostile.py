"""A hostile fork viewed through the web studio: its revision read from Git (review, compare), and
its work tree served after checking it out. Nothing it holds runs, reaches the page as markup, or
leads the server outside the studio."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import git
from fastapi.testclient import TestClient

from rotoscope.web.app import create_app
from rotoscope.web.security import Access

SCRIPT = "<script>window.pwned=1</script>"


@pytest.fixture(scope="module")
def fork(history_studio: Path) -> Path:
    """Branch `fork`: a card that tries markup and a javascript: link, a manifest whose frames lie
    outside, a symlinked quality folder, a stage command that would write a canary, an HTML subject."""
    root = history_studio
    first = git("branch", "--show-current", cwd=root).stdout.strip()
    git("checkout", "-qb", "fork", cwd=root)
    card_path = root / "filters/swirls/filter.json"
    card = json.loads(card_path.read_text())
    card["provenance"] |= {
        "title": SCRIPT,
        "artist": "<img src=x onerror=alert(1)>",
        "source_url": "javascript:alert(1)",
    }
    card_path.write_text(json.dumps(card, indent=2))
    manifest_path = root / "manifests/clip/look.json"
    manifest_path.write_text(
        manifest_path.read_text().replace('"frames_dir": "frames/clip/look"', '"frames_dir": "../../outside"')
    )
    dvc_yaml = root / "dvc.yaml"
    dvc_yaml.write_text(
        dvc_yaml.read_text().replace(
            "rotoscope stylize", f"touch {root.parent / 'CANARY'} && rotoscope stylize"
        )
    )
    git("add", "-A", cwd=root)
    # quality/clip becomes a symlink to /etc in the commit only (the work tree keeps its folder)
    git("rm", "-r", "-q", "--cached", "quality/clip", cwd=root)
    (root.parent / "link-target").write_text("/etc")
    target = git("hash-object", "-w", str(root.parent / "link-target"), cwd=root).stdout.strip()
    git("update-index", "--add", "--cacheinfo", f"120000,{target},quality/clip", cwd=root)
    git("commit", "-qm", f"<b>innocent</b> {SCRIPT}", cwd=root)
    git("checkout", "-qf", first, cwd=root)
    return root


@pytest.fixture(scope="module")
def client(fork: Path) -> Iterator[TestClient]:
    with TestClient(
        create_app(fork, Access.for_binding("127.0.0.1", 8000, None), run_jobs=False),
        base_url="http://127.0.0.1:8000",
    ) as client:
        yield client


def assert_inert(html: str) -> None:
    assert SCRIPT not in html and "<img src=x" not in html
    assert 'href="javascript:' not in html.lower()


def test_the_fork_reviewed_from_git_shows_its_warnings_as_text(client: TestClient, fork: Path) -> None:
    page = client.get("/review", params={"a": "v1", "b": "fork"})
    assert page.status_code == 200
    assert_inert(page.text)
    assert "&lt;script&gt;" in page.text  # shown, as text
    assert "Check these by hand" in page.text and "changed its command" in page.text
    assert not (fork.parent / "CANARY").exists()


def test_the_forks_frames_outside_the_studio_are_refused(client: TestClient, fork: Path) -> None:
    answer = client.get("/api/manifests/clip/look", params={"rev": "fork"})
    assert answer.status_code in (400, 403) and "outside" in answer.json()["detail"]
    assert client.get("/api/quality/clip/look", params={"rev": "fork"}).status_code == 404  # not through /etc
    compare = client.get("/compare", params={"video": "clip", "render": "look", "a": "v1", "b": "fork"})
    assert compare.status_code == 200 and SCRIPT not in compare.text
    listing = client.get("/api/revisions").json()
    assert any(SCRIPT in rev["subject"] for rev in listing["revisions"])  # JSON keeps it as data
    assert_inert(client.get("/review").text)  # the datalist of revisions shows subjects escaped


def test_the_fork_checked_out_and_served_stays_inert(fork: Path) -> None:
    git("checkout", "-qf", "fork", cwd=fork)
    try:
        with TestClient(
            create_app(fork, Access.for_binding("127.0.0.1", 8000, None), run_jobs=False),
            base_url="http://127.0.0.1:8000",
        ) as served:
            gallery = served.get("/filters")
            assert gallery.status_code == 200
            assert_inert(gallery.text)
            card = served.get("/api/filters/swirls").json()
            assert card["title"] == SCRIPT and card["source_url"] is None  # data, never a link
            assert served.get("/api/manifests/clip/look").status_code in (400, 403)
            assert served.get("/api/quality/clip/look").status_code in (403, 404)
            assert served.get("/renders").status_code == 200
            for page in ("/renders", "/compare", "/jobs"):
                assert_inert(served.get(page).text)
    finally:
        git("checkout", "-qf", "v1", cwd=fork)
    assert not (fork.parent / "CANARY").exists()


def test_a_committed_symlink_in_the_cache_or_thumbnails_serves_nothing(fork: Path, tmp_path: Path) -> None:
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    fake = "0" * 32
    cached = fork / ".dvc/cache/files/md5/00" / fake[2:]
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.symlink_to(secret)
    thumbs = fork / ".rotoscope/thumbs"
    thumbs.mkdir(parents=True, exist_ok=True)
    (thumbs / f"{fake}-320.jpg").symlink_to(secret)
    with TestClient(
        create_app(fork, Access.for_binding("127.0.0.1", 8000, None), run_jobs=False),
        base_url="http://127.0.0.1:8000",
    ) as served:
        for answer in (
            served.get(f"/api/blobs/{fake}"),
            served.get(f"/api/blobs/{fake}", params={"width": 320}),
        ):
            assert answer.status_code == 404 and b"PRIVATE" not in answer.content
    assert secret.read_text() == "PRIVATE KEY"
