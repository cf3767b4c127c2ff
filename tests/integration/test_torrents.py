"""TorrentService over a real local-directory store and a real SQLite catalog."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from contextlib import asynccontextmanager
from pathlib import Path

import libtorrent as lt
import pytest
import trio
import trio.testing

from seeder.config import BucketConfig, Config, GenerationConfig, ServerConfig, TrackerConfig
from seeder.store import NoSuchBucket, NoSuchKey, ObjectChanged, ObjectInfo, make_store
from seeder.torrent import metainfo
from seeder.torrent.catalog import Catalog
from seeder.torrent.entry import Entry
from seeder.torrent.linkstate import links_current
from seeder.torrent.policy import MAX_TORRENT_SIZE, NotQualified
from seeder.torrent.service import TorrentService
from tests.helpers import DelegatingStore, Recorder, torrent_service, write_schema_1_catalog
from tracker import bencode

PUBLIC = "http://127.0.0.1:8123"
ANNOUNCE = "http://127.0.0.1:6969/announce"


class CountingStore(DelegatingStore):
    """A real store, counting what goes through it; reads can be held at a gate or made to fail."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.heads = 0
        self.reads = 0
        self.bytes_read = 0
        self.gate: trio.Event | None = None
        self.fail: Exception | None = None
        self.reading: set[str] = set()
        self.max_keys_reading = 0

    async def head(self, key: str, version_id: str | None = None) -> ObjectInfo:
        self.heads += 1
        return await self.inner.head(key, version_id)

    async def read(self, info: ObjectInfo, start: int, length: int) -> bytes:
        self.reads += 1
        self.reading.add(info.key)
        self.max_keys_reading = max(self.max_keys_reading, len(self.reading))
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.fail is not None:
                raise self.fail
            data = await self.inner.read(info, start, length)
        finally:
            self.reading.discard(info.key)
        self.bytes_read += len(data)
        return data


class RecordingSink:
    def __init__(self, info: ObjectInfo, fail_write: bool = False) -> None:
        self.info = info
        self.chunks: dict[int, bytes] = {}
        self.committed: str | None = None
        self.aborted = False
        self.fail_write = fail_write

    def write(self, offset: int, data: bytes) -> None:
        if self.fail_write:
            raise OSError(28, "No space left on device")
        self.chunks[offset] = bytes(data)

    def commit(self, info_hash_hex: str) -> None:
        self.committed = info_hash_hex

    def abort(self) -> None:
        self.aborted = True

    def content(self) -> bytes:
        out = bytearray()
        for off in sorted(self.chunks):
            assert off == len(out)
            out += self.chunks[off]
        return bytes(out)


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def blob(n: int, seed: int = 0) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d-%d" % (seed, i)).digest()
        i += 1
    return bytes(out[:n])


def make_config(root: Path, *, fmt: str = "v1", concurrency: int = 2, webseed: str = "origin",
                piece_length: int = 0) -> Config:
    return Config(
        server=ServerConfig(public_url=PUBLIC),
        tracker=TrackerConfig(public_url=ANNOUNCE),
        generation=GenerationConfig(threads=2, concurrency=concurrency),
        buckets=(BucketConfig(name="bk", backend="local", path=str(root), torrent_format=fmt,
                              webseed=webseed, piece_length=piece_length),),
    )


@asynccontextmanager
async def running(tmp_path: Path, config: Config, **kw):
    store = CountingStore(make_store(config.buckets[0]))
    async with torrent_service(tmp_path / "state" / "catalog.sqlite3", {"bk": store}, config,
                               **kw) as (service, rec):
        yield service, store, rec


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "bucket"
    d.mkdir()
    return d


def load(entry: Entry) -> lt.torrent_info:
    return lt.torrent_info(lt.bdecode(entry.torrent))


