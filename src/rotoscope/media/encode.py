"""Encoding pictures back into a video at exact timestamps, with the source's sound.

Two ways, one result: :func:`encode_video` encodes a stream of pictures in one pass (keyframes
where the encoder likes them); :func:`encode_segmented` encodes only the segments whose frames
changed since an earlier run and joins them by stream copy (see :mod:`segments`).
"""

from __future__ import annotations

import functools
import io
import itertools
import math
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from PIL import Image

from rotoscope.errors import MediaError, ParamsError, RotoscopeError, StorageError, storage_error
from rotoscope.media.probe import open_input
from rotoscope.media.segments import EncodedSegments, Segment, SegmentCache, encode_segment, plan_segments
from rotoscope.store import temp_beside

AUDIO_MODES = ("copy", "aac", "none")
# Transcoding targets for containers that cannot hold the source's audio codec as it is.
_AUDIO_FALLBACK = {"webm": "libopus", "ogg": "libopus"}
# Encoders whose segments join by stream copy: no reordering delay across a segment's start
# (x264/x265 run without B-frames here) or intra-only. Others are encoded in one pass.
SEGMENTABLE_CODECS = ("libx264", "libx265", "ffv1")
# x264 and x265 print their own complaint about an unknown preset straight to stderr; checking
# the names first keeps the refusal to our one line, and lets it list the choices.
_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast")
_X26X_PRESETS += ("medium", "slow", "slower", "veryslow", "placebo")
_KNOWN_PRESETS = {"libx264": _X26X_PRESETS, "libx265": _X26X_PRESETS}
_WORD = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # codec, preset, pixel format and option names
_MAX_CRF = 63  # the widest crf scale of the usual encoders (libvpx, libaom); x264/x265 stop at 51
_MAX_SEGMENT_SECONDS = 3600.0
_MAX_OPTION_LENGTH = 256
_TRIAL_SIZE = 64  # a trial frame's side: every usual encoder takes it (x265 wants 16+ rows)


@dataclass(frozen=True)
class EncodeSettings:
    """How a video is encoded: the ``reassemble:`` section of ``params.yaml``.

    Constructing one checks each value's type and range (a bad value never makes a record);
    :meth:`validate` also asks PyAV whether the encoder exists and takes these settings.
    """

    codec: str = "libx264"
    crf: int | None = 18
    preset: str | None = "medium"
    pix_fmt: str = "auto"  # yuv420p when the size allows it, else yuv444p
    audio: str = "copy"
    segment_seconds: float | None = 1.0  # encode in closed segments, re-encoding only changed ones
    options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.options is None:  # ``options: null`` in YAML means none
            object.__setattr__(self, "options", {})
        _check_values(self)

    @classmethod
    def from_section(cls, section: Mapping[str, Any], where: Path | str) -> EncodeSettings:
        """A ``reassemble:`` mapping as checked settings; any refusal names ``where``."""
        if not isinstance(section, Mapping):
            raise ParamsError(where, f"reassemble must be a mapping of settings, not {section!r}")
        known = [item.name for item in fields(cls)]
        unknown = [key for key in section if key not in known]
        if unknown:
            raise ParamsError(where, f"reassemble: unknown key {unknown[0]!r} (known: {', '.join(known)})")
        try:
            settings = cls(**section)
        except ParamsError as error:
            raise ParamsError(where, error.problem) from None
        return settings.validate(where)

    def validate(self, where: Path | str) -> EncodeSettings:
        """These settings, once PyAV has confirmed them (a cached trial encode, a millisecond or
        two the first time); otherwise a :class:`ParamsError` naming ``where`` and the key."""
        options = tuple(sorted((str(key), str(value)) for key, value in self.options.items()))
        problem = _encoder_problem(self.codec, self.pix_fmt, self.preset, self.crf, options)
        if problem:
            raise ParamsError(where, problem)
        return self

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
        return _codec_options(self.codec, self.crf, self.preset, self.options.items())

    def pixel_format(self, width: int, height: int) -> str:
        if self.pix_fmt != "auto":
            return self.pix_fmt
        return "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"


