"""Tracker benchmark: ours (``python -m tracker``) vs opentracker vs webtorrent's
bittorrent-tracker, measured side by side in one run (issue 3).

Load: TORRENTS torrents x PEERS peers (20 % seeders), compact, numwant 50. Per tracker:

1. start it pinned to one core (``taskset -c TRACKER_CPU``), loopback only;
2. ``started``: every peer announces once with event=started (wrk, keep-alive), then the
   RSS with all peers loaded is read from /proc and one announce checks the swarm counts;
3. steady re-announces of random peers for DURATION seconds each: HTTP with one TCP
   connection per announce (``Connection: close``, as real clients), HTTP keep-alive, and
   UDP (BEP 15 connect + announce, our own generator below, with many transaction ids);
   then HTTP scrapes of 1 and of 50 random info-hashes, one connection per scrape
   (``--loads`` picks some of these).

The load generators run on the other core (``taskset -c LOAD_CPU``): wrk with
``benchmarks/wrk_announce.lua`` (binary info_hash / peer_id percent-encoded) for HTTP.
CPU per announce (or scrape) is the tracker's own /proc/<pid>/stat utime+stime delta divided by the
announces served, so the generator's speed does not matter for it. Latency percentiles
come from wrk (HTTP) and from the UDP generator (announce sent -> reply).

    python benchmarks/bench_tracker.py [--duration 10] [--connections 64]
        [--peers 100000] [--torrents 1000] [--only ours,opentracker,bittorrent-tracker]
        [--loads close,keepalive,udp,scrape1,scrape50]

Needs: ``apt-get install wrk opentracker`` and ``npm`` (the other two trackers are started
by ``rival_trackers.py``: opentracker with a whitelist of the benchmark's info-hashes,
bittorrent-tracker installed into a temporary directory at run time). A
tracker whose tool is missing is skipped with a note. Every process started here is
stopped by PID; every wait has a deadline. A script, not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import rival_trackers as rivals
from procs import Proc

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "benchmarks" / "wrk_announce.lua"
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")

GOAL_HTTP_RATE_VS_BT = 2.0
GOAL_CPU_VS_OPENTRACKER = 2.0  # issue 18 (issue 3: 3.0)
GOAL_P99_MS = 10.0
GOAL_RSS_MB = 60.0
LOADS = ("close", "keepalive", "udp", "scrape1", "scrape50")  # --loads, in run order


def info_hash(t: int) -> bytes:
    """Torrent ``t``'s info-hash; wrk_announce.lua builds the same."""
    return b"\xb7" * 16 + t.to_bytes(4, "big")


def peer_id(p: int) -> bytes:
    return b"-BT0001-%012d" % p


def peer_port(p: int, torrents: int) -> int:
    return 10000 + p // torrents


