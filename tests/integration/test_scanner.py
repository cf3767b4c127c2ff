"""The scanner over real local-directory stores, a real catalog and a running TorrentService."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from seeder.config import BucketConfig, Config, GenerationConfig
from seeder.ops.scanner import run_scanner, scan_once
from seeder.store import ObjectInfo, StoreUnavailable, make_store
from seeder.torrent.entry import Entry
from seeder.torrent.policy import MAX_TORRENT_SIZE
from tests.helpers import DelegatingStore, torrent_service


class CountingStore(DelegatingStore):
    """A real store that counts bytes read; one key's reads or the whole listing can fail."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.bytes_read = 0
        self.fail_key: str | None = None
        self.fail_list = False

    async def list(self) -> AsyncIterator[ObjectInfo]:
        async for info in self.inner.list():
            if self.fail_list:  # a listing that breaks after its first page
                raise StoreUnavailable("listing: connection reset")
            yield info

    async def read(self, info: ObjectInfo, start: int, length: int) -> bytes:
        if info.key == self.fail_key:
            raise StoreUnavailable("read: 503 SlowDown")
        data = await self.inner.read(info, start, length)
        self.bytes_read += len(data)
        return data


def put_file(path: Path, size: int, fill: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((fill * size)[:size])


def fake_entry(bucket: str, key: str, etag: str = "old") -> Entry:
    return Entry(bucket=bucket, key=key, etag=etag, version_id=None, size=10, last_modified=0.0,
                 torrent=b"d4:infodee", info_hash_v1=os.urandom(20), info_hash_v2=None,
                 piece_length=16384, format="v1", created_at=0.0)


@asynccontextmanager
async def running(tmp_path: Path, roots: dict[str, Path], concurrency: int = 2):
    config = Config(
        generation=GenerationConfig(threads=1, concurrency=concurrency),
        buckets=tuple(BucketConfig(name=b, backend="local", path=str(p)) for b, p in roots.items()),
    )
    stores = {b.name: CountingStore(make_store(b)) for b in config.buckets}
    async with torrent_service(tmp_path / "state" / "catalog.sqlite3", stores, config) as (
        service, rec
    ):
        yield service, stores, rec


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "bk"
    d.mkdir()
    return d


async def test_pass_generates_new_skips_unqualified_and_drops_deleted(tmp_path, root):
    put_file(root / "a", 300_000)
    put_file(root / "sub" / "b", 100_000)
    put_file(root / "empty", 0)
    with open(root / "huge", "wb") as f:
        f.truncate(MAX_TORRENT_SIZE)
    async with running(tmp_path, {"bk": root}) as (service, stores, rec):
        first = await scan_once(service, stores)
        assert (first.buckets, first.listed, first.generated, first.skipped, first.dropped,
                first.failed, first.bucket_errors) == (1, 4, 2, 2, 0, 0, 0)
        assert service.catalog.keys("bk") == {"a", "sub/b"}
        assert stores["bk"].bytes_read == 400_000

        second = await scan_once(service, stores)
        assert (second.generated, second.dropped) == (0, 0)
        assert stores["bk"].bytes_read == 400_000  # nothing re-read

        old = {e.key: e for e in rec.added}
        put_file(root / "a", 300_001, b"y")
        os.utime(root / "a", (1_800_000_000, 1_800_000_000))
        (root / "sub" / "b").unlink()
        third = await scan_once(service, stores)
        assert (third.generated, third.dropped) == (1, 1)
        assert service.catalog.keys("bk") == {"a"}
        assert service.lookup_cached("bk", "a").size == 300_001
        assert sorted(e.key for e in rec.removed) == ["a", "sub/b"]
        assert old["sub/b"] in rec.removed and old["a"] in rec.removed


async def test_one_broken_bucket_does_not_stop_the_pass(tmp_path, root):
    other = tmp_path / "other"
    put_file(other / "o1", 5000)
    put_file(root / "k", 5000)
    missing = tmp_path / "missing"  # the local root does not exist
    async with running(tmp_path, {"bk": root, "gone": missing, "other": other}) as (
        service, stores, rec,
    ):
        keep = fake_entry("gone", "kept")
        service.catalog.put(keep)
        stores["bk"].fail_list = True
        service.catalog.put(fake_entry("bk", "k-old"))
        summary = await scan_once(service, stores)
        assert (summary.buckets, summary.bucket_errors, summary.generated) == (3, 2, 1)
        assert service.catalog.keys("other") == {"o1"}
        # a bucket whose listing failed keeps its entries
        assert service.catalog.get("gone", "kept") == keep
        assert service.catalog.keys("bk") == {"k-old"}
        assert rec.removed == []


async def test_one_failing_object_does_not_stop_the_bucket(tmp_path, root):
    for k in ("a", "b", "c"):
        put_file(root / k, 20_000)
    async with running(tmp_path, {"bk": root}, concurrency=1) as (service, stores, _rec):
        stores["bk"].fail_key = "b"
        summary = await scan_once(service, stores)
        assert (summary.generated, summary.failed) == (2, 1)
        assert service.catalog.keys("bk") == {"a", "c"}
        stores["bk"].fail_key = None
        assert (await scan_once(service, stores)).generated == 1  # retried on the next pass


async def test_entries_of_unconfigured_buckets_are_dropped(tmp_path, root):
    async with running(tmp_path, {"bk": root}) as (service, stores, rec):
        stale = fake_entry("removed-from-config", "k")
        service.catalog.put(stale)
        summary = await scan_once(service, stores)
        assert summary.dropped == 1
        assert service.catalog.count() == 0
        assert rec.removed == [stale]


async def test_run_scanner_passes_at_start_and_periodically(tmp_path, root):
    put_file(root / "first", 10_000)
    async with running(tmp_path, {"bk": root}) as (service, stores, rec):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_scanner, service, stores, 0.05)
            await rec.wait_until(lambda: len(rec.added) == 1)
            put_file(root / "second", 20_000)
            await rec.wait_until(lambda: len(rec.added) == 2)
            (root / "first").unlink()
            await rec.wait_until(lambda: len(rec.removed) == 1)
            nursery.cancel_scope.cancel()
        assert [e.key for e in rec.added] == ["first", "second"]
        assert service.catalog.keys("bk") == {"second"}


