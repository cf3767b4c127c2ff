"""UploadSlots: a slot more for each unchoked peer in its end game or slow (pure)."""

from __future__ import annotations

import pytest

from seeder.seed.upload_slots import (
    OPTIMISTIC_SLOTS,
    UploadSlots,
    budget_short,
    choked_address,
    host_of,
    session_slots,
)

T = "ab" * 20
PIECES = 1000  # endgame 0.05: a peer holding 950..999 pieces is in its end game


def count(slots: UploadSlots, holdings: dict[str, int], unchoked: set[str],
          rates: dict[str, int] | None = None, pieces: int = PIECES, now: float = 0.0) -> int:
    return slots.count(T, holdings, frozenset(unchoked), rates or {}, pieces, now)


def test_no_peer_in_its_end_game_keeps_the_slots() -> None:
    slots = UploadSlots(2, endgame=0.05)
    assert count(slots, {}, set()) == 2
    assert count(slots, {"a": 10, "b": 949, "c": 0}, {"a", "b"}) == 2


def test_each_unchoked_peer_in_its_end_game_frees_its_slot() -> None:
    slots = UploadSlots(2, endgame=0.05)
    holdings = {"a": 950, "b": 999, "c": 100, "d": 0}
    assert count(slots, holdings, {"a", "c"}) == 3
    assert count(slots, holdings, {"a", "b"}) == 4
    holdings["a"] = PIECES  # complete: a seed leaves; until then it holds no slot to free
    assert count(slots, holdings, {"a", "b"}) == 3


def test_choked_complete_and_departed_peers_hold_no_slot_to_free() -> None:
    slots = UploadSlots(2, endgame=0.05)
    # "b" is in its end game but choked; "c" is complete (a seed leaves); "gone" has left.
    holdings = {"a": 10, "b": 990, "c": PIECES}
    assert count(slots, holdings, {"a", "c", "gone"}) == 2


def test_at_most_most_slots() -> None:
    slots = UploadSlots(2, endgame=0.05, most=3)
    holdings = {"a": 990, "b": 991, "c": 992}
    assert count(slots, holdings, set(holdings)) == 3
    assert UploadSlots(2).most == 4


def test_a_small_torrent_counts_its_last_piece_and_no_handoff_when_off() -> None:
    assert count(UploadSlots(2, endgame=0.05), {"a": 9}, {"a"}, pieces=10) == 3
    assert count(UploadSlots(2, endgame=0.05), {"a": 8}, {"a"}, pieces=10) == 2
    assert count(UploadSlots(2, endgame=0.0), {"a": 999}, {"a"}) == 2
    assert count(UploadSlots(2, endgame=0.05), {"a": 0}, {"a"}, pieces=0) == 2


def test_a_slow_peer_hands_its_slot_on_after_its_trial_and_keeps_being_served() -> None:
    slots = UploadSlots(2, trial=8.0, slow=0.25)
    holdings = {"fast": 100, "slow": 20, "next": 0}
    rates = {"fast": 8_000_000, "slow": 1_000_000}
    assert count(slots, holdings, {"fast", "slow"}, rates, now=0.0) == 2
    assert count(slots, holdings, {"fast", "slow"}, rates, now=7.9) == 2  # still on trial
    assert count(slots, holdings, {"fast", "slow"}, rates, now=8.0) == 3
    # The next peer is unchoked; the slow one ramps up later and its slot stays handed on.
    rates = {"fast": 8_000_000, "slow": 6_000_000, "next": 500_000}
    assert count(slots, holdings, {"fast", "slow", "next"}, rates, now=9.0) == 3
    # Choked (or gone), it holds nothing any more: the count falls by its own slot.
    assert count(slots, holdings, {"fast", "next"}, rates, now=10.0) == 2
    # Unchoked again later, it has a new trial.
    rates = {"fast": 8_000_000, "slow": 0}
    assert count(slots, holdings, {"fast", "slow"}, rates, now=11.0) == 2
    assert count(slots, holdings, {"fast", "slow"}, rates, now=19.0) == 3


def test_no_slow_handoff_without_a_rate_or_when_off() -> None:
    holdings = {"a": 1, "b": 1}
    assert count(UploadSlots(2, trial=0.0), holdings, {"a", "b"}, {}, now=5.0) == 2
    assert count(UploadSlots(2, trial=0.0, slow=0.0), holdings, {"a", "b"}, {"a": 10},
                 now=5.0) == 2
    assert count(UploadSlots(2, trial=0.0), holdings, {"a", "b"}, {"a": 10}, now=5.0) == 3


def test_end_game_and_slow_peers_count_once_and_forget_drops_the_record() -> None:
    slots = UploadSlots(2, trial=0.0, slow=0.25)
    holdings = {"a": 990, "b": 10}
    assert count(slots, holdings, {"a", "b"}, {"a": 0, "b": 100}, now=1.0) == 3  # a ending
    assert T in slots
    slots.forget(T)
    assert T not in slots


