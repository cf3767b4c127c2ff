"""tracker.announce: announce/scrape query parsing, good and bad, plus a fuzz invariant."""

from __future__ import annotations

from urllib.parse import quote_from_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker.announce import (
    EVENT_COMPLETED,
    EVENT_NONE,
    EVENT_STARTED,
    EVENT_STOPPED,
    MAX_SCRAPE_HASHES,
    AnnounceError,
    AnnounceRequest,
    ScrapeRequest,
    parse_announce,
    parse_scrape,
    percent_decode,
)

IH = bytes(range(236, 256))  # high bytes: invalid UTF-8, must survive as bytes
PID = b"-lt2010-" + bytes([0, 1, 2, 0x25, 0x26, 0x2B, 0x3D, 0x80, 0xFF, 0x20, 0x7E, 0x3F])


def q(**params: bytes | str | int) -> bytes:
    """A query string the way clients build it: every value percent-encoded from bytes."""
    parts = []
    for name, value in params.items():
        if isinstance(value, int):
            value = str(value)
        if isinstance(value, str):
            value = value.encode()
        parts.append(name.encode() + b"=" + quote_from_bytes(value, safe="").encode())
    return b"&".join(parts)


GOOD = {"info_hash": IH, "peer_id": PID, "port": 6881}


def test_minimal_announce_defaults():
    req = parse_announce(q(**GOOD))
    assert req == AnnounceRequest(info_hash=IH, peer_id=PID, port=6881)
    assert req.left is None and req.compact and req.numwant == 50 and req.event == EVENT_NONE


def test_libtorrent_style_announce():
    query = q(
        **GOOD,
        uploaded=10,
        downloaded=20,
        left=30,
        corrupt=0,
        key="1f2e3d4c",
        event="started",
        numwant=200,
        compact=1,
        no_peer_id=1,
        supportcrypto=1,
        redundant=0,
    )
    req = parse_announce(query)
    assert (req.uploaded, req.downloaded, req.left) == (10, 20, 30)
    assert req.event == EVENT_STARTED and req.numwant == 200 and req.no_peer_id
    assert req.key == b"1f2e3d4c" and req.trackerid is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"started", EVENT_STARTED),
        (b"completed", EVENT_COMPLETED),
        (b"stopped", EVENT_STOPPED),
        (b"", EVENT_NONE),
        (b"empty", EVENT_NONE),
        (b"paused", EVENT_NONE),
    ],
)
def test_events(raw, expected):
    assert parse_announce(q(**GOOD) + b"&event=" + raw).event == expected


def test_transmission_left_before_metadata():
    assert parse_announce(q(**GOOD, left=2**64 - 1)).left == 2**64 - 1


def test_binary_values_decode_to_bytes_never_str():
    # lower-case and upper-case escapes, unescaped safe bytes, and '+' as space
    mixed = b"%EC%ed" + b"%ee" * 3 + b"abcdefghijklmno"
    req = parse_announce(b"info_hash=" + mixed + b"&peer_id=" + b"a+b" + b"c" * 17 + b"&port=1")
    assert req.info_hash == b"\xec\xed\xee\xee\xee" + b"abcdefghijklmno"
    assert req.peer_id == b"a b" + b"c" * 17


def test_first_duplicate_wins_and_unknown_ignored():
    req = parse_announce(q(**GOOD) + b"&port=1&frobnicate=%zz&&&=x&compact=0&compact=1")
    assert req.port == 6881 and req.compact is False


def test_compact_and_numwant_variants():
    assert parse_announce(q(**GOOD, compact=0)).compact is False
    assert parse_announce(q(**GOOD, numwant=-1)).numwant == 50
    assert parse_announce(q(**GOOD, numwant=0)).numwant == 0
    assert parse_announce(q(**GOOD, trackerid="abc")).trackerid == b"abc"


