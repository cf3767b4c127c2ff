"""The status page and /torrents.json against catalogs of N torrents, beside /metrics.

Usage (from the repository root, under the machine-wide lock)::

    flock /tmp/s3t-heavy.lock python benchmarks/bench_status_page.py [--torrents 5000 50000]
        [--rounds 7]

For each N: a catalog of N made-up torrents (well-formed, links equal to the config's, so
the daemon does not relink them), one daemon in-process (tracker on, seeding off, scanner
off), then per round GET /metrics, / (page 1), /?page=last, /torrents.json and
/torrents.json?page=last over one keep-alive-less urllib request each. Prints the median and
the worst wall time of each, and the page's size. The goal (issue 17): the page under 1 s
with 5000 torrents.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seeder.ops.daemon import serve
from tests.integration.test_status_page import config, fetch, fill_catalog


async def measure(n: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        root = Path(tmp)
        for d in ("pub", "priv"):
            (root / d).mkdir()
        cfg = config(root)
        started = time.perf_counter()
        fill_catalog(cfg, n)
        filled = time.perf_counter() - started
        async with trio.open_nursery() as nursery:
            started = time.perf_counter()
            daemon = await nursery.start(lambda task_status: serve(cfg, task_status=task_status))
            up = time.perf_counter() - started
            host, port = daemon.bound.metrics
            base = f"http://{host}:{port}"
            last = -(-n // 1000)
            paths = ["/metrics", "/", f"/?page={last}", "/torrents.json",
                     f"/torrents.json?page={last}"]
            times: dict[str, list[float]] = {p: [] for p in paths}
            sizes: dict[str, int] = {}
            for _ in range(rounds):
                for p in paths:
                    t0 = time.perf_counter()
                    got = await trio.to_thread.run_sync(fetch, base + p)
                    times[p].append(time.perf_counter() - t0)
                    assert got.status == 200, (p, got.status)
                    sizes[p] = len(got.body)
            print(f"{n} torrents (catalog filled in {filled:.1f} s, daemon up in {up:.1f} s):")
            for p in paths:
                print(f"  {p:<28} median {statistics.median(times[p]) * 1000:7.1f} ms"
                      f"   worst {max(times[p]) * 1000:7.1f} ms   {sizes[p] / 1024:7.0f} KiB")
            nursery.cancel_scope.cancel()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--torrents", type=int, nargs="+", default=[5000, 50000])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    for n in args.torrents:
        trio.run(measure, n, args.rounds)


if __name__ == "__main__":
    main()
