"""Upload and origin rates over the last hour, from the daemon's running byte totals.

:class:`RateHistory` is fed ``(now, uploaded_total, origin_total)`` every few seconds (the
sampler in :mod:`seeder.status.sampler`) and keeps the rates between consecutive samples in
a bounded ring: memory is fixed by ``window / every`` whatever the uptime. A total that went
down was reset (a new libtorrent session): its whole value counts as new, as
``seeder.metrics.counter_delta`` does. Pure: ``now`` is an argument.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["RateHistory", "RatePoint"]


@dataclass(frozen=True, slots=True)
class RatePoint:
    """Mean rates (bytes/s) over the interval ending at ``t`` (monotonic seconds)."""

    t: float
    upload: float
    origin: float


class RateHistory:
    """The last ``window`` seconds of rates, sampled about every ``every`` seconds.

    ``add`` ignores a sample not later than the previous one (a clock that did not move);
    the first sample only sets the baseline. ``points(now)`` are the ones within the window,
    oldest first.
    """

    def __init__(self, window: float = 3600.0, every: float = 10.0) -> None:
        if window <= 0 or every <= 0:
            raise ValueError("window and every must be positive")
        self.window = float(window)
        self.every = float(every)
        self._points: deque[RatePoint] = deque(maxlen=int(window // every) + 2)
        self._last: tuple[float, int, int] | None = None

    def add(self, now: float, uploaded: int, origin: int) -> None:
        last = self._last
        if last is not None and now <= last[0]:
            return
        self._last = (now, uploaded, origin)
        if last is None:
            return
        dt = now - last[0]
        self._points.append(RatePoint(
            now, _delta(last[1], uploaded) / dt, _delta(last[2], origin) / dt
        ))

    def points(self, now: float) -> list[RatePoint]:
        start = now - self.window
        return [p for p in self._points if p.t >= start]

    def latest(self) -> RatePoint | None:
        return self._points[-1] if self._points else None


def _delta(last: int, now: int) -> int:
    return now - last if now >= last else now
