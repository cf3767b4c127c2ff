"""A libtorrent peer in its own process, for tests: download (or seed) one torrent and report.

Usage::

    python tests/peers/lt_peer.py (--torrent PATH | --magnet URI) --save-dir DIR \
        --bind 127.0.0.2 [--seed] [--peer HOST:PORT ...] [--timeout 90] [--no-ssrf] [--stay]

Stdout carries one JSON object per line, flushed as written (nothing else goes to stdout;
libtorrent's and Python's complaints go to stderr):

- ``{"event": "listening", "port": N}`` once the listen socket on ``--bind`` is up.
- ``{"event": "metadata", "name": "...", "size": N}`` (``--magnet`` only) once the torrent's
  metadata came from a peer (BEP 9).
- ``{"event": "progress", "progress": 0.42, "peers": 3, "seeds": 1, "download_rate": B/s,
  "upload_rate": B/s, "state": "downloading"}`` at most twice a second, only while not complete.
- ``{"event": "complete"}`` as soon as libtorrent reports every piece there (before the
  flush and the read-back below: the time a user sees the download done).
- ``{"event": "finished", "sha1": HEX, "bytes": N, "web_seed_bytes": N, "peer_bytes": N,
  "unattributed_bytes": N, "uploaded": N}`` once every piece is there. ``sha1`` is over
  the files' bytes read back from disk, concatenated in torrent order (a single-file
  torrent: the file), after libtorrent flushed its write buffers. The three
  ``*_bytes`` split the blocks this peer downloaded (each block once; data already on disk
  is not counted) by source: the torrent's web seed servers (url-list / httpseeds hosts,
  resolved at start), BitTorrent peers, or unknown (rare: a block whose delivery alert
  libtorrent dropped and that was requested from both kinds). See `BlockMeter`.
- ``{"event": "stopped", "uploaded": N}`` when a ``--seed``/``--stay`` peer is told to stop.
- ``{"event": "error", "message": "..."}`` then exit status 1: timeout, bad torrent, file
  error, or (``--seed``) data on disk that does not match the torrent.

Without ``--seed``/``--stay`` the process exits 0 right after ``finished``. With either, it
keeps seeding until SIGTERM/SIGINT, or EOF on stdin when stdin is a pipe (so a test that
dies takes its peers with it; stdin from /dev/null is ignored), or its parent process dies.
Then it prints ``stopped`` and exits 0.

``--timeout`` bounds the time to reach ``finished`` (seeders too: checking the data on disk).
``--peer`` connects directly to the given peers (re-dialled every 2 s while none is connected),
in addition to whatever the torrent's trackers and web seeds give.

Settings: DHT, LSD, UPnP, NAT-PMP off; TCP only (no uTP) so that loopback tests see plain
connections; listen on ``<bind>:0`` and dial out from ``<bind>``; several connections per IP
allowed; ``--no-ssrf`` turns off libtorrent's SSRF mitigation (needed for a web seed URL with
a query string on loopback).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import select
import signal
import socket
import stat
import sys
import time
import urllib.parse
import warnings
from pathlib import Path
from typing import Any

import libtorrent as lt

PROGRESS_EVERY = 0.5  # seconds between progress lines (at most 2/s)
REDIAL_EVERY = 2.0  # seconds between re-dials of --peer addresses while unconnected
LISTEN_DEADLINE = 10.0  # seconds to get a listen socket
FLUSH_DEADLINE = 30.0  # seconds for libtorrent to write its buffers out
ALERT_WAIT_MS = 100  # one wait_for_alert slice; every loop turn is bounded by the deadlines
READ_CHUNK = 1 << 20
BLOCK_SIZE = 16 * 1024  # libtorrent's request size: block_finished_alert is per block
CHECKING = (
    lt.torrent_status.checking_files,
    lt.torrent_status.checking_resume_data,
    lt.torrent_status.queued_for_checking,
)
FATAL_ALERTS = (
    lt.file_error_alert,
    lt.torrent_error_alert,
    lt.metadata_failed_alert,
    lt.fastresume_rejected_alert,
)

_STATE_NAMES = {
    0: "queued_for_checking",
    1: "checking_files",
    2: "downloading_metadata",
    3: "downloading",
    4: "finished",
    5: "seeding",
    6: "allocating",
    7: "checking_resume_data",
}


def emit(event: str, **fields: Any) -> None:
    """Write one JSON line to stdout and flush it."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--torrent", type=Path)
    source.add_argument("--magnet", metavar="URI", help="start from a magnet link alone")
    p.add_argument("--save-dir", required=True, type=Path)
    p.add_argument("--bind", required=True, help="local IP to listen on and dial from")
    p.add_argument("--seed", action="store_true", help="data is in --save-dir; seed it")
    p.add_argument("--peer", action="append", default=[], metavar="HOST:PORT")
    p.add_argument("--timeout", type=float, default=90.0)
    p.add_argument("--no-ssrf", action="store_true", help="turn off SSRF mitigation")
    p.add_argument("--stay", action="store_true", help="keep seeding after finishing")
    return p.parse_args(argv)


