"""WebSeedGate: per-piece claims of web seed traffic (pure; time passed in)."""

from __future__ import annotations

import pytest

from seeder.seed.webseed_gate import Busy, Grant, WebSeedGate

P = 256 * 1024  # piece length
T = "ab" * 20  # a torrent key
A, B, C = "127.0.0.2", "127.0.0.3", "127.0.0.4"


def gate(**kw: object) -> WebSeedGate:
    return WebSeedGate(claim_ttl=30.0, retry_after=7, **kw)  # type: ignore[arg-type]


def test_first_request_is_served_and_claims_the_pieces_it_touches() -> None:
    g = gate()
    got = g.admit(T, P, P - 1, 2, A, 0.0, swarm_ready=True)  # straddles pieces 0 and 1
    assert isinstance(got, Grant)
    assert g.claims(T, 0.0) == {0: A, 1: A}


def test_other_client_is_busy_on_a_fresh_claim_when_the_swarm_is_ready() -> None:
    g = gate()
    assert isinstance(g.admit(T, P, 0, 4 * P, A, 0.0, swarm_ready=True), Grant)
    got = g.admit(T, P, 3 * P + 100, 16384, B, 1.0, swarm_ready=True)
    assert got == Busy(retry_after=7, holder=A, piece=3)
    assert g.claims(T, 1.0) == {0: A, 1: A, 2: A, 3: A}  # nothing claimed by B


def test_claiming_client_finishes_its_pieces_in_many_block_requests() -> None:
    g = gate()
    g.admit(T, P, 0, P, A, 0.0, swarm_ready=True)
    for i in range(16):
        got = g.admit(T, P, i * 16384, 16384, A, 1.0 + i, swarm_ready=True)
        assert isinstance(got, Grant)


def test_swarm_not_ready_serves_everyone_but_still_records_claims() -> None:
    g = gate()
    g.admit(T, P, 0, P, A, 0.0, swarm_ready=False)
    assert isinstance(g.admit(T, P, 0, P, B, 1.0, swarm_ready=False), Grant)
    assert g.claims(T, 1.0) == {0: B}  # the latest server of the piece holds it
    assert isinstance(g.admit(T, P, 0, P, A, 2.0, swarm_ready=True), Busy)


def test_claims_expire_for_liveness() -> None:
    g = gate()
    g.admit(T, P, 0, P, A, 0.0, swarm_ready=True)
    assert isinstance(g.admit(T, P, 0, P, B, 29.9, swarm_ready=True), Busy)
    assert isinstance(g.admit(T, P, 0, P, B, 30.0, swarm_ready=True), Grant)
    assert g.claims(T, 30.0) == {0: B}


def test_own_requests_refresh_the_claim() -> None:
    g = gate()
    g.admit(T, P, 0, P, A, 0.0, swarm_ready=True)
    g.admit(T, P, 0, 16384, A, 20.0, swarm_ready=True)
    assert isinstance(g.admit(T, P, 0, P, B, 45.0, swarm_ready=True), Busy)


def test_pieces_claimed_by_nobody_are_served_to_anyone() -> None:
    g = gate()
    g.admit(T, P, 0, 2 * P, A, 0.0, swarm_ready=True)
    assert isinstance(g.admit(T, P, 2 * P, 2 * P, B, 1.0, swarm_ready=True), Grant)
    assert g.claims(T, 1.0) == {0: A, 1: A, 2: B, 3: B}


def test_torrents_are_independent() -> None:
    g = gate()
    g.admit(T, P, 0, P, A, 0.0, swarm_ready=True)
    assert isinstance(g.admit("cd" * 20, P, 0, P, B, 1.0, swarm_ready=True), Grant)


@pytest.mark.parametrize(
    ("sent", "left_claimed"),
    [
        (0, set()),  # nothing sent: every claim released
        (1, {0}),  # piece 0 started: kept (the client will ask for its other blocks)
        (P, {0}),  # piece 0 whole, piece 1 not started
        (P + 1, {0, 1}),
        (3 * P - 1, {0, 1, 2}),
        (3 * P, {0, 1, 2}),  # all sent
    ],
)
def test_cut_short_response_releases_unsent_pieces(sent: int, left_claimed: set[int]) -> None:
    g = gate()
    grant = g.admit(T, P, 0, 3 * P, A, 0.0, swarm_ready=True)
    assert isinstance(grant, Grant)
    g.finished(grant, sent)
    assert set(g.claims(T, 0.0)) == left_claimed


def test_finished_keeps_claims_renewed_or_taken_since() -> None:
    g = gate()
    grant = g.admit(T, P, 0, 3 * P, A, 0.0, swarm_ready=False)
    assert isinstance(grant, Grant)
    g.admit(T, P, P, P, A, 1.0, swarm_ready=False)  # renewed by a later request of A
    g.admit(T, P, 2 * P, P, B, 1.0, swarm_ready=False)  # taken by B
    assert g.finished(grant, 0) == 1
    assert g.claims(T, 1.0) == {1: A, 2: B}


