"""Seeding follows demand (issue 19), on a running daemon with a local bucket of a few
hundred objects and a cap of 5: the scan puts nothing in the session; GetObjectTorrent, an
announce by another peer and web seed traffic do, within a second; the least recently
demanded leave first past the cap; the daemon's own announces are not demand; idle torrents
leave after the tracker's peer timeout."""

from __future__ import annotations

import hashlib
import os
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import trio

from seeder.config import (
    BucketConfig,
    Config,
    HostPort,
    MetricsConfig,
    ScannerConfig,
    SeedingConfig,
    ServerConfig,
    StateConfig,
    TrackerConfig,
)
from seeder.ops.daemon import Daemon, serve
from seeder.seed.settings import PEER_FINGERPRINT
from tests.helpers import lt_download
from tracker import bencode

OBJECTS = 300
CAP = 5
DEADLINE = 60.0


def key_of(i: int) -> str:
    return f"d{i % 7}/obj{i:04d}.bin"


@pytest.fixture
async def daemon(tmp_path: Path, nursery: trio.Nursery) -> Daemon:
    root = tmp_path / "bucket"
    for i in range(OBJECTS):
        path = root / key_of(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes([i % 256]) * (1 + i % 3))
    config = Config(
        server=ServerConfig(listen=HostPort("127.0.0.1", 0), public_url="http://127.0.0.1:9"),
        # Peer timeout 4 s: a torrent without demand for 4 s leaves the session.
        tracker=TrackerConfig(listen=HostPort("127.0.0.1", 0), udp_listen=None,
                              public_url="http://127.0.0.1:9/announce", interval=4,
                              min_interval=1, peer_timeout_factor=1.0),
        metrics=MetricsConfig(listen=None),
        state=StateConfig(dir=str(tmp_path / "state")),
        scanner=ScannerConfig(enabled=True, interval=3600),
        seeding=SeedingConfig(listen_interfaces="127.0.0.1:0", max_active_torrents=CAP),
        buckets=(BucketConfig(name="data", backend="local", path=str(root), webseed="proxy"),),
    )
    d: Daemon = await nursery.start(lambda task_status: serve(config, task_status=task_status))
    with trio.fail_after(DEADLINE):
        while d.catalog.count() < OBJECTS:  # polled; bounded by fail_after
            await trio.sleep(0.05)
    return d


def _url(d: Daemon, path: str) -> str:
    assert d.bound is not None
    host, port = d.bound.s3
    return f"http://{host}:{port}{path}"


def _get(url: str, headers: dict[str, str] | None = None) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                timeout=10) as r:
        return r.read()


async def get_torrent(d: Daemon, i: int) -> str:
    await trio.to_thread.run_sync(_get, _url(d, f"/data/{key_of(i)}?torrent"))
    entry = d.catalog.get("data", key_of(i))
    assert entry is not None
    return entry.seed_key


async def announce(d: Daemon, info_hash: bytes, peer_id: bytes) -> dict:
    assert d.bound is not None and d.bound.tracker_http is not None
    host, port = d.bound.tracker_http
    query = urllib.parse.urlencode({
        "info_hash": info_hash, "peer_id": peer_id, "port": 6881, "uploaded": 0,
        "downloaded": 0, "left": 1, "compact": 1,
    })
    body = await trio.to_thread.run_sync(_get, f"http://{host}:{port}/announce?{query}")
    return bencode.decode(body)


def sample(d: Daemon, name: str, **labels: str) -> float:
    return d.registry.get_sample_value(name, labels) or 0.0


async def until(predicate, what: str) -> None:
    with trio.fail_after(DEADLINE):
        while not predicate():  # polled; bounded by fail_after
            await trio.sleep(0.02)


