"""When a long hashing job logs a progress line (pure: the caller passes the clock)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ProgressLog"]

PROGRESS_EVERY_SECONDS = 10.0
PROGRESS_EVERY_FRACTION = 0.10
# A job done within this long logs no progress lines, only "generated ... in N s".
PROGRESS_AFTER_SECONDS = 5.0


@dataclass(slots=True)
class ProgressLog:
    """Decides when a long hashing job deserves a progress line: once it has run 5 s, at
    every 10 % step and at least every 10 s.

    ``update(done, now)`` returns the line to log, or None. Pure: the caller passes the clock.
    """

    name: str
    size: int
    started: float
    _last_time: float = field(init=False)
    _last_step: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._last_time = self.started

    def update(self, done: int, now: float) -> str | None:
        if done >= self.size or now - self.started < PROGRESS_AFTER_SECONDS:
            return None
        step = int(done / self.size / PROGRESS_EVERY_FRACTION)
        if step <= self._last_step and now - self._last_time < PROGRESS_EVERY_SECONDS:
            return None
        self._last_step = max(step, self._last_step)
        self._last_time = now
        elapsed = max(now - self.started, 1e-9)
        return (f"hashing {self.name}: {100 * done // self.size}% "
                f"({done / 1e6:.0f} of {self.size / 1e6:.0f} MB, {done / elapsed / 1e6:.0f} MB/s)")
