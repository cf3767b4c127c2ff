"""libtorrent's alert queue bridged into trio, and which alerts count as problems.

``ses.set_alert_fd(fd)`` makes libtorrent write a byte to one end of a socketpair whenever its
alert queue becomes non-empty; `AlertBridge` waits on the other end with
``trio.lowlevel.wait_readable``, so there is no polling loop and no thread. Every popped alert
goes to one callback (the session's dispatch); the bridge owns the socketpair, nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable

import libtorrent as lt
import trio

from seeder.seed.settings import SeedError

__all__ = ["PROBLEM_ALERTS", "AlertBridge", "is_problem", "log_problem"]

log = logging.getLogger("seeder.seed.session")  # the session's lines, whichever module

# Alerts logged as warnings and counted in SeedStats.errors (name -> log label).
PROBLEM_ALERTS: dict[type, str] = {
    lt.tracker_error_alert: "tracker error",
    lt.scrape_failed_alert: "scrape failed",
    lt.url_seed_alert: "web seed failed",
    lt.hash_failed_alert: "hash failed",
    lt.file_error_alert: "file error",
    lt.torrent_error_alert: "torrent error",
    lt.fastresume_rejected_alert: "resume data rejected",
    lt.listen_failed_alert: "listen failed",
    lt.save_resume_data_failed_alert: "save resume data failed",
    lt.storage_moved_failed_alert: "storage move failed",
    lt.torrent_delete_failed_alert: "delete failed",
}


def is_problem(a: lt.alert) -> bool:
    """True for the alerts `log_problem` reports: the listed kinds and any error alert."""
    return type(a) in PROBLEM_ALERTS or bool(a.category() & lt.alert_category.error)


def log_problem(a: lt.alert) -> None:
    """Log a problem alert as one warning line, labelled by kind."""
    label = PROBLEM_ALERTS.get(type(a), a.what())
    log.warning("libtorrent %s: %s", label, a.message())


class AlertBridge:
    """The socketpair libtorrent signals on, and the waits on it. Close it when done.

    ``session()`` gives the running lt.session (raises RuntimeError once it is gone);
    ``on_alert`` is called, on the trio thread, with every alert popped.
    """

    def __init__(
        self, session: Callable[[], lt.session], on_alert: Callable[[lt.alert], None]
    ) -> None:
        self.session = session
        self.on_alert = on_alert
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)

    def attach(self, ses: lt.session) -> None:
        """Make ``ses`` signal this bridge when its alert queue becomes non-empty."""
        ses.set_alert_fd(self._wsock.fileno())

    def close(self) -> None:
        self._rsock.close()
        self._wsock.close()

    def drain(self) -> None:
        """Hand every alert queued now to ``on_alert`` (no wait)."""
        for a in self.session().pop_alerts():
            self.on_alert(a)

    async def until_listening(self) -> int:
        """Dispatch alerts until the session listens; its port. SeedError with libtorrent's
        messages when every listen attempt failed. Unbounded: the caller sets the deadline."""
        ses = self.session()
        failures: list[str] = []
        while True:
            for a in ses.pop_alerts():
                self.on_alert(a)
                if isinstance(a, lt.listen_failed_alert):
                    failures.append(a.message())
            if ses.is_listening() and ses.listen_port():
                return ses.listen_port()
            if failures and not ses.is_listening():
                raise SeedError("; ".join(failures))
            await self.wait()

    async def wait(self) -> None:
        """Return once libtorrent signalled that alerts are queued."""
        await trio.lowlevel.wait_readable(self._rsock)
        # Drain before popping: a notification that arrives after the pop is not lost.
        with contextlib.suppress(BlockingIOError):
            while self._rsock.recv(4096):
                pass

    async def pump(self) -> None:
        """Wait for alerts, then dispatch every queued one."""
        await self.wait()
        self.drain()
