"""A real ``redis-server`` for the tests: on a free loopback port, no persistence, stopped by
PID. It can be stopped and started again on the same port (a Redis outage)."""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.helpers import free_port, wait_until

START_DEADLINE = 20.0
START_ATTEMPTS = 3


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """``redis-server`` bound to 127.0.0.1. ``url(db)`` names one of its 16 databases."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (bash scripts/test.sh installs it)")
        self.exe = exe
        self.workdir = workdir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        """Start (again, on the same port once it had one); wait until it answers PING."""
        last = ""
        for _ in range(START_ATTEMPTS):
            port = self.port or free_port()
            log = open(self.workdir / "redis.log", "ab")
            self.proc = subprocess.Popen(
                [self.exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
            log.close()
            proc = self.proc
            wait_until(lambda: proc.poll() is not None or _answers(port),  # noqa: B023
                       START_DEADLINE, interval=0.02, what="redis-server answers")
            if proc.poll() is None:
                self.port = port
                return
            last = f"exit code {proc.returncode}"
            if self.port:
                break
        raise RuntimeError(f"could not start redis-server: {last}")

    def stop(self) -> None:
        """Stop it by PID (SIGTERM, then SIGKILL)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