async def test_generates_a_torrent_libtorrent_loads(tmp_path, root):
    data = blob(3 * 262144 + 1234)
    write(root / "dir" / "file one.bin", data)
    async with running(tmp_path, make_config(root)) as (service, store, rec):
        entry = await service.get_torrent("bk", "dir/file one.bin")
    ti = load(entry)
    assert ti.total_size() == len(data)
    assert ti.num_pieces() == 4
    assert ti.piece_length() == entry.piece_length
    assert ti.info_hashes().v1.to_bytes() == entry.info_hash_v1
    assert not ti.info_hashes().has_v2()
    top = bencode.decode(entry.torrent)
    assert top[b"announce"] == ANNOUNCE.encode()
    assert top[b"announce-list"] == [[ANNOUNCE.encode()]]
    assert top[b"url-list"] == [f"{PUBLIC}/bk/dir/file%20one.bin".encode()]
    assert top[b"created by"].startswith(b"s3torrent/")
    assert ti.hash_for_piece(0) == hashlib.sha1(data[:entry.piece_length]).digest()
    assert entry.format == "v1" and entry.size == len(data) and entry.version_id is None
    assert store.bytes_read == len(data)
    assert rec.added == [entry]


async def test_hybrid_torrent(tmp_path, root):
    data = blob(5 * 16384 + 7, seed=3)
    write(root / "h.bin", data)
    async with running(tmp_path, make_config(root, fmt="hybrid", piece_length=16384)) as (
        service, _store, _rec,
    ):
        entry = await service.get_torrent("bk", "h.bin")
    ti = load(entry)
    assert entry.format == "hybrid" and entry.piece_length == 16384
    assert ti.info_hashes().has_v1() and ti.info_hashes().has_v2()
    assert ti.info_hashes().v1.to_bytes() == entry.info_hash_v1
    assert ti.info_hashes().v2.to_bytes() == entry.info_hash_v2


async def test_single_flight(tmp_path, root):
    data = blob(600_000)
    write(root / "k", data)
    async with running(tmp_path, make_config(root)) as (service, store, rec):
        store.gate = trio.Event()
        results: list[Entry] = []

        async def ask() -> None:
            results.append(await service.get_torrent("bk", "k"))

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(ask)
                while store.heads < 10:  # all ten have looked at the object
                    await trio.sleep(0.01)
                await trio.testing.wait_all_tasks_blocked()
                assert service.generating == 1
                store.gate.set()
    assert len(results) == 10
    assert all(r == results[0] for r in results)
    assert store.bytes_read == len(data)  # hashed once
    assert len(rec.added) == 1


async def test_cached_after_restart_without_reading(tmp_path, root):
    write(root / "k", blob(300_000))
    async with running(tmp_path, make_config(root)) as (service, store, _rec):
        first = await service.get_torrent("bk", "k")
        again = await service.get_torrent("bk", "k")
        assert again == first
        assert store.reads > 0
    async with running(tmp_path, make_config(root)) as (service, store, rec):  # restart
        assert service.lookup_cached("bk", "k") == first
        cached = await service.get_torrent("bk", "k")
        assert store.reads == 0
        assert rec.added == []
    assert cached == first


async def test_changed_object_regenerates_and_retires_the_old(tmp_path, root):
    path = root / "k"
    write(path, blob(300_000, seed=1))
    async with running(tmp_path, make_config(root)) as (service, _store, rec):
        old = await service.get_torrent("bk", "k")
        write(path, blob(300_001, seed=2))
        os.utime(path, (1_800_000_000, 1_800_000_000))
        new = await service.get_torrent("bk", "k")
        assert new.etag != old.etag
        assert new.info_hash_v1 != old.info_hash_v1
        assert rec.added == [old, new]
        assert rec.removed == [old]
        assert service.catalog.count() == 1
        assert service.catalog.by_info_hash(old.info_hash_v1) is None
        assert load(new).total_size() == 300_001


async def test_changed_format_regenerates(tmp_path, root):
    write(root / "k", blob(100_000))
    async with running(tmp_path, make_config(root)) as (service, _store, _rec):
        v1 = await service.get_torrent("bk", "k")
    async with running(tmp_path, make_config(root, fmt="hybrid")) as (service, store, rec):
        hybrid = await service.get_torrent("bk", "k")
        assert store.reads > 0
        assert rec.removed == [v1] and rec.added == [hybrid]
    assert hybrid.format == "hybrid" and hybrid.info_hash_v2 is not None


async def test_deleted_object_drops_its_entry(tmp_path, root):
    write(root / "k", blob(1000))
    async with running(tmp_path, make_config(root)) as (service, _store, rec):
        entry = await service.get_torrent("bk", "k")
        (root / "k").unlink()
        with pytest.raises(NoSuchKey):
            await service.get_torrent("bk", "k")
        assert service.lookup_cached("bk", "k") is None
        assert rec.removed == [entry]


