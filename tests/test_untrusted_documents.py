"""Property-based fuzzing of what arrives through Git: params.yaml, manifests and filter cards.

Thousands of generated documents (mutations of valid ones, and arbitrary values) go through the
same readers the commands use. Each is either accepted, and then every record built from it works,
or refused with a RotoscopeError; never another exception.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rotoscope import manifest as manifests
from rotoscope import params, yamlsafe
from rotoscope.errors import RotoscopeError
from rotoscope.filters.card import load_card
from rotoscope.filters.train import TrainRecipe
from rotoscope.studio import RenderJob, SplitSettings, template

FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["source", "off", "flow", "ema", "../x", "/etc/passwd", "jpg", "a" * 70, "0/1"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def paths_in(document: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a nested document (keys and list indices) a mutation can hit."""
    found = [prefix]
    if isinstance(document, dict):
        for key, item in document.items():
            found += paths_in(item, (*prefix, key))
    elif isinstance(document, list):
        for index, item in enumerate(document[:3]):
            found += paths_in(item, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with a few places replaced by arbitrary values, deleted, or given new keys."""
    document = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        places = paths_in(document)
        where = draw(st.sampled_from(places))
        if not where:
            continue
        parent = document
        for part in where[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[where[-1]] = draw(values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[where[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(values)
    return document


# -- params.yaml ---------------------------------------------------------------------------------

VALID_PARAMS = {
    **yamlsafe.load(template("params.yaml"), "template"),
    "videos": {"clip": {"file": "videos/clip.mp4", "split": {"fps": 2}}},
    "filters": {
        "wave": {"kind": "instant", "style": "filters/wave/style.jpg", "model": "filters/wave/model.npy"},
        "kiss": {"kind": "trained", "style": "filters/kiss/style.png", "train": {"light": True, "steps": 5}},
    },
    "renders": {"look": {"video": "clip", "filter": "wave", "strength": 0.5, "temporal": "flow"}},
}


def use_params(document: Any) -> None:
    """Everything a command builds from accepted parameters."""
    model = params.model(document, "params.yaml")
    for video in model.videos.values():
        SplitSettings.from_params({**model.split, **video.split}, Path("params.yaml"))
    for name, entry in model.renders.items():
        RenderJob.from_params(name, entry, model.stylize, Path("params.yaml")).look()
    for item in model.filters.values():
        if item.kind == "trained":
            TrainRecipe.from_params(model.train, item.train, Path("params.yaml"))


def test_the_valid_parameters_are_accepted() -> None:
    use_params(VALID_PARAMS)


@FUZZ
@given(mutated(VALID_PARAMS))
def test_mutated_parameters_are_accepted_or_refused_cleanly(document: dict[str, Any]) -> None:
    try:
        use_params(document)
    except RotoscopeError as error:
        assert "\n" not in str(error)


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text_as_params_yaml(text: str) -> None:
    with contextlib.suppress(RotoscopeError):
        params.parse(text, "params.yaml")


@FUZZ
@given(
    st.lists(
        st.sampled_from(["a: &x [", "*x", ", ", "]", "\n", "b: ", "- ", "{", "}", "&y", "*y"]), max_size=40
    )
)
def test_alias_soup_is_parsed_or_refused(parts: list[str]) -> None:
    with contextlib.suppress(RotoscopeError):
        params.parse("".join(parts), "params.yaml")


# -- manifests -----------------------------------------------------------------------------------

VALID_MANIFEST = {
    "schema": "rotoscope.manifest/1",
    "kind": "stylized",
    "name": "look",
    "video": {
        "path": "videos/clip.mp4",
        "md5": "0" * 32,
        "width": 64,
        "height": 48,
        "time_base": "1/12800",
        "avg_rate": "25/1",
        "duration": 0.12,
        "codec": "h264",
        "pix_fmt": "yuv420p",
        "rotation": 0,
        "audio": {"codec": "aac", "sample_rate": 48000, "channels": 2, "duration": 0.12},
    },
    "extract": {"fps": "source", "max_side": None, "format": "jpg", "quality": 95},
    "frames_dir": "frames/clip/look",
    "width": 64,
    "height": 48,
    "time_base": "1/12800",
    "end_pts": 1536,
    "frames": [
        {"i": i, "pts": 512 * i, "md5": f"{i:032x}", "bytes": 100 + i, "src": f"{i + 7:032x}"}
        for i in range(3)
    ],
    "lineage": {
        "parent": "manifests/clip/source.json",
        "parent_md5": "a" * 32,
        "filter": {"name": "wave", "kind": "instant", "model_md5": "b" * 32},
        "render": {"strength": 0.5, "preserve_color": False, "max_side": None},
    },
}


def use_manifest(document: Any, root: Path) -> None:
    manifest = manifests.checked(document, "look.json")
    assert manifest.duration >= 0
    manifest.frames_shown(0.0, manifest.duration)
    for frame in manifest.frames:
        assert manifest.frame_path(root, frame).is_relative_to(root)
    manifests.checked(json.loads(manifest.to_json()), "again.json")


def test_the_valid_manifest_is_accepted(tmp_path: Path) -> None:
    use_manifest(VALID_MANIFEST, tmp_path)


@FUZZ
@given(mutated(VALID_MANIFEST))
def test_mutated_manifests_are_accepted_or_refused_cleanly(tmp_path_factory, document: dict) -> None:
    root = tmp_path_factory.getbasetemp()
    try:
        use_manifest(document, root)
    except RotoscopeError as error:
        assert "\n" not in str(error)


# -- filter cards --------------------------------------------------------------------------------

VALID_CARD = {
    "schema": "rotoscope.filter/1",
    "name": "wave",
    "kind": "instant",
    "style": {"file": "filters/wave/style.jpg", "md5": "c" * 32, "width": 640, "height": 480},
    "provenance": {
        "title": "The Great Wave",
        "artist": "Hokusai",
        "year": "c. 1831",
        "collection": None,
        "source_url": None,
        "licence": "public domain",
        "categories": ["art"],
        "notes": None,
    },
    "model": None,
    "made": None,
}


@pytest.fixture(scope="module")
def card_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cards") / "filter.json"


def test_the_valid_card_is_accepted(card_file: Path) -> None:
    card_file.write_text(json.dumps(VALID_CARD))
    assert load_card(card_file).provenance.artist == "Hokusai"


@FUZZ
@given(mutated(VALID_CARD))
def test_mutated_cards_are_accepted_or_refused_cleanly(card_file: Path, document: dict) -> None:
    card_file.write_text(json.dumps(document, allow_nan=True))
    try:
        card = load_card(card_file)
    except RotoscopeError as error:
        assert "\n" not in str(error)
        return
    " ".join(str(value) for value in vars(card.provenance).values())
