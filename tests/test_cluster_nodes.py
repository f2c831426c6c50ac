"""The Ray executor on two Ray nodes started on loopback (`ray start --head`, then a second
`ray start --address`), driven by the command line's `--ray ADDRESS`."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import forget_paintings, ledger, outputs, rotoscope

from rotoscope.executors import LocalExecutor
from rotoscope.pipeline import stylize
from rotoscope.studio import Studio

pytest.importorskip("ray")
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ray_command(*args: str) -> None:
    ray = str(Path(sys.executable).parent / "ray")
    done = subprocess.run([ray, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[str]:
    """A head node and a worker node, one CPU each, on 127.0.0.1, with token authentication (as
    a cluster should run: the nodes, and the driver, share a secret); their address."""
    saved = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    ray_command("start", "--head", f"--port={port}", "--include-dashboard=false", *common)
    try:
        ray_command("start", f"--address={address}", *common)
        yield address
    finally:
        ray_command("stop", "--force")
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


def test_two_nodes_paint_what_the_local_executor_paints(split_studio: Studio, two_nodes: str) -> None:
    stylize(split_studio, "look", LocalExecutor())
    expected = outputs(split_studio)
    forget_paintings(split_studio)
    done = rotoscope("stylize", "look", "--ray", two_nodes, cwd=split_studio.root)
    assert "24 stylized" in done.stderr  # what the command says goes to stderr
    assert outputs(split_studio) == expected
    nodes = Counter(str(line["node"]) for line in ledger(split_studio))
    assert len(nodes) == 2 and sum(nodes.values()) == 24  # both nodes painted
    log = json.loads((split_studio.root / ".rotoscope/logs/stylize-look.json").read_text())
    assert log["stylized"] == 24
    shutil.rmtree(split_studio.root / ".rotoscope" / "ledger")