X20 = b"x" * 20
LEN = "info_hash must be 20 bytes, got "
BAD = [
    ("missing info_hash", q(peer_id=PID, port=1), "missing info_hash"),
    ("short info_hash", q(info_hash=IH[:19], peer_id=PID, port=1), LEN + "19"),
    ("long info_hash", q(info_hash=IH + b"x", peer_id=PID, port=1), LEN + "21"),
    ("empty info_hash", b"info_hash=&peer_id=" + X20 + b"&port=1", LEN + "0"),
    ("hex info_hash", q(info_hash=IH.hex(), peer_id=PID, port=1), LEN + "40"),
    ("bad escape", b"info_hash=%zz" + X20[2:] + b"&peer_id=" + X20 + b"&port=1",
     "bad percent-encoding in info_hash"),
    ("truncated escape", b"info_hash=" + b"%aa" * 19 + b"%a", "bad percent-encoding in info_hash"),
    ("missing peer_id", q(info_hash=IH, port=1), "missing peer_id"),
    ("short peer_id", q(info_hash=IH, peer_id=b"abc", port=1), "peer_id must be 20 bytes, got 3"),
    ("missing port", q(info_hash=IH, peer_id=PID), "missing port"),
    ("port zero", q(**{**GOOD, "port": 0}), "invalid port"),
    ("port too big", q(**{**GOOD, "port": 65536}), "invalid port"),
    ("port negative", q(**{**GOOD, "port": "-1"}), "invalid port"),
    ("port text", q(**{**GOOD, "port": "http"}), "invalid port"),
    ("port huge", q(**{**GOOD, "port": "9" * 5000}), "invalid port"),
    ("uploaded text", q(**GOOD, uploaded="lots"), "uploaded is not a number"),
    ("downloaded negative", q(**GOOD, downloaded="-5"), "downloaded is not a number"),
    ("left float", q(**GOOD, left="1.5"), "left is not a number"),
    ("left huge", q(**GOOD, left="9" * 5000), "left is not a number"),
    ("left 2^64", q(**GOOD, left=2**64), "left is out of range"),
    ("left unicode digits", q(**GOOD) + b"&left=\xd9\xa1", "left is not a number"),
    ("numwant text", q(**GOOD, numwant="many"), "numwant is not a number"),
    ("bad event", q(**GOOD, event="finished"), "invalid event"),
    ("key too long", q(**GOOD, key="k" * 65), "key is too long"),
    ("query too long", q(**GOOD) + b"&x=" + b"y" * 40000, "query too long"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "query", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_announce_names_the_problem(name, query, message):
    with pytest.raises(AnnounceError) as info:
        parse_announce(query)
    assert str(info.value) == message
    assert info.value.code


def test_scrape_repeated_info_hash_in_order():
    other = bytes(20)
    assert parse_scrape(q(info_hash=IH) + b"&" + q(info_hash=other) + b"&x=1") == ScrapeRequest(
        (IH, other)
    )


BAD_SCRAPE = [
    ("full scrape", b"", "missing info_hash (full scrape is not supported)"),
    ("short hash", q(info_hash=b"abc"), LEN + "3"),
    ("too many", b"&".join([q(info_hash=IH)] * (MAX_SCRAPE_HASHES + 1)),
     f"too many info_hash (at most {MAX_SCRAPE_HASHES})"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "query", "message"), BAD_SCRAPE, ids=[b[0] for b in BAD_SCRAPE])
def test_bad_scrape_names_the_problem(name, query, message):
    with pytest.raises(AnnounceError) as info:
        parse_scrape(query)
    assert str(info.value) == message


@given(st.binary(max_size=40))
def test_percent_decode_round_trip(value):
    assert percent_decode(quote_from_bytes(value, safe="").encode(), "x") == value


_QUERY_ALPHABET = st.sampled_from(
    [b"info_hash=", b"peer_id=", b"port=", b"left=", b"event=", b"numwant=", b"&", b"=",
     b"%", b"%4", b"%41", b"+", b"1", b"-", b"x" * 20, b"%ff" * 20, b"started", b"\xff", b"0"]
)  # fmt: skip


@given(st.one_of(st.binary(max_size=300), st.lists(_QUERY_ALPHABET, max_size=40).map(b"".join)))
def test_fuzz_parsers_return_request_or_raise_announce_error(data):
    for parse in (parse_announce, parse_scrape):
        try:
            result = parse(data)
        except AnnounceError:
            continue
        assert isinstance(result, AnnounceRequest | ScrapeRequest)


def _scrape_field_by_field(query: bytes) -> ScrapeRequest | str:
    """The scrape parse read field by field (the general path), or its error message."""
    raws = [f[10:] for f in query.split(b"&") if f[:10] == b"info_hash=" or f == b"info_hash"]
    try:
        if not raws or len(raws) > MAX_SCRAPE_HASHES:
            parse_scrape(b"x=1" if not raws else query)  # the count errors: the same text
        return ScrapeRequest(tuple(parse_scrape(b"info_hash=" + r).info_hashes[0] for r in raws))
    except AnnounceError as exc:
        return str(exc)


_SCRAPE_ALPHABET = st.sampled_from(
    [b"info_hash=", b"info_hash", b"&", b"=", b"&info_hash=", b"%b7" * 20, b"x" * 20, b"%",
     b"y=1", b"info_hash=" + b"%ab" * 20, b"info_hashx=", b"\xff"]
)  # fmt: skip


@given(st.lists(_SCRAPE_ALPHABET, max_size=30).map(b"".join))
def test_scrape_fast_split_reads_as_field_by_field(query):
    # parse_scrape splits a query of info_hash fields only at "&info_hash=" at once.
    try:
        got: ScrapeRequest | str = parse_scrape(query)
    except AnnounceError as exc:
        got = str(exc)
    assert got == _scrape_field_by_field(query)
