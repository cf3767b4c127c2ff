"""Small helpers shared by tests: a free loopback port, a bounded poller, a pass-through
store to subclass, a catalog listener that records, a catalog file of the old schema, catalog
entries with well-formed torrents of made-up bytes, raw HTTP exchanges, and libtorrent peer
processes (tests/peers/lt_peer.py) read through their JSON events."""

from __future__ import annotations

import json
import random
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

LT_PEER = Path(__file__).resolve().parent / "peers" / "lt_peer.py"

# The catalog as the daemon wrote it before it recorded object versions (schema 1).
CATALOG_SCHEMA_1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
CREATE TABLE torrents (
    bucket TEXT NOT NULL, key TEXT NOT NULL, slot TEXT NOT NULL, etag TEXT NOT NULL,
    size INTEGER NOT NULL, last_modified REAL NOT NULL, torrent BLOB NOT NULL,
    info_hash_v1 BLOB, info_hash_v2 BLOB, info_hash_v2_20 BLOB, piece_length INTEGER NOT NULL,
    format TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (bucket, key, slot)
) WITHOUT ROWID;
CREATE INDEX torrents_v1 ON torrents (info_hash_v1);
CREATE INDEX torrents_v2_20 ON torrents (info_hash_v2_20);
CREATE INDEX torrents_v2 ON torrents (info_hash_v2);
"""


def write_schema_1_catalog(path: Path, entries: Iterable[Any]) -> None:
    """A schema-1 catalog file at ``path`` holding ``entries`` (entry.Entry; their
    ``object_version`` has no column there and is lost)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executescript(CATALOG_SCHEMA_1)
            for e in entries:
                v2 = e.info_hash_v2
                conn.execute(
                    "INSERT INTO torrents VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (e.bucket, e.key, e.version_id or "", e.etag, e.size, e.last_modified,
                     e.torrent, e.info_hash_v1, v2, None if v2 is None else v2[:20],
                     e.piece_length, e.format, e.created_at))
    finally:
        conn.close()


