"""A/B of two tracker builds on the same machine state (tuning aid for issues 3 and 18).

    python benchmarks/ab_tracker.py /path/to/checkout-A /path/to/checkout-B [--rounds 6]
        [--mode close|keepalive|scrape1|scrape50] [--duration 5]
    python benchmarks/ab_tracker.py opentracker /path/to/checkout --mode scrape50
    python benchmarks/ab_tracker.py opentracker /path/to/checkout /path/to/compiled-build

A build is a checkout, a ``pip install --target`` directory (the compiled build of the hot
modules, see README "The compiled tracker build"), or ``opentracker``; a third and further
build (C, D, ...) run in the same alternation, and each is compared with A.

Both builds (``python -m tracker`` with PYTHONPATH at each checkout, or the word
``opentracker`` for it) run at once, pinned to the tracker core, whitelisting the same 1000
torrents; each gets the 100k ``started`` announces, then ``--rounds`` steady wrk loads per
build alternate A, B, B, A, A, B, ... so that a drift of the VM hits both. The idle build
uses no CPU while the other is measured. Modes: announces with a connection each
(``close``) or on keep-alive connections, scrapes of 1 or 50 random info-hashes with a
connection each. Prints per-load req/s, µs user and sys per request (``/proc/PID/stat``),
p50/p99, per build the medians, and B/A of the median CPU per request. A VM-noise load
shows as user time well above the build's others: judge by the medians and the calm
pairs, not one load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import bench_tracker as bt

# --mode -> (wrk_announce.lua mode, connection, info-hashes per scrape)
_MODES = {
    "close": ("steady", "close", 1),
    "keepalive": ("steady", "keepalive", 1),
    "scrape1": ("scrape", "close", 1),
    "scrape50": ("scrape", "close", 50),
}


def _times(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rpartition(b")")[2].split()
    return int(fields[11]) / bt.CLK_TCK, int(fields[12]) / bt.CLK_TCK


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="checkout A (its tracker/ package is run), or 'opentracker'")
    p.add_argument("b", help="checkout B, or 'opentracker'")
    p.add_argument("more", nargs="*", help="builds C, D, ... (compared with A too)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--mode", choices=tuple(_MODES), default="close")
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--tracker-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    args = p.parse_args(argv)
    if len(args.more) > 6:
        p.error("at most 8 builds")
    wrk_args = argparse.Namespace(
        duration=args.duration, connections=64, peers=100_000, torrents=1000,
        tracker_cpu=args.tracker_cpu, load_cpu=args.load_cpu, started_timeout=120,
    )  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="ab-tracker-"))
    builds = []
    try:
        named = zip("ABCDEFGH", (args.a, args.b, *args.more), strict=False)
        for name, build in named:
            port = bt.free_port()
            if build == "opentracker":
                (work / name).mkdir()
                builds.append((name, bt.start_opentracker(wrk_args, work / name, port), port))
                continue
            cmd = [
                "taskset", "-c", str(args.tracker_cpu), sys.executable, "-m", "tracker",
                "--http", f"{bt.HOST}:{port}", "--log-level", "WARNING",
            ]  # fmt: skip
            for t in range(wrk_args.torrents):
                cmd += ["--info-hash", bt.info_hash(t).hex()]
            env = dict(os.environ, PYTHONPATH=str(Path(build).resolve()))
            builds.append((name, bt.Proc(name, cmd, work, env), port))
        for _name, proc, port in builds:
            bt.wait_listening(proc, port)
            bt.wait_serving(proc, port)
            bt.run_wrk(wrk_args, port, "started", "keepalive", wrk_args.started_timeout)
        rows: dict[str, list[tuple[float, float, float, float, float]]] = {
            name: [] for name, _, _ in builds
        }
        for k in range(args.rounds):
            for name, proc, port in builds if k % 2 == 0 else builds[::-1]:
                u0, s0 = _times(proc.pid)
                load = bt.run_wrk(wrk_args, port, *_MODES[args.mode][:2], args.duration,
                                  _MODES[args.mode][2])  # fmt: skip
                u1, s1 = _times(proc.pid)
                n = max(load.announces, 1)
                row = (load.announces / load.seconds, (u1 - u0) / n * 1e6,
                       (s1 - s0) / n * 1e6, load.p50_us / 1000, load.p99_us / 1000)  # fmt: skip
                rows[name].append(row)
                print(f"{name}: {row[0]:.0f}/s  user {row[1]:.1f} us  sys {row[2]:.1f} us  "
                      f"p50 {row[3]:.2f} ms  p99 {row[4]:.2f} ms", flush=True)  # fmt: skip
        cpu = {}
        for name, _, _ in builds:
            med = [statistics.median(r[i] for r in rows[name]) for i in range(5)]
            cpu[name] = statistics.median(r[1] + r[2] for r in rows[name])
            print(f"{name} median: {med[0]:.0f}/s  user {med[1]:.1f} us  sys {med[2]:.1f} us  "
                  f"p50 {med[3]:.2f} ms  p99 {med[4]:.2f} ms  CPU {cpu[name]:.1f} us")  # fmt: skip
        for name, _, _ in builds[1:]:
            print(f"{name}/A CPU per request ({args.mode}): {cpu[name] / cpu['A']:.2f}")
    finally:
        for _, proc, _ in builds:
            proc.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
