"""seeder.torrent.entry: the one seed key, right for v1, hybrid and v2-only torrents, and the
announce path from a tracker hash to the torrent the session seeds."""

from __future__ import annotations

import random

import pytest

from seeder.seed.policy import Seeding
from seeder.torrent.catalog import Catalog
from seeder.torrent.entry import Entry, seed_key
from tracker.core import TrackerCore

V1 = bytes(range(20))
V2 = bytes(range(100, 132))


def entry(v1: bytes | None, v2: bytes | None, key: str = "k") -> Entry:
    return Entry(
        bucket="bk", key=key, etag="e", version_id=None, size=1, last_modified=0.0,
        torrent=b"t-" + key.encode(), info_hash_v1=v1, info_hash_v2=v2, piece_length=16384,
        format="v1" if v2 is None else "hybrid", created_at=0.0,
    )


@pytest.mark.parametrize(
    ("v1", "v2", "key"),
    [
        (V1, None, V1.hex()),  # v1: the v1 hex
        (V1, V2, V1.hex()),  # hybrid: the v1 hex
        (None, V2, V2.hex()),  # v2-only: the full v2 hex, not the 20-byte tracker hash
    ],
)
def test_seed_key(v1: bytes | None, v2: bytes | None, key: str) -> None:
    assert seed_key(v1, v2) == key
    assert entry(v1, v2).seed_key == key


def test_seed_key_needs_a_hash() -> None:
    with pytest.raises(ValueError):
        seed_key(None, None)


class _Session:
    """The two SeedSession calls on_announce makes, keyed as SeedSession keys torrents."""

    def __init__(self, by_torrent: dict[bytes, str]) -> None:
        self.by_torrent = by_torrent
        self.keys: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.keys

    def ensure_seeding(self, torrent: bytes, source: object = None) -> bool:
        self.keys.add(self.by_torrent[torrent])
        return True


@pytest.mark.parametrize(
    ("v1", "v2", "announced"),
    [(V1, None, V1), (V1, V2, V1), (V1, V2, V2[:20]), (None, V2, V2[:20])],
)
def test_an_announce_finds_the_torrent_to_seed(tmp_path, v1, v2, announced) -> None:
    e = entry(v1, v2)
    with Catalog.open(tmp_path / "catalog.sqlite3") as catalog:
        catalog.put(e)
        session = _Session({e.torrent: e.seed_key})
        seeding = Seeding(session, cache=None, clock=lambda: 0.0)  # type: ignore[arg-type]
        core = TrackerCore(
            interval=600, min_interval=60, rng=random.Random(1), secret=b"s" * 32,
            on_announce=lambda h: seeding.on_announce(h, catalog.by_info_hash),
        )
        core.register(e.tracker_hashes)
        target = (b"/announce?info_hash=" + "".join(f"%{b:02x}" for b in announced).encode()
                  + b"&peer_id=-lt2010-000000000001&port=6881&left=5")
        status, _, _ = core.http(target, (), ("127.0.0.2", 40000), 0.0)
        assert status == 200
        assert session.keys == {e.seed_key} and seeding.announce_adds == 1
        core.http(target, (), ("127.0.0.2", 40000), 1.0)  # in the session now: not added again
        assert seeding.announce_adds == 1
