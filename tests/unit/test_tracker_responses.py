"""tracker.responses: the answers assembled by hand are the bencoding of the same dicts."""

from __future__ import annotations

import random

import pytest

from tracker import bencode, responses


def test_scrape_is_the_bencoded_files_dict() -> None:
    rng = random.Random(7)
    for n in (0, 1, 2, 50, 256):
        files = [
            (rng.randbytes(20), rng.randrange(10**6), rng.randrange(10**9), rng.randrange(5))
            for _ in range(n)
        ]
        expected = bencode.encode(
            {b"files": {h: {b"complete": c, b"downloaded": d, b"incomplete": i}
                        for h, c, d, i in files}}
        )  # fmt: skip
        files.sort()
        hashes = [f[0] for f in files]
        entries = [responses.scrape_entry(*f[1:]) for f in files]
        assert responses.render_scrape(hashes, entries) == expected
        assert bencode.decode(expected)  # and it is valid bencoding


@pytest.mark.parametrize("peers6", [b"", bytes(18)])
@pytest.mark.parametrize("tracker_id", [None, b"", b"abc"])
def test_compact_announce_is_the_bencoded_dict(peers6: bytes, tracker_id: bytes | None) -> None:
    peers = bytes(range(60))
    body: dict[bytes, object] = {
        b"complete": 3, b"incomplete": 0, b"interval": 1800, b"min interval": 300,
        b"peers": peers,
    }  # fmt: skip
    if peers6:
        body[b"peers6"] = peers6
    if tracker_id is not None:
        body[b"tracker id"] = tracker_id
    got = responses.render_announce(
        interval=1800, min_interval=300, complete=3, incomplete=0, peers=peers, peers6=peers6,
        tracker_id=tracker_id,
    )  # fmt: skip
    assert got == bencode.encode(body)
