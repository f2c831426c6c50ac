"""Looking at what a studio holds: manifest summaries, blob verification, contact sheets."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from rotoscope import manifest as manifests
from rotoscope.errors import RotoscopeError
from rotoscope.manifest import Manifest
from rotoscope.store import BlobCheck, BlobStore


@dataclass(frozen=True)
class ManifestSummary:
    path: Path
    manifest: Manifest
    bytes_on_disk: int
    frames_present: int

    def lines(self) -> list[str]:
        m = self.manifest
        video = m.video
        gaps = [b.pts - a.pts for a, b in zip(m.frames, m.frames[1:], strict=False)]
        steps = sorted(set(gaps))
        timing = (
            f"constant, every {m.seconds(steps[0]) * 1000:.3f} ms"
            if len(steps) == 1
            else f"variable, {m.seconds(min(gaps)) * 1000:.3f}-{m.seconds(max(gaps)) * 1000:.3f} ms"
            if gaps
            else "single frame"
        )
        audio = video.get("audio")
        audio_text = (
            f"{audio['codec']}, {audio['sample_rate']} Hz, {audio['channels']} ch"
            + (f", {audio['duration']:.3f} s" if audio.get("duration") else "")
            if audio
            else "none"
        )
        extract = m.extract
        lineage = m.lineage
        made_by = (
            [
                f"parent     {lineage.parent}  md5 {lineage.parent_md5}",
                f"filter     {lineage.filter['name']} ({lineage.filter['kind']}), model md5 "
                f"{lineage.filter['model_md5']}",
                "render     " + ", ".join(f"{key} {value}" for key, value in lineage.render.items()),
            ]
            if lineage
            else []
        )
        return [
            f"manifest   {self.path}",
            f"kind       {m.kind} ({m.name})",
            *made_by,
            f"video      {video['path']}  md5 {video['md5']}",
            f"source     {video['width']}x{video['height']} {video['codec']} {video['pix_fmt']}, "
            f"rotation {video['rotation']}, avg rate {video['avg_rate']}",
            f"frames     {len(m.frames)} x {m.width}x{m.height} {extract['format']} "
            f"(fps {extract['fps']}, max side {extract['max_side']}, quality {extract['quality']})",
            f"duration   {m.duration:.3f} s",
            f"timestamps {m.time_base} time base, first {m.frames[0].pts}, last {m.frames[-1].pts}, "
            f"end {m.end_pts}; {timing}",
            f"audio      {audio_text}",
            f"size       {_human(sum(f.bytes for f in m.frames))} of frames; "
            f"{self.frames_present}/{len(m.frames)} in the work tree ({_human(self.bytes_on_disk)})",
        ]


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def summarise(studio_root: Path, path: Path) -> ManifestSummary:
    manifest = manifests.load(path)
    present = [p for f in manifest.frames if (p := manifest.frame_path(studio_root, f)).is_file()]
    return ManifestSummary(path, manifest, sum(p.stat().st_size for p in present), len(present))


@dataclass
class VerifyReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    studio_root: Path,
    paths: Iterable[Path],
    on_checked: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check every frame of every manifest exists with its md5, in the work tree or the cache."""
    store = BlobStore(studio_root)
    report = VerifyReport()
    for path in paths:
        try:
            manifest = manifests.load(path)
        except RotoscopeError as error:
            report.problems.append(str(error))
            continue
        jobs = [(frame, manifest.frame_path(studio_root, frame)) for frame in manifest.frames]
        with ThreadPoolExecutor(4) as pool:
            checks = pool.map(lambda job: (job[0], job[1], store.check(job[0].md5, job[1])), jobs)
            for frame, where, check in checks:
                report.checked += 1
                if check.state != "ok":
                    report.problems.append(_problem(studio_root, path, frame.i, where, check))
                if on_checked:
                    on_checked(report.checked)
    return report


def _problem(root: Path, manifest: Path, index: int, where: Path, check: BlobCheck) -> str:
    name = manifest.relative_to(root) if manifest.is_relative_to(root) else manifest
    if check.state == "missing":
        shown = where.relative_to(root) if where.is_relative_to(root) else where
        return f"{shown}: missing (frame {index} of {name}, md5 {check.md5}; not in the cache either)"
    held = check.where.relative_to(root) if check.where and check.where.is_relative_to(root) else check.where
    return f"{held}: corrupt (frame {index} of {name}: content does not match md5 {check.md5})"


# -- contact sheets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SheetTile:
    picture: Image.Image
    title: str  # the filter's name, or "original"
    caption: str  # artist and title of the artwork, kind of filter


def contact_sheet(tiles: list[SheetTile], tile_side: int = 320, columns: int = 4) -> Image.Image:
    """Labelled thumbnails on a grid, the way a user compares filters at a glance."""
    thumbs = []
    for tile in tiles:
        thumb = tile.picture.copy()
        thumb.thumbnail((tile_side, tile_side), Image.Resampling.LANCZOS)
        thumbs.append(thumb)
    cell_w = max(thumb.width for thumb in thumbs)
    cell_h = max(thumb.height for thumb in thumbs)
    pad, label = 12, 40
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (pad + columns * (cell_w + pad), pad + rows * (cell_h + label + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    bold, small = ImageFont.load_default(size=15), ImageFont.load_default(size=12)
    for n, (tile, thumb) in enumerate(zip(tiles, thumbs, strict=True)):
        row, column = divmod(n, columns)
        x, y = pad + column * (cell_w + pad), pad + row * (cell_h + label + pad)
        sheet.paste(thumb, (x + (cell_w - thumb.width) // 2, y))
        draw.text((x, y + cell_h + 4), _fit(draw, tile.title, bold, cell_w), fill="black", font=bold)
        draw.text((x, y + cell_h + 22), _fit(draw, tile.caption, small, cell_w), fill="#555555", font=small)
    return sheet


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    """``text`` cut with an ellipsis so it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
