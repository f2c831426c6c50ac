"""What a video file holds, read with PyAV, and the refusal of files that are not videos."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from rotoscope.errors import RotoscopeError
from rotoscope.store import require_file

# Demuxers that read single pictures: a still image is not a clip.
_IMAGE_FORMATS = {"image2", "gif", "apng", "webp"}


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int
    duration: float | None


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    container: str
    codec: str
    pix_fmt: str | None
    width: int  # as stored, before rotation
    height: int
    rotation: int  # degrees counter-clockwise that a player turns the picture: 0, 90, 180, 270
    time_base: Fraction
    avg_rate: Fraction | None
    start_pts: int
    end_pts: int | None  # start + duration in time_base, when the file declares it
    declared_frames: int  # 0 when the container does not say
    audio: AudioInfo | None

    @property
    def display_size(self) -> tuple[int, int]:
        if self.rotation in (90, 270):
            return self.height, self.width
        return self.width, self.height

    @property
    def duration(self) -> float | None:
        if self.end_pts is None:
            return None
        return float((self.end_pts - self.start_pts) * self.time_base)

    def audio_dict(self) -> dict[str, Any] | None:
        return asdict(self.audio) if self.audio else None


def open_input(path: Path) -> av.container.InputContainer:
    require_file(path, "video file")
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as error:
        raise RotoscopeError(path, f"not a video PyAV can read ({_reason(error)})") from None


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def normalise_rotation(degrees: float | None) -> int:
    if not degrees:
        return 0
    return round(degrees / 90.0) * 90 % 360


def probe(path: Path) -> VideoInfo:
    """Read a video's facts and decode its first frame, so a file that cannot be split fails here."""
    with open_input(path) as container:
        if container.format.name in _IMAGE_FORMATS or container.format.name.endswith("_pipe"):
            raise RotoscopeError(path, f"a still image ({container.format.name}), not a video")
        if not container.streams.video:
            has_audio = bool(container.streams.audio)
            raise RotoscopeError(path, "audio only: no video stream" if has_audio else "no video stream")
        stream = container.streams.video[0]
        first = _first_frame(container, stream, path)
        _refuse_truncated(container, path)
        declared = stream.frames or 0
        if declared == 1:
            raise RotoscopeError(path, "a single still picture, not a video")
        time_base = stream.time_base or Fraction(1, 1_000_000)
        start = stream.start_time if stream.start_time is not None else (first.pts or 0)
        return VideoInfo(
            path=path,
            container=container.format.name,
            codec=stream.codec_context.name,
            pix_fmt=stream.codec_context.pix_fmt,
            width=first.width,
            height=first.height,
            rotation=normalise_rotation(first.rotation),
            time_base=time_base,
            avg_rate=stream.average_rate,
            start_pts=start,
            end_pts=_end_pts(container, stream, start, time_base),
            declared_frames=declared,
            audio=_audio_info(container),
        )


def _first_frame(container: Any, stream: Any, path: Path) -> av.VideoFrame:
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as error:
        raise RotoscopeError(path, f"cannot decode video ({_reason(error)})") from None
    raise RotoscopeError(path, "video stream has no decodable frames (truncated or damaged)")


def _refuse_truncated(container: Any, path: Path) -> None:
    """An index (mp4 ``moov`` first) that points past the end of the file means a cut file."""
    size = path.stat().st_size
    for stream in container.streams:
        entries = stream.index_entries
        if len(entries) and entries[len(entries) - 1].pos + entries[len(entries) - 1].size > size:
            raise RotoscopeError(path, f"truncated: its index needs more than the {size} bytes the file has")


def _end_pts(container: Any, stream: Any, start: int, time_base: Fraction) -> int | None:
    if stream.duration:
        return start + stream.duration
    if container.duration:
        return start + int(Fraction(container.duration, av.time_base) / time_base)
    return None


def _audio_info(container: Any) -> AudioInfo | None:
    if not container.streams.audio:
        return None
    audio = container.streams.audio[0]
    duration = float(audio.duration * audio.time_base) if audio.duration else None
    return AudioInfo(
        codec=audio.codec_context.name,
        sample_rate=audio.codec_context.sample_rate,
        channels=audio.codec_context.channels,
        duration=duration,
    )