def made_up_entry(bucket: str, key: str, size: int = 1000, *, hybrid: bool = False,
                  announce: str | None = "http://127.0.0.1:6969/announce",
                  webseed: str | None = None) -> Any:
    """A catalog.Entry whose torrent is well formed (links, info-hashes) but whose piece
    hashes are made up (zeros): for catalogs that no client downloads from."""
    from seeder.torrent import metainfo
    from seeder.torrent.entry import Entry

    plen = metainfo.piece_length_for(size)
    count = metainfo.num_pieces(size, plen)
    hashes = metainfo.PieceHashes(
        plen, bytes(20 * count),
        pieces_root=bytes(range(32)) if hybrid else None,
        piece_layer=bytes(32 * count) if hybrid and count > 1 else None,
    )
    torrent = metainfo.build_torrent(
        bucket=bucket, key=key, size=size, hashes=hashes, announce=announce,
        announce_list=[[announce]] if announce else None,
        url_list=[webseed] if webseed else None, created_by="test",
    )
    ih = metainfo.info_hashes(torrent)
    return Entry(bucket=bucket, key=key, etag="e", version_id=None, size=size,
                 last_modified=0.0, torrent=torrent, info_hash_v1=ih.v1, info_hash_v2=ih.v2,
                 piece_length=plen, format="hybrid" if hybrid else "v1", created_at=0.0)


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` free for both TCP and UDP a moment ago, chosen below the kernel's
    ephemeral range.

    Only for programs that cannot bind port 0 themselves and report it (another process
    may take the port in between: callers that start a server should retry on failure).
    Why not the port 0 gives: that port comes from the ephemeral range, which every
    outgoing connection and every port-0 listener on the machine draws from too, so a
    daemon started on it a moment later found it taken (``Address already in use``, seen
    in test_seeding under a busy suite). Below the range only other callers of this
    function compete, at random over thousands of ports. A port this process was handed
    before is not handed out again: a caller that picks several before starting anything
    (a cluster's nodes, four ports each) gets distinct ones (two nodes of a test were once
    handed the same metrics port: the second exited, and its readiness check was answered
    by the first).
    """
    low, _ = _ephemeral_range()
    top = max(low, _PORT_FLOOR + 1024)
    if len(_HANDED) > (top - _PORT_FLOOR) // 2:  # bounded: long forgotten by now
        _HANDED.clear()
    rng = random.SystemRandom()
    for _ in range(200):  # bounded: nearly every try succeeds at the first
        port = rng.randrange(_PORT_FLOOR, top)
        if port not in _HANDED and _bindable(host, port):
            _HANDED.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # a crowded range: any
        s.bind((host, 0))
        return s.getsockname()[1]


_PORT_FLOOR = 20000  # above the well-known and registered ports most services take
_HANDED: set[int] = set()  # the ports free_port gave this process


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _bindable(host: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def wait_until(
    predicate: Callable[[], bool], deadline: float, *, interval: float = 0.02, what: str = "",
    seen: Callable[[], object] | None = None,
) -> None:
    """Poll ``predicate`` until it returns true or ``deadline`` seconds have passed.

    Raises TimeoutError (naming ``what``, and ``seen()``: what the last poll observed, so a
    failure explains itself) at the deadline. Exceptions from ``predicate`` propagate. The
    loop is bounded by the deadline; ``interval`` only spaces the polls.
    """
    end = time.monotonic() + deadline
    while True:
        if predicate():
            return
        if time.monotonic() >= end:
            last = "" if seen is None else f"; last seen: {seen()!r}"
            raise TimeoutError(f"not true within {deadline} s: {what or predicate!r}{last}")
        time.sleep(interval)


class DelegatingStore:
    """A real store passed through unchanged: subclass it and override what a test counts or
    breaks. It offers no blocking reader, so hashing goes through ``read`` (counted)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.bucket = inner.bucket

    async def head(self, key: str, version_id: str | None = None):
        return await self.inner.head(key, version_id)

    def list(self):
        return self.inner.list()

    async def read(self, info, start: int, length: int) -> bytes:
        return await self.inner.read(info, start, length)

    def stream(self, info, start: int, length: int, chunk: int = 262144):
        return self.inner.stream(info, start, length, chunk)

    def origin_url(self, key: str) -> str | None:
        return self.inner.origin_url(key)

    def presigned_url(self, key: str, expires: int, version_id: str | None = None) -> str | None:
        return self.inner.presigned_url(key, expires, version_id)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Recorder:
    """A TorrentService listener recording what it was told; ``wait_until`` waits on it."""

    def __init__(self) -> None:
        self.added: list = []
        self.removed: list = []
        self.relinked: list = []
        self.changed = trio.Event()

    def torrent_added(self, entry) -> None:
        self.added.append(entry)
        self.changed.set()

    def torrent_removed(self, entry) -> None:
        self.removed.append(entry)
        self.changed.set()

    def torrent_relinked(self, entry) -> None:
        self.relinked.append(entry)
        self.changed.set()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        with trio.fail_after(30):
            while not predicate():
                self.changed = trio.Event()
                await self.changed.wait()


@asynccontextmanager
async def torrent_service(
    catalog_path: Path, stores: dict[str, Any], config: Any, **kw: Any
) -> AsyncIterator[tuple[Any, Recorder]]:
    """A TorrentService over ``stores`` and a new catalog at ``catalog_path`` (``kw``: its
    other keyword arguments), running in its own nursery with a Recorder listening; yields
    (service, recorder). On exit: cancelled, then the stores and the catalog closed."""
    from seeder.torrent.catalog import Catalog
    from seeder.torrent.service import TorrentService

    catalog = Catalog.open(catalog_path)
    rec = Recorder()
    service = TorrentService(catalog, stores, config, listeners=[rec], **kw)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            yield service, rec
            nursery.cancel_scope.cancel()
    finally:
        for store in stores.values():
            await store.aclose()
        catalog.close()


async def read_all(stream: trio.SocketStream, deadline: float = 5.0) -> bytes:
    """Everything the peer sends until it closes (raises trio.TooSlowError past ``deadline``)."""
    out = bytearray()
    with trio.fail_after(deadline):
        while chunk := await stream.receive_some(65536):
            out += chunk
    return bytes(out)


async def exchange(host: str, port: int, raw: bytes) -> bytes:
    """Send ``raw`` on a new TCP connection and read until the server closes it."""
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(raw)
    return await read_all(stream)


@dataclass
class Peer:
    """A running lt_peer.py and the JSON events it printed so far."""

    proc: trio.Process
    events: list[dict[str, Any]] = field(default_factory=list)
    _buf: bytes = b""

    async def next_event(self) -> dict[str, Any]:
        while b"\n" not in self._buf:
            assert self.proc.stdout is not None
            chunk = await self.proc.stdout.receive_some(65536)
            if not chunk:
                raise AssertionError(f"lt_peer exited ({self.proc.returncode}): {self.events}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        event = json.loads(line)
        self.events.append(event)
        return event

    async def stop(self) -> int:
        """Terminate the process by PID (kill after 10 s) and return its exit code."""
        with trio.CancelScope(shield=True):
            if self.proc.returncode is None:
                self.proc.terminate()
                with trio.move_on_after(10):
                    return await self.proc.wait()
                self.proc.kill()
            return await self.proc.wait()

    async def until(self, kind: str) -> dict[str, Any]:
        """The next event of ``kind``; AssertionError on an ``error`` event."""
        while True:
            event = await self.next_event()
            if event["event"] == "error":
                raise AssertionError(f"lt_peer error: {event}")
            if event["event"] == kind:
                return event


@asynccontextmanager
async def lt_peer(*args: str) -> AsyncIterator[Peer]:
    """Start tests/peers/lt_peer.py with ``args``; terminate it by PID on the way out."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(LT_PEER), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    peer = Peer(proc)
    try:
        yield peer
    finally:
        await peer.stop()
        with trio.CancelScope(shield=True):
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    await stream.aclose()


async def lt_download(torrent: bytes, workdir: Path, bind: str, timeout: float,
                      *extra: str) -> dict[str, Any]:
    """Download ``torrent`` with an lt_peer.py process bound to ``bind`` (its .torrent file
    and save dir under ``workdir``); its ``finished`` event (sha1, bytes per source, ...)."""
    workdir.mkdir(parents=True, exist_ok=True)
    tpath = workdir / "client.torrent"
    tpath.write_bytes(torrent)
    async with lt_peer(
        "--torrent", str(tpath), "--save-dir", str(workdir / "data"),
        "--bind", bind, "--timeout", str(timeout), *extra,
    ) as peer:  # fmt: skip
        finished = await peer.until("finished")
        kinds = [e["event"] for e in peer.events]
        # "complete" (what the WAN lab times) comes first, then the flush and the read-back
        assert kinds[-2:] == ["complete", "finished"], kinds
        return finished


def resume_keys(state_dir: Path) -> set[str]:
    """The seed keys with resume data in ``state_dir``'s resume.sqlite3 (none: empty)."""
    path = state_dir / "resume.sqlite3"
    if not path.exists():
        return set()
    conn = sqlite3.connect(path)
    try:
        return {k for (k,) in conn.execute("SELECT key FROM resume")}
    finally:
        conn.close()
