"""The events endpoint in front of a real TorrentService over local directories, requests
handed to it directly: the bounded queue (503 + Retry-After, all or nothing), objects that
stop qualifying, pinned versions untouched, a key held by a worker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from httpshell import Request
from seeder.config import BucketConfig, Config, EventsConfig, GenerationConfig
from seeder.events.endpoint import EventEndpoint
from seeder.store import make_store
from tests.event_shapes import shaped
from tests.helpers import torrent_service

TOKEN = "tok"


def post(body: bytes, sender: str = "ceph") -> Request:
    return Request(b"POST", b"/-/events?token=" + TOKEN.encode(),
                   ((b"content-type", b"application/json"),), ("127.0.0.1", 1), b"1.1", body)


_sequence = iter(range(1, 1 << 30))


def records(keys: list[str], kind: str = "created") -> bytes:
    """A Ceph delivery for ``keys``, each event newer than every one before."""
    recs = [json.loads(shaped("ceph", kind, "bk", k, sequencer=f"{next(_sequence):08X}"))
            ["Records"][0] for k in keys]
    return json.dumps({"Records": recs}).encode()


@asynccontextmanager
async def running(tmp_path: Path, *, capacity: int = 10000,
                  workers: bool = True) -> AsyncIterator[tuple[EventEndpoint, Path]]:
    root = tmp_path / "bk"
    root.mkdir()
    config = Config(generation=GenerationConfig(threads=1, concurrency=2),
                    events=EventsConfig(enabled=True, token=TOKEN),
                    buckets=(BucketConfig(name="bk", backend="local", path=str(root)),))
    stores = {b.name: make_store(b) for b in config.buckets}
    async with torrent_service(tmp_path / "catalog.sqlite3", stores, config) as (service, _):
        endpoint = EventEndpoint(service, capacity=capacity)
        async with trio.open_nursery() as nursery:
            if workers:
                await nursery.start(endpoint.run)
            yield endpoint, root
            nursery.cancel_scope.cancel()


async def test_full_queue_answers_503_and_takes_nothing(tmp_path: Path) -> None:
    async with running(tmp_path, capacity=3, workers=False) as (endpoint, _):
        r = await endpoint.handle(post(records(["a", "b"])))
        assert r.status == 200
        r = await endpoint.handle(post(records(["a", "c", "d"])))  # needs 2 new slots of 1
        assert r.status == 503 and (b"retry-after", b"1") in r.headers
        assert len(endpoint.pending) == 2
        r = await endpoint.handle(post(records(["a", "b", "c"])))  # a, b coalesce
        assert r.status == 200 and len(endpoint.pending) == 3


async def test_object_that_stops_qualifying_loses_its_torrent(tmp_path: Path) -> None:
    async with running(tmp_path) as (endpoint, root):
        (root / "f.bin").write_bytes(b"q" * 4096)
        assert (await endpoint.handle(post(records(["f.bin"])))).status == 200
        await endpoint.wait_idle()
        assert endpoint.torrents.lookup_cached("bk", "f.bin") is not None
        (root / "f.bin").write_bytes(b"")  # emptied: S3 makes no torrent of 0 bytes
        assert (await endpoint.handle(post(records(["f.bin"])))).status == 200
        await endpoint.wait_idle()
        assert endpoint.torrents.lookup_cached("bk", "f.bin") is None


async def test_removed_event_without_a_torrent_touches_nothing(tmp_path: Path) -> None:
    async with running(tmp_path) as (endpoint, root):
        (root / "g.bin").write_bytes(b"g" * 100)
        assert (await endpoint.handle(post(records(["g.bin"], "removed")))).status == 200
        await endpoint.wait_idle()
        # No torrent before, none made by a delete event for an object still there.
        assert endpoint.torrents.lookup_cached("bk", "g.bin") is None
        assert endpoint.applied == 1


async def test_a_flood_for_one_key_while_it_hashes(tmp_path: Path) -> None:
    async with running(tmp_path) as (endpoint, root):
        (root / "h.bin").write_bytes(b"h" * 300_000)
        for _ in range(100):
            r = await endpoint.handle(post(records(["h.bin"])))
            assert r.status == 200
        await endpoint.wait_idle()
        assert endpoint.torrents.lookup_cached("bk", "h.bin") is not None
        assert endpoint.applied <= 3  # one slot: the first, then at most the latest again


async def test_refusals_are_logged_once_per_interval(tmp_path: Path, caplog) -> None:
    async with running(tmp_path, workers=False) as (endpoint, _):
        bad = Request(b"POST", b"/-/events?token=wrong", (), ("127.0.0.1", 1), b"1.1", b"{}")
        with caplog.at_level("WARNING", logger="seeder.events.endpoint"):
            for _ in range(50):
                assert (await endpoint.handle(bad)).status == 403
        lines = [r.getMessage() for r in caplog.records if "refused a POST" in r.getMessage()]
        assert lines == ["events: refused a POST from 127.0.0.1: wrong token"]
        # A 401 challenges with both schemes.
        anon = Request(b"POST", b"/-/events", (), ("127.0.0.1", 1), b"1.1", b"{}")
        r = await endpoint.handle(anon)
        assert r.status == 401
        assert [v for k, v in r.headers if k == b"www-authenticate"] == [
            b'Basic realm="s3torrent events"', b'Bearer realm="s3torrent events"']
