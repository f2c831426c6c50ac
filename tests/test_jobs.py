"""Background jobs: one at a time per studio, each in its own process; cancelled with a signal,
found interrupted after a crash, resumed when run again (nothing painted twice)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import write_lossless
from PIL import Image

from rotoscope.filters.card import Provenance
from rotoscope.jobs import Job, JobRunner, JobStore
from rotoscope.media.synth import painting, panning_pictures
from rotoscope.studio import Studio, init_studio
from rotoscope.verbs import RenderSpec

FRAMES = 60


@pytest.fixture(scope="module")
def slow_studio(tmp_path_factory: pytest.TempPathFactory) -> Studio:
    """A split 60-frame 640x360 clip; renders whose flow-guided frames take a while each."""
    base = tmp_path_factory.mktemp("jobs")
    studio, _ = init_studio(base / "studio", remote=base / "remote")
    clip = write_lossless(base / "clip.mp4", list(panning_pictures((640, 360), FRAMES)))
    studio.add(clip, "clip")
    Image.fromarray(painting(160, 120)).save(base / "style.png")
    studio.filter_new("swirls", base / "style.png", "instant", Provenance(title="Swirls"))
    studio.split(["clip"])
    return studio


def wait_for(store: JobStore, job_id: str, check, timeout: float = 120) -> Job:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.load(job_id)
        if check(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never got there: {store.load(job_id)}")


def test_a_cancelled_job_keeps_its_work_and_resumes_when_run_again(slow_studio: Studio) -> None:
    slow_studio.render_new("cancelled", RenderSpec("clip", "swirls", temporal="flow", brush=1.0))
    runner = JobRunner(JobStore(slow_studio.layout))
    runner.start()
    try:
        job = runner.submit("stylize", {"renders": ["cancelled"]})
        wait_for(runner.store, job.id, lambda j: j.last is not None and j.last.done >= 2)
        runner.cancel(job.id)
        stopped = wait_for(runner.store, job.id, lambda j: j.is_finished)
        assert stopped.state == "cancelled" and "run it again to resume" in (stopped.message or "")
        painted_before = stopped.last.done if stopped.last else 0
        assert 2 <= painted_before < FRAMES
        again = runner.rerun(job.id)
        done = wait_for(runner.store, again.id, lambda j: j.is_finished)
        assert done.state == "done", done.message
        counts = done.result["renders"]["manifests/clip/cancelled.json"]  # type: ignore[index]
        assert counts["frames"] == FRAMES
        # the paintings made before are kept (the frames are mixed from them): at most the frame
        # in flight is painted again
        assert counts["stylized"] <= FRAMES - painted_before + 1
    finally:
        runner.stop()


def test_a_job_whose_server_died_is_found_interrupted_and_resumes(slow_studio: Studio) -> None:
    # its own brush: paintings are shared between renders that differ only in strength
    slow_studio.render_new("crashed", RenderSpec("clip", "swirls", temporal="flow", brush=1.25))
    store = JobStore(slow_studio.layout)
    job = store.create("stylize", {"renders": ["crashed"]})
    worker = subprocess.Popen(
        [sys.executable, "-m", "rotoscope.jobs", str(slow_studio.root), job.id], start_new_session=True
    )
    running = wait_for(
        store, job.id, lambda j: j.state == "running" and j.last is not None and j.last.done >= 4
    )
    os.killpg(worker.pid, signal.SIGKILL)  # the machine went down: no chance to write anything
    worker.wait()
    assert store.load(job.id).state == "running"  # as the record was left
    runner = JobRunner(store)
    runner.start()  # a restarted server
    try:
        found = store.load(job.id)
        assert found.state == "interrupted" and "resume" in (found.message or "")
        again = runner.rerun(job.id)
        done = wait_for(store, again.id, lambda j: j.is_finished)
        assert done.state == "done", done.message
        counts = done.result["renders"]["manifests/clip/crashed.json"]  # type: ignore[index]
        assert counts["stylized"] <= FRAMES - running.last.done + 1  # type: ignore[union-attr]
    finally:
        runner.stop()


def test_jobs_run_one_at_a_time(slow_studio: Studio) -> None:
    runner = JobRunner(JobStore(slow_studio.layout))
    runner.start()
    try:
        first = runner.submit("stylize", {"renders": ["cancelled"]})
        second = runner.submit("split", {"videos": ["clip"]})
        done = wait_for(runner.store, second.id, lambda j: j.is_finished)
        assert done.state == "done"
        assert runner.store.load(first.id).finished <= done.started  # type: ignore[operator]
    finally:
        runner.stop()


def test_a_failing_job_says_why_in_one_line(slow_studio: Studio) -> None:
    runner = JobRunner(JobStore(slow_studio.layout))
    runner.start()
    try:
        job = runner.submit("stylize", {"renders": ["no-such-render"]})
        failed = wait_for(runner.store, job.id, lambda j: j.is_finished)
        assert failed.state == "failed" and "no render named 'no-such-render'" in (failed.message or "")
        assert "\n" not in (failed.message or "")
    finally:
        runner.stop()


def test_a_job_id_is_never_a_path(slow_studio: Studio) -> None:
    from rotoscope.errors import RotoscopeError

    store = JobStore(slow_studio.layout)
    for bad in ("../../etc", "20261204-000000-abcdef/../x", ""):
        with pytest.raises(RotoscopeError, match="not a job id"):
            store.load(bad)


def test_a_queued_job_a_fork_committed_is_never_run(slow_studio: Studio) -> None:
    """A server runs only the jobs it queued itself; a record found queued is marked interrupted."""
    store = JobStore(slow_studio.layout)
    planted = store.create("stylize", {"renders": ["cancelled"]})  # as if it arrived through Git
    runner = JobRunner(store)
    runner.start()
    try:
        time.sleep(1.5)  # a loop turn or more
        found = store.load(planted.id)
        assert found.state == "interrupted" and found.started is None and found.pid is None
    finally:
        runner.stop()
