"""What libtorrent reports, in the seeder's terms: one torrent's status, its swarm as the
swarm budget reads it, and the session totals (SeedStats, the STATUS= line, the metrics).

`StatsFeed` turns each session_stats_alert into a `SeedStats` and feeds the metrics;
`post_updates` asks libtorrent for those alerts (and for torrent state updates) on a timer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import libtorrent as lt
import trio

from seeder.seed.cache import SeedCache
from seeder.seed.swarm_budget import SwarmView, missing_pieces

__all__ = [
    "STATS_INTERVAL",
    "UPDATES_INTERVAL",
    "SeedStats",
    "StatsFeed",
    "TorrentStatus",
    "post_updates",
    "swarm_view",
    "torrent_status",
]

STATS_INTERVAL = 5.0  # seconds between post_session_stats
UPDATES_INTERVAL = 0.5  # seconds between post_torrent_updates (which torrents have peers)

# peer_info.connection_type bits of web seed connections (not peers of the swarm).
_WEB_SEED_CONNECTIONS = int(lt.peer_info.web_seed) | int(lt.peer_info.http_seed)
_CHOKED = int(lt.peer_info.choked)  # peer_info.flags: the session chokes this peer

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


@dataclass(frozen=True, slots=True)
class TorrentStatus:
    """One torrent as libtorrent sees it now."""

    info_hash: str  # cache key: v1 hex, or v2 hex for a v2-only torrent
    name: str
    state: str  # "seeding", "downloading", "checking_files", ...
    progress: float  # 0.0 .. 1.0
    peers: int  # connected peers, web seeds included
    seeds: int
    uploaded: int  # payload bytes since added to this session
    downloaded: int
    upload_rate: int  # payload bytes/s
    download_rate: int
    error: str | None  # libtorrent's error text when the torrent is stopped by an error
    from_cache: bool  # added in seed_mode from the seed cache


@dataclass(frozen=True, slots=True)
class SeedStats:
    """Session totals, refreshed every STATS_INTERVAL from a session_stats_alert."""

    torrents: int = 0
    seeding: int = 0
    downloading: int = 0
    errored: int = 0
    peers: int = 0
    uploaded_bytes: int = 0  # payload, since the session started
    downloaded_bytes: int = 0
    upload_rate: float = 0.0  # payload bytes/s over the last interval
    download_rate: float = 0.0
    cache_bytes: int = 0
    cache_evictions: int = 0
    errors: int = 0  # problem alerts seen (tracker, web seed, hash, file ...)
    listen_port: int = 0

    def status_line(self) -> str:
        """A short human line for systemd's STATUS=."""
        return (
            f"seeding {self.seeding}/{self.torrents} torrents, {self.downloading} downloading, "
            f"{self.peers} peers, up {_human_rate(self.upload_rate)}, "
            f"cache {_human_bytes(self.cache_bytes)}"
        )


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # unreachable


def _human_rate(n: float) -> str:
    return _human_bytes(n) + "/s"


def torrent_status(key: str, st: Any, *, from_cache: bool) -> TorrentStatus:
    """A `TorrentStatus` of libtorrent's ``torrent_status`` ``st`` for torrent ``key``."""
    err = st.errc
    return TorrentStatus(
        info_hash=key,
        name=st.name,
        state=_STATE_NAMES.get(int(st.state), str(st.state)),
        progress=float(st.progress),
        peers=st.num_peers,
        seeds=st.num_seeds,
        uploaded=st.total_payload_upload,
        downloaded=st.total_payload_download,
        upload_rate=st.upload_payload_rate,
        download_rate=st.download_payload_rate,
        error=err.message() if err.value() else None,
        from_cache=from_cache,
    )


