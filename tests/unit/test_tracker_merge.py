"""tracker.peermerge: other trackers' peers merged one by one (merge_peer, drop_peer,
add_downloaded), and merge_upserts: a batch of plain IPv4 upserts merged in one call, as
merge_peer would record by record (both builds: test_compiled_build runs this)."""

from __future__ import annotations

import random

from tests.unit.test_tracker_swarm import H1, H2, H3, PID, announce, check_invariants, make, v4, v6
from tracker.peerlog import PLAIN_V4, PLAIN_V6, UPSERT_SEEDER, UPSERT_V6
from tracker.peermerge import add_downloaded, drop_peer, in_any, merge_peer, merge_upserts
from tracker.swarm import Swarms

TIMEOUT_BUCKET = 100.0 / 8  # make(): peer_timeout 100, expiry in buckets of 1/8 of it
OWN = b"-SE"  # the peer-id prefix of the cluster's own seeders: stored, but not demand


def rec(h: bytes, addr: bytes, ttl_ms: int, *, seeder: bool = False, pid: bytes = PID) -> bytes:
    """One plain upsert as the cluster writes it (seeder.cluster.records)."""
    if len(addr) == 18:
        return PLAIN_V6.pack(UPSERT_V6 | (UPSERT_SEEDER if seeder else 0), h, addr, pid, ttl_ms)
    return PLAIN_V4.pack(UPSERT_SEEDER if seeder else 0, h, addr, pid, ttl_ms)


def state(s: Swarms) -> list[tuple]:
    """Everything a merge may change: per swarm its counts and peers (role, id, expiry)."""
    out = []
    for h, swarm in sorted(s.by_hash.items()):
        peers = sorted((a, p.slot, p.peer_id, p.expires, p.completed)
                       for a, p in swarm.peers.items())
        out.append((h, swarm.complete, swarm.incomplete, swarm.downloaded, peers))
    queue = sorted((b, len(ps)) for b, ps in s._queue.items())
    return [out, s.seeders, s.leechers, s.swarm_count, queue]


def merged(s: Swarms, batch: bytes, base: float = 0.0, skip=(), own: bytes = b"",
           skip_peers=()) -> set[bytes]:
    demand: set[bytes] = set()
    assert merge_upserts(s, batch, base, skip, skip_peers, own, demand)
    check_invariants(s)
    return demand


def test_unknown_swarms_are_passed_over_and_known_ones_stored_with_their_deadline():
    s = make()
    s.register([H1])
    demand = merged(s, rec(H2, v4(9), 50_000) + rec(H1, v4(1), 50_000)
                    + rec(H1, v4(2), 150_000, seeder=True), base=10.0)
    assert demand == {H1} and s.get(H2) is None
    assert s.scrape(H1) == (1, 0, 1)  # no download counted: the tracker that heard it did
    s.clean(59.0)
    assert set(s.get(H1).peers) == {v4(1), v4(2)}
    s.clean(60.0 + TIMEOUT_BUCKET)  # v4(1) lived until 10 + 50 s
    assert set(s.get(H1).peers) == {v4(2)}
    assert merged(s, b"") == set()  # an empty batch is a plain one: nothing to do


def test_the_longest_time_to_live_is_read_whole():
    # 0xFFFFFFFF ms (~49.7 days): every byte of the field counts, the top one too (the
    # compiled build reads the field byte by byte)
    s = make()
    s.register([H1])
    merged(s, rec(H1, v4(1), 0xFFFFFFFF) + rec(H1, v4(2), 0x7FFFFFFF))
    peers = s.get(H1).peers
    assert peers[v4(1)].expires == int(0xFFFFFFFF / 1000 / s._width) + 1
    assert peers[v4(2)].expires == int(0x7FFFFFFF / 1000 / s._width) + 1


def test_caps_apply_as_for_an_announce():
    s = make(max_peers_per_swarm=2, max_peers=3)
    s.register([H1])
    s.register([H2])
    demand = merged(s, b"".join(rec(H1, v4(i), 50_000) for i in range(3)))
    assert demand == {H1} and set(s.get(H1).peers) == {v4(0), v4(1)}
    assert merged(s, rec(H2, v4(5), 50_000) + rec(H2, v4(6), 50_000)) == {H2}
    assert set(s.get(H2).peers) == {v4(5)}  # 3 peers in all
    assert merged(s, rec(H2, v4(7), 50_000)) == set()


def test_the_later_word_wins():
    s = make()
    s.register([H1])
    merged(s, rec(H1, v4(1), 300_000, seeder=True))
    before = state(s)
    # an earlier deadline (another tracker heard the peer before) changes nothing: no role,
    # no peer id, no deadline; and it is no demand (nothing was stored)
    assert merged(s, rec(H1, v4(1), 20_000, pid=b"x" * 20)) == set()
    assert state(s) == before
    assert merged(s, rec(H1, v4(1), 400_000, pid=b"y" * 20)) == {H1}
    peer = s.get(H1).peers[v4(1)]
    assert (peer.peer_id, peer.slot & 1, s.scrape(H1)) == (b"y" * 20, 1, (0, 0, 1))


