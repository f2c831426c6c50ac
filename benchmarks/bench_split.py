"""Time ``rotoscope`` split against the ffmpeg command line doing the same job.

Both decode every frame of a clip and write one JPEG file (4:2:0, standard Huffman tables) per
frame into a folder. ffmpeg's quantiser is calibrated so its mean JPEG size is close to ours
(Pillow at the studio's quality, 95): the candidates are ``-q:v 1..10`` with ffmpeg's own tables
and, because even ``-q:v 1`` can stay below quality 95's size, ``-q:v 1`` with Pillow's exact
quality-95 tables (``-intra_matrix``/``-chroma_intra_matrix``). Both mean sizes are printed so
the match is visible. Only the split is timed (studio setup, clip generation and calibration
are not); each figure is the median of alternating runs.

Run: ``.venv/bin/python benchmarks/bench_split.py``
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
from benchlib import (
    Clip,
    make_studio,
    median,
    print_table,
    repeat_count,
    split_clips,
    timed,
    use_tool_env,
)
from PIL import Image

from rotoscope.pipeline import split
from rotoscope.studio import Studio

TARGET_RATIO = 1.2
STOCK_Q = range(1, 11)  # ffmpeg mjpeg qscale: 1 is finest; larger means smaller files
CALIBRATION_FRAMES = 120  # frames ffmpeg encodes per candidate while picking its settings
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
KIB = 1024


@dataclass(frozen=True)
class FfmpegJpeg:
    """One candidate quantiser setting for ffmpeg's mjpeg encoder."""

    label: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class Result:
    label: str
    ours_frames: int
    ffmpeg_frames: int
    ours_s: float
    ffmpeg_s: float
    ours_kib: float
    ffmpeg_kib: float
    setting: str

    @property
    def ratio(self) -> float:
        return self.ours_s / self.ffmpeg_s


# -- ffmpeg ------------------------------------------------------------------------------------


def pillow_tables(quality: int) -> tuple[list[int], list[int]]:
    """The luma and chroma quantisation tables (natural order) Pillow writes at ``quality``."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "JPEG", quality=quality, optimize=False)
    with Image.open(buffer) as picture:
        tables = picture.quantization
    return list(tables[0]), list(tables[1])


def pillow_job(quality: int) -> FfmpegJpeg:
    """``-q:v 1`` with Pillow's own tables: mjpeg's step is matrix * q / 8, so 8x Pillow's."""
    luma, chroma = pillow_tables(quality)

    def matrix(table: list[int]) -> str:
        return ",".join(str(max(8, 8 * value)) for value in table)

    return FfmpegJpeg(
        f"1 + Pillow q{quality} tables",
        ("-q:v", "1", "-intra_matrix", matrix(luma), "-chroma_intra_matrix", matrix(chroma)),
    )


def stock_jobs() -> list[FfmpegJpeg]:
    """ffmpeg's own tables, from the largest files to the smallest."""
    return [FfmpegJpeg(str(q), ("-q:v", str(q))) for q in STOCK_Q]


def ffmpeg_command(
    video: Path,
    folder: Path,
    job: FfmpegJpeg,
    frames: int | None = None,
) -> list[str]:
    limit = ["-frames:v", str(frames)] if frames else []
    return [
        FFMPEG,
        "-v",
        "error",
        "-threads",
        "0",
        "-i",
        str(video),
        "-fps_mode",
        "passthrough",
        "-qmin",
        "1",
        *job.args,
        "-huffman",
        "default",
        *limit,
        str(folder / "%06d.jpg"),
    ]


def run_ffmpeg(video: Path, folder: Path, job: FfmpegJpeg, frames: int | None = None) -> None:
    subprocess.run(ffmpeg_command(video, folder, job, frames), check=True)


