"""Torrent generation from an S3 endpoint (moto) vs a plain download of the object, same run.

Starts ``python -m moto.server`` on loopback (killed by its PID at the end), uploads an object
of random bytes (default 512 MiB), then alternates, per round:

- ours: ``S3Store.head`` + ``hashing.hash_object`` (ranged If-Match GETs, several in flight,
  read into reused buffers in the hashing threads) + ``metainfo.build_torrent``;
- plain: ``aws s3 cp s3://BUCKET/KEY - --endpoint-url URL > /dev/null`` (awscli v1, dummy
  credentials, ``AWS_CONFIG_FILE=/dev/null``): the time to just download the object.

Prints each round and the median of (our time / the plain download's). Goal: <= 1.15. Also
times ``aws s3 ls`` of the bucket (awscli's start-up plus one small request) and prints the
ratio against the download minus that start-up: the stricter number.

``--pipeline reads`` hides ``S3Store.open_reader`` from hashing, so it runs the older
pipeline (an async ``store.read`` per chunk, a new ``bytes`` each): for comparison.

    python benchmarks/bench_s3_generation.py [--size-mib 512] [--rounds 3] [--threads 2]
                                             [--read-ahead 4] [--piece-kib 0 (auto)]
                                             [--hybrid] [--moto zero-copy|plain]
                                             [--pipeline reader|reads]

moto reads and copies *the whole object* for every ranged GET (``FakeKey.value``), which no
real S3 does: a 512 MiB object served as 64 ranged GETs of 8 MiB costs moto 32 GiB of copying,
and both sides (aws s3 cp also downloads in ranged 8 MiB parts) then measure only that. So by
default (``--moto zero-copy``) the script starts the same ``moto.server`` through a three-line
launcher that makes ``FakeKey.value`` return the in-memory object without copying it (and sets
``MOTO_S3_DEFAULT_KEY_BUFFER_SIZE`` above the object size so it stays in memory): a ranged GET
then costs its range, as on S3. ``--moto plain`` runs ``python -m moto.server`` untouched.
moto is slow either way (one Python process serving every byte): both sides share that
ceiling and the two cores, so the ratio says more than the absolute speeds.

A script, not a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from procs import answers, free_port, stop

from seeder import __version__
from seeder.store import ObjectInfo
from seeder.store.s3 import S3Store
from seeder.torrent import hashing, metainfo

MiB = 1024 * 1024
BUCKET = "bench"
KEY = "object.bin"
START_DEADLINE = 30.0  # seconds for moto to answer
CREDS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


# moto.server as `python -m`, with FakeKey.value returning the in-memory bytes uncopied.
ZERO_COPY_LAUNCHER = """
import runpy, sys
from moto.s3 import models

def value(self):
    with self.lock:
        inner = getattr(self._value_buffer, "_file", None)
        if hasattr(inner, "getvalue"):
            return inner.getvalue()
        self._value_buffer.seek(0)
        return self._value_buffer.read()

