"""The edge between a store and its backend: every blocking call of one bucket goes
through one :class:`BackendGuard`, which bounds it in three ways.

- **Threads**: the bucket's own ``trio.CapacityLimiter``: a hung backend fills its own
  bucket's threads, never another bucket's nor the trio thread (cached torrents, the
  tracker and the web seed from the seed cache keep being served).
- **Time**: a call answers within ``budget`` seconds (the retry budget, default 9 s),
  counting the wait for a thread, the backend's connect and read timeouts and its
  retries: past it the caller gets StoreUnavailable and the thread is abandoned (it ends
  at its own socket timeouts, holding its limiter slot until then, so threads never
  pile up past the limiter).
- **Failures**: a :class:`~seeder.store.breaker.Breaker` per bucket. While it is open a
  call fails at once with :class:`CircuitOpen` (a StoreUnavailable with the seconds
  until the next probe), without a thread or a socket. Calls still waiting for a thread
  when it opens (queued behind the hung calls that opened it) fail the same way at that
  moment, instead of waiting out their budget; one that got a thread meanwhile checks the
  breaker before asking the backend.

Each breaker transition is logged (one line) and reported to ``on_change(bucket, old,
new)`` (the daemon's metrics).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TypeVar

import trio

from seeder.store import StoreError, StoreUnavailable
from seeder.store.breaker import Breaker, State

__all__ = [
    "BREAKER_COOLDOWN",
    "BREAKER_THRESHOLD",
    "RETRY_BUDGET",
    "BackendGuard",
    "ChangeHook",
    "CircuitOpen",
]

log = logging.getLogger(__name__)

RETRY_BUDGET = 9.0  # seconds per store call, all attempts included (issue 14: under 10 s)
BREAKER_THRESHOLD = 3  # failed calls in a row that open a bucket's breaker
BREAKER_COOLDOWN = 5.0  # seconds open before one probe call is let through

T = TypeVar("T")
ChangeHook = Callable[[str, State, State], None]


class CircuitOpen(StoreUnavailable):
    """The bucket's breaker is open: the backend was not asked. ``retry_after``: whole
    seconds until the next probe may go through (at least 1)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Opened(Exception):
    """A call waiting for a thread was woken because the breaker opened."""


class _Queue:
    """The bucket's thread limiter as ``trio.to_thread.run_sync`` uses it (the
    CapacityLimiter protocol), with its waiting calls wakeable: :meth:`wake_all` makes
    each one's acquire raise :class:`_Opened`, none is granted a thread."""

    __slots__ = ("limiter", "waiting")

    def __init__(self, threads: int) -> None:
        self.limiter = trio.CapacityLimiter(max(1, threads))
        self.waiting: set[trio.CancelScope] = set()

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        with trio.CancelScope() as scope:
            self.waiting.add(scope)
            try:
                await self.limiter.acquire_on_behalf_of(borrower)
                return
            finally:
                self.waiting.discard(scope)
        raise _Opened  # woken by wake_all (an outer deadline propagates as Cancelled)

    def release_on_behalf_of(self, borrower: object) -> None:
        self.limiter.release_on_behalf_of(borrower)

    def wake_all(self) -> None:
        for scope in self.waiting:
            scope.cancel()


class BackendGuard:
    """Threads, time budget and breaker of one bucket (see the module docstring)."""

    def __init__(
        self,
        bucket: str,
        *,
        threads: int,
        budget: float = RETRY_BUDGET,
        threshold: int = BREAKER_THRESHOLD,
        cooldown: float = BREAKER_COOLDOWN,
        on_change: ChangeHook | None = None,
    ) -> None:
        self.bucket = bucket
        self.budget = budget
        self.queue = _Queue(threads)
        self.on_change = on_change
        self.breaker = Breaker(threshold, cooldown, self._changed)

    def _changed(self, old: State, new: State) -> None:
        if new is State.OPEN:
            self.queue.wake_all()  # they would wait behind hung calls: fail them now
            log.warning("backend of bucket %s: circuit open (failing fast for %.0f s, then "
                        "one probe)", self.bucket, self.breaker.cooldown)
        elif new is State.HALF_OPEN:
            log.info("backend of bucket %s: circuit half-open (probing)", self.bucket)
        else:
            log.warning("backend of bucket %s: circuit closed (backend answers again)",
                        self.bucket)
        if self.on_change is not None:
            try:
                self.on_change(self.bucket, old, new)
            except Exception:
                log.exception("breaker hook failed")

    def _refusal(self, what: str, now: float) -> CircuitOpen:
        wait = max(1, math.ceil(self.breaker.retry_after(now)))
        return CircuitOpen(f"{what}: backend unavailable (circuit open)", wait)

    async def run_sync(self, fn: Callable[[], T], what: str) -> T:
        """``fn()`` in one of the bucket's threads, within the budget, if the breaker
        allows. ``fn`` raises only StoreError (the store translates); this raises what it
        raises, StoreUnavailable past the budget, or CircuitOpen."""
        breaker = self.breaker
        if not breaker.allow(trio.current_time()):
            raise self._refusal(what, trio.current_time())

        def call() -> T:
            # Queued behind hung calls when the breaker opened: do not ask again.
            if breaker.state is State.OPEN:
                raise CircuitOpen(f"{what}: backend unavailable (circuit open)", 1)
            return fn()

        try:
            with trio.fail_after(self.budget):
                result = await trio.to_thread.run_sync(
                    call, limiter=self.queue, abandon_on_cancel=True  # type: ignore[arg-type]
                )
        except _Opened:
            raise self._refusal(what, trio.current_time()) from None
        except trio.TooSlowError:
            breaker.failure(trio.current_time())
            raise StoreUnavailable(f"{what}: no answer within {self.budget:g} s") from None
        except CircuitOpen as exc:
            exc.retry_after = max(1, math.ceil(breaker.retry_after(trio.current_time())))
            raise
        except StoreUnavailable:
            breaker.failure(trio.current_time())
            raise
        except StoreError:
            breaker.success(trio.current_time())  # an answer (404, 403, 412...)
            raise
        breaker.success(trio.current_time())
        return result
