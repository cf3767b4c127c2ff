"""Seeding end to end: the daemon in-process (moto bucket, embedded tracker, libtorrent
session, web seed in proxy mode) and four libtorrent downloaders (tests/peers/lt_peer.py
processes bound to 127.0.0.2..5) that get the torrent through GetObjectTorrent and find each
other and the daemon through the tracker only."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from tests.helpers import free_port, lt_download
from tracker import bencode

DEADLINE = 50.0  # s for one whole case: 2 busy CI cores
SIZE = 3 * 1024 * 1024 + 4321  # 13 pieces of 256 KiB, a short last one
CLIENTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
KEY = "dir/object.bin"
PROXY = "127.0.0.9"  # server.trusted_proxies: a reverse proxy's address


@dataclass
class Env:
    daemon: Daemon
    url: str  # the S3 endpoint
    tracker: str  # announce URL
    bucket: str
    moto: Any
    tmp: Path


async def start_daemon(
    tmp: Path, moto: Any, nursery: trio.Nursery, *, seeding: bool, budget: float = 2.0
) -> Env:
    bucket = moto.create_bucket(prefix="seed")
    # The torrent's announce and url-list are fixed at generation: both ports chosen first.
    s3_port, tracker_port = free_port(), free_port()
    public = f"http://127.0.0.1:{s3_port}"
    announce = f"http://127.0.0.1:{tracker_port}/announce"
    config = Config(
        server=ServerConfig(
            listen=HostPort("127.0.0.1", s3_port), public_url=public, trusted_proxies=(PROXY,)
        ),
        tracker=TrackerConfig(
            listen=HostPort("127.0.0.1", tracker_port), udp_listen=None, public_url=announce,
            interval=60, min_interval=1,
        ),
        metrics=MetricsConfig(listen=None),
        state=StateConfig(dir=str(tmp / "state")),
        scanner=ScannerConfig(enabled=False),
        seeding=SeedingConfig(
            enabled=seeding, listen_interfaces="127.0.0.1:0", ssrf_mitigation=False,
            swarm_budget=budget,
        ),
        buckets=(
            BucketConfig(
                name=bucket, backend="s3", endpoint_url=moto.endpoint_url, region="us-east-1",
                access_key="testing", secret_key="testing", webseed="proxy",
            ),
        ),
    )
    daemon: Daemon = await nursery.start(lambda task_status: serve(config, task_status=task_status))
    return Env(daemon, public, announce, bucket, moto, tmp)


def put(env: Env, data: bytes) -> None:
    env.moto.client().put_object(Bucket=env.bucket, Key=KEY, Body=data, ACL="public-read")


def get_torrent(env: Env) -> bytes:
    url = f"{env.url}/{env.bucket}/{urllib.parse.quote(KEY)}?torrent"
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
        return r.read()


def announce_failure(env: Env, info_hash: bytes) -> bytes | None:
    """The tracker's failure reason for an announce of ``info_hash`` (None: accepted)."""
    query = urllib.parse.urlencode({
        "info_hash": info_hash, "peer_id": b"-TS0001-" + b"x" * 12, "port": 6881,
        "uploaded": 0, "downloaded": 0, "left": 0, "compact": 1,
    })
    with urllib.request.urlopen(f"{env.tracker}?{query}", timeout=10) as r:
        return bencode.decode(r.read()).get(b"failure reason")


async def swarm(env: Env, torrent: bytes, tag: str) -> list[dict[str, Any]]:
    """Run the four downloaders at once; their ``finished`` events."""
    results: list[dict[str, Any]] = []

    async def one(bind: str) -> None:
        results.append(await lt_download(torrent, env.tmp / f"{tag}-{bind}", bind, DEADLINE))

    async with trio.open_nursery() as nursery:
        for bind in CLIENTS:
            nursery.start_soon(one, bind)
    return results


def served(env: Env) -> float:
    return env.daemon.registry.get_sample_value(
        "seeder_webseed_served_bytes_total", {"bucket": env.bucket}
    ) or 0.0


def started_announces(env: Env) -> float:
    return env.daemon.registry.get_sample_value(
        "tracker_announces_total", {"event": "started", "transport": "http"}
    ) or 0.0