async def test_too_large_is_refused_without_reading(tmp_path, root):
    with open(root / "huge", "wb") as f:  # sparse: no 5 GiB written
        f.truncate(MAX_TORRENT_SIZE)
    write(root / "empty", b"")
    async with running(tmp_path, make_config(root)) as (service, store, _rec):
        with pytest.raises(NotQualified) as exc:
            await service.get_torrent("bk", "huge")
        assert exc.value.message == (
            "Torrent creation is not supported for objects larger than 5368709120")
        with pytest.raises(NotQualified):
            await service.get_torrent("bk", "empty")
        assert store.reads == 0
        assert service.catalog.count() == 0


@pytest.mark.parametrize(("bucket", "key", "error"), [
    ("nope", "k", NoSuchBucket),
    ("bk", "missing", NoSuchKey),
])
async def test_store_errors_pass_through(tmp_path, root, bucket, key, error):
    async with running(tmp_path, make_config(root)) as (service, _store, _rec):
        with pytest.raises(error):
            await service.get_torrent(bucket, key)


async def test_failed_job_reaches_every_waiter_and_caches_nothing(tmp_path, root):
    write(root / "k", blob(100_000))
    async with running(tmp_path, make_config(root)) as (service, store, rec):
        store.gate = trio.Event()
        store.fail = ObjectChanged("k changed while hashing")
        errors: list[BaseException] = []

        async def ask() -> None:
            try:
                await service.get_torrent("bk", "k")
            except ObjectChanged as exc:
                errors.append(exc)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(ask)
                while store.heads < 3:
                    await trio.sleep(0.01)
                await trio.testing.wait_all_tasks_blocked()
                store.gate.set()
        assert len(errors) == 3
        assert service.catalog.count() == 0 and rec.added == []
        assert service.generating == 0
        # the next request starts afresh
        store.gate, store.fail = None, None
        assert (await service.get_torrent("bk", "k")).size == 100_000


async def test_cancelled_caller_does_not_cancel_the_shared_job(tmp_path, root):
    write(root / "k", blob(200_000))
    async with running(tmp_path, make_config(root)) as (service, store, rec):
        store.gate = trio.Event()
        with trio.move_on_after(30) as impatient:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(service.get_torrent, "bk", "k")
                while service.generating == 0:
                    await trio.sleep(0.01)
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()  # the only caller gives up
        assert not impatient.cancelled_caught
        assert service.generating == 1
        store.gate.set()
        with trio.fail_after(30):
            entry = await service.get_torrent("bk", "k")
        assert rec.added == [entry]
        assert store.bytes_read == 200_000  # the first job finished; nobody hashed twice


async def test_concurrency_bound(tmp_path, root):
    for i in range(4):
        write(root / f"k{i}", blob(300_000, seed=i))
    async with running(tmp_path, make_config(root, concurrency=1)) as (service, store, _rec):
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(4):
                    nursery.start_soon(service.get_torrent, "bk", f"k{i}")
        assert store.max_keys_reading == 1
        assert service.catalog.count() == 4


async def test_chunks_go_to_the_seed_cache(tmp_path, root):
    data = blob(700_000, seed=9)
    write(root / "k", data)
    write(root / "bad", data[:1000])
    sinks: list[RecordingSink] = []

    def factory(info: ObjectInfo) -> RecordingSink:
        sinks.append(RecordingSink(info, fail_write=info.key == "bad"))
        return sinks[-1]

    async with running(tmp_path, make_config(root), chunk_sink_factory=factory) as (
        service, _store, _rec,
    ):
        entry = await service.get_torrent("bk", "k")
        bad = await service.get_torrent("bk", "bad")  # a failing cache never fails generation
    good_sink, bad_sink = sinks
    assert good_sink.content() == data
    assert good_sink.committed == entry.info_hash_v1.hex() and not good_sink.aborted
    assert bad_sink.aborted and bad_sink.committed is None
    assert bad.size == 1000


