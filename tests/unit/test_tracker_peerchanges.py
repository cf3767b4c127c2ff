"""tracker.peerchanges: a tracker's announces coalesced per (swarm, peer), and the batch they
go out as (both builds: test_compiled_build runs this)."""

from __future__ import annotations

import random

from tracker.core import TrackerCore
from tracker.peerchanges import (
    KNOWN,
    MAX_U32,
    STOPPED,
    PeerChanges,
    encode_batch,
    encode_downloads,
    encode_stopped,
    encode_upsert,
    sent_id,
    to_ttl,
)
from tracker.peerlog import PLAIN_V4, PLAIN_V6, UPSERT_SEEDER, UPSERT_V6
from tracker.swarm import Swarms

H1, H2 = b"\x01" * 20, b"\x02" * 20
A4, A4B = bytes([10, 0, 0, 1, 0x1A, 0xE1]), bytes([10, 0, 0, 2, 0x1A, 0xE1])
A6 = b"\x20\x01" + bytes(13) + b"\x01\x1a\xe1"
P1, P2, P3 = (b"-AA0001-" + bytes([c]) * 12 for c in b"123")


def swarms() -> Swarms:
    s = Swarms(peer_timeout=100.0)
    s.register([H1, H2 + b"\x00" * 12])  # a hybrid torrent: its changes go under H1
    return s


def test_record_coalesces_per_swarm_and_peer():
    s = swarms()
    changes = PeerChanges(max_pending=10)
    hybrid = s.get(H2)
    changes.record(hybrid, A4, None, P1, None, False, False, 0, 1.0)
    changes.record(hybrid, A4, None, P2, P1, True, False, 1, 2.0)  # the later word, one key
    changes.record(hybrid, A4B, None, P3, P3, False, True, 1, 3.0)
    # each change packed when heard: its time in ms after the first (``since``)
    assert changes.since == 1.0
    assert changes.pending == {
        H1 + A4: PLAIN_V4.pack(UPSERT_SEEDER, H1, A4, P2, 1000),  # replaces what was sent
        H1 + A4B: bytes((STOPPED | KNOWN,)) + H1 + A4B + P3,      # last: nothing
    }
    assert changes.downloads == {H1: 2} and not changes.overflow


def test_a_plain_change_is_packed_byte_for_byte():
    # The compiled build writes the usual record itself (no struct call): every byte of
    # its time field, and a peer id of another length packed as struct packs it.
    s = swarms()
    changes = PeerChanges(max_pending=10)
    changes.record(s.get(H1), A4, None, P1, None, False, False, 0, 1.0)
    changes.record(s.get(H1), A4B, None, P2, P2, True, False, 0, 1.0 + 16909.0625)
    changes.record(s.get(H1), A6[:4] + A4[4:], None, b"short", None, False, False, 0, 2.0)
    assert changes.pending == {
        H1 + A4: PLAIN_V4.pack(0, H1, A4, P1, 0),
        H1 + A4B: PLAIN_V4.pack(UPSERT_SEEDER | KNOWN, H1, A4B, P2, 0x01020306),
        H1 + A6[:4] + A4[4:]: PLAIN_V4.pack(0, H1, A6[:4] + A4[4:], b"short", 1000),
    }
    assert changes.pending[H1 + A4B][-4:] == b"\x01\x02\x03\x06"


def test_a_change_replaces_the_peer_id_sent_last_for_its_address():
    s = swarms()
    changes = PeerChanges(max_pending=10)
    changes.record(s.get(H1), A4, None, P1, P1, False, False, 0, 1.0)  # known: P1 was sent
    changes.record(s.get(H1), A4, None, P2, P1, False, False, 0, 2.0)
    changes.record(s.get(H1), A4, None, P3, P2, False, False, 0, 3.0)  # P1 still was sent
    changes.record(s.get(H1), A4B, None, P1, None, False, True, 0, 4.0)  # new here, stopped
    changes.record(s.get(H1), A4B, None, P2, P1, False, False, 0, 5.0)  # nothing sent for it
    assert [sent_id(r) for r in changes.pending.values()] == [P1, None]
    blob = encode_batch(changes.take(10)[0], {}, changes.since, 11.0, 100.0)
    assert blob == encode_upsert(H1, A4, P3, False, 92_000, P1) + PLAIN_V4.pack(
        0, H1, A4B, P2, 94_000)


