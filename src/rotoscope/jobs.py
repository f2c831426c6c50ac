"""Background jobs: long verbs run one at a time per studio, each in its own process.

A job is a folder ``.rotoscope/jobs/<id>/`` holding its record (``job.json``, written atomically),
its progress (``events.jsonl``: one :class:`~rotoscope.progress.ProgressEvent` per line) and its
log. The work runs in a child process (``python -m rotoscope.jobs ROOT ID``): cancelling is a
signal (Ctrl-C's, so the pipeline stops the way it stops in a terminal, finished frames kept), and
a job that crashes never takes the server with it. The pipeline's own locks still keep a job and a
terminal command from writing one render at once. A server restarted after a crash finds records
still marked running whose process is gone and marks them interrupted; run again, the work resumes
from what they had finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rotoscope.errors import BusyError, NotFoundError, RotoscopeError
from rotoscope.layout import NAME, Layout
from rotoscope.progress import ProgressEvent
from rotoscope.store import atomic_write_text

JobState = Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]
FINISHED: tuple[JobState, ...] = ("done", "failed", "cancelled", "interrupted")
JOB_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
_NAME_PATTERN = NAME.pattern
Name = Annotated[str, Field(pattern=_NAME_PATTERN)]
StageName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_@.-]{0,127}$")]  # stylize@look


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReproArgs(_Args):
    targets: list[StageName] = Field(
        default_factory=list, max_length=64, description="Stages (default: all)."
    )


class SplitArgs(_Args):
    videos: list[Name] = Field(default_factory=list, max_length=64)


class StylizeArgs(_Args):
    renders: list[Name] = Field(default_factory=list, max_length=64)


class FilterMakeArgs(_Args):
    name: str = Field(pattern=_NAME_PATTERN)
    resume: bool = False


class QualityArgs(_Args):
    renders: list[Name] = Field(min_length=1, max_length=64)
    preview: bool = True


class PublishArgs(_Args):
    renders: list[Name] = Field(
        default_factory=list, max_length=64, description="Default: every rendered one."
    )
    title: str = Field("Rotoscope collection", max_length=200)


class RemoteArgs(_Args):
    remote: str | None = Field(default=None, pattern=_NAME_PATTERN)


def _dvc_result(run: Any) -> dict[str, Any]:
    return {"command": run.command, "output": run.output[-4000:]}


def _repro(studio: Any, args: ReproArgs, progress: Callable[[ProgressEvent], None]) -> dict[str, Any]:
    return _dvc_result(studio.repro(args.targets, progress))


def _split(studio: Any, args: SplitArgs, progress: Callable[[ProgressEvent], None]) -> dict[str, Any]:
    results = studio.split(args.videos or None, progress)
    return {"frames": {studio.relative(r.manifest_path): r.frames for r in results}}


def _stylize(studio: Any, args: StylizeArgs, progress: Callable[[ProgressEvent], None]) -> dict[str, Any]:
    results = studio.stylize(args.renders or None, progress)
    return {"renders": {studio.relative(r.manifest_path): r.counts() for r in results}}


def _filter_make(
    studio: Any, args: FilterMakeArgs, progress: Callable[[ProgressEvent], None]
) -> dict[str, Any]:
    card = studio.filter_make(args.name, args.resume, progress)
    return {"filter": card.name, "model": card.model}


def _quality(studio: Any, args: QualityArgs, progress: Callable[[ProgressEvent], None]) -> dict[str, Any]:
    manifests = []
    for name in args.renders:
        job = studio.render_job(name)
        manifests.append(studio.manifest_path(job.video, name))
    written = studio.quality(manifests, None, args.preview, progress)
    return {"reports": [studio.relative(paths.metrics) for _, paths in written]}


def _publish(studio: Any, args: PublishArgs, progress: Callable[[ProgressEvent], None]) -> dict[str, Any]:
    folder = studio.layout.scratch("site")
    studio.layout.remove_tree(folder)  # made afresh: nothing a fork committed there is published
    site = studio.publish(folder, args.renders or None, None, args.title)
    return {"site": studio.relative(site.folder), "items": [item.slug for item in site.items]}


def _transfer(
    command: str, studio: Any, args: RemoteArgs, progress: Callable[[ProgressEvent], None]
) -> dict[str, Any]:
    """``dvc push`` or ``dvc pull``, to or from the named remote (default: DVC's)."""
    return _dvc_result(studio.dvc(command, *(["-r", args.remote] if args.remote else []), progress=progress))


# what a job can run: its arguments' model and the verb behind it
VERBS: dict[str, tuple[type[_Args], Callable[..., dict[str, Any]]]] = {
    "repro": (ReproArgs, _repro),
    "split": (SplitArgs, _split),
    "stylize": (StylizeArgs, _stylize),
    "filter-make": (FilterMakeArgs, _filter_make),
    "quality": (QualityArgs, _quality),
    "publish": (PublishArgs, _publish),
    "push": (RemoteArgs, partial(_transfer, "push")),
    "pull": (RemoteArgs, partial(_transfer, "pull")),
}
JobVerb = Literal["repro", "split", "stylize", "filter-make", "quality", "publish", "push", "pull"]


class Job(BaseModel):
    """A job's record, as ``job.json`` holds it and the HTTP API returns it."""

    id: str
    verb: JobVerb
    args: dict[str, Any] = Field(default_factory=dict)
    state: JobState = "queued"
    created: str
    started: str | None = None
    finished: str | None = None
    pid: int | None = None
    message: str | None = None  # the one-line error of a failed job, or why it stopped
    result: dict[str, Any] | None = None
    last: ProgressEventModel | None = None  # the latest progress, for lists of jobs

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED


class ProgressEventModel(BaseModel):
    task: str
    done: int
    total: int | None = None
    unit: str = "frames"
    rate: float | None = None
    seconds_left: float | None = None
    note: str = ""
    finished: bool = False


Job.model_rebuild()


def check_args(verb: str, args: dict[str, Any]) -> dict[str, Any]:
    """A job's arguments, validated against its verb's model (one line on failure)."""
    if verb not in VERBS:
        raise RotoscopeError(None, f"unknown job {verb!r}; one of {', '.join(VERBS)}")
    model, _ = VERBS[verb]
    try:
        return model.model_validate(args).model_dump()
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "arguments"
        raise RotoscopeError(None, f"{verb} job: {where}: {first['msg']}") from None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class JobStore:
    """The job folders of one studio."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.folder = layout.scratch("jobs")

    def path(self, job_id: str, name: str = "job.json") -> Path:
        if not JOB_ID.match(job_id):
            raise RotoscopeError(job_id, "not a job id")
        return self.layout.scratch("jobs", job_id, name)

    def create(self, verb: str, args: dict[str, Any]) -> Job:
        checked = check_args(verb, args)
        job_id = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        job = Job(id=job_id, verb=verb, args=checked, created=_now())  # type: ignore[arg-type]
        self.path(job_id).parent.mkdir(parents=True, exist_ok=True)
        self.save(job)
        return job

    def save(self, job: Job) -> None:
        atomic_write_text(self.path(job.id), job.model_dump_json(indent=2) + "\n")

    def load(self, job_id: str) -> Job:
        path = self.path(job_id)
        try:
            if path.is_symlink() or path.stat().st_size > 1 << 20:
                raise RotoscopeError(path, "not a job record")
            job = Job.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFoundError(job_id, "no such job") from None
        except (ValidationError, UnicodeDecodeError, OSError):
            raise RotoscopeError(path, "not a job record") from None
        if job.id != job_id:
            raise RotoscopeError(path, "a job record under another job's name")
        job.last = self.last_event(job_id)
        return job

    def all(self) -> list[Job]:
        if not self.folder.is_dir():
            return []
        jobs = []
        for entry in sorted(self.folder.iterdir(), reverse=True):
            if JOB_ID.match(entry.name) and not entry.is_symlink():
                try:
                    jobs.append(self.load(entry.name))
                except RotoscopeError:
                    continue  # a half-made folder: not a job
        return jobs

    def events_since(self, job_id: str, offset: int) -> tuple[list[ProgressEventModel], int]:
        """Progress events written after byte ``offset``, and the offset after them."""
        path = self.path(job_id, "events.jsonl")
        try:
            with path.open("rb") as stream:
                stream.seek(offset)
                data = stream.read(1 << 20)
        except FileNotFoundError:
            return [], offset
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next read
        events = []
        for line in complete.splitlines():
            try:
                events.append(ProgressEventModel.model_validate_json(line))
            except ValidationError:
                continue
        return events, offset + len(complete)

    def last_event(self, job_id: str) -> ProgressEventModel | None:
        path = self.path(job_id, "events.jsonl")
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        events, _ = self.events_since(job_id, max(0, size - 4096))
        return events[-1] if events else None

    def log_path(self, job_id: str) -> Path:
        return self.path(job_id, "log.txt")

    def mark_interrupted(self) -> list[Job]:
        """Records left running (their process gone) or queued when a server stopped. A queued
        record is never run by a server that did not queue it: a fork could commit one."""
        marked = []
        for job in self.all():
            if (job.state == "running" and not _alive(job.pid)) or job.state == "queued":
                was = job.state
                job.state, job.finished = "interrupted", _now()
                job.message = f"the server stopped while it was {was}; run it again to resume"
                self.save(job)
                marked.append(job)
        return marked


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobRunner:
    """Runs a studio's queued jobs one after another in child processes (one writer per studio)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._running: dict[str, subprocess.Popen[bytes]] = {}
        self._mine: list[str] = []  # queued by this runner, oldest first
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="rotoscope-jobs", daemon=True)

    def start(self) -> None:
        self.store.mark_interrupted()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            running = list(self._running.values())
        for process in running:
            _signal(process, signal.SIGINT)
        self._thread.join(timeout=30)

    def submit(self, verb: str, args: dict[str, Any]) -> Job:
        job = self.store.create(verb, args)
        with self._lock:
            self._mine.append(job.id)  # the only jobs this runner runs
        self._wake.set()
        return job

    def rerun(self, job_id: str) -> Job:
        """The job again; the pipeline skips what it finished (a training resumes its checkpoint)."""
        old = self.store.load(job_id)
        if not old.is_finished:
            raise BusyError(job_id, f"job {job_id} is still {old.state}")
        args = {**old.args, "resume": True} if old.verb == "filter-make" else old.args
        return self.submit(old.verb, args)

    def cancel(self, job_id: str) -> Job:
        job = self.store.load(job_id)
        with self._lock:
            process = self._running.get(job_id)
            if job.state == "queued" and process is None:
                if job_id in self._mine:
                    self._mine.remove(job_id)
                job.state, job.finished, job.message = "cancelled", _now(), "cancelled before it started"
                self.store.save(job)
                return job
        if process is not None:
            _signal(process, signal.SIGINT)
        return self.store.load(job_id)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                next_id = self._mine.pop(0) if self._mine else None
            if next_id is None:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            try:
                job = self.store.load(next_id)
                if job.state == "queued":
                    self._run(job)
            except Exception as error:  # one job's trouble (a full disk, a removed folder) ends that job only
                self._fail(next_id, error)

    def _fail(self, job_id: str, error: Exception) -> None:
        with contextlib.suppress(Exception):  # if even the record cannot be written, nothing can
            job = self.store.load(job_id)
            job.state, job.finished, job.message = "failed", _now(), f"could not run: {error}"
            self.store.save(job)

    def _run(self, job: Job) -> None:
        log = self.store.log_path(job.id).open("ab")
        with self._lock:
            if self.store.load(job.id).state != "queued":  # cancelled meanwhile
                log.close()
                return
            process = subprocess.Popen(
                [sys.executable, "-m", "rotoscope.jobs", str(self.store.layout.root), job.id],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: a signal reaches DVC's stages too
            )
            self._running[job.id] = process
        try:
            code = process.wait()
        finally:
            with self._lock:
                self._running.pop(job.id, None)
            log.close()
        finished = self.store.load(job.id)
        if not finished.is_finished:  # killed before it could say so
            finished.state, finished.finished = "failed", _now()
            finished.message = f"the job's process ended with code {code} before finishing"
            self.store.save(finished)


