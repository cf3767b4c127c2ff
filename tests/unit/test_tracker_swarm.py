"""tracker.swarm: events, peer picks, expiry, hybrid aliases, caps."""

from __future__ import annotations

import random

import pytest

from tracker.announce import EVENT_COMPLETED, EVENT_NONE, EVENT_STARTED, EVENT_STOPPED
from tracker.peermerge import merge_peer
from tracker.swarm import FAMILY_ANY, FAMILY_V4, FAMILY_V6, SwarmError, Swarms

H1, H2, H3 = b"\x01" * 20, b"\x02" * 20, b"\x03" * 20
PID = b"-XX0001-" + b"0" * 12
TIMEOUT = 100.0


def v4(n: int, port: int = 6881) -> bytes:
    return bytes([10, 0, n >> 8, n & 0xFF]) + port.to_bytes(2, "big")


def v6(n: int, port: int = 6881) -> bytes:
    return b"\x20\x01" + bytes(12) + n.to_bytes(2, "big") + port.to_bytes(2, "big")


def make(**kw) -> Swarms:
    return Swarms(peer_timeout=TIMEOUT, rng=random.Random(7), **kw)


def announce(s: Swarms, h: bytes, addr: bytes, *, seeder=False, event=EVENT_NONE, numwant=50,
             families=FAMILY_ANY, now=0.0) -> list[bytes]:  # fmt: skip
    v4s, v6s = s.announce(s.get_or_create(h), addr, PID, seeder, event, numwant, families, now)
    return [v4s[i : i + 6] for i in range(0, len(v4s), 6)] + [
        v6s[i : i + 18] for i in range(0, len(v6s), 18)
    ]