async def test_origin_webseed_falls_back_to_proxy_for_local(tmp_path, root):
    write(root / "a+b", b"x" * 5000)
    async with running(tmp_path, make_config(root, webseed="origin")) as (service, _s, _r):
        entry = await service.get_torrent("bk", "a+b")
    assert bencode.decode(entry.torrent)[b"url-list"] == [f"{PUBLIC}/bk/a%2Bb".encode()]


async def test_not_running_is_an_error(tmp_path, root):
    write(root / "k", b"x" * 5000)
    config = make_config(root)
    catalog = Catalog.open(tmp_path / "c.sqlite3")
    store = make_store(config.buckets[0])
    try:
        service = TorrentService(catalog, {"bk": store}, config)
        with pytest.raises(RuntimeError):
            await service.get_torrent("bk", "k")
    finally:
        await store.aclose()
        catalog.close()


async def test_metrics(tmp_path, root):
    from prometheus_client import CollectorRegistry

    from seeder.metrics import SeederMetrics

    registry = CollectorRegistry()
    write(root / "k", blob(100_000))
    write(root / "bad", blob(100_000))
    async with running(tmp_path, make_config(root), metrics=SeederMetrics(registry)) as (
        service, store, _rec,
    ):
        await service.get_torrent("bk", "k")
        store.fail = ObjectChanged("moved")
        with pytest.raises(ObjectChanged):
            await service.get_torrent("bk", "bad")

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("seeder_generations_total", result="ok") == 1
    assert value("seeder_generations_total", result="error") == 1
    assert value("seeder_hashed_bytes_total") == 100_000
    assert value("seeder_generation_duration_seconds_count") == 1
    assert value("seeder_generation_queue_depth") == 0
    assert value("seeder_catalog_torrents") == 1


async def test_s3_origin_webseed_and_pinned_versions(tmp_path, moto_server, s3_versioned_bucket):
    bucket = s3_versioned_bucket
    client = moto_server.client()
    v1 = client.put_object(Bucket=bucket, Key="dir/o b.bin", Body=blob(70_000, 1))["VersionId"]
    v2 = client.put_object(Bucket=bucket, Key="dir/o b.bin", Body=blob(80_000, 2))["VersionId"]
    bconf = BucketConfig(name=bucket, backend="s3", endpoint_url=moto_server.endpoint_url,
                         region="us-east-1", access_key="testing", secret_key="testing")
    config = Config(server=ServerConfig(public_url=PUBLIC),
                    tracker=TrackerConfig(public_url=ANNOUNCE), buckets=(bconf,))
    catalog = Catalog.open(tmp_path / "catalog.sqlite3")
    store = make_store(bconf)
    service = TorrentService(catalog, {bucket: store}, config)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            with trio.fail_after(60):
                current = await service.get_torrent(bucket, "dir/o b.bin")
                pinned = await service.get_torrent(bucket, "dir/o b.bin", v1)
            nursery.cancel_scope.cancel()
    finally:
        await store.aclose()
    origin = store.origin_url("dir/o b.bin")
    assert origin is not None and origin.startswith(moto_server.endpoint_url)
    # The current object's torrent asks for the version it hashed, too (an overwrite would
    # otherwise hand its web seed other bytes).
    assert current.version_id is None and current.size == 80_000
    assert current.object_version == v2
    assert bencode.decode(current.torrent)[b"url-list"] == [
        f"{origin}?versionId={v2}".encode()]
    assert pinned.version_id == v1 and pinned.object_version == v1 and pinned.size == 70_000
    assert bencode.decode(pinned.torrent)[b"url-list"] == [
        f"{origin}?versionId={v1}".encode()]
    assert load(pinned).info_hashes().v1.to_bytes() == pinned.info_hash_v1
    assert catalog.get(bucket, "dir/o b.bin") == current
    assert catalog.get(bucket, "dir/o b.bin", v1) == pinned
    catalog.close()


@asynccontextmanager
async def s3_service(tmp_path, moto_server, bucket: str, **bucket_kw):
    """A TorrentService over one moto bucket (origin web seeds) through a CountingStore."""
    bconf = BucketConfig(name=bucket, backend="s3", endpoint_url=moto_server.endpoint_url,
                         region="us-east-1", access_key="testing", secret_key="testing",
                         **bucket_kw)
    config = Config(server=ServerConfig(public_url=PUBLIC),
                    tracker=TrackerConfig(public_url=ANNOUNCE), buckets=(bconf,))
    catalog = Catalog.open(tmp_path / "state" / "catalog.sqlite3")
    store = CountingStore(make_store(bconf))
    rec = Recorder()
    service = TorrentService(catalog, {bucket: store}, config, listeners=[rec])
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            with trio.fail_after(60):
                yield service, store, rec
            nursery.cancel_scope.cancel()
    finally:
        await store.aclose()
        catalog.close()