def test_empty_range_is_granted_and_claims_nothing() -> None:
    g = gate()
    assert isinstance(g.admit(T, P, 0, 0, A, 0.0, swarm_ready=True), Grant)
    assert g.claims(T, 0.0) == {}


def test_clean_drops_expired_claims_and_empty_torrents() -> None:
    g = gate()
    g.admit(T, P, 0, P, A, 0.0, swarm_ready=True)
    g.admit("cd" * 20, P, 0, P, A, 20.0, swarm_ready=True)
    assert g.clean(35.0) == 1
    assert len(g) == 1
    assert g.clean(60.0) == 1
    assert len(g) == 0


def test_memory_is_bounded_by_max_torrents_lru() -> None:
    g = gate(max_torrents=2)
    for i, t in enumerate(("t1", "t2", "t1", "t3")):
        g.admit(t, P, 0, P, A, float(i), swarm_ready=True)
    assert len(g) == 2
    assert g.claims("t2", 4.0) == {}  # least recently used went first
    assert g.claims("t1", 4.0) == {0: A}


def test_forget() -> None:
    g = gate()
    g.admit(T, P, 0, P, A, 0.0, swarm_ready=True)
    g.forget(T)
    g.forget(T)  # idempotent
    assert isinstance(g.admit(T, P, 0, P, B, 1.0, swarm_ready=True), Grant)


@pytest.mark.parametrize(
    ("piece_length", "start", "length"), [(0, 0, 1), (-1, 0, 1), (P, -1, 1), (P, 0, -1)]
)
def test_bad_arguments(piece_length: int, start: int, length: int) -> None:
    with pytest.raises(ValueError):
        gate().admit(T, piece_length, start, length, A, 0.0, swarm_ready=True)


