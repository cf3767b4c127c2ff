"""A circuit breaker for one backend: a pure state machine, ``now`` passed in.

```
CLOSED --(threshold failures in a row)--> OPEN --(cooldown passed, next call)--> HALF_OPEN
   ^                                        ^                                      |
   +----------------(probe succeeds)--------+-----------(probe fails)--------------+
```
CLOSED lets every call through and counts consecutive failures (a success resets the
count). OPEN refuses every call until ``cooldown`` seconds after it opened; the first
call after that is the *probe* (HALF_OPEN): it alone goes through while the others are
refused. Its success closes the breaker; its failure opens it again for another
cooldown. A probe that never reports (its caller was cancelled) is given up after
``cooldown`` and the next call probes again.

A failure is "the backend did not answer in time or answered 5xx / throttled"; an answer
such as 404 or 403 is a success (the backend is there). Each transition is reported to
``on_change(old, new)`` (the shell logs it and sets metrics).
"""

from __future__ import annotations

import enum
from collections.abc import Callable

__all__ = ["Breaker", "State"]


class State(enum.IntEnum):
    """Breaker states; the value is the metric gauge's (0 closed, 1 half-open, 2 open)."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class Breaker:
    """One backend's breaker (see the module docstring). Not thread-safe: call it from
    one thread (the trio thread)."""

    __slots__ = ("_failures", "_on_change", "_probe_at", "_since", "cooldown", "state",
                 "threshold")

    def __init__(
        self,
        threshold: int = 3,
        cooldown: float = 5.0,
        on_change: Callable[[State, State], None] | None = None,
    ) -> None:
        if threshold < 1 or cooldown <= 0:
            raise ValueError("threshold must be >= 1 and cooldown > 0")
        self.threshold = threshold
        self.cooldown = cooldown
        self.state = State.CLOSED
        self._failures = 0
        self._since = 0.0  # when the breaker last opened
        self._probe_at = 0.0  # when the running probe was let through
        self._on_change = on_change

    def allow(self, now: float) -> bool:
        """Whether a call may go to the backend now. In OPEN past the cooldown (or in
        HALF_OPEN with a probe given up), this call becomes the probe."""
        state = self.state
        if state is State.CLOSED:
            return True
        if state is State.OPEN:
            if now - self._since < self.cooldown:
                return False
            self._probe_at = now
            self._move(State.HALF_OPEN)
            return True
        if now - self._probe_at >= self.cooldown:  # the probe never reported
            self._probe_at = now
            return True
        return False

    def retry_after(self, now: float) -> float:
        """Seconds until a call may be let through (0 when one may now)."""
        if self.state is State.OPEN:
            return max(0.0, self._since + self.cooldown - now)
        if self.state is State.HALF_OPEN:
            return max(0.0, self._probe_at + self.cooldown - now)
        return 0.0

    def success(self, now: float) -> None:
        """A call that was let through got an answer from the backend."""
        self._failures = 0
        if self.state is not State.CLOSED:
            self._move(State.CLOSED)

    def failure(self, now: float) -> None:
        """A call that was let through failed (timeout, unreachable, 5xx, throttled)."""
        if self.state is State.HALF_OPEN:
            self._since = now
            self._move(State.OPEN)
            return
        if self.state is State.OPEN:
            return  # a call let through before it opened, reporting late
        self._failures += 1
        if self._failures >= self.threshold:
            self._since = now
            self._move(State.OPEN)

    def _move(self, new: State) -> None:
        old, self.state = self.state, new
        if new is State.CLOSED:
            self._failures = 0
        if self._on_change is not None:
            self._on_change(old, new)
