"""The bodies of the DVC stages: split a video into frames + manifest, reassemble a manifest.

``dvc.yaml`` runs these through the CLI (``rotoscope split NAME``...). Each writes its outputs
atomically and keeps its finished work in a scratch folder, so a killed run resumes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from rotoscope import manifest as manifests
from rotoscope.errors import RotoscopeError
from rotoscope.manifest import Frame, Manifest
from rotoscope.media import (
    EncodeSettings,
    VideoInfo,
    decode_frames,
    encode_video,
    probe,
)
from rotoscope.media.decode import DecodedFrame, output_size
from rotoscope.media.images import save_image
from rotoscope.progress import progress_bar
from rotoscope.store import atomic_write_text, md5_file, replace_dir, temp_beside
from rotoscope.studio import SplitSettings, Studio

_WORKERS = max(2, os.cpu_count() or 2)


@dataclass(frozen=True)
class SplitResult:
    manifest_path: Path
    frames: int
    reused: int  # frames found finished in the scratch folder of an interrupted run


def split(studio: Studio, name: str) -> SplitResult:
    """Decode ``name``'s video into frame files named by index, recorded by md5 in a manifest."""
    video_path, settings = studio.split_job(name)
    info = probe(video_path)
    video_md5 = md5_file(video_path)
    scratch = studio.partial_dir(f"split-{name}")
    staged = _prepare_scratch(scratch, {"video_md5": video_md5, **settings.as_manifest_extract()})
    estimate = _estimated_count(info, settings)
    with progress_bar(f"split {name}", estimate) as update:
        frames, reused = _write_frames(info, settings, staged, update)
    if not frames:
        raise RotoscopeError(video_path, "no frames decoded")
    width, height = output_size(info, settings.max_side)
    result = Manifest(
        kind="source",
        name=name,
        video=_video_record(studio, info, video_md5),
        extract=settings.as_manifest_extract(),
        frames_dir=studio.relative(studio.frames_dir(name)),
        width=width,
        height=height,
        time_base=str(info.time_base.numerator) + "/" + str(info.time_base.denominator),
        end_pts=_end_pts(info, frames),
        frames=frames,
    )
    text = manifests.render(result, studio.manifest_path(name))  # before any frame is swapped in
    replace_dir(staged, studio.frames_dir(name))
    atomic_write_text(studio.manifest_path(name), text)
    shutil.rmtree(scratch, ignore_errors=True)
    return SplitResult(studio.manifest_path(name), len(frames), reused)


def _prepare_scratch(scratch: Path, key: dict[str, object]) -> Path:
    """Reuse an interrupted run's frames only if it split the same video the same way."""
    state = scratch / "state.json"
    wanted = json.dumps(key, sort_keys=True)
    if not state.is_file() or state.read_text() != wanted:
        shutil.rmtree(scratch, ignore_errors=True)
        (scratch / "frames").mkdir(parents=True)
        atomic_write_text(state, wanted)
    return scratch / "frames"


def _estimated_count(info: VideoInfo, settings: SplitSettings) -> int | None:
    if settings.fps is None:
        return info.declared_frames or None
    return int(info.duration * settings.fps) + 1 if info.duration else None


def _write_frames(
    info: VideoInfo, settings: SplitSettings, folder: Path, update: Callable[[int], None]
) -> tuple[list[Frame], int]:
    """Convert and encode on worker threads while this thread decodes.

    PyAV's scaler and Pillow writing to a file both release the GIL, so the workers run in
    parallel with each other and with FFmpeg's own decoding threads.
    """
    frames: list[Frame] = []
    reused = 0
    in_flight: deque[tuple[int, int, Future[tuple[str, int, bool]]]] = deque()

    def collect() -> None:
        nonlocal reused
        index, pts, future = in_flight.popleft()
        md5, size, was_there = future.result()
        reused += was_there
        frames.append(Frame(i=index, pts=pts, md5=md5, bytes=size))
        update(len(frames))

    with ThreadPoolExecutor(_WORKERS) as pool:
        for index, decoded in enumerate(decode_frames(info, settings.fps, settings.max_side)):
            target = folder / f"{index:0{manifests.FRAME_NAME_DIGITS}d}.{settings.format}"
            in_flight.append((index, decoded.pts, pool.submit(_store_frame, decoded, target, settings)))
            if len(in_flight) > 4 * _WORKERS:
                collect()
        while in_flight:
            collect()
    return frames, reused


def _store_frame(decoded: DecodedFrame, target: Path, settings: SplitSettings) -> tuple[str, int, bool]:
    if target.is_file():  # written atomically by an earlier run, so complete
        return md5_file(target), target.stat().st_size, True
    with temp_beside(target) as temp:
        save_image(decoded.image(), temp, settings.format, settings.quality)
        os.replace(temp, target)
    return md5_file(target), target.stat().st_size, False


def _video_record(studio: Studio, info: VideoInfo, md5: str) -> dict[str, object]:
    width, height = info.display_size
    return {
        "path": studio.relative(info.path),
        "md5": md5,
        "width": width,
        "height": height,
        "time_base": f"{info.time_base.numerator}/{info.time_base.denominator}",
        "avg_rate": f"{info.avg_rate.numerator}/{info.avg_rate.denominator}" if info.avg_rate else None,
        "duration": round(info.duration, 6) if info.duration else 0.0,
        "codec": info.codec,
        "pix_fmt": info.pix_fmt,
        "rotation": info.rotation,
        "audio": info.audio_dict(),
    }


def _end_pts(info: VideoInfo, frames: list[Frame]) -> int:
    """When the last frame stops showing: the file's declared end, else one frame step later."""
    last = frames[-1].pts
    if info.end_pts is not None and info.end_pts > last:
        return info.end_pts
    if info.avg_rate:
        return last + max(1, round(1 / (info.avg_rate * info.time_base)))
    return last + (last - frames[-2].pts if len(frames) > 1 else 1)


# -- reassemble ------------------------------------------------------------------------------


def reassemble(manifest_path: Path, out: Path, settings: EncodeSettings | None = None) -> Path:
    """Encode a manifest's frames at their recorded timestamps, with the source video's audio."""
    studio = Studio.find(manifest_path.parent)
    manifest = manifests.load(manifest_path)
    settings = settings or studio.encode_settings()
    audio_source = studio.root / manifest.video["path"]
    if manifest.video.get("audio") and not audio_source.is_file():
        raise RotoscopeError(
            audio_source,
            "source video missing; its audio cannot be copied "
            "(run `dvc pull`, or set reassemble.audio: none)",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with progress_bar(f"reassemble {manifest.name}", len(manifest.frames)) as update:
        encode_video(
            out,
            _pictures(studio, manifest),
            [frame.pts for frame in manifest.frames],
            time_base=manifest.time_base_fraction,
            end_pts=manifest.end_pts,
            size=(manifest.width, manifest.height),
            settings=settings,
            audio_source=audio_source if audio_source.is_file() else None,
            on_frame=update,
        )
    return out


def _pictures(studio: Studio, manifest: Manifest) -> Iterator[Image.Image]:
    for frame in manifest.frames:
        path = manifest.frame_path(studio.root, frame)
        if not path.is_file():
            raise RotoscopeError(path, f"frame {frame.i} is missing (run `dvc pull` or `dvc checkout`)")
        with Image.open(path) as picture:
            if picture.size != (manifest.width, manifest.height):
                raise RotoscopeError(
                    path,
                    f"frame is {picture.size[0]}x{picture.size[1]}, manifest "
                    f"says {manifest.width}x{manifest.height}",
                )
            yield picture.convert("RGB")
