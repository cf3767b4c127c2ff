"""Instructions per GetObjectTorrent of two daemon builds, counted by valgrind (callgrind):
a repeatable A/B where req/s on a shared machine is not.

    python benchmarks/ab_instructions.py /path/to/checkout-A /path/to/checkout-B
        [--requests 500] [--concurrency 8]

Both builds serve the same local bucket as in ``ab_api.py`` (one 1 MiB object, seeding and
the scanner off), each daemon under ``valgrind --tool=callgrind`` (start-up takes a few
minutes there). For each mode (``close``: a new connection per request; ``keepalive``) the
daemon's counters are zeroed, ``--requests`` cached GetObjectTorrents are made by
``--concurrency`` clients, and the count is dumped: instructions per request (user space,
all the daemon's threads; the kernel's share is not counted) and B/A. Needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ab_api
import bench_tracker as bt

PATH = "/data/object.bin?torrent"


async def _requests(port: int, n: int, concurrency: int, close: bool) -> int:
    """``n`` GETs of PATH from ``concurrency`` clients; how many answered 200."""
    head = f"GET {PATH} HTTP/1.1\r\nHost: {bt.HOST}\r\n".encode()
    request = head + (b"Connection: close\r\n\r\n" if close else b"\r\n")
    ok = 0

    async def client(count: int) -> None:
        nonlocal ok
        reader, writer = await asyncio.open_connection(bt.HOST, port)
        try:
            for i in range(count):
                if close and i:
                    reader, writer = await asyncio.open_connection(bt.HOST, port)
                writer.write(request)
                answer = await reader.readuntil(b"\r\n\r\n")
                length = int(answer.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                ok += answer.startswith(b"HTTP/1.1 200 ")
                if close:
                    writer.close()
        finally:
            writer.close()

    await asyncio.gather(*(client(n // concurrency) for _ in range(concurrency)))
    return ok


def _count(proc: bt.Proc, out: Path, port: int, n: int, concurrency: int, close: bool) -> float:
    """Instructions per request of one load (counters zeroed before, dumped after)."""
    asyncio.run(_requests(port, 2 * concurrency, concurrency, close))  # warm up
    subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
    ok = asyncio.run(_requests(port, n, concurrency, close))
    before = set(out.parent.glob(out.name + ".*"))
    subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while not (new := set(out.parent.glob(out.name + ".*")) - before):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name}: no callgrind dump")
        time.sleep(0.2)
    (dump,) = new
    for line in dump.read_text().splitlines():
        if line.startswith("summary:"):
            total = int(line.split()[1])
            break
    else:
        raise RuntimeError(f"{dump}: no summary line")
    if ok != n // concurrency * concurrency:
        raise RuntimeError(f"{proc.name}: {ok} of {n} requests answered 200")
    return total / ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path, help="checkout A (its seeder/ package is run)")
    p.add_argument("b", type=Path, help="checkout B")
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--daemon-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    args = p.parse_args(argv)
    os.sched_setaffinity(0, {args.load_cpu})
    work = Path(tempfile.mkdtemp(prefix="ab-instr-"))
    builds: list[tuple[str, bt.Proc, int, Path]] = []
    try:
        for name, root in (("A", args.a), ("B", args.b)):
            port = bt.free_port()
            config = ab_api.write_config(work, name, port, "")
            out = work / f"callgrind.{name}"
            cmd = ["taskset", "-c", str(args.daemon_cpu), "valgrind", "--tool=callgrind",
                   f"--callgrind-out-file={out}", sys.executable, "-m", "seeder", "serve",
                   "--config", str(config)]
            env = dict(os.environ, PYTHONPATH=str(root.resolve()))
            builds.append((name, bt.Proc(name, cmd, work, env), port, out))
        for _name, proc, port, _out in builds:
            ab_api.wait_torrent(proc, f"http://{bt.HOST}:{port}{PATH}", timeout=600)
        for mode in ("close", "keepalive"):
            per = {}
            for name, proc, port, out in builds:
                per[name] = _count(proc, out, port, args.requests, args.concurrency,
                                   mode == "close")
                print(f"{mode} {name}: {per[name] / 1000:.1f}k instructions per request",
                      flush=True)
            print(f"{mode} B/A instructions per request: {per['B'] / per['A']:.3f}", flush=True)
    finally:
        for _, proc, _, _ in builds:
            proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
