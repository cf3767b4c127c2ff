"""Swarm benchmark: how many copies of one object leave S3 and the daemon when N BitTorrent
clients fetch it at once, against N plain parallel downloads from S3. Not a test.

    python benchmarks/bench_swarm.py [--size-mib 256] [--clients 8] [--cap-mib 20]
                                     [--modes proxy,origin] [--super-seed on|off]

Parts, all on loopback:

- moto server (its own process) holds the object. Stock moto reads the *whole* object for
  every GET, ranged ones too, which makes 16 KiB web seed requests of a 256 MiB object cost
  a 256 MiB copy each; the benchmark's moto (``_moto`` sub-command) keeps each object's bytes
  in memory so a range costs a range, as on S3.
- A counting TCP proxy (``_proxy`` sub-command, its own process) in front of moto is "S3":
  the daemon's bucket ``endpoint_url``, so it sees the daemon's hashing reads, the web seed's
  store reads and, in origin mode, the clients' web seed requests (the object URL is the
  proxy's). It counts response bytes and caps each connection at ``--cap-mib`` MiB/s
  (0 = no cap) to look like one S3 connection.
- The daemon in this process (trio): embedded tracker, libtorrent session, S3 API/web seed.
- N ``tests/peers/lt_peer.py`` processes bound to 127.0.0.2.., started together, finding each
  other and the daemon through the tracker only.

Counted per mode: S3 bytes (the proxy), daemon bytes (web seed body bytes streamed, from
``seeder_webseed_served_bytes_total``, plus the session's BitTorrent payload upload),
client completion times. Then N plain GETs of the whole object through the proxy, at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LT_PEER = ROOT / "tests" / "peers" / "lt_peer.py"
MIB = 1024 * 1024
KEY = "big/object.bin"
CLIENT_TIMEOUT = 1800.0  # s
STATS_EVERY = 0.25  # s between proxy counter writes


# --- the counting, capped proxy (own process) --------------------------------------------------


async def _proxy_main(listen_port: int, upstream: int, cap: float, stats_path: Path) -> None:
    stats = {"down": 0, "up": 0, "open": 0, "connections": 0}

    async def pump(src: trio.SocketStream, dst: trio.SocketStream, key: str, rate: float) -> None:
        started = trio.current_time()
        moved = 0
        try:
            while True:
                data = await src.receive_some(256 * 1024)
                if not data:
                    break
                await dst.send_all(data)
                moved += len(data)
                stats[key] += len(data)
                if rate:
                    ahead = moved / rate - (trio.current_time() - started)
                    if ahead > 0:
                        await trio.sleep(ahead)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await dst.send_eof()

    async def handle(client: trio.SocketStream) -> None:
        stats["open"] += 1
        stats["connections"] += 1
        try:
            server = await trio.open_tcp_stream("127.0.0.1", upstream)
            async with client, server, trio.open_nursery() as n:
                n.start_soon(pump, client, server, "up", 0.0)
                n.start_soon(pump, server, client, "down", cap)
        except OSError:
            pass
        finally:
            stats["open"] -= 1

    async def writer() -> None:
        while True:
            tmp = stats_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(stats))
            os.replace(tmp, stats_path)
            await trio.sleep(STATS_EVERY)

    async with trio.open_nursery() as n:
        n.start_soon(writer)
        listeners = await trio.open_tcp_listeners(listen_port, host="127.0.0.1")
        print(listeners[0].socket.getsockname()[1], flush=True)
        await trio.serve_listeners(handle, listeners)


# --- moto with ranged reads that cost a range (own process) ------------------------------------


def _moto_main(port: int) -> None:
    from moto.s3.models import FakeKey
    from moto.server import main

    plain = FakeKey.value

    def value(self: Any) -> bytes:
        cached = self.__dict__.get("_bench_value")
        if cached is None or cached[0] != self.etag:
            cached = (self.etag, plain.fget(self))
            self.__dict__["_bench_value"] = cached
        return cached[1]

    FakeKey.value = property(value, plain.fset)  # type: ignore[method-assign]
    main(["-H", "127.0.0.1", "-p", str(port)])


# --- the benchmark -----------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    s3_bytes: int
    s3_hashing: int = 0
    webseed: int = 0
    bt_upload: int = 0
    times: list[float] = field(default_factory=list)
    client_web: int = 0
    client_peer: int = 0

    @property
    def daemon(self) -> int:
        return self.webseed + self.bt_upload


def _free_port() -> int:
    from tests.helpers import free_port

    return free_port()


def _read_stats(path: Path) -> dict[str, int]:
    for _ in range(100):  # bounded: the writer replaces the file atomically
        with contextlib.suppress(OSError, ValueError):
            return json.loads(path.read_text())
        time.sleep(0.05)
    raise RuntimeError("proxy stats unreadable")


async def _quiet(path: Path, deadline: float = 60.0) -> dict[str, int]:
    """The proxy counters once no connection is open (bounded)."""
    with trio.move_on_after(deadline):
        while True:
            s = _read_stats(path)
            if s["open"] == 0:
                return s
            await trio.sleep(STATS_EVERY)
    return _read_stats(path)


async def _spawn(args: list[str], **kw: Any) -> trio.Process:
    return await trio.lowlevel.open_process(args, **kw)


async def _stop(proc: trio.Process) -> None:
    with trio.CancelScope(shield=True):
        if proc.returncode is None:
            proc.terminate()
            with trio.move_on_after(10):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def _first_line(proc: trio.Process) -> bytes:
    buf = b""
    assert proc.stdout is not None
    while b"\n" not in buf:
        chunk = await proc.stdout.receive_some(1024)
        if not chunk:
            raise RuntimeError("process exited before its first line")
        buf += chunk
    return buf.split(b"\n", 1)[0]


async def _run_client(bind: str, torrent: Path, save: Path, t0: float) -> dict[str, Any]:
    proc = await _spawn(
        [sys.executable, str(LT_PEER), "--torrent", str(torrent), "--save-dir", str(save),
         "--bind", bind, "--timeout", str(CLIENT_TIMEOUT)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        buf = b""
        assert proc.stdout is not None
        while True:
            while b"\n" not in buf:
                chunk = await proc.stdout.receive_some(65536)
                if not chunk:
                    raise RuntimeError(f"client {bind} exited ({proc.returncode})")
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            event = json.loads(line)
            if event["event"] == "error":
                raise RuntimeError(f"client {bind}: {event}")
            if event["event"] == "finished":
                event["seconds"] = time.monotonic() - t0
                return event
    finally:
        await _stop(proc)


async def _swarm_mode(mode: str, args: argparse.Namespace, proxy_url: str, stats: Path,
                      bucket: str, size: int, work: Path) -> Result:
    from seeder.config import (
        BucketConfig,
        Config,
        HostPort,
        MetricsConfig,
        ScannerConfig,
        SeedingConfig,
        ServerConfig,
        StateConfig,
        TrackerConfig,
    )  # fmt: skip
    from seeder.ops.daemon import Daemon, serve

    s3_port, tracker_port = _free_port(), _free_port()
    public = f"http://127.0.0.1:{s3_port}"
    config = Config(
        server=ServerConfig(listen=HostPort("127.0.0.1", s3_port), public_url=public),
        tracker=TrackerConfig(
            listen=HostPort("127.0.0.1", tracker_port), udp_listen=None,
            public_url=f"http://127.0.0.1:{tracker_port}/announce", interval=60, min_interval=5,
        ),
        metrics=MetricsConfig(listen=None),
        state=StateConfig(dir=str(work / f"state-{mode}")),
        scanner=ScannerConfig(enabled=False),
        seeding=SeedingConfig(listen_interfaces="127.0.0.1:0", ssrf_mitigation=False,
                              cache_max_bytes=4 * size, swarm_budget=args.budget,
                              swarm_trickle_rate=args.trickle),
        buckets=(BucketConfig(
            name=bucket, backend="s3", endpoint_url=proxy_url, region="us-east-1",
            access_key="testing", secret_key="testing", webseed=mode,
        ),),
    )  # fmt: skip
    base = _read_stats(stats)["down"]
    async with trio.open_nursery() as nursery:
        daemon: Daemon = await nursery.start(
            lambda task_status: serve(config, task_status=task_status)
        )
        url = f"{public}/{bucket}/{urllib.parse.quote(KEY)}?torrent"
        torrent = await trio.to_thread.run_sync(lambda: urllib.request.urlopen(url).read())
        entry = daemon.torrents.lookup_cached(bucket, KEY)
        assert entry is not None and daemon.seeding is not None
        key = entry.seed_key
        await daemon.seeding.session.wait_complete(key)
        hashing = (await _quiet(stats))["down"] - base
        tpath = work / f"{mode}.torrent"
        tpath.write_bytes(torrent)
        results: list[dict[str, Any]] = []
        t0 = time.monotonic()
        logging.getLogger("bench").warning("%s: %d clients start", mode, args.clients)

        async def one(i: int) -> None:
            bind = f"127.0.0.{i + 2}"
            results.append(await _run_client(bind, tpath, work / f"{mode}-{bind}", t0))

        async with trio.open_nursery() as clients:
            for i in range(args.clients):
                clients.start_soon(one, i)
        st = daemon.seeding.session.status(key)
        served = daemon.registry.get_sample_value(
            "seeder_webseed_served_bytes_total", {"bucket": bucket}
        ) or 0.0
        nursery.cancel_scope.cancel()
    total = (await _quiet(stats))["down"] - base
    return Result(
        name=f"{mode} ({_policy(args)})",
        s3_bytes=total, s3_hashing=hashing, webseed=int(served),
        bt_upload=st.uploaded if st else 0,
        times=sorted(r["seconds"] for r in results),
        client_web=sum(r["web_seed_bytes"] for r in results),
        client_peer=sum(r["peer_bytes"] for r in results),
    )


def _policy(args: argparse.Namespace) -> str:
    parts = ["super-seed" if args.super_seed == "on" else "no super-seed"]
    parts.append(f"budget {args.budget:g}, trickle {args.trickle // 1024} KiB/s" if args.budget
                 else "no budget")
    return ", ".join(parts)


def _plain_get(url: str) -> int:
    n = 0
    with urllib.request.urlopen(url, timeout=600) as r:
        while chunk := r.read(1 << 20):
            n += len(chunk)
    return n


async def _plain(args: argparse.Namespace, proxy_url: str, stats: Path, bucket: str,
                 size: int) -> Result:
    url = f"{proxy_url}/{bucket}/{urllib.parse.quote(KEY)}"  # public-read
    base = _read_stats(stats)["down"]
    times: list[float] = []
    t0 = time.monotonic()

    async def one() -> None:
        n = await trio.to_thread.run_sync(_plain_get, url, limiter=trio.CapacityLimiter(1))
        assert n == size, n
        times.append(time.monotonic() - t0)

    async with trio.open_nursery() as nursery:
        for _ in range(args.clients):
            nursery.start_soon(one)
    total = (await _quiet(stats))["down"] - base
    return Result(name="plain S3 GETs", s3_bytes=total, times=sorted(times))


def _table(results: list[Result], size: int) -> str:
    def x(n: int) -> str:
        return f"{n / size:.2f}x"

    lines = [
        "| run | S3 bytes | of which hashing | daemon bytes (web seed + BT) "
        "| clients: web seed / peers | completion median / max |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        med, top = statistics.median(r.times), max(r.times)
        daemon = f"{x(r.daemon)} ({x(r.webseed)} + {x(r.bt_upload)})" if r.daemon else "-"
        clients = f"{x(r.client_web)} / {x(r.client_peer)}" if r.client_web or r.client_peer \
            else "-"
        lines.append(f"| {r.name} | {x(r.s3_bytes)} | {x(r.s3_hashing)} | {daemon} | "
                     f"{clients} | {med:.1f} s / {top:.1f} s |")
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> None:
    import seeder.seed.settings

    # The budget's decisions (capped / uncapped, with the copies sent) on stderr.
    logging.basicConfig(level=logging.WARNING, format="%(relativeCreated)8.0f ms %(message)s")
    level = logging.DEBUG if args.verbose else logging.INFO
    logging.getLogger("seeder.seed.policy").setLevel(level)

    seeder.seed.settings.SUPER_SEEDING = args.super_seed == "on"
    size = args.size_mib * MIB
    work = Path(tempfile.mkdtemp(prefix="bench-swarm-"))
    stats = work / "proxy.json"
    moto_port = _free_port()
    moto = await _spawn([sys.executable, __file__, "_moto", str(moto_port)],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
    proxy = await _spawn(
        [sys.executable, __file__, "_proxy", "0", str(moto_port), str(args.cap_mib), str(stats)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
    )
    try:
        proxy_url = f"http://127.0.0.1:{int(await _first_line(proxy))}"
        import boto3

        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto_port}",
                          region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
        with trio.fail_after(60):
            while True:
                try:
                    await trio.to_thread.run_sync(s3.list_buckets)
                    break
                except Exception:
                    await trio.sleep(0.2)
        bucket = "bench-swarm"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key=KEY, Body=os.urandom(size), ACL="public-read")
        results = [await _plain(args, proxy_url, stats, bucket, size)]
        for mode in args.modes.split(","):
            results.append(await _swarm_mode(mode, args, proxy_url, stats, bucket, size, work))
            print(_table(results, size), flush=True)
        cap = f"{args.cap_mib} MiB/s per S3 connection" if args.cap_mib else "no S3 cap"
        print(f"\n{args.clients} clients, {args.size_mib} MiB object, {cap}")
        print(_table(results, size))
    finally:
        await _stop(proxy)
        await _stop(moto)
        subprocess.run(["rm", "-rf", str(work)], check=False)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_proxy":
        _, _, port, upstream, cap, stats = sys.argv
        # SIGTERM (the default action) ends it: its counters are already in the stats file.
        trio.run(_proxy_main, int(port), int(upstream), float(cap) * MIB, Path(stats))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_moto":
        _moto_main(int(sys.argv[2]))
        return
    from seeder.config import SeedingConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--size-mib", type=int, default=256)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--cap-mib", type=float, default=20.0, help="per S3 connection, 0 = none")
    p.add_argument("--modes", default="proxy,origin")
    p.add_argument("--super-seed", choices=("on", "off"), default="off")
    p.add_argument("--verbose", action="store_true", help="log every budget decision")
    p.add_argument("--budget", type=float, default=SeedingConfig().swarm_budget,
                   help="[seeding] swarm_budget: copies per swarm, 0 = off")
    p.add_argument("--trickle", type=int, default=SeedingConfig().swarm_trickle_rate,
                   help="[seeding] swarm_trickle_rate, bytes/s")
    trio.run(_main, p.parse_args())


if __name__ == "__main__":
    main()
