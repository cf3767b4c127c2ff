"""Generation of many small objects from an ``s3`` bucket: overlapped backend requests (issue 19).

Starts ``python -m moto.server`` on loopback (stopped by its PID at the end), uploads N
objects of 1 KiB (default 2000), then runs one scanner pass (``scan_once`` over a
``TorrentService`` and an ``S3Store``, a fresh catalog each time) with ``SMALL_JOBS`` small
objects in flight, alternating 1 (one object's HEAD and GET after the other) and 16 (the
default), and prints objects per second and the ratio.

    python benchmarks/bench_small_s3.py [--objects 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from procs import free_port

import seeder.ops.scanner as scanner
import seeder.torrent.service as service_mod
from seeder.config import BucketConfig, Config, GenerationConfig
from seeder.ops.scanner import scan_once
from seeder.store import make_store
from seeder.torrent.catalog import Catalog
from seeder.torrent.service import TorrentService

BUCKET = "small"


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 60
    while True:  # bounded by the deadline
        try:
            urllib.request.urlopen(url + "/moto-api/data.json", timeout=2).read()
            return proc, url
        except OSError:
            if time.monotonic() > end or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto did not start") from None
            time.sleep(0.1)


async def one_pass(url: str, in_flight: int, work: Path) -> float:
    service_mod.SMALL_JOBS = in_flight
    scanner.SMALL_JOBS = in_flight
    bucket = BucketConfig(name=BUCKET, backend="s3", endpoint_url=url, region="us-east-1",
                          access_key="testing", secret_key="testing")
    config = Config(generation=GenerationConfig(), buckets=(bucket,))
    shutil.rmtree(work, ignore_errors=True)
    catalog = Catalog.open(work / "catalog.sqlite3")
    store = make_store(bucket, threads=max(4, in_flight))
    svc = TorrentService(catalog, {BUCKET: store}, config)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(svc.run)
            t = time.monotonic()
            summary = await scan_once(svc, {BUCKET: store})
            seconds = time.monotonic() - t
            nursery.cancel_scope.cancel()
        assert summary.generated == summary.listed, summary
        return summary.generated / seconds
    finally:
        await store.aclose()
        catalog.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    proc, url = start_moto()
    work = Path(tempfile.mkdtemp(prefix="bench-small-s3-"))
    try:
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: s3.put_object(Bucket=BUCKET, Key=f"o/{i:06d}",
                                                  Body=os.urandom(1024)), range(args.objects)))
        rates: dict[int, list[float]] = {1: [], 16: []}
        for r in range(args.rounds):
            for n in (1, 16) if r % 2 == 0 else (16, 1):
                rate = trio.run(one_pass, url, n, work / f"r{r}-{n}")
                rates[n].append(rate)
                print(f"round {r}: {n:2d} in flight: {rate:.0f} objects/s", flush=True)
        best1, best16 = max(rates[1]), max(rates[16])
        print(f"\n{args.objects} x 1 KiB on moto: 1 in flight {best1:.0f}/s, 16 in flight "
              f"{best16:.0f}/s ({best16 / best1:.1f}x)")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
