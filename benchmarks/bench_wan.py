"""A swarm over a real-looking WAN (issue 16): the WAN lab (tests/wan/) at full size, against
the plain-HTTP baseline of the same clients on the same links, with the issue's goals.

    sudo python3 benchmarks/bench_wan.py                 # the issue's shape, 1 run
    sudo python3 benchmarks/bench_wan.py --runs 2 --json out.json
    sudo python3 benchmarks/bench_wan.py --size-mib 32 --clients aria2,libtorrent --rtt-ms 80
    sudo python3 benchmarks/bench_wan.py --upload-rate-limit 4MiB   # is the limit honoured?
    sudo python3 benchmarks/bench_wan.py --daemon-tree /work/wt-old  # another build's daemon
    sudo python3 benchmarks/bench_wan.py --delayline python  # the lab's Python delay line

Default shape: 256 MiB, 8 clients (2 each of aria2, Transmission, qBittorrent, libtorrent),
40 ms between every pair of hosts, clients 100 Mbit/s down / 20 Mbit/s up, the daemon's host
200 Mbit/s up, the object store 1 Gbit/s. Each run builds a fresh lab (fresh daemon state):
the swarm first, then every client host fetches the object by plain HTTP (curl) from the
daemon's host at once.

Goals (issue 16): S3 sends <= 1.05 copies; the daemon (BitTorrent + web seed) <= 3.0 copies;
the median client within 1.3x the ideal time (max(size / client download rate, size x clients
/ total upload of the daemon and the clients)); the median no worse than the plain-HTTP
median; every client's bytes verify; no client kind's slowest more than 1.5x the median.
With ``--upload-rate-limit``: the daemon host's link never above the limit (1-s windows; the
wire carries ~4% headers more than the payload the limit counts).
Every run also reports the lab's delay lines' work (CPU seconds during the swarm, frames,
wake-ups), the lab's own load on the machine. Needs root (network namespaces). Takes the
machine-wide lock /tmp/s3t-heavy.lock itself.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.wan.lab import Lab, Shape, unavailable  # noqa: E402
from tests.wan.swarm import Services, SwarmResult, run_plain_http, run_swarm  # noqa: E402

LOCK = "/tmp/s3t-heavy.lock"
WIRE_OVERHEAD = 1.05  # wire bytes per payload byte allowed when checking a rate limit


def parse_size(text: str) -> int:
    units = {"kib": 1024, "mib": 1024**2, "gib": 1024**3, "kb": 1000, "mb": 1000**2}
    low = text.strip().lower()
    for unit, factor in units.items():
        if low.endswith(unit):
            return int(float(low[: -len(unit)]) * factor)
    return int(low)


def shape_from(args: argparse.Namespace) -> Shape:
    return Shape(
        size=args.size_mib * 1024 * 1024,
        clients=tuple(args.clients.split(",")),
        rtt=args.rtt_ms / 1000,
        client_down=int(args.client_down_mbit * 1e6),
        client_up=int(args.client_up_mbit * 1e6),
        daemon_up=int(args.daemon_up_mbit * 1e6),
        store_rate=int(args.store_mbit * 1e6),
        swarm_budget=args.swarm_budget,
        upload_rate_limit=parse_size(args.upload_rate_limit),
        deadline=args.deadline,
        congestion=args.congestion,
    )


def one_run(shape: Shape, workdir: Path, plain: bool, extra: str,
            tree: Path, delayline: str = "c") -> dict[str, Any]:
    with Lab(shape, workdir, delayline=delayline) as lab:
        lab.wait_reachable()
        congestion = lab.congestion()
        services = Services(lab, extra, tree)
        try:
            services.start()
            stat0 = machine_cpu()
            result = run_swarm(services, workdir / "swarm")
            swarm_cpu, stat1 = lab.relay_cpu(), machine_cpu()
            http = run_plain_http(services) if plain else []
            stat2 = machine_cpu()
        finally:
            services.close()
    rep = report(result, http)
    rep["machine_busy"] = {"swarm": busy(stat0, stat1), "plain_http": busy(stat1, stat2)}
    rep["delaylines"] = delaylines(swarm_cpu, lab.relay_stats)
    rep["delaylines"]["relay"] = " ".join(Path(a).name for a in lab.relay_argv)
    rep["congestion"] = congestion
    return rep


def machine_cpu() -> list[int]:
    """The machine's CPU time so far, by kind (/proc/stat's first line, in ticks)."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def busy(before: list[int], after: list[int]) -> float:
    """The share of the machine's CPU time (all cores) not idle between two `machine_cpu`
    readings (idle and iowait count as idle)."""
    delta = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(delta[:8])  # user .. steal (guest time is already in user)
    return round(1 - (delta[3] + delta[4]) / total, 3) if total else 0.0


