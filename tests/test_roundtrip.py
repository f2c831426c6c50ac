"""Video -> frames + manifest -> video: timing, duration, audio and pictures survive the trip."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from rotoscope.media import EncodeSettings, probe
from rotoscope.media.synth import constant_rate_clip, panning_pictures, write_clip
from rotoscope.pipeline import reassemble, split
from rotoscope.studio import Studio


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def round_trip(studio: Studio, video: Path, name: str) -> Path:
    studio.add_video(video, name)
    split(studio, name)
    return reassemble(studio.manifest_path(name), studio.render_path(name)).path


def assert_faithful(studio: Studio, name: str, render: Path) -> None:
    manifest = studio.load_manifest(name)
    source = probe(studio.root / manifest.video["path"])
    with av.open(str(render)) as container:
        stream = container.streams.video[0]
        decoded = [
            (frame.pts * frame.time_base, frame.to_ndarray(format="rgb24"))
            for frame in container.decode(stream)
        ]
        video_end = container.duration / av.time_base if container.duration else 0.0
        audio = container.streams.audio[0] if container.streams.audio else None
        audio_seconds = float(audio.duration * audio.time_base) if audio else None

    assert len(decoded) == len(manifest.frames), "frame count changed"
    expected_times = [Fraction(f.pts) * manifest.time_base_fraction for f in manifest.frames]
    assert [time for time, _ in decoded] == expected_times, "a timestamp moved"

    gaps = [b.pts - a.pts for a, b in zip(manifest.frames, manifest.frames[1:], strict=False)]
    one_frame = manifest.seconds(max(gaps)) if gaps else 0.1
    first = float(expected_times[0])
    assert abs((video_end - first) - manifest.duration) <= one_frame, "duration off by over a frame"

    if source.audio is not None:
        assert audio is not None, "the source's audio was dropped"
        assert abs(audio_seconds - source.audio.duration) <= 0.05
    else:
        assert audio is None

    scores = []
    for (_, picture), frame in zip(decoded, manifest.frames, strict=True):
        with Image.open(manifest.frame_path(studio.root, frame)) as split_frame:
            scores.append(psnr(picture, np.asarray(split_frame.convert("RGB"))))
    assert np.mean(scores) >= 35.0, f"mean PSNR {np.mean(scores):.1f} dB"


def test_constant_rate_clip_with_audio(studio: Studio, tmp_path: Path) -> None:
    clip = constant_rate_clip(tmp_path / "clip.mp4", size=(160, 90), fps=25, seconds=1.6)
    assert_faithful(studio, "clip", round_trip(studio, clip, "clip"))


def test_variable_frame_rate(studio: Studio, tmp_path: Path) -> None:
    gaps = [40, 40, 80, 33, 50, 120, 17, 40, 66, 40, 200, 40, 40]
    pts = [int(x) for x in np.cumsum([0, *gaps])]
    clip = tmp_path / "vfr.mp4"
    write_clip(
        clip,
        panning_pictures((160, 90), len(pts), step=5),
        pts,
        time_base=Fraction(1, 1000),
        end_pts=pts[-1] + 40,
        size=(160, 90),
    )
    render = round_trip(studio, clip, "vfr")
    manifest = studio.load_manifest("vfr")
    # the mp4 muxer may pick its own timescale: compare times, exactly, as fractions
    times = [Fraction(f.pts) * manifest.time_base_fraction for f in manifest.frames]
    assert times == [Fraction(p, 1000) for p in pts]
    assert_faithful(studio, "vfr", render)


@pytest.mark.parametrize("rotation", [90, 270])
def test_rotated_clip_is_split_upright(studio: Studio, tmp_path: Path, rotation: int) -> None:
    clip = constant_rate_clip(tmp_path / "rot.mp4", size=(160, 96), seconds=0.6, rotation=rotation)
    render = round_trip(studio, clip, "rot")
    manifest = studio.load_manifest("rot")
    assert (manifest.width, manifest.height) == (96, 160)
    assert manifest.video["rotation"] == rotation
    assert_faithful(studio, "rot", render)


def test_no_audio(studio: Studio, tmp_path: Path) -> None:
    clip = constant_rate_clip(tmp_path / "mute.mp4", size=(160, 90), seconds=0.8, audio=False)
    assert_faithful(studio, "mute", round_trip(studio, clip, "mute"))


def test_odd_width_and_height(studio: Studio, tmp_path: Path) -> None:
    settings = EncodeSettings(crf=16, preset="veryfast", pix_fmt="yuv444p")
    clip = constant_rate_clip(tmp_path / "odd.mp4", size=(161, 91), seconds=0.8, settings=settings)
    render = round_trip(studio, clip, "odd")
    assert (studio.load_manifest("odd").width, studio.load_manifest("odd").height) == (161, 91)
    assert_faithful(studio, "odd", render)


def test_sixty_fps(studio: Studio, tmp_path: Path) -> None:
    clip = constant_rate_clip(tmp_path / "fast.mp4", size=(160, 90), fps=60, seconds=1.0)
    render = round_trip(studio, clip, "fast")
    assert len(studio.load_manifest("fast").frames) == 60
    assert_faithful(studio, "fast", render)


def test_one_frame_a_second_keeps_timing_and_duration(studio: Studio, tmp_path: Path) -> None:
    clip = constant_rate_clip(tmp_path / "long.mp4", size=(160, 90), fps=25, seconds=3.0)
    studio.add_video(clip, "long")
    params = studio.params()
    params["split"]["fps"] = 1
    studio.save_params(params)
    split(studio, "long")
    manifest = studio.load_manifest("long")
    assert [manifest.seconds(f.pts) for f in manifest.frames] == [0.0, 1.0, 2.0]
    render = reassemble(studio.manifest_path("long"), studio.render_path("long")).path
    assert_faithful(studio, "long", render)


def test_max_side_resizes_keeping_aspect(studio: Studio, tmp_path: Path) -> None:
    clip = constant_rate_clip(tmp_path / "big.mp4", size=(320, 180), seconds=0.4)
    studio.add_video(clip, "big")
    params = studio.params()
    params["split"].update({"max_side": 100, "format": "png"})
    studio.save_params(params)
    split(studio, "big")
    manifest = studio.load_manifest("big")
    assert (manifest.width, manifest.height) == (100, 56)
    with Image.open(manifest.frame_path(studio.root, manifest.frames[0])) as first:
        assert first.format == "PNG" and first.size == (100, 56)


@pytest.mark.slow
@pytest.mark.parametrize(
    "clip",
    [
        "aerial_parking_lot_intel_16s.mp4",
        "butterfly_thistle_pixabay209.mp4",
        "bee_flower_pixabay211.mp4",
    ],
)
def test_real_clips(studio: Studio, media: Path, clip: str) -> None:
    name = clip.split("_")[0]
    render = round_trip(studio, media / "videos" / clip, name)
    manifest = studio.load_manifest(name)
    assert len(manifest.frames) == probe(media / "videos" / clip).declared_frames
    assert_faithful(studio, name, render)


@pytest.mark.parametrize(
    ("out_name", "settings", "audio_codec"),
    [
        ("copy.mkv", EncodeSettings(preset="veryfast"), "aac"),  # mkv holds aac: copied
        ("forced.mp4", EncodeSettings(preset="veryfast", audio="aac"), "aac"),  # re-encoded on request
        # webm cannot hold aac: the audio is transcoded to opus rather than dropped
        ("web.webm", EncodeSettings(codec="libvpx-vp9", crf=30, preset=None), "opus"),
    ],
)
def test_audio_is_copied_or_transcoded_as_the_container_needs(
    studio: Studio, tmp_path: Path, out_name: str, settings: EncodeSettings, audio_codec: str
) -> None:
    clip = constant_rate_clip(tmp_path / "clip.mp4", size=(160, 90), seconds=1.0)
    studio.add_video(clip, "clip")
    split(studio, "clip")
    out = reassemble(studio.manifest_path("clip"), tmp_path / out_name, settings).path
    source_audio = av.open(str(clip)).streams.audio[0]
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == audio_codec
        packets = [p for p in container.demux(audio) if p.dts is not None]
        seconds = float((packets[-1].pts + packets[-1].duration) * audio.time_base)
        if out_name == "copy.mkv":  # a stream copy keeps every packet
            assert len(packets) == source_audio.frames
        assert abs(seconds - 1.0) <= 0.05
    with av.open(str(out)) as container:
        assert len(list(container.decode(video=0))) == 25


def test_written_files_get_the_usual_permissions(studio: Studio, tmp_path: Path) -> None:
    """Atomic writes go through mkstemp (mode 0600); finished files must follow the umask."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    clip = constant_rate_clip(tmp_path / "clip.mp4", size=(64, 36), seconds=0.2)
    render = round_trip(studio, clip, "clip")
    first_frame = next(studio.frames_dir("clip").iterdir())
    for path in (render, first_frame, studio.manifest_path("clip"), studio.root / "videos" / "clip.mp4"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_reassembly_encodes_again_only_the_segments_whose_frames_changed(
    studio: Studio, tmp_path: Path
) -> None:
    from conftest import write_source

    from rotoscope.store import md5_file

    settings = EncodeSettings(preset="veryfast", segment_seconds=0.4)  # 30 frames at 25 fps: 3
    studio.add_video(write_source(tmp_path / "a.mp4", frames=30), "clip")
    split(studio, "clip")
    manifest_path, out = studio.manifest_path("clip"), studio.render_path("clip")
    first = reassemble(manifest_path, out, settings)
    assert (first.segments, first.segments_encoded, first.frames_encoded) == (3, 3, 30)
    whole = md5_file(out)
    again = reassemble(manifest_path, out, settings)
    assert (again.segments_encoded, md5_file(out)) == (0, whole)  # stream copy: the same bytes

    studio.add_video(write_source(tmp_path / "b.mp4", changed=(15,), frames=30), "clip")
    split(studio, "clip")
    edited = reassemble(manifest_path, out, settings)
    assert (edited.segments_encoded, edited.frames_encoded) == (1, 10)
    assert_faithful(studio, "clip", out)
    manifest = studio.load_manifest("clip")
    with av.open(str(out)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    with Image.open(manifest.frame_path(studio.root, manifest.frames[15])) as reshot:
        assert psnr(decoded[15], np.asarray(reshot.convert("RGB"))) > 35  # the new picture, not the old

    damaged = next(studio.segments_dir().glob("*/*.seg"))
    damaged.write_bytes(damaged.read_bytes()[:-100])  # a torn write from some other tool
    mended = reassemble(manifest_path, out, settings)
    assert mended.segments_encoded == 1
    assert_faithful(studio, "clip", out)
