"""Torrent generation throughput from a local file: seeder.torrent.hashing vs mktorrent, same run.

Creates a file of random bytes (default 1 GiB) in a temporary directory, reads it once so it
sits in the page cache, then alternates, per round: our pipeline (``hashing.hash_object`` over
``LocalStore``, plus ``metainfo.build_torrent``) and ``mktorrent -t THREADS -l log2(piece)``
on the same file. Prints each round and the median of (our throughput / mktorrent's).
Goal: >= 0.95 for v1. Needs ``mktorrent`` on PATH (Debian: ``apt-get install mktorrent``).

    python benchmarks/bench_generation.py [--size-mib 1024] [--rounds 3] [--threads 2]
                                          [--piece-kib 0 (auto)] [--hybrid] [--read-ahead 4]
                                          [--on-chunk]

``--on-chunk`` passes a callback that only looks at each chunk, as the seed cache's writer
would be given: the buffers then go through the trio thread in order (the other pipeline).

A script, not a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seeder import __version__
from seeder.store.local import LocalStore
from seeder.torrent import hashing, metainfo

MiB = 1024 * 1024
WRITE_CHUNK = 16 * MiB


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def make_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left > 0:  # bounded: left shrinks by at least 1 each pass
            n = min(WRITE_CHUNK, left)
            f.write(os.urandom(n))
            left -= n


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(WRITE_CHUNK):
            pass


def look(offset: int, data: bytes | memoryview) -> None:
    """A stand-in for the seed cache's writer that costs nothing itself."""
    len(data)


async def ours_once(root: Path, key: str, piece: int, hybrid: bool, threads: int,
                    read_ahead: int, on_chunk: bool) -> tuple[float, bytes]:
    store = LocalStore("bench", str(root), threads=max(threads, read_ahead))
    info = await store.head(key)
    start = time.perf_counter()
    hashes = await hashing.hash_object(store, info, piece, hybrid=hybrid, threads=threads,
                                       read_ahead=read_ahead,
                                       on_chunk=look if on_chunk else None)
    torrent = metainfo.build_torrent(
        bucket="bench", key=key, size=info.size, hashes=hashes, announce=None,
        announce_list=[], url_list=[], created_by=f"s3torrent/{__version__}",
    )
    elapsed = time.perf_counter() - start
    await store.aclose()
    return elapsed, torrent


def mktorrent_once(path: Path, piece: int, threads: int, out_dir: Path) -> float:
    out = out_dir / "mk.torrent"
    out.unlink(missing_ok=True)  # mktorrent refuses to overwrite
    cmd = ["mktorrent", "-t", str(threads), "-l", str(piece.bit_length() - 1), "-d",
           "-a", "http://127.0.0.1:1/announce", "-o", str(out), str(path)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    out.unlink(missing_ok=True)
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--read-ahead", type=int, default=4)
    ap.add_argument("--piece-kib", type=int, default=0, help="0: metainfo.piece_length_for")
    ap.add_argument("--hybrid", action="store_true", help="ours hybrid (mktorrent is v1 only)")
    ap.add_argument("--on-chunk", action="store_true", help="ours with an on_chunk callback")
    args = ap.parse_args()
    if shutil.which("mktorrent") is None:
        print("mktorrent not found (apt-get install -y mktorrent)", file=sys.stderr)
        return 2

    size = args.size_mib * MiB
    piece = args.piece_kib * 1024 or metainfo.piece_length_for(size)
    metainfo.check_piece_length(piece)
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        root = Path(tmp)
        path = root / "object.bin"
        (root / "out").mkdir()
        make_file(path, size)
        warm(path)
        print(f"file {size / MiB:.0f} MiB, piece {piece // 1024} KiB, threads {args.threads}, "
              f"read-ahead {args.read_ahead}, {'hybrid' if args.hybrid else 'v1'}, "
              f"{'on_chunk, ' if args.on_chunk else ''}{os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.2f}")
        ratios = []
        cpu_ratios = []
        for i in range(args.rounds):
            ours_cpu0 = cpu_seconds(resource.RUSAGE_SELF)
            mk_cpu0 = cpu_seconds(resource.RUSAGE_CHILDREN)
            # Alternate who goes first so neither always gets the cooler CPU.
            if i % 2 == 0:
                ours, _ = trio.run(ours_once, root, path.name, piece, args.hybrid,
                                   args.threads, args.read_ahead, args.on_chunk)
                theirs = mktorrent_once(path, piece, args.threads, root / "out")
            else:
                theirs = mktorrent_once(path, piece, args.threads, root / "out")
                ours, _ = trio.run(ours_once, root, path.name, piece, args.hybrid,
                                   args.threads, args.read_ahead, args.on_chunk)
            ours_cpu = cpu_seconds(resource.RUSAGE_SELF) - ours_cpu0
            mk_cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - mk_cpu0
            ratio = theirs / ours  # our throughput / mktorrent's
            ratios.append(ratio)
            cpu_ratios.append(mk_cpu / ours_cpu)
            print(f"round {i + 1}: ours {size / ours / 1e9:.2f} GB/s ({ours:.2f} s, "
                  f"{ours_cpu:.2f} s CPU), mktorrent {size / theirs / 1e9:.2f} GB/s "
                  f"({theirs:.2f} s, {mk_cpu:.2f} s CPU), ratio {ratio:.3f}")
        print(f"median ratio (ours / mktorrent throughput): {statistics.median(ratios):.3f} "
              f"(goal >= 0.95)")
        # On a shared machine wall time swings with the neighbours; CPU seconds much less.
        print(f"median CPU efficiency (mktorrent CPU s / ours): "
              f"{statistics.median(cpu_ratios):.3f}; load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
