"""The web studio in a real browser: Playwright driving Debian's Chromium (headless, no browser
download) against a real `rotoscope serve` on loopback over a real studio with history.

Each test saves a screenshot of its page under ``ROTOSCOPE_SCREENSHOTS`` (default: the test's
temporary folder), the pictures the README shows.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from rotoscope.media.synth import landscape

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on PATH (./run tests installs Debian's chromium with apt-get)"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(history_studio: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    photos = history_studio / "photos"
    photos.mkdir(exist_ok=True)
    Image.fromarray(landscape(180, 240, seed=1)).save(photos / "meadow.jpg")
    Image.fromarray(landscape(180, 240, seed=2)).save(photos / "hills.jpg")
    port = free_port()
    log = (tmp_path_factory.mktemp("serve") / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "rotoscope", "serve", str(history_studio), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/studio", timeout=2).read()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise AssertionError(f"rotoscope serve did not start: {Path(log.name).read_text()}") from None
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser, tmp_path: Path):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(str(error)))
    opened.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    opened.problems = problems
    yield opened
    context.close()


def screenshot(page, name: str, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    folder = Path(os.environ.get("ROTOSCOPE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def test_the_gallery_shows_every_card_with_its_picture(server: str, page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{server}/filters")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # the grid's pictures load lazily
    page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=60_000)
    cards = page.locator("article.card")
    assert cards.count() == 1
    assert "The Tests" in cards.first.inner_text() and "non-commercial" in cards.first.inner_text()
    loaded = page.evaluate("[...document.images].map(i => i.complete && i.naturalWidth > 0)")
    assert loaded and all(loaded), loaded  # the style image and the photos x filters grid
    assert page.locator("table.grid img").count() == 4  # two photos, each alone and through the filter
    screenshot(page, "filters", tmp_path)
    assert not page.problems, page.problems


def test_a_text_file_named_jpg_is_refused_on_the_page(server: str, page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fake = tmp_path / "holiday.jpg"
    fake.write_text("not a picture at all\n" * 50)
    page.goto(f"{server}/filters")
    page.set_input_files("#new-filter input[type=file]", str(fake))
    page.fill("#new-filter input[name=name]", "holiday")
    page.click("#new-filter button[type=submit]")
    message = page.locator("#new-filter-message")
    message.filter(has_text="not an image").wait_for()
    assert "holiday.jpg" in message.inner_text() and "error" in (message.get_attribute("class") or "")
    assert page.locator("article.card").count() == 1
    screenshot(page, "upload-refused", tmp_path)


def test_the_compare_page_plays_swipes_and_scrubs_both_sides(server: str, page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{server}/compare?video=clip&render=look&a=v1&b=lighter")
    page.wait_for_selector("#compare[data-ready=true]")
    md5s = page.evaluate(
        "async () => [await (await fetch('/api/manifests/clip/look?rev=v1')).json(), "
        "await (await fetch('/api/manifests/clip/look?rev=lighter')).json()]"
    )
    sides = lambda: (page.get_attribute("#frame-a", "data-md5"), page.get_attribute("#frame-b", "data-md5"))  # noqa: E731

    def expect(index: int) -> None:
        page.wait_for_function(f"() => document.getElementById('compare').dataset.frame === '{index}'")
        assert sides() == (md5s[0]["frames"][index]["md5"], md5s[1]["frames"][index]["md5"])

    expect(0)
    page.keyboard.press("ArrowRight")
    expect(1)
    page.locator("#scrub").fill("6")  # the scrubber moves both sides to the same frame
    expect(6)
    page.keyboard.press("Shift+ArrowLeft")
    expect(0)
    page.click("[data-mode=swipe]")
    page.locator("#mix").fill("30")
    clip = page.evaluate("getComputedStyle(document.querySelector('.side-b')).clipPath")
    assert "30%" in clip
    screenshot(page, "compare-swipe", tmp_path)
    page.keyboard.press("4")
    page.wait_for_function("() => !document.getElementById('difference').hidden")
    assert page.evaluate("document.getElementById('difference').width") == 128
    page.click("[data-mode=side]")
    page.click("#play")
    page.wait_for_function(
        "() => document.getElementById('compare').dataset.played === 'true'", timeout=20_000
    )
    expect(9)  # played to the last frame, both sides in step
    steps = page.evaluate("window.rotoscopeTimings")
    assert len(steps) >= 10 and all(step > 0 for step in steps)
    screenshot(page, "compare", tmp_path)
    assert not page.problems, page.problems


def test_a_job_started_from_the_page_shows_progress_and_its_render_appears(
    server: str, page, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    made = urllib.request.Request(
        f"{server}/api/renders",
        data=b'{"name": "from-page", "video": "clip", "filter": "swirls", "strength": 0.6}',
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    assert urllib.request.urlopen(made).status == 201
    page.goto(f"{server}/renders")
    assert page.locator("[data-render=from-page] video").count() == 0
    page.click("button.start-job[data-verb=repro]")
    status = page.locator("#repro-progress")
    status.filter(has_text="frames").wait_for(timeout=60_000)  # progress as it goes: task, frames, rate
    seen = status.inner_text()
    page.wait_for_selector("[data-render=from-page] video", timeout=180_000)  # done: the page reloads
    assert "/" in seen and "frames" in seen, seen
    duration = page.evaluate(
        "new Promise(r => { const v = document.querySelector('[data-render=from-page] video');"
        " if (v.readyState >= 1) r(v.duration);"
        " else v.addEventListener('loadedmetadata', () => r(v.duration)); })"
    )
    assert duration == pytest.approx(0.4, abs=0.05)  # ten frames at 25 fps
    screenshot(page, "renders", tmp_path)
    page.goto(f"{server}/jobs")
    assert page.locator("tr[data-state=done]").count() >= 1
    screenshot(page, "jobs", tmp_path)


def test_the_review_page_links_each_changed_range(server: str, page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{server}/review?a=v1&b=lighter")
    assert "renders.look.strength" in page.inner_text("#params")
    anchor = page.locator(".range").first.get_attribute("id")
    page.goto(f"{server}/review?a=v1&b=lighter#{anchor}")
    pairs = page.locator(f"[id='{anchor}'] figure.pair")
    assert pairs.count() == 3  # the ends and the middle of frames 0-9
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    assert page.evaluate("[...document.images].every(i => i.naturalWidth > 0)")
    screenshot(page, "review", tmp_path)
