"""The media engine refuses what it cannot do in one line: encoder settings, frame rates, manifest
timestamps, full or read-only disks; and it transcodes audio a container cannot hold."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import ffmpeg
from PIL import Image

from rotoscope.errors import MediaError, ParamsError, StorageError
from rotoscope.media import EncodeSettings, encode_segmented, encode_video, probe
from rotoscope.media.decode import FramePicker, check_fps, decode_frames
from rotoscope.media.segments import SegmentCache
from rotoscope.media.synth import LOSSLESS, constant_rate_clip, panning_pictures

SIZE = (64, 48)
FRAMES = 25
TIME_BASE = Fraction(1, 12800)  # 25 fps at 512 ticks a frame
PTS = [k * 512 for k in range(FRAMES)]
END_PTS = FRAMES * 512
FAST = EncodeSettings(preset="veryfast", segment_seconds=None)
WHERE = Path("studio/params.yaml")
REPO = Path(__file__).resolve().parents[1]


def pictures(count: int = FRAMES) -> list[Image.Image]:
    return list(panning_pictures(SIZE, count))


def leftovers(folder: Path) -> list[str]:
    """Temporary files an encode left behind (there must be none, whatever happened)."""
    return sorted(path.name for path in folder.iterdir() if ".partial" in path.name)


# -- 1. reassemble settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"crf": "abc"}, "crf"),
        ({"crf": True}, "crf"),
        ({"crf": 99}, "crf"),
        ({"crf": 18.5}, "crf"),
        ({"preset": "warp9"}, "preset"),
        ({"codec": "libx265", "preset": "warp9"}, "preset"),
        ({"preset": 3}, "preset"),
        ({"pix_fmt": "rgb24"}, "pix_fmt"),
        ({"pix_fmt": "bogus"}, "pix_fmt"),
        ({"codec": "png"}, "pix_fmt"),  # auto wants yuv420p, which png cannot encode
        ({"codec": "aac"}, "codec"),
        ({"codec": "nosuch"}, "codec"),
        ({"codec": "lib x264; rm"}, "codec"),
        ({"codec": None}, "codec"),
        ({"segment_seconds": "abc"}, "segment_seconds"),
        ({"segment_seconds": -1}, "segment_seconds"),
        ({"segment_seconds": 0}, "segment_seconds"),
        ({"segment_seconds": math.inf}, "segment_seconds"),
        ({"segment_seconds": math.nan}, "segment_seconds"),
        ({"audio": "wav"}, "audio"),
        ({"options": "fast"}, "options"),
        ({"options": {"x264-params": ["a"]}}, "options.x264-params"),
        ({"options": {"crf": "abc"}}, "options"),  # only the trial encode can tell
    ],
)
def test_bad_reassemble_settings_are_refused_in_one_line(section: dict, key: str) -> None:
    with pytest.raises(ParamsError) as refused:
        EncodeSettings.from_section(section, WHERE)
    error = refused.value
    assert error.path == str(WHERE)
    assert error.problem.startswith(f"reassemble.{key} "), error.problem
    assert "\n" not in str(error)


@pytest.mark.parametrize("section", [{"crf": "abc"}, {"preset": "warp9"}, {"codec": "aac"}, {"audio": "wav"}])
def test_construct_then_validate_names_the_file_or_refuses_without_one(section: dict) -> None:
    """How ``Studio.encode_settings`` calls it: a bad type fails at construction (no path yet,
    the caller adds it); what only FFmpeg can tell fails in ``validate``, naming ``where``."""
    with pytest.raises(ParamsError) as refused:
        EncodeSettings(**section).validate(WHERE)
    assert refused.value.path in (None, str(WHERE))
    assert "reassemble." in refused.value.problem


def test_unknown_key_is_refused() -> None:
    with pytest.raises(ParamsError, match="unknown key 'crff'"):
        EncodeSettings.from_section({"crff": 18}, WHERE)


@pytest.mark.parametrize(
    "section",
    [
        {},
        {"codec": "libx265", "preset": "ultrafast"},
        {"codec": "ffv1", "crf": None},  # ffv1 has no preset or crf: FFmpeg ignores the preset
        {"codec": "libvpx-vp9", "crf": 30, "preset": None},
        {"pix_fmt": "yuv444p", "segment_seconds": None, "options": None},
        {"crf": 0, "segment_seconds": 2.5, "options": {"tune": "film", "g": 50}},
    ],
)
def test_good_settings_pass(section: dict) -> None:
    settings = EncodeSettings.from_section(section, WHERE)
    assert settings.validate(WHERE) is settings


def test_validation_is_cached_and_fast() -> None:
    settings = EncodeSettings(codec="libx264", crf=21, preset="faster", options={"g": "17"})
    started = time.perf_counter()
    settings.validate(WHERE)  # a trial encode: FFmpeg opens x264 once
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(1000):
        EncodeSettings(codec="libx264", crf=21, preset="faster", options={"g": "17"}).validate(WHERE)
    again = time.perf_counter() - started
    assert first < 0.5
    assert again < 0.5  # constructing and validating a thousand: microseconds each


def test_encoding_with_unvalidated_settings_still_refuses_in_one_line(tmp_path: Path) -> None:
    """A library caller that skips validate() gets the same refusal from the encoder, naming the
    output, and no file."""
    out = tmp_path / "out.mp4"
    with pytest.raises(ParamsError, match=r"reassemble\.preset 'warp9'") as refused:
        encode_video(
            out, pictures(), PTS, time_base=TIME_BASE, end_pts=END_PTS, size=SIZE,
            settings=EncodeSettings(preset="warp9"),
        )  # fmt: skip
    assert refused.value.path == str(out)
    assert not out.exists() and leftovers(tmp_path) == []


def test_auto_pixel_format_the_codec_cannot_encode_at_an_odd_size(tmp_path: Path) -> None:
    """auto picks yuv444p for odd sizes; an encoder without it is refused before encoding."""
    settings = EncodeSettings(codec="mpeg4", crf=None, preset=None, segment_seconds=None)
    settings.validate(WHERE)  # yuv420p, the even-size choice, is fine
    odd = (63, 47)
    out = tmp_path / "odd.mp4"
    with pytest.raises(MediaError, match="cannot encode yuv444p"):
        encode_video(
            out, list(panning_pictures(odd, 3)), PTS[:3], time_base=TIME_BASE, end_pts=3 * 512,
            size=odd, settings=settings,
        )  # fmt: skip
    assert not out.exists()


# -- 2. audio the output container cannot hold as it is --------------------------------------------


def audio_source(path: Path, codec: str, channels: int = 2) -> Path:
    """A 1-second clip (ffmpeg's test picture and a sine tone) with audio in ``codec``."""
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=1:sample_rate=48000",
        "-ac", str(channels), "-c:v", "libx264", "-c:a", codec, "-shortest", str(path),
    )  # fmt: skip
    return path