async def test_paged_merge_drops_gaps_and_tail_and_reads_nothing_when_unchanged(
        tmp_path, root, monkeypatch):
    """Listing pages of 2 merged with the catalog in key order: rows between listed keys,
    before the first and after the last are dropped; a rescan of the unchanged bucket reads
    and hashes nothing (no HEAD either: a local listing is a stat)."""
    import seeder.ops.scanner as scanner

    monkeypatch.setattr(scanner, "PAGE", 2)
    for k in ("b", "d", "f", "h", "j"):
        put_file(root / k, 1000)
    async with running(tmp_path, {"bk": root}) as (service, stores, _rec):
        first = await scan_once(service, stores)
        assert (first.listed, first.generated, first.dropped) == (5, 5, 0)
        for gone in ("a", "c", "c2", "e", "i", "k", "z"):
            service.catalog.put(fake_entry("bk", gone))
        heads = []
        orig_head = stores["bk"].head

        async def counting_head(key, version_id=None):
            heads.append(key)
            return await orig_head(key, version_id)

        stores["bk"].head = counting_head
        read_before = stores["bk"].bytes_read
        second = await scan_once(service, stores)
        assert (second.listed, second.generated, second.dropped) == (5, 0, 7)
        assert service.catalog.keys("bk") == {"b", "d", "f", "h", "j"}
        assert stores["bk"].bytes_read == read_before and heads == []


async def test_listing_out_of_key_order_stops_the_bucket(tmp_path, root):
    put_file(root / "a", 1000)
    async with running(tmp_path, {"bk": root}) as (service, stores, _rec):
        service.catalog.put(fake_entry("bk", "m"))

        async def unordered():
            for key in ("z", "b"):
                yield ObjectInfo(bucket="bk", key=key, size=10, etag="e", last_modified=0.0)

        stores["bk"].list = unordered
        summary = await scan_once(service, stores)
        assert summary.bucket_errors == 1
        assert service.catalog.keys("bk") == {"m"}  # nothing dropped on a bad merge


async def test_a_pass_commits_its_torrents_for_other_readers(tmp_path, root):
    # The scanner's rows are written without a commit each (one commit a page and at the
    # end of the bucket's pass): a read-only reader sees them all once the pass is over.
    from seeder.torrent.catalog import open_readonly

    for i in range(30):
        put_file(root / f"k{i:02d}", 100 + i)
    async with running(tmp_path, {"bk": root}) as (service, stores, _rec):
        summary = await scan_once(service, stores)
        assert summary.generated == 30
        assert not service.catalog._conn.in_transaction
        with open_readonly(service.catalog.path) as reader:
            assert len(reader.etag_page("bk", None, None)) == 30
            got = reader.get("bk", "k07")
            assert got is not None and got.size == 107
