"""tracker.udp_protocol: BEP 15 packets, connection ids, and garbage handling."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker.udp_protocol import (
    PROTOCOL_ID,
    ConnectionIds,
    ConnectRequest,
    UdpAnnounce,
    UdpError,
    UdpScrape,
    parse_request,
    render_announce,
    render_connect,
    render_error,
    render_scrape,
    scrape_record,
)

IH = bytes(range(20))
PID = b"-lt2010-" + b"\xff" * 12
ANNOUNCE = struct.Struct(">QII20s20sQQQIIIiH")


def announce_packet(**kw) -> bytes:
    f = dict(cid=1234, tid=77, ih=IH, pid=PID, down=1, left=2**64 - 1, up=3, event=2, ip=0,
             key=9, numwant=-1, port=6881)  # fmt: skip
    f.update(kw)
    return ANNOUNCE.pack(
        f["cid"], 1, f["tid"], f["ih"], f["pid"], f["down"], f["left"], f["up"], f["event"],
        f["ip"], f["key"], f["numwant"], f["port"],
    )  # fmt: skip


def test_connect():
    assert parse_request(struct.pack(">QII", PROTOCOL_ID, 0, 5)) == ConnectRequest(5)
    assert render_connect(5, 2**64 - 1) == struct.pack(">IIQ", 0, 5, 2**64 - 1)


def test_announce_fields_and_bep41_options_ignored():
    req = parse_request(announce_packet() + b"\x02\x0c/announce?x=")
    assert req == UdpAnnounce(1234, 77, IH, PID, 1, 2**64 - 1, 3, 2, 0, 9, -1, 6881)


def test_scrape_hashes_in_order():
    other = b"\xee" * 20
    assert parse_request(struct.pack(">QII", 99, 2, 8) + IH + other) == UdpScrape(
        99, 8, (IH, other)
    )


def test_renders():
    peers = bytes([127, 0, 0, 2, 0x1A, 0xE1])
    assert render_announce(3, 1800, 4, 5, peers) == struct.pack(">IIIII", 1, 3, 1800, 4, 5) + peers
    records = [scrape_record(1, 2, 3), scrape_record(4, 5, 6)]
    assert render_scrape(3, records) == struct.pack(">II6I", 2, 3, 1, 2, 3, 4, 5, 6)
    clamped = [scrape_record(1, 1 << 40, 3)]
    assert render_scrape(3, clamped) == struct.pack(">II3I", 2, 3, 1, 0xFFFFFFFF, 3)
    assert render_error(3, "nope") == struct.pack(">II", 3, 3) + b"nope"
    assert render_announce(3, 1800, 2**40, 0, b"")[12:16] == b"\xff" * 4  # clamped, no crash


BAD = [
    # (name, datagram, message, transaction id to answer or None = drop)
    ("empty", b"", "datagram too short", None),
    ("15 bytes", b"\x00" * 15, "datagram too short", None),
    ("connect wrong magic", struct.pack(">QII", 1, 0, 5), "not a BEP 15 connect", None),
    ("unknown action", struct.pack(">QII", 1, 9, 5), "unknown action", 5),
    ("error action from client", struct.pack(">QII", 1, 3, 5), "unknown action", 5),
    ("truncated announce", announce_packet()[:97], "truncated announce", 77),
    ("announce bad event", announce_packet(event=4), "invalid event", 77),
    ("announce port 0", announce_packet(port=0), "invalid port", 77),
    ("scrape no hashes", struct.pack(">QII", 1, 2, 6), "malformed scrape", 6),
    ("scrape partial hash", struct.pack(">QII", 1, 2, 6) + IH + b"x", "malformed scrape", 6),
    ("scrape 75 hashes", struct.pack(">QII", 1, 2, 6) + IH * 75, "too many info hashes", 6),
]


@pytest.mark.parametrize(("name", "data", "message", "tid"), BAD, ids=[b[0] for b in BAD])
def test_bad_datagrams(name, data, message, tid):
    with pytest.raises(UdpError) as info:
        parse_request(data)
    assert str(info.value) == message
    assert info.value.transaction_id == tid


def test_connection_ids_live_two_to_four_minutes_and_bind_the_address():
    ids = ConnectionIds(b"k" * 32)
    me, other = b"\x7f\x00\x00\x02\x10\x00", b"\x7f\x00\x00\x03\x10\x00"
    cid = ids.issue(me, 1000.0)
    assert ids.valid(cid, me, 1000.0)
    assert ids.valid(cid, me, 1000.0 + 120.0)  # BEP 15: at least two minutes
    assert not ids.valid(cid, me, 1000.0 + 240.0)
    assert not ids.valid(cid, other, 1000.0)
    assert not ids.valid(cid ^ 1, me, 1000.0)
    assert not ConnectionIds(b"j" * 32).valid(cid, me, 1000.0)  # the key matters
    with pytest.raises(ValueError):
        ConnectionIds(b"short")


def test_connection_ids_follow_now_back_and_forth() -> None:
    """The bucket of the last ``now`` is kept (a burst shares it): an earlier or later
    ``now`` is bucketed again, never answered from the last one."""
    ids = ConnectionIds(b"k" * 32)
    me = b"\x7f\x00\x00\x02\x10\x00"
    early = ids.issue(me, 1000.0)
    late = ids.issue(me, 1000.0 + 480.0)
    assert late != early
    assert ids.issue(me, 1000.0) == early
    assert ids.valid(early, me, 1000.0)
    assert not ids.valid(early, me, 1000.0 + 480.0)
    assert ids.valid(late, me, 1000.0 + 480.0)
    assert not ids.valid(late, me, 1000.0)


@given(st.binary(max_size=200))
def test_fuzz_parse_returns_request_or_raises_udp_error(data):
    try:
        req = parse_request(data)
    except UdpError as exc:
        assert exc.transaction_id is None or 0 <= exc.transaction_id < 2**32
        return
    assert isinstance(req, ConnectRequest | UdpAnnounce | UdpScrape)


@given(st.binary(min_size=98, max_size=98), st.sampled_from([0, 1, 2]))
def test_fuzz_with_valid_action(data, action):
    data = data[:8] + action.to_bytes(4, "big") + data[12:]
    try:
        parse_request(data)
    except UdpError:
        pass