@pytest.mark.parametrize("args", [(0, 0.05, None), (2, 1.0, None), (2, -0.1, None),
                                  (3, 0.05, 2)])
def test_bad_values_are_refused(args: tuple[int, float, int | None]) -> None:
    with pytest.raises(ValueError):
        UploadSlots(*args)
    with pytest.raises(ValueError):
        UploadSlots(2, slow=1.0)
    with pytest.raises(ValueError):
        UploadSlots(2, trial=-1.0)


def test_a_client_whose_connections_are_all_choked_is_choked_while_the_slots_are_taken() -> None:
    holdings = {"10.0.0.1:6881": 5, "10.0.0.2:6881": 5, "10.0.0.3:51413": 0,
                "10.0.0.4:1": 0, "10.0.0.4:2": 0}
    unchoked = frozenset({"10.0.0.1:6881", "10.0.0.2:6881", "10.0.0.4:2"})
    assert choked_address("10.0.0.3", holdings, unchoked, slots=2)
    assert not choked_address("10.0.0.1", holdings, unchoked, slots=2)  # unchoked
    assert not choked_address("10.0.0.4", holdings, unchoked, slots=2)  # one of two unchoked
    assert not choked_address("10.0.0.9", holdings, unchoked, slots=2)  # no BitTorrent peer
    assert not choked_address("10.0.0.3", holdings, unchoked, slots=4)  # a slot is free


def test_ipv6_endpoints_are_matched_by_address() -> None:
    assert host_of("::1:6881") == "::1"
    assert host_of("10.0.0.1:6881") == "10.0.0.1"
    holdings = {"2001:db8::1:6881": 3, "2001:db8::2:6881": 3, "2001:db8::3:6881": 3}
    unchoked = frozenset({"2001:db8::1:6881", "2001:db8::2:6881"})
    assert choked_address("2001:db8::3", holdings, unchoked, slots=2)
    assert not choked_address("2001:db8::2", holdings, unchoked, slots=2)


def test_no_peer_unchoked_anew_while_the_budgets_reserve_is_spent() -> None:
    slots = UploadSlots(4, endgame=0.05)
    holdings = {"a": 990, "b": 500, "c": 100, "d": 0}

    def frozen(unchoked: set[str], pieces: int = PIECES) -> int:
        return slots.count(T, holdings, frozenset(unchoked), {}, pieces, 0.0, grow=False)

    assert count(slots, holdings, {"a", "b"}) == 5  # a in its end game: a slot more
    assert frozen({"a", "b"}) == 2  # the peers served now, no new one
    assert frozen({"a", "b", "c", "gone"}) == 3  # a departed peer holds nothing
    assert frozen(set()) == 1  # at least one
    assert frozen({"a", "b", "c", "d"}) == 4
    assert frozen({"a", "b"}, pieces=0) == 2


FAST = {"a": 3_000_000, "b": 3_000_000, "c": 2_000_000}  # qBittorrent / libtorrent at 3 s


def test_good_first_picks_keep_their_slots() -> None:
    slots = UploadSlots(4, warm=3.0)
    holdings = {p: 0 for p in "abcdef"}  # e and f wait, choked
    rates = {**FAST, "d": 1_100_000}  # above a third of the fastest
    for now in (0.0, 1.0, 3.0, 5.0, 10.0, 15.0):
        assert count(slots, holdings, set("abcd"), rates, now=now) == 4


def test_a_slow_first_pick_opens_every_slot_once_then_the_slots_apply() -> None:
    slots = UploadSlots(4, warm=3.0)
    holdings = {p: 0 for p in "abcdef"}
    rates = {**FAST, "d": 500_000}  # an aria2 client 3 s after its unchoke
    assert count(slots, holdings, set("abcd"), rates, now=0.0) == 4
    assert count(slots, holdings, set("abcd"), rates, now=2.5) == 4  # its trial runs
    assert count(slots, holdings, set("abcd"), rates, now=3.0) == 8  # every interested peer
    assert count(slots, holdings, set("abcdef"), rates, now=5.5) == 8
    # The count falls back: the session's choker keeps the four it uploaded to fastest.
    assert count(slots, holdings, set("abcdef"), rates, now=6.0) == 4
    # Once per swarm; the slow handoff's trial starts again at the fall (no slot handed on
    # to d, still unchoked for a choker round, before 8 s more).
    assert count(slots, holdings, set("abcd"), rates, now=13.5) == 4
    assert count(slots, holdings, set("abcd"), rates, now=14.0) == 5  # d slow: handed on
    # Out of the budget's reserve no peer is unchoked anew, a pick again or not.
    again = UploadSlots(4, warm=3.0)
    for now in (0.0, 3.0):
        n = again.count(T, holdings, frozenset("abcd"), rates, PIECES, now, grow=False)
    assert n == 4


