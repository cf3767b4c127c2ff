"""SwarmBudget: full speed until the swarm had its copies and holds every piece (pure)."""

from __future__ import annotations

import pytest

from seeder.seed.swarm_budget import NARROW_SLOTS, SwarmBudget, SwarmView, Throttle, missing_pieces

T = "ab" * 20
SIZE = 1000
TRICKLE = Throttle(NARROW_SLOTS, 4096)


PLEN = 10


def view(sent: int, *, missing: int = 0, **holdings: int) -> SwarmView:
    return SwarmView(holdings=holdings or {"a": 1}, missing=missing, sent=sent, size=SIZE,
                     piece_length=PLEN)


def empty_view(sent: int) -> SwarmView:
    return SwarmView(holdings={}, missing=SIZE // PLEN, sent=sent, size=SIZE, piece_length=PLEN)


def budget(copies: float = 2.0, tail: float = 0.0, lag: float = 0.0) -> SwarmBudget:
    return SwarmBudget(copies, stall_after=5.0, trickle_rate=4096, tail=tail, lag=lag)


def test_missing_pieces_are_in_no_bitfield_and_not_in_flight() -> None:
    assert missing_pieces([[True, False, False], [False, True, False]], 3, in_flight={2}) == 0
    assert missing_pieces([[True, False, False], [False, True, False]], 3) == 1
    assert missing_pieces([], 2) == 2
    assert missing_pieces([], 0) == 0
    assert missing_pieces([[True]], 2) == 1  # a short bitfield holds nothing past its end


def test_full_speed_under_budget_then_trickle_once_spent_and_covered() -> None:
    b = budget()
    assert b.update(T, view(0, a=0), 0.0) is None
    assert b.update(T, view(1500, a=5), 1.0) is None
    assert b.why(T) == "under budget"
    assert b.update(T, view(2000, a=6), 2.0) == TRICKLE
    assert b.throttled(T)
    assert b.spent(T) == 2000


def test_a_lone_client_is_never_throttled() -> None:
    b = budget()
    b.update(T, view(0, a=0), 0.0)
    for t in range(1, 10):  # a lone client: sent well past the budget, never covered
        assert b.update(T, view(t * 1000, missing=1, a=t), float(t)) is None
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
    empty = empty_view(3000)
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
        empty = empty_view(300 * t)
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


def test_over_budget_but_pieces_only_here_means_full_speed() -> None:
    b = budget()
    b.update(T, view(0, a=0, b=0, c=0), 0.0)
    assert b.update(T, view(2000, missing=90, a=2, b=2, c=2), 1.0) is None
    assert b.why(T) == "budget spent, some pieces only here"
    assert b.update(T, view(2100, missing=0, a=3, b=4, c=2), 2.0) == TRICKLE
    assert b.throttled(T)


def test_the_swarms_last_pieces_come_at_full_speed_from_the_budgets_reserve() -> None:
    b = budget(2.5, tail=0.5)  # 100 pieces of 10 bytes: the tail is 50 pieces wanted in all
    b.update(T, view(0, a=0, b=0), 0.0)
    assert b.update(T, view(1999, a=40, b=40), 0.5) is None  # 2.0 copies at full speed
    assert b.update(T, view(2000, a=40, b=40), 1.0) == TRICKLE  # 120 pieces wanted
    assert b.update(T, view(2000, a=60, b=90), 2.0) is None  # 50 wanted: the tail
    assert b.why(T) == "the swarm's last pieces (the budget's reserve)"
    assert b.on_reserve(T)
    assert b.update(T, view(2499, a=70, b=95), 3.0) is None
    # The reserve is spent too: the whole budget. The swarm holds every piece: trickle.
    assert b.update(T, view(2500, a=75, b=96), 4.0) == TRICKLE
    assert not b.on_reserve(T)


def test_the_reserve_ends_early_by_what_the_session_sends_before_a_throttle_holds() -> None:
    b = budget(2.5, tail=0.5, lag=1.0)
    b.update(T, view(1800, a=0, b=0), 0.0)  # the swarm's budget counts from here
    b.update(T, view(3800, a=50, b=80), 0.9)
    # 2100 sent, at 2000 bytes/s: 2100 + 2000 >= 2500, no reserve left.
    assert b.update(T, view(4000, a=60, b=90), 1.0) == TRICKLE
    # At 200 bytes/s by the time the main part is spent: the reserve ends 200 bytes early.
    for lag, last in ((1.0, TRICKLE), (0.0, None)):
        b = budget(2.5, tail=0.5, lag=lag)
        b.update(T, view(0, a=0, b=0), 0.0)
        b.update(T, view(1800, a=50, b=80), 9.0)
        assert b.update(T, view(2000, a=60, b=90), 10.0) is None  # 50 wanted: the tail
        assert b.update(T, view(2200, a=62, b=91), 11.0) is None  # 2200 + 200 < 2500
        assert b.update(T, view(2350, a=64, b=92), 11.5) == last  # 2350 + 300 >= 2500


def test_a_reserve_found_used_up_does_not_reopen_when_the_throttle_slows_the_session() -> None:
    b = budget(2.5, tail=0.5, lag=1.0)
    b.update(T, view(0, a=0, b=0), 0.0)
    b.update(T, view(2000, a=50, b=80), 0.9)
    assert b.update(T, view(2200, a=60, b=90), 1.0) == TRICKLE  # 2200 + 2000/s x 1 s >= 2500
    # The throttle holds: 50 bytes/s now, 2250 + 50 < 2500, yet the reserve stays closed
    # (the lag's bytes were counted as sent; reopening would send another lag's worth).
    assert b.update(T, view(2250, a=61, b=91), 2.0) == TRICKLE
    assert not b.on_reserve(T)
    assert b.update(T, view(2260, a=62, b=91), 3.0) == TRICKLE
    # Without the lag, the same swarm spends its reserve to the byte, as before.
    b = budget(2.5, tail=0.5, lag=0.0)
    b.update(T, view(0, a=0, b=0), 0.0)
    b.update(T, view(2000, a=50, b=80), 0.9)
    assert b.update(T, view(2200, a=60, b=90), 1.0) is None
    assert b.on_reserve(T)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        SwarmBudget(-1.0)
    with pytest.raises(ValueError):
        SwarmBudget(1.0, stall_after=0.0)
    with pytest.raises(ValueError):
        SwarmBudget(1.0, trickle_rate=0)
    with pytest.raises(ValueError):
        SwarmBudget(1.0, tail=-1.0)
    with pytest.raises(ValueError):
        SwarmBudget(1.0, lag=-1.0)


def test_over_budget_tells_when_coverage_is_worth_reading() -> None:
    b = budget()
    assert not b.over_budget(T, view(10**6))  # no swarm yet
    b.update(T, view(100, a=0), 0.0)
    assert not b.over_budget(T, view(2099))
    assert b.over_budget(T, view(2100))


def test_a_peer_that_left_complete_still_covers_the_swarm_for_a_while() -> None:
    # 100 pieces. A client that completes drops its connection to the daemon (a seed to a
    # seed), often before a view showed it whole: the pieces only it held are not "only
    # here", it still seeds them to the others.
    b = SwarmBudget(2.0, stall_after=5.0, trickle_rate=4096, tail=0.0, seed_memory=30.0)
    b.update(T, view(0, a=0, b=0), 0.0)
    assert b.update(T, view(2000, a=97, b=40), 1.0) == TRICKLE
    assert b.update(T, view(2000, missing=3, b=41), 2.0) == TRICKLE  # a left at 97 %
    assert b.why(T) == "budget spent, the swarm holds every piece"
    assert b.update(T, view(2000, missing=3, b=42), 31.9) == TRICKLE
    assert b.update(T, view(2000, missing=3, b=43), 32.1) is None  # remembered 30 s only
    assert b.why(T) == "budget spent, some pieces only here"


def test_a_peer_that_left_half_done_leaves_its_pieces_only_here() -> None:
    b = SwarmBudget(2.0, stall_after=5.0, trickle_rate=4096, tail=0.0, seed_memory=30.0)
    b.update(T, view(0, a=0, b=0), 0.0)
    assert b.update(T, view(2000, a=50, b=60), 1.0) == TRICKLE
    assert b.update(T, view(2000, missing=10, b=61), 2.0) is None


def test_a_seed_seen_connected_is_remembered_after_it_leaves() -> None:
    b = SwarmBudget(2.0, stall_after=5.0, trickle_rate=4096, tail=0.0, seed_memory=30.0)
    b.update(T, view(0, a=0, b=0), 0.0)
    assert b.update(T, view(2000, a=100, b=60), 1.0) == TRICKLE
    assert b.update(T, view(2000, b=61), 1.5) == TRICKLE  # missing=0 by the view: a seed
    assert b.update(T, view(2000, missing=5, b=62), 2.0) == TRICKLE


def test_a_stalled_swarm_covered_by_a_departed_seed_still_gets_full_speed() -> None:
    b = SwarmBudget(2.0, stall_after=5.0, trickle_rate=4096, tail=0.0, seed_memory=60.0)
    b.update(T, view(0, a=0, b=0), 0.0)
    b.update(T, view(2000, a=99, b=40), 1.0)
    assert b.update(T, view(2000, missing=1, b=41), 2.0) == TRICKLE
    assert b.update(T, view(2000, missing=1, b=41), 7.0) is None  # the seed was gone for good
    assert b.why(T) == "swarm stalled"


def test_a_peer_near_completion_is_finished_at_full_speed_from_the_reserve() -> None:
    b = SwarmBudget(2.5, stall_after=5.0, trickle_rate=4096, tail=0.5, near=0.2, lag=0.0)
    b.update(T, view(0, a=0, b=0, c=0), 0.0)
    assert b.update(T, view(2000, a=70, b=40, c=10), 1.0) == TRICKLE  # main part spent
    assert not b.on_reserve(T)
    assert b.update(T, view(2100, a=80, b=40, c=10), 2.0) is None  # a lacks 20 %
    assert b.why(T) == "a peer near completion (the budget's reserve)"
    assert b.on_reserve(T)
    assert b.update(T, view(2200, a=100, b=45, c=10), 3.0) == TRICKLE  # a is whole
    assert b.update(T, view(2300, a=100, b=85, c=10), 4.0) is None
    assert b.update(T, view(2500, a=100, b=95, c=10), 5.0) == TRICKLE  # reserve spent


def test_near_and_seed_memory_bounds() -> None:
    with pytest.raises(ValueError):
        SwarmBudget(1.0, near=1.0)
    with pytest.raises(ValueError):
        SwarmBudget(1.0, near=-0.1)
    with pytest.raises(ValueError):
        SwarmBudget(1.0, seed_memory=-1.0)


def test_on_reserve_only_for_the_reserves_reasons() -> None:
    b = budget()
    assert not b.on_reserve(T)  # no swarm
    b.update(T, view(0, a=0), 0.0)
    assert b.update(T, view(1000, a=5), 1.0) is None
    assert not b.on_reserve(T)  # under budget: full speed, not the reserve
    assert b.update(T, view(2500, missing=1, a=6), 2.0) is None
    assert b.why(T) == "budget spent, some pieces only here"
    assert not b.on_reserve(T)


def test_left_is_the_budget_not_yet_sent_reserve_included() -> None:
    b = budget(copies=2.0, tail=0.5)
    assert b.left(T, view(0)) is None  # no swarm yet
    b.update(T, view(100, a=1), 0.0)
    assert b.left(T, view(700, a=2)) == 1400  # 2 copies of 1000, counted from 100
    assert b.left(T, view(2500, a=3)) == 0
    assert budget(copies=0.0).left(T, view(0)) is None