def fresh_folder(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def folder_sizes(folder: Path) -> list[int]:
    return [path.stat().st_size for path in sorted(folder.glob("*.jpg"))]


def mean(values: list[int]) -> float:
    return sum(values) / len(values)


def sample_size(video: Path, folder: Path, job: FfmpegJpeg) -> float:
    """ffmpeg's mean JPEG size in bytes over the first frames with ``job``'s settings."""
    run_ffmpeg(video, fresh_folder(folder), job, CALIBRATION_FRAMES)
    return mean(folder_sizes(folder))


def calibrate(video: Path, folder: Path, target: float, quality: int) -> FfmpegJpeg:
    """The candidate whose mean size over the first frames is nearest ``target`` bytes."""
    exact = pillow_job(quality)
    sizes = {exact: sample_size(video, folder, exact)}
    for job in stock_jobs():
        sizes[job] = sample_size(video, folder, job)
        if sizes[job] < target:  # sizes only shrink from here on
            break
    tried = ", ".join(f"[{job.label}] {size / KIB:.1f}" for job, size in sizes.items())
    print(
        f"  calibration over {CALIBRATION_FRAMES} frames, KiB: ours {target / KIB:.1f}; ffmpeg -q:v {tried}",
        flush=True,
    )
    return min(sizes, key=lambda job: abs(sizes[job] - target))


def time_ffmpeg(video: Path, folder: Path, job: FfmpegJpeg) -> float:
    fresh_folder(folder)
    return timed(lambda: run_ffmpeg(video, folder, job))


# -- ours --------------------------------------------------------------------------------------


def time_ours(studio: Studio, name: str) -> float:
    """One split from scratch: the previous run's frames and manifest are removed first."""
    shutil.rmtree(studio.frames_dir(name), ignore_errors=True)
    studio.manifest_path(name).unlink(missing_ok=True)
    return timed(lambda: split(studio, name))


def our_sizes(studio: Studio, name: str) -> list[int]:
    return [frame.bytes for frame in studio.load_manifest(name).frames]


# -- one clip ----------------------------------------------------------------------------------


def bench_clip(clip: Clip, scratch: Path, repeat: int) -> Result:
    print(f"{clip.label}:", flush=True)
    studio = make_studio(scratch / f"studio-{clip.label}", clip.path, "clip")
    video = studio.video_file("clip")
    folder = scratch / f"ffmpeg-{clip.label}"
    time_ours(studio, "clip")  # warm-up, and the sizes the calibration aims at
    target = mean(our_sizes(studio, "clip")[:CALIBRATION_FRAMES])
    job = calibrate(video, folder, target, studio.split_job("clip")[1].quality)
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(repeat):
        ours.append(time_ours(studio, "clip"))
        theirs.append(time_ffmpeg(video, folder, job))
    return summarise(clip.label, studio, folder, job, ours, theirs)


def summarise(
    label: str, studio: Studio, folder: Path, job: FfmpegJpeg, ours: list[float], theirs: list[float]
) -> Result:
    mine, others = our_sizes(studio, "clip"), folder_sizes(folder)
    return Result(
        label,
        len(mine),
        len(others),
        median(ours),
        median(theirs),
        mean(mine) / KIB,
        mean(others) / KIB,
        job.label,
    )


def report(results: list[Result], repeat: int) -> None:
    headers = ["clip", "frames", "ours s", "ffmpeg s", "ratio", "ours KiB", "ffmpeg KiB", "ffmpeg -q:v"]
    rows = [
        [
            r.label,
            f"{r.ours_frames}",
            f"{r.ours_s:.2f}",
            f"{r.ffmpeg_s:.2f}",
            f"{r.ratio:.2f}",
            f"{r.ours_kib:.1f}",
            f"{r.ffmpeg_kib:.1f}",
            r.setting,
        ]
        for r in results
    ]
    print(f"\nsplit to JPEG files, median of {repeat} alternating runs (ratio = ours / ffmpeg)")
    print_table(headers, rows)
    for r in results:
        counts = (
            "same frame count"
            if r.ours_frames == r.ffmpeg_frames
            else (f"FRAME COUNT MISMATCH: ours {r.ours_frames}, ffmpeg {r.ffmpeg_frames}")
        )
        verdict = "ok" if r.ratio <= TARGET_RATIO else f"ABOVE TARGET {TARGET_RATIO}"
        print(f"{r.label}: {counts}; ratio {r.ratio:.2f} {verdict}")


def main() -> None:
    use_tool_env()
    repeat = repeat_count()
    with tempfile.TemporaryDirectory(prefix="rotoscope-bench-split-") as scratch:
        results = [bench_clip(clip, Path(scratch), repeat) for clip in split_clips(Path(scratch))]
    report(results, repeat)


if __name__ == "__main__":
    main()