def test_a_leecher_turning_seeder_and_back():
    s = make()
    s.register([H1])
    merged(s, rec(H1, v4(1), 50_000) + rec(H1, v4(2), 50_000))
    merged(s, rec(H1, v4(1), 60_000, seeder=True))
    assert s.scrape(H1) == (1, 0, 1)  # completed (counted by the tracker that heard it)
    assert s.get(H1).peers[v4(1)].completed
    merged(s, rec(H1, v4(1), 70_000))
    assert s.scrape(H1) == (0, 0, 2)
    assert set(s.get(H1).peers) == {v4(1), v4(2)}


def test_the_skip_set_passes_over_its_keys():
    s = make()
    s.register([H1])
    s.register([H2])
    skip = ({H1 + v4(1): None}, {}, {H2 + v4(3): None})  # a chain: any of them holds a key
    demand = merged(s, rec(H1, v4(1), 50_000) + rec(H1, v4(2), 50_000)
                    + rec(H2, v4(3), 50_000), skip=skip)
    assert demand == {H1} and set(s.get(H1).peers) == {v4(2)} and not s.get(H2).peers


def test_in_any_looks_through_a_chain_of_containers():
    assert not in_any((), b"k") and not in_any(({}, set()), b"k")
    assert in_any(({b"a": 1}, {b"k"}), b"k") and not in_any(({b"a": 1}, {b"k"}), b"b")


def test_the_skipped_peers_are_passed_over():
    # A peer with a change pending here (tracker.peerchanges: keyed by the Peer) is not
    # changed by another tracker's record of its address; its neighbours are.
    s = make()
    s.register([H1])
    merged(s, rec(H1, v4(1), 50_000) + rec(H1, v4(2), 50_000))
    held = s.get(H1).peers[v4(1)]
    before = (held.slot, held.peer_id, held.expires)
    other = b"-OT0001-" + bytes(12)
    demand = merged(s, rec(H1, v4(1), 90_000, seeder=True, pid=other)
                    + rec(H1, v4(2), 90_000, seeder=True, pid=other), skip_peers=({}, {held: 0}))
    assert (held.slot, held.peer_id, held.expires) == before and held.swarm is s.get(H1)
    assert s.get(H1).peers[v4(2)].peer_id == other and s.scrape(H1) == (1, 0, 1)
    assert demand == {H1}


def test_the_own_prefix_is_stored_but_no_demand():
    s = make()
    s.register([H1])
    s.register([H2])
    demand = merged(s, rec(H1, v4(1), 50_000, pid=OWN + bytes(17))
                    + rec(H2, v4(2), 50_000, pid=OWN + bytes(17)) + rec(H2, v4(3), 50_000),
                    own=OWN)
    assert demand == {H2} and set(s.get(H1).peers) == {v4(1)}
    assert merged(s, rec(H1, v4(4), 50_000, pid=OWN + bytes(17))) == {H1}  # no prefix: any


def test_any_other_batch_is_left_to_the_decoder():
    """False and nothing merged: an IPv6 upsert, a record of another kind or with a
    replaced peer id anywhere in the batch, a truncated or longer batch."""
    s = make()
    s.register([H1])
    plain = b"".join(rec(H1, v4(i), 50_000) for i in range(4))
    stopped = bytes((1,)) + H1 + v4(9) + PID
    downloads = bytes((2,)) + H1 + (1).to_bytes(4, "big")
    replaces = bytes((16,)) + H1 + v4(9) + PID + (50_000).to_bytes(4, "big") + b"p" * 20
    odd = [rec(H1, v6(1), 50_000), stopped, downloads, replaces, rec(H1, v4(9), 1)[:-1],
           PLAIN_V4.pack(3, H1, v4(9), PID, 1), PLAIN_V4.pack(0x84, H1, v4(9), PID, 1)]
    before = state(s)
    for other in odd:
        for batch in (plain + other, other + plain, plain[:51] + other + plain[51:], other):
            demand: set[bytes] = set()
            assert merge_upserts(s, batch, 0.0, (), (), b"", demand) is False, (other,
                                                                                    batch)
            assert demand == set() and state(s) == before
    assert merge_upserts(s, plain + b"\x00", 0.0, (), (), b"", set()) is False
    assert state(s) == before


