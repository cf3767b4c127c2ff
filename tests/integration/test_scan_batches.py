"""The scanner's small objects made in batches (seeder.torrent.batch) over real local
directories, a real catalog and seed cache: the same torrents a job per object makes, a file
changed or deleted since the listing fails alone (never a wrong torrent), and, as a process
of its own, the daemon's first scan of a bucket of small files."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from seeder.config import BucketConfig, Config, GenerationConfig
from seeder.ops.scanner import scan_once
from seeder.seed.cache import SeedCache
from seeder.store import NoSuchKey, ObjectChanged, ObjectInfo
from seeder.store.local import LocalStore
from seeder.torrent.batch import SmallBatches
from seeder.torrent.entry import Entry
from seeder.torrent.hashing import SMALL_OBJECT
from tests.helpers import free_port, torrent_service, wait_until
from tracker import bencode

ROOT = Path(__file__).resolve().parents[2]


def fill(root: Path, count: int, *, big: int = 0) -> dict[str, bytes]:
    """``count`` small files of 1 B .. ~3 KiB in a few directories, one of exactly
    SMALL_OBJECT bytes, and ``big`` bytes in one larger file (if any): key -> bytes."""
    files: dict[str, bytes] = {}
    for i in range(count):
        files[f"d{i % 3}/o{i:04d}"] = os.urandom(1 + (i * 37) % 3000)
    files["edge"] = os.urandom(SMALL_OBJECT)
    if big:
        files["large"] = os.urandom(big)
    for key, data in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    return files


@asynccontextmanager
async def running(tmp_path: Path, bucket: BucketConfig, *, name: str = "state",
                  store: LocalStore | None = None, chunk_sink_factory=None):
    config = Config(generation=GenerationConfig(threads=1, concurrency=2), buckets=(bucket,))
    assert bucket.path is not None
    stores = {bucket.name: store or LocalStore(bucket.name, bucket.path)}
    async with torrent_service(tmp_path / name / "catalog.sqlite3", stores, config,
                               chunk_sink_factory=chunk_sink_factory) as (service, rec):
        yield service, stores, rec


@pytest.mark.parametrize("bucket_args", [
    {},
    {"torrent_format": "hybrid", "piece_length": 16384},  # many pieces: piece layers too
])
async def test_a_scan_in_batches_makes_the_torrents_a_job_per_object_makes(
        tmp_path: Path, bucket_args: dict) -> None:
    root = tmp_path / "bk"
    files = fill(root, 150, big=SMALL_OBJECT + 5000)
    bucket = BucketConfig(name="bk", backend="local", path=str(root), webseed="proxy",
                          **bucket_args)
    async with running(tmp_path, bucket) as (service, stores, rec):
        assert SmallBatches(service).takes(stores["bk"])
        summary = await scan_once(service, stores)
        assert (summary.listed, summary.generated, summary.failed) == (152, 152, 0)
        assert not service.catalog._conn.in_transaction  # committed by the pass
        scanned = {e.key: e for e in service.catalog.entries("bk")}
        assert set(scanned) == set(files) and len(rec.added) == 152
    # The same objects, one request each through a fresh catalog (no batches).
    async with running(tmp_path, bucket, name="state2") as (service, _stores, _rec):
        for key in files:
            alone = await service.get_torrent("bk", key)
            got = scanned[key]
            assert got.torrent == alone.torrent, key
            assert (got.etag, got.size, got.info_hash_v1, got.info_hash_v2, got.format,
                    got.piece_length) == (alone.etag, alone.size, alone.info_hash_v1,
                                          alone.info_hash_v2, alone.format, alone.piece_length)
    # And the pieces are the files' bytes (checked without the code under test).
    for key in ("d0/o0000", "edge"):
        info = bencode.decode(scanned[key].torrent)[b"info"]
        data = files[key]
        plen = info[b"piece length"]
        assert info[b"pieces"] == b"".join(hashlib.sha1(data[i:i + plen]).digest()
                                           for i in range(0, len(data), plen))


class ChangingStore(LocalStore):
    """A real local store whose files change between the listing and the batch's reads."""

    def __init__(self, bucket: str, root: str) -> None:
        super().__init__(bucket, root)
        self.before_reads: list = []

    async def read_many(self, infos: Sequence[ObjectInfo], then) -> list:
        while self.before_reads:
            self.before_reads.pop()()
        return await super().read_many(infos, then)


def fake_entry(key: str) -> Entry:
    return Entry(bucket="bk", key=key, etag="old", version_id=None, size=10, last_modified=0.0,
                 torrent=b"d4:infodee", info_hash_v1=os.urandom(20), info_hash_v2=None,
                 piece_length=16384, format="v1", created_at=0.0)