def check(results: list[dict[str, Any]], data: bytes) -> None:
    want = hashlib.sha1(data).hexdigest()
    assert sorted(r["sha1"] for r in results) == [want] * len(CLIENTS)
    assert all(r["bytes"] == len(data) for r in results)


@pytest.fixture
async def seeding_env(tmp_path: Path, moto_server: Any, nursery: trio.Nursery) -> Env:
    return await start_daemon(tmp_path, moto_server, nursery, seeding=True)


async def test_a_seeding_from_the_cache(seeding_env: Env) -> None:
    env = seeding_env
    data = os.urandom(SIZE)
    put(env, data)
    with trio.fail_after(DEADLINE):
        torrent = await trio.to_thread.run_sync(get_torrent, env)
        entry = env.daemon.torrents.lookup_cached(env.bucket, KEY)
        assert entry is not None
        session = env.daemon.seeding.session
        st = await session.wait_complete(entry.seed_key)
        assert st.from_cache  # the generator streamed it into the cache: no second read
        check(await swarm(env, torrent, "a"), data)
        # Every client found the swarm through the daemon's tracker (the session too).
        while started_announces(env) < len(CLIENTS) + 1:
            await trio.sleep(0.05)  # polled; bounded by fail_after
        st = session.status(entry.seed_key)
        assert st is not None and st.downloaded == 0


async def test_b_not_in_cache_session_fetches_through_the_web_seed(seeding_env: Env) -> None:
    env = seeding_env
    data = os.urandom(SIZE)
    put(env, data)
    with trio.fail_after(DEADLINE):
        await trio.to_thread.run_sync(get_torrent, env)
        entry = env.daemon.torrents.lookup_cached(env.bucket, KEY)
        assert entry is not None
        key = entry.seed_key
        seeding = env.daemon.seeding
        assert seeding.session.remove(key, delete_files=True)
        assert not seeding.cache.is_complete(key)

        torrent = await trio.to_thread.run_sync(get_torrent, env)  # on demand: re-added
        assert seeding.session.has(key)
        results, st = await _both(swarm(env, torrent, "b"), seeding.session.wait_complete(key))
        check(results, data)
        assert not st.from_cache and st.downloaded >= SIZE  # through the web seed (or peers)
        assert seeding.cache.is_complete(key)
        assert (seeding.cache.lookup(key) / "object.bin").read_bytes() == data


async def test_c_session_stopped_clients_complete_from_the_web_seed_alone(
    tmp_path: Path, moto_server: Any, nursery: trio.Nursery
) -> None:
    env = await start_daemon(tmp_path, moto_server, nursery, seeding=False)
    assert env.daemon.seeding is None and env.daemon.api.gate is None
    data = os.urandom(SIZE)
    put(env, data)
    with trio.fail_after(DEADLINE):
        torrent = await trio.to_thread.run_sync(get_torrent, env)
        results = await swarm(env, torrent, "c")
    check(results, data)
    assert served(env) >= SIZE  # every byte came from the web seed at least once
    assert sum(r["web_seed_bytes"] for r in results) >= SIZE


async def test_d_overwritten_object_retires_the_old_torrent(seeding_env: Env) -> None:
    env = seeding_env
    put(env, os.urandom(SIZE))
    with trio.fail_after(DEADLINE):
        await trio.to_thread.run_sync(get_torrent, env)
        old = env.daemon.torrents.lookup_cached(env.bucket, KEY)
        assert old is not None and old.info_hash_v1 is not None
        session = env.daemon.seeding.session
        assert session.has(old.seed_key)
        assert await trio.to_thread.run_sync(announce_failure, env, old.info_hash_v1) is None

        data = os.urandom(SIZE - 1000)
        put(env, data)
        torrent = await trio.to_thread.run_sync(get_torrent, env)
        new = env.daemon.torrents.lookup_cached(env.bucket, KEY)
        assert new is not None and new.info_hash_v1 != old.info_hash_v1
        failure = await trio.to_thread.run_sync(announce_failure, env, old.info_hash_v1)
        assert failure == b"unregistered torrent"
        assert not session.has(old.seed_key)
        assert session.has(new.seed_key)
        check(await swarm(env, torrent, "d"), data)


