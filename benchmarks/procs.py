"""Child processes of the benchmark scripts: a free port, "does it answer HTTP yet", a stop.

One copy for the scripts that start moto, s3rver or a daemon (bench_events,
bench_listing, bench_s3_generation, bench_small_s3, bench_scale); ``Proc`` (a child
with its log file, stopped by PID) for the tracker benchmarks. ``free_port`` is the
suite's (tests/helpers.py); bench_tracker keeps its own, which must be free for UDP too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers import free_port  # noqa: E402

__all__ = ["Proc", "answers", "free_port", "stop"]


def answers(url: str) -> bool:
    """True once something answers HTTP at ``url`` (any status, errors included)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as r:
            r.read()
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def stop(proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """SIGTERM, ``grace`` seconds to exit, then SIGKILL; by PID, bounded."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class Proc:
    """A child process we own, stopped by its PID (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, cmd: list[str], cwd: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log = open(cwd / f"{name}.log", "wb")  # closed in stop()
        self.popen = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        self.log.close()
