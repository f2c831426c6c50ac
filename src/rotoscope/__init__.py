"""Rotoscope studio: videos as Git-tracked frame manifests, blobs in DVC, neural style filters."""

__version__ = "0.1.0"