def test_past_max_pending_everything_is_dropped_and_overflow_set():
    s = swarms()
    changes = PeerChanges(max_pending=2)
    for i in range(2):
        changes.record(s.get(H1), bytes([10, 0, 0, i, 0, 1]), None, P1, None, False, False, 0,
                       1.0)
    changes.record(s.get(H1), A4, None, P1, None, False, False, 0, 1.0)
    assert changes.overflow and list(changes.pending) == [H1 + A4]
    changes.record(s.get(H1), A4, None, P2, None, False, False, 0, 1.0)  # a known key: no drop
    assert len(changes.pending) == 1


def test_a_change_held_past_a_u32_of_ms_drops_them_all():
    s = swarms()
    changes = PeerChanges(max_pending=10)
    changes.record(s.get(H1), A4, None, P1, None, False, False, 0, 1.0)
    changes.record(s.get(H1), A4B, None, P1, None, False, False, 0, 1.0 + 2**32 / 1000)
    assert changes.overflow and list(changes.pending) == [H1 + A4B]
    assert changes.pending[H1 + A4B] == PLAIN_V4.pack(0, H1, A4B, P1, 0)


def test_a_batch_is_its_records_in_order():
    s = swarms()
    h3, h4, h5 = b"\x03" * 20, b"\x04" * 20, b"\x05" * 20
    s.register([h3])
    s.register([h4])
    s.register([h5])
    changes = PeerChanges(max_pending=10)
    record = changes.record
    record(s.get(H1), A4, None, P1, None, True, False, 0, 5.0)  # plain IPv4, seeder
    record(s.get(H1), A4B, None, P2, P2, False, False, 1, 9.5)  # replaces its own id: plain
    record(s.get(h4), A4, None, P2, P1, False, False, 0, 9.0)  # replaces P1
    record(s.get(H1), A6, None, P1, None, False, False, 1, 10.0)  # IPv6
    record(s.get(h3), A4, None, P1, P2, False, True, 0, 3.0)  # stopped: removes P2
    record(s.get(h5), A6, None, P1, None, False, True, 0, 3.0)  # stopped, nothing sent: own id
    blob = encode_batch(changes.take(10)[0], changes.downloads, changes.since, 10.0, 100.0)
    assert blob == b"".join([
        PLAIN_V4.pack(UPSERT_SEEDER, H1, A4, P1, 95_000),
        PLAIN_V4.pack(0, H1, A4B, P2, 99_500),
        encode_upsert(h4, A4, P2, False, 99_000, P1),
        PLAIN_V6.pack(UPSERT_V6, H1, A6, P1, 100_000),
        encode_stopped(h3, A4, P2),
        encode_stopped(h5, A6, P1),
        encode_downloads(H1, 2),
    ])
    assert encode_batch(b"", {}, 0.0, 0.0, 1.0) == b""


def test_the_flush_turns_times_into_times_to_live_within_a_u32():
    records = [PLAIN_V4.pack(0, H1, A4, P1, 10), encode_upsert(H1, A6, P1, True, 20, P2),
               encode_stopped(H1, A4, P2), PLAIN_V4.pack(KNOWN, H1, A4, P1, MAX_U32 - 5)]
    batch = bytearray(b"".join(records))
    to_ttl(batch, -15)  # 10 ms heard, gone 15 ms ago: 0
    assert bytes(batch) == b"".join([
        PLAIN_V4.pack(0, H1, A4, P1, 0), encode_upsert(H1, A6, P1, True, 5, P2),
        encode_stopped(H1, A4, P2), PLAIN_V4.pack(0, H1, A4, P1, MAX_U32 - 20)])
    batch = bytearray(PLAIN_V4.pack(0, H1, A4, P1, MAX_U32 - 5))
    to_ttl(batch, 10)
    assert bytes(batch) == PLAIN_V4.pack(0, H1, A4, P1, MAX_U32)


# -- the usual change: a peer stored here, kept by its Peer and packed at the flush --------