models.FakeKey.value = property(value, models.FakeKey.value.fset)
sys.argv = ["moto.server", *sys.argv[1:]]
runpy.run_module("moto.server", run_name="__main__", alter_sys=True)
"""


def start_moto(size: int, log_path: Path, mode: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(size + MiB)}
    if mode == "plain":
        env.pop("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE")
        launch = [sys.executable, "-m", "moto.server"]
    else:
        launch = [sys.executable, "-c", ZERO_COPY_LAUNCHER]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*launch, "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_DEADLINE
    while not answers(url):  # bounded by the deadline
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise SystemExit(f"moto did not start; see {log_path}")
        time.sleep(0.1)  # a script polling a child process, not a test
    return proc, url


def upload(url: str, size: int) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(s3={"addressing_style": "path"}),
    )
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=os.urandom(size))
    client.close()


class ReadsOnly:
    """The S3 store without ``open_reader``: hashing falls back to ``store.read``."""

    def __init__(self, inner: S3Store) -> None:
        self.inner = inner
        self.bucket = inner.bucket

    async def head(self, key: str) -> ObjectInfo:
        return await self.inner.head(key)

    async def read(self, info: ObjectInfo, start: int, length: int) -> bytes:
        return await self.inner.read(info, start, length)


async def ours_once(url: str, piece: int, hybrid: bool, threads: int, read_ahead: int,
                    store_threads: int, pipeline: str) -> float:
    store = S3Store(BUCKET, endpoint_url=url, region="us-east-1", access_key="testing",
                    secret_key="testing", threads=store_threads)
    hashed: Any = store if pipeline == "reader" else ReadsOnly(store)
    start = time.perf_counter()
    info = await store.head(KEY)
    hashes = await hashing.hash_object(hashed, info, piece, hybrid=hybrid, threads=threads,
                                       read_ahead=read_ahead)
    metainfo.build_torrent(
        bucket=BUCKET, key=KEY, size=info.size, hashes=hashes, announce=None,
        announce_list=[], url_list=[store.origin_url(KEY) or ""],
        created_by=f"s3torrent/{__version__}",
    )
    elapsed = time.perf_counter() - start
    await store.aclose()
    return elapsed


def aws(url: str, *args: str) -> float:
    cmd = [sys.executable, "-m", "awscli", "s3", *args, "--endpoint-url", url]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, **CREDS})
    return time.perf_counter() - start


def plain_once(url: str) -> tuple[float, float]:
    """(seconds of ``aws s3 cp`` to stdout, seconds of ``aws s3 ls``: its start-up)."""
    return aws(url, "cp", f"s3://{BUCKET}/{KEY}", "-"), aws(url, "ls", f"s3://{BUCKET}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--read-ahead", type=int, default=4)
    ap.add_argument("--store-threads", type=int, default=4,
                    help="S3Store threads = ranged GETs in flight (at most --read-ahead)")
    ap.add_argument("--piece-kib", type=int, default=0, help="0: metainfo.piece_length_for")
    ap.add_argument("--hybrid", action="store_true")
    ap.add_argument("--pipeline", choices=["reader", "reads"], default="reader",
                    help="reads: hashing without S3Store.open_reader (the older pipeline)")
    ap.add_argument("--moto", choices=["zero-copy", "plain"], default="zero-copy",
                    help="zero-copy: ranged GETs cost their range (see the docstring)")
    args = ap.parse_args()
    size = args.size_mib * MiB
    piece = args.piece_kib * 1024 or metainfo.piece_length_for(size)
    metainfo.check_piece_length(piece)
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp:
        proc, url = start_moto(size, Path(tmp) / "moto.log", args.moto)
        try:
            t0 = time.perf_counter()
            upload(url, size)
            print(f"object {size / MiB:.0f} MiB uploaded to moto in "
                  f"{time.perf_counter() - t0:.1f} s; piece {piece // 1024} KiB, threads "
                  f"{args.threads}, read-ahead {args.read_ahead}, store threads "
                  f"{args.store_threads}, {'hybrid' if args.hybrid else 'v1'}, moto {args.moto}, "
                  f"pipeline {args.pipeline}, "
                  f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
            ratios = []
            strict = []
            for i in range(args.rounds):
                run_ours = (url, piece, args.hybrid, args.threads, args.read_ahead,
                            args.store_threads, args.pipeline)
                # Alternate who goes first so neither always meets the same neighbours.
                if i % 2 == 0:
                    ours = trio.run(ours_once, *run_ours)
                    plain, startup = plain_once(url)
                else:
                    plain, startup = plain_once(url)
                    ours = trio.run(ours_once, *run_ours)
                ratios.append(ours / plain)
                strict.append(ours / max(plain - startup, 1e-3))
                print(f"round {i + 1}: ours {size / ours / 1e6:.0f} MB/s ({ours:.2f} s), "
                      f"aws s3 cp {size / plain / 1e6:.0f} MB/s ({plain:.2f} s, of which "
                      f"start-up ~{startup:.2f} s), time ratio {ours / plain:.3f}, "
                      f"without aws start-up {strict[-1]:.3f}")
            print(f"median time ratio (ours / plain download): {statistics.median(ratios):.3f} "
                  f"(goal <= 1.15); without aws start-up {statistics.median(strict):.3f}; "
                  f"load {os.getloadavg()[0]:.2f}")
        finally:
            stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
