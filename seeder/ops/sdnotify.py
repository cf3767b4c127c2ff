"""sd_notify(3) without libsystemd: readiness, status and watchdog datagrams to systemd.

The protocol is a few ``KEY=VALUE`` lines in one datagram sent to the AF_UNIX socket
named by ``$NOTIFY_SOCKET`` (a leading ``@`` means the Linux abstract namespace). When the
variable is unset (not run by systemd, or ``Type=simple``) every call is a no-op.

The pure part (address, message and watchdog-interval parsing) is separate from the one
socket call; the watchdog pinger is a trio task so that a wedged event loop stops the
pings and systemd restarts us, which is the point of a watchdog.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NoReturn

import trio

__all__ = [
    "Notifier",
    "parse_address",
    "render_message",
    "run_watchdog",
    "watchdog_interval",
]

log = logging.getLogger(__name__)

_KEY = re.compile(r"[A-Z0-9_]+")  # sd_notify(3) variable names


def parse_address(value: str | None) -> str | bytes | None:
    """The socket address for ``$NOTIFY_SOCKET``, or None when notifications are off.

    An absolute path is returned as is; ``@name`` becomes the abstract address
    ``b"\\0name"``. Anything else (empty, relative, ``vsock:``) is None: systemd itself
    only hands out the first two kinds to services on the host.
    """
    if not value:
        return None
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def render_message(fields: Mapping[str, str]) -> bytes:
    """``KEY=VALUE`` lines, newline-terminated, as one datagram.

    Newlines inside a value would start a new assignment, so they become spaces.
    Raises ValueError for a key that is empty or not ``[A-Z0-9_]``.
    """
    lines = []
    for key, value in fields.items():
        if not _KEY.fullmatch(key):
            raise ValueError(f"bad sd_notify key {key!r}")
        one_line = value.replace("\n", " ").replace("\r", " ")
        lines.append(f"{key}={one_line}\n")
    return "".join(lines).encode()


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of ``$WATCHDOG_USEC``, as sd_watchdog_enabled(3)
    recommends. None when there is no watchdog, or ``$WATCHDOG_PID`` names another process
    (the variables leaked into a child), or the values are malformed.
    """
    usec_text = environ.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    pid_text = environ.get("WATCHDOG_PID")
    if pid_text:
        try:
            if int(pid_text) != pid:
                return None
        except ValueError:
            return None
    try:
        usec = int(usec_text)
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


@dataclass(frozen=True, slots=True)
class Notifier:
    """Sends notifications to systemd; every method is a cheap no-op when ``address`` is None.

    Methods return True when a datagram was sent. Sending never raises: a failure is
    logged (a lost readiness message shows up as a start timeout in systemd, which is
    the right place to notice it) and False is returned.
    """

    address: str | bytes | None = None
    watchdog_seconds: float | None = None  # ping period (half of WATCHDOG_USEC), None: off
    clock_usec: Callable[[], int] = _monotonic_usec

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, pid: int | None = None) -> Notifier:
        """A notifier configured from ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``
        (``os.environ`` and ``os.getpid()`` by default). The environment is not modified."""
        env = os.environ if environ is None else environ
        return cls(
            address=parse_address(env.get("NOTIFY_SOCKET")),
            watchdog_seconds=watchdog_interval(env, os.getpid() if pid is None else pid),
        )

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, fields: Mapping[str, str]) -> bool:
        """Send ``fields`` as one datagram (see :func:`render_message`)."""
        if self.address is None:
            return False
        data = render_message(fields)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block the event loop on a full receive queue: a lost ping is
                # better than a stalled daemon.
                sock.setblocking(False)
                sock.sendto(data, self.address)
        except OSError as exc:
            log.warning("sd_notify to %r failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1: start-up finished (Type=notify), optionally with a STATUS= text."""
        fields = {"READY": "1"}
        if status is not None:
            fields["STATUS"] = status
        return self.notify(fields)

    def status(self, text: str) -> bool:
        """STATUS=<text>: one line shown by ``systemctl status``."""
        return self.notify({"STATUS": text})

    def watchdog(self) -> bool:
        """WATCHDOG=1: we are alive."""
        return self.notify({"WATCHDOG": "1"})

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: shutdown began."""
        fields = {"STOPPING": "1"}
        if status is not None:
            fields["STATUS"] = status
        return self.notify(fields)

    def reloading(self) -> bool:
        """RELOADING=1 with MONOTONIC_USEC (required by Type=notify-reload, harmless
        otherwise). Send :meth:`ready` when the reload is done."""
        return self.notify({"RELOADING": "1", "MONOTONIC_USEC": str(self.clock_usec())})

    def extend_timeout(self, seconds: float) -> bool:
        """EXTEND_TIMEOUT_USEC: ask systemd for ``seconds`` more before the current start
        or stop timeout fires (a slow first catalog open, a long drain)."""
        return self.notify({"EXTEND_TIMEOUT_USEC": str(max(0, int(seconds * 1_000_000)))})


async def run_watchdog(
    notifier: Notifier,
    *,
    task_status: trio.TaskStatus[float | None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Ping WATCHDOG=1 every ``notifier.watchdog_seconds`` until cancelled.

    Reports the period (None when the watchdog is off) through ``task_status.started``
    after the first ping. With the watchdog off it just sleeps, so that a parent that
    treats any returning service as a failure stays happy. Runs in the trio loop on
    purpose: if the loop hangs, the pings stop and systemd restarts the service.
    Never returns unless cancelled; never raises otherwise.
    """
    period = notifier.watchdog_seconds
    if period is None or not notifier.enabled:
        task_status.started(None)
        await trio.sleep_forever()
    notifier.watchdog()
    task_status.started(period)
    while True:
        await trio.sleep(period)
        notifier.watchdog()
