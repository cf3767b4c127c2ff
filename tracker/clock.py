"""The trio clock the tracker's processes run on: CLOCK_MONOTONIC itself.

trio's default clock adds a random offset per run (to catch code that mixes it with
``time.monotonic``). BEP 15 connection ids are a keyed hash of the client and a time
bucket, valid for two minutes; for an id issued before a restart to stay valid after it,
the buckets must come from a clock that a new process reads the same: the system-wide
monotonic clock (until a reboot), with the key kept across restarts (``tracker.secret``).
"""

from __future__ import annotations

import time

import trio

__all__ = ["MonotonicClock"]


class MonotonicClock(trio.abc.Clock):
    """``trio.run(..., clock=MonotonicClock())``: ``trio.current_time() == time.monotonic()``."""

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return time.monotonic()

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return deadline - time.monotonic()
