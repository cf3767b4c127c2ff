"""Upload and origin rates over the last hour, from the daemon's running byte totals.

:class:`RateHistory` is fed ``(now, uploaded_total, origin_total)`` every few seconds (the
sampler in :mod:`seeder.status.sampler`) and keeps the samples in a bounded ring: memory is
fixed by ``(window + smooth) / every`` whatever the uptime. Each point's rate is the mean over
the last ``smooth`` seconds before it (at least one sample interval): the totals it reads
move in steps (libtorrent reports its session totals every few seconds, a web seed response
counts as it is sent), and a rate between two adjacent samples alone zig-zags between zero
and twice the real rate. A total that went down was reset (a new libtorrent session): its
whole value counts as new, as ``seeder.metrics.counter_delta`` does. Pure: ``now`` is an
argument.
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


@dataclass(frozen=True, slots=True)
class _Sample:
    t: float
    raw: tuple[int, int]  # the totals as read
    sums: tuple[int, int]  # bytes counted since the first sample, resets folded in


class RateHistory:
    """The last ``window`` seconds of rates, sampled about every ``every`` seconds and each
    averaged over ``smooth`` seconds.

    ``add`` ignores a sample not later than the previous one (a clock that did not move);
    the first sample only sets the baseline. ``points(now)`` are the ones within the window,
    oldest first.
    """

    def __init__(self, window: float = 3600.0, every: float = 10.0,
                 smooth: float = 30.0) -> None:
        if window <= 0 or every <= 0 or smooth < 0:
            raise ValueError("window and every must be positive, smooth not negative")
        self.window = float(window)
        self.every = float(every)
        self.smooth = float(smooth)
        self._samples: deque[_Sample] = deque(maxlen=int((window + smooth) // every) + 3)

    def add(self, now: float, uploaded: int, origin: int) -> None:
        last = self._samples[-1] if self._samples else None
        if last is None:
            self._samples.append(_Sample(now, (uploaded, origin), (0, 0)))
            return
        if now <= last.t:
            return
        sums = (last.sums[0] + _delta(last.raw[0], uploaded),
                last.sums[1] + _delta(last.raw[1], origin))
        self._samples.append(_Sample(now, (uploaded, origin), sums))

    def points(self, now: float) -> list[RatePoint]:
        samples = list(self._samples)
        out: list[RatePoint] = []
        k = 0  # the sample each rate is measured from: the latest at least `smooth` before
        for i in range(1, len(samples)):
            s = samples[i]
            while k + 1 < i and samples[k + 1].t <= s.t - self.smooth:
                k += 1
            base = samples[k]  # or the oldest kept, early on
            if s.t < now - self.window:
                continue
            dt = s.t - base.t
            out.append(RatePoint(s.t, (s.sums[0] - base.sums[0]) / dt,
                                 (s.sums[1] - base.sums[1]) / dt))
        return out

    def latest(self) -> RatePoint | None:
        if len(self._samples) < 2:
            return None
        return self.points(self._samples[-1].t)[-1]


def _delta(last: int, now: int) -> int:
    return now - last if now >= last else now