def audio_facts(video: Path) -> tuple[str, float, int]:
    """The output's audio codec, its duration in seconds, and how many video frames it shows."""
    with av.open(str(video)) as container:
        audio = container.streams.audio[0]
        seconds = float(audio.duration * audio.time_base)
        codec = audio.codec_context.name
    with av.open(str(video)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    return codec, seconds, frames


def encode_both_ways(out: Path, source: Path, segmented: bool, cache: Path) -> None:
    settings = EncodeSettings(preset="veryfast", segment_seconds=0.4 if segmented else None)
    common = {"time_base": TIME_BASE, "end_pts": END_PTS, "size": SIZE, "settings": settings}
    if segmented:
        shots = pictures()
        md5s = [f"frame{k}" for k in range(FRAMES)]
        encode_segmented(
            out, md5s, shots.__getitem__, PTS, cache=SegmentCache(cache), audio_source=source, **common
        )
    else:
        encode_video(out, pictures(), PTS, audio_source=source, **common)


@pytest.mark.parametrize("segmented", [False, True], ids=["one-pass", "segmented"])
@pytest.mark.parametrize(
    ("source_name", "audio_codec", "out_name"),
    [
        ("pcm.mkv", "pcm_s16le", "out.mp4"),  # mp4's muxer refuses stereo PCM at its trailer
        ("flac.mkv", "flac", "out.mov"),  # mov has no FLAC
    ],
)
def test_audio_the_container_cannot_hold_is_transcoded_to_aac(
    tmp_path: Path, source_name: str, audio_codec: str, out_name: str, segmented: bool
) -> None:
    source = audio_source(tmp_path / source_name, audio_codec)
    out = tmp_path / out_name
    encode_both_ways(out, source, segmented, tmp_path / "segments")
    codec, seconds, frames = audio_facts(out)
    assert codec == "aac"
    assert frames == FRAMES
    assert abs(seconds - 1.0) <= 1 / 25  # the source's second of sound, within a frame
    assert leftovers(tmp_path) == []


def test_audio_the_container_holds_is_copied_packet_for_packet(tmp_path: Path) -> None:
    source = audio_source(tmp_path / "flac.mkv", "flac")
    out = tmp_path / "out.mkv"
    encode_video(out, pictures(), PTS, time_base=TIME_BASE, end_pts=END_PTS, size=SIZE, settings=FAST,
                 audio_source=source)  # fmt: skip
    with av.open(str(source)) as container:
        source_packets = [bytes(p) for p in container.demux(audio=0) if p.dts is not None]
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "flac"
        copied = [bytes(p) for p in container.demux(audio=0) if p.dts is not None]
    assert copied == source_packets


def test_surround_pcm_is_transcoded_keeping_its_channels(tmp_path: Path) -> None:
    source = audio_source(tmp_path / "six.mkv", "pcm_s16le", channels=6)
    out = tmp_path / "out.mp4"
    encode_video(out, pictures(), PTS, time_base=TIME_BASE, end_pts=END_PTS, size=SIZE, settings=FAST,
                 audio_source=source)  # fmt: skip
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert (audio.codec_context.name, audio.codec_context.channels) == ("aac", 6)


# -- 3. split.fps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [1e9, math.inf, -math.inf, math.nan, 0, -1, 1e-300, 1001, "abc", "12", True]
)
def test_absurd_fps_is_refused(value: object) -> None:
    with pytest.raises(ParamsError) as refused:
        check_fps(value)
    assert refused.value.path is None  # the caller names params.yaml
    assert refused.value.problem.startswith("split.fps must be")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("source", None), (None, None), (1, 1.0), (29.97, 29.97), (0.001, 0.001), (1000, 1000.0)],
)
def test_sane_fps_is_kept(value: object, expected: float | None) -> None:
    assert check_fps(value) == expected


