"""In-process cost of the tracker's request path, no sockets (issue 18's compiled build).

    PYTHONPATH=TREE python benchmarks/bench_tracker_core.py [--peers 100000] [--passes 5]

Runs, in this process, what the tracker does per request once the bytes are read: HTTP
(``parse_whole``, the handler, ``TrackerCore.http``, ``render_response``) for an announce
and scrapes of 1 and 50 hashes; UDP (``TrackerCore.udp``) for connect, an announce on a
cached connection id and scrapes of 1 and 50. 1000 torrents x PEERS peers are announced
first. Prints the best of ``--passes`` passes in µs per request, and which build of the
modules ran (``tracker.build.BUILD``: plain Python or compiled). Point PYTHONPATH at a tree
or at a ``pip install --target`` directory to time that build. A script, not a test.

``--instructions N``: instead of timing, count the instructions per request of each load
with valgrind (cachegrind, ``--cache-sim=no``): this script run under it once with N
requests of the load and once with none, the difference divided by N. Deterministic
(``PYTHONHASHSEED=0``) on a shared machine where timings of a few microseconds are not;
use a smaller table (``--peers 20000 --torrents 200``: valgrind runs ~50x slower).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import trio

from httpshell.parser import parse_whole
from httpshell.render import render_response
from tracker.core import TrackerCore
from tracker.service import make_sync_http_handler

try:
    from tracker.build import describe
except ImportError:  # a tree from before the compiled build
    def describe() -> str:
        return "plain (no tracker.build)"

CLIENT = ("127.0.0.1", 40000)
LOADS = ("HTTP announce", "HTTP scrape 1", "HTTP scrape 50", "UDP connect",
         "UDP announce (cached id)", "UDP scrape 1", "UDP scrape 50")


def info_hash(t: int) -> bytes:
    return hashlib.sha1(b"torrent-%d" % t).digest()


def _q(b: bytes) -> bytes:
    return b"".join(b"%%%02X" % c for c in b)


def _announce(t: int, p: int, event: bytes = b"") -> bytes:
    peer_id = b"-XX0001-%012d" % p
    return (
        b"GET /announce?info_hash=%s&peer_id=%s&port=%d&uploaded=0&downloaded=0&left=%d"
        b"&compact=1&numwant=50%s HTTP/1.1\r\nhost: 127.0.0.1\r\nuser-agent: bench\r\n"
        b"connection: close\r\n\r\n"
    ) % (_q(info_hash(t)), peer_id, 1024 + p % 60000, p % 2, event)


def _scrape(hashes: list[bytes]) -> bytes:
    query = b"&".join(b"info_hash=" + _q(h) for h in hashes)
    return b"GET /scrape?%s HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n" % query


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peers", type=int, default=100_000)
    p.add_argument("--torrents", type=int, default=1000)
    p.add_argument("--requests", type=int, default=20_000, help="per load and pass")
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--only", default="", help="comma-separated loads (default: all)")
    p.add_argument("--instructions", type=int, default=0, metavar="N",
                   help="count instructions per request over N requests (valgrind)")
    args = p.parse_args(argv)
    if args.instructions:
        return _instructions(args)
    trio.run(_run, args)  # the handler reads trio's clock
    return 0


def _instructions(args: argparse.Namespace) -> int:
    """Per load: instructions of N requests minus those of none, divided by N."""
    labels = [w.strip() for w in args.only.split(",") if w.strip()] or list(LOADS)
    base = [sys.executable, os.path.abspath(__file__), "--peers", str(args.peers),
            "--torrents", str(args.torrents), "--passes", "1"]
    env = dict(os.environ, PYTHONHASHSEED="0")
    print(f"build: {describe()}; {args.torrents} torrents x {args.peers} peers; "
          f"instructions per request over {args.instructions}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        def count(label: str, n: int) -> int:
            cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no",
                   f"--cachegrind-out-file={tmp}/cg.out", *base, "--only", label,
                   "--requests", str(n)]
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            m = re.search(r"I\s+refs:\s+([\d,]+)", r.stderr)
            if m is None:
                raise RuntimeError(f"no instruction count from valgrind: {r.stderr[-500:]}")
            return int(m.group(1).replace(",", ""))

        for label in labels:
            n = args.instructions
            per = (count(label, n) - count(label, 0)) / (n // 10 if label.endswith(" 50") else n)
            print(f"  {label:26s} {per / 1000:7.1f}k instructions", flush=True)
    return 0


async def _run(args: argparse.Namespace) -> None:
    rng = random.Random(1)
    core = TrackerCore(rng=random.Random(2))
    for t in range(args.torrents):  # a torrent each (one register of all would alias them)
        core.register([info_hash(t)])
    handler = make_sync_http_handler(core)
    server = b"bench"
    now = time.monotonic()
    for i in range(args.peers):  # straight into the core: the same swarms, faster
        t = i % args.torrents
        host = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        body = _announce(t, i, b"&event=started").split(b" ")[1]
        core.http(body, (), (host, 6881), now)

    def http(raw: list[bytes]) -> Callable[[int], None]:
        def run(n: int) -> None:
            for k in range(n):
                req, keep = parse_whole(raw[k % len(raw)], CLIENT)  # type: ignore[misc]
                render_response(req, handler(req), keep, server)
        return run

    announces = [_announce(rng.randrange(args.torrents), rng.randrange(args.peers))
                 for _ in range(1000)]
    scrape1 = [_scrape([info_hash(rng.randrange(args.torrents))]) for _ in range(1000)]
    scrape50 = [_scrape([info_hash(rng.randrange(args.torrents)) for _ in range(50)])
                for _ in range(200)]
    cid = core.connection_ids.issue(b"\x7f\x00\x00\x01" + (40000).to_bytes(2, "big"), now)

    def udp(datagrams: list[bytes]) -> Callable[[int], None]:
        def run(n: int) -> None:
            u = core.udp
            for k in range(n):
                u(datagrams[k % len(datagrams)], CLIENT, now)
        return run

    connects = [struct.pack(">QII", 0x41727101980, 0, k) for k in range(1000)]
    udp_ann = [
        struct.pack(">QII20s20sQQQIIIiH", cid, 1, k, info_hash(rng.randrange(args.torrents)),
                    b"-XX0001-%012d" % rng.randrange(args.peers), 0, k % 2, 0, 0, 0, k, 50,
                    1024 + k)
        for k in range(1000)
    ]
    udp_s1 = [struct.pack(">QII", cid, 2, k) + info_hash(rng.randrange(args.torrents))
              for k in range(1000)]
    udp_s50 = [struct.pack(">QII", cid, 2, k)
               + b"".join(info_hash(rng.randrange(args.torrents)) for _ in range(50))
               for k in range(200)]
    loads = {
        "HTTP announce": (http(announces), args.requests),
        "HTTP scrape 1": (http(scrape1), args.requests),
        "HTTP scrape 50": (http(scrape50), args.requests // 10),
        "UDP connect": (udp(connects), args.requests),
        "UDP announce (cached id)": (udp(udp_ann), args.requests),
        "UDP scrape 1": (udp(udp_s1), args.requests),
        "UDP scrape 50": (udp(udp_s50), args.requests // 10),
    }
    assert list(loads) == list(LOADS)
    only = [w.strip() for w in args.only.split(",") if w.strip()] or list(loads)
    print(f"build: {describe()}; {args.torrents} torrents x {args.peers} peers; best of "
          f"{args.passes} passes", flush=True)
    for label, (run, n) in loads.items():
        if label not in only:
            continue
        if not n:  # --instructions' baseline: the set-up only
            run(0)
            continue
        best = float("inf")
        for _ in range(args.passes):
            t0 = time.perf_counter()
            run(n)
            best = min(best, (time.perf_counter() - t0) / n * 1e6)
        print(f"  {label:26s} {best:7.2f} us", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
