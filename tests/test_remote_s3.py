"""S3 remotes against a real S3 protocol server on loopback (moto_server), with real DVC and Git."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import dvc, git, repro, rotoscope

from rotoscope import manifest as manifests
from rotoscope.store import md5_file
from rotoscope.studio import Studio

if TYPE_CHECKING:
    from botocore.client import BaseClient

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "rotoscope-test", "AWS_SECRET_ACCESS_KEY": "rotoscope-secret"}


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    process: subprocess.Popen

    def client(self) -> BaseClient:
        import boto3

        session = boto3.session.Session()  # a new one: the default session keeps the first keys it saw
        return session.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def keys(self, bucket: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_moto(extra_env: dict[str, str] | None = None) -> S3Server:
    port = _free_port()
    binary = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(extra_env or {})},
    )
    _wait_for_port(port, process)
    return S3Server(f"http://127.0.0.1:{port}", process)


def _wait_for_port(port: int, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert process is None or process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, f"nothing listens on port {port}"
            time.sleep(0.1)


def _stop(server: S3Server) -> None:
    server.process.terminate()
    server.process.wait(timeout=10)


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """moto_server on 127.0.0.1, started for the test and stopped after it."""
    for key, value in {**CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "2"}.items():
        monkeypatch.setenv(key, value)
    server = start_moto()
    try:
        yield server
    finally:
        _stop(server)


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
        (["s3", "s3:///no-bucket"], "s3://bucket/prefix"),
        (["s3", "s3://Upper_Case/x"], "s3://bucket/prefix"),
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
    _stop(s3_server)
    env = {**os.environ, "AWS_MAX_ATTEMPTS": "1"}
    failed = subprocess.run(
        [sys.executable, "-m", "dvc", "push"], cwd=root, capture_output=True, text=True, env=env, check=False
    )
    assert failed.returncode != 0 and "ERROR" in failed.stderr
    assert sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file()) == before
    shutil.rmtree(root / "frames")
    dvc("checkout", cwd=root)  # everything is still in the local cache
    rotoscope("verify", cwd=root)


class CuttableProxy:
    """A TCP relay to the S3 server that can cut every connection after so many bytes, like a
    server stopped in the middle of a push, and come back on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = _free_port()
        self.cut_after: int | None = None
        self.relayed = 0
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()

    def start(self, cut_after: int | None = None) -> None:
        self.cut_after, self.relayed = cut_after, 0
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            for held in [self._listener, *self._sockets]:
                if held is not None:
                    with contextlib.suppress(OSError):
                        held.shutdown(socket.SHUT_RDWR)
                    held.close()
            self._sockets, self._listener = [], None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                with self._lock:
                    self.relayed += len(data)
                    cut = self.cut_after is not None and self.relayed > self.cut_after
                if cut:
                    self.stop()
                    return
        except OSError:
            return


def test_push_cut_off_midway_completes_when_run_again(
    render_studio: Studio, s3_server: S3Server, tmp_path: Path
) -> None:
    root = render_studio.root
    repro(root)
    s3_server.client().create_bucket(Bucket="studio")
    proxy = CuttableProxy(int(s3_server.endpoint.rsplit(":", 1)[1]))
    total = sum(
        md5_path.stat().st_size for md5_path in (root / ".dvc/cache").rglob("*") if md5_path.is_file()
    )
    proxy.start(cut_after=total // 3)
    rotoscope(
        "remote", "add", "s3", "s3://studio/x", "--endpoint-url", f"http://127.0.0.1:{proxy.port}", cwd=root
    )
    git("add", "-A", cwd=root)
    git("commit", "-qm", "remote", cwd=root)
    failed = dvc("push", "-j", "1", cwd=root, check=False)
    assert failed.returncode != 0 and "ERROR" in failed.stderr
    assert 0 < len(s3_server.keys("studio")) < len(blob_md5s(root))  # it really stopped midway

    proxy.stop()
    proxy.start()  # the server is back
    dvc("push", cwd=root)
    clone = tmp_path / "clone"
    git("clone", "-q", str(root), str(clone), cwd=tmp_path)
    dvc("pull", cwd=clone)
    for path in Studio(clone).manifest_paths():
        manifest = manifests.load(path)
        assert all(md5_file(manifest.frame_path(clone, f)) == f.md5 for f in manifest.frames)
    proxy.stop()


def test_wrong_or_missing_credentials_fail_clearly(
    render_studio: Studio, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import boto3

    server = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "3"})  # then every request must be signed by a user
    try:
        setup = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup", "region_name": "us-east-1"}
        iam = boto3.client("iam", endpoint_url=server.endpoint, **setup)
        iam.create_user(UserName="artist")
        allow_all = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
        iam.put_user_policy(UserName="artist", PolicyName="studio", PolicyDocument=allow_all)
        key = iam.create_access_key(UserName="artist")["AccessKey"]
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        server.client().create_bucket(Bucket="studio")

        root = render_studio.root
        repro(root)
        rotoscope("remote", "add", "s3", "s3://studio/x", "--endpoint-url", server.endpoint, cwd=root)
        cache_before = sorted(p.name for p in (root / ".dvc/cache").rglob("*") if p.is_file())

        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        wrong = dvc("push", cwd=root, check=False)
        assert wrong.returncode != 0 and "ERROR" in wrong.stderr
        assert "SignatureDoesNotMatch" in wrong.stderr or "Forbidden" in wrong.stderr or "403" in wrong.stderr

        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        missing = dvc("push", cwd=root, check=False)
        assert missing.returncode != 0 and "ERROR" in missing.stderr
        assert "credentials" in missing.stderr.lower() or "Forbidden" in missing.stderr, missing.stderr

        assert sorted(p.name for p in (root / ".dvc/cache").rglob("*") if p.is_file()) == cache_before
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        dvc("push", cwd=root)  # the right key: everything goes
        assert len(server.keys("studio")) >= len(blob_md5s(root))
    finally:
        _stop(server)
