"""tracker.service over real loopback sockets (HTTP and UDP), and ``python -m tracker``."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
import trio
from prometheus_client import CollectorRegistry

from tracker import bencode
from tracker.core import TrackerCore
from tracker.metrics import TrackerMetrics
from tracker.service import TrackerBound, serve_tracker
from tracker.udp_protocol import PROTOCOL_ID

ROOT = Path(__file__).resolve().parents[2]
IH = bytes(range(1, 21))
DEADLINE = 10


def announce_target(peer: int, port: int, ih: bytes = IH, **extra: str) -> bytes:
    pid = b"-XX0001-" + peer.to_bytes(12, "big")
    q = b"info_hash=" + quote_from_bytes(ih, safe="").encode()
    q += b"&peer_id=" + quote_from_bytes(pid, safe="").encode() + b"&port=%d" % port
    for k, v in extra.items():
        q += b"&" + k.encode() + b"=" + v.encode()
    return b"/announce?" + q


async def http_get(addr: tuple[str, int], target: bytes, *, bind: str | None = None) -> bytes:
    """One GET over a fresh connection; returns the body (asserts a 200)."""
    sock = trio.socket.socket()
    if bind:
        await sock.bind((bind, 0))
    await sock.connect(addr)
    stream = trio.SocketStream(sock)
    async with stream:
        head = b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        await stream.send_all(b"GET " + target + head)
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return body


class Udp:
    def __init__(self, server: tuple[str, int], bind: str = "127.0.0.1") -> None:
        self.server = server
        self.sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.bind = bind

    async def request(self, packet: bytes) -> bytes:
        await self.sock.sendto(packet, self.server)
        data, _ = await self.sock.recvfrom(4096)
        return data

    async def connect(self) -> int:
        await self.sock.bind((self.bind, 0))
        action, tid, cid = struct.unpack(">IIQ", await self.request(
            struct.pack(">QII", PROTOCOL_ID, 0, 42)))  # fmt: skip
        assert (action, tid) == (0, 42)
        return cid


async def start(nursery: trio.Nursery, core: TrackerCore) -> TrackerBound:
    return await nursery.start(serve_tracker, core, ("127.0.0.1", 0), ("127.0.0.1", 0))


async def test_http_and_udp_share_swarms_and_report_metrics():
    registry = CollectorRegistry()
    core = TrackerCore(interval=60, min_interval=10, open=True, metrics=TrackerMetrics(registry))
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            bound = await start(nursery, core)
            assert bound.http[1] > 0 and bound.udp[1] > 0
            body = await http_get(bound.http, announce_target(1, 6881, left="0"), bind="127.0.0.2")
            assert bencode.decode(body)[b"complete"] == 1
            udp = Udp(bound.udp, bind="127.0.0.3")
            cid = await udp.connect()
            packet = struct.pack(">QII20s20sQQQIIIiH", cid, 1, 9, IH, b"-YY0001-" + bytes(12),
                                 0, 100, 0, 2, 0, 0, -1, 7000)  # fmt: skip
            reply = await udp.request(packet)
            assert struct.unpack(">IIIII", reply[:20]) == (1, 9, 60, 1, 1)
            assert reply[20:] == bytes([127, 0, 0, 2]) + (6881).to_bytes(2, "big")
            body = await http_get(bound.http, b"/scrape?info_hash=" + quote_from_bytes(
                IH, safe="").encode())  # fmt: skip
            assert bencode.decode(body)[b"files"][IH] == {
                b"complete": 1, b"downloaded": 0, b"incomplete": 1}  # fmt: skip
            nursery.cancel_scope.cancel()
    assert registry.get_sample_value(  # connect + announce
        "tracker_request_duration_seconds_count", {"transport": "udp"}) == 2  # fmt: skip
    assert registry.get_sample_value(
        "tracker_request_duration_seconds_count", {"transport": "http"}) == 2  # fmt: skip


GARBAGE = [
    b"", b"\x00", b"x" * 15, b"x" * 16, b"\xff" * 98, b"z" * 3000,
    struct.pack(">QII", PROTOCOL_ID, 7, 1), struct.pack(">QII", 1, 1, 1) + b"\x00" * 82,
]  # fmt: skip


async def test_garbage_datagrams_and_requests_never_stop_the_listeners():
    core = TrackerCore(open=True)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            bound = await start(nursery, core)
            junk = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for packet in GARBAGE:
                await junk.sendto(packet, bound.udp)
            for target in (b"/announce?info_hash=%", b"/announce?" + b"&" * 5000, b"/scrape?x"):
                assert b"failure reason" in await http_get(bound.http, target)
            assert await Udp(bound.udp).connect()  # still answering
            nursery.cancel_scope.cancel()


async def test_silent_peers_expire_via_the_cleaner():
    core = TrackerCore(interval=1, min_interval=1, peer_timeout_factor=1.0, open=True)
    scrape = b"/scrape?info_hash=" + quote_from_bytes(IH, safe="").encode()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            bound = await start(nursery, core)
            await http_get(bound.http, announce_target(1, 6881))
            def peers(body: bytes) -> int:
                entry = bencode.decode(body)[b"files"][IH]  # open mode: zeros when unknown
                return entry[b"complete"] + entry[b"incomplete"]

            assert peers(await http_get(bound.http, scrape)) == 1
            while peers(await http_get(bound.http, scrape)):
                await trio.sleep(0.1)  # polling for the sweeper; fail_after bounds it
            assert core.swarms.swarm_count == 0
            nursery.cancel_scope.cancel()


def test_cli_serves_until_sigterm(tmp_path):
    ih = "ab" * 20
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracker", "--http", "127.0.0.1:0", "--udp", "127.0.0.1:0",
         "--info-hash", ih, "--interval", "120"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        lines = [proc.stdout.readline().split() for _ in range(2)]
        ports = {kind: int(port) for _, kind, _, port in lines}
        assert set(ports) == {"http", "udp"}
        base = f"http://127.0.0.1:{ports['http']}"
        target = announce_target(1, 6881, ih=bytes.fromhex(ih)).decode()
        with urllib.request.urlopen(base + target, timeout=DEADLINE) as r:
            assert bencode.decode(r.read())[b"interval"] == 120
        other = announce_target(1, 6881, ih=b"\x01" * 20).decode()
        with urllib.request.urlopen(base + other, timeout=DEADLINE) as r:
            assert bencode.decode(r.read()) == {b"failure reason": b"unregistered torrent"}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, err


@pytest.mark.parametrize(
    ("args", "message"),
    [([], "give --http and/or --udp"), (["--http", "nope"], "expected HOST:PORT"),
     (["--http", "127.0.0.1:1", "--info-hash", "abc"], "not hex")],
)  # fmt: skip
def test_cli_bad_arguments_exit_2(args, message):
    proc = subprocess.run([sys.executable, "-m", "tracker", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=DEADLINE)  # fmt: skip
    assert proc.returncode == 2 and message in proc.stderr


def _udp_exchange(sock: socket.socket, port: int, packet: bytes) -> bytes:
    sock.sendto(packet, ("127.0.0.1", port))
    return sock.recv(4096)


def _cli_udp(args: list[str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracker", *args, "--open", "--log-level", "WARNING"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    _, kind, _, port = proc.stdout.readline().split()
    assert kind == "udp"
    return proc, int(port)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, err


@pytest.mark.parametrize("keep_key", [True, False])
def test_cli_connection_ids_outlive_a_restart_with_a_secret_file(tmp_path, keep_key):
    """A client connects, the tracker restarts on the same port, the client announces with
    the id it holds: accepted when the key is kept in --secret-file (and the clock is the
    system's monotonic one, not trio's per-run offset), refused without."""
    key = tmp_path / "tracker.key"
    extra = ["--secret-file", str(key)] if keep_key else []
    # One client socket throughout: the id is bound to the client's address and port.
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(DEADLINE)
    proc, port = _cli_udp(["--udp", "127.0.0.1:0", *extra])
    try:
        reply = _udp_exchange(client, port, struct.pack(">QII", PROTOCOL_ID, 0, 5))
        action, _, cid = struct.unpack(">IIQ", reply)
        assert action == 0
    finally:
        _stop(proc)
    if keep_key:
        assert len(key.read_bytes()) == 32 and key.stat().st_mode & 0o777 == 0o600
    proc, port2 = _cli_udp(["--udp", f"127.0.0.1:{port}", *extra])
    try:
        assert port2 == port
        packet = struct.pack(">QII20s20sQQQIIIiH", cid, 1, 6, IH, b"-YY0001-" + bytes(12),
                             0, 100, 0, 2, 0, 0, 50, 6881)  # fmt: skip
        action, tid = struct.unpack(">II", _udp_exchange(client, port, packet)[:8])
        assert tid == 6 and action == (1 if keep_key else 3)  # 1 announce, 3 error
    finally:
        _stop(proc)
        client.close()
