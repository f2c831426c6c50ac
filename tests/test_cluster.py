"""The Ray executor on a real local Ray cluster: the same frames and manifest as the local
executor, reuse across executors, and a worker killed mid-run."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from conftest import forget_paintings, ledger, outputs

from rotoscope.compute import ComputeSettings
from rotoscope.executors import LocalExecutor
from rotoscope.executors.ray_pool import RayExecutor
from rotoscope.pipeline import stylize
from rotoscope.studio import Studio

ray = pytest.importorskip("ray")

RAY_SETTINGS = ComputeSettings(executor="ray")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """One local Ray for the module: two CPUs, no dashboard (each actor takes one CPU, and the
    driver, this process, none, so nothing waits on a CPU the actors hold)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_paints_the_same_frames_and_manifest_as_local(split_studio: Studio, ray_cluster: None) -> None:
    local = stylize(split_studio, "look", LocalExecutor())
    expected = outputs(split_studio)
    forget_paintings(split_studio)
    on_ray = stylize(split_studio, "look", RayExecutor(RAY_SETTINGS))
    assert (local.stylized, on_ray.stylized) == (24, 24)
    assert outputs(split_studio) == expected  # byte for byte
    workers = Counter(str(line["worker"]) for line in ledger(split_studio))
    assert len(workers) == 2 and sum(workers.values()) == 24  # two actors shared the frames
    assert all(line["hardware"] == "cpu-1" for line in ledger(split_studio))  # one thread each
    shutil.rmtree(split_studio.root / ".rotoscope" / "stylized")  # the ledger kept: rates known
    (estimate,) = split_studio.estimate(["look"], workers=2)
    on_two = sum(float(line["seconds"]) for line in ledger(split_studio)) / 2
    cluster = estimate.placements[1]
    assert cluster.hardware == "cpu-1" and cluster.seconds == pytest.approx(on_two)


def test_a_render_made_locally_paints_nothing_on_ray(split_studio: Studio, ray_cluster: None) -> None:
    stylize(split_studio, "look", LocalExecutor())
    expected = outputs(split_studio)
    again = stylize(split_studio, "look", RayExecutor(RAY_SETTINGS))
    assert again.stylized == 0 and again.reused == 24
    assert outputs(split_studio) == expected


def test_a_worker_killed_mid_run_loses_nothing_and_repaints_only_its_frame(
    split_studio: Studio, ray_cluster: None
) -> None:
    stylize(split_studio, "look", LocalExecutor())
    expected = outputs(split_studio)
    forget_paintings(split_studio)
    killed: list[int] = []

    def kill_the_first_painter() -> None:
        folder = split_studio.root / ".rotoscope" / "ledger"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for file in folder.glob("*.jsonl") if folder.is_dir() else []:
                pid = int(file.stem.rsplit("-", 1)[1])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_the_first_painter)
    killer.start()
    result = stylize(split_studio, "look", RayExecutor(RAY_SETTINGS))
    killer.join()
    assert killed, "no painter was seen working"
    assert outputs(split_studio) == expected  # nothing lost, nothing different
    painted = Counter(str(line["key"]) for line in ledger(split_studio))
    assert len(painted) == 24  # every painting made
    twice = sum(count - 1 for count in painted.values())
    assert twice <= 1  # at most the killed actor's one frame in flight painted again
    by_killed = [line for line in ledger(split_studio) if str(line["worker"]).endswith(f":{killed[0]}")]
    assert 1 <= len(by_killed) < 24  # it was killed while there was work left
    assert result.stylized >= 24 - len(by_killed)


def test_a_refused_model_on_a_worker_is_one_line_naming_it(split_studio: Studio, ray_cluster: None) -> None:
    """A worker's refusal comes back as the same error the local executor gives."""
    model = split_studio.root / "filters" / "swirls" / "model.npy"
    model.write_bytes(model.read_bytes()[:-8] + b"\0" * 8)  # not the card's md5 any more
    from rotoscope.errors import RotoscopeError

    with pytest.raises(RotoscopeError, match=r"model\.npy"):
        stylize(split_studio, "look", RayExecutor(RAY_SETTINGS))