async def test_web_seed_yields_to_a_ready_swarm(seeding_env: Env) -> None:
    """With the session seeding the whole torrent and a peer connected to it, a second
    address asking the web seed for pieces another address just got is told busy (BEP 19
    503); the first finishes its piece, and unclaimed pieces are served to anyone."""
    env = seeding_env
    data = os.urandom(SIZE)
    with trio.fail_after(DEADLINE):
        entry, key, obj = await _complete_in_session(env, data)
        # No peer yet: the web seed serves everyone.
        assert (await trio.to_thread.run_sync(_get, obj, "bytes=0-16383", "127.0.0.7"))[0] == 206
        async with await _bt_handshake(env.daemon.bound.bittorrent_port, entry.info_hash_v1):
            await _swarm_ready(env, key)
            first = await trio.to_thread.run_sync(_get, obj, "bytes=262144-278527", "127.0.0.6")
            assert first[0] == 206 and first[2] == data[262144:278528]
            again = await trio.to_thread.run_sync(_get, obj, "bytes=278528-294911", "127.0.0.6")
            assert again[0] == 206  # the claimer finishes its piece
            other = await trio.to_thread.run_sync(_get, obj, "bytes=270000-270099", "127.0.0.7")
            assert other[0] == 503 and other[1].get("retry-after")
            assert b"<Code>ServiceUnavailable</Code>" in other[2]
            free = await trio.to_thread.run_sync(_get, obj, f"bytes={SIZE - 10}-", "127.0.0.7")
            assert free[0] == 206 and free[2] == data[-10:]  # unclaimed pieces: served
    assert served(env) == 16384 * 3 + 10  # bytes streamed, busy answers not counted


