"""Slow clients end to end (issue 14): the daemon in-process, a slowloris client in its own
process (tests/peers/slowloris.py: 1100 connections from 127.0.0.2 trickling a head one
byte at a time) against the S3 API and the HTTP tracker at once, while a normal client on
127.0.0.3 keeps fetching its torrent and announcing.

Asserted: every normal request answered 200 (none refused, none lost) within a generous
bound; the slowloris connections are cut by the head deadline in total (counted from their
start, not restarted by their bytes), none outlives it by more than the sweep slack; one
address never holds more than ``max_connections_per_ip`` slots (the rest are evicted).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
import trio

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
)
from seeder.ops.daemon import Daemon, serve
from tracker import bencode

SLOWLORIS = Path(__file__).resolve().parents[1] / "peers" / "slowloris.py"
HEADER_TIMEOUT = 2.0  # short, so the suite stays fast; the default is 10 s
PER_IP = 64
SWEEP_SLACK = 2.0  # the epoll front sweeps deadlines every header_timeout / 4
ANSWER_BOUND = 5.0  # a normal request under attack: answered well within this
DURATION = 6.0  # seconds the slowloris runs


@pytest.fixture
async def daemon(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Daemon]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "file.bin").write_bytes(b"slow clients " * 10_000)
    config = Config(
        server=ServerConfig(listen=HostPort("127.0.0.1", 0), public_url="http://localhost:1",
                            header_timeout=HEADER_TIMEOUT, max_connections_per_ip=PER_IP),
        tracker=TrackerConfig(listen=HostPort("127.0.0.1", 0), header_timeout=HEADER_TIMEOUT,
                              max_connections_per_ip=PER_IP),
        metrics=MetricsConfig(listen=None),
        state=StateConfig(dir=str(tmp_path / "state")),
        scanner=ScannerConfig(enabled=False),
        seeding=SeedingConfig(enabled=False),
        buckets=(BucketConfig(name="data", backend="local", path=str(data)),),
    )
    d: Daemon = await nursery.start(lambda task_status: serve(config, task_status=task_status))
    yield d


def _request(host: str, port: int, path: str) -> tuple[int, bytes, float]:
    """One GET from 127.0.0.3 on a new connection: status, body, seconds."""
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=30, source_address=("127.0.0.3", 0))
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read(), time.monotonic() - started
    finally:
        conn.close()


async def _slowloris(host: str, port: int) -> trio.Process:
    return await trio.lowlevel.open_process(
        [sys.executable, str(SLOWLORIS), "--host", host, "--port", str(port), "--bind",
         "127.0.0.2", "--connections", "1100", "--interval", "0.5", "--duration",
         str(DURATION)],
        stdout=subprocess.PIPE,
    )


async def _report(proc: trio.Process) -> dict:
    assert proc.stdout is not None
    out = b""
    with trio.fail_after(DURATION + 20):
        while chunk := await proc.stdout.receive_some(65536):
            out += chunk
        await proc.wait()
    return json.loads(out)


async def test_slowloris_cannot_starve_normal_clients(daemon: Daemon) -> None:
    assert daemon.bound is not None and daemon.bound.tracker_http is not None
    s3_host, s3_port = daemon.bound.s3
    tr_host, tr_port = daemon.bound.tracker_http
    status, torrent, _ = await trio.to_thread.run_sync(
        _request, s3_host, s3_port, "/data/file.bin?torrent")
    assert status == 200
    info_hash = hashlib.sha1(bencode.encode(bencode.decode(torrent)[b"info"])).digest()
    announce = (f"/announce?info_hash={quote_from_bytes(info_hash)}"
                f"&peer_id={'-XX0001-' + 'a' * 12}&port=6881&uploaded=0&downloaded=0&left=0")

    procs = [await _slowloris(s3_host, s3_port), await _slowloris(tr_host, tr_port)]
    try:
        started = time.monotonic()
        answers: list[tuple[str, int, bytes, float]] = []
        while time.monotonic() - started < DURATION - 1:  # bounded: the attack's length
            status, body, took = await trio.to_thread.run_sync(
                _request, s3_host, s3_port, "/data/file.bin?torrent")
            answers.append(("s3", status, body, took))
            status, body, took = await trio.to_thread.run_sync(
                _request, tr_host, tr_port, announce)
            answers.append(("tracker", status, body, took))
            await trio.sleep(0.05)
        reports = [await _report(p) for p in procs]
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
    assert len(answers) >= 10
    for where, status, body, took in answers:
        assert status == 200, (where, body[:200])
        assert took < ANSWER_BOUND, (where, took)
        if where == "s3":
            assert body == torrent
        else:
            assert b"interval" in body, body[:200]
    for report in reports:
        # Every slowloris connection was admitted (evicting the same address's older
        # ones) and every one was closed by the server: evicted, or past its head deadline
        # counted from its start although it sent a byte every 0.5 s.
        assert report["opened"] >= 1000, report
        assert report["open_at_end"] == 0, report
        assert report["max_life"] < HEADER_TIMEOUT + SWEEP_SLACK, report
