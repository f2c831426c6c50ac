"""The HTTP API over a real studio with history (FastAPI's TestClient: the app in-process, real
Git, DVC and job processes): reads, writes, uploads, frames by md5, jobs with events, and the rules
for who may ask what."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rotoscope.web.app import create_app
from rotoscope.web.security import Access
from rotoscope.web.uploads import UploadLimits

LOOPBACK = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def client(history_studio: Path) -> Iterator[TestClient]:
    app = create_app(
        history_studio, Access.for_binding("127.0.0.1", 8000, None), limits=UploadLimits(20_000_000, 200_000)
    )
    with TestClient(app, base_url=LOOPBACK) as client:
        yield client


def test_the_studio_and_its_filters_read_as_records(client: TestClient) -> None:
    summary = client.get("/api/studio").json()
    assert summary["videos"] == ["clip"] and summary["renders"] == ["look"] and summary["filters"] == 1
    assert "/" not in summary["name"]  # the folder's name, never the server's path
    (card,) = client.get("/api/filters").json()
    assert card["name"] == "swirls" and card["artist"] == "The Tests" and card["made"]
    assert card["licence_standing"] == "restricted" and "non-commercial" in card["licence_note"]
    assert client.get("/api/filters", params={"licence": "open"}).json() == []
    style = client.get(card["style_url"])
    assert style.status_code == 200 and style.headers["content-type"] == "image/jpeg"


def test_a_manifest_at_two_revisions_without_checking_out(client: TestClient, history_studio: Path) -> None:
    main = client.get("/api/manifests/clip/look", params={"rev": "v1"}).json()
    lighter = client.get("/api/manifests/clip/look", params={"rev": "lighter"}).json()
    assert len(main["frames"]) == len(lighter["frames"]) == 10
    assert all(a["md5"] != b["md5"] for a, b in zip(main["frames"], lighter["frames"], strict=True))
    assert main["fps"] == pytest.approx(25)
    work_tree = json.loads((history_studio / "manifests/clip/look.json").read_text())
    assert [f["md5"] for f in main["frames"]] == [f["md5"] for f in work_tree["frames"]]
    assert client.get("/api/manifests/clip/look", params={"rev": "no-such-branch"}).status_code == 400
    assert client.get("/api/manifests/clip/nothing").status_code == 404


def test_frames_are_served_by_md5_with_caching_headers(client: TestClient, history_studio: Path) -> None:
    frame = client.get("/api/manifests/clip/look", params={"rev": "lighter"}).json()["frames"][3]
    answer = client.get(f"/api/blobs/{frame['md5']}")  # the lighter branch's frame: from the DVC cache
    assert answer.status_code == 200 and hashlib.md5(answer.content).hexdigest() == frame["md5"]
    assert "immutable" in answer.headers["cache-control"] and answer.headers["etag"] == f'"{frame["md5"]}"'
    small = client.get(f"/api/blobs/{frame['md5']}", params={"width": 64})
    assert small.headers["content-type"] == "image/jpeg" and small.content[:2] == b"\xff\xd8"
    assert client.get("/api/blobs/" + "0" * 32).status_code == 404
    assert client.get("/api/blobs/not-an-md5").status_code == 422


def test_the_quality_strip_and_the_diff(client: TestClient) -> None:
    quality = client.get("/api/quality/clip/look", params={"rev": "lighter"}).json()
    assert len(quality["warping_error"]) == 10 and quality["warping_error"][0] is None
    assert all(value > 0 for value in quality["warping_error"][1:])
    diff = client.get("/api/diff", params={"a": "v1", "b": "lighter"}).json()
    assert diff["params"]["renders.look.strength"] == [0.9, 0.4]
    changed = {m["path"]: m for m in diff["manifests"]}["manifests/clip/look.json"]
    assert changed["frames"]["changed"] == [[0, 9]]


def test_a_new_render_through_the_api_lands_in_params(client: TestClient, history_studio: Path) -> None:
    made = client.post(
        "/api/renders", json={"name": "soft", "video": "clip", "filter": "swirls", "strength": 0.3}
    )
    assert made.status_code == 201, made.text
    assert made.json()["look"]["strength"] == 0.3
    assert "soft:" in (history_studio / "params.yaml").read_text()
    refused = client.post("/api/renders", json={"name": "x", "video": "clip", "filter": "no-such"})
    assert refused.status_code == 400 and "no filter named 'no-such'" in refused.json()["detail"]


def test_a_text_file_named_jpg_is_refused_with_the_reason(client: TestClient, history_studio: Path) -> None:
    answer = client.post(
        "/api/uploads/filters",
        params={"filename": "notes.jpg", "name": "fake"},
        content=b"this is not a picture\n" * 20,
    )
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith("notes.jpg: not an image")
    assert str(history_studio) not in answer.json()["detail"]
    assert not (history_studio / "filters/fake").exists()
    assert not list((history_studio / ".rotoscope/uploads").rglob("*.jpg"))


def test_an_upload_over_its_limit_is_cut_off_and_nothing_is_kept(
    client: TestClient, history_studio: Path
) -> None:
    def body() -> Iterator[bytes]:  # no length given: the limit must hold while it streams
        for _ in range(50):
            yield b"\0" * 10_000

    answer = client.post(
        "/api/uploads/filters", params={"filename": "big.png", "name": "big"}, content=body()
    )
    assert answer.status_code == 413 and "200,000-byte limit" in answer.json()["detail"]
    assert not list((history_studio / ".rotoscope/uploads").rglob("*.png"))


def test_an_instant_filter_from_an_uploaded_picture(client: TestClient, tmp_path: Path) -> None:
    from PIL import Image

    from rotoscope.media.synth import painting

    Image.fromarray(painting(120, 90)).save(tmp_path / "poster.png")
    answer = client.post(
        "/api/uploads/filters",
        params={"filename": "poster.png", "name": "poster", "title": "A poster", "licence": "Public domain"},
        content=(tmp_path / "poster.png").read_bytes(),
    )
    assert answer.status_code == 201, answer.text
    card = answer.json()
    assert card["made"] and card["licence_standing"] == "open" and card["model_md5"]


def test_a_job_runs_in_its_own_process_and_streams_its_progress(client: TestClient) -> None:
    job = client.post("/api/jobs", json={"verb": "stylize", "args": {"renders": ["look"]}}).json()
    assert job["state"] == "queued"
    events: list[tuple[str, dict]] = []
    with client.stream("GET", f"/api/jobs/{job['id']}/events") as stream:
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind or "", json.loads(line.removeprefix("data: "))))
                if kind == "state":
                    break
    progress = [data for kind, data in events if kind == "progress"]
    assert progress and progress[-1]["task"] == "stylize look" and progress[-1]["done"] == 10
    final = events[-1][1]
    assert final["state"] == "done", final
    assert final["pid"] and final["result"]["renders"]["manifests/clip/look.json"]["reused"] == 10
    assert client.get(f"/api/jobs/{job['id']}").json()["state"] == "done"


def test_bad_job_arguments_are_refused_before_anything_runs(client: TestClient) -> None:
    bad = client.post("/api/jobs", json={"verb": "filter-make", "args": {"name": "../../etc"}})
    assert bad.status_code == 400 and "filter-make job: name" in bad.json()["detail"]
    unknown = client.post("/api/jobs", json={"verb": "rm", "args": {}})
    assert unknown.status_code == 422


# -- who may ask --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exposed(history_studio: Path) -> Iterator[TestClient]:
    """The server as `rotoscope serve --host 0.0.0.0` would be: a token needed to change anything."""
    access = Access.for_binding("192.0.2.10", 8000, "s3cret-token-for-tests")
    with TestClient(
        create_app(history_studio, access, run_jobs=False), base_url="http://192.0.2.10:8000"
    ) as client:
        yield client


NEW_RENDER = {"name": "exposed", "video": "clip", "filter": "swirls"}


def test_beyond_loopback_mutating_requests_need_the_token(exposed: TestClient) -> None:
    assert exposed.get("/api/filters").status_code == 200  # looking needs no token
    assert exposed.post("/api/renders", json=NEW_RENDER).status_code == 401
    stylize = {"verb": "stylize", "args": {"renders": ["look"]}}
    assert exposed.post("/api/jobs", json=stylize).status_code == 401
    assert (
        exposed.post("/api/renders", json=NEW_RENDER, headers={"X-Rotoscope-Token": "wrong"}).status_code
        == 401
    )
    job = exposed.post("/api/jobs", json=stylize, headers={"Authorization": "Bearer s3cret-token-for-tests"})
    assert job.status_code == 202
    assert exposed.get(f"/api/jobs/{job.json()['id']}/events").status_code == 401  # the stream too


def test_the_printed_link_logs_a_browser_in_with_a_strict_cookie(exposed: TestClient) -> None:
    exposed.cookies.clear()
    assert exposed.get("/filters", params={"token": "wrong"}).status_code == 401
    answer = exposed.get("/filters", params={"token": "s3cret-token-for-tests"}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/filters"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert exposed.post("/api/renders", json=NEW_RENDER).status_code == 201
    exposed.cookies.clear()


def test_another_site_cannot_make_a_browser_change_the_studio(client: TestClient) -> None:
    forged = client.post("/api/renders", json=NEW_RENDER, headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403
    assert client.post("/api/renders", json=NEW_RENDER, headers={"Origin": "null"}).status_code == 403
    assert client.get("/api/studio", headers={"Host": "evil.example"}).status_code == 421  # DNS rebinding


def test_every_response_carries_the_security_headers(client: TestClient) -> None:
    for path in ("/filters", "/api/studio", "/static/studio.js", "/api/blobs/nope"):
        headers = client.get(path).headers
        policy = headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy, path
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"


def test_a_large_json_body_is_refused_unread(client: TestClient) -> None:
    answer = client.post(
        "/api/renders", content=b"{" + b" " * (2 << 20) + b"}", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413


# control characters go percent-encoded: an HTTP client will not put them in a URL raw
TRAVERSALS = ["../../etc/passwd", "..", "%2e%2e%2fetc", "/etc/passwd", "clip/../../x", "-rf", "a%0Ab", "%00"]


def _requests_with(value: str) -> list[tuple[str, str, dict]]:
    return [
        ("GET", f"/api/filters/{value}", {}),
        ("GET", f"/api/filters/{value}/style", {}),
        ("GET", f"/api/manifests/{value}/look", {}),
        ("GET", f"/api/manifests/clip/{value}", {}),
        ("GET", "/api/manifests/clip/look", {"params": {"rev": value}}),
        ("GET", f"/api/quality/{value}/look", {}),
        ("GET", "/api/quality/clip/look", {"params": {"rev": value}}),
        ("GET", f"/api/blobs/{value}", {}),
        ("GET", f"/api/photos/{value}", {}),
        ("GET", f"/api/grid/{'0' * 32}/{value}", {}),
        ("GET", f"/api/log/{value}/look", {}),
        ("GET", "/api/diff", {"params": {"a": value}}),
        ("GET", f"/api/jobs/{value}", {}),
        ("GET", f"/api/jobs/{value}/log", {}),
        ("GET", f"/media/renders/{value}/look.mp4", {}),
        ("GET", f"/media/renders/clip/{value}", {}),
        ("GET", "/compare", {"params": {"video": value}}),
        ("GET", "/review", {"params": {"a": value}}),
        ("POST", "/api/renders", {"json": {**NEW_RENDER, "name": value}}),
        ("POST", "/api/renders", {"json": {**NEW_RENDER, "video": value}}),
        ("POST", "/api/fetch", {"json": {"video": "clip", "kind": "look", "rev": value}}),
        ("POST", "/api/uploads/filters", {"params": {"filename": value, "name": "x"}, "content": b"x"}),
        ("POST", "/api/uploads/filters", {"params": {"filename": "a.png", "name": value}, "content": b"x"}),
        ("POST", "/api/uploads/videos", {"params": {"filename": value}, "content": b"x"}),
        ("POST", "/api/jobs", {"json": {"verb": "stylize", "args": {"renders": [value]}}}),
    ]


@pytest.mark.parametrize("value", TRAVERSALS)
def test_paths_in_every_parameter_stay_inside_the_studio(
    client: TestClient, value: str, history_studio: Path
) -> None:
    before = sorted(str(p) for p in history_studio.parent.iterdir())
    for method, url, options in _requests_with(value):
        answer = client.request(method, url, **options)
        assert 400 <= answer.status_code < 500, (method, url, options, answer.status_code, answer.text[:200])
        assert b"root:x:" not in answer.content
    assert sorted(str(p) for p in history_studio.parent.iterdir()) == before


def test_a_filter_goes_out_and_back_in_as_an_archive(client: TestClient) -> None:
    archive = client.get("/api/filters/swirls/archive")
    assert archive.status_code == 200 and "swirls.rotoscope-filter" in archive.headers["content-disposition"]
    back = client.post(
        "/api/uploads/filter-archive",
        params={"filename": "swirls.rotoscope-filter", "name": "swirls-copy"},
        content=archive.content,
    )
    assert back.status_code == 201, back.text
    assert back.json()["model_md5"] == client.get("/api/filters/swirls").json()["model_md5"]
    broken = client.post(
        "/api/uploads/filter-archive",
        params={"filename": "x.rotoscope-filter"},
        content=archive.content[:200],
    )
    assert broken.status_code == 400 and broken.json()["detail"].startswith("x.rotoscope-filter: ")


def test_a_publish_job_writes_the_site_afresh(client: TestClient, history_studio: Path) -> None:
    planted = history_studio / ".rotoscope/site/evil.html"  # what a fork might commit there
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_text("<script src=evil.js></script>")
    job = client.post(
        "/api/jobs", json={"verb": "publish", "args": {"renders": ["look"], "title": "Look"}}
    ).json()
    with client.stream("GET", f"/api/jobs/{job['id']}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event: state"):
                break
    done = client.get(f"/api/jobs/{job['id']}").json()
    assert done["state"] == "done", done
    assert done["result"]["site"] == ".rotoscope/site" and done["result"]["items"] == ["clip-look"]
    assert 'id="clip-look"' in (history_studio / ".rotoscope/site/index.html").read_text()
    assert not planted.exists()
    assert client.get("/site/evil.html").status_code == 404  # the server never serves that folder


def test_job_details_need_the_token_too_and_tokens_are_long(exposed: TestClient) -> None:
    assert exposed.get("/api/jobs").status_code == 401  # their logs can hold a remote's output
    assert (
        exposed.get("/api/jobs", headers={"X-Rotoscope-Token": "s3cret-token-for-tests"}).status_code == 200
    )
    from rotoscope.errors import RotoscopeError

    with pytest.raises(RotoscopeError, match="at least 16 characters"):
        Access.for_binding("192.0.2.10", 8000, "")
    every = Access.for_binding("0.0.0.0", 8000, None)
    assert every.any_host and every.token and len(every.token) >= 16


def test_a_name_with_a_trailing_newline_is_not_a_name() -> None:
    from rotoscope.errors import ParamsError
    from rotoscope.layout import check_name

    with pytest.raises(ParamsError):
        check_name("look\n")