async def test_web_seed_gate_sees_clients_behind_a_trusted_proxy(
    seeding_env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Behind a reverse proxy every request comes from the proxy's address: the gate keys its
    claims by the client X-Forwarded-For names (right-most untrusted hop), only when the
    socket peer is a trusted proxy; the request log line names that client too."""
    env = seeding_env
    data = os.urandom(SIZE)
    caplog.set_level("DEBUG", logger="seeder.s3api.handlers")
    with trio.fail_after(DEADLINE):
        entry, key, obj = await _complete_in_session(env, data)

        def via_proxy(range_: str, xff: str, source: str = PROXY):
            return _get(obj, range_, source, {"X-Forwarded-For": xff})

        async with await _bt_handshake(env.daemon.bound.bittorrent_port, entry.info_hash_v1):
            await _swarm_ready(env, key)
            # Client A (a spoofed left part, then A as the proxy saw it) claims piece 1.
            a = await trio.to_thread.run_sync(
                via_proxy, "bytes=262144-278527", "203.0.113.66, 198.51.100.1"
            )
            assert a[0] == 206 and a[2] == data[262144:278528]
            # Client B through the same proxy: another client, so busy.
            b = await trio.to_thread.run_sync(via_proxy, "bytes=270000-270099", "198.51.100.2")
            assert b[0] == 503 and b"<Code>ServiceUnavailable</Code>" in b[2]
            # A again through the proxy: its own claim does not stop it.
            again = await trio.to_thread.run_sync(via_proxy, "bytes=278528-294911", "198.51.100.1")
            assert again[0] == 206
            # An untrusted peer claiming to be A is itself (127.0.0.7): busy.
            spoof = await trio.to_thread.run_sync(
                via_proxy, "bytes=270000-270099", "198.51.100.1", "127.0.0.7"
            )
            assert spoof[0] == 503
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("request ")]
    assert any(" from 198.51.100.1: GET " in line and line.endswith("-> 206") for line in lines)
    assert any(" from 198.51.100.2: GET " in line and line.endswith("-> 503") for line in lines)
    assert any(" from 127.0.0.7: GET " in line and line.endswith("-> 503") for line in lines)


async def _complete_in_session(env: Env, data: bytes) -> tuple[Any, str, str]:
    """Put ``data`` at KEY, get its torrent and wait until the daemon's session holds all of
    it: (catalog entry, seed key, the object's web seed URL on this server)."""
    put(env, data)
    await trio.to_thread.run_sync(get_torrent, env)
    entry = env.daemon.torrents.lookup_cached(env.bucket, KEY)
    assert entry is not None and entry.info_hash_v1 is not None
    key = entry.seed_key
    await env.daemon.seeding.session.wait_complete(key)
    return entry, key, f"{env.url}/{env.bucket}/{urllib.parse.quote(KEY)}"


async def _swarm_ready(env: Env, key: str) -> None:
    seeding = env.daemon.seeding
    while not seeding.swarm_ready(key, seeding.clock()):
        await trio.sleep(0.05)  # polled; bounded by the caller's fail_after


async def test_budget_spent_and_a_seed_connected_caps_the_upload(
    tmp_path: Path, moto_server: Any, nursery: trio.Nursery
) -> None:
    """Half a copy of budget: two peers connect, the web seed sends that half, then the
    peers say that together they hold every piece (each lacks some: libtorrent drops a
    seed's connection to a seed): the session caps the torrent at the trickle rate and the
    web seed answers busy to everyone; when the peers leave, the cap is lifted."""
    env = await start_daemon(tmp_path, moto_server, nursery, seeding=True, budget=0.5)
    data = os.urandom(SIZE)
    put(env, data)
    with trio.fail_after(DEADLINE):
        await trio.to_thread.run_sync(get_torrent, env)
        entry = env.daemon.torrents.lookup_cached(env.bucket, KEY)
        assert entry is not None and entry.info_hash_v1 is not None
        key = entry.seed_key
        session = env.daemon.seeding.session
        budget = env.daemon.seeding.budget
        budget.stall_after = 3600.0  # these peers never gain a piece
        budget.tail = 0.0  # and together lack only a copy (the tail is half of one)
        await session.wait_complete(key)
        obj = f"{env.url}/{env.bucket}/{urllib.parse.quote(KEY)}"
        port, ih = env.daemon.bound.bittorrent_port, entry.info_hash_v1
        pieces = -(-SIZE // entry.piece_length)
        async with await _bt_handshake(port, ih, b"-TS0001-idle-peer-0a") as a, \
                await _bt_handshake(port, ih, b"-TS0001-idle-peer-0b") as b:
            half = f"bytes=0-{SIZE // 2}"
            assert (await trio.to_thread.run_sync(_get, obj, half, "127.0.0.7"))[0] == 206
            for peer, held in ((a, range(0, pieces, 2)), (b, range(1, pieces, 2))):
                await peer.send_all(_bitfield(pieces, held))
            while session.throttle(key) is None:
                await trio.sleep(0.05)  # polled; bounded by fail_after
            throttle = session.throttle(key)
            assert throttle is not None
            assert throttle.rate == env.daemon.config.seeding.swarm_trickle_rate
            view = session.swarm_view(key)
            assert view is not None and view.peers == 2 and view.covered
            busy = await trio.to_thread.run_sync(_get, obj, "bytes=0-99", "127.0.0.7")
            assert busy[0] == 503  # even the address that had those pieces: the swarm has them
            tail = f"bytes={SIZE - 100}-"  # a piece nobody claimed from the web seed
            assert (await trio.to_thread.run_sync(_get, obj, tail, "127.0.0.6"))[0] == 503
        while session.throttle(key) is not None:
            await trio.sleep(0.05)  # the peers left: uncapped; polled, bounded by fail_after
        assert (await trio.to_thread.run_sync(_get, obj, tail, "127.0.0.6"))[0] == 206


async def test_an_open_ended_range_cut_short_does_not_spend_the_budget(
    tmp_path: Path, moto_server: Any, nursery: trio.Nursery
) -> None:
    """aria2 asks ``bytes=N-`` and hangs up early: the swarm budget counts the bytes that
    went to the socket, not the range granted (it counted the whole rest of the file and
    throttled a swarm that had got almost nothing); the pieces it never reached are free
    for the next client, and a range read whole counts whole."""
    env = await start_daemon(tmp_path, moto_server, nursery, seeding=True, budget=0.5)
    data = os.urandom(SIZE)
    with trio.fail_after(DEADLINE):
        entry, key, obj = await _complete_in_session(env, data)
        seeding = env.daemon.seeding
        async with await _bt_handshake(env.daemon.bound.bittorrent_port, entry.info_hash_v1):
            await _swarm_ready(env, key)
            head = await trio.to_thread.run_sync(_get_and_hang_up, obj, "bytes=0-", 16384)
            assert head == data[:16384]
            while seeding.gate.live():
                await trio.sleep(0.02)  # the handler saw the hang-up; polled, bounded
            seeding.tick(seeding.clock())
            spent = seeding.budget.spent(key)
            assert spent < SIZE // 4, spent  # promised: SIZE (two budgets); sent: little
            assert seeding.session.throttle(key) is None
            # Pieces past what went out are free for another address.
            rest = await trio.to_thread.run_sync(_get, obj, f"bytes={SIZE // 2}-", "127.0.0.7")
            assert rest[0] == 206 and rest[2] == data[SIZE // 2:]
            while seeding.gate.live():
                await trio.sleep(0.02)  # polled, bounded by fail_after
            seeding.tick(seeding.clock())
            assert seeding.budget.spent(key) - spent == SIZE - SIZE // 2  # read whole: counted


def _get_and_hang_up(url: str, range_: str, keep: int) -> bytes:
    """A ranged GET from 127.0.0.6 with a small receive buffer that reads ``keep`` body
    bytes and closes the connection (as aria2 does with ``bytes=N-``)."""
    import socket

    parts = urllib.parse.urlsplit(url)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.bind(("127.0.0.6", 0))
        sock.connect((parts.hostname, parts.port))
        sock.sendall(
            f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nRange: {range_}\r\n\r\n"
            .encode()
        )
        got = b""
        while b"\r\n\r\n" not in got or len(got.split(b"\r\n\r\n", 1)[1]) < keep:
            chunk = sock.recv(4096)
            assert chunk, "the web seed closed early"
            got += chunk
        head, body = got.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 206"), head
        return body[:keep]


def _bitfield(pieces: int, held: range) -> bytes:
    """A BitTorrent bitfield message (BEP 3) for ``held`` of ``pieces`` pieces."""
    bits = bytearray(-(-pieces // 8))
    for i in held:
        bits[i // 8] |= 0x80 >> (i % 8)
    return (1 + len(bits)).to_bytes(4, "big") + b"\x05" + bytes(bits)


async def test_a_lone_client_is_never_held_back_by_the_budget(
    tmp_path: Path, moto_server: Any, nursery: trio.Nursery
) -> None:
    """A budget far below one copy: a lone client still completes at full speed (the
    session holds pieces the client lacks until the end, so it never caps)."""
    env = await start_daemon(tmp_path, moto_server, nursery, seeding=True, budget=0.01)
    data = os.urandom(SIZE)
    put(env, data)
    with trio.fail_after(DEADLINE):
        torrent = await trio.to_thread.run_sync(get_torrent, env)
        result = await lt_download(torrent, tmp_path / "lone", CLIENTS[0], DEADLINE)
    assert result["sha1"] == hashlib.sha1(data).hexdigest()


async def _bt_handshake(
    port: int | None, info_hash: bytes, peer_id: bytes = b"-TS0001-idle-peer-01"
) -> trio.SocketStream:
    """A BitTorrent connection from 127.0.0.8 that completed its handshake (BEP 3) and
    then sits idle: a peer the session counts as connected."""
    assert port is not None
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.8", 0))
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    await stream.send_all(b"\x13BitTorrent protocol" + bytes(8) + info_hash + peer_id)
    got = b""
    while len(got) < 68:
        chunk = await stream.receive_some(68 - len(got))
        assert chunk, "the session closed the connection during the handshake"
        got += chunk
    assert got[28:48] == info_hash
    return stream


def _get(
    url: str, range_: str, source: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A ranged GET from the local address ``source`` (with ``headers`` added)."""
    import http.client

    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=30, source_address=(source, 0)
    )
    try:
        conn.request("GET", parts.path, headers={"Range": range_, **(headers or {})})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


async def _both(a: Any, b: Any) -> tuple[Any, Any]:
    out: list[Any] = [None, None]

    async def run(i: int, aw: Any) -> None:
        out[i] = await aw

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, 0, a)
        nursery.start_soon(run, 1, b)
    return out[0], out[1]



async def test_e_an_announce_is_demand(
    tmp_path: Path, moto_server: Any, nursery: trio.Nursery
) -> None:
    """A restarted daemon whose seed cache lost the object never sees GetObjectTorrent for
    it: a client that has the .torrent file announces, the announce puts the torrent in
    the session (fetched through the web seed), and the client completes."""
    data = os.urandom(SIZE)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as first:
            env = await start_daemon(tmp_path, moto_server, first, seeding=True)
            put(env, data)
            torrent = await trio.to_thread.run_sync(get_torrent, env)
            entry = env.daemon.torrents.lookup_cached(env.bucket, KEY)
            assert entry is not None and entry.info_hash_v1 is not None
            key = entry.seed_key
            await env.daemon.seeding.session.wait_complete(key)
            config = env.daemon.config
            first.cancel_scope.cancel()
        state = Path(config.state.dir)
        shutil.rmtree(state / "seeds")  # the seed cache is lost; the catalog is kept
        for suffix in ("", "-wal", "-shm"):  # and the resume data
            (state / f"resume.sqlite3{suffix}").unlink(missing_ok=True)
        daemon: Daemon = await nursery.start(
            lambda task_status: serve(config, task_status=task_status)
        )
        env.daemon = daemon
        seeding = daemon.seeding
        assert seeding is not None
        assert not seeding.session.has(key) and not seeding.cache.is_complete(key)
        assert seeding.announce_adds == 0

        result = await lt_download(torrent, tmp_path / "e-client", CLIENTS[0], DEADLINE)
        assert result["sha1"] == hashlib.sha1(data).hexdigest()
        # Added because of the client's announce (or its web seed requests, when they come
        # first: also demand) ...
        activations = sum(
            daemon.registry.get_sample_value("seeder_torrent_activations_total", {"reason": r})
            or 0 for r in ("announce", "webseed"))
        assert activations == 1 and seeding.announce_adds <= 1
        st = await seeding.session.wait_complete(key)
        assert not st.from_cache and seeding.cache.is_complete(key)
        assert daemon.registry.get_sample_value(  # ... not because of GetObjectTorrent
            "seeder_api_requests_total", {"operation": "GetObjectTorrent", "code": "200"}
        ) is None


# -- a second BitTorrent implementation: aria2 ------------------------------------------


def _metric(env: Env, name: str, labels: dict[str, str]) -> float:
    return env.daemon.registry.get_sample_value(name, labels) or 0.0


async def _aria2(env: Env, torrent: bytes | str, tag: str, bind: str) -> Path:
    """Download ``torrent`` (.torrent bytes, or a magnet URI) with aria2c bound to ``bind``
    (no DHT, LPD or PEX: the tracker and the web seed are its only sources); returns the
    downloaded file. aria2c exits once the download is complete (``--seed-time=0``);
    cancellation kills it (trio, by PID)."""
    aria2c = shutil.which("aria2c")
    if aria2c is None:
        pytest.skip("aria2c not installed (scripts/test.sh installs Debian's aria2)")
    if isinstance(torrent, str):
        tpath: Path | str = torrent
    else:
        tpath = env.tmp / f"{tag}.torrent"
        tpath.write_bytes(torrent)
    out = env.tmp / f"{tag}-aria2"
    cmd = [
        aria2c, f"--dir={out}", "--seed-time=0", "--enable-dht=false", "--enable-dht6=false",
        "--bt-enable-lpd=false", "--enable-peer-exchange=false", "--disable-ipv6=true",
        f"--interface={bind}", f"--listen-port={free_port()}", "--file-allocation=none",
        "--summary-interval=0", "--console-log-level=warn", "--bt-save-metadata=false",
        "--allow-overwrite=true", str(tpath),
    ]  # fmt: skip
    done = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr).decode(errors="replace")[-2000:]
    return out / Path(KEY).name


async def test_aria2_downloads_from_the_seed_it_finds_through_the_tracker(
    seeding_env: Env,
) -> None:
    """aria2 (not libtorrent) with the torrent minus its web seed (url-list is outside
    ``info``: same info-hash): the daemon's HTTP tracker is its only way to a source. It
    announces, connects to the daemon's libtorrent seed and completes from it; the
    tracker counts the download."""
    env = seeding_env
    data = os.urandom(SIZE)
    entry, key, _ = await _complete_in_session(env, data)
    with trio.fail_after(DEADLINE):
        meta = bencode.decode(await trio.to_thread.run_sync(get_torrent, env))
        assert meta.pop(b"url-list")  # it had one: this client must do without
        path = await _aria2(env, bencode.encode(meta), "aria2-seed", CLIENTS[0])
        assert path.read_bytes() == data
        http = {"transport": "http"}
        # aria2 announced (the session is the other "started") and said only "stopped"
        # when it finished: the tracker still counts its download (left went to 0).
        assert _metric(env, "tracker_announces_total", {"event": "started", **http}) == 2
        assert _metric(env, "tracker_announces_total", {"event": "stopped", **http}) == 1
        counts = env.daemon.tracker.swarms.scrape(entry.info_hash_v1)
        assert counts is not None and counts[1] == 1
        st = env.daemon.seeding.session.status(key)
        assert st is not None and st.uploaded >= SIZE  # every byte from the daemon's seed
        assert served(env) == 0


async def test_aria2_completes_from_the_web_seed_alone(
    tmp_path: Path, moto_server: Any, nursery: trio.Nursery
) -> None:
    """No session: aria2's only source is the BEP 19 web seed (it asks for
    ``bytes=X-<end>`` and hangs up early: FIELD-NOTES); the daemon serves every byte."""
    env = await start_daemon(tmp_path, moto_server, nursery, seeding=False)
    data = os.urandom(SIZE)
    put(env, data)
    with trio.fail_after(DEADLINE):
        torrent = await trio.to_thread.run_sync(get_torrent, env)
        path = await _aria2(env, torrent, "aria2-webseed", CLIENTS[1])
    assert path.read_bytes() == data
    assert served(env) >= SIZE
    # The early hang-ups cost the daemon nothing: it still answers.
    assert await trio.to_thread.run_sync(get_torrent, env) == torrent


# -- a third one: Transmission -------------------------------------------------------------


async def test_transmission_announces_and_completes_from_the_web_seed(
    tmp_path: Path, moto_server: Any, nursery: trio.Nursery
) -> None:
    """Transmission (it refuses peers on 127.0.0.0/8: FIELD-NOTES, so its only source here
    is the BEP 19 web seed, which it asks one piece per request) gets the torrent through
    GetObjectTorrent, announces to the daemon's HTTP tracker (started, then completed) and
    completes; the tracker counts the download."""
    cli = shutil.which("transmission-cli")
    if cli is None:
        pytest.skip("transmission-cli not installed (scripts/test.sh installs it)")
    env = await start_daemon(tmp_path, moto_server, nursery, seeding=False)
    data = os.urandom(SIZE)
    put(env, data)
    conf = tmp_path / "transmission"
    conf.mkdir()
    (conf / "settings.json").write_text(json.dumps({
        "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False,
        "port-forwarding-enabled": False, "rpc-enabled": False, "utp-enabled": False,
        "bind-address-ipv4": CLIENTS[2], "bind-address-ipv6": "::1",
        "peer-port": free_port(), "message-level": 1,
    }))  # fmt: skip
    done = tmp_path / "transmission-done"
    finish = tmp_path / "finish.sh"
    finish.write_text(f"#!/bin/sh\ntouch {done}\n")
    finish.chmod(0o755)
    out = tmp_path / "transmission-out"
    out.mkdir()
    with trio.fail_after(DEADLINE):
        torrent = await trio.to_thread.run_sync(get_torrent, env)
        tpath = tmp_path / "t.torrent"
        tpath.write_bytes(torrent)
        proc = await trio.lowlevel.open_process(
            [cli, "-g", str(conf), "-w", str(out), "-f", str(finish), str(tpath)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        http = {"transport": "http"}
        completed = {"event": "completed", **http}
        try:
            while not done.exists():
                await trio.sleep(0.1)  # polled; bounded by fail_after
            # Its "completed" announce follows the finish script, asynchronously.
            while _metric(env, "tracker_announces_total", completed) < 1:
                await trio.sleep(0.1)  # polled; bounded by fail_after
        finally:
            proc.terminate()  # it would seed on: stop it, by PID
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert (out / Path(KEY).name).read_bytes() == data
    assert served(env) >= SIZE
    assert _metric(env, "tracker_announces_total", {"event": "started", **http}) == 1
    assert _metric(env, "tracker_announces_total", completed) == 1
    entry = env.daemon.torrents.lookup_cached(env.bucket, KEY)
    assert entry is not None
    counts = env.daemon.tracker.swarms.scrape(entry.info_hash_v1)
    assert counts is not None and counts[1] == 1
