"""Encoding pictures back into a video at exact timestamps, with the source's sound.

Two ways, one result: :func:`encode_video` encodes a stream of pictures in one pass (keyframes
where the encoder likes them); :func:`encode_segmented` encodes only the segments whose frames
changed since an earlier run and joins them by stream copy (see :mod:`segments`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from PIL import Image

from rotoscope.errors import RotoscopeError
from rotoscope.media.probe import open_input
from rotoscope.media.segments import EncodedSegments, SegmentCache, encode_segment, plan_segments
from rotoscope.store import temp_beside

AUDIO_MODES = ("copy", "aac", "none")
# Transcoding targets for containers that cannot hold the source's audio codec as it is.
_AUDIO_FALLBACK = {"webm": "libopus", "ogg": "libopus"}
# Encoders whose segments join by stream copy: no reordering delay across a segment's start
# (x264/x265 run without B-frames here) or intra-only. Others are encoded in one pass.
SEGMENTABLE_CODECS = ("libx264", "libx265", "ffv1")


@dataclass(frozen=True)
class EncodeSettings:
    codec: str = "libx264"
    crf: int | None = 18
    preset: str | None = "medium"
    pix_fmt: str = "auto"  # yuv420p when the size allows it, else yuv444p
    audio: str = "copy"
    segment_seconds: float | None = 1.0  # encode in closed segments, re-encoding only changed ones
    options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.audio not in AUDIO_MODES:
            raise RotoscopeError(None, f"audio mode {self.audio!r}: use one of {', '.join(AUDIO_MODES)}")
        if self.segment_seconds is not None and not float(self.segment_seconds) > 0:
            raise RotoscopeError(None, f"segment_seconds must be over 0 or null, not {self.segment_seconds}")

    @property
    def segmented(self) -> bool:
        return self.segment_seconds is not None and self.codec in SEGMENTABLE_CODECS

    def identity(self) -> dict[str, Any]:
        """What decides an encoder's bytes besides the pictures (part of a segment's key)."""
        return {
            "codec": self.codec,
            "options": self.codec_options(),
            "pix_fmt": self.pix_fmt,
            "libraries": {name: list(version) for name, version in sorted(av.library_versions.items())},
        }

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
    durations = frame_durations(pts, end_pts)
    rate = nominal_rate(pts, time_base)
    with _Output(out, settings, size, time_base, rate, audio_source) as output:
        if display_rotation:
            output.video.set_display_rotation(display_rotation)
        for index, (picture, frame_pts) in enumerate(zip(pictures, pts, strict=True)):
            frame = av.VideoFrame.from_image(picture)
            frame.pts = frame_pts
            frame.time_base = time_base
            output.mux(output.video.encode(frame), durations)
            if on_frame:
                on_frame(index + 1)
        output.mux(output.video.encode(None), durations)


def encode_segmented(
    out: Path,
    frame_md5s: Sequence[str],
    picture_at: Callable[[int], Image.Image],
    pts: Sequence[int],
    *,
    time_base: Fraction,
    end_pts: int,
    size: tuple[int, int],
    settings: EncodeSettings,
    cache: SegmentCache,
    audio_source: Path | None = None,
    on_frame: ProgressFn | None = None,
) -> EncodedSegments:
    """Like :func:`encode_video`, but from cached segments: only segments with a changed frame
    (or new settings) are encoded; the rest are copied. ``picture_at(i)`` loads frame ``i``."""
    if not settings.segmented:
        raise ValueError(f"{settings.codec} is not encoded in segments")
    durations = frame_durations(pts, end_pts)
    rate = nominal_rate(pts, time_base)
    identity = {**settings.identity(), "size": list(size), "time_base": str(time_base), "rate": str(rate)}
    shown = [durations[p] for p in pts]
    segments = plan_segments(frame_md5s, pts, shown, time_base, float(settings.segment_seconds), identity)
    done, encoded, frames_encoded = 0, 0, 0

    def tick() -> None:
        nonlocal done
        done += 1
        if on_frame:
            on_frame(done)

    with _Output(out, settings, size, time_base, rate, audio_source) as output:
        for segment in segments:
            if cache.holds(segment.key):
                for _ in range(segment.first, segment.last + 1):
                    tick()
                continue
            span = range(segment.first, segment.last + 1)
            header, packets = encode_segment(
                output.segment_encoder,
                (picture_at(i) for i in span),
                [pts[i] for i in span],
                [shown[i] for i in span],
                time_base,
                tick,
            )
            cache.write(segment.key, header, packets)
            encoded, frames_encoded = encoded + 1, frames_encoded + len(span)
        for segment in segments:
            found = cache.read(segment.key)
            if found is None:
                raise RotoscopeError(cache.path(segment.key), "segment vanished while the video was muxed")
            output.copy(*found, time_base)
    return EncodedSegments(len(segments), encoded, frames_encoded)


def frame_durations(pts: Sequence[int], end_pts: int) -> dict[int, int]:
    """How long each frame shows: until the next one, the last until ``end_pts``."""
    return {p: (pts[k + 1] if k + 1 < len(pts) else end_pts) - p for k, p in enumerate(pts)}


def nominal_rate(pts: Sequence[int], time_base: Fraction) -> Fraction:
    """The average frame rate the timestamps describe (the encoder's rate control and level)."""
    if len(pts) < 2 or pts[-1] <= pts[0]:
        return Fraction(24)
    return (Fraction(len(pts) - 1) / ((pts[-1] - pts[0]) * time_base)).limit_denominator(1001)


class _Output:
    """The output file being written: its video stream, the source's audio, atomic on success."""

    def __init__(
        self,
        out: Path,
        settings: EncodeSettings,
        size: tuple[int, int],
        time_base: Fraction,
        rate: Fraction,
        audio_source: Path | None,
    ) -> None:
        self.out, self.settings, self.size = out, settings, size
        self.time_base, self.rate, self.audio_source = time_base, rate, audio_source

    def __enter__(self) -> _Output:
        self._temp_context = temp_beside(self.out)
        self.temp = self._temp_context.__enter__()
        try:
            try:
                self.container = av.open(str(self.temp), mode="w", format=_format_for(self.out))
            except (av.error.FFmpegError, ValueError) as error:
                raise RotoscopeError(self.out, f"cannot write this kind of file ({error})") from None
            self.video = _add_video_stream(
                self.container, self.settings, self.size, self.time_base, self.rate
            )
            self.audio = _AudioFeed.open(self.container, self.audio_source, self.settings.audio, self.out)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, kind, error, trace) -> None:
        try:
            if getattr(self, "container", None) is not None:
                if kind is None:
                    self.audio.finish()
                self.container.close()
            if kind is None:
                self.temp.replace(self.out)
        finally:
            self._temp_context.__exit__(kind, error, trace)

    def segment_encoder(self) -> Any:
        """A stand-alone encoder configured exactly like the output stream (the same codec header)."""
        context = av.CodecContext.create(self.settings.codec, "w")
        context.options = self.settings.codec_options()
        context.flags = self.video.codec_context.flags  # global header or not, as the muxer asked
        _configure(context, self.settings, self.size, self.time_base, self.rate)
        return context

    def mux(self, packets: Iterable[av.Packet], durations: dict[int, int]) -> None:
        for packet in packets:
            # the encoder guesses durations from a constant rate; ours come from the manifest
            packet.duration = durations.get(packet.pts, packet.duration)
            self.audio.catch_up(float(packet.pts * packet.time_base))
            self.container.mux(packet)

    def copy(self, header: bytes, packets: list, time_base: Fraction) -> None:
        """Mux one segment's packets as they are; its header must be the output stream's."""
        context = self.video.codec_context
        if not context.is_open:
            context.open()
        if bytes(context.extradata or b"") != header:
            problem = "a cached segment's codec header is not the output's (set segment_seconds: null)"
            raise RotoscopeError(self.out, problem)
        for stored in packets:
            packet = av.Packet(stored.data)
            packet.pts, packet.dts, packet.duration = stored.pts, stored.dts, stored.duration
            packet.time_base = time_base
            packet.is_keyframe = stored.keyframe
            packet.stream = self.video
            self.audio.catch_up(float(stored.pts * time_base))
            self.container.mux(packet)


def _format_for(out: Path) -> str | None:
    return {".mkv": "matroska", ".m4v": "mp4"}.get(out.suffix.lower())


def _add_video_stream(
    container: Any, settings: EncodeSettings, size: tuple[int, int], time_base: Fraction, rate: Fraction
) -> av.VideoStream:
    try:
        stream = container.add_stream(settings.codec, options=settings.codec_options())
    except (av.error.FFmpegError, ValueError) as error:
        raise RotoscopeError(None, f"video codec {settings.codec!r} is not available ({error})") from None
    stream.time_base = time_base
    _configure(stream.codec_context, settings, size, time_base, rate)
    return stream


def _configure(
    context: Any, settings: EncodeSettings, size: tuple[int, int], time_base: Fraction, rate: Fraction
) -> None:
    context.width, context.height = size
    context.pix_fmt = settings.pixel_format(*size)
    context.time_base = time_base
    context.framerate = rate
    context.thread_type = "FRAME"  # PyAV's SLICE makes x264 slice-thread: 17% slower here


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
