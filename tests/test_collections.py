"""Curators' collections: a CSV of artworks imported row by row (bad rows reported, a dry run
changes nothing), restricted licences flagged, and one filter moved between studios as a checked
archive."""

from __future__ import annotations

import csv
import hashlib
import io
import tarfile
from pathlib import Path

import pytest
from conftest import dvc, git
from PIL import Image

from rotoscope.errors import RotoscopeError
from rotoscope.filters.card import Provenance
from rotoscope.filters.collection import ImportReport
from rotoscope.media.synth import painting
from rotoscope.studio import Studio, init_studio


def _tree_digest(root: Path) -> str:
    digest = hashlib.md5()
    for path in sorted(root.rglob("*")):
        if ".git" in path.parts or ".rotoscope" in path.parts or not path.is_file():
            continue
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def collection_csv(tmp_path: Path) -> Path:
    """50 rows: 45 good artworks (every fifth non-commercial) and 5 that each break one rule."""
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for index in range(45):
        Image.fromarray(painting(64, 48, seed=index)).save(images / f"art{index}.png")
        licence = "CC BY-NC 4.0" if index % 5 == 0 else "Public domain"
        rows.append(
            {
                "image": f"images/art{index}.png",
                "title": f"Study {index}",
                "artist": "A. Painter",
                "year": str(1890 + index),
                "collection": "The Test Museum",
                "licence": licence,
                "categories": "art; studies",
                "source_url": f"https://museum.example/{index}",
            }
        )
    (images / "fake.png").write_text("not a picture\n")
    rows += [
        {"image": "images/missing.png", "title": "Missing"},
        {"image": "images/fake.png", "title": "Fake"},
        {"image": "images/art1.png", "name": "../escape", "title": "Escape"},
        {"image": "images/art2.png", "name": "study-3", "title": "Twin"},  # a good row's name again
        {"image": "images/art3.png", "title": "Linked", "source_url": "javascript:alert(1)"},
    ]
    path = tmp_path / "collection.csv"
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(
            out,
            fieldnames=[
                "image",
                "name",
                "title",
                "artist",
                "year",
                "collection",
                "source_url",
                "licence",
                "categories",
                "notes",
            ],
        )
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.slow
def test_a_50_row_collection_with_5_bad_rows(studio: Studio, collection_csv: Path) -> None:
    before = _tree_digest(studio.root)
    dry = studio.filter_import(collection_csv, dry_run=True)
    assert isinstance(dry, ImportReport)
    assert len(dry.accepted) == 45 and len(dry.refused) == 5 and not dry.imported
    assert _tree_digest(studio.root) == before  # a dry run changes nothing
    reasons = {row.line: row.reason for row in dry.refused}
    assert sorted(reasons) == [47, 48, 49, 50, 51]
    assert "not found" in reasons[47] and "not an image" in reasons[48]
    assert "not a filter name" in reasons[49] and "already exists" in reasons[50] and "http(s)" in reasons[51]

    done = studio.filter_import(collection_csv)
    assert isinstance(done, ImportReport) and len(done.imported) == 45
    cards = {card.name: card for card in studio.filters()}
    assert len(cards) == 45 and all(card.model for card in cards.values())
    assert cards["study-7"].provenance.categories == ["art", "studies"]
    from rotoscope.filters.licence import judge

    restricted = [
        name for name, card in cards.items() if judge(card.provenance.licence).standing == "restricted"
    ]
    assert len(restricted) == 9
    assert dvc("status", cwd=studio.root).returncode == 0


