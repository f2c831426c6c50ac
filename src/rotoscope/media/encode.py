"""Encoding pictures back into a video at exact timestamps, with the source's sound."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from PIL import Image

from rotoscope.errors import RotoscopeError
from rotoscope.media.probe import open_input
from rotoscope.store import temp_beside

AUDIO_MODES = ("copy", "aac", "none")
# Transcoding targets for containers that cannot hold the source's audio codec as it is.
_AUDIO_FALLBACK = {"webm": "libopus", "ogg": "libopus"}


@dataclass(frozen=True)
class EncodeSettings:
    codec: str = "libx264"
    crf: int | None = 18
    preset: str | None = "medium"
    pix_fmt: str = "auto"  # yuv420p when the size allows it, else yuv444p
    audio: str = "copy"
    options: dict[str, str] = field(default_factory=dict)

    def codec_options(self) -> dict[str, str]:
        options: dict[str, str] = {}
        if self.crf is not None:
            options["crf"] = str(self.crf)
        if self.preset:
            options["preset"] = str(self.preset)
        if self.codec in {"libx264", "libx265"}:
            # B-frames shift decode timestamps and make the mp4 muxer misjudge the last
            # frame's duration; without them every timestamp and the duration are exact.
            options["bf"] = "0"
        options.update({key: str(value) for key, value in self.options.items()})
        return options

    def pixel_format(self, width: int, height: int) -> str:
        if self.pix_fmt != "auto":
            return self.pix_fmt
        return "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"


ProgressFn = Callable[[int], None]


def encode_video(
    out: Path,
    pictures: Iterable[Image.Image],
    pts: Sequence[int],
    *,
    time_base: Fraction,
    end_pts: int,
    size: tuple[int, int],
    settings: EncodeSettings,
    audio_source: Path | None = None,
    display_rotation: int = 0,
    on_frame: ProgressFn | None = None,
) -> None:
    """Write ``pictures`` shown at ``pts`` until ``end_pts``; the file appears only when complete."""
    if settings.audio not in AUDIO_MODES:
        raise RotoscopeError(None, f"audio mode {settings.audio!r}: use one of {', '.join(AUDIO_MODES)}")
    durations = {p: (pts[k + 1] if k + 1 < len(pts) else end_pts) - p for k, p in enumerate(pts)}
    with temp_beside(out) as temp:
        try:
            container = av.open(str(temp), mode="w", format=_format_for(out))
        except (av.error.FFmpegError, ValueError) as error:
            raise RotoscopeError(out, f"cannot write this kind of file ({error})") from None
        with container:
            video = _add_video_stream(container, settings, size, time_base)
            if display_rotation:
                video.set_display_rotation(display_rotation)
            audio = _AudioFeed.open(container, audio_source, settings.audio, out)
            for index, (picture, frame_pts) in enumerate(zip(pictures, pts, strict=True)):
                frame = av.VideoFrame.from_image(picture)
                frame.pts = frame_pts
                frame.time_base = time_base
                _mux_video(container, video.encode(frame), durations, audio)
                if on_frame:
                    on_frame(index + 1)
            _mux_video(container, video.encode(None), durations, audio)
            audio.finish()
        temp.replace(out)


def _format_for(out: Path) -> str | None:
    return {".mkv": "matroska", ".m4v": "mp4"}.get(out.suffix.lower())


def _add_video_stream(
    container: Any, settings: EncodeSettings, size: tuple[int, int], time_base: Fraction
) -> av.VideoStream:
    try:
        stream = container.add_stream(settings.codec, options=settings.codec_options())
    except (av.error.FFmpegError, ValueError) as error:
        raise RotoscopeError(None, f"video codec {settings.codec!r} is not available ({error})") from None
    stream.width, stream.height = size
    stream.pix_fmt = settings.pixel_format(*size)
    stream.time_base = time_base
    stream.codec_context.time_base = time_base
    stream.codec_context.thread_type = "FRAME"  # PyAV's SLICE makes x264 slice-thread: 17% slower here
    return stream


def _mux_video(
    container: Any, packets: Iterable[av.Packet], durations: dict[int, int], audio: _AudioFeed
) -> None:
    for packet in packets:
        # the encoder guesses durations from a constant rate; ours come from the manifest
        packet.duration = durations.get(packet.pts, packet.duration)
        audio.catch_up(float(packet.pts * packet.time_base))
        container.mux(packet)


class _AudioFeed:
    """The source's audio, muxed alongside the video so the output stays interleaved."""

    def __init__(self, container: Any, packets: Iterator[av.Packet] | None, source: Any) -> None:
        self._container = container
        self._packets = packets
        self._source = source
        self._pending: av.Packet | None = None

    @classmethod
    def open(cls, container: Any, source: Path | None, mode: str, out: Path) -> _AudioFeed:
        if source is None or mode == "none":
            return cls(container, None, None)
        src = open_input(source)
        if not src.streams.audio:
            src.close()
            return cls(container, None, None)
        in_audio = src.streams.audio[0]
        if mode == "copy" and in_audio.codec_context.name in container.supported_codecs:
            out_audio = container.add_stream_from_template(in_audio)
            packets = _copied(src, in_audio, out_audio)
        else:
            codec = _AUDIO_FALLBACK.get(out.suffix.lower().lstrip("."), "aac")
            packets = _transcoded(src, in_audio, container, codec)
        return cls(container, packets, src)

    def _take(self) -> av.Packet | None:
        if self._pending is None and self._packets is not None:
            self._pending = next(self._packets, None)
        return self._pending

    def catch_up(self, seconds: float) -> None:
        while (
            (packet := self._take()) is not None
            and packet.pts is not None
            and (float(packet.pts * packet.time_base) <= seconds)
        ):
            self._container.mux(packet)
            self._pending = None

    def finish(self) -> None:
        while (packet := self._take()) is not None:
            self._container.mux(packet)
            self._pending = None
        if self._source is not None:
            self._source.close()


def _copied(src: Any, in_audio: Any, out_audio: Any) -> Iterator[av.Packet]:
    for packet in src.demux(in_audio):
        if packet.dts is None:
            continue  # demuxer's end-of-stream marker
        packet.stream = out_audio
        yield packet


def _transcoded(src: Any, in_audio: Any, container: Any, codec: str) -> Iterator[av.Packet]:
    rate = 48000 if codec == "libopus" else in_audio.codec_context.sample_rate
    out_audio = container.add_stream(codec, rate=rate)
    out_audio.layout = in_audio.codec_context.layout.name
    resampler = av.AudioResampler(
        format=out_audio.codec_context.codec.audio_formats[0].name,
        layout=out_audio.layout.name,
        rate=rate,
    )
    for frame in src.decode(in_audio):
        for converted in resampler.resample(frame):
            yield from out_audio.encode(converted)
    for converted in resampler.resample(None):
        yield from out_audio.encode(converted)
    yield from out_audio.encode(None)
