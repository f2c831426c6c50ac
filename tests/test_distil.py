"""The distilled recipe: a trained filter learning the instant filter's paintings of your material.

Real networks throughout (Magenta's ONNX transformer as the teacher, the light Keras network as
the student), at sizes that train in seconds: generated photos, 64 px crops, a few dozen steps.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import rotoscope
from PIL import Image
from test_bad_input import assert_refused

from rotoscope.errors import ParamsError, RotoscopeError
from rotoscope.filters.card import load_card
from rotoscope.media.synth import landscape, painting
from rotoscope.studio import Studio, init_studio

TINY = {
    "size": 64,
    "batch": 2,
    "steps": 30,
    "checkpoint_every": 10,
    "teacher_crops": 24,
    "content": ["photos"],
}


class Interrupted(Exception):
    """Raised from the progress callback: the run stops as a killed one would, after a checkpoint."""


class Recorder:
    """A progress factory that keeps every (what, done, note) and can stop the run at a step."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.updates: list[tuple[str, int, str]] = []
        self.stop_at = stop_at

    @contextmanager
    def __call__(self, what: str, total: int, unit: str) -> Iterator:
        def update(done: int, note: str = "") -> None:
            self.updates.append((what, done, note))
            if what == "train" and done == self.stop_at:
                raise Interrupted

        yield update

    def losses(self, name: str) -> list[float]:
        """One loss per training step, read from the notes the bar shows."""
        found = []
        for what, _, note in self.updates:
            parts = note.split()
            if what == "train" and name in parts:
                found.append(float(parts[parts.index(name) + 1]))
        return found


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Studio:
    root = tmp_path_factory.mktemp("distil")
    made, _ = init_studio(root / "studio", remote=root / "remote")
    for seed in range(3):
        photos = made.root / "photos"
        photos.mkdir(exist_ok=True)
        Image.fromarray(landscape(160, 120, seed)).save(photos / f"p{seed}.png")
    Image.fromarray(painting(192, 160)).save(root / "style.png")
    return made


def tiny_recipe(studio: Studio, **changes):
    from rotoscope.filters.train import TrainRecipe

    return replace(TrainRecipe.from_params({}, {"distil": True, **TINY}, studio.params_path), **changes)


def run_training(studio: Studio, name: str, progress: Recorder, resume: bool = False, **changes):
    from rotoscope.filters.train import train

    return train(
        studio,
        studio.root.parent / "style.png",
        studio.root / f"{name}.keras",
        tiny_recipe(studio, **changes),
        studio.partial_dir(f"train-{name}"),
        resume,
        progress,
        teacher_cache=studio.partial_dir(f"teacher-{name}"),
    )


def weights(path: Path) -> list[np.ndarray]:
    from rotoscope.filters.backend import keras

    return [np.asarray(w) for w in keras.saving.load_model(path).get_weights()]


@pytest.fixture(scope="module")
def uninterrupted(material: Studio) -> tuple[Recorder, object]:
    progress = Recorder()
    return progress, run_training(material, "whole", progress)


@pytest.mark.slow  # about 10 s: TensorFlow traces and trains a light network
def test_distil_recipe_learns_the_teachers_paintings(uninterrupted) -> None:
    progress, result = uninterrupted
    pixel = progress.losses("pixel")
    assert len(pixel) == TINY["steps"]
    assert np.mean(pixel[-5:]) < 0.7 * np.mean(pixel[:5]), pixel  # nearer the teacher's paintings
    assert {"total", "pixel", "edge"} <= set(result.losses)
    painting = [update for update in progress.updates if update[0] == "paint"]
    assert painting[-1][1] == TINY["teacher_crops"] and result.objective["painted"] == TINY["teacher_crops"]


