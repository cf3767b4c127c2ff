"""Small helpers shared by tests: a free loopback port and a bounded poller."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago.

    Only for programs that cannot bind port 0 themselves and report it (another process
    may take the port in between: callers that start a server should retry on failure).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(
    predicate: Callable[[], bool], deadline: float, *, interval: float = 0.02, what: str = ""
) -> None:
    """Poll ``predicate`` until it returns true or ``deadline`` seconds have passed.

    Raises TimeoutError (naming ``what``) at the deadline. Exceptions from ``predicate``
    propagate. The loop is bounded by the deadline; ``interval`` only spaces the polls.
    """
    end = time.monotonic() + deadline
    while True:
        if predicate():
            return
        if time.monotonic() >= end:
            raise TimeoutError(f"not true within {deadline} s: {what or predicate!r}")
        time.sleep(interval)
