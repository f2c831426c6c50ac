"""One painting: a source frame through a filter at full strength, kept in the reuse store.

The same code runs in the stylize stage's own process (the local executor) and in each worker of
a cluster (the Ray executor), so a frame's painting is the same bytes wherever it was made. A
painter loads each filter once, from a model file it checks by md5, and before painting looks
for the painting in the store: a worker that died after keeping a painting but before reporting
it costs nothing when its frame is handed to another.

Each painting made is a line in the studio's ledger (``.rotoscope/ledger/``: the hardware, the
pixels, the seconds), which ``rotoscope estimate`` turns into rates per kind of hardware.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from rotoscope.errors import RotoscopeError
from rotoscope.estimate import painting_units
from rotoscope.filters import runtime
from rotoscope.filters.apply import ApplySettings, Stylizer, TrainedStylizer, apply_filter, stylizer_from_file
from rotoscope.layout import Layout
from rotoscope.store import FrameReuse, append_line, md5_file, temp_beside

WEBP_MAX_SIDE = 16383  # WebP's limit; a larger painting is kept as PNG


@dataclass(frozen=True)
class FilterModel:
    """A filter as a worker needs it: its model file, checked against the card's md5."""

    name: str
    kind: str  # trained or instant
    path: Path
    md5: str


@dataclass(frozen=True)
class PaintRequest:
    key: str  # the painting's reuse key (pipeline.StylizedFrames.painting_key)
    source: Path  # the source frame's file
    source_md5: str
    which: int  # the filter: an index into the job's models


@dataclass(frozen=True)
class PaintJob:
    """What every painting of one stylize run shares."""

    root: Path  # the studio
    models: tuple[FilterModel, ...]
    settings: ApplySettings


@dataclass(frozen=True)
class Painted:
    key: str
    md5: str
    size: int  # bytes
    seconds: float  # 0 when it was found already made
    worker: str  # host:pid


class Painter:
    """Paints a job's requests into the studio's reuse store, loading each filter once."""

    def __init__(self, job: PaintJob, node: str | None = None) -> None:
        self.job, self.node = job, node  # node: the cluster's name for the machine, if any
        self.layout = Layout(job.root)
        self.reuse = FrameReuse(self.layout)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._stylizers: dict[int, Stylizer] = {}

    def paint(self, request: PaintRequest) -> Painted:
        found = self.reuse.find(request.key)
        if found is not None:
            return Painted(request.key, found[1], found[2], 0.0, self.worker)
        stylizer = self._stylizer(request.which)
        start = time.perf_counter()
        with Image.open(request.source) as picture:
            styled = apply_filter(stylizer, picture.convert("RGB"), self.job.settings)
        with temp_beside(self.reuse.blob_dir / f"painting-{request.key}.webp") as temp:
            if max(styled.size) <= WEBP_MAX_SIDE:  # lossless, and several times faster than PNG
                styled.save(temp, "WEBP", lossless=True, quality=0, method=0)
            else:
                styled.save(temp, "PNG", compress_level=1)
            _, md5, size = self.reuse.keep(request.key, temp)
        seconds = time.perf_counter() - start
        self._record(request, stylizer, styled.size, seconds)
        return Painted(request.key, md5, size, seconds, self.worker)

    def _stylizer(self, which: int) -> Stylizer:
        if which not in self._stylizers:
            model = self.job.models[which]
            if not model.path.is_file():
                raise RotoscopeError(model.path, "model file missing (run `dvc pull` or `dvc repro`)")
            if md5_file(model.path) != model.md5:
                raise RotoscopeError(model.path, "model file is not the one its card records")
            self._stylizers[which] = stylizer_from_file(model.name, model.kind, model.path)
        return self._stylizers[which]

    def _record(
        self, request: PaintRequest, stylizer: Stylizer, size: tuple[int, int], seconds: float
    ) -> None:
        model = self.job.models[request.which]
        layers = stylizer.model.layers if isinstance(stylizer, TrainedStylizer) else None
        line = {
            "at": round(time.time(), 3),
            "hardware": runtime.hardware_kind(),
            "kind": model.kind,
            "model": model.md5,
            "pixels": size[0] * size[1],
            "brush": self.job.settings.brush,
            "units": round(painting_units(model.kind, layers, *size, self.job.settings.brush), 6),
            "seconds": round(seconds, 4),
            "key": request.key,
            "worker": self.worker,
            "node": self.node,
        }
        append_line(self.layout.ledger_file(self.worker), json.dumps(line))  # one writer: this process
