"""S3 remotes against a real S3 protocol server on loopback (moto_server), with real DVC and Git."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import dvc, git, repro, rotoscope

from rotoscope import manifest as manifests
from rotoscope.store import md5_file
from rotoscope.studio import Studio

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "rotoscope-test", "AWS_SECRET_ACCESS_KEY": "rotoscope-secret"}


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    process: subprocess.Popen

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", **_boto_keys())

    def keys(self, bucket: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _boto_keys() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """moto_server on 127.0.0.1, started for the test and stopped after it."""
    port = _free_port()
    binary = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.1)
    for key, value in {**CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    try:
        yield S3Server(f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        process.wait(timeout=10)


def blob_md5s(root: Path) -> set[str]:
    """Every blob the studio's manifests name (frames of every manifest)."""
    found: set[str] = set()
    for path in Studio(root).manifest_paths():
        found |= {frame.md5 for frame in manifests.load(path).frames}
    return found


def test_push_to_s3_and_pull_into_a_fresh_clone(
    render_studio: Studio, s3_server: S3Server, tmp_path: Path
) -> None:
    root = render_studio.root
    s3_server.client().create_bucket(Bucket="studio")
    repro(root)
    rotoscope("remote", "add", "s3", "s3://studio/renders", "--endpoint-url", s3_server.endpoint, cwd=root)
    config = (root / ".dvc/config").read_text()
    assert "s3://studio/renders" in config and s3_server.endpoint in config
    assert (
        CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in config and CREDENTIALS["AWS_ACCESS_KEY_ID"] not in config
    )
    git("add", "-A", cwd=root)
    git("commit", "-qm", "an S3 remote", cwd=root)
    dvc("push", cwd=root)

    keys = s3_server.keys("studio")
    stored = {key.split("/")[-2] + key.split("/")[-1] for key in keys if "/files/md5/" in key}
    assert blob_md5s(root) <= stored  # every frame of every manifest, each stored once
    assert len(keys) == len(set(keys))

    clone = tmp_path / "clone"
    git("clone", "-q", str(root), str(clone), cwd=tmp_path)
    dvc("pull", cwd=clone)
    for path in Studio(clone).manifest_paths():
        manifest = manifests.load(path)
        for frame in manifest.frames:
            assert md5_file(manifest.frame_path(clone, frame)) == frame.md5
    rotoscope("verify", cwd=clone)
    assert (clone / "renders/clip/look.mp4").read_bytes() == (root / "renders/clip/look.mp4").read_bytes()


def test_bad_remote_urls_are_refused(render_studio: Studio) -> None:
    root = render_studio.root
    before = (root / ".dvc/config").read_text()
    for args, problem in [
        (["s3", "http://not-s3/bucket"], "s3://bucket/prefix"),
        (["s3", "s3://bucket/x", "--endpoint-url", "localhost:9000"], "http(s)://host:port"),
        (["../evil", "s3://bucket/x"], "invalid remote name"),
    ]:
        failed = rotoscope("remote", "add", *args, cwd=root, check=False)
        assert failed.returncode == 1 and problem in failed.stderr, failed.stderr
    assert (root / ".dvc/config").read_text() == before


def test_push_to_a_missing_bucket_fails_clearly_then_succeeds(
    render_studio: Studio, s3_server: S3Server
) -> None:
    root = render_studio.root
    repro(root)
    rotoscope("remote", "add", "s3", "s3://not-made-yet/x", "--endpoint-url", s3_server.endpoint, cwd=root)
    failed = dvc("push", cwd=root, check=False)
    assert failed.returncode != 0
    assert (
        "not-made-yet" in failed.stderr
        or "NoSuchBucket" in failed.stderr
        or "bucket" in failed.stderr.lower()
    )
    s3_server.client().create_bucket(Bucket="not-made-yet")
    dvc("push", cwd=root)
    assert len(s3_server.keys("not-made-yet")) >= len(blob_md5s(root))


def test_cache_is_untouched_when_the_remote_is_unreachable(
    render_studio: Studio, s3_server: S3Server
) -> None:
    root = render_studio.root
    repro(root)
    s3_server.client().create_bucket(Bucket="studio")
    rotoscope("remote", "add", "s3", "s3://studio/x", "--endpoint-url", s3_server.endpoint, cwd=root)
    cache = root / ".dvc/cache"
    before = sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file())
    s3_server.process.terminate()
    s3_server.process.wait(timeout=10)
    env = {**os.environ, "AWS_MAX_ATTEMPTS": "1"}
    failed = subprocess.run(
        [sys.executable, "-m", "dvc", "push"], cwd=root, capture_output=True, text=True, env=env, check=False
    )
    assert failed.returncode != 0 and "ERROR" in failed.stderr
    assert sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file()) == before
    shutil.rmtree(root / "frames")
    dvc("checkout", cwd=root)  # everything is still in the local cache
    rotoscope("verify", cwd=root)
