"""The media engine on generated clips: probe facts, frame picking, rotation like ffmpeg's."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import ffmpeg
from PIL import Image

from rotoscope.media import probe
from rotoscope.media.decode import FramePicker, decode_frames
from rotoscope.media.synth import LOSSLESS, constant_rate_clip


def test_probe_reads_the_facts(tmp_path: Path) -> None:
    clip = constant_rate_clip(tmp_path / "c.mp4", size=(160, 90), fps=25, seconds=1.0)
    info = probe(clip)
    assert (info.width, info.height, info.rotation) == (160, 90, 0)
    assert info.declared_frames == 25
    assert info.avg_rate == 25
    assert info.duration == pytest.approx(1.0)
    assert info.audio is not None and info.audio.channels == 2
    assert info.audio.duration == pytest.approx(1.0, abs=0.05)


def test_picker_takes_the_first_frame_at_each_tick() -> None:
    picker = FramePicker(fps=1, time_base=Fraction(1, 100), start_pts=0)
    kept = [pts for pts in range(0, 400, 4) if picker.wants(pts)]
    assert kept == [0, 100, 200, 300]
    every = FramePicker(fps=None, time_base=Fraction(1, 100), start_pts=0)
    assert all(every.wants(pts) for pts in range(10))


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_matches_ffmpeg_autorotate(tmp_path: Path, rotation: int) -> None:
    clip = constant_rate_clip(
        tmp_path / "r.mp4",
        size=(96, 48),
        seconds=0.2,
        rotation=rotation,
        settings=LOSSLESS,
        audio=False,
    )
    ours = np.asarray(next(iter(decode_frames(probe(clip)))).image().convert("RGB"), dtype=np.int16)
    reference = tmp_path / "ffmpeg.png"
    ffmpeg("-i", str(clip), "-frames:v", "1", str(reference))
    theirs = np.asarray(Image.open(reference).convert("RGB"), dtype=np.int16)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).mean() < 1.0