def url_list(entry: Entry) -> list[bytes]:
    return bencode.decode(entry.torrent)[b"url-list"]


@pytest.mark.parametrize("webseed", ["origin", "proxy"])
async def test_an_unversioned_bucket_s_web_seed_asks_for_no_version(
        tmp_path, moto_server, s3_bucket, webseed):
    moto_server.client().put_object(Bucket=s3_bucket, Key="o.bin", Body=blob(30_000))
    async with s3_service(tmp_path, moto_server, s3_bucket, webseed=webseed) as (service, store,
                                                                                  _):
        entry = await service.get_torrent(s3_bucket, "o.bin")
        want = (store.origin_url("o.bin") if webseed == "origin"
                else f"{PUBLIC}/{s3_bucket}/o.bin")
        assert entry.object_version is None
        assert url_list(entry) == [want.encode()]


async def test_a_versioned_object_unchanged_gets_byte_identical_torrents(
        tmp_path, moto_server, s3_versioned_bucket):
    """Hashed again (catalog lost) the unchanged object makes the same bytes, the version in
    its web seed URL included; an overwrite makes a torrent asking for the new version."""
    bucket, client = s3_versioned_bucket, moto_server.client()
    v1 = client.put_object(Bucket=bucket, Key="k", Body=blob(90_000, 1))["VersionId"]
    async with s3_service(tmp_path, moto_server, bucket) as (service, store, rec):
        first = await service.get_torrent(bucket, "k")
        assert first.object_version == v1
        assert await service.get_torrent(bucket, "k") == first  # cached: not read again
        reads = store.reads
        service.catalog.delete(bucket, "k")
        again = await service.get_torrent(bucket, "k")
        assert store.reads > reads  # hashed again...
        assert again.torrent == first.torrent  # ...into the same bytes
        v2 = client.put_object(Bucket=bucket, Key="k", Body=blob(90_000, 2))["VersionId"]
        newer = await service.get_torrent(bucket, "k")
    origin = store.origin_url("k")
    assert url_list(first) == [f"{origin}?versionId={v1}".encode()]
    assert url_list(newer) == [f"{origin}?versionId={v2}".encode()]
    assert newer.info_hash_v1 != first.info_hash_v1
    assert [e.info_hash_v1 for e in rec.removed][-1:] == [first.info_hash_v1]


async def test_a_schema_1_row_gets_its_version_without_hashing_again(
        tmp_path, moto_server, s3_versioned_bucket):
    """A torrent cached by a daemon that recorded no versions (url-list without versionId)
    is relinked to the version HeadObject reports when the ETag still matches: same
    info-hash, no read of the object, no listener told of a new torrent."""
    bucket, client = s3_versioned_bucket, moto_server.client()
    v1 = client.put_object(Bucket=bucket, Key="d/k", Body=blob(70_000, 3))["VersionId"]
    async with s3_service(tmp_path / "gen", moto_server, bucket) as (service, store, _):
        made = await service.get_torrent(bucket, "d/k")
    origin = store.origin_url("d/k")
    meta = bencode.decode(made.torrent)
    meta[b"url-list"] = [origin.encode()]  # what the earlier daemon put there
    old = dataclasses.replace(made, torrent=bencode.encode(meta), object_version=None)
    write_schema_1_catalog(tmp_path / "state" / "catalog.sqlite3", [old])
    async with s3_service(tmp_path, moto_server, bucket) as (service, store, rec):
        assert service.catalog.get(bucket, "d/k") == old
        got = await service.get_torrent(bucket, "d/k")
        assert store.reads == 0 and rec.added == [] and rec.removed == []
        assert got.object_version == v1
        assert got.torrent == made.torrent  # what this daemon makes for it
        assert url_list(got) == [f"{origin}?versionId={v1}".encode()]
        assert (got.info_hash_v1, got.created_at) == (old.info_hash_v1, old.created_at)
        assert service.catalog.get(bucket, "d/k") == got
        assert await service.get_torrent(bucket, "d/k") == got