def stepwise(fps: float, time_base: Fraction, timestamps: list[int]) -> list[int]:
    """The picking rule done tick by tick: the first frame at or after each tick."""
    step = 1 / Fraction(fps).limit_denominator(1000)
    tick, kept = timestamps[0] * time_base, []
    for pts in timestamps:
        if pts * time_base >= tick:
            kept.append(pts)
            while tick <= pts * time_base:
                tick += step
    return kept


@pytest.mark.parametrize("fps", [0.5, 1, 7, 12.5, 23.976, 25, 29.97, 60])
def test_picking_by_arithmetic_matches_picking_tick_by_tick(fps: float) -> None:
    rng = np.random.default_rng(int(fps * 1000))
    timestamps = [int(t) for t in np.cumsum(rng.integers(1, 90, 400)) + 17]  # a variable rate
    time_base = Fraction(1, 1000)
    picker = FramePicker(fps, time_base, timestamps[0])
    assert [pts for pts in timestamps if picker.wants(pts)] == stepwise(fps, time_base, timestamps)


def test_picking_costs_the_same_whatever_the_fps() -> None:
    timestamps = range(0, 100_000 * 512, 512)  # 100,000 frames at 25 fps
    started = time.perf_counter()
    fast = FramePicker(1e9, TIME_BASE, 0)  # far above the source: every frame is kept
    assert all(fast.wants(pts) for pts in timestamps)
    slow = FramePicker(1e-300, TIME_BASE, 0)  # one tick in 1e300 seconds: the first frame only
    assert [pts for pts in timestamps if slow.wants(pts)] == [0]
    assert time.perf_counter() - started < 5.0