def test_the_same_as_merge_peer_record_by_record():
    """Random batches over known and unknown swarms, both roles, earlier and later words,
    caps, a skip set and the own prefix: the same swarms, counts, queue and demand."""
    rng = random.Random(18)
    for trial in range(20):
        one, ref = make(max_peers_per_swarm=12, max_peers=40), make(
            max_peers_per_swarm=12, max_peers=40)
        for s in (one, ref):
            s.register([H1])
            s.register([H2])
            s.resolve = lambda h: (h,) if h == H3 else None  # H3 on first use
        for step in range(4):
            base = rng.uniform(0, 400)
            records = [(rng.choice((H1, H2, H3, b"\x09" * 20)), v4(rng.randrange(30)),
                        rng.randrange(0, 600_000), rng.random() < 0.4,
                        rng.choice((PID, OWN + bytes(17), b"z" * 20))) for _ in range(60)]
            skip = ({h + a: None for h, a, *_ in rng.sample(records, 5)},) if step % 2 else ()
            batch = b"".join(rec(h, a, t, seeder=sd, pid=p) for h, a, t, sd, p in records)
            demand = merged(one, batch, base, skip, OWN)
            want: set[bytes] = set()
            for h, a, t, sd, p in records:
                if skip and h + a in skip[0]:
                    continue
                if merge_peer(ref, h, a, p, sd, base + t / 1000) and not p.startswith(OWN):
                    want.add(h)
            assert demand == want, (trial, step)
            assert state(one) == state(ref), (trial, step)
            now = base + rng.uniform(0, 300)
            assert one.clean(now) == ref.clean(now)
            assert state(one) == state(ref)


def test_a_peer_in_the_same_role_takes_the_new_peer_id_and_deadline():
    """The in-place path (a peer already stored in that role): its id is replaced when it
    differs, its deadline moves to a later bucket, an earlier one changes nothing."""
    s = make()
    s.register([H1])
    merged(s, rec(H1, v4(1), 20_000) + rec(H1, v4(2), 20_000, seeder=True))
    assert merged(s, rec(H1, v4(1), 20_500, pid=b"n" * 20)
                  + rec(H1, v4(2), 80_000, seeder=True, pid=OWN + bytes(17)), own=OWN) == {H1}
    peers = s.get(H1).peers
    assert (peers[v4(1)].peer_id, peers[v4(2)].peer_id) == (b"n" * 20, OWN + bytes(17))
    before = state(s)
    assert merged(s, rec(H1, v4(2), 10_000, seeder=True, pid=b"o" * 20)) == set()
    assert state(s) == before
    s.clean(40.0 + TIMEOUT_BUCKET)  # v4(1) lived until 20.5 s, v4(2) until 80 s
    assert set(s.get(H1).peers) == {v4(2)}


def test_an_own_prefix_longer_than_a_peer_id_matches_none():
    s = make()
    s.register([H1])
    assert merged(s, rec(H1, v4(1), 50_000, pid=b"p" * 20), own=b"p" * 21) == {H1}


def test_a_skipped_record_that_changes_nothing_adds_no_demand():
    """A record naming a peer as stored (same role, id and expiry bucket) changes nothing:
    its swarm is demand unless the skip set holds it (or an earlier record added it)."""
    s = make()
    s.register([H1])
    merged(s, rec(H1, v4(1), 50_000))
    before = state(s)
    same = rec(H1, v4(1), 50_001)  # the same 12.5-s expiry bucket
    assert merged(s, same, skip=({H1 + v4(1): None},)) == set()
    assert state(s) == before
    assert merged(s, same) == {H1}
    assert state(s) == before
    assert merged(s, rec(H1, v4(2), 50_000) + same, skip=({H1 + v4(1): None},)) == {H1}


def test_merge_peer_stores_other_trackers_peers_with_their_deadline():
    s = make()
    s.register([H1])
    assert merge_peer(s, H2, v4(9), PID, False, 50.0) is False  # not registered here
    assert merge_peer(s, H1, v4(1), PID, False, 50.0)
    assert merge_peer(s, H1, v6(2), PID, True, 150.0)
    assert s.scrape(H1) == (1, 0, 1)
    assert set(announce(s, H1, v4(3), now=10.0)) == {v4(1), v6(2)}
    # An older word changes nothing; a later one moves the deadline and the role, and
    # counts no download (the tracker that heard it counted it).
    assert merge_peer(s, H1, v4(1), PID, True, 20.0) is False
    assert merge_peer(s, H1, v4(1), b"x" * 20, True, 300.0)
    assert s.scrape(H1) == (2, 0, 1)
    assert s.get(H1).peers[v4(1)].peer_id == b"x" * 20
    check_invariants(s)
    s.clean(170.0)  # v6(2) expired at 150, v4(3) (announced at 10, timeout 100) at 110
    assert set(s.get(H1).peers) == {v4(1)}
    add_downloaded(s, H1, 2)
    add_downloaded(s, H2, 5)  # unknown: ignored
    assert s.scrape(H1) == (1, 2, 0)
    assert drop_peer(s, H1, v4(1)) and not drop_peer(s, H1, v4(1))
    assert s.scrape(H1) == (0, 2, 0)
    assert [x.hashes for x in s.registered()] == [(H1,)]
    check_invariants(s)


def test_merge_peer_respects_caps():
    s = make(max_peers_per_swarm=1)
    s.register([H1])
    assert merge_peer(s, H1, v4(1), PID, False, 50.0)
    assert not merge_peer(s, H1, v4(2), PID, False, 50.0)
    check_invariants(s)