async def test_a_file_changed_or_deleted_since_the_listing_fails_alone(tmp_path: Path) -> None:
    root = tmp_path / "bk"
    fill(root, 20)
    store = ChangingStore("bk", str(root))
    bucket = BucketConfig(name="bk", backend="local", path=str(root))
    async with running(tmp_path, bucket, store=store) as (service, stores, _rec):
        changed, gone = root / "d1/o0004", root / "d2/o0005"
        service.catalog.put(fake_entry("d2/o0005"))
        infos = [info async for info in store.list()]
        # Same size, other bytes, another mtime: the listed ETag no longer holds.
        store.before_reads.append(lambda: (changed.write_bytes(os.urandom(changed.stat().st_size)),
                                           os.utime(changed, (1.8e9, 1.8e9))))
        store.before_reads.append(gone.unlink)
        results = await SmallBatches(service).make("bk", infos)
        by_key = dict(zip((i.key for i in infos), results, strict=True))
        assert isinstance(by_key["d1/o0004"], ObjectChanged)
        assert isinstance(by_key["d2/o0005"], NoSuchKey)
        assert sum(isinstance(r, Entry) for r in results) == len(infos) - 2
        service.catalog.flush()
        keys = service.catalog.keys("bk")
        assert "d1/o0004" not in keys  # never the torrent of other bytes
        assert "d2/o0005" not in keys  # its cached entry dropped
        assert len(keys) == len(infos) - 2

        # Through the scanner: the failure is counted, the deletion is not an error, and
        # the next pass makes the changed file's torrent from its new bytes.
        service.catalog.delete("bk", "d0/o0003")
        (root / "d0/o0006").write_bytes(b"grown")
        os.utime(root / "d0/o0006", (1.9e9, 1.9e9))
        store.before_reads.append(lambda: (root / "d0/o0003").write_bytes(b"changed again"))
        summary = await scan_once(service, stores)
        assert (summary.generated, summary.failed) == (2, 1)  # o0004 and o0006; o0003 failed
        summary = await scan_once(service, stores)
        assert (summary.generated, summary.failed) == (1, 0)
        entry = service.catalog.get("bk", "d0/o0003")
        assert entry is not None and entry.size == len(b"changed again")
        info = bencode.decode(entry.torrent)[b"info"]
        assert info[b"pieces"] == hashlib.sha1(b"changed again").digest()


async def test_a_batch_copies_into_the_seed_cache_what_the_policy_wants(tmp_path: Path) -> None:
    root = tmp_path / "bk"
    files = fill(root, 10)
    cache = SeedCache(tmp_path / "seeds", 1 << 30)

    def factory(info: ObjectInfo):
        return None if info.key.startswith("d1/") else cache.begin("f", info.size)

    bucket = BucketConfig(name="bk", backend="local", path=str(root))
    async with running(tmp_path, bucket, chunk_sink_factory=factory) as (service, stores, _):
        summary = await scan_once(service, stores)
        assert summary.generated == len(files)
        for entry in service.catalog.entries("bk"):
            where = cache.lookup(entry.seed_key)
            if entry.key.startswith("d1/"):
                assert where is None
            else:
                assert where is not None and cache.is_complete(entry.seed_key)
                assert (where / "f").read_bytes() == files[entry.key]


def test_the_daemon_s_first_scan_of_small_files_as_a_process(tmp_path: Path) -> None:
    """``python -m seeder serve`` over a local bucket of small files: every torrent made by
    its first scan, each the file's bytes (checked against hashlib); the metrics count them."""
    root = tmp_path / "bucket"
    files = fill(root, 400, big=SMALL_OBJECT * 3)
    s3, metrics = free_port(), free_port()
    (tmp_path / "seeder.toml").write_text(f"""
[server]
listen = "127.0.0.1:{s3}"
public_url = "http://127.0.0.1:{s3}"
[tracker]
enabled = false
[metrics]
listen = "127.0.0.1:{metrics}"
[state]
dir = "state"
[scanner]
interval = 3600
[seeding]
enabled = false
[log]
format = "human"
[[buckets]]
name = "data"
path = "bucket"
webseed = "proxy"
""")
    log = tmp_path / "seeder.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "seeder", "serve", "--config",
                                 "seeder.toml"], cwd=tmp_path, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        def scanned() -> bool:
            assert proc.poll() is None, log.read_text()
            return "scan: " in log.read_text()

        wait_until(scanned, 60.0, interval=0.05, what="the first scan pass")
        line = re.search(r"scan: .*", log.read_text())
        assert line is not None and f"{len(files)} torrents generated, 0 failed" in line[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as r:
            text = r.read().decode()
        ok = re.search(r'^seeder_generations_total\{result="ok"\} (\S+)$', text, re.M)
        assert ok is not None and float(ok[1]) == len(files)
        for key in ("d0/o0000", "d2/o0398", "edge", "large"):
            url = f"http://127.0.0.1:{s3}/data/{key}?torrent"
            with urllib.request.urlopen(url, timeout=10) as r:
                info = bencode.decode(r.read())[b"info"]
            data, plen = files[key], info[b"piece length"]
            assert info[b"length"] == len(data)
            assert info[b"pieces"] == b"".join(hashlib.sha1(data[i:i + plen]).digest()
                                               for i in range(0, len(data), plen))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