def test_the_cli_reports_each_refused_row(studio: Studio, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rotoscope.cli import app

    Image.fromarray(painting(64, 48)).save(tmp_path / "good.png")
    (tmp_path / "c.csv").write_text("image,title,licence\ngood.png,Good,\nnope.png,Gone,CC0\n")
    result = CliRunner().invoke(
        app, ["filter", "import", str(tmp_path / "c.csv"), "--dry-run", "-C", str(studio.root)]
    )
    assert result.exit_code == 1
    assert "would import 1 filter(s) from c.csv; refused 1" in result.output
    assert "refused line 3: line 3: image 'nope.png' not found" in result.output
    assert "good: licence unknown" in result.output
    assert not (studio.root / "filters/good").exists()


def test_a_csv_with_an_unknown_column_is_refused_whole(studio: Studio, tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("image,title,price\na.png,A,100\n")
    with pytest.raises(RotoscopeError, match=r"unknown columns \['price'\]"):
        studio.filter_import(tmp_path / "c.csv", dry_run=True)


# -- archives -------------------------------------------------------------------------------------------


@pytest.fixture
def exported(studio: Studio, tmp_path: Path) -> Path:
    Image.fromarray(painting(96, 72)).save(tmp_path / "kiss.png")
    about = Provenance(title="The Kiss", artist="Gustav Klimt", year="1908", licence="Public domain")
    studio.filter_new("kiss", tmp_path / "kiss.png", "instant", about)
    return studio.filter_export("kiss", tmp_path / "kiss")


def test_a_filter_moves_between_studios_as_one_archive(
    studio: Studio, exported: Path, tmp_path: Path
) -> None:
    assert exported.name == "kiss.rotoscope-filter"
    assert (
        studio.filter_export("kiss", tmp_path / "again").read_bytes() == exported.read_bytes()
    )  # reproducible
    other, _ = init_studio(tmp_path / "other", remote=tmp_path / "other-remote")
    card = other.filter_import(exported, name="klimt")
    original = studio.filter_card("kiss")
    assert card.name == "klimt" and card.provenance == original.provenance
    assert card.model["md5"] == original.model["md5"] and card.made["imported"]["filter"] == "kiss"
    git("add", "-A", cwd=other.root)
    git("commit", "-qm", "imported", cwd=other.root)
    dvc("repro", cwd=other.root)  # the train stage keeps the imported model
    assert other.filter_card("klimt").made["imported"]["from"] == "kiss.rotoscope-filter"
    photo = tmp_path / "photo.png"
    Image.fromarray(painting(80, 60, seed=5)).save(photo)
    from rotoscope.filters.apply import ApplySettings

    (made,) = other.stylize_image(photo, "klimt", tmp_path / "out.png", ApplySettings())
    assert made.model_md5 == original.model["md5"]


def _rewrite(archive: Path, target: Path, change) -> Path:  # type: ignore[no-untyped-def]
    with tarfile.open(archive) as source:
        members = {info.name: source.extractfile(info).read() for info in source}  # type: ignore[union-attr]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as out:
        for name, data, kind in change(members):
            info = tarfile.TarInfo(name)
            if kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, data.decode()
                out.addfile(info)
            else:
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
    target.write_bytes(buffer.getvalue())
    return target


HOSTILE = {
    "a link": (
        lambda m: [*((n, d, "file") for n, d in m.items()), ("style.jpg", b"/etc/passwd", "link")],
        "not a plain file",
    ),
    "a path": (
        lambda m: [*((n, d, "file") for n, d in m.items()), ("../evil.npy", b"x", "file")],
        "is a path",
    ),
    "a changed model": (
        lambda m: [(n, (d[:-4] + b"\0\0\0\0") if n == "model.npy" else d, "file") for n, d in m.items()],
        "does not match its md5",
    ),
    "an extra member": (
        lambda m: [*((n, d, "file") for n, d in m.items()), ("notes.txt", b"hi", "file")],
        "unexpected member",
    ),
    "no index": (
        lambda m: [(n, d, "file") for n, d in m.items() if n != "archive.json"],
        "has no archive.json",
    ),
}


@pytest.mark.parametrize("attack", list(HOSTILE))
def test_a_hostile_archive_is_refused_in_one_line(
    studio: Studio, exported: Path, tmp_path: Path, attack: str
) -> None:
    change, expected = HOSTILE[attack]
    bad = _rewrite(exported, tmp_path / "bad.rotoscope-filter", change)
    other, _ = init_studio(tmp_path / "other", remote=tmp_path / "other-remote")
    with pytest.raises(RotoscopeError, match=expected) as refused:
        other.filter_import(bad)
    assert "\n" not in str(refused.value)
    assert not (other.root / "filters/kiss").exists() and not (tmp_path / "evil.npy").exists()
    assert "kiss" not in other.config().filters
