"""UDP tracker benchmark (issue 18): ours (``python -m tracker``) vs opentracker, side by
side in one run, with a C load generator (``benchmarks/udp_load.c``, built here with gcc).

Both trackers run at once, pinned to the same core (``--tracker-cpu``), idle but for the
load of the moment; the generator runs on the other core. Each is first loaded with PEERS
``started`` announces over TORRENTS torrents (over UDP; RSS read then), then, for
``--rounds`` rounds alternating which tracker goes first, ``--duration`` seconds of each:

- ``connect+announce``: a BEP 15 connect, then an announce of a random peer (numwant 50);
- ``announce (cached id)``: announces on one connection id per generator socket;
- ``scrape 1`` / ``scrape 50``: scrapes of 1 / 50 random info-hashes, cached id.

CPU per request is the tracker's own utime+stime delta over the load divided by the
transactions answered (a connect+announce counts once), so the generator's speed does not
enter it; the table shows the median over the rounds. ``--profile SECONDS`` also samples
ours with py-spy under the connect+announce load and prints the functions with the most
samples (py-spy slows what it samples: that run's CPU figures are not used).

    python benchmarks/bench_udp.py [--duration 5] [--rounds 2] [--profile 10]
        [--tree compiled=/path/to/pip-install-target]   # a second build of ours, same run

Needs gcc and opentracker (Debian: whitelist-only, given ``-w`` of the hex hashes); py-spy
for ``--profile``. Every process started here is stopped by PID. A script, not a test.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_tracker as bt

SOURCE = bt.ROOT / "benchmarks" / "udp_load.c"
GOAL_RATIO = 2.0
GOAL_RSS_MB = 60.0
LOADS = {  # label -> (generator mode, info-hashes per scrape)
    "connect+announce": ("connect", 1),
    "announce (cached id)": ("cached", 1),
    "scrape 1": ("scrape", 1),
    "scrape 50": ("scrape", 50),
}


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of process ``pid``, in seconds: the user-space share is ours to cut,
    the system share is mostly the socket calls every tracker makes."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rpartition(b")")[2].split()
    return int(fields[11]) / bt.CLK_TCK, int(fields[12]) / bt.CLK_TCK


def build_generator(work: Path) -> Path:
    """Compile udp_load.c into ``work``; its path."""
    exe = work / "udp_load"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(SOURCE)], check=True, timeout=120)
    return exe


def run_load(exe: Path, args: argparse.Namespace, port: int, mode: str, seconds: float,
             hashes: int = 1, cpu: int | None = None, window: int | None = None) -> bt.Load:
    """One run of the generator against HOST:port; its UDPRESULT as a Load."""
    cmd = [str(exe), bt.HOST, str(port), mode, str(seconds), str(window or args.window),
           str(args.peers), str(args.torrents), str(hashes), str(args.sockets)]
    cmd = ["taskset", "-c", str(args.load_cpu if cpu is None else cpu), *cmd]
    out = subprocess.run(cmd, capture_output=True, timeout=seconds + 60, check=True).stdout
    m = re.search(rb"UDPRESULT (\d+) (\d+) (\d+) (\d+) ([\d.]+)", out)
    if m is None:
        raise RuntimeError(f"udp_load printed no result: {out!r}")
    n, errors, p50, p99, elapsed = m.groups()
    return bt.Load(int(n), int(errors), float(elapsed), float(p50), float(p99))


def profile(pid: int, seconds: float, out: Path, run) -> list[tuple[str, float, float]]:
    """py-spy samples of ``pid`` while ``run()`` loads it: (function, % self, % total)."""
    spy = subprocess.Popen(["py-spy", "record", "-p", str(pid), "-d", str(int(seconds)),
                            "-r", "1000", "-f", "raw", "-o", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run()
    finally:
        spy.wait(timeout=seconds + 60)
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        # "func (path/file.py:line)" -> "func (file.py)": by function, not by line
        frames = [re.sub(r" \((?:.*/)?([^/:]*)(?::\d+)?\)$", r" (\1)", f)
                  for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    rows = [(f, 100 * own[f] / samples, 100 * total[f] / samples) for f in own]
    rows.sort(key=lambda r: -r[1])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=5.0, help="seconds per load and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--window", type=int, default=64, help="transactions in flight")
    p.add_argument("--sockets", type=int, default=4, help="generator sockets")
    p.add_argument("--peers", type=int, default=100_000)
    p.add_argument("--torrents", type=int, default=1000)
    p.add_argument("--only", default="ours,opentracker")
    p.add_argument("--loads", default=",".join(LOADS))
    p.add_argument("--tracker-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--profile", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                   help="also run our tracker from PATH (a checkout or a `pip install "
                   "--target` directory, e.g. the compiled build) as NAME; repeatable")
    args = p.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    starters = dict(bt.STARTERS)
    for item in args.tree:
        name, _, path = item.partition("=")
        if not name or not path or name in starters:
            p.error(f"--tree {item!r}: NAME=PATH with a new NAME")
        starters[name] = functools.partial(bt.start_ours, tree=Path(path).resolve())
        names.insert(len(names) - ("opentracker" in names), name)
    loads = [x for x in args.loads.split(",") if x]
    if shutil.which("opentracker") is None and "opentracker" in names:
        print("opentracker: skipped (apt-get install opentracker)")
        names.remove("opentracker")
    print(f"{args.torrents} torrents x {args.peers} peers, window {args.window} over "
          f"{args.sockets} sockets, {args.duration:.0f} s x {args.rounds} rounds per load; "
          f"trackers on CPU {args.tracker_cpu}, generator on CPU {args.load_cpu}; load "
          f"average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-udp-") as tmp:
        work = Path(tmp)
        exe = build_generator(work)
        procs: dict[str, bt.Proc] = {}
        ports: dict[str, int] = {}
        rss: dict[str, float] = {}
        cpu: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        user: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        rate: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        lat: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        try:
            for name in names:
                ports[name] = bt.free_port()
                procs[name] = starters[name](args, work, ports[name])
                bt.wait_listening(procs[name], ports[name])
                bt.wait_serving(procs[name], ports[name])
                started = run_load(exe, args, ports[name], "started", 120)
                if started.announces < args.peers:
                    raise RuntimeError(f"{name}: {started.announces} started of {args.peers}")
                rss[name] = bt.rss_mb(procs[name].pid)
                print(f"  {name}: {args.peers} peers loaded in {started.seconds:.1f} s, RSS "
                      f"{rss[name]:.1f} MB; {bt.check_swarm(ports[name], args)}", flush=True)
            if args.profile and "ours" in procs:
                rows = profile(procs["ours"].pid, args.profile, work / "ours.spy",
                               lambda: run_load(exe, args, ports["ours"], "connect",
                                                args.profile + 1))
                print(f"\npy-spy, ours, connect+announce, {args.profile:.0f} s "
                      "(function: % of samples in it / in it and below):")
                for f, own, tot in rows[:25]:
                    print(f"  {own:5.1f} % {tot:5.1f} %  {f}")
                print(flush=True)
            for label in loads:
                mode, hashes = LOADS[label]
                for r in range(args.rounds):
                    for name in names if r % 2 == 0 else names[::-1]:
                        user0, sys0 = cpu_split(procs[name].pid)
                        load = run_load(exe, args, ports[name], mode, args.duration, hashes)
                        user1, sys1 = cpu_split(procs[name].pid)
                        used = user1 - user0 + sys1 - sys0
                        n = max(load.announces, 1)
                        cpu[label, name].append(used / n * 1e6)
                        user[label, name].append((user1 - user0) / n * 1e6)
                        rate[label, name].append(load.announces / load.seconds)
                        lat[label, name].append(load.p99_us)
                        print(f"  {label:22s} {name:12s} {load.announces / load.seconds:8.0f}/s"
                              f" {used / n * 1e6:6.2f} us CPU (user {user[label, name][-1]:.2f})"
                              f"  p50 {load.p50_us:.0f} us, p99 "
                              f"{load.p99_us:.0f} us, errors {load.errors}", flush=True)
            for name, proc in procs.items():
                if not proc.alive():
                    raise RuntimeError(f"{name} died during the run")
        finally:
            for proc in procs.values():
                proc.stop()
    print("\n| load | tracker | req/s | µs CPU/request | of which user | p99 ms | ratio to "
          "opentracker |")
    print("|---|---|---|---|---|---|---|")
    for label in loads:
        ot = statistics.median(cpu[label, "opentracker"]) if cpu[label, "opentracker"] else 0
        for name in names:
            c = statistics.median(cpu[label, name])
            ratio = f"{c / ot:.2f}x" if ot and name != "opentracker" else ""
            print(f"| {label} | {name} | {statistics.median(rate[label, name]):.0f} | {c:.2f} | "
                  f"{statistics.median(user[label, name]):.2f} | "
                  f"{statistics.median(lat[label, name]) / 1000:.2f} | {ratio} |")
    print("\nGoals (issue 18):")
    for name in (n for n in names if n != "opentracker"):
        for label in loads:
            if cpu[label, name] and cpu[label, "opentracker"]:
                ratio = statistics.median(cpu[label, name]) / statistics.median(
                    cpu[label, "opentracker"])
                print(f"  {name}, {label}: {ratio:.2f}x opentracker's CPU (goal <= "
                      f"{GOAL_RATIO}x) {'ok' if ratio <= GOAL_RATIO else 'MISSED'}")
        if name in rss:
            print(f"  {name}, RSS with {args.peers} peers: {rss[name]:.1f} MB (goal < "
                  f"{GOAL_RSS_MB} MB) {'ok' if rss[name] < GOAL_RSS_MB else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
