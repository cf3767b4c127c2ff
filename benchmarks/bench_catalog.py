"""The catalog's hot queries at scale (issue 19): a catalog of N synthetic rows (default 1M).

Fills ``catalog.sqlite3`` with N entries of one bucket (a real torrent of a 1-byte object
each: ~250 bytes) through ``put_many``, then times, over random keys: ``get`` (every
GetObjectTorrent), ``by_info_hash`` and ``tracker_hashes`` (announces), one scanner merge
page (``etag_page``), ``count`` and ``buckets``; prints the file size per row.

    python benchmarks/bench_catalog.py [--rows 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seeder.torrent import metainfo
from seeder.torrent.catalog import Catalog
from seeder.torrent.entry import Entry

BATCH = 10_000


def key_of(i: int) -> str:
    return f"d{i // 1000:04d}/o{i:07d}"


def entry(i: int) -> Entry:
    key = key_of(i)
    hashes = metainfo.PieceHashes(262144, hashlib.sha1(bytes([i % 251])).digest())
    torrent = metainfo.build_torrent(
        bucket="data", key=key, size=1, hashes=hashes,
        announce="http://127.0.0.1:6969/announce",
        announce_list=[["http://127.0.0.1:6969/announce"]],
        url_list=[f"http://127.0.0.1:8000/data/{key}"], created_by="s3torrent/0.1.0")
    ih = metainfo.info_hashes(torrent)
    return Entry(bucket="data", key=key, etag=f"{i:032x}", version_id=None, size=1,
                 last_modified=1.7e9, torrent=torrent, info_hash_v1=ih.v1, info_hash_v2=None,
                 piece_length=262144, format="v1", created_at=1.7e9)


def timed(fn, args: list, repeat: int = 1) -> float:
    """Median microseconds per call."""
    samples = []
    for a in args:
        t = time.perf_counter()
        for _ in range(repeat):
            fn(a)
        samples.append((time.perf_counter() - t) / repeat * 1e6)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep", help="work in this directory and keep it")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-catalog-"))
    work.mkdir(parents=True, exist_ok=True)
    path = work / "catalog.sqlite3"
    try:
        with Catalog.open(path) as cat:
            t = time.perf_counter()
            if cat.count() < args.rows:
                for start in range(cat.count(), args.rows, BATCH):
                    cat.put_many([entry(i) for i in range(start, min(args.rows, start + BATCH))])
            print(f"filled {args.rows} rows in {time.perf_counter() - t:.0f} s", flush=True)
            rng = random.Random(1)
            picks = [rng.randrange(args.rows) for _ in range(2000)]
            hashes = [cat.get("data", key_of(i)).info_hash_v1 for i in picks[:200]]
            cat._count = None  # forget the kept count: time a real count(*)
            t0 = time.perf_counter()
            cat.count()
            count_ms = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
            cat.buckets()
            buckets_ms = (time.perf_counter() - t0) * 1e3
            rows = [
                ("get (GetObjectTorrent)", timed(lambda i: cat.get("data", key_of(i)), picks)),
                ("by_info_hash (announce -> entry)", timed(cat.by_info_hash, hashes)),
                ("tracker_hashes (first announce)", timed(cat.tracker_hashes, hashes)),
                ("tracker_hashes, unknown hash", timed(cat.tracker_hashes,
                                                       [os.urandom(20) for _ in range(200)])),
                ("etag_page, 1000 rows (scanner merge)", timed(
                    lambda i: cat.etag_page("data", key_of(i), None, 1000), picks[:50])),
            ]
        size = sum(p.stat().st_size for p in work.glob("catalog.sqlite3*"))
        print(f"\n{args.rows:,} rows, {size / args.rows:.0f} bytes per row on disk "
              f"(torrent bytes included)\n")
        print("| query | median |")
        print("|---|---|")
        for name, us in rows:
            print(f"| {name} | {us:.0f} µs |")
        print(f"| count(*) (once per start) | {count_ms:.0f} ms |")
        print(f"| buckets() (scanner, once per pass) | {buckets_ms:.0f} ms |")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
