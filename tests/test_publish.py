"""`rotoscope publish`: a static site of chosen stills and renders, opened from file:// in Chromium
(every picture loads, links are relative) with an Atom feed that parses as Atom."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from rotoscope.errors import RotoscopeError
from rotoscope.filters.apply import ApplySettings
from rotoscope.media.synth import landscape
from rotoscope.studio import Studio

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def site(history_studio: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Studio, Path]:
    studio = Studio(history_studio)
    work = tmp_path_factory.mktemp("publish")
    Image.fromarray(landscape(320, 200, seed=4)).save(work / "meadow.jpg")
    (still,) = studio.stylize_image(
        work / "meadow.jpg", "swirls", work / "meadow.swirls.jpg", ApplySettings()
    )
    published = studio.publish(work / "site", stills=[still.target], title="Swirls <collection>")
    assert [item.kind for item in published.items] == ["render", "still"]
    return studio, published.folder


def test_the_feed_is_atom_with_an_entry_per_item(site: tuple[Studio, Path]) -> None:
    import feedparser

    _, folder = site
    feed = feedparser.parse((folder / "feed.xml").read_bytes())
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10" and feed.feed.title == "Swirls <collection>"
    assert [entry.link for entry in feed.entries] == ["index.html#clip-look", "index.html#meadow-swirls"]
    assert all("CC BY-NC 4.0" in entry.rights and "non-commercial" in entry.rights for entry in feed.entries)
    assert len({entry.id for entry in feed.entries}) == 2


def test_the_site_has_only_relative_links_and_credited_pictures(site: tuple[Studio, Path]) -> None:
    _, folder = site
    html = (folder / "index.html").read_text()
    assert "Swirls &lt;collection&gt;" in html and 'src="/' not in html and 'href="/' not in html
    assert "non-commercial use only" in html  # the restricted licence, flagged beside the pictures
    still = Image.open(folder / "media/meadow-swirls.jpg")
    assert max(still.size) <= 1600 and b"swirls" in still.info["xmp"]


def test_a_picture_without_credit_is_refused(site: tuple[Studio, Path], tmp_path: Path) -> None:
    studio, _ = site
    Image.fromarray(landscape(64, 48)).save(tmp_path / "plain.jpg")
    with pytest.raises(RotoscopeError, match="no rotoscope credit"):
        studio.publish(tmp_path / "site", renders=[], stills=[tmp_path / "plain.jpg"])


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH (./run tests installs Debian's chromium)")
def test_the_site_opens_from_a_folder_in_chromium(site: tuple[Studio, Path]) -> None:
    from playwright.sync_api import sync_playwright

    _, folder = site
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        failed: list[str] = []
        page.on("requestfailed", lambda request: failed.append(request.url))
        page.goto((folder / "index.html").as_uri())
        page.wait_for_load_state("load")
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        assert page.evaluate("[...document.images].map(i => i.naturalWidth > 0)") == [True]
        poster = page.evaluate(
            "() => new Promise(r => { const v = document.querySelector('video');"
            " if (v.readyState >= 1) r(v.videoWidth); else v.onloadedmetadata = () => r(v.videoWidth); })"
        )
        assert poster == 128
        assert not failed, failed
        browser.close()
