"""Instructions per announce of a lone cluster node and of a node of a 2-node cluster,
counted by valgrind (callgrind): the 2-vs-1 estimate of issue 18 that does not depend on
what else this 2-core machine runs (``bench_cluster.py --only scale`` measures CPU time,
which moves by tens of percent round to round here).

    python benchmarks/cluster_instructions.py [--peers 100000] [--torrents 1000]
        [--seconds 20] [--tree NAME=PATH ...]

For each tree (default: this checkout; give a compiled build, ``S3TORRENT_COMPILE=1 pip
install --target DIR .`` with ``benchmarks/`` copied in, for the figures issue 18 is about):
one Redis; 1 cluster node (``cluster_node.py``, core 0), then 2 cluster nodes (cores 0
and 1), each under ``valgrind --tool=callgrind`` with collection off. Node 0 is loaded
with PEERS ``started`` announces over TORRENTS torrents (node 1 merges them); once every
node is idle, collection goes on in every node for ``--seconds`` of cached-id UDP announces
on each node at once (``udp_load.c``, generator i on the other core), then off, and each
node's count is dumped. Printed per node: instructions per announce it answered, and in
the compiled build the merge of the other node's changes (``merge_upserts``, inclusive)
per merged change. Under valgrind a node answers ~2-3k announces/s, so the 100-ms sync
tick's fixed work weighs more per announce than at full speed; both layouts pay it alike.

The estimate: a node of 2 at the same rate as the other node spends c_own + c_merge per
announce (c_own: its instructions but the merge, per announce it answered; c_merge: the
merge per change merged), a lone node c_1; 2 nodes serve 2 x c_1 / (c_own + c_merge) of
one node's announces on the same instructions. Cache misses are not in it (callgrind's
cache simulation: ``VGEXTRA="--cache-sim=yes"``). Needs valgrind and redis-server; a run
takes about 3 minutes per tree.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import bench_cluster as bc
import bench_tracker as bt
import bench_udp

PYTHON = os.path.realpath(sys.executable)  # the interpreter itself, not a pyenv shim


def _instrument(pid: int, *flags: str) -> None:
    subprocess.run(["callgrind_control", *flags, str(pid)], check=True, capture_output=True)


def _idle(procs: list[bt.Proc], timeout: float = 600.0) -> None:
    """Until no node used more than 0.2 s of CPU in a second (node 1 merged node 0's
    load; valgrind makes that slow)."""
    deadline = time.monotonic() + timeout
    before = [bt.cpu_seconds(p.pid) for p in procs]
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = [bt.cpu_seconds(p.pid) for p in procs]
        if max(b - a for a, b in zip(before, now, strict=True)) < 0.2:
            return
        before = now
    raise RuntimeError("the nodes did not settle")


def _counts(dump: Path) -> tuple[int, int | None]:
    """A dump's instructions, and merge_upserts' inclusive count (None: not compiled)."""
    total = next(int(line.split()[1]) for line in dump.read_text().splitlines()
                 if line.startswith("totals:"))
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100",
                          str(dump)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"^\s*([\d,]+) \(.*merge_upserts \[", out, re.M)
    return total, int(m[1].replace(",", "")) if m else None


def layout(args: argparse.Namespace, tree: Path, n: int, work: Path,
           exe: Path) -> list[tuple[int, int, int | None]]:
    """``n`` cluster nodes of ``tree`` under callgrind: per node (announces it answered,
    instructions, merge_upserts' instructions)."""
    redis = bc.Redis(work)
    procs: list[bt.Proc] = []
    ports = [bt.free_port() for _ in range(n)]
    try:
        for i, port in enumerate(ports):
            out = work / f"cg.{n}.{i}"
            cmd = ["taskset", "-c", str(i), "valgrind", "--tool=callgrind",
                   "--instr-atstart=no", f"--callgrind-out-file={out}",
                   *os.environ.get("VGEXTRA", "").split(), PYTHON,
                   str(tree / "benchmarks" / "cluster_node.py"), "--port", str(port),
                   "--torrents", str(args.torrents), "--redis", redis.url(0),
                   "--node-id", f"n{i}"]
            procs.append(bt.Proc(f"node{n}-{i}", cmd, work,
                                 dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")))
            bt.wait_listening(procs[-1], port, 600)
            bt.wait_serving(procs[-1], port, 600)
        bench_udp.run_load(exe, args, ports[0], "started", 900)
        _idle(procs)
        for p in procs:
            _instrument(p.pid, "-i", "on")
        loads: list[bt.Load | None] = [None] * n

        def load(i: int) -> None:
            loads[i] = bench_udp.run_load(exe, args, ports[i], "cached", args.seconds,
                                          cpu=1 - i if n == 2 else 1)

        threads = [threading.Thread(target=load, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        _idle(procs)  # the last flush and merge
        for p in procs:
            _instrument(p.pid, "-i", "off")
            _instrument(p.pid, "-d")
        rows = []
        for i, p in enumerate(procs):
            dumps = sorted(work.glob(f"cg.{n}.{i}.*"))
            deadline = time.monotonic() + 60
            while not dumps and time.monotonic() < deadline:
                time.sleep(0.2)
                dumps = sorted(work.glob(f"cg.{n}.{i}.*"))
            if not dumps:
                raise RuntimeError(f"{p.name}: no callgrind dump")
            done = loads[i]
            assert done is not None
            rows.append((done.announces, *_counts(dumps[-1])))
        return rows
    finally:
        for p in procs:
            p.stop()
        redis.proc.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peers", type=int, default=100_000)
    p.add_argument("--torrents", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--window", type=int, default=64, help="UDP transactions in flight")
    p.add_argument("--sockets", type=int, default=4, help="UDP generator sockets")
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--tree", action="append", default=[], metavar="NAME=PATH")
    args = p.parse_args(argv)
    trees = dict(bc._tree(t) for t in args.tree) or {"this": bc.ROOT}
    with tempfile.TemporaryDirectory(prefix="s3t-cgcluster-") as tmp:
        work = Path(tmp)
        exe = bench_udp.build_generator(work)
        for name, tree in trees.items():
            lone = layout(args, tree, 1, work, exe)[0]
            pair = layout(args, tree, 2, work, exe)
            c1 = lone[1] / lone[0]
            print(f"{name}: 1 cluster node: {c1:.0f} instructions per announce "
                  f"({lone[0]} announces)", flush=True)
            per = []
            for i, (own, total, merge) in enumerate(pair):
                merged = pair[1 - i][0]
                line = (f"{name}: node {i} of 2: {total / own:.0f} instructions per announce "
                        f"answered ({own} announces, {merged} merged)")
                if merge is not None:
                    c_own, c_merge = (total - merge) / own, merge / merged
                    per.append(c_own + c_merge)
                    line += (f"; merge {c_merge:.0f} per merged change, the rest "
                             f"{c_own:.0f} per announce")
                print(line, flush=True)
            if per:
                mean = sum(per) / len(per)
                print(f"{name}: 2 nodes vs 1 by instructions, at equal rates: "
                      f"{2 * c1 / mean:.2f}x (a node of 2: {mean:.0f} per announce; "
                      f"goal >= 1.7x)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