async def test_demand_cap_announce_webseed_and_idle(daemon: Daemon) -> None:
    d = daemon
    session = d.seeding.session
    # A scanned catalog is not demand: nothing in the session.
    assert session.torrents() == [] and sample(d, "seeder_catalog_torrents") == OBJECTS
    assert sample(d, "seeder_active_torrents") == 0

    keys = [await get_torrent(d, i) for i in range(7)]
    assert sorted(session.torrents()) == sorted(keys[2:])  # the cap: 0 and 1 left first
    assert sample(d, "seeder_active_torrents") == CAP
    assert sample(d, "seeder_torrent_deactivations_total", reason="cap") == 2
    assert sample(d, "seeder_torrent_activations_total", reason="torrent") == 7

    # The daemon's own seed announcing is not demand ...
    first = bytes.fromhex(keys[0])
    reply = await announce(d, first, PEER_FINGERPRINT.encode() + b"x" * 12)
    assert b"failure reason" not in reply
    assert not session.has(keys[0])
    # ... another peer's announce is: back in the session (the least recent, 2, leaves).
    await announce(d, first, b"-TS0001-" + b"y" * 12)
    await until(lambda: session.has(keys[0]), "announced torrent active")
    assert not session.has(keys[2]) and len(session.torrents()) == CAP

    # Web seed traffic is demand too.
    entry = d.catalog.get("data", key_of(10))
    assert entry is not None and not session.has(entry.seed_key)
    body = await trio.to_thread.run_sync(
        lambda: _get(_url(d, f"/data/{key_of(10)}"), {"range": "bytes=0-0"}))
    assert body == bytes([10])
    assert session.has(entry.seed_key) and len(session.torrents()) == CAP
    assert sample(d, "seeder_torrent_activations_total", reason="webseed") == 1

    # Nobody asks any more: every torrent leaves after the peer timeout (4 s).
    await until(lambda: session.torrents() == [], "idle torrents left")
    assert sample(d, "seeder_active_torrents") == 0
    assert sample(d, "seeder_torrent_deactivations_total", reason="idle") == CAP
    # ... and comes back on the next demand.
    again = await get_torrent(d, 3)
    assert session.torrents() == [again]


# -- local buckets without a second copy -------------------------------------------------------


async def test_local_objects_are_seeded_from_their_own_files_never_a_wrong_byte(
        daemon: Daemon, tmp_path: Path) -> None:
    """Generation copied nothing into the seed cache; a demanded torrent is seeded from the
    bucket's file (a libtorrent client gets the right bytes from the session alone); a file
    overwritten in place, or replaced by a rename, takes its torrent out of the session
    within the re-check (never its changed bytes), its new torrent is seeded in place again,
    and the daemon never deletes a bucket file."""
    d = daemon
    session = d.seeding.session
    seeds = tmp_path / "state" / "seeds"
    assert not [p for p in seeds.iterdir() if p.name != ".tmp"]  # no second copy made
    assert d.bound is not None and d.bound.bittorrent_port is not None
    peer = f"127.0.0.1:{d.bound.bittorrent_port}"
    root = Path(d.config.buckets[0].path)

    async def download(i: int, tag: str) -> dict:
        torrent = await trio.to_thread.run_sync(
            _get, _url(d, f"/data/{key_of(i)}?torrent"))
        return await lt_download(torrent, tmp_path / tag, "127.0.0.2", DEADLINE,
                                 "--peer", peer)

    async def in_place(i: int) -> str:
        key = await get_torrent(d, i)
        assert session.has(key) and key in session._sources
        return key

    # Seeded in place: the bytes come from the bucket's file through the session.
    path = root / key_of(20)
    got = await download(20, "a")
    assert got["sha1"] == hashlib.sha1(path.read_bytes()).hexdigest()
    key = await in_place(20)

    # Overwritten in place (same size, new bytes): out of the session within the re-check.
    old_bytes = path.read_bytes()
    with open(path, "r+b") as f:
        f.write(bytes([255 - old_bytes[0]]) * len(old_bytes))
    await until(lambda: not session.has(key), "changed file out of the session")
    assert key not in session._sources
    # Its old torrent cannot come back (stale), the new one is seeded in place, right bytes.
    stale = d.catalog.get("data", key_of(20))
    assert stale is not None and not d.seeding.active.want(stale, "torrent")
    got = await download(20, "b")
    assert got["sha1"] == hashlib.sha1(path.read_bytes()).hexdigest()
    new_key = await in_place(20)
    assert new_key != key and path.is_file()  # the old torrent left; the file stays

    # Replaced by a rename (a new inode): out as well.
    other = root / key_of(21)
    key21 = await in_place(21)
    tmp = other.with_name("new.tmp")
    tmp.write_bytes(b"renamed bytes")
    os.replace(tmp, other)
    await until(lambda: not session.has(key21), "replaced file out of the session")
    got = await download(21, "c")
    assert got["sha1"] == hashlib.sha1(b"renamed bytes").hexdigest()
    assert other.read_bytes() == b"renamed bytes"
    assert not [p for p in seeds.iterdir() if p.name != ".tmp"]  # still no copy