def test_no_pick_again_without_a_waiting_peer_late_or_when_off() -> None:
    rates = {**FAST, "d": 500_000}
    alone = {p: 0 for p in "abcd"} | {"e": PIECES}  # e is a seed: it waits for nothing
    slots = UploadSlots(4, warm=3.0)
    assert [count(slots, alone, set("abcd"), rates, now=t) for t in (0.0, 3.0, 6.0)] == [4] * 3
    holdings = {p: 0 for p in "abcdef"}
    late = UploadSlots(4, warm=3.0, window=15.0)
    assert count(late, holdings, set("abc"), FAST, now=0.0) == 4
    assert count(late, holdings, set("abcd"), rates, now=13.0) == 4  # d unchoked at 13 s
    assert count(late, holdings, set("abcd"), rates, now=16.0) == 4  # past the window
    off = UploadSlots(4)
    assert [count(off, holdings, set("abcd"), rates, now=t) for t in (0.0, 3.0)] == [4, 4]
    for bad in ({"warm": -1.0}, {"pick_trial": -1.0}, {"pick_slow": 1.0}, {"window": -1.0}):
        with pytest.raises(ValueError):
            UploadSlots(4, **bad)  # type: ignore[arg-type]


def test_the_pick_again_comes_again_for_a_swarm_forgotten() -> None:
    slots = UploadSlots(4, warm=3.0)
    holdings = {p: 0 for p in "abcdef"}
    rates = {**FAST, "d": 500_000}
    assert [count(slots, holdings, set("abcd"), rates, now=t) for t in (0.0, 3.0)] == [4, 8]
    slots.forget(T)
    assert [count(slots, holdings, set("abcd"), rates, now=t) for t in (100.0, 103.0)] == [4, 8]


def test_session_slots_sum_the_torrents_counts_plus_the_optimistic_unchoke() -> None:
    assert session_slots([], 4) == 4 + OPTIMISTIC_SLOTS
    assert session_slots([8], 4) == 8 + OPTIMISTIC_SLOTS  # a slow first pick picked again
    assert session_slots([4], 4) == 4 + OPTIMISTIC_SLOTS  # then its choker keeps 4
    assert session_slots([2], 4) == 4 + OPTIMISTIC_SLOTS  # a throttle chokes nobody new
    assert session_slots([4, 5, 2], 4) == 11 + OPTIMISTIC_SLOTS


def test_budget_short_compares_the_budget_s_time_with_the_slowest_need() -> None:
    rates = {"lag": 1_000, "lead": 3_000}  # 4,000 B/s from the session in all
    assert budget_short(30_000, {"lag": 10_000}, rates)  # gone in 7.5 s, needed for 10 s
    assert not budget_short(40_000, {"lag": 10_000}, rates)  # lasts 10 s: enough
    assert not budget_short(0, {"lag": 0}, rates)  # nothing lacked
    assert not budget_short(0, {"idle": 10_000}, rates)  # no rate: no need to time
    assert not budget_short(0, {"lag": 10_000}, {})
    assert budget_short(-5, {"lag": 1}, rates)


def test_no_new_unchoke_at_the_swarm_s_end_while_the_budget_left_is_the_laggard_s() -> None:
    slots = UploadSlots(2, endgame=0.05, trial=8.0)
    holdings = {"lead": 990, "lag": 800, "next": 0}
    rates = {"lead": 1_000, "lag": 1_000}  # 2,000 B/s; "lag" lacks 200 pieces of 10 B

    def n(left: float | None, unchoked: set[str], now: float = 1.0) -> int:
        return slots.count(T, holdings, frozenset(unchoked), rates, PIECES, now, left=left,
                           piece_length=10)

    assert n(3_000, {"lead", "lag"}) == 2  # 1.5 s of budget, 2 s of need: no new unchoke
    assert n(4_000, {"lead", "lag"}) == 3  # 2 s: the end-game slot is handed on
    assert n(None, {"lead", "lag"}) == 3  # no budget: the handoff as ever
    holdings["lead"] = PIECES  # "lead" completed and left: its slot is not refilled either
    assert n(1_500, {"lag"}) == 1  # 1,000 B/s to "lag" alone now: 1.5 s against 2 s
    assert n(2_500, {"lag"}) == 2


def test_the_budget_rule_waits_for_the_swarm_s_end_and_spares_slow_peers() -> None:
    slots = UploadSlots(2, endgame=0.05, trial=8.0, slow=0.25)
    holdings = {"a": 500, "b": 100, "c": 0}
    rates = {"a": 8_000, "b": 1_000}
    assert slots.count(T, holdings, frozenset({"a", "b"}), rates, PIECES, 0.0, left=10,
                       piece_length=10) == 2
    # Nobody in an end game yet: the budget's time does not hold a slot (the first picks).
    assert slots.count(T, holdings, frozenset({"a", "b"}), rates, PIECES, 9.0, left=10,
                       piece_length=10) == 3  # "b" slow after its trial: handed on
    holdings["a"] = 960  # "a" in its end game; "b", slow, is no peer the budget is kept for
    assert slots.count(T, holdings, frozenset({"a", "b"}), rates, PIECES, 10.0, left=10,
                       piece_length=10) == 4