def check_invariants(s: Swarms) -> None:
    seeders = leechers = 0
    for swarm in {id(x): x for x in s.by_hash.values()}.values():
        width = (6, 6, 18, 18)
        assert len(swarm.peers) == sum(len(b) // width[i] for i, b in enumerate(swarm.packed))
        for slot, blob in enumerate(swarm.packed):
            assert len(blob) % width[slot] == 0
            for i in range(len(blob) // width[slot]):
                addr = bytes(blob[i * width[slot] : (i + 1) * width[slot]])
                p = swarm.peers[addr]
                assert (p.slot, p.idx, p.swarm, p.addr) == (slot, i, swarm, addr)
        # the counters kept by add/take are the addresses held
        assert swarm.complete == len(swarm.packed[0]) // 6 + len(swarm.packed[2]) // 18
        assert swarm.incomplete == len(swarm.packed[1]) // 6 + len(swarm.packed[3]) // 18
        seeders += swarm.complete
        leechers += swarm.incomplete
    assert (s.seeders, s.leechers) == (seeders, leechers)
    assert s.swarm_count == len({id(x) for x in s.by_hash.values()})


def test_closed_tracker_refuses_unregistered():
    s = make()
    with pytest.raises(SwarmError, match="unregistered torrent"):
        s.get_or_create(H1)
    s.register([H1])
    assert announce(s, H1, v4(1)) == []
    assert s.scrape(H1) == (0, 0, 1)
    assert s.scrape(H2) is None


def test_events_started_completed_stopped():
    s = make(open=True)
    announce(s, H1, v4(1), event=EVENT_STARTED)
    announce(s, H1, v4(2), event=EVENT_STARTED)
    assert s.scrape(H1) == (0, 0, 2)
    announce(s, H1, v4(1), seeder=True, event=EVENT_COMPLETED)
    assert s.scrape(H1) == (1, 1, 1)
    announce(s, H1, v4(1), seeder=True, event=EVENT_COMPLETED)  # repeated: counted once
    assert s.scrape(H1) == (1, 1, 1)
    assert announce(s, H1, v4(2), event=EVENT_STOPPED) == []
    assert s.scrape(H1) == (1, 1, 0)
    check_invariants(s)
    announce(s, H1, v4(1), event=EVENT_STOPPED)
    assert s.scrape(H1) is None  # open swarm forgotten with its last peer
    assert s.swarm_count == 0
    check_invariants(s)


@pytest.mark.parametrize(
    ("steps", "downloaded"),
    [
        # (seeder, event) announces of one peer, and the swarm's ``downloaded`` after them
        ([(False, EVENT_STARTED), (True, EVENT_COMPLETED)], 1),
        ([(False, EVENT_STARTED), (True, EVENT_STOPPED)], 1),  # aria2: no "completed"
        ([(False, EVENT_STARTED), (True, EVENT_NONE), (True, EVENT_COMPLETED)], 1),
        ([(False, EVENT_STARTED), (True, EVENT_NONE), (True, EVENT_STOPPED)], 1),
        ([(False, EVENT_STARTED), (True, EVENT_NONE), (False, EVENT_NONE), (True, EVENT_NONE)], 1),
        ([(True, EVENT_STARTED), (True, EVENT_STOPPED)], 0),  # a seeder from the start
        ([(False, EVENT_STARTED), (False, EVENT_STOPPED)], 0),  # gave up
        ([(True, EVENT_STOPPED)], 0),  # never stored
    ],
)
def test_a_download_counts_once_per_peer(steps, downloaded):
    s = make()
    s.register([H1])
    for seeder, event in steps:
        announce(s, H1, v4(1), seeder=seeder, event=event)
    counts = s.scrape(H1)
    assert counts is not None and counts[1] == downloaded
    check_invariants(s)


def test_never_handed_own_address_and_numwant_respected():
    s = make(open=True)
    for n in range(30):
        announce(s, H1, v4(n))
    for n in range(30):
        got = announce(s, H1, v4(n), numwant=10)
        assert len(got) == 10 and v4(n) not in got and len(set(got)) == 10
    everyone = announce(s, H1, v4(0), numwant=1000)
    assert sorted(everyone) == sorted(v4(n) for n in range(1, 30))
    assert announce(s, H1, v4(0), numwant=0) == []


def test_window_eventually_hands_out_every_peer():
    s = make(open=True)
    for n in range(200):
        announce(s, H1, v4(n))
    seen: set[bytes] = set()
    for _ in range(200):
        seen.update(announce(s, H1, v4(0), numwant=20))
    assert seen == {v4(n) for n in range(1, 200)}


def test_seeders_get_leechers_first():
    s = make(open=True)
    for n in range(10):
        announce(s, H1, v4(n), seeder=True)
    for n in range(100, 105):
        announce(s, H1, v4(n))
    got = announce(s, H1, v4(0), seeder=True, numwant=8)
    assert set(got[:5]) == {v4(n) for n in range(100, 105)}
    assert len(got) == 8 and all(a in {v4(n) for n in range(1, 10)} for a in got[5:])
    check_invariants(s)


def test_role_change_moves_between_lists():
    s = make(open=True)
    for n in range(5):
        announce(s, H1, v4(n))
    announce(s, H1, v4(2), seeder=True)
    assert s.scrape(H1) == (1, 1, 4)  # a leecher with nothing left finished: one download
    announce(s, H1, v4(2))
    assert s.scrape(H1) == (0, 1, 5)
    check_invariants(s)


def test_families_filter_and_mixed_swarm():
    s = make(open=True)
    for n in range(5):
        announce(s, H1, v4(n))
        announce(s, H1, v6(n))
    assert all(len(a) == 18 for a in announce(s, H1, v6(0), families=FAMILY_V6))
    assert all(len(a) == 6 for a in announce(s, H1, v4(0), families=FAMILY_V4))
    both = announce(s, H1, v4(0), families=FAMILY_ANY)
    assert {len(a) for a in both} == {6, 18} and len(both) == 9
    check_invariants(s)


def test_expiry_by_clean_only_after_timeout():
    s = make(open=True)
    announce(s, H1, v4(1), now=0.0)
    announce(s, H1, v4(2), now=0.0)
    announce(s, H1, v4(2), now=90.0)  # refreshed
    assert s.clean(99.0) == 0
    assert s.clean(TIMEOUT * 9 / 8 + 1) == 1  # v4(1) gone, v4(2) still fresh
    assert s.scrape(H1) == (0, 0, 1)
    assert s.clean(90.0 + TIMEOUT * 9 / 8 + 1) == 1
    assert s.scrape(H1) is None and s.swarm_count == 0
    check_invariants(s)


def test_chatty_peer_costs_bounded_queue_entries():
    s = make(open=True)
    for i in range(10_000):
        announce(s, H1, v4(1), now=i * 0.01)  # 100 s of announces, 100 per second
    assert sum(len(v) for v in s._queue.values()) <= 9


def test_registered_swarm_survives_empty_and_unregister_forgets():
    s = make()
    s.register([H1])
    announce(s, H1, v4(1), now=0.0)
    s.clean(1000.0)
    assert s.scrape(H1) == (0, 0, 0)
    announce(s, H1, v4(1), now=1000.0)
    assert s.unregister([H1]) is True
    assert s.scrape(H1) is None and s.leechers == 0 and s.swarm_count == 0
    assert s.clean(5000.0) == 0  # queued entries of forgotten peers are skipped
    assert s.unregister([H1]) is False


def test_hybrid_hashes_share_one_swarm_and_count_once():
    s = make()
    s.register([H1, H2])
    assert s.swarm_count == 1
    announce(s, H1, v4(1), event=EVENT_STARTED)
    announce(s, H2, v4(1), event=EVENT_STARTED)  # libtorrent announces both hashes
    announce(s, H2, v4(2), event=EVENT_STARTED)
    assert announce(s, H1, v4(1)) == [v4(2)]
    announce(s, H1, v4(2), seeder=True, event=EVENT_COMPLETED)
    announce(s, H2, v4(2), seeder=True, event=EVENT_COMPLETED)
    assert s.scrape(H1) == s.scrape(H2) == (1, 1, 1)
    s.unregister([H2])
    assert s.scrape(H1) is None and s.swarm_count == 0


def test_register_merges_existing_open_swarms():
    s = make(open=True)
    announce(s, H1, v4(1))
    announce(s, H2, v4(1))
    announce(s, H2, v4(2))
    s.register([H1, H2])
    assert s.swarm_count == 1 and s.scrape(H1) == s.scrape(H2) == (0, 0, 2)
    check_invariants(s)
    s.register([H2, H3])  # a later registration adds an alias
    assert s.scrape(H3) == (0, 0, 2)
    with pytest.raises(ValueError):
        s.register([b"short"])


def test_full_v2_hash_is_truncated_like_clients_announce_it():
    s = make()
    v2 = bytes(range(32))
    s.register([H1, v2])
    announce(s, v2[:20], v4(1))
    assert s.scrape(H1) == (0, 0, 1)
    assert s.unregister([v2]) and s.scrape(H1) is None


def test_caps_bound_memory():
    s = make(open=True, max_swarms=3, max_peers_per_swarm=4, max_peers=10)
    for i in range(3):
        announce(s, bytes([i]) * 20, v4(1))
    with pytest.raises(SwarmError, match="tracker is full"):
        s.get_or_create(b"\x09" * 20)
    for n in range(10):
        announce(s, b"\x00" * 20, v4(n))
    assert s.scrape(b"\x00" * 20) == (0, 0, 4)  # peers beyond the cap are not stored
    assert announce(s, b"\x00" * 20, v4(50), numwant=10)  # ... but still answered
    assert s.seeders + s.leechers <= 10
    check_invariants(s)


def test_unstored_stop_does_not_leave_empty_open_swarm():
    s = make(open=True)
    announce(s, H1, v4(1), event=EVENT_STOPPED)
    announce(s, H2, v4(1), event=EVENT_COMPLETED)
    assert s.swarm_count == 1  # H2 keeps its (stored) completing peer
    s2 = make(open=True, max_peers=0)
    announce(s2, H1, v4(1), event=EVENT_COMPLETED)
    assert s2.swarm_count == 0 and s2.by_hash == {}


def test_random_operations_keep_invariants():
    rng = random.Random(3)
    s = make(open=True, max_peers_per_swarm=40)
    hashes = [bytes([i]) * 20 for i in range(1, 5)]
    s.register(hashes[:2])
    now = 0.0
    for _ in range(5000):
        now += rng.random()
        h = rng.choice(hashes)
        addr = rng.choice([v4(rng.randrange(60)), v6(rng.randrange(60))])
        event = rng.choice([EVENT_NONE, EVENT_NONE, EVENT_STARTED, EVENT_COMPLETED, EVENT_STOPPED])
        numwant = rng.randrange(0, 30)
        got = announce(s, h, addr, seeder=rng.random() < 0.3, event=event,
                       numwant=numwant, now=now)  # fmt: skip
        assert addr not in got and len(set(got)) == len(got)
        swarm = s.get(h)
        if event != EVENT_STOPPED and swarm is not None:
            assert set(got) <= set(swarm.peers)
            others = len(swarm.peers) - (addr in swarm.peers)
            assert len(got) == min(numwant, others)
        if rng.random() < 0.05:
            s.clean(now)
        if rng.random() < 0.002:
            s.unregister([rng.choice(hashes)])
    check_invariants(s)


def test_clean_in_slices_matches_one_clean():
    def filled() -> Swarms:
        s = make(open=True)
        for i in range(300):
            announce(s, H1, v4(i), now=0.0)
        for i in range(0, 300, 3):
            announce(s, H1, v4(i), now=TIMEOUT)  # refreshed: a stale entry stays queued
        return s

    late = TIMEOUT * 9 / 8 + 1
    whole = filled()
    expected = whole.clean(late)
    assert expected == 200 and not whole.clean_due(late)

    sliced = filled()
    entries = sum(len(v) for v in sliced._queue.values())
    removed, calls = 0, 0
    while sliced.clean_due(late):
        before = sum(len(v) for v in sliced._queue.values())
        removed += sliced.clean(late, limit=7)
        assert before - sum(len(v) for v in sliced._queue.values()) <= 7
        calls += 1
        assert calls <= entries  # bounded: every call consumes at least one entry
    assert removed == expected and calls > 1
    assert sliced.scrape(H1) == whole.scrape(H1) == (0, 0, 100)
    check_invariants(sliced)
    with pytest.raises(ValueError):
        sliced.clean(late, limit=0)


def test_resolve_registers_on_first_use_and_drops_the_empty_swarm():
    """Registration on first use (a catalog of a million torrents): a swarm exists only
    while it has peers; unknown hashes are still refused; caps apply."""
    known = {H1: (H1, H2), H2: (H1, H2)}  # one hybrid torrent: v1 and truncated v2
    asked: list[bytes] = []

    def resolve(h: bytes):
        asked.append(h)
        return known.get(h)

    s = make(max_swarms=1)
    s.resolve = resolve
    assert s.swarm_count == 0 and s.scrape(H1) == (0, 0, 0)  # known, nobody announced
    assert s.scrape(H3) is None
    with pytest.raises(SwarmError, match="unregistered torrent"):
        s.get_or_create(H3)
    announce(s, H2, v4(1), now=0.0)  # by the v2 hash: one swarm under both hashes
    assert s.swarm_count == 1 and s.get(H1) is s.get(H2)
    assert set(announce(s, H1, v4(2), now=1.0)) == {v4(1)}
    announce(s, H1, v4(1), event=EVENT_STOPPED, now=2.0)
    announce(s, H1, v4(2), event=EVENT_STOPPED, now=2.0)
    assert s.swarm_count == 0 and s.get(H1) is None  # empty: forgotten
    check_invariants(s)
    assert merge_peer(s, H1, v4(5), PID, True, 50.0)  # another tracker's peer: made again
    assert s.swarm_count == 1
    s.clean(1000.0)
    assert s.swarm_count == 0  # expired: forgotten
    s.register([H1])  # an explicit registration stays even empty
    s.clean(5000.0)
    assert s.swarm_count == 1
    check_invariants(s)


def test_resolve_respects_max_swarms():
    s = make(max_swarms=1)
    s.resolve = lambda h: (h,)
    announce(s, H1, v4(1))
    with pytest.raises(SwarmError, match="tracker is full"):
        s.get_or_create(H2)
    assert merge_peer(s, H2, v4(2), PID, False, 50.0) is False
