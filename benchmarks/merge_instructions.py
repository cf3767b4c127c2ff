"""Instructions per merged change of ``tracker.peermerge.merge_upserts`` (a cluster node
merging another node's batch), counted by valgrind (callgrind) for one or more builds: the
merge alone, without a cluster around it.

    python benchmarks/merge_instructions.py [--peers 100000] [--torrents 1000]
        [--pending 3000] [--batch 6000] [--batches 10] [--tree NAME=PATH ...]

Per tree (default: this checkout; a compiled build is what issue 18 measures): a tracker
holding PEERS peers over TORRENTS torrents (merged in first), PENDING of them announced here
since the last push (this node's words: ``merge_upserts`` passes them over, as
``SwarmSync._words_after`` asks), then BATCHES batches of BATCH plain IPv4 upserts of another
node, half of them about pending peers, each with a later deadline. callgrind counts only
inside ``merge_upserts`` (``--toggle-collect``, which needs the compiled function's C name:
a plain build prints nothing for it); the count with no batch is subtracted, so what is
left is per merged change. Needs valgrind.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = os.path.realpath(sys.executable)  # the interpreter itself, not a pyenv shim


def _addr(p: int) -> bytes:
    return bytes([10, p >> 16 & 255, p >> 8 & 255, p & 255, 0x1A, 0xE1])


def _merge(args: argparse.Namespace) -> None:
    """The measured process: load, pend, merge ``args.batches`` batches."""
    import urllib.parse

    from tracker.core import TrackerCore
    from tracker.peerchanges import PeerChanges
    from tracker.peerlog import PLAIN_V4
    from tracker.peermerge import merge_upserts

    rng = random.Random(1)
    core = TrackerCore(interval=1800, peer_log=None)
    hashes = [bytes([1 + t % 250, t // 250]) + bytes(18) for t in range(args.torrents)]
    for h in hashes:
        core.register([h])
    pid = b"-XX0001-" + bytes(12)

    def batch(peers: list[int], ttl_ms: int) -> bytes:
        return b"".join(PLAIN_V4.pack(0, hashes[p % args.torrents], _addr(p), pid, ttl_ms)
                        for p in peers)

    assert merge_upserts(core.swarms, batch(list(range(args.peers)), 3_600_000), 0.0, (), (),
                         b"", set())
    changes = PeerChanges(10**6)
    core.peer_log = changes
    own = rng.sample(range(args.peers), args.pending)
    for p in own:
        ip = f"10.{p >> 16 & 255}.{p >> 8 & 255}.{p & 255}"
        query = (f"info_hash={urllib.parse.quote(hashes[p % args.torrents])}&port=6881"
                 f"&compact=1&left=5&peer_id={urllib.parse.quote(pid)}").encode()
        assert b"failure" not in core.http_announce(query, [], ip, 10.0)
    skip = (changes.pending,) if changes.pending else ()
    skip_peers = (changes.peers,) if changes.peers else ()
    for r in range(args.batches):
        peers = rng.sample(own, args.batch // 2) + rng.sample(range(args.peers),
                                                              args.batch - args.batch // 2)
        rng.shuffle(peers)
        assert merge_upserts(core.swarms, batch(peers, 3_700_000 + 60_000 * r), 0.0, skip,
                             skip_peers, b"", set())


def _count(tree: Path, args: argparse.Namespace, batches: int, work: Path) -> int:
    out = work / f"cg.{batches}"
    cmd = ["valgrind", "--tool=callgrind", "--toggle-collect=__pyx_pw_*merge_upserts",
           f"--callgrind-out-file={out}", PYTHON, __file__, "--child",
           "--peers", str(args.peers), "--torrents", str(args.torrents),
           "--pending", str(args.pending), "--batch", str(args.batch),
           "--batches", str(batches)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=1800,
                   env=dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0"))
    return next(int(line.split()[1]) for line in out.read_text().splitlines()
                if line.startswith("totals:"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peers", type=int, default=100_000)
    p.add_argument("--torrents", type=int, default=1000)
    p.add_argument("--pending", type=int, default=3000)
    p.add_argument("--batch", type=int, default=6000)
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--tree", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _merge(args)
        return 0
    trees = dict(t.split("=", 1) for t in args.tree) or {"this": str(ROOT)}
    for name, tree in trees.items():
        with tempfile.TemporaryDirectory(prefix="s3t-cgmerge-") as tmp:
            base = _count(Path(tree), args, 0, Path(tmp))
            full = _count(Path(tree), args, args.batches, Path(tmp))
        if full == base == 0:
            print(f"{name}: no count (a plain build: merge_upserts has no C name)", flush=True)
            continue
        merged = args.batches * args.batch
        print(f"{name}: merge_upserts {(full - base) / merged:.0f} instructions per merged "
              f"change ({merged} merged, {args.pending} pending)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