def delaylines(swarm_cpu: dict[str, float],
               stats: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The delay lines' work: CPU seconds each used during the swarm, and over the whole
    run (swarm and plain HTTP) their summed counters."""
    keys = ("frames", "bytes", "dropped", "wakeups", "user_s", "sys_s")
    return {
        "lines": len(stats),
        "swarm_cpu_s": {h: round(v, 1) for h, v in swarm_cpu.items()},
        "swarm_cpu_total_s": round(sum(swarm_cpu.values()), 1),
        "run_total": {k: round(sum(s.get(k, 0) for s in stats.values()), 2) for k in keys},
    }


def report(result: SwarmResult, http: list[float | None]) -> dict[str, Any]:
    shape = result.shape
    out = result.summary()
    ok_http = [t for t in http if t is not None]
    out["plain_http_s"] = [None if t is None else round(t, 1) for t in http]
    out["plain_http_median_s"] = round(statistics.median(ok_http), 1) if ok_http else None
    median = result.median
    by_kind: dict[str, list[float]] = {}
    for c in result.clients:
        if c.seconds is not None:
            by_kind.setdefault(c.kind, []).append(c.seconds)
    out["by_kind_s"] = {k: [round(t, 1) for t in v] for k, v in by_kind.items()}
    goals = {
        "s3 <= 1.05 copies": result.copies(result.s3_bytes) <= 1.05,
        "daemon <= 3.0 copies": result.copies(result.daemon_payload) <= 3.0,
        "every client verifies": all(c.verified for c in result.clients),
        "median <= 1.3 x ideal": median is not None and median <= 1.3 * shape.ideal(),
        "median <= plain-HTTP median": median is not None and bool(ok_http)
        and median <= statistics.median(ok_http),
        "no kind > 1.5 x median": median is not None
        and all(max(v) <= 1.5 * median for v in by_kind.values()),
    }
    if shape.upload_rate_limit:
        goals["daemon link <= upload_rate_limit"] = (
            result.peak_rate <= shape.upload_rate_limit * WIRE_OVERHEAD
        )
        out["upload_rate_limit_mbit"] = round(shape.upload_rate_limit * 8 / 1e6, 1)
    out["goals"] = goals
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--size-mib", type=int, default=256)
    p.add_argument("--clients", default=",".join(Shape().clients))
    p.add_argument("--rtt-ms", type=float, default=40.0)
    p.add_argument("--client-down-mbit", type=float, default=100.0)
    p.add_argument("--client-up-mbit", type=float, default=20.0)
    p.add_argument("--daemon-up-mbit", type=float, default=200.0)
    p.add_argument("--store-mbit", type=float, default=1000.0)
    p.add_argument("--swarm-budget", type=float, default=None,
                   help="[seeding] swarm_budget (default: the daemon's)")
    p.add_argument("--upload-rate-limit", default="0", help="[seeding] upload_rate_limit")
    p.add_argument("--seeding-extra", default="", help="more [seeding] TOML lines")
    p.add_argument("--deadline", type=float, default=600.0)
    p.add_argument("--no-plain", action="store_true", help="skip the plain-HTTP baseline")
    p.add_argument("--delayline", choices=("c", "python"), default="c",
                   help="the lab's delay line: tests/wan/delayline.c (default; the Python one "
                   "where it does not build) or delayline.py (to compare)")
    p.add_argument("--congestion", choices=("cubic", "bbr", "reno"), default=None,
                   help="every host's TCP congestion control, one the machine allows in a "
                   "namespace (net.ipv4.tcp_allowed_congestion_control; default: the "
                   "machine's, which a new network namespace inherits)")
    p.add_argument("--json", type=Path, help="write every run's report here")
    p.add_argument("--workdir", type=Path, help="keep the lab's files here")
    p.add_argument("--daemon-tree", type=Path, default=ROOT,
                   help="run the daemon from this checkout (e.g. a worktree of an older commit)")
    args = p.parse_args()
    why = unavailable()
    if why is not None:
        print(f"bench_wan: {why}", file=sys.stderr)
        return 1
    shape = shape_from(args)
    print(f"shape: {shape}; ideal {shape.ideal():.1f} s", flush=True)
    reports = []
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for i in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="bench-wan-") as tmp:
                work = args.workdir / f"run{i}" if args.workdir else Path(tmp)
                t0 = time.monotonic()
                rep = one_run(shape, work, not args.no_plain, args.seeding_extra,
                              args.daemon_tree, args.delayline)
                rep["wall_s"] = round(time.monotonic() - t0, 1)
            reports.append(rep)
            print(json.dumps({k: v for k, v in rep.items() if k != "timeline"}), flush=True)
            print_run(i, rep)
    if args.json:
        args.json.write_text(json.dumps({"shape": repr(shape), "runs": reports}, indent=1))
    return 0 if all(all(r["goals"].values()) for r in reports) else 3


def print_run(i: int, rep: dict[str, Any]) -> None:
    print(f"run {i}: S3 {rep['s3_copies']} copies, daemon {rep['daemon_copies']} copies "
          f"(web seed {rep['webseed_copies']}), median {rep['median_s']} s "
          f"(ideal {rep['ideal_s']} s), plain-HTTP median {rep['plain_http_median_s']} s, "
          f"daemon link peak {rep['daemon_peak_mbit']} Mbit/s")
    print(f"  per kind: {rep['by_kind_s']}")
    lines = rep["delaylines"]
    print(f"  machine CPU busy: {rep['machine_busy']}; TCP congestion control "
          f"{rep['congestion']}")
    print(f"  delay lines: {lines['lines']} ({lines['relay']}), CPU during the swarm "
          f"{lines['swarm_cpu_total_s']} s "
          f"(max {max(lines['swarm_cpu_s'].values(), default=0)} s); whole run "
          f"{lines['run_total']}")
    for goal, met in rep["goals"].items():
        print(f"  {'met ' if met else 'MISS'} {goal}")


if __name__ == "__main__":
    sys.exit(main())
