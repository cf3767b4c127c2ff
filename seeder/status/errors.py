"""The last warnings and errors the daemon logged, for the status page.

:class:`ErrorRing` is a logging handler (WARNING and above by default) that keeps the
last ``size`` records as :class:`LoggedError` lines in a bounded deque, plus a count of all
it has seen. ``emit`` never raises and never blocks on I/O; a message is cut to
``MAX_MESSAGE`` characters and to one line.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

__all__ = ["ErrorRing", "LoggedError"]

MAX_MESSAGE = 500


@dataclass(frozen=True, slots=True)
class LoggedError:
    time: float  # unix time of the record
    level: str  # WARNING, ERROR, CRITICAL
    logger: str
    message: str  # one line, at most MAX_MESSAGE characters


class ErrorRing(logging.Handler):
    """The last ``size`` records at ``level`` or above (thread-safe: handlers may log from
    worker threads)."""

    def __init__(self, size: int = 50, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self._ring: deque[LoggedError] = deque(maxlen=size)
        self._seen = 0
        self._ring_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                text += f" ({type(exc).__name__}: {exc})"
            line = " ".join(text.split())
            if len(line) > MAX_MESSAGE:
                line = line[: MAX_MESSAGE - 1] + "…"
            item = LoggedError(record.created, record.levelname, record.name, line)
        except Exception:  # a broken record must not break logging
            return
        with self._ring_lock:
            self._ring.append(item)
            self._seen += 1

    def recent(self) -> list[LoggedError]:
        """The kept records, newest first."""
        with self._ring_lock:
            return list(reversed(self._ring))

    @property
    def seen(self) -> int:
        """Records handled since start (kept or not)."""
        return self._seen