def tracker() -> tuple[TrackerCore, PeerChanges]:
    changes = PeerChanges(max_pending=10)
    core = TrackerCore(interval=50, rng=random.Random(1), peer_log=changes)  # timeout 100 s
    core.register([H1])
    return core, changes


def announce(core: TrackerCore, host: str, peer_id: bytes, now: float,
             rest: bytes = b"&left=5") -> None:
    query = (b"info_hash=" + b"%01" * 20 + b"&port=6881&compact=1&peer_id=" + peer_id + rest)
    assert b"failure" not in core.http_announce(query, [], host, now)


def flushed(changes: PeerChanges, now: float) -> bytes:
    since, downloads = changes.since, changes.downloads
    return encode_batch(changes.take(100)[0], downloads, since, now, 100.0)


def test_a_stored_peers_announces_are_packed_at_the_flush_as_the_last_one_said():
    core, changes = tracker()
    announce(core, "10.0.0.1", P1, 1.0)
    announce(core, "2001::1", P2, 1.5)
    assert not changes.pending and len(changes.peers) == 2  # no record made yet
    assert flushed(changes, 2.0) == (PLAIN_V4.pack(0, H1, A4, P1, 99_000)
                                     + PLAIN_V6.pack(UPSERT_V6, H1, A6, P2, 99_500))
    announce(core, "10.0.0.1", P1, 3.0)
    announce(core, "10.0.0.1", P1, 4.0, b"&left=0")  # a seeder now: the later word
    announce(core, "2001::1", P2, 4.5)
    (peer, _), (peer6, _) = changes.peers.items()
    assert (peer.peer_id, peer6.peer_id) == (P1, P2) and not changes.pending
    records, pending, peers = changes.take(100)
    assert records == (PLAIN_V4.pack(UPSERT_SEEDER | KNOWN, H1, A4, P1, 1000)
                       + PLAIN_V6.pack(UPSERT_V6 | KNOWN, H1, A6, P2, 1500))
    assert pending == {} and list(peers) == [peer, peer6]
    assert not changes.peers and changes.take(100) == (b"", {}, {})


def test_a_stop_or_a_new_peer_id_before_the_flush_keeps_what_the_announce_said():
    # The peer stops (its Peer leaves the swarm) or changes its id after an announce whose
    # change is held by its Peer: the change that goes out names what was sent last.
    core, changes = tracker()
    announce(core, "10.0.0.1", P1, 1.0)
    announce(core, "10.0.0.2", P1, 1.0)
    changes.take(100)  # pushed: P1 sent for both addresses
    announce(core, "10.0.0.1", P1, 2.0)
    announce(core, "10.0.0.1", P1, 3.0, b"&left=5&event=stopped")  # removes the Peer
    announce(core, "10.0.0.2", P2, 2.0)  # replaces P1
    announce(core, "10.0.0.2", P3, 2.5)  # P1 is still what was sent
    assert flushed(changes, 4.0) == (encode_stopped(H1, A4, P1)
                                     + encode_upsert(H1, A4B, P3, False, 98_500, P1))
    # stopped and back before the flush: one change, from what was sent last
    announce(core, "10.0.0.2", P3, 5.0, b"&left=5&event=stopped")
    announce(core, "10.0.0.2", P3, 6.0)
    announce(core, "10.0.0.1", P2, 6.0)  # new here: nothing was sent
    announce(core, "10.0.0.1", P2, 6.5, b"&left=5&event=stopped")
    announce(core, "10.0.0.1", P1, 7.0)
    assert len(changes.peers) == 2 and not changes.pending
    assert flushed(changes, 7.0) == (PLAIN_V4.pack(0, H1, A4B, P3, 99_000)
                                     + PLAIN_V4.pack(0, H1, A4, P1, 100_000))


def test_a_peer_gone_before_the_flush_without_a_word_here_has_nothing_packed():
    # Expired (held past the peers' timeout: Redis unreachable that long): no address left
    # to name, and an upsert of it would go out with 0 ms to live.
    core, changes = tracker()
    announce(core, "10.0.0.1", P1, 1.0)
    announce(core, "10.0.0.2", P2, 200.0)
    assert core.clean(300.0) == 1
    records, _, peers = changes.take(100)
    assert records == PLAIN_V4.pack(0, H1, A4B, P2, 199_000) and len(peers) == 2