def peer_left(p: int, torrents: int) -> int:
    return 0 if (p // torrents) % 5 == 0 else 1_000_000


# -- processes --------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    """A port free for both TCP and UDP on HOST right now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind((HOST, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def wait_listening(proc: Proc, port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; see its log")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not listen on {port} within {timeout}s")


# -- load -------------------------------------------------------------------------------


@dataclass
class Load:
    announces: int
    errors: int
    seconds: float
    p50_us: float
    p99_us: float


def parse_wrk_result(out: bytes) -> Load:
    """The "WRKRESULT requests errors non2xx p50_us p99_us duration_us" line that our wrk
    scripts (wrk_announce.lua, wrk_get.lua) print in done(), as a Load; RuntimeError if none."""
    m = re.search(rb"WRKRESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    if m is None:
        raise RuntimeError(f"wrk printed no result:\n{out.decode(errors='replace')}")
    requests, errors, non2xx, p50, p99, duration_us = (int(x) for x in m.groups())
    return Load(requests, errors + non2xx, duration_us / 1e6, p50, p99)


def run_wrk(args: argparse.Namespace, port: int, mode: str, connection: str,
            duration: float, hashes: int = 1) -> Load:  # fmt: skip
    """One wrk load (wrk_announce.lua): ``mode`` started, steady or scrape (``hashes``
    info-hashes per scrape); ``connection`` close or keepalive."""
    cmd = [
        "taskset", "-c", str(args.load_cpu), "wrk", "-t1", f"-c{args.connections}",
        f"-d{int(duration)}s", "--timeout", "5s", "-s", str(LUA), f"http://{HOST}:{port}",
        "--", mode, str(args.peers), str(args.torrents), "50", connection, str(hashes),
    ]  # fmt: skip
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, timeout=duration + 60, check=True).stdout
    elapsed = time.perf_counter() - start
    if mode == "started":
        m = re.search(rb"WRKSTARTED (\d+)", out)
        if m is None:
            raise RuntimeError(f"started phase did not finish in {duration:.0f} s")
        return Load(int(m[1]), 0, elapsed, float("nan"), float("nan"))
    return parse_wrk_result(out)


_CONNECT = struct.Struct(">QII")
_UDP_ANNOUNCE = struct.Struct(">QII20s20sQQQIIIiH")


def udp_client(host: str, port: int, seconds: float, window: int, peers: int,
               torrents: int) -> None:  # fmt: skip
    """The UDP load generator (runs in its own process, on the load core): ``window``
    transactions in flight, each a BEP 15 connect then an announce of a random peer with
    that connection id. Prints ``UDPRESULT announces errors p50_us p99_us seconds``."""
    import random

    rng = random.Random(54321)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sock.connect((host, port))
    sock.setblocking(False)
    inflight: dict[int, tuple[int, float]] = {}  # tid -> (action, sent at)
    latencies: list[float] = []
    errors = 0
    tid = 0

    def connect() -> None:
        nonlocal tid
        tid = (tid + 1) & 0xFFFFFFFF
        inflight[tid] = (0, time.perf_counter())
        sock.send(_CONNECT.pack(0x41727101980, 0, tid))

    start = time.perf_counter()
    deadline = start + seconds
    for _ in range(window):
        connect()
    last_sweep = start
    while True:
        now = time.perf_counter()
        if now >= deadline:
            break
        if now - last_sweep > 0.5:  # lost datagrams: replace what waited over a second
            last_sweep = now
            for stale in [t for t, (_, sent) in inflight.items() if now - sent > 1.0]:
                del inflight[stale]
                errors += 1
                connect()
        ready, _, _ = select.select([sock], [], [], 0.2)
        if not ready:
            continue
        for _ in range(64):
            try:
                data = sock.recv(2048)
            except (BlockingIOError, ConnectionRefusedError):
                break
            now = time.perf_counter()
            if len(data) < 8:
                continue
            action, reply_tid = struct.unpack_from(">II", data)
            entry = inflight.pop(reply_tid, None)
            if entry is None:
                continue
            if action == 0 and len(data) >= 16:
                p = rng.randrange(peers)
                tid = (tid + 1) & 0xFFFFFFFF
                inflight[tid] = (1, now)
                sock.send(
                    _UDP_ANNOUNCE.pack(
                        int.from_bytes(data[8:16], "big"), 1, tid,
                        info_hash(p % torrents), peer_id(p), 0,
                        peer_left(p, torrents), 0, 0, 0, p, 50, peer_port(p, torrents),
                    )
                )  # fmt: skip
            elif action == 1:
                latencies.append(now - entry[1])
                connect()
            else:
                errors += 1
                connect()
    elapsed = time.perf_counter() - start
    latencies.sort()
    n = len(latencies)
    p50 = latencies[n // 2] * 1e6 if n else 0.0
    p99 = latencies[min(n - 1, n * 99 // 100)] * 1e6 if n else 0.0
    print(f"UDPRESULT {n} {errors} {p50:.0f} {p99:.0f} {elapsed:.3f}", flush=True)


def run_udp(args: argparse.Namespace, port: int, duration: float) -> Load:
    cmd = [
        "taskset", "-c", str(args.load_cpu), sys.executable, str(Path(__file__).resolve()),
        "--udp-client", f"{HOST}:{port}", "--duration", str(duration),
        "--peers", str(args.peers), "--torrents", str(args.torrents),
        "--connections", str(args.connections),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, timeout=duration + 60, check=True).stdout
    m = re.search(rb"UDPRESULT (\d+) (\d+) (\d+) (\d+) ([\d.]+)", out)
    if m is None:
        raise RuntimeError(f"UDP generator printed no result:\n{out.decode(errors='replace')}")
    n, errors, p50, p99, seconds = m.groups()
    return Load(int(n), int(errors), float(seconds), float(p50), float(p99))


def _announce_url(port: int, torrents: int, p: int, extra: str = "") -> str:
    query = (
        "info_hash=" + urllib.request.quote(info_hash(p % torrents)) + "&peer_id="
        + urllib.request.quote(peer_id(p)) + f"&port={peer_port(p, torrents)}"
        + f"&uploaded=0&downloaded=0&left={peer_left(p, torrents)}&compact=1&numwant=50"
    )  # fmt: skip
    return f"http://{HOST}:{port}/announce?{query}{extra}"


def wait_serving(proc: Proc, port: int, timeout: float = 60.0) -> None:
    """Until an announce is answered without a failure reason (opentracker reads its
    whitelist in the background after it listens; node binds UDP after HTTP). The probe
    is a peer outside the population (port 9), removed again with event=stopped."""
    deadline = time.monotonic() + timeout
    url = _announce_url(port, 1, 0).replace(f"&port={peer_port(0, 1)}", "&port=9")
    body = b""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}")
        try:
            with urllib.request.urlopen(url + "&event=started", timeout=5) as r:
                body = r.read()
            if b"failure reason" not in body:
                with urllib.request.urlopen(url + "&event=stopped", timeout=5) as r:
                    r.read()
                time.sleep(0.5)
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} not serving within {timeout}s: {body[:200]!r}")


def check_swarm(port: int, args: argparse.Namespace) -> str:
    """One announce of peer 0 (a seeder of torrent 0): the swarm must hold every peer."""
    with urllib.request.urlopen(_announce_url(port, args.torrents, 0), timeout=10) as r:
        body = r.read()
    complete = re.search(rb"8:completei(\d+)e", body)
    incomplete = re.search(rb"10:incompletei(\d+)e", body)
    peers = re.search(rb"5:peers(\d+):", body)
    if not (complete and incomplete and peers):
        raise RuntimeError(f"unexpected announce answer: {body[:200]!r}")
    seeders, leechers, n = int(complete[1]), int(incomplete[1]), int(peers[1]) // 6
    expected = args.peers // args.torrents
    if seeders + leechers < expected:
        raise RuntimeError(f"swarm 0 holds {seeders}+{leechers} peers, expected {expected}")
    return f"swarm 0: {seeders} seeders, {leechers} leechers, {n} peers returned"


# -- trackers ---------------------------------------------------------------------------


def start_ours(args: argparse.Namespace, work: Path, port: int, tree: Path = ROOT) -> Proc:
    """``python -m tracker`` from ``tree`` (a checkout, or a ``pip install --target``
    directory holding a compiled build)."""
    cmd = [
        "taskset", "-c", str(args.tracker_cpu), sys.executable, "-m", "tracker",
        "--http", f"{HOST}:{port}", "--udp", f"{HOST}:{port}", "--log-level", "WARNING",
    ]  # fmt: skip
    for t in range(args.torrents):
        cmd += ["--info-hash", info_hash(t).hex()]
    env = dict(os.environ, PYTHONPATH=str(tree))
    return Proc("ours", cmd, work, env)


def start_opentracker(args: argparse.Namespace, work: Path, port: int) -> Proc:
    hashes = (info_hash(t) for t in range(args.torrents))
    return rivals.start_opentracker(args.tracker_cpu, work, HOST, port, hashes)


def start_bittorrent_tracker(args: argparse.Namespace, work: Path, port: int) -> Proc:
    return rivals.start_bittorrent_tracker(args.tracker_cpu, work, port)


STARTERS = {
    "ours": start_ours,
    "opentracker": start_opentracker,
    "bittorrent-tracker": start_bittorrent_tracker,
}


# -- the run ----------------------------------------------------------------------------


@dataclass
class Row:
    tracker: str
    load: str
    result: Load
    cpu: float  # tracker CPU seconds during the load
    rss: float

    @property
    def rate(self) -> float:
        return self.result.announces / self.result.seconds if self.result.seconds else 0.0

    @property
    def us_per_announce(self) -> float:
        return self.cpu / self.result.announces * 1e6 if self.result.announces else 0.0


def measure(proc: Proc, run) -> tuple[Load, float]:
    before = cpu_seconds(proc.pid)
    result = run()
    return result, cpu_seconds(proc.pid) - before


def bench_one(name: str, args: argparse.Namespace, work: Path) -> list[Row]:
    port = free_port()
    proc = STARTERS[name](args, work, port)
    rows = []
    try:
        wait_listening(proc, port)
        wait_serving(proc, port)
        idle_rss = rss_mb(proc.pid)
        started, cpu = measure(
            proc, lambda: run_wrk(args, port, "started", "keepalive", args.started_timeout)
        )
        rss = rss_mb(proc.pid)
        rows.append(Row(name, "started, keep-alive", started, cpu, rss))
        print(f"  {name}: idle RSS {idle_rss:.1f} MB; {check_swarm(port, args)}", flush=True)
        d = args.duration
        loads = {
            "close": ("HTTP, conn/announce", lambda: run_wrk(args, port, "steady", "close", d)),
            "keepalive": ("HTTP, keep-alive",
                          lambda: run_wrk(args, port, "steady", "keepalive", d)),
            "udp": ("UDP connect+announce", lambda: run_udp(args, port, d)),
            "scrape1": ("HTTP scrape 1, conn/scrape",
                        lambda: run_wrk(args, port, "scrape", "close", d)),
            "scrape50": ("HTTP scrape 50, conn/scrape",
                         lambda: run_wrk(args, port, "scrape", "close", d, 50)),
        }  # fmt: skip
        for key in args.loads:
            label, run = loads[key]
            result, cpu = measure(proc, run)
            rows.append(Row(name, label, result, cpu, rss_mb(proc.pid)))
            print(f"  {name}: {label}: {result.announces} announces, {result.errors} errors",
                  flush=True)  # fmt: skip
        if not proc.alive():
            raise RuntimeError(f"{name} died during the run")
    finally:
        proc.stop()
    return rows


def _ms(us: float) -> str:
    return "-" if us != us else f"{us / 1000:.2f}"  # NaN: not measured


def print_table(rows: list[Row]) -> None:
    head = ("tracker", "load", "announces", "req/s", "µs CPU/announce", "p50 ms", "p99 ms",
            "errors", "RSS MB")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        cells = (
            r.tracker, r.load, str(r.result.announces), f"{r.rate:.0f}",
            f"{r.us_per_announce:.1f}", _ms(r.result.p50_us), _ms(r.result.p99_us),
            str(r.result.errors), f"{r.rss:.1f}",
        )  # fmt: skip
        print("| " + " | ".join(cells) + " |")


def print_goals(rows: list[Row]) -> None:
    def find(tracker: str, load: str) -> Row | None:
        return next((r for r in rows if r.tracker == tracker and r.load == load), None)

    print("\nGoals (issue 3; CPU vs opentracker: issue 18):")
    ours_close, bt_close = (
        find("ours", "HTTP, conn/announce"),
        find("bittorrent-tracker", "HTTP, conn/announce"),
    )
    if ours_close and bt_close and bt_close.rate:
        ratio = ours_close.rate / bt_close.rate
        print(f"  HTTP announces/s vs bittorrent-tracker: {ratio:.2f}x "
              f"(goal >= {GOAL_HTTP_RATE_VS_BT}x) {'ok' if ratio >= 2 else 'MISSED'}")  # fmt: skip
    for load in ("HTTP, conn/announce", "HTTP, keep-alive", "UDP connect+announce",
                 "HTTP scrape 1, conn/scrape", "HTTP scrape 50, conn/scrape"):
        ours, ot = find("ours", load), find("opentracker", load)
        if ours and ot and ot.us_per_announce:
            ratio = ours.us_per_announce / ot.us_per_announce
            ok = "ok" if ratio <= GOAL_CPU_VS_OPENTRACKER else "MISSED"
            print(f"  CPU/announce vs opentracker, {load}: {ratio:.2f}x "
                  f"(goal <= {GOAL_CPU_VS_OPENTRACKER}x) {ok}")  # fmt: skip
    for r in rows:
        if r.tracker == "ours" and r.load != "started, keep-alive":
            p99 = r.result.p99_us / 1000
            print(f"  p99 {r.load}: {p99:.2f} ms (goal <= {GOAL_P99_MS} ms) "
                  f"{'ok' if p99 <= GOAL_P99_MS else 'MISSED'}")  # fmt: skip
    rss = max((r.rss for r in rows if r.tracker == "ours"), default=None)
    if rss is not None:
        print(f"  RSS with {rows[0].result.announces} peers loaded: {rss:.1f} MB "
              f"(goal <= {GOAL_RSS_MB} MB) {'ok' if rss <= GOAL_RSS_MB else 'MISSED'}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per steady load")
    p.add_argument("--connections", type=int, default=64, help="wrk connections / UDP window")
    p.add_argument("--peers", type=int, default=100_000)
    p.add_argument("--torrents", type=int, default=1000)
    p.add_argument("--only", default="ours,opentracker,bittorrent-tracker")
    p.add_argument("--loads", default=",".join(LOADS),
                   help=f"steady loads to run after started, of {','.join(LOADS)}")  # fmt: skip
    p.add_argument("--tracker-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--started-timeout", type=float, default=240.0,
                   help="bound on the started phase, s")  # fmt: skip
    p.add_argument("--udp-client", metavar="HOST:PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.loads = [w.strip() for w in args.loads.split(",") if w.strip()]
    if unknown := set(args.loads) - set(LOADS):
        p.error(f"unknown load(s): {', '.join(sorted(unknown))}")
    if args.udp_client:
        host, _, port = args.udp_client.rpartition(":")
        udp_client(host, int(port), args.duration, args.connections, args.peers, args.torrents)
        return 0
    if args.peers % args.torrents or args.peers // args.torrents > 50000:
        p.error("--peers must be a multiple of --torrents (and < 50000 per torrent)")
    wanted = [n.strip() for n in args.only.split(",") if n.strip()]
    if unknown := set(wanted) - set(STARTERS):
        p.error(f"unknown tracker(s): {', '.join(sorted(unknown))}")
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (apt-get install {'wrk' if tool == 'wrk' else 'util-linux'})")
            return 1
    rows: list[Row] = []
    print(f"{args.torrents} torrents x {args.peers} peers, {args.connections} connections, "
          f"{args.duration:.0f} s per load, tracker on CPU {args.tracker_cpu}, "
          f"load on CPU {args.load_cpu}; load average {os.getloadavg()[0]:.2f}",
          flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-tracker-") as tmp:
        work = Path(tmp)
        for name in wanted:
            if name == "opentracker" and shutil.which("opentracker") is None:
                print("  opentracker: skipped (apt-get install opentracker)")
                continue
            if name == "bittorrent-tracker":
                if shutil.which("npm") is None or shutil.which("node") is None:
                    print("  bittorrent-tracker: skipped (needs node and npm)")
                    continue
                try:
                    rivals.install_bittorrent_tracker(work, HOST)
                except (subprocess.SubprocessError, OSError) as exc:
                    print(f"  bittorrent-tracker: skipped (npm install failed: {exc})")
                    continue
            print(f"{name}:", flush=True)
            try:
                rows += bench_one(name, args, work)
            except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
                print(f"  {name}: FAILED: {exc}", flush=True)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print_table(rows)
    print_goals(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
