"""Shared fixtures: a real moto S3 server in its own process, and buckets on it; s3rver (a
second S3 implementation, Node) the same way, and ``s3_server``: either, by parameter.

Importing this file points every AWS SDK in the test process away from real credentials
and config (dummy keys, no config files, no instance metadata), so no test can touch AWS.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port, wait_until
from tests.redis_server import RedisServer

# Set at import, before any test builds a boto3 client: real AWS is never reachable from tests.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}
os.environ.update(AWS_TEST_ENV)
os.environ.pop("AWS_PROFILE", None)

MOTO_START_DEADLINE = 30.0  # seconds; moto imports a lot, and CI has 2 busy cores
MOTO_START_ATTEMPTS = 3  # free_port() can race with another process


@dataclass
class MotoServer:
    """A running ``python -m moto.server`` on loopback (or another S3 server: ``kind``)."""

    endpoint_url: str  # e.g. "http://127.0.0.1:40123"
    host: str
    port: int
    pid: int
    log_path: str  # the server's stdout+stderr, for debugging a failed test
    kind: str = "moto"
    access_key: str = "testing"
    secret_key: str = "testing"

    def client(self, **kwargs: Any) -> Any:
        """A boto3 S3 client for this server: dummy creds, us-east-1, path-style."""
        import boto3
        from botocore.config import Config

        kwargs.setdefault(
            "config", Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
        )
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            **kwargs,
        )

    def create_bucket(self, *, versioned: bool = False, prefix: str = "t") -> str:
        """Create a bucket with a name unique to this call; return the name."""
        name = f"{prefix}-{uuid.uuid4().hex[:16]}"
        c = self.client()
        c.create_bucket(Bucket=name)
        if versioned:
            c.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as r:
            r.read()
        return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means it is up
    except OSError:
        return False


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when pytest dies, even by SIGKILL or SIGPIPE, so
    a moto server never outlives the session that started it (Linux prctl PDEATHSIG)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _start_moto(log) -> tuple[subprocess.Popen[bytes], int]:
    last: Exception | None = None
    for _ in range(MOTO_START_ATTEMPTS):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **AWS_TEST_ENV},
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        url = f"http://127.0.0.1:{port}/moto-api/data.json"
        try:
            wait_until(
                lambda: proc.poll() is not None or _answers(url),  # noqa: B023
                MOTO_START_DEADLINE,
                interval=0.05,
                what="moto server answers",
            )
        except TimeoutError as e:
            last = e
            _stop(proc)
            continue
        if proc.poll() is None:
            return proc, port
        last = RuntimeError(f"moto server exited with {proc.returncode} (port {port} taken?)")
    raise RuntimeError(f"could not start moto server: {last}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """A moto S3 server in a separate process for the whole session, stopped by PID."""
    with tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False) as log:
        proc, port = _start_moto(log)
        try:
            yield MotoServer(f"http://127.0.0.1:{port}", "127.0.0.1", port, proc.pid, log.name)
        finally:
            _stop(proc)
    os.unlink(log.name)


@pytest.fixture
def s3_bucket(moto_server: MotoServer) -> str:
    """A fresh, empty, unversioned bucket on the session's moto server (unique name)."""
    return moto_server.create_bucket()


@pytest.fixture
def s3_versioned_bucket(moto_server: MotoServer) -> str:
    """A fresh bucket with versioning enabled."""
    return moto_server.create_bucket(versioned=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for the whole session (no persistence), stopped by PID. Tests that
    stop it use their own (``RedisServer(tmp_path)``)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class MotoProcess:
    """A moto server of one test's own, which the test may stop (SIGSTOP: sockets stay
    open, nothing is answered: a hung backend) and resume (SIGCONT)."""

    server: MotoServer
    proc: subprocess.Popen[bytes]

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)


@pytest.fixture
def moto_process() -> Iterator[MotoProcess]:
    """A moto server process for this test alone; resumed and stopped by PID afterwards."""
    with tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False) as log:
        proc, port = _start_moto(log)
        try:
            yield MotoProcess(
                MotoServer(f"http://127.0.0.1:{port}", "127.0.0.1", port, proc.pid, log.name),
                proc,
            )
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)  # a stopped process ignores SIGTERM
            _stop(proc)
    os.unlink(log.name)


# s3rver (npm), run by Node from Debian; scripts/test.sh installs it here.
S3RVER_BIN = Path(os.environ.get("S3RVER_BIN", str(
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    / "s3torrent" / "node" / "node_modules" / ".bin" / "s3rver")))


def _start_s3rver(log, data_dir: str) -> tuple[subprocess.Popen[bytes], int]:
    if not S3RVER_BIN.exists():
        pytest.fail(f"s3rver is not installed at {S3RVER_BIN} (bash scripts/test.sh installs it)")
    last: Exception | None = None
    for _ in range(MOTO_START_ATTEMPTS):
        port = free_port()
        proc = subprocess.Popen(
            [str(S3RVER_BIN), "-d", data_dir, "-a", "127.0.0.1", "-p", str(port),
             "--no-vhost-buckets"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            # s3rver 3.7 makes continuation tokens with a cipher OpenSSL 3 retired
            env={**os.environ, "NODE_OPTIONS": "--openssl-legacy-provider"},
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        url = f"http://127.0.0.1:{port}/"
        try:
            wait_until(lambda: proc.poll() is not None or _answers(url),  # noqa: B023
                       MOTO_START_DEADLINE, interval=0.05, what="s3rver answers")
        except TimeoutError as e:
            last = e
            _stop(proc)
            continue
        if proc.poll() is None:
            return proc, port
        last = RuntimeError(f"s3rver exited with {proc.returncode} (port {port} taken?)")
    raise RuntimeError(f"could not start s3rver: {last}")


@pytest.fixture(scope="session")
def s3rver_server() -> Iterator[MotoServer]:
    """An s3rver process for the whole session (its own data dir), stopped by PID."""
    with tempfile.TemporaryDirectory(prefix="s3rver-") as data, \
            tempfile.NamedTemporaryFile(prefix="s3rver-", suffix=".log", delete=False) as log:
        proc, port = _start_s3rver(log, data)
        try:
            yield MotoServer(f"http://127.0.0.1:{port}", "127.0.0.1", port, proc.pid, log.name,
                             kind="s3rver", access_key="S3RVER", secret_key="S3RVER")
        finally:
            _stop(proc)
    os.unlink(log.name)


@pytest.fixture(params=["moto"])
def s3_server(request: pytest.FixtureRequest) -> MotoServer:
    """A running S3 server: moto unless a test parametrizes it (indirect) with "s3rver"."""
    name = "s3rver_server" if request.param == "s3rver" else "moto_server"
    return request.getfixturevalue(name)
