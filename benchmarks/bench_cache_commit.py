"""What the seed cache's fsync per object costs small objects (issue 19).

An ``s3`` bucket's objects are streamed into the seed cache as they are hashed, and each
entry is fsynced before it is moved into place (libtorrent's seed mode trusts its bytes
without a check). This writes N objects of 1 KiB through ``SeedCache.begin`` / ``write`` /
``commit`` from 1 thread and from 16 (``SMALL_JOBS``: the generator's small objects in
flight, each committing in a worker thread), with the fsync as it is and with it skipped,
side by side in one run, and prints objects per second and the ratios. The state dir is a
temporary directory on the filesystem of ``--dir`` (default: the system's temp dir).

    python benchmarks/bench_cache_commit.py [--objects 2000] [--rounds 2] [--dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seeder.seed.cache import SeedCache
from seeder.torrent.service import SMALL_JOBS


def run(root: Path, n: int, threads: int, fsync: bool) -> float:
    cache = SeedCache(root, 10**10)
    data = [os.urandom(1024) for _ in range(64)]

    def one(i: int) -> None:
        w = cache.begin(f"o{i}", 1024)
        w.write(0, data[i % 64])
        w.commit(hashlib.sha1(b"%d" % i).hexdigest())

    t0 = time.monotonic()
    with mock.patch("os.fsync", os.fsync if fsync else (lambda fd: None)):
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(n)))
    return n / (time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    for r in range(args.rounds):
        rates = {}
        for threads in (1, SMALL_JOBS):
            for fsync in (True, False):
                work = Path(tempfile.mkdtemp(prefix="bench-cache-", dir=args.dir))
                try:
                    rates[threads, fsync] = run(work / "seeds", args.objects, threads, fsync)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
        print(f"round {r + 1}: " + ", ".join(
            f"{t} thread{'s' * (t > 1)} {'fsync' if f else 'no fsync'} {v:.0f}/s"
            for (t, f), v in rates.items()))
        for t in (1, SMALL_JOBS):
            print(f"  {t} thread(s): fsync costs {1 - rates[t, True] / rates[t, False]:.0%}"
                  f" of the no-fsync rate")


if __name__ == "__main__":
    main()