def _codec_options(
    codec: str, crf: int | None, preset: str | None, extra: Iterable[tuple[str, Any]]
) -> dict[str, str]:
    options: dict[str, str] = {}
    if crf is not None:
        options["crf"] = str(crf)
    if preset:
        options["preset"] = str(preset)
    if codec in {"libx264", "libx265"}:
        # B-frames shift decode timestamps and make the mp4 muxer misjudge the last
        # frame's duration; without them every timestamp and the duration are exact.
        options["bf"] = "0"
    options.update({key: str(value) for key, value in extra})
    return options


# -- checking settings ---------------------------------------------------------------------------


def _refuse(key: str, problem: str) -> ParamsError:
    return ParamsError(None, f"reassemble.{key} {problem}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_values(settings: EncodeSettings) -> None:
    """Types and ranges, in pure Python: what can be told without asking FFmpeg."""
    for key in ("codec", "pix_fmt"):
        value = getattr(settings, key)
        if not isinstance(value, str) or not _WORD.match(value):
            raise _refuse(key, f"must be a name (letters, digits, _ . -), not {value!r}")
    if settings.preset is not None and not (
        isinstance(settings.preset, str) and _WORD.match(settings.preset)
    ):
        raise _refuse("preset", f"must be a preset name or null, not {settings.preset!r}")
    crf = settings.crf
    if crf is not None and not (isinstance(crf, int) and not isinstance(crf, bool) and 0 <= crf <= _MAX_CRF):
        raise _refuse("crf", f"must be a whole number 0-{_MAX_CRF} or null, not {crf!r}")
    if settings.audio not in AUDIO_MODES:
        raise _refuse("audio", f"must be one of {', '.join(AUDIO_MODES)}, not {settings.audio!r}")
    seconds = settings.segment_seconds
    if seconds is not None and not (
        _is_number(seconds) and math.isfinite(seconds) and 0 < seconds <= _MAX_SEGMENT_SECONDS
    ):
        raise _refuse(
            "segment_seconds",
            f"must be a number over 0 and up to {_MAX_SEGMENT_SECONDS:g}, or null; not {seconds!r}",
        )
    _check_options(settings.options)


def _check_options(options: object) -> None:
    if not isinstance(options, Mapping):
        raise _refuse("options", f"must be a mapping of encoder option names to values, not {options!r}")
    for key, value in options.items():
        if not isinstance(key, str) or not _WORD.match(key):
            raise _refuse("options", f"has a key that is not an option name: {key!r}")
        if not (isinstance(value, str) or _is_number(value)) or len(str(value)) > _MAX_OPTION_LENGTH:
            raise _refuse(
                f"options.{key}", f"must be a string or number of up to {_MAX_OPTION_LENGTH} characters"
            )


@functools.lru_cache(maxsize=64)
def _encoder_problem(
    codec: str, pix_fmt: str, preset: str | None, crf: int | None, options: tuple[tuple[str, str], ...]
) -> str | None:
    """What is wrong with these settings for PyAV's FFmpeg, or None. Cached: a studio checks the
    same settings on every command."""
    try:
        found = av.Codec(codec, "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        known = "libx264, libx265, libvpx-vp9, ffv1..."
        return f"reassemble.codec {codec!r} is not an encoder this FFmpeg has ({known})"
    if found.type != "video":
        return f"reassemble.codec {codec!r} encodes {found.type}, not video (libx264, libx265, ffv1...)"
    problem = _pixel_format_problem(found, pix_fmt)
    if problem:
        return problem
    if preset is not None and codec in _KNOWN_PRESETS and preset not in _KNOWN_PRESETS[codec]:
        choices = ", ".join(_KNOWN_PRESETS[codec])
        return f"reassemble.preset {preset!r} is not a {codec} preset; use one of {choices}"
    trial_format = "yuv420p" if pix_fmt == "auto" else pix_fmt
    if _trial_encode(codec, trial_format, _codec_options(codec, crf, preset, options)) is None:
        return None
    return _blame(codec, trial_format, preset, crf, options)


def _pixel_format_problem(codec: av.Codec, pix_fmt: str) -> str | None:
    """Whether the codec encodes the pixel format. ``auto`` is checked as yuv420p, its choice for
    even sizes; its yuv444p for odd ones is checked when the size is known (:func:`_check_request`)."""
    if pix_fmt != "auto":
        try:
            av.VideoFormat(pix_fmt)
        except ValueError:
            return f"reassemble.pix_fmt {pix_fmt!r} is not a pixel format FFmpeg knows (yuv420p, yuv444p...)"
    supported = _pixel_formats(codec)
    wanted = "yuv420p" if pix_fmt == "auto" else pix_fmt
    if supported is None or wanted in supported:  # None: the codec does not say; the trial decides
        return None
    what = "auto (yuv420p)" if pix_fmt == "auto" else repr(pix_fmt)
    return f"reassemble.pix_fmt {what} is not one {codec.name} encodes; it takes {', '.join(supported[:12])}"


def _pixel_formats(codec: av.Codec) -> list[str] | None:
    formats = codec.video_formats
    return None if formats is None else [item.name for item in formats]


def _blame(
    codec: str, pix_fmt: str, preset: str | None, crf: int | None, options: tuple[tuple[str, str], ...]
) -> str:
    """The trial failed: add the settings one at a time to find the one the encoder refuses."""
    steps = [
        ("codec", None, None, ()),
        ("preset", None, preset, ()),
        ("crf", crf, preset, ()),
        ("options", crf, preset, options),
    ]
    for key, step_crf, step_preset, step_options in steps:
        error = _trial_encode(codec, pix_fmt, _codec_options(codec, step_crf, step_preset, step_options))
        if error is None:
            continue
        if key == "codec":
            return f"reassemble.codec {codec!r} cannot encode here ({error})"
        value = {"preset": preset, "crf": crf, "options": dict(options)}[key]
        return f"reassemble.{key} {value!r} is refused by {codec} ({error})"
    return f"reassemble: {codec} refuses these settings together"


def _trial_encode(codec: str, pix_fmt: str, options: dict[str, str]) -> str | None:
    """Open the encoder with the options and encode one small frame; the error if it fails."""
    if codec == "libx265":  # x265 prints its banner itself; a trial should be silent
        given = options.get("x265-params")
        options = {**options, "x265-params": f"{given}:log-level=none" if given else "log-level=none"}
    try:
        context = av.CodecContext.create(codec, "w")
        context.width = context.height = _TRIAL_SIZE
        context.pix_fmt = pix_fmt
        context.time_base = Fraction(1, 25)
        context.framerate = Fraction(25)
        context.thread_count = 1
        context.options = options
        context.open()
        frame = av.VideoFrame(_TRIAL_SIZE, _TRIAL_SIZE, pix_fmt)
        frame.pts = 0
        context.encode(frame)
        context.encode(None)
    except (av.error.FFmpegError, ValueError, TypeError) as error:
        return _reason(error)
    return None


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


# -- checking timestamps ---------------------------------------------------------------------------

_MAX_TIME_BASE_TERM = 2**31  # FFmpeg keeps a time base as two C ints
_MAX_PTS = 2**62  # FFmpeg's timestamps are int64; headroom for its sums and rescaling


def check_timestamps(out: Path, pts: Sequence[int], end_pts: int, time_base: Fraction) -> None:
    """Refuse timestamps FFmpeg cannot hold (they come from a manifest, which came from Git)."""
    if not (
        isinstance(time_base, Fraction)
        and time_base > 0
        and time_base.numerator < _MAX_TIME_BASE_TERM
        and time_base.denominator < _MAX_TIME_BASE_TERM
    ):
        raise MediaError(out, f"time base {time_base} must be a fraction over 0 with terms under 2**31")
    if not pts:
        raise MediaError(out, "no frames to encode")
    for value in (*pts, end_pts):
        if not isinstance(value, int) or isinstance(value, bool) or abs(value) >= _MAX_PTS:
            raise MediaError(out, f"timestamp {value!r} is not a whole number under 2**62")
    if any(later <= earlier for earlier, later in itertools.pairwise(pts)):
        raise MediaError(out, "frame timestamps must increase")
    if end_pts <= pts[-1]:
        raise MediaError(out, f"end_pts {end_pts} must come after the last frame's pts {pts[-1]}")


ProgressFn = Callable[[int], None]

_MAX_SIDE = 16384  # the largest picture the usual encoders take (x264's limit)


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
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``pictures`` shown at ``pts`` until ``end_pts``; the file appears only when complete.
    ``metadata``: the container's tags (a render's credit, see :mod:`rotoscope.credit`)."""
    _check_request(out, pts, end_pts, time_base, size, settings)
    durations = frame_durations(pts, end_pts)
    rate = nominal_rate(pts, time_base)
    with _reported(out), _Output(out, settings, size, time_base, rate, audio_source, metadata) as output:
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
    metadata: Mapping[str, str] | None = None,
    workers: int = 1,
) -> EncodedSegments:
    """Like :func:`encode_video`, but from cached segments: only segments with a changed frame
    (or new settings) are encoded, ``workers`` at a time; the rest are copied. ``picture_at(i)``
    loads frame ``i`` (from any thread)."""
    if not settings.segmented:
        raise ValueError(f"{settings.codec} is not encoded in segments")
    _check_request(out, pts, end_pts, time_base, size, settings)
    durations = frame_durations(pts, end_pts)
    rate = nominal_rate(pts, time_base)
    identity = {**settings.identity(), "size": list(size), "time_base": str(time_base), "rate": str(rate)}
    shown = [durations[p] for p in pts]
    segments = plan_segments(frame_md5s, pts, shown, time_base, float(settings.segment_seconds), identity)
    done = 0
    counting = threading.Lock()

    def tick() -> None:
        nonlocal done
        with counting:
            done += 1
            if on_frame:
                on_frame(done)

    with _reported(out), _Output(out, settings, size, time_base, rate, audio_source, metadata) as output:
        todo = []
        for segment in segments:
            if not cache.holds(segment.key):
                todo.append(segment)
                continue
            for _ in range(segment.first, segment.last + 1):
                tick()

        def encode(segment: Segment) -> None:
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

        # Threads, not processes: Pillow's decoding and FFmpeg's scaling and encoding release
        # the GIL, and picture_at needs nothing pickled. Each segment has an encoder of its own.
        with ThreadPoolExecutor(max(1, min(workers, len(todo) or 1))) as pool:
            for _ in pool.map(encode, todo):
                pass
        encoded, frames_encoded = len(todo), sum(segment.last - segment.first + 1 for segment in todo)
        for segment in segments:
            found = cache.read(segment.key)
            if found is None:
                raise RotoscopeError(cache.path(segment.key), "segment vanished while the video was muxed")
            output.copy(*found, time_base)
    return EncodedSegments(len(segments), encoded, frames_encoded)


def _check_request(
    out: Path,
    pts: Sequence[int],
    end_pts: int,
    time_base: Fraction,
    size: tuple[int, int],
    settings: EncodeSettings,
) -> None:
    """Everything an encode is given, checked before a file is opened: one line, not a crash
    deep inside FFmpeg, when a manifest or a caller passes something it cannot encode."""
    check_timestamps(out, pts, end_pts, time_base)
    width, height = size
    if not all(isinstance(side, int) and 1 <= side <= _MAX_SIDE for side in size):
        raise MediaError(out, f"picture size {width}x{height} must be 1 to {_MAX_SIDE} pixels a side")
    settings.validate(out)
    pix_fmt = settings.pixel_format(width, height)
    supported = _pixel_formats(av.Codec(settings.codec, "w"))
    if supported is not None and pix_fmt not in supported:
        problem = f"{settings.codec} cannot encode {pix_fmt} (the {width}x{height} picture's pix_fmt)"
        raise MediaError(out, f"{problem}; set reassemble.pix_fmt to one it takes")


@contextmanager
def _reported(out: Path) -> Iterator[None]:
    """A failure while the video is written as one line naming it: a refused write (disk full,
    file too large, read-only, no permission) as a :class:`StorageError`, an FFmpeg error as a
    :class:`MediaError`. Our own errors, and other errors (a damaged frame file), pass as they are."""
    try:
        yield
    except RotoscopeError:
        raise
    except OSError as error:
        if _is_storage(error):
            raise storage_error(_naming(error, out)) from None
        if not isinstance(error, av.error.FFmpegError):
            raise
        raise MediaError(out, f"cannot write the video ({_reason(error)})") from None
    except av.error.FFmpegError as error:
        raise MediaError(out, f"cannot encode the video ({_reason(error)})") from error


def _is_storage(error: BaseException) -> bool:
    """A write the disk refused (full, too large, read-only, not permitted), by its errno."""
    return isinstance(error, OSError) and isinstance(storage_error(error), StorageError)


def _naming(error: OSError, out: Path) -> OSError:
    """The error with the file a user knows: the output, not its hidden temporary twin (a folder
    that could not be made, or a frame that could not be read, keeps its own name)."""
    named = error.filename
    if named is None or ".partial" in Path(str(named)).name:
        named = out
    return OSError(error.errno, error.strerror or os.strerror(error.errno or 0), str(named))


def frame_durations(pts: Sequence[int], end_pts: int) -> dict[int, int]:
    """How long each frame shows: until the next one, the last until ``end_pts``."""
    return {p: (pts[k + 1] if k + 1 < len(pts) else end_pts) - p for k, p in enumerate(pts)}


def nominal_rate(pts: Sequence[int], time_base: Fraction) -> Fraction:
    """The average frame rate the timestamps describe (the encoder's rate control and level)."""
    if len(pts) < 2 or pts[-1] <= pts[0]:
        return Fraction(24)
    rate = (Fraction(len(pts) - 1) / ((pts[-1] - pts[0]) * time_base)).limit_denominator(1001)
    return rate or Fraction(1, 1001)  # frames hours apart: still a rate an encoder takes


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
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.out, self.settings, self.size = out, settings, size
        self.time_base, self.rate, self.audio_source = time_base, rate, audio_source
        self.metadata = dict(metadata or {})
        self.container: Any = None
        self.audio: _AudioFeed | None = None

    def __enter__(self) -> _Output:
        self._temp_context = temp_beside(self.out)
        self.temp = self._temp_context.__enter__()
        try:
            try:
                self.container = av.open(
                    str(self.temp), mode="w", format=_format_for(self.out), options=self._muxer_options()
                )
                self.container.metadata.update(self.metadata)
            except (av.error.FFmpegError, ValueError) as error:
                if _is_storage(error):
                    raise  # reported by _reported as a refused write
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
            if kind is None:
                self._finish()
            else:
                self._abandon()
        finally:
            self._temp_context.__exit__(kind, error, trace)

    def _muxer_options(self) -> dict[str, str]:
        """mp4 and mov keep only the tags they have an atom for (title, artist, comment,
        copyright...) unless asked to write every tag as a QuickTime metadata key."""
        if self.metadata and self.out.suffix.lower() in (".mp4", ".m4v", ".mov"):
            return {"movflags": "use_metadata_tags"}
        return {}

    def _finish(self) -> None:
        """The rest of the audio, the trailer, then the rename: a failure in any leaves no file."""
        try:
            if self.audio is not None:
                self.audio.finish()
            self.container.close()  # writes the trailer: a full disk shows here too
        except BaseException:
            self._abandon()
            raise
        self.temp.replace(self.out)

    def _abandon(self) -> None:
        """Release everything after a failure, whose error is the one to report."""
        if self.audio is not None:
            self.audio.close()
        if self.container is not None:
            with suppress(av.error.FFmpegError, OSError):
                self.container.close()  # a half-written file, deleted with its temporary name

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


# -- the source's audio ----------------------------------------------------------------------------

# Channel counts each transcoding target encodes as the usual layout; others are mixed to stereo.
_ENCODER_LAYOUTS = {
    "aac": {1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0(side)", 6: "5.1(side)", 8: "7.1"},
    "libopus": {1: "mono", 2: "stereo"},
}


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
        try:
            if not src.streams.audio:
                src.close()
                return cls(container, None, None)
            in_audio = src.streams.audio[0]
            if mode == "copy" and _muxer_holds(container.format.name, source):
                out_audio = container.add_stream_from_template(in_audio)
                packets = _copied(src, in_audio, out_audio)
            else:
                codec = _AUDIO_FALLBACK.get(out.suffix.lower().lstrip("."), "aac")
                packets = _transcoded(src, in_audio, _add_audio_stream(container, in_audio, codec))
        except BaseException:
            src.close()
            raise
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
        self.close()

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None


def _muxer_holds(format_name: str, source: Path) -> bool:
    """Whether this kind of file takes the source's audio as it is, asked of the muxer itself: a
    file with one of its packets is written into memory, header to trailer. FFmpeg's codec lists
    are not enough: mp4's names pcm_s16le, but its muxer refuses, at the trailer, stereo PCM from a
    matroska file ("2 channels" in no named order); mov refuses FLAC."""
    with open_input(source) as src:
        in_audio = src.streams.audio[0]
        first = next((packet for packet in src.demux(in_audio) if packet.dts is not None), None)
        trial = av.open(io.BytesIO(), mode="w", format=format_name)
        try:
            stream = trial.add_stream_from_template(in_audio)
            if first is not None:
                first.stream = stream
                trial.mux(first)
            trial.close()
        except (av.error.FFmpegError, ValueError):
            with suppress(av.error.FFmpegError, ValueError):
                trial.close()
            return False
    return True


def _add_audio_stream(container: Any, in_audio: Any, codec: str) -> Any:
    """An output stream encoding ``codec`` at a rate and channel layout that encoder takes."""
    rates = av.Codec(codec, "w").audio_rates
    source = in_audio.codec_context
    rate = source.sample_rate if not rates or source.sample_rate in rates else 48000
    layouts = _ENCODER_LAYOUTS.get(codec, {})
    # a matroska PCM stream may say "2 channels" with no order; name the usual order for it
    layout = layouts.get(source.layout.nb_channels, "stereo")
    return container.add_stream(codec, rate=rate, layout=layout)


def _copied(src: Any, in_audio: Any, out_audio: Any) -> Iterator[av.Packet]:
    for packet in src.demux(in_audio):
        if packet.dts is None:
            continue  # demuxer's end-of-stream marker
        packet.stream = out_audio
        yield packet


def _transcoded(src: Any, in_audio: Any, out_audio: Any) -> Iterator[av.Packet]:
    context = out_audio.codec_context
    resampler = av.AudioResampler(
        format=context.codec.audio_formats[0].name, layout=context.layout.name, rate=context.sample_rate
    )
    for frame in src.decode(in_audio):
        for converted in resampler.resample(frame):
            yield from out_audio.encode(converted)
    for converted in resampler.resample(None):
        yield from out_audio.encode(converted)
    yield from out_audio.encode(None)