@pytest.mark.slow  # about 10 s: TensorFlow traces and trains a light network
def test_killed_distillation_resumes_to_the_same_weights_without_repainting(
    material: Studio, uninterrupted
) -> None:
    cache = material.partial_dir("teacher-cut")
    with pytest.raises(Interrupted):
        run_training(material, "cut", Recorder(stop_at=15))
    assert len(list(cache.glob("*.png"))) == TINY["teacher_crops"]  # painted once, kept
    assert not (material.root / "cut.keras").exists()
    progress = Recorder()
    result = run_training(material, "cut", progress, resume=True)
    assert result.resumed_from == 10 and result.objective["painted"] == 0  # found, not repainted
    paint_notes = [note for what, _, note in progress.updates if what == "paint"]
    assert paint_notes[-1] == f"0 painted, {TINY['teacher_crops']} cached"
    resumed, whole = weights(material.root / "cut.keras"), weights(material.root / "whole.keras")
    assert len(resumed) == len(whole)
    for ours, theirs in zip(resumed, whole, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_teacher_crops_are_refound_by_content_and_repainted_for_another_style(material: Studio) -> None:
    from rotoscope.filters.distil import Teacher, paint_crops
    from rotoscope.filters.train import content_files, md5_file

    recipe = tiny_recipe(material, teacher_crops=6)
    files = content_files(material, recipe)
    md5s = [md5_file(path) for path in files]
    cache = material.partial_dir("teacher-keys")
    teacher = Teacher.for_style(material.root.parent / "style.png")
    first = paint_crops(files, md5s, teacher, recipe, cache, Recorder())
    again = paint_crops(files, md5s, teacher, recipe, cache, Recorder())
    assert (first.painted, again.painted) == (6, 0)
    np.testing.assert_array_equal(first.paintings, again.paintings)
    assert not np.array_equal(first.pictures[0], first.paintings[0])
    # the crops of the pictures that stay are kept when one picture leaves
    fewer = paint_crops(files[:2], md5s[:2], teacher, replace(recipe, teacher_crops=4), cache, Recorder())
    assert fewer.painted == 0 and len(list(cache.iterdir())) == 4
    other = Teacher(np.roll(teacher.embedding, 1))
    assert paint_crops(files, md5s, other, recipe, cache, Recorder()).painted == 6
    (next(cache.iterdir())).write_bytes(b"not a png")  # damaged: painted again, not trusted
    assert paint_crops(files, md5s, other, recipe, cache, Recorder()).painted == 1


@pytest.mark.slow  # about 10 s: TensorFlow traces and trains a light network
def test_filter_new_distil_makes_a_card_that_records_the_teacher(material: Studio) -> None:
    from rotoscope.filters import instant
    from rotoscope.filters.make import make_filter

    style = material.root.parent / "style.png"
    rotoscope(
        *("filter", "new", "taught", "--style", str(style), "--distil", "--size", "64", "--batch", "2"),
        *("--steps", "12", "--content", "photos"),
        cwd=material.root,
    )
    document = material.params()
    document["filters"]["taught"]["train"]["teacher_crops"] = 8
    material.save_params(document)
    card = make_filter(material, "taught")
    recipe, teacher = card.made["recipe"], card.made["teacher"]
    assert recipe["teacher"] == "instant" and recipe["width"] == 0.25 and recipe["steps"] == 12
    assert recipe["teacher_crops"] == 8 and recipe["head"] == "refine"
    embedding = instant.embed_style(Image.open(style).convert("RGB")).astype("<f4")
    assert teacher["embedding_md5"] == hashlib.md5(embedding.tobytes()).hexdigest()
    assert teacher["network_md5"] == instant.network_md5() and teacher["crops"] == 8
    assert set(card.made["losses"]) >= {"pixel", "edge"} and "onnxruntime" in card.made["software"]
    assert load_card(material.root / "filters/taught/filter.json").made == card.made
    shown = rotoscope("filter", "show", "taught", cwd=material.root).stdout
    assert "teacher=instant" in shown


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ({"teacher": "vgg"}, "train.teacher"),
        ({"teacher_side": 16}, "train.teacher_side"),
        ({"teacher_crops": 0}, "train.teacher_crops"),
        ({"edge_weight": -1}, "train.edge_weight"),
        ({"distil": "yes"}, "train.distil"),
    ],
)
def test_bad_distil_settings_are_refused_naming_params_yaml(
    studio: Studio, setting: dict, needle: str
) -> None:
    document = studio.params()
    document["train"].update(setting)
    text = studio.params_path.read_text()
    with pytest.raises(ParamsError, match=needle.replace(".", r"\.")):
        studio.save_params(document)  # our own writes refuse it too
    key, value = next(iter(setting.items()))
    hand_edit = re.sub(r"^train:.*$", lambda line: f"{line[0]}\n  {key}: {value}", text, flags=re.M)
    studio.params_path.write_text(hand_edit)
    assert_refused(rotoscope("filter", "list", cwd=studio.root, check=False), "params.yaml", needle)


def test_recipe_checks_what_the_schema_cannot(studio: Studio) -> None:
    from rotoscope.filters.train import TrainRecipe

    where = studio.params_path
    with pytest.raises(RotoscopeError, match=r"teacher_side .* at least train\.size"):
        TrainRecipe.from_params({}, {"distil": True, "size": 256, "teacher_side": 128}, where)
    with pytest.raises(RotoscopeError, match="teacher_crops x size"):
        TrainRecipe.from_params(
            {}, {"distil": True, "size": 2048, "teacher_side": 2048, "teacher_crops": 100}, where
        )
    recipe = TrainRecipe.from_params({"light": True, "steps": 50}, {"distil": True, "steps": 70}, where)
    assert (recipe.teacher, recipe.width, recipe.steps) == ("instant", 0.25, 70)  # own settings win
    perceptual = TrainRecipe.from_params({}, {"distil": True, "teacher": None, "size": 2048}, where)
    assert perceptual.teacher is None  # and its size may pass teacher_side: no teacher paints
    assert "teacher_crops" not in perceptual.as_dict()  # its card and resume key read as before
