"""Child processes of the benchmark scripts: a free port, "does it answer HTTP yet", a stop.

One copy for the scripts that start moto, s3rver or a daemon (bench_events,
bench_listing, bench_s3_generation, bench_small_s3, bench_scale). ``free_port`` is the
suite's (tests/helpers.py); bench_tracker keeps its own, which must be free for UDP too.
"""

from __future__ import annotations

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

__all__ = ["answers", "free_port", "stop"]


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
