"""ListObjectsV2 of a 100k-key bucket, 1000 keys a page: this daemon (local bucket) vs moto and
s3rver holding the same keys, side by side in one run.

Makes a local directory of N one-byte files (flat by default: the worst case for a directory
walk, one 100k-name directory; ``--nested`` spreads them over 100 directories), starts the
daemon on it (``seeder serve``: scanner, tracker and seeding off), a moto server and s3rver,
and PUTs the same keys to both (plain unsigned HTTP, 8 threads; that still takes minutes).
Then, per round and in turn, one keep-alive HTTP connection pages through the whole bucket on
each server (unsigned ``GET /bench?list-type=2&max-keys=1000&continuation-token=...``: the
server's time plus the transfer, no client-side XML parsing), every page timed; and once, a
boto3 paginator (SigV4, botocore's XML parsing included: what an SDK user sees). Prints per
server the median and p90 time per page, the RSS, and the ratios of the medians (other / ours:
above 1 means this daemon is faster).

    python benchmarks/bench_listing.py [--keys 100000] [--rounds 3] [--nested]
                                       [--skip-moto] [--skip-s3rver]

A script, not a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from procs import answers, free_port, stop  # noqa: E402

from tests.conftest import S3RVER_BIN  # noqa: E402

AK, SK = "AKIDBENCH", "bench-secret"
PAGE = 1000
START_DEADLINE = 60.0


def key_of(i: int, nested: bool) -> str:
    return f"d{i % 100:02d}/k{i:07d}" if nested else f"k{i:07d}"


def make_tree(root: Path, n: int, nested: bool) -> None:
    for i in range(n):
        path = root / key_of(i, nested)
        if nested:
            path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")


def start(cmd: list[str], url: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:  # bounded by the deadline
        if proc.poll() is not None:
            raise SystemExit(f"{cmd[0]} exited with {proc.returncode}")
        if answers(url):
            return proc
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit(f"{cmd[0]} did not answer within {START_DEADLINE} s")


def client(url: str, ak: str, sk: str) -> Any:
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=ak, aws_secret_access_key=sk,
                        config=BotoConfig(signature_version="s3v4",
                                          s3={"addressing_style": "path"},
                                          retries={"max_attempts": 1},
                                          max_pool_connections=32))


def fill(c: Any, port: int, bucket: str, n: int, nested: bool, label: str) -> None:
    c.create_bucket(Bucket=bucket)
    started = time.monotonic()
    local = threading.local()

    def put(i: int) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("PUT", f"/{bucket}/{key_of(i, nested)}", body=b"x",
                     headers={"Content-Type": "application/octet-stream"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise SystemExit(f"{label}: PUT answered {resp.status}")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(n), chunksize=256))
    print(f"  {label}: {n} PUTs in {time.monotonic() - started:.0f} s", flush=True)


_TOKEN = re.compile(rb"<NextContinuationToken>([^<]*)</NextContinuationToken>")
_COUNT = re.compile(rb"<KeyCount>(\d+)</KeyCount>")


def raw_page_times(port: int, bucket: str, n: int) -> list[float]:
    """Unsigned ListObjectsV2 pages over one keep-alive connection."""
    from urllib.parse import quote

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    times: list[float] = []
    token: bytes | None = None
    seen = 0
    try:
        for _ in range(n // PAGE + 2):  # bounded: one more page than the keys need
            target = f"/{bucket}?list-type=2&max-keys={PAGE}"
            if token:
                target += "&continuation-token=" + quote(token.decode(), safe="")
            t0 = time.perf_counter()
            conn.request("GET", target)
            resp = conn.getresponse()
            body = resp.read()
            times.append(time.perf_counter() - t0)
            if resp.status != 200:
                raise SystemExit(f"GET {target}: {resp.status} {body[:200]!r}")
            m = _COUNT.search(body)
            seen += int(m.group(1)) if m else 0
            t = _TOKEN.search(body)
            if t is None:
                break
            token = t.group(1).replace(b"&amp;", b"&")
    finally:
        conn.close()
    if seen != n:
        raise SystemExit(f"listed {seen} keys, expected {n}")
    return times


def page_times(c: Any, bucket: str, n: int) -> list[float]:
    times: list[float] = []
    token: str | None = None
    seen = 0
    for _ in range(n // PAGE + 2):  # bounded: one more page than the keys need
        kw: dict[str, Any] = {"Bucket": bucket, "MaxKeys": PAGE}
        if token:
            kw["ContinuationToken"] = token
        t0 = time.perf_counter()
        resp = c.list_objects_v2(**kw)
        times.append(time.perf_counter() - t0)
        seen += resp.get("KeyCount", 0)
        token = resp.get("NextContinuationToken")
        if not resp.get("IsTruncated"):
            break
    if seen != n:
        raise SystemExit(f"listed {seen} keys, expected {n}")
    return times


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nested", action="store_true")
    ap.add_argument("--skip-moto", action="store_true")
    ap.add_argument("--skip-s3rver", action="store_true")
    args = ap.parse_args()
    n = args.keys

    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="bench-listing-") as tmp:
        tmpdir = Path(tmp)
        data = tmpdir / "bucket"
        data.mkdir()
        t0 = time.monotonic()
        make_tree(data, n, args.nested)
        print(f"local tree: {n} files in {time.monotonic() - t0:.0f} s", flush=True)
        port = free_port()
        cfg = tmpdir / "seeder.toml"
        cfg.write_text(
            f'[server]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'
            '[tracker]\nenabled = false\n[metrics]\nlisten = ""\n'
            f'[state]\ndir = "{tmpdir / "state"}"\n[scanner]\nenabled = false\n'
            '[seeding]\nenabled = false\n'
            f'[[buckets]]\nname = "bench"\npath = "{data}"\n'
            f'[[credentials]]\naccess_key = "{AK}"\nsecret_key = "{SK}"\n')
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        servers: dict[str, tuple[Any, int, int]] = {}  # name -> boto3 client, pid, port
        try:
            ours = start([sys.executable, "-m", "seeder", "serve", "--config", str(cfg),
                          "--log-level", "warning"], f"http://127.0.0.1:{port}/", env)
            procs.append(ours)
            servers["s3torrent"] = (client(f"http://127.0.0.1:{port}", AK, SK), ours.pid, port)
            if not args.skip_moto:
                mport = free_port()
                moto = start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                              str(mport)], f"http://127.0.0.1:{mport}/moto-api/data.json")
                procs.append(moto)
                c = client(f"http://127.0.0.1:{mport}", "testing", "testing")
                fill(c, mport, "bench", n, args.nested, "moto")
                servers["moto"] = (c, moto.pid, mport)
            if not args.skip_s3rver:
                if not S3RVER_BIN.exists():
                    raise SystemExit(f"s3rver not at {S3RVER_BIN}: run scripts/test.sh first")
                sport = free_port()
                (tmpdir / "s3rver").mkdir()
                s3rver = start([str(S3RVER_BIN), "-d", str(tmpdir / "s3rver"), "-a",
                                "127.0.0.1", "-p", str(sport), "--no-vhost-buckets", "-s"],
                               f"http://127.0.0.1:{sport}/",
                               {**os.environ, "NODE_OPTIONS": "--openssl-legacy-provider"})
                procs.append(s3rver)
                c = client(f"http://127.0.0.1:{sport}", "S3RVER", "S3RVER")
                fill(c, sport, "bench", n, args.nested, "s3rver")
                servers["s3rver"] = (c, s3rver.pid, sport)

            per_page: dict[str, list[float]] = {name: [] for name in servers}
            for r in range(args.rounds):
                line = []
                for name, (_, _, sport_) in servers.items():
                    times = raw_page_times(sport_, "bench", n)
                    per_page[name] += times
                    line.append(f"{name} {statistics.median(times) * 1000:.1f} ms")
                print(f"round {r + 1}: median per page: " + ", ".join(line), flush=True)
            report("HTTP (server + transfer)", per_page, servers, n, args.nested)
            sdk = {name: page_times(c, "bench", n) for name, (c, _, _) in servers.items()}
            report("boto3 paginator (SigV4, XML parsed)", sdk, servers, n, args.nested)
        finally:
            for proc in procs:
                stop(proc)


def report(what: str, per_page: dict[str, list[float]], servers: dict[str, tuple[Any, int, int]],
           n: int, nested: bool) -> None:
    def q(times: list[float], f: float) -> float:
        s = sorted(times)
        return s[min(len(s) - 1, int(f * len(s)))]

    layout = "100 directories" if nested else "one directory"
    print(f"\n{what}: ListObjectsV2, {n} keys ({layout}), {PAGE} keys a page, "
          f"{len(next(iter(per_page.values())))} pages per server")
    ours = statistics.median(per_page["s3torrent"])
    for name, times in per_page.items():
        med = statistics.median(times)
        print(f"  {name:10s} median {med * 1000:7.1f} ms  p90 {q(times, 0.9) * 1000:7.1f} ms  "
              f"first page {times[0] * 1000:7.1f} ms  RSS {rss_mib(servers[name][1]):.0f} MiB"
              f"  ratio {med / ours:.2f}")


if __name__ == "__main__":
    main()