def test_fps_picking_on_a_real_clip(tmp_path: Path) -> None:
    clip = constant_rate_clip(tmp_path / "c.mp4", size=SIZE, fps=25, seconds=1.0, audio=False)
    info = probe(clip)
    assert len(list(decode_frames(info, fps=check_fps(1000)))) == 25
    assert [f.pts for f in decode_frames(info, fps=check_fps(5))] == [k * 512 * 5 for k in range(5)]
    assert len(list(decode_frames(info, fps=1e-300))) == 1


# -- 4. manifest timestamps ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("time_base", "pts", "end_pts", "message"),
    [
        (Fraction(0, 1), PTS, END_PTS, "time base"),  # "0/1" in a manifest
        (Fraction(-1, 25), PTS, END_PTS, "time base"),
        (Fraction(1, 2**40), PTS, END_PTS, "time base"),
        (TIME_BASE, PTS, 10**30, "under 2\\*\\*62"),
        (TIME_BASE, [0, 512, 2**63], END_PTS, "under 2\\*\\*62"),
        (TIME_BASE, [0, 1024, 512], END_PTS, "increase"),
        (TIME_BASE, PTS, PTS[-1], "end_pts"),
    ],
)
@pytest.mark.parametrize("segmented", [False, True], ids=["one-pass", "segmented"])
def test_timestamps_ffmpeg_cannot_hold_are_refused(
    tmp_path: Path, time_base: Fraction, pts: list[int], end_pts: int, message: str, segmented: bool
) -> None:
    out = tmp_path / "out.mp4"
    settings = EncodeSettings(preset="veryfast", segment_seconds=1.0 if segmented else None)
    common = {"time_base": time_base, "end_pts": end_pts, "size": SIZE, "settings": settings}
    shots = pictures(len(pts))
    started = time.perf_counter()
    with pytest.raises(MediaError, match=message) as refused:
        if segmented:
            md5s = [f"f{k}" for k in range(len(pts))]
            encode_segmented(
                out, md5s, shots.__getitem__, pts, cache=SegmentCache(tmp_path / "seg"), **common
            )
        else:
            encode_video(out, shots, pts, **common)
    assert time.perf_counter() - started < 2.0
    assert refused.value.path == str(out)
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_frame_longer_than_the_muxer_holds_is_one_line(tmp_path: Path) -> None:
    """Within FFmpeg's range but past mp4's 32-bit sample durations: the muxer's refusal is
    reported, naming the output, and nothing is left behind."""
    out = tmp_path / "out.mp4"
    with pytest.raises(MediaError, match="cannot encode the video") as refused:
        encode_video(out, pictures(3), PTS[:3], time_base=TIME_BASE, end_pts=2**40, size=SIZE, settings=FAST)
    assert refused.value.path == str(out)
    assert not out.exists() and leftovers(tmp_path) == []


# -- 5. the disk refuses a write -------------------------------------------------------------------

