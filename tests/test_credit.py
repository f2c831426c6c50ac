"""Credit in every output: stills carry the artwork, filter, model and version as XMP, EXIF and IPTC;
renders carry them as container tags; a hostile card cannot break or flood the metadata.

Everything is read back with tools that did not write it: exiftool for stills, FFmpeg's command line
(imageio-ffmpeg's build) for renders.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from conftest import rotoscope, write_source
from PIL import Image, ImageCms

from rotoscope import __version__, pipeline
from rotoscope.credit import FIELD_LIMIT, Credit, clean
from rotoscope.filters.card import Provenance, load_card
from rotoscope.filters.catalogue import new_filter
from rotoscope.filters.make import make_filter
from rotoscope.media.images import save_picture
from rotoscope.media.synth import landscape, painting
from rotoscope.studio import Studio, init_studio

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(
    EXIFTOOL is None,
    reason="exiftool not installed (Debian: libimage-exiftool-perl; ./run tests installs it)",
)
ARTWORK = Provenance(
    title="The Scream",
    artist="Edvard Munch",
    year="1893",
    collection="National Museum, Oslo",
    source_url="https://www.nasjonalmuseet.no/en/collection/object/NG.M.00939",
    licence="public domain",
    categories=["art"],
)


def exiftool(*paths: Path) -> list[dict[str, object]]:
    found = subprocess.run(
        [str(EXIFTOOL), "-j", "-G1", "-struct", "-a", *map(str, paths)], capture_output=True, check=True
    )
    return json.loads(found.stdout)


def write_style(path: Path) -> Path:
    Image.fromarray(painting(160, 120)).save(path)
    return path


def made_studio(root: Path, style: Path, about: Provenance = ARTWORK) -> Studio:
    studio, _ = init_studio(root / "studio", remote=root / "remote")
    new_filter(studio, "scream", style, "instant", about)
    make_filter(studio, "scream")  # an instant filter: its embedding, in a second
    return studio


@pytest.fixture(scope="module")
def credited(tmp_path_factory: pytest.TempPathFactory) -> Studio:
    root = tmp_path_factory.mktemp("credit")
    return made_studio(root, write_style(root / "style.png"))


def model_md5(studio: Studio) -> str:
    return load_card(studio.root / "filters/scream/filter.json").model["md5"]


@needs_exiftool
def test_stylized_stills_carry_the_credit_in_every_format(credited: Studio, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    sRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    photo = Image.fromarray(landscape(96, 64))
    for name in ("a.jpg", "b.png", "c.tif", "d.webp"):
        photo.save(photos / name, icc_profile=sRGB, **({} if name.endswith("webp") else {"dpi": (300, 300)}))
    done = rotoscope(
        "stylize-image", str(photos), "-f", "scream", "-o", str(tmp_path / "out"), cwd=credited.root
    )
    md5 = model_md5(credited)
    outputs = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in outputs] == ["a.scream.jpg", "b.scream.png", "c.scream.tif", "d.scream.webp"]
    for output in outputs:  # one line per picture, naming the model that made it
        assert f"wrote {output} (filter scream, model md5 {md5})" in done.stderr

    for output, tags in zip(outputs, exiftool(*outputs), strict=True):
        where = output.name
        assert tags["XMP-dc:Title"] == "The Scream", where
        assert tags["XMP-dc:Creator"] == ["Edvard Munch"], where
        assert tags["XMP-dc:Source"] == ARTWORK.source_url, where
        assert tags["XMP-xmpRights:UsageTerms"] == "public domain", where
        assert "public domain" in tags["XMP-dc:Rights"], where
        assert tags["XMP-rotoscope:ModelMD5"] == md5, where
        assert tags["XMP-rotoscope:Filter"] == "scream", where
        assert str(tags["XMP-rotoscope:Version"]) == __version__, where
        artwork = tags["XMP-iptcExt:ArtworkOrObject"][0]
        assert artwork["AOTitle"] == "The Scream" and artwork["AOCreator"] == ["Edvard Munch"], where
        assert artwork["AOSource"] == "National Museum, Oslo" and str(artwork["AODateCreated"]) == "1893"
        assert tags["IFD0:Artist"] == "Edvard Munch", where
        assert tags["IFD0:Software"] == f"rotoscope {__version__}", where
        assert md5 in tags["IFD0:ImageDescription"], where
        if where.endswith(("jpg", "tif")):  # WebP and PNG have no IPTC IIM place
            assert tags["IPTC:By-line"] == "Edvard Munch" and tags["IPTC:ObjectName"] == "The Scream", where
            assert "public domain" in tags["IPTC:CopyrightNotice"] and md5 in tags["IPTC:Caption-Abstract"]
            assert tags["IPTC:CodedCharacterSet"] == "UTF8", where
        else:
            assert not any(key.startswith("IPTC:") for key in tags), where
        if where.endswith("jpg"):  # the digest in APP13 says the IIM is the one written with the XMP
            assert tags["Photoshop:IPTCDigest"] == tags["File:CurrentIPTCDigest"]
        with Image.open(output) as made:  # the photo's colour profile and resolution came along
            assert made.info.get("icc_profile") == sRGB, where
            if not where.endswith("webp"):
                assert [round(d) for d in made.info["dpi"]] == [300, 300], where


HOSTILE = "\x1b[31mThe\x07 Scream\u202e</x:xmpmeta><?xpacket end='w'?>\r\n<rdf:li>&amp;" + "A" * 900


@needs_exiftool
def test_a_hostile_card_is_written_safely_and_bounded(tmp_path: Path) -> None:
    about = Provenance(
        title=HOSTILE,
        artist="Edvard Munch " * 70,  # 910 characters
        year="c. 1893",
        collection='type="Struct" National Museum',  # exiv2 would read this prefix as a structure
        source_url="javascript:alert(1)",
        licence='lang="fr" <b>domaine public</b>',
    )
    studio = made_studio(tmp_path, write_style(tmp_path / "style.png"), about)
    credit = Credit.from_card(load_card(studio.root / "filters/scream/filter.json"))
    picture = Image.fromarray(landscape(64, 48))
    outputs = [tmp_path / "hostile.jpg", tmp_path / "hostile.png", tmp_path / "hostile.tif"]
    for output in outputs:
        save_picture(picture, output, credit=credit)

    for output, tags in zip(outputs, exiftool(*outputs), strict=True):
        title = tags["XMP-dc:Title"]
        assert title.startswith("[31mThe Scream</x:xmpmeta><?xpacket end='w'?> <rdf:li>&amp;AAA"), output
        assert len(title) == FIELD_LIMIT and title.endswith("…")
        assert not any(ord(ch) < 32 or ch == "\u202e" for ch in json.dumps(tags, ensure_ascii=False))
        # the properties written after the hostile ones are all there: the XMP was not broken
        assert tags["XMP-rotoscope:ModelMD5"] == credit.model_md5
        assert (
            tags["XMP-dc:Creator"] == [clean(about.artist)] and len(tags["XMP-dc:Creator"][0]) <= FIELD_LIMIT
        )
        artwork = tags["XMP-iptcExt:ArtworkOrObject"][0]
        assert artwork["AOSource"].strip() == 'type="Struct" National Museum'  # kept as text
        assert artwork["AOCircaDateCreated"] == "c. 1893" and "AODateCreated" not in artwork
        assert "AOSourceInvURL" not in artwork  # not a web address: only in dc:source, as text
        assert tags["XMP-xmpRights:UsageTerms"] == 'lang="fr" <b>domaine public</b>'  # text, no language
        if output.suffix != ".png":  # IIM, each field within its IIM size
            assert len(tags["IPTC:By-line"].encode()) <= 32 and len(tags["IPTC:ObjectName"].encode()) <= 64
            assert tags["IPTC:ObjectName"].startswith("[31mThe Scream</x:xmpmeta>")
    packet = subprocess.run([str(EXIFTOOL), "-b", "-XMP", str(outputs[0])], capture_output=True, check=True)
    tree = ET.fromstring(packet.stdout)  # well-formed, and its only xmpmeta is the packet's own
    assert tree.tag == "{adobe:ns:meta/}xmpmeta" and not list(tree.iter("{adobe:ns:meta/}xmpmeta"))[1:]


def test_clean_keeps_text_and_drops_what_metadata_must_not_hold() -> None:
    assert clean("  Edvard\tMunch \n") == "Edvard Munch"
    assert clean("a\x00b\x1bc\x7fd\x9be\u202ef\ud800g\ufffe") == "abcdefg"  # NUL, ESC, DEL, CSI, RLO...
    assert clean("\x00\x01") is None and clean(None) is None
    assert clean("x" * 400) == "x" * (FIELD_LIMIT - 1) + "…"
    credit = Credit(filter="f", kind="instant", model_md5=None)
    assert credit.rights() is None and credit.artwork() is None
    assert credit.description() == f"Stylized with rotoscope {__version__}, filter 'f' (instant)."
    assert set(credit.for_container()) == {"comment", "rotoscope"}  # no artwork: no title, artist, rights


XMP_NS = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "ext": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "rotoscope": "https://rotoscope.invalid/ns/credit/1.0/",
}
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def test_the_xmp_packet_is_an_rdf_tree_in_its_envelope() -> None:
    markup = "</rdf:li><rdf:li>injected"
    credit = Credit(filter="scream", kind="instant", model_md5="a" * 32, title=markup, artist="Edvard Munch")
    packet = credit.for_still().xmp
    again = Credit(filter="scream", kind="instant", model_md5="a" * 32, title=markup, artist="Edvard Munch")
    assert again.for_still().xmp == packet  # no clock, no random ids
    text = packet.decode()
    assert text.startswith('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>')
    assert text.endswith('<?xpacket end="w"?>') and text.count("<?xpacket") == 2
    about = ET.fromstring(text).find("rdf:RDF/rdf:Description", XMP_NS)
    assert about is not None and about.get(f"{{{XMP_NS['rdf']}}}about") == ""
    titles = about.findall("dc:title/rdf:Alt/rdf:li", XMP_NS)  # the markup stayed one text
    assert [(li.text, li.get(XML_LANG)) for li in titles] == [(markup, "x-default")]
    assert [li.text for li in about.findall("dc:creator/rdf:Seq/rdf:li", XMP_NS)] == ["Edvard Munch"]
    assert about.find("dc:rights/rdf:Alt/rdf:li", XMP_NS).get(XML_LANG) == "x-default"
    artworks = about.findall("ext:ArtworkOrObject/rdf:Bag/rdf:li", XMP_NS)
    assert len(artworks) == 1 and artworks[0].get(f"{{{XMP_NS['rdf']}}}parseType") == "Resource"
    assert artworks[0].find("ext:AOTitle/rdf:Alt/rdf:li", XMP_NS).text == markup
    assert about.find("rotoscope:ModelMD5", XMP_NS).text == "a" * 32
    bare = Credit(filter="f", kind="instant", model_md5=None).for_still()  # no artwork: no such parts
    assert b"ArtworkOrObject" not in bare.xmp and b"dc:title" not in bare.xmp
    assert bare.iim.startswith(b"\x1c\x01\x5a\x00\x03\x1b%G")  # 1:90, UTF-8
    assert b"\x1c\x02\x50" not in bare.iim  # no By-line (2:80) without an artist


def ffmetadata(path: Path) -> dict[str, str]:
    """The container's global tags as the ffmpeg command line reads them."""
    listing = path.with_suffix(".txt")
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(path)]
    subprocess.run([*command, "-f", "ffmetadata", str(listing)], check=True)
    lines = listing.read_text().splitlines()[1:]  # after the ";FFMETADATA1" header
    return {key.lower(): value for key, _, value in (line.partition("=") for line in lines) if key}


