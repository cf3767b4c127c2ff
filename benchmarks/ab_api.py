"""A/B of two daemon builds' GetObjectTorrent on a cached torrent, in one run.

    python benchmarks/ab_api.py /path/to/checkout-A /path/to/checkout-B [--rounds 6]
        [--mode keepalive|close] [--duration 5] [--config-extra-a FILE] [--config-extra-b FILE]

Both builds (``python -m seeder serve`` with PYTHONPATH at each checkout) serve the same
local bucket (one 1 MiB object) with seeding and the scanner off; each torrent is generated
once, then ``--rounds`` wrk loads per build alternate A, B, B, A, ... so a drift of the
machine hits both. The daemon runs on one core, wrk on the other. Prints per-load req/s,
µs CPU per request (``/proc/PID/stat``), p50/p99, the medians, and B/A of the req/s median.
``--config-extra-a/-b`` append TOML to one build's config (the same build in two modes,
e.g. standalone vs cluster). Needs wrk (Debian package).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import bench_tracker as bt

LUA = Path(__file__).resolve().parent / "wrk_get.lua"
CONFIG = """\
[server]
listen = "{host}:{port}"
public_url = "http://{host}:{port}"

[tracker]
enabled = false

[metrics]
listen = "{host}:0"

[state]
dir = "{state}"

[seeding]
enabled = false

[scanner]
enabled = false

[log]
level = "warning"

[[buckets]]
name = "data"
backend = "local"
path = "{data}"
public = true
"""


def write_config(work: Path, name: str, port: int, extra: str) -> Path:
    data = work / "data"
    if not data.exists():
        data.mkdir()
        (data / "object.bin").write_bytes(os.urandom(1 << 20))
    path = work / f"{name}.toml"
    path.write_text(CONFIG.format(host=bt.HOST, port=port, state=work / f"state-{name}",
                                  data=data) + extra)
    return path


def wait_torrent(proc: bt.Proc, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; see its log")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name}: {url} not served within {timeout}s")


def run_load(port: int, path: str, mode: str, duration: int, load_cpu: int) -> bt.Load:
    cmd = ["taskset", "-c", str(load_cpu), "wrk", "-t1", "-c32", f"-d{duration}s",
           "--timeout", "5s", "-s", str(LUA), f"http://{bt.HOST}:{port}", "--", path, mode]
    out = subprocess.run(cmd, capture_output=True, timeout=duration + 60, check=True).stdout
    return bt.parse_wrk_result(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path, help="checkout A (its seeder/ package is run)")
    p.add_argument("b", type=Path, help="checkout B")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--mode", choices=("close", "keepalive"), default="keepalive")
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--daemon-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--config-extra-a", type=Path)
    p.add_argument("--config-extra-b", type=Path)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ab-api-"))
    path = "/data/object.bin?torrent"
    builds: list[tuple[str, bt.Proc, int]] = []
    try:
        for name, root, extra in (("A", args.a, args.config_extra_a),
                                  ("B", args.b, args.config_extra_b)):
            port = bt.free_port()
            config = write_config(work, name, port, extra.read_text() if extra else "")
            cmd = ["taskset", "-c", str(args.daemon_cpu), sys.executable, "-m", "seeder",
                   "serve", "--config", str(config)]
            env = dict(os.environ, PYTHONPATH=str(root.resolve()))
            builds.append((name, bt.Proc(name, cmd, work, env), port))
        for _name, proc, port in builds:
            wait_torrent(proc, f"http://{bt.HOST}:{port}{path}")
        rows: dict[str, list[tuple[float, float, float, float, int]]] = {"A": [], "B": []}
        for k in range(args.rounds):
            for name, proc, port in builds if k % 2 == 0 else builds[::-1]:
                c0 = bt.cpu_seconds(proc.pid)
                load = run_load(port, path, args.mode, args.duration, args.load_cpu)
                c1 = bt.cpu_seconds(proc.pid)
                n = max(load.announces, 1)
                row = (load.announces / load.seconds, (c1 - c0) / n * 1e6,
                       load.p50_us / 1000, load.p99_us / 1000, load.errors)
                rows[name].append(row)
                print(f"{name}: {row[0]:.0f} req/s  cpu {row[1]:.1f} us/req  "
                      f"p50 {row[2]:.2f} ms  p99 {row[3]:.2f} ms  errors {row[4]}", flush=True)
        med = {}
        for name, _, _ in builds:
            med[name] = [statistics.median(r[i] for r in rows[name]) for i in range(4)]
            m = med[name]
            print(f"{name} median: {m[0]:.0f} req/s  cpu {m[1]:.1f} us/req  "
                  f"p50 {m[2]:.2f} ms  p99 {m[3]:.2f} ms")
        print(f"B/A req/s: {med['B'][0] / med['A'][0]:.3f}   "
              f"B/A cpu per request: {med['B'][1] / med['A'][1]:.3f}")
    finally:
        for _, proc, _ in builds:
            proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