_ENCODE_UNDER_LIMIT = textwrap.dedent(
    """
    import os, resource, signal, sys
    from fractions import Fraction
    from pathlib import Path
    import numpy as np
    from PIL import Image
    from rotoscope.errors import RotoscopeError
    from rotoscope.media import EncodeSettings, SegmentCache, encode_segmented, encode_video

    out, limit, mode, user = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    rng = np.random.default_rng(0)  # noise: nothing compresses it, so files grow fast
    shots = [Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)) for _ in range(25)]
    pts = [k * 512 for k in range(25)]
    common = dict(time_base=Fraction(1, 12800), end_pts=25 * 512, size=(64, 48))
    if user == "nobody":  # everything is imported: drop root, and with it the right to ignore modes
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        if mode == "segmented":
            settings = EncodeSettings(preset="veryfast", crf=0, segment_seconds=0.4)
            cache = SegmentCache(out.parent / "segments")
            encode_segmented(out, [str(k) for k in range(25)], shots.__getitem__, pts, settings=settings,
                             cache=cache, **common)
        else:
            settings = EncodeSettings(codec="ffv1", crf=None, preset=None, segment_seconds=None)
            encode_video(out, shots, pts, settings=settings, **common)
    except RotoscopeError as error:
        print(type(error).__name__, error.path, error.problem, sep="\\t")
        sys.exit(3)
    print("written")
    """
)


def encode_in_child(out: Path, limit: int, mode: str, user: str = "me") -> subprocess.CompletedProcess[str]:
    """The encode in a fresh interpreter: under a file size limit (0: none), or as nobody."""
    environment = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-c", _ENCODE_UNDER_LIMIT, str(out), str(limit), mode, user],
        capture_output=True, text=True, check=False, timeout=120, env=environment, cwd=out.parent.parent,
    )  # fmt: skip


@pytest.mark.parametrize("mode", ["one-pass", "segmented"])
def test_a_file_size_limit_is_a_storage_error(tmp_path: Path, mode: str) -> None:
    out = tmp_path / "out.mkv"
    done = encode_in_child(out, 20_000, mode)
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stderr == ""  # not a traceback: one line, from the RotoscopeError
    kind, path, problem = done.stdout.strip().split("\t")
    assert kind == "StorageError"
    assert "file too large" in problem
    if mode == "one-pass":
        assert path == str(out)  # the output, not its hidden temporary twin
    else:
        assert path.startswith(str(tmp_path / "segments")) and path.endswith(".seg")
    assert not out.exists() and leftovers(tmp_path) == []
    # without the limit the same encode succeeds: the refusal was the disk's
    assert encode_in_child(out, 0, mode).stdout.strip() == "written"


def test_a_read_only_folder_is_a_storage_error(tmp_path: Path) -> None:
    """chmod 0o555 stops everyone but root; as root the encode runs in a child that makes itself
    nobody once it has imported everything (nobody cannot reach this interpreter to start it)."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        try:
            with pytest.raises(StorageError, match="permission denied") as refused:
                encode_video(folder / "out.mp4", pictures(3), PTS[:3], time_base=TIME_BASE, end_pts=3 * 512,
                             size=SIZE, settings=FAST)  # fmt: skip
            assert refused.value.path == str(folder / "out.mp4")
            assert list(folder.iterdir()) == []
        finally:
            folder.chmod(0o755)
        return
    outer = Path(tempfile.mkdtemp(prefix="rotoscope-readonly-"))  # pytest's own folder is 0700
    try:
        outer.chmod(0o755)
        folder = outer / "locked"
        folder.mkdir(mode=0o555)
        folder.chmod(0o555)
        done = encode_in_child(folder / "out.mkv", 0, "one-pass", user="nobody")
        if "PermissionError" in done.stderr and "setuid" in done.stderr:
            pytest.skip("cannot switch to an unprivileged user here")
        assert done.returncode == 3, done.stdout + done.stderr
        assert done.stderr == ""
        kind, path, problem = done.stdout.strip().split("\t")
        assert (kind, path) == ("StorageError", str(folder / "out.mkv"))
        assert problem.startswith("permission denied")
        assert list(folder.iterdir()) == []
    finally:
        shutil.rmtree(outer)


def test_lossless_settings_still_validate() -> None:
    """The settings the tests' own clips are made with stay valid."""
    assert LOSSLESS.validate(WHERE) is LOSSLESS