def test_renders_carry_the_credit_and_stay_byte_identical(tmp_path: Path) -> None:
    studio = made_studio(tmp_path, write_style(tmp_path / "style.png"))
    name, _ = studio.add_video(write_source(tmp_path / "clip.mp4", frames=6), "clip")
    studio.add_render("look", {"video": name, "filter": "scream", "strength": 0.8})
    pipeline.split(studio, name)
    pipeline.stylize(studio, "look")
    render = studio.root / "manifests/clip/look.json"
    outs = {kind: tmp_path / f"look{kind}" for kind in (".mp4", ".mkv", ".mov")}
    for out in outs.values():
        pipeline.reassemble(render, out)
    md5 = model_md5(studio)
    for kind, out in outs.items():
        tags = ffmetadata(out)
        assert tags["title"] == "The Scream" and tags["artist"] == "Edvard Munch", kind
        assert "public domain" in tags["copyright"] and md5 in tags["comment"], kind
        assert json.loads(tags["rotoscope"]) == {
            "filter": "scream",
            "kind": "instant",
            "model_md5": md5,
            "version": __version__,
        }, kind
    again = tmp_path / "again.mp4"
    shutil.rmtree(studio.segments_dir())  # encoded afresh, not copied from the segment cache
    pipeline.reassemble(render, again)
    assert again.read_bytes() == outs[".mp4"].read_bytes()  # no clock in the credit

    source = tmp_path / "source.mp4"
    pipeline.reassemble(studio.root / "manifests/clip/source.json", source)
    assert not {"title", "artist", "copyright", "comment", "rotoscope"} & set(ffmetadata(source))
    frames = sorted((studio.root / "frames/clip/look").iterdir())
    with Image.open(frames[0]) as frame:  # pipeline frames are plain pixels: the render is credited
        assert not {"exif", "xmp", "XML:com.adobe.xmp"} & set(frame.info)
    assert np.asarray(Image.open(frames[0])).shape == (96, 128, 3)