def swarm_view(
    handle: lt.torrent_handle,
    extra_sent: int = 0,
    in_flight: Collection[int] = (),
    *,
    coverage: bool = True,
) -> SwarmView | None:
    """The swarm of a valid torrent handle as `swarm_budget` reads it, or None unless the
    session holds the whole torrent (see `SeedSession.swarm_view` for the arguments)."""
    st = handle.status()
    if st.progress < 1.0 or st.errc.value():
        return None
    ti = handle.torrent_file()
    num_pieces = ti.num_pieces()
    bitfields: list[list[bool]] = []
    holdings: dict[str, int] = {}
    unchoked: set[str] = set()
    rates: dict[str, int] = {}
    seeded = False
    for p in handle.get_peer_info():
        if p.connection_type & _WEB_SEED_CONNECTIONS:
            continue
        ip, port = p.ip
        endpoint = f"{ip}:{port}"
        holdings[endpoint] = p.num_pieces
        if not p.flags & _CHOKED:
            unchoked.add(endpoint)
            rates[endpoint] = p.up_speed
        if p.num_pieces >= num_pieces:
            seeded = True
        elif coverage and not seeded:
            bitfields.append(p.pieces)
    if seeded:
        missing = 0
    elif coverage:
        missing = missing_pieces(bitfields, num_pieces, in_flight)
    else:
        missing = num_pieces
    return SwarmView(
        holdings=holdings,
        missing=missing,
        sent=st.total_payload_upload + extra_sent,
        size=ti.total_size(),
        piece_length=ti.piece_length(),
        unchoked=frozenset(unchoked),
        rates=rates,
    )


class StatsFeed:
    """The latest `SeedStats`, made from each session_stats_alert, and the metrics fed.

    ``metrics``: a seeder.metrics.SeederMetrics (or None): its session counters,
    peers/torrents gauges and seed cache metrics are fed at every update.
    """

    def __init__(self, metrics: Any = None) -> None:
        self.metrics = metrics
        self.current = SeedStats()
        self._at: float | None = None
        self._evictions_reported = 0

    def update(
        self, values: dict[str, int], *, torrents: int, cache: SeedCache, errors: int,
        listen_port: int,
    ) -> SeedStats:
        """Make the new totals from libtorrent's counters ``values``; they become `current`."""
        now = time.monotonic()
        up = values.get("net.sent_payload_bytes", 0)
        down = values.get("net.recv_payload_bytes", 0)
        prev, prev_at = self.current, self._at
        dt = now - prev_at if prev_at is not None else 0.0
        stats = SeedStats(
            torrents=torrents,
            seeding=values.get("ses.num_seeding_torrents", 0),
            downloading=values.get("ses.num_downloading_torrents", 0),
            errored=values.get("ses.num_error_torrents", 0),
            peers=values.get("peer.num_peers_connected", 0),
            uploaded_bytes=up,
            downloaded_bytes=down,
            upload_rate=(up - prev.uploaded_bytes) / dt if dt > 0 else 0.0,
            download_rate=(down - prev.downloaded_bytes) / dt if dt > 0 else 0.0,
            cache_bytes=cache.size_bytes,
            cache_evictions=cache.evictions,
            errors=errors,
            listen_port=listen_port,
        )
        self.current, self._at = stats, now
        if self.metrics is not None:
            self._feed_metrics(stats)
        return stats

    def _feed_metrics(self, stats: SeedStats) -> None:
        m = self.metrics
        m.add_session_totals(stats.uploaded_bytes, stats.downloaded_bytes)
        m.peers_connected.set(stats.peers)
        m.torrents_seeding.set(stats.seeding)
        m.seed_cache_bytes.set(stats.cache_bytes)
        m.seed_cache_evictions_total.inc(max(0, stats.cache_evictions - self._evictions_reported))
        self._evictions_reported = stats.cache_evictions


async def post_updates(session: Callable[[], lt.session], stats_interval: float) -> None:
    """Ask ``session()`` for session stats every ``stats_interval`` and for torrent state
    updates every UPDATES_INTERVAL (or ``stats_interval`` if shorter), until cancelled."""
    next_stats = 0.0
    while True:
        ses = session()
        if trio.current_time() >= next_stats:
            ses.post_session_stats()
            next_stats = trio.current_time() + stats_interval
        ses.post_torrent_updates()
        await trio.sleep(min(UPDATES_INTERVAL, stats_interval))
