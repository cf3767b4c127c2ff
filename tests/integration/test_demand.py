"""Seeding follows demand (issue 19), on a running daemon with a local bucket of a few
hundred objects and a cap of 5: the scan puts nothing in the session; GetObjectTorrent, an
announce by another peer and web seed traffic do, within a second; the least recently
demanded leave first past the cap; the daemon's own announces are not demand; idle torrents
leave after the tracker's peer timeout."""

from __future__ import annotations

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
