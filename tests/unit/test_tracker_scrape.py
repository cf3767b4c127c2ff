"""tracker.core's scrapes answer from entries kept per swarm (``Swarm.scrape_http`` /
``scrape_udp``): after any change of a swarm, whichever path made it (announces, expiry,
a cluster's merged and dropped peers and downloads, a resync's direct ``downloaded``,
hybrid registrations merging swarms, unregistering), both answers are the bytes made
from the counts of that moment by the general encoders."""

from __future__ import annotations

import random
import struct
from urllib.parse import quote_from_bytes

import pytest

from tracker import bencode
from tracker.core import TrackerCore
from tracker.peermerge import add_downloaded, drop_peer, merge_peer

HASHES = [bytes([k]) * 20 for k in range(1, 7)]  # 0-3 registered (2 and 3 one hybrid)
UNKNOWN = b"\xee" * 20
CLIENT = ("127.0.0.9", 40000)
_U32 = 0xFFFFFFFF


def _query(hashes: list[bytes]) -> bytes:
    return b"&".join(b"info_hash=" + quote_from_bytes(h, safe="").encode() for h in hashes)


def _expected_http(core: TrackerCore, hashes: list[bytes]) -> bytes:
    files = {}
    for h in hashes:
        counts = core.swarms.scrape(h)
        if counts is None:
            if not core.swarms.open:
                continue  # unknown: left out
            counts = (0, 0, 0)
        c, d, i = counts
        files[h] = {b"complete": c, b"downloaded": d, b"incomplete": i}
    return bencode.encode({b"files": files})


def _expected_udp(core: TrackerCore, tid: int, hashes: list[bytes]) -> bytes:
    out = struct.pack(">II", 2, tid)
    for h in hashes:
        counts = core.swarms.scrape(h) or (0, 0, 0)
        out += struct.pack(">III", *(min(v, _U32) for v in counts))
    return out


def _check(core: TrackerCore, rng: random.Random, cid: int, now: float) -> None:
    asked = [rng.choice([*HASHES, UNKNOWN]) for _ in range(rng.randrange(1, 9))]  # duplicates too
    status, _, body = core.http(b"/scrape?" + _query(asked), (), CLIENT, now)
    assert status == 200 and body == _expected_http(core, asked)
    tid = rng.randrange(1 << 32)
    reply = core.udp(struct.pack(">QII", cid, 2, tid) + b"".join(asked), CLIENT, now)
    assert reply == _expected_udp(core, tid, asked)


def _announce(core: TrackerCore, rng: random.Random, now: float) -> None:
    peer = rng.randrange(12)
    q = _query([rng.choice(HASHES)]) + b"&peer_id=%s&port=%d&left=%d" % (
        b"-XX0001-%012d" % peer, 6000 + peer, rng.choice((0, 0, 5)))
    event = rng.choice((b"", b"", b"started", b"completed", b"stopped"))
    if event:
        q += b"&event=" + event
    core.http(b"/announce?" + q, (), (f"10.0.0.{peer % 3 + 1}", 1), now)


@pytest.mark.parametrize("mode", ["registered", "open", "resolve"])
@pytest.mark.parametrize("seed", range(4))
def test_scrapes_follow_every_change_of_a_swarm(mode: str, seed: int) -> None:
    rng = random.Random(seed)
    lazy = {h: (h,) for h in HASHES[4:]}  # known through resolve, swarm on first use
    core = TrackerCore(rng=random.Random(seed), secret=b"s" * 32, interval=60,
                       open=mode == "open", resolve=lazy.get if mode == "resolve" else None)
    for h in HASHES[:2]:
        core.register([h])
    core.register([HASHES[2]])
    core.register([HASHES[3]])
    now = 0.0
    cid = core.connection_ids.issue(b"\x7f\x00\x00\x09" + (40000).to_bytes(2, "big"), now)
    swarms = core.swarms
    for _ in range(400):
        now += rng.choice((0.0, 1.0, 30.0))
        cid = core.connection_ids.issue(b"\x7f\x00\x00\x09" + (40000).to_bytes(2, "big"), now)
        op = rng.randrange(10)
        h = rng.choice(HASHES)
        addr = bytes([10, 1, 0, rng.randrange(12)]) + (7000).to_bytes(2, "big")
        if op <= 3:
            _announce(core, rng, now)
        elif op == 4:  # a cluster's peer, heard by another node
            merge_peer(swarms, h, addr, b"-YY0001-" + bytes(12), rng.random() < 0.5,
                       now + rng.choice((-1.0, 60.0)))
        elif op == 5:
            drop_peer(swarms, h, addr)
        elif op == 6:  # a cluster's downloads; now and then past 32 bits (UDP clamps)
            add_downloaded(swarms, h, rng.choice((1, 2, 1 << 33)))
        elif op == 7 and (swarm := swarms.get(h)) is not None:  # a resync's count
            swarm.downloaded = max(swarm.downloaded, rng.randrange(50))
        elif op == 8:
            core.clean(now)
        elif op == 9 and rng.random() < 0.2:  # hybrid registrations merge or drop swarms
            if rng.random() < 0.5:
                core.register(rng.sample(HASHES[:4], 2))
            else:
                core.unregister([h])
        _check(core, rng, cid, now)


def test_an_unchanged_swarm_answers_from_its_kept_entries() -> None:
    core = TrackerCore(secret=b"s" * 32)
    core.register([HASHES[0]])
    core.http(b"/announce?" + _query([HASHES[0]]) + b"&peer_id=%s&port=1&left=0" % (b"p" * 20),
              (), CLIENT, 0.0)
    swarm = core.swarms.get(HASHES[0])
    assert swarm is not None and swarm.scrape_http is None and swarm.scrape_udp is None
    body = core.http(b"/scrape?" + _query([HASHES[0]]), (), CLIENT, 0.0)[2]
    cid = core.connection_ids.issue(b"\x7f\x00\x00\x09" + (40000).to_bytes(2, "big"), 0.0)
    core.udp(struct.pack(">QII", cid, 2, 1) + HASHES[0], CLIENT, 0.0)
    kept = swarm.scrape_http, swarm.scrape_udp
    entry = b"d8:completei1e10:downloadedi0e10:incompletei0ee"
    assert kept == (entry, struct.pack(">III", 1, 0, 0))
    assert core.http(b"/scrape?" + _query([HASHES[0]]), (), CLIENT, 0.0)[2] == body
    assert swarm.scrape_http is kept[0] and swarm.scrape_udp is kept[1]  # not made again
    swarm.downloaded += 1
    assert swarm.scrape_http is None and swarm.scrape_udp is None
