"""seeder.store.breaker: the per-bucket circuit breaker, time passed in."""

from __future__ import annotations

import pytest

from seeder.store.breaker import Breaker, State


def _breaker() -> tuple[Breaker, list[tuple[State, State]]]:
    changes: list[tuple[State, State]] = []
    return Breaker(3, 5.0, lambda old, new: changes.append((old, new))), changes


def test_opens_after_threshold_failures_in_a_row() -> None:
    b, changes = _breaker()
    for t in range(2):
        assert b.allow(t)
        b.failure(t)
    b.success(2)  # resets the count
    for t in range(3, 5):
        b.failure(t)
    assert b.state is State.CLOSED
    b.failure(5)
    assert b.state is State.OPEN
    assert changes == [(State.CLOSED, State.OPEN)]
    assert not b.allow(9.9)
    assert b.retry_after(9.0) == pytest.approx(1.0)


def test_one_probe_after_the_cooldown_closes_on_success() -> None:
    b, changes = _breaker()
    for _ in range(3):
        b.failure(0)
    assert b.allow(5.0)  # the probe
    assert b.state is State.HALF_OPEN
    assert not b.allow(5.1)  # the others still fail fast
    b.success(5.2)
    assert b.state is State.CLOSED
    assert b.allow(5.3)
    assert changes == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]


def test_a_failed_probe_opens_again_for_another_cooldown() -> None:
    b, changes = _breaker()
    for _ in range(3):
        b.failure(0)
    assert b.allow(6)
    b.failure(7)
    assert b.state is State.OPEN
    assert changes[-2:] == [(State.OPEN, State.HALF_OPEN), (State.HALF_OPEN, State.OPEN)]
    assert not b.allow(11.9)
    assert b.allow(12)


def test_a_probe_that_never_reports_is_replaced() -> None:
    b, _ = _breaker()
    for _ in range(3):
        b.failure(0)
    assert b.allow(5)
    assert not b.allow(9)
    assert b.allow(10)  # the first probe's caller went away
    assert b.state is State.HALF_OPEN


def test_late_failures_while_open_do_not_extend_it() -> None:
    b, _ = _breaker()
    for _ in range(3):
        b.failure(0)
    b.failure(4)  # a call let through before it opened
    assert b.allow(5)


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        Breaker(0)
    with pytest.raises(ValueError):
        Breaker(1, 0)
