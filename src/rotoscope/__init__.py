"""Rotoscope studio: videos as Git-tracked frame manifests, blobs in DVC, neural style filters.

The library API: :class:`Studio` and its verbs (see :mod:`rotoscope.verbs`), with the records
they take and return. Names are imported on first use, so ``import rotoscope`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Studio": "rotoscope.studio",
    "init_studio": "rotoscope.studio",
    "RenderSpec": "rotoscope.verbs",
    "FrameSelection": "rotoscope.verbs",
    "ProgressEvent": "rotoscope.progress",
    "ApplySettings": "rotoscope.filters.apply",
    "Provenance": "rotoscope.filters.card",
    "RotoscopeError": "rotoscope.errors",
}
__all__ = [
    "ApplySettings",
    "FrameSelection",
    "ProgressEvent",
    "Provenance",
    "RenderSpec",
    "RotoscopeError",
    "Studio",
    "__version__",
    "init_studio",
]

if TYPE_CHECKING:
    from rotoscope.errors import RotoscopeError
    from rotoscope.filters.apply import ApplySettings
    from rotoscope.filters.card import Provenance
    from rotoscope.progress import ProgressEvent
    from rotoscope.studio import Studio, init_studio
    from rotoscope.verbs import FrameSelection, RenderSpec


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rotoscope' has no attribute {name!r}")