def parse_hostport(text: str) -> tuple[str, int]:
    """``"127.0.0.1:6881"`` or ``"[::1]:6881"`` -> (host, port); ValueError otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not HOST:PORT: {text!r}")
    host = host.removeprefix("[").removesuffix("]")
    n = int(port)
    if not 0 < n < 65536:
        raise ValueError(f"port out of range: {text!r}")
    return host, n


def session_settings(bind: str, *, ssrf: bool) -> dict[str, Any]:
    """The lt.session settings dict for a test peer bound to ``bind``."""
    listen = f"[{bind}]:0" if ":" in bind else f"{bind}:0"
    return {
        "listen_interfaces": listen,
        "outgoing_interfaces": bind,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_ip_notifier": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "allow_multiple_connections_per_ip": True,
        "ssrf_mitigation": ssrf,
        "user_agent": "s3torrent-test-peer/libtorrent-" + lt.__version__,
        "alert_mask": lt.alert_category.error
        | lt.alert_category.status
        | lt.alert_category.storage
        | lt.alert_category.block_progress,
    }


def files_sha1(ti: lt.torrent_info, save_dir: Path) -> tuple[str, int]:
    """SHA-1 (hex) and length of the torrent's files read back from ``save_dir``, in order.

    Pad files (BEP 47) are skipped: they are not content.
    """
    with warnings.catch_warnings():
        # files() is deprecated in 2.x Python bindings but has no replacement there yet.
        warnings.simplefilter("ignore", DeprecationWarning)
        fs = ti.files()
    h = hashlib.sha1()
    total = 0
    for i in range(fs.num_files()):
        if fs.file_flags(i) & lt.file_storage.flag_pad_file:
            continue
        with open(save_dir / fs.file_path(i), "rb") as f:
            while chunk := f.read(READ_CHUNK):
                h.update(chunk)
                total += len(chunk)
    return h.hexdigest(), total


def flush(ses: lt.session, handle: lt.torrent_handle, meter: BlockMeter) -> bool:
    """Wait until libtorrent's write buffers for `handle` are on disk (pieces can pass their
    hash check before the bytes are written); False at FLUSH_DEADLINE."""
    handle.flush_cache()
    deadline = time.monotonic() + FLUSH_DEADLINE
    while time.monotonic() < deadline:
        ses.wait_for_alert(ALERT_WAIT_MS)
        flushed = False
        for a in ses.pop_alerts():
            flushed |= isinstance(a, lt.cache_flushed_alert) and a.handle == handle
            on_alert(a, meter)
        if flushed:
            return True
    return False


def on_alert(a: lt.alert, meter: BlockMeter) -> str | None:
    """Account for one alert; a message when it is fatal to the download."""
    if isinstance(a, lt.block_finished_alert):
        meter.on_finished(a)
    elif isinstance(a, lt.block_downloading_alert):
        meter.on_requested(a)
    elif isinstance(a, FATAL_ALERTS):
        return a.message()
    elif a.category() & lt.alert_category.error:
        print(f"lt_peer: {a.what()}: {a.message()}", file=sys.stderr, flush=True)
    return None


class BlockMeter:
    """Payload blocks downloaded, attributed to web seeds or to BitTorrent peers.

    A block's source is the peer endpoint of its block_finished_alert: a web seed when the
    endpoint is the address of one of the torrent's url-list (BEP 19) / httpseeds (BEP 17)
    servers (no BitTorrent peer can listen on that address and port). libtorrent drops
    block_finished_alerts whose disk write completes after the torrent became a seed, so a
    block without one is attributed by where it was requested (block_downloading_alert) if
    that was one kind of source only, else counted as unattributed.
    """

    WEB, PEER = 1, 2

    def __init__(self, ti: lt.torrent_info | None, web: set[tuple[str, int]]) -> None:
        self.ti = ti  # set once known (a magnet download: when the metadata arrives)
        self._web = web
        self._requested: dict[tuple[int, int], int] = {}  # block -> kinds asked (bitmask)
        self._finished: dict[tuple[int, int], int] = {}  # block -> kind that delivered

    def _kind(self, endpoint: Any) -> int:
        return self.WEB if (endpoint[0], endpoint[1]) in self._web else self.PEER

    def on_requested(self, a: lt.block_downloading_alert) -> None:
        block = (int(a.piece_index), int(a.block_index))
        self._requested[block] = self._requested.get(block, 0) | self._kind(a.endpoint)

    def on_finished(self, a: lt.block_finished_alert) -> None:
        self._finished[(int(a.piece_index), int(a.block_index))] = self._kind(a.endpoint)

    def _size(self, block: tuple[int, int]) -> int:
        piece, index = block
        assert self.ti is not None  # no block arrives before the metadata
        return max(0, min(BLOCK_SIZE, self.ti.piece_size(piece) - index * BLOCK_SIZE))

    def totals(self) -> tuple[int, int, int]:
        """(web seed bytes, peer bytes, unattributed bytes)."""
        out = {self.WEB: 0, self.PEER: 0, 0: 0}
        for block in self._requested.keys() | self._finished.keys():
            kind = self._finished.get(block, self._requested.get(block, 0))
            out[kind if kind in (self.WEB, self.PEER) else 0] += self._size(block)
        return out[self.WEB], out[self.PEER], out[0]


def web_seed_endpoints(torrent: bytes) -> set[tuple[str, int]]:
    """(ip, port) of every web seed server named by the torrent (resolved now)."""
    try:
        meta = lt.bdecode(torrent)
    except RuntimeError:
        return set()
    urls: list[bytes] = []
    for field in (b"url-list", b"httpseeds"):
        value = meta.get(field) if isinstance(meta, dict) else None
        if isinstance(value, bytes):
            urls.append(value)
        elif isinstance(value, list):
            urls.extend(u for u in value if isinstance(u, bytes))
    return url_endpoints([u.decode("utf-8", "replace") for u in urls])


def url_endpoints(urls: list[str]) -> set[tuple[str, int]]:
    """(ip, port) of the servers of ``urls`` (resolved now)."""
    endpoints: set[tuple[str, int]] = set()
    for raw in urls:
        url = urllib.parse.urlsplit(raw)
        if not url.hostname:
            continue
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(url.hostname, port, proto=socket.IPPROTO_TCP)
        except OSError:
            continue
        endpoints.update((str(info[4][0]), port) for info in infos)
    return endpoints


class StopSignal:
    """Set by SIGTERM/SIGINT, stdin EOF (when stdin is a pipe or socket) or parent death."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._parent = os.getppid()
        mode = os.fstat(0).st_mode if _has_stdin() else 0
        self._watch_stdin = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.reason = signal.Signals(signum).name

    def poll(self) -> str | None:
        if self.reason is None and os.getppid() != self._parent:
            self.reason = "parent exited"
        if self.reason is None and self._watch_stdin:
            ready, _, _ = select.select([0], [], [], 0)
            if ready and not os.read(0, 4096):
                self.reason = "stdin EOF"
        return self.reason


