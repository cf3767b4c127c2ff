"""SwarmBudget: full speed until the swarm had its copies and holds every piece (pure)."""

from __future__ import annotations

import pytest

from seeder.swarm_budget import SwarmBudget, SwarmView, covers

T = "ab" * 20
SIZE = 1000
TRICKLE = 4096


def view(sent: int, *, covered: bool = True, **holdings: int) -> SwarmView:
    return SwarmView(holdings=holdings or {"a": 1}, covered=covered, sent=sent, size=SIZE)


def budget(copies: float = 2.0) -> SwarmBudget:
    return SwarmBudget(copies, stall_after=5.0, trickle_rate=TRICKLE)


def test_covers_needs_every_piece_in_some_bitfield_or_in_flight() -> None:
    assert covers([[True, False, False], [False, True, False]], 3, in_flight={2})
    assert not covers([[True, False, False], [False, True, False]], 3)
    assert not covers([], 2)
    assert covers([], 0)
    assert not covers([[True]], 2)  # a short bitfield holds nothing past its end


def test_full_speed_under_budget_then_trickle_once_spent_and_covered() -> None:
    b = budget()
    assert b.update(T, view(0, a=0), 0.0) is None
    assert b.update(T, view(1500, a=5), 1.0) is None
    assert b.why(T) == "under budget"
    assert b.update(T, view(2000, a=6), 2.0) == TRICKLE
    assert b.throttled(T)
    assert b.spent(T) == 2000


def test_never_capped_while_a_piece_is_only_in_the_daemon() -> None:
    b = budget()
    b.update(T, view(0, a=0), 0.0)
    for t in range(1, 10):  # a lone client: sent well past the budget, never covered
        assert b.update(T, view(t * 1000, covered=False, a=t), float(t)) is None
    assert not b.throttled(T)


def test_budget_counts_from_the_swarms_start() -> None:
    b = budget()
    assert b.update(T, view(5000, a=0), 0.0) is None  # sent into an earlier swarm
    assert b.update(T, view(6000, a=1), 1.0) is None
    assert b.update(T, view(7000, a=2), 2.0) == TRICKLE


def test_start_from_web_seed_activity_counts_bytes_sent_before_peers_connect() -> None:
    b = budget()
    b.start(T, 0, 0.0)
    assert T in b
    assert b.update(T, view(2500, a=3), 1.0) == TRICKLE  # the web seed's bytes counted
    b.start(T, 2500, 2.0)  # no-op: already tracked
    assert b.spent(T) == 2500


def test_an_empty_idle_swarm_is_over_and_the_next_one_gets_a_fresh_budget() -> None:
    b = budget()
    b.update(T, view(0, a=0), 0.0)
    assert b.update(T, view(3000, a=9), 1.0) == TRICKLE
    empty = SwarmView(holdings={}, covered=False, sent=3000, size=SIZE)
    assert b.update(T, empty, 2.0) is None  # no peers: no cap, but the swarm may come back
    assert T in b
    assert b.update(T, empty, 5.9) is None
    assert T in b
    assert b.update(T, empty, 6.0) is None  # nothing sent for 5 s and nobody here: over
    assert T not in b
    assert b.update(T, view(3000, a=0), 7.0) is None
    assert b.update(T, view(4000, a=1), 8.0) is None  # 1000 into the new swarm


def test_web_seed_traffic_without_peers_keeps_the_swarm_alive() -> None:
    b = budget()
    b.start(T, 0, 0.0)
    for t in range(1, 8):  # a web seed client only, sending all along
        empty = SwarmView(holdings={}, covered=False, sent=300 * t, size=SIZE)
        assert b.update(T, empty, float(t)) is None
        assert T in b
    assert b.update(T, view(2500, a=1), 8.0) == TRICKLE  # its bytes count for the swarm


def test_a_stalled_swarm_gets_full_speed_again_for_a_while() -> None:
    b = budget()
    b.update(T, view(0, a=0), 0.0)
    assert b.update(T, view(2000, a=1), 1.0) == TRICKLE
    assert b.update(T, view(2000, a=1), 5.9) == TRICKLE  # no gain yet, not for 5 s
    assert b.update(T, view(2000, a=1), 6.0) is None
    assert b.why(T) == "swarm stalled"
    assert b.update(T, view(2100, a=2), 7.0) is None  # open for stall_after
    assert b.update(T, view(2200, a=3), 11.1) == TRICKLE


def test_a_peer_leaving_is_not_progress_and_a_new_peer_is_not_either() -> None:
    b = budget()
    b.update(T, view(0, a=0, b=0), 0.0)
    assert b.update(T, view(2000, a=5, b=5), 1.0) == TRICKLE
    b.update(T, view(2000, a=5), 3.0)
    b.update(T, view(2000, a=5, c=7), 5.0)
    assert b.update(T, view(2000, a=5, c=7), 6.0) is None  # stalled since 1.0


def test_no_view_or_no_budget_means_no_cap() -> None:
    b = budget()
    b.update(T, view(0), 0.0)
    assert b.update(T, None, 1.0) is None
    assert T not in b
    off = budget(0.0)
    assert off.update(T, view(10**9), 0.0) is None
    assert off.why(T) == "no swarm"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        SwarmBudget(-1.0)
    with pytest.raises(ValueError):
        SwarmBudget(1.0, stall_after=0.0)
    with pytest.raises(ValueError):
        SwarmBudget(1.0, trickle_rate=0)


def test_over_budget_tells_when_coverage_is_worth_reading() -> None:
    b = budget()
    assert not b.over_budget(T, view(10**6))  # no swarm yet
    b.update(T, view(100, a=0), 0.0)
    assert not b.over_budget(T, view(2099))
    assert b.over_budget(T, view(2100))
