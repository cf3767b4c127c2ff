"""tracker.peerchanges: a tracker's announces coalesced per (swarm, peer), and the batch they
go out as (both builds: test_compiled_build runs this)."""

from __future__ import annotations

from tracker.peerchanges import (
    MAX_U32,
    PeerChanges,
    encode_batch,
    encode_downloads,
    encode_stopped,
    encode_upsert,
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
    changes.record(hybrid, A4, P1, None, False, False, 0, 1.0)
    changes.record(hybrid, A4, P2, P1, True, False, 1, 2.0)  # the later word, one key
    changes.record(hybrid, A4B, P3, P3, False, True, 1, 3.0)
    assert changes.pending == {
        H1 + A4: (P2, None, True, False, 2.0),  # still replaces what was sent last: nothing
        H1 + A4B: (P3, P3, False, True, 3.0),
    }
    assert changes.downloads == {H1: 2} and not changes.overflow


def test_past_max_pending_everything_is_dropped_and_overflow_set():
    s = swarms()
    changes = PeerChanges(max_pending=2)
    for i in range(2):
        changes.record(s.get(H1), bytes([10, 0, 0, i, 0, 1]), P1, None, False, False, 0, 1.0)
    changes.record(s.get(H1), A4, P1, None, False, False, 0, 1.0)
    assert changes.overflow and list(changes.pending) == [H1 + A4]
    changes.record(s.get(H1), A4, P2, None, False, False, 0, 1.0)  # a known key: no drop
    assert len(changes.pending) == 1


def test_a_batch_is_its_records_in_order():
    pending = {
        H1 + A4: (P1, None, True, False, 5.0),  # plain IPv4, seeder
        H1 + A4B: (P2, P2, False, False, 9.5),  # replaces its own id: plain
        H2 + A4: (P2, P1, False, False, 9.0),  # replaces P1
        H1 + A6: (P1, None, False, False, 10.0),  # IPv6
        b"\x03" * 20 + A4: (P1, P2, False, True, 3.0),  # stopped: removes P2
        b"\x04" * 20 + A4: (P1, None, False, False, -500.0),  # long gone: ttl 0
        b"\x05" * 20 + A4: (P1, None, False, False, 1e8),  # beyond a u32 of ms: capped
    }
    stops: list[bytes] = []
    blob = encode_batch(pending, {H1: 2}, 10.0, 100.0, stops)
    assert blob == b"".join([
        PLAIN_V4.pack(UPSERT_SEEDER, H1, A4, P1, 95_000),
        PLAIN_V4.pack(0, H1, A4B, P2, 99_500),
        encode_upsert(H2, A4, P2, False, 99_000, P1),
        PLAIN_V6.pack(UPSERT_V6, H1, A6, P1, 100_000),
        encode_stopped(b"\x03" * 20, A4, P2),
        PLAIN_V4.pack(0, b"\x04" * 20, A4, P1, 0),
        PLAIN_V4.pack(0, b"\x05" * 20, A4, P1, MAX_U32),
        encode_downloads(H1, 2),
    ])
    assert stops == [b"\x03" * 20 + A4]
    assert encode_batch({}, {}, 0.0, 1.0) == b""