def _has_stdin() -> bool:
    try:
        os.fstat(0)
    except OSError:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    stop = StopSignal()
    try:
        peers = [parse_hostport(p) for p in args.peer]
        if args.magnet is not None:
            params = lt.parse_magnet_uri(args.magnet)
            ti = None
            meter = BlockMeter(None, url_endpoints(list(params.url_seeds)))
        else:
            torrent = args.torrent.read_bytes()
            ti = lt.torrent_info(torrent)
            params = lt.add_torrent_params()
            params.ti = ti
            meter = BlockMeter(ti, web_seed_endpoints(torrent))
    except (ValueError, RuntimeError, OSError) as e:
        emit("error", message=f"bad arguments: {e}")
        return 1
    args.save_dir.mkdir(parents=True, exist_ok=True)

    ses = lt.session(session_settings(args.bind, ssrf=not args.no_ssrf))
    deadline = time.monotonic() + LISTEN_DEADLINE
    while not ses.is_listening() or ses.listen_port() == 0:
        if time.monotonic() > deadline:
            emit("error", message=f"could not listen on {args.bind}")
            return 1
        ses.wait_for_alert(ALERT_WAIT_MS)
        for a in ses.pop_alerts():
            if isinstance(a, lt.listen_failed_alert):
                emit("error", message=f"listen failed: {a.message()}")
                return 1
    emit("listening", port=ses.listen_port())

    params.save_path = str(args.save_dir)
    handle = ses.add_torrent(params)
    for host, port in peers:
        handle.connect_peer((host, port))
    deadline = time.monotonic() + args.timeout
    next_progress = 0.0
    next_redial = time.monotonic() + REDIAL_EVERY
    finished = False
    while True:
        ses.wait_for_alert(ALERT_WAIT_MS)
        for a in ses.pop_alerts():
            fatal = on_alert(a, meter)
            if fatal is not None:
                emit("error", message=fatal)
                return 1

        now = time.monotonic()
        reason = stop.poll()
        if reason is not None and (finished or not (args.seed or args.stay)):
            st = handle.status()
            emit("stopped", reason=reason, uploaded=st.total_payload_upload)
            return 0
        if reason is not None:
            emit("error", message=f"stopped ({reason}) before finishing")
            return 1
        if finished:
            continue

        st = handle.status()
        if ti is None and st.has_metadata:
            ti = meter.ti = handle.torrent_file()
            emit("metadata", name=ti.name(), size=ti.total_size())
        checking = st.state in CHECKING
        complete = st.is_seeding or (st.is_finished and not checking and st.progress >= 1.0)
        if ti is not None and complete:
            emit("complete")
            if not flush(ses, handle, meter):
                emit("error", message="disk cache not flushed in time")
                return 1
            try:
                digest, nbytes = files_sha1(ti, args.save_dir)
            except OSError as e:
                emit("error", message=f"cannot read back the data: {e}")
                return 1
            web, peer, unattributed = meter.totals()
            emit(
                "finished",
                sha1=digest,
                bytes=nbytes,
                web_seed_bytes=web,
                peer_bytes=peer,
                unattributed_bytes=unattributed,
                uploaded=st.total_payload_upload,
            )
            if not (args.seed or args.stay):
                return 0
            finished = True
            continue
        if args.seed and not checking and st.state == lt.torrent_status.downloading:
            emit("error", message=f"--seed but data on disk is incomplete ({st.progress:.3f})")
            return 1
        if now >= deadline:
            emit("error", message=f"timeout after {args.timeout} s at progress {st.progress:.3f}")
            return 1
        if peers and now >= next_redial:
            if st.num_peers == 0:
                for host, port in peers:
                    handle.connect_peer((host, port))
            next_redial = now + REDIAL_EVERY
        if now >= next_progress:
            emit(
                "progress",
                progress=round(st.progress, 4),
                peers=st.num_peers,
                seeds=st.num_seeds,
                download_rate=st.download_payload_rate,
                upload_rate=st.upload_payload_rate,
                state=_STATE_NAMES.get(int(st.state), str(st.state)),
            )
            next_progress = now + PROGRESS_EVERY


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