def _signal(process: subprocess.Popen[bytes], number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, number)


# -- the child process -----------------------------------------------------------------------------


class _EventWriter:
    """Progress events appended to the job's events file, one JSON line each."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, event: ProgressEvent) -> None:
        line = json.dumps(asdict(event)) + "\n"
        with self.path.open("a", encoding="utf-8") as stream:
            stream.write(line)


def run_job(root: Path, job_id: str) -> int:
    """The body of a job's process: run its verb, record how it ended."""
    from rotoscope.studio import Studio

    studio = Studio(root)
    store = JobStore(studio.layout)
    job = store.load(job_id)
    job.state, job.started, job.pid = "running", _now(), os.getpid()
    store.save(job)
    events = store.path(job_id, "events.jsonl")
    os.environ["ROTOSCOPE_PROGRESS_FILE"] = str(events)  # DVC's stage commands report here too
    model, verb = VERBS[job.verb]
    started = time.monotonic()
    try:
        job.result = verb(studio, model.model_validate(job.args), _EventWriter(events))
        job.state = "done"
    except KeyboardInterrupt:
        job.state, job.message = "cancelled", "cancelled; finished work is kept: run it again to resume"
    except RotoscopeError as error:
        job.state, job.message = "failed", str(error)
    except OSError as error:
        from rotoscope.errors import storage_error

        job.state, job.message = "failed", str(storage_error(error))
    except Exception as error:  # the record says what happened; the log has the traceback
        import traceback

        traceback.print_exc()
        job.state, job.message = "failed", f"unexpected {type(error).__name__}: {error}"
    job.finished = _now()
    job.result = {**(job.result or {}), "seconds": round(time.monotonic() - started, 2)}
    store.save(job)
    return 0 if job.state == "done" else 1


if __name__ == "__main__":
    # a stop is a Ctrl-C, so work is kept; set SIGINT's handler too, since a server started in the
    # background (`&`, nohup) passes SIGINT on ignored, and Python then installs none of its own
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(run_job(Path(sys.argv[1]), sys.argv[2]))
