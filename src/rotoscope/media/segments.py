"""Incremental encoding: a video as closed segments of a few seconds, each encoded once.

Re-shooting two frames of a clip should not re-encode the whole clip. Frames are grouped into
segments by time (``segment_seconds``, so a replaced frame never moves a boundary), and each
segment is encoded on its own, starting on a keyframe, into a packet file under the cache folder
named by everything that decides its bytes: the frames' md5s and timestamps, the encoder and its
settings, the size. The output video is then muxed from the segments' packets by stream copy,
with the source's audio, so only the segments whose frames changed are encoded again.

The price is a keyframe every segment: measured on the shared clips, 1-second segments (the
default) make the video 3 to 5% larger than one pass, 2-second ones 2%; longer segments
re-encode more frames per change.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from PIL import Image

from rotoscope.errors import RotoscopeError, storage_error
from rotoscope.store import temp_beside

SEGMENT_FORMAT = 1  # bump when the file layout or what goes into a key changes
_MAGIC = b"RSEG"
_KEEP_UNUSED_DAYS = 7


@dataclass(frozen=True)
class Packet:
    data: bytes
    pts: int
    dts: int
    duration: int
    keyframe: bool


@dataclass(frozen=True)
class Segment:
    """Frames ``first`` to ``last`` (inclusive, positions in the frame list) and their cache key."""

    first: int
    last: int
    key: str


@dataclass(frozen=True)
class EncodedSegments:
    segments: int
    encoded: int  # segments encoded by this run (the rest were in the cache)
    frames_encoded: int


class SegmentCache:
    """Packet files under ``folder``, one per segment key, written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.seg"

    def holds(self, key: str) -> bool:
        """Whether the segment is there and whole, reading only its header (not the packets)."""
        path = self.path(key)
        try:
            with open(path, "rb") as handle:
                header, payload_start = _read_header(handle)
            payload = sum(row[4] for row in header["packets"])
            return payload_start + payload == path.stat().st_size
        except (OSError, ValueError, KeyError, IndexError, TypeError, struct.error):
            return False

    def read(self, key: str) -> tuple[bytes, list[Packet]] | None:
        """The segment's codec header and packets, or None when absent or unreadable."""
        path = self.path(key)
        try:
            with open(path, "rb") as handle:
                header, _ = _read_header(handle)
                packets = []
                for pts, dts, duration, keyframe, size in header["packets"]:
                    data = handle.read(size)
                    if len(data) != size:
                        return None
                    packets.append(Packet(data, pts, dts, duration, bool(keyframe)))
                if handle.read(1):
                    return None
        except (OSError, ValueError, KeyError, TypeError, struct.error):
            return None
        os.utime(path)  # recently used: kept by tidy()
        return bytes.fromhex(header["extradata"]), packets

    def write(self, key: str, extradata: bytes, packets: list[Packet]) -> None:
        rows = [[p.pts, p.dts, p.duration, int(p.keyframe), len(p.data)] for p in packets]
        header = json.dumps({"extradata": extradata.hex(), "packets": rows}).encode()
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with temp_beside(path) as temp:
                with open(temp, "wb") as handle:
                    handle.write(_MAGIC + struct.pack("<I", len(header)) + header)
                    for packet in packets:
                        handle.write(packet.data)
                os.replace(temp, path)
        except OSError as error:
            # named by the segment: a failed write() names no file, a failed open its temporary twin
            raise storage_error(OSError(error.errno, error.strerror, str(path))) from None

    def tidy(self, days: float = _KEEP_UNUSED_DAYS) -> None:
        """Forget segments nobody has used for ``days``: an edit older than that re-encodes more."""
        if not self.folder.is_dir():
            return
        cutoff = time.time() - days * 86400
        for path in self.folder.glob("*/*.seg"):
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)


def _read_header(handle) -> tuple[dict[str, Any], int]:
    """A segment file's JSON header and where its packet bytes start."""
    if handle.read(4) != _MAGIC:
        raise ValueError("not a segment file")
    (header_size,) = struct.unpack("<I", handle.read(4))
    return json.loads(handle.read(header_size)), 8 + header_size


def plan_segments(
    frame_md5s: Sequence[str],
    pts: Sequence[int],
    durations: Sequence[int],
    time_base: Fraction,
    segment_seconds: float,
    encoder_identity: dict[str, Any],
) -> list[Segment]:
    """Frames grouped by ``floor(time / segment_seconds)``, each group keyed by its content."""
    groups: list[list[int]] = []
    last_slot = None
    for index, frame_pts in enumerate(pts):
        slot = int(float(frame_pts * time_base) // segment_seconds)
        if slot != last_slot:
            groups.append([])
            last_slot = slot
        groups[-1].append(index)
    segments = []
    for members in groups:
        frames = [[frame_md5s[i], pts[i], durations[i]] for i in members]
        what = {"format": SEGMENT_FORMAT, "encoder": encoder_identity, "frames": frames}
        key = hashlib.md5(json.dumps(what, sort_keys=True).encode()).hexdigest()
        segments.append(Segment(members[0], members[-1], key))
    return segments


def encode_segment(
    open_encoder: Callable[[], Any],
    pictures: Iterator[Image.Image],
    pts: Sequence[int],
    durations: Sequence[int],
    time_base: Fraction,
    on_frame: Callable[[], None],
) -> tuple[bytes, list[Packet]]:
    """Encode one segment's pictures with a fresh encoder: it starts on a keyframe and needs
    nothing from any other segment."""
    encoder = open_encoder()
    by_pts = dict(zip(pts, durations, strict=True))
    packets: list[Packet] = []

    def keep(encoded: list[Any]) -> None:
        for packet in encoded:
            duration = by_pts.get(packet.pts, packet.duration or 0)
            packets.append(Packet(bytes(packet), packet.pts, packet.dts, duration, packet.is_keyframe))

    for picture, frame_pts in zip(pictures, pts, strict=True):
        frame = av.VideoFrame.from_image(picture)
        frame.pts = frame_pts
        frame.time_base = time_base
        keep(encoder.encode(frame))
        on_frame()
    keep(encoder.encode(None))
    if len(packets) != len(pts) or not packets[0].keyframe:
        raise RotoscopeError(None, f"encoder gave {len(packets)} packets for {len(pts)} frames")
    return bytes(encoder.extradata or b""), packets