async def test_an_older_job_finishing_late_does_not_replace_a_newer_entry(tmp_path, root):
    write(root / "k", blob(50_000))
    async with running(tmp_path, make_config(root)) as (service, store, rec):
        store.gate = trio.Event()
        got: list[Entry] = []

        async def ask() -> None:
            got.append(await service.get_torrent("bk", "k"))

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask)
                while service.generating == 0:
                    await trio.sleep(0.01)
                # meanwhile a job for a newer version of the object recorded its torrent
                newer = dataclasses.replace(
                    load_entry_template(), etag="newer", last_modified=4_000_000_000.0)
                service.catalog.put(newer)
                store.gate.set()
        assert got[0].size == 50_000 and got[0].etag != "newer"
        assert service.catalog.get("bk", "k") == newer
        assert rec.added == []


def load_entry_template() -> Entry:
    return Entry(bucket="bk", key="k", etag="x", version_id=None, size=1, last_modified=0.0,
                 torrent=b"d4:infodee", info_hash_v1=b"\x01" * 20, info_hash_v2=None,
                 piece_length=16384, format="v1", created_at=0.0)


async def test_a_config_change_relinks_the_cached_torrent_on_request(tmp_path, root):
    """The tracker URL and the daemon's address change under a running service (no
    relink_all): the next request rewrites the cached torrent's links, hashes nothing, tells
    the listeners it was relinked (not added), and the request after gets the same entry."""
    write(root / "k", blob(300_000))
    config = make_config(root, webseed="proxy")
    async with running(tmp_path, config) as (service, store, rec):
        first = await service.get_torrent("bk", "k")
        reads = store.reads
        service.config = dataclasses.replace(
            config, server=ServerConfig(public_url="https://torrents.example.com"),
            tracker=TrackerConfig(public_url="https://torrents.example.com/announce"))
        got = await service.get_torrent("bk", "k")
        assert store.reads == reads and rec.added == [first] and rec.removed == []
        assert rec.relinked == [got]
        assert metainfo.links(got.torrent) == metainfo.Links(
            "https://torrents.example.com/announce",
            (("https://torrents.example.com/announce",),),
            ("https://torrents.example.com/bk/k",))
        assert metainfo.info_hashes(got.torrent) == metainfo.info_hashes(first.torrent)
        assert (got.info_hash_v1, got.etag, got.created_at) == (
            first.info_hash_v1, first.etag, first.created_at)
        assert service.catalog.get("bk", "k") == got
        again = await service.get_torrent("bk", "k")
        assert again == got and rec.relinked == [got]  # current now: nothing rewritten
        # Tracker off: the links go, and relink_all finds nothing more to do afterwards.
        service.config = dataclasses.replace(
            service.config, tracker=TrackerConfig(enabled=False))
        assert service.relink_all() == 1
        off = service.catalog.get("bk", "k")
        assert b"announce" not in bencode.decode(off.torrent)
        assert await service.get_torrent("bk", "k") == off
        assert service.relink_all() == 0 and len(rec.relinked) == 2
        assert store.reads == reads
        # The catalog remembers the config its links were made under: a restart under the
        # same URLs need not walk it; another URL (or bucket setting) must.
        assert links_current(service.catalog, service.config)
        service.config = dataclasses.replace(
            service.config, server=ServerConfig(public_url="https://other.example.com"))
        assert not links_current(service.catalog, service.config)
        service.relink_all()
        assert links_current(service.catalog, service.config)


async def test_an_unreadable_cached_torrent_is_hashed_again_not_served(tmp_path, root):
    write(root / "k", blob(100_000))
    async with running(tmp_path, make_config(root)) as (service, store, rec):
        first = await service.get_torrent("bk", "k")
        service.catalog.put(dataclasses.replace(first, torrent=b"d4:info"))
        reads = store.reads
        got = await service.get_torrent("bk", "k")
        assert store.reads > reads
        assert got.torrent == first.torrent
        # Same info-hashes: not a new torrent for the tracker and the session, which take
        # the links of the good one.
        assert rec.added == [first] and rec.relinked == [got]
