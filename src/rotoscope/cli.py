"""The ``rotoscope`` command: argument parsing and printing only; the work is in the modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from rotoscope import __version__
from rotoscope.errors import RotoscopeError
from rotoscope.progress import progress_bar, say

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
    name, target = _studio(studio).add_video(video, name)
    say(f"added {name}: {target} (tracked by DVC; `dvc repro` splits it)")


@app.command()
def split(
    names: Annotated[list[str] | None, typer.Argument(help="Videos to split (default: all).")] = None,
    studio: StudioOption = None,
) -> None:
    """Decode videos into frame files and write manifests/<video>/source.json."""
    from rotoscope.pipeline import split as split_video

    here = _studio(studio)
    for name in names or list(here.videos()):
        result = split_video(here, name)
        reused = f", {result.reused} reused from an interrupted run" if result.reused else ""
        say(f"split {name}: {result.frames} frames{reused} -> {here.relative(result.manifest_path)}")


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
    from dataclasses import replace

    from rotoscope.pipeline import reassemble as reassemble_manifest

    settings = _studio(manifest.parent).encode_settings()
    overrides = {"codec": codec, "crf": crf, "preset": preset, "audio": audio}
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    written = reassemble_manifest(manifest, out, settings)
    say(f"wrote {written}")


@app.command()
def show(manifest: Annotated[Path, typer.Argument(help="Manifest to describe.")]) -> None:
    """A readable summary of a manifest: duration, frames, size, audio, timestamps."""
    from rotoscope.review import summarise

    root = _studio(manifest.parent).root
    for line in summarise(root, manifest).lines():
        print(line)


@app.command()
def verify(
    manifests: Annotated[
        list[Path] | None, typer.Argument(help="Manifests to check (default: all in the studio).")
    ] = None,
    studio: StudioOption = None,
) -> None:
    """Check every frame of every manifest exists with its md5 (work tree or DVC cache)."""
    from rotoscope.review import verify as verify_manifests

    here = _studio(studio)
    paths = manifests or here.manifest_paths()
    with progress_bar("verify", None) as update:
        report = verify_manifests(here.root, paths, update)
    for problem in report.problems:
        print(problem)
    if not report.ok:
        count = f"{len(report.problems)} problem(s) in {report.checked} frames"
        say(f"verify: {count} of {len(paths)} manifest(s)")
        raise typer.Exit(1)
    say(f"verify: all {report.checked} frames of {len(paths)} manifest(s) present and intact")


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Where to make the demo studio.")] = Path(
        "rotoscope-demo"
    ),
) -> None:
    """The main job on a built-in sample: make a studio, generate a clip, `dvc repro`, show the render."""
    import tempfile

    from rotoscope.media.synth import make_sample
    from rotoscope.studio import init_studio

    studio, _ = init_studio(directory)
    say(f"studio: {studio.root}")
    with tempfile.TemporaryDirectory() as scratch:
        sample = make_sample(Path(scratch) / "sample.mp4")
        name, _ = studio.add_video(sample, "sample")
    say(f"sample clip generated and added as {name!r}; running `dvc repro`")
    run_dvc(studio.root, "repro")
    render = studio.render_path(name)
    say(f"render: {render}")
    say(f"manifest: {studio.manifest_path(name)}  (try `rotoscope show` on it)")


def run_dvc(root: Path, *args: str) -> None:
    """Run the DVC command line in ``root``, with this interpreter's scripts on PATH for stages."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("DVC_NO_ANALYTICS", "1")
    completed = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=env, check=False)
    if completed.returncode != 0:
        raise RotoscopeError(root, f"`dvc {' '.join(args)}` failed with exit code {completed.returncode}")


def main() -> None:
    try:
        app()
    except RotoscopeError as error:
        print(f"rotoscope: error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("rotoscope: interrupted; run the same command again to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