@pytest.mark.parametrize(
    "kw", [{"claim_ttl": 0.0}, {"retry_after": -1}, {"max_torrents": 0}, {"claim_ahead": 0}]
)
def test_bad_settings(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        WebSeedGate(**kw)  # type: ignore[arg-type]


def test_one_copy_per_window_whatever_the_order() -> None:
    """Invariant: with the swarm ready, each piece is served to one address per window."""
    import random

    rng = random.Random(7)
    g = gate()
    served: dict[int, set[str]] = {}
    for step in range(2000):
        client = rng.choice((A, B, C))
        first = rng.randrange(64)
        n = rng.choice((1, 1, 4, 16))
        start = first * P + rng.choice((0, 16384))
        length = min(n * P, 64 * P - start)
        got = g.admit(T, P, start, length, client, step * 0.001, swarm_ready=True)
        if isinstance(got, Grant):
            for piece in range(start // P, (start + length - 1) // P + 1):
                served.setdefault(piece, set()).add(client)
    assert served and all(len(who) == 1 for who in served.values())


def test_an_open_ended_range_claims_only_the_window_ahead() -> None:
    """aria2 asks for the rest of the file: the grant claims its next claim_ahead bytes,
    not all of it, so another client may take the pieces beyond."""
    g = gate(claim_ahead=2 * P)
    grant = g.admit(T, P, P, 63 * P, A, 0.0, swarm_ready=True)
    assert isinstance(grant, Grant)
    assert g.claims(T, 0.0) == {1: A, 2: A}
    assert isinstance(g.admit(T, P, 10 * P, P, B, 1.0, swarm_ready=True), Grant)


def test_progress_moves_the_window_and_refreshes_the_claims() -> None:
    g = gate(claim_ahead=2 * P)
    grant = g.admit(T, P, 0, 8 * P, A, 0.0, swarm_ready=True)
    assert isinstance(grant, Grant)
    assert g.progress(grant, P + 5, 20.0, swarm_ready=True)
    assert g.claims(T, 20.0) == {0: A, 1: A, 2: A, 3: A}
    assert g.progress(grant, 3 * P, 40.0, swarm_ready=True)
    # Piece 0 was last sent at 20 s: it expires; the pieces sent since and the window do not.
    assert g.claims(T, 55.0) == {1: A, 2: A, 3: A, 4: A}


def test_a_piece_sent_stays_claimed_when_another_request_of_the_client_hangs_up() -> None:
    g = gate()
    first = g.admit(T, P, 0, 4 * P, A, 0.0, swarm_ready=True)
    assert isinstance(first, Grant)
    g.progress(first, P + 1, 1.0, swarm_ready=True)  # pieces 0 and 1 went out (in part)
    again = g.admit(T, P, P, P, A, 2.0, swarm_ready=True)  # A asks for piece 1 again
    assert isinstance(again, Grant)
    g.finished(again, 0)  # and hangs up at once
    assert isinstance(g.admit(T, P, P, P, B, 3.0, swarm_ready=True), Busy)


def test_progress_stops_at_a_piece_another_client_claimed() -> None:
    g = gate(claim_ahead=2 * P)
    grant = g.admit(T, P, 0, 8 * P, A, 0.0, swarm_ready=True)
    assert isinstance(grant, Grant)
    assert isinstance(g.admit(T, P, 3 * P, P, B, 1.0, swarm_ready=True), Grant)
    assert g.progress(grant, P, 2.0, swarm_ready=True)  # piece 2 claimed, 3 is B's
    assert g.claims(T, 2.0) == {0: A, 1: A, 2: A, 3: B}
    assert g.progress(grant, 2 * P + 100, 3.0, swarm_ready=True)  # still inside piece 2
    assert not g.progress(grant, 3 * P, 4.0, swarm_ready=True)  # reached B's piece: stop
    assert g.claims(T, 4.0)[3] == B


def test_progress_takes_the_pieces_when_the_swarm_is_not_ready() -> None:
    g = gate(claim_ahead=P)
    grant = g.admit(T, P, 0, 4 * P, A, 0.0, swarm_ready=False)
    assert isinstance(grant, Grant)
    g.admit(T, P, P, P, B, 1.0, swarm_ready=False)
    assert g.progress(grant, P, 2.0, swarm_ready=False)
    assert g.claims(T, 2.0) == {0: A, 1: A}


def test_in_flight_counts_pieces_sent_not_pieces_granted() -> None:
    """The bug the WAN lab showed: a granted open-ended range counted as held by the swarm."""
    g = gate()
    grant = g.admit(T, P, 0, 64 * P, A, 0.0, swarm_ready=False)
    assert isinstance(grant, Grant)
    assert g.in_flight(T) == set()
    g.progress(grant, 1, 0.1, swarm_ready=False)
    assert g.in_flight(T) == {0}
    g.progress(grant, 2 * P + 1, 0.2, swarm_ready=False)
    assert g.in_flight(T) == {0, 1, 2}
    assert g.live() == 1
    g.finished(grant, 2 * P + 1)
    assert g.in_flight(T) == set() and g.live() == 0
    assert set(g.claims(T, 0.2)) == {0, 1, 2}  # the started pieces stay claimed


def test_a_hang_up_releases_the_window_it_never_sent() -> None:
    g = gate(claim_ahead=4 * P)
    grant = g.admit(T, P, 0, 64 * P, A, 0.0, swarm_ready=True)
    assert isinstance(grant, Grant)
    g.progress(grant, P // 2, 0.5, swarm_ready=True)
    g.finished(grant, P // 2)
    assert g.claims(T, 0.5) == {0: A}
    assert isinstance(g.admit(T, P, P, P, B, 1.0, swarm_ready=True), Grant)


def test_progress_after_finished_or_for_an_empty_grant_is_harmless() -> None:
    g = gate()
    empty = g.admit(T, P, 0, 0, A, 0.0, swarm_ready=True)
    assert isinstance(empty, Grant)
    assert g.progress(empty, 0, 0.0, swarm_ready=True)
    grant = g.admit(T, P, 0, P, A, 0.0, swarm_ready=True)
    assert isinstance(grant, Grant)
    g.finished(grant, P)
    assert g.progress(grant, P, 1.0, swarm_ready=True) and g.live() == 0


def test_one_copy_per_window_with_streamed_progress() -> None:
    """Invariant with windows: responses that stream (progress before each chunk, stopping
    when told) never send one piece to two addresses within a claim window."""
    import random

    rng = random.Random(11)
    g = gate(claim_ahead=3 * P)
    served: dict[int, set[str]] = {}
    live: list[tuple[Grant, int]] = []
    for step in range(3000):
        now = step * 0.001
        if live and rng.random() < 0.6:
            i = rng.randrange(len(live))
            grant, sent = live[i]
            chunk = min(P // 2, grant.length - sent)
            if rng.random() < 0.05 or not g.progress(grant, sent, now, swarm_ready=True):
                g.finished(grant, sent)
                live.pop(i)
                continue
            at = grant.start + sent
            for piece in range(at // P, (at + chunk - 1) // P + 1):
                served.setdefault(piece, set()).add(grant.client)
            sent += chunk
            if sent >= grant.length:
                g.finished(grant, sent)
                live.pop(i)
            else:
                live[i] = (grant, sent)
            continue
        start = rng.randrange(64) * P
        got = g.admit(T, P, start, 64 * P - start, rng.choice((A, B, C)), now, swarm_ready=True)
        if isinstance(got, Grant):
            live.append((got, 0))
    assert served and all(len(who) == 1 for who in served.values())
