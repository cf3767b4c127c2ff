"""The libtorrent session that seeds the catalog, with its alerts bridged into trio.

S3 (or the daemon's web seed proxy) is the first peer: every torrent carries its object URL
in ``url-list`` (BEP 19), so a torrent whose bytes are not in the seed cache is added to
download into the cache from that web seed (and from peers), then seeds from there.

Alerts: ``ses.set_alert_fd(fd)`` makes libtorrent write a byte to one end of a socketpair
whenever its alert queue becomes non-empty; `SeedSession.run` waits on the other end with
``trio.lowlevel.wait_readable``, so there is no polling loop and no thread. libtorrent calls
post to its own network thread and return quickly, so they are made from the trio thread.

Resume data (``<state>/resume/<info-hash hex>.resume``, ``lt.write_resume_data_buf`` with the
info dict inside) is written after each add, when a download finishes, and for every torrent
at shutdown; `load_resume` re-adds them at startup so a restart seeds again without reading
the origin. A resume file whose cache entry is gone is deleted.

Trackers and web seeds follow the catalog, not the resume data: the resume data keeps the
links the torrent had when it was saved, and the config may have moved the tracker or the
web seed since (the catalog was relinked at startup). `load_resume` asks ``links_of`` for
each resumed torrent's current links and adds it with those; `set_links` replaces them on a
running torrent (``replace_trackers``, ``add_url_seed`` / ``remove_url_seed``).

Policy (which torrents to seed, when, how fast) belongs to the daemon: this module gives
`add`, `ensure_seeding` (idempotent), `remove`, `has`, `status`, `stats`, and for the swarm
budget `peered`, `swarm_view` and `set_throttle`, and `set_links`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libtorrent as lt
import trio

from seeder import __version__
from seeder.config import SeedingConfig
from seeder.seed.cache import CacheError, SeedCache
from seeder.seed.swarm_budget import SwarmView, Throttle, missing_pieces
from seeder.torrent.entry import seed_key
from seeder.torrent.metainfo import Links

log = logging.getLogger(__name__)

STATS_INTERVAL = 5.0  # seconds between post_session_stats
UPDATES_INTERVAL = 0.5  # seconds between post_torrent_updates (which torrents have peers)
LISTEN_DEADLINE = 10.0  # seconds to get a listen socket before run() fails
RESUME_SAVE_DEADLINE = 10.0  # seconds to collect resume data at shutdown
STOP_TRACKER_TIMEOUT = 2  # seconds libtorrent waits for "stopped" announces when closing
RESUME_SUFFIX = ".resume"
# Seed policy (the measured trade-off is in seeding.py): no super seeding (BEP 16): it kept
# the daemon near one copy but made the clients wait on each other (15-19 s against 13 s for
# plain GETs); the per-swarm byte budget (swarm_budget.py) bounds the bytes instead. True
# super-seeds torrents added whole that have a web seed (bench_swarm --super-seed on).
SUPER_SEEDING = False

_ALERT_MASK = (
    lt.alert_category.error
    | lt.alert_category.status
    | lt.alert_category.storage
    | lt.alert_category.stats
)

# peer_info.connection_type bits of web seed connections (not peers of the swarm).
_WEB_SEED_CONNECTIONS = int(lt.peer_info.web_seed) | int(lt.peer_info.http_seed)

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

# Alerts logged as warnings and counted in SeedStats.errors (name -> log label).
_PROBLEM_ALERTS: dict[type, str] = {
    lt.tracker_error_alert: "tracker error",
    lt.scrape_failed_alert: "scrape failed",
    lt.url_seed_alert: "web seed failed",
    lt.hash_failed_alert: "hash failed",
    lt.file_error_alert: "file error",
    lt.torrent_error_alert: "torrent error",
    lt.fastresume_rejected_alert: "resume data rejected",
    lt.listen_failed_alert: "listen failed",
    lt.save_resume_data_failed_alert: "save resume data failed",
    lt.storage_moved_failed_alert: "storage move failed",
    lt.torrent_delete_failed_alert: "delete failed",
}


class SeedError(Exception):
    """A torrent cannot be seeded: bad metainfo, or no room in the seed cache."""


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


def session_settings(config: SeedingConfig) -> dict[str, Any]:
    """The lt.session settings dict for `config` (pure)."""
    return {
        "listen_interfaces": config.listen_interfaces,
        "upload_rate_limit": config.upload_rate_limit,
        "connections_limit": config.connections_limit,
        "enable_dht": config.dht,
        "enable_lsd": config.lsd,
        "enable_upnp": config.upnp,
        "enable_natpmp": config.natpmp,
        "ssrf_mitigation": config.ssrf_mitigation,
        "alert_mask": _ALERT_MASK,
        # Many users behind one NAT address must all be served, not one at a time.
        "allow_multiple_connections_per_ip": True,
        # A seeder is a peer in every swarm it holds: announce everywhere it can.
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "stop_tracker_timeout": STOP_TRACKER_TIMEOUT,
        "enable_ip_notifier": False,
        # Few requests per peer queued here (libtorrent's default: 2000 blocks, 32 MiB): a
        # client then asks its other peers for the rest instead of queueing every rare
        # piece here, where the other clients ask for the same (issue 4: 3.1-3.5x -> 2.3-2.4x).
        "max_allowed_in_request_queue": config.peer_request_queue,
        "user_agent": f"s3torrent/{__version__} libtorrent/{lt.__version__}",
    }


def seed_flags(web_seeds: object) -> int:
    """Extra torrent flags for a torrent added whole, given its web seeds (any sized
    collection): super seeding when SUPER_SEEDING and it has one. libtorrent 2.1 must be
    told at add time: switched on under connected peers (who saw a full bitfield) it
    stalled them (a 15 s download took 70-250 s), and switched off under connected peers
    it froze them (14 min, nothing sent; bench_swarm, issue 4 round 2). Without a web seed
    the session is a lone peer's only source, and super seeding's one piece at a time made
    that ~10x slower."""
    return int(lt.torrent_flags.super_seeding) if SUPER_SEEDING and web_seeds else 0


def url_list(torrent: bytes) -> list[bytes]:
    """The BEP 19 web seeds (``url-list``) of metainfo bytes; [] if none or unreadable."""
    try:
        value = lt.bdecode(bytes(torrent)).get(b"url-list")
    except (RuntimeError, AttributeError, TypeError):
        return []
    if isinstance(value, bytes):
        return [value] if value else []
    return [u for u in value if isinstance(u, bytes) and u] if isinstance(value, list) else []


def tracker_tiers(links: Links) -> list[tuple[str, int]]:
    """The (url, tier) list libtorrent makes of a torrent with ``links``: ``announce-list``
    when it has one (BEP 12: ``announce`` is then ignored), else ``announce`` alone."""
    if links.announce_list:
        return [(url, tier) for tier, urls in enumerate(links.announce_list) for url in urls]
    return [(links.announce, 0)] if links.announce else []


def torrent_key(ti: lt.torrent_info) -> str:
    """The seed key (`seeder.torrent.entry.seed_key`) of a parsed torrent."""
    return _key(ti.info_hashes())


def _key(hashes: Any) -> str:
    """The seed key of libtorrent's ``info_hash_t``."""
    return seed_key(
        hashes.v1.to_bytes() if hashes.has_v1() else None,
        hashes.v2.to_bytes() if hashes.has_v2() else None,
    )


def parse_torrent(torrent: bytes) -> lt.torrent_info:
    """Metainfo bytes -> lt.torrent_info; SeedError if libtorrent refuses them."""
    try:
        return lt.torrent_info(bytes(torrent))
    except (RuntimeError, TypeError, ValueError) as e:
        raise SeedError(f"bad torrent: {e}") from None


class SeedSession:
    """A libtorrent session seeding from a `SeedCache`. Start it with ``nursery.start(run)``.

    `add`/`ensure_seeding`/`remove`/`has`/`status`/`stats` are sync, called from the trio
    thread while `run` is running (`add` and `remove` raise RuntimeError otherwise).
    """

    def __init__(
        self,
        config: SeedingConfig,
        state_dir: Path | str,
        cache: SeedCache,
        metrics: Any = None,
        *,
        stats_interval: float = STATS_INTERVAL,
        links_of: Callable[[str], Links | None] | None = None,
    ) -> None:
        """``metrics``: a seeder.metrics.SeederMetrics (or None): its session counters,
        peers/torrents gauges and seed cache metrics are fed at every stats interval.
        ``links_of(key)``: the links a torrent resumed from resume data gets (the catalog's
        torrent's); None, or no such callable: the links saved in its resume data."""
        self.config = config
        self.resume_dir = Path(state_dir) / "resume"
        self.cache = cache
        self.metrics = metrics
        self.stats_interval = stats_interval
        self.links_of = links_of
        self._ses: lt.session | None = None
        self._handles: dict[str, lt.torrent_handle] = {}
        self._downloading: set[str] = set()  # pinned in the cache until finished
        self._from_cache: set[str] = set()
        self._uploaded: dict[str, int] = {}  # last total_payload_upload seen, for LRU touch
        self._peered: dict[str, int] = {}  # connected peers, from the last state update
        self._throttled: dict[str, Throttle] = {}  # torrent -> its throttle (set_throttle)
        self._complete: dict[str, trio.Event] = {}  # set once the torrent has every piece
        self._pending: list[bytes] = []  # ensure_seeding calls made before run started
        self._stopped = False
        self._resume_waiting: set[str] = set()  # shutdown: resume data not yet written
        self._stats = SeedStats()
        self._stats_at: float | None = None
        self._errors = 0
        self._evictions_reported = 0
        self._listen_port = 0
        cache.add_evict_listener(self._on_evicted)

    # -- service -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the session until cancelled. Never returns otherwise.

        Reports the BitTorrent listen port via ``task_status.started(port)`` once listening
        and the resume data is loaded. On cancellation: saves resume data for every
        torrent (bounded by RESUME_SAVE_DEADLINE), pauses and destroys the session, then
        re-raises. Raises SeedError if it cannot listen.
        """
        self.resume_dir.mkdir(parents=True, exist_ok=True)
        rsock, wsock = socket.socketpair()
        rsock.setblocking(False)
        ses = lt.session(session_settings(self.config))
        ses.set_alert_fd(wsock.fileno())
        self._ses = ses
        holder = [ses]
        del ses
        try:
            with trio.fail_after(LISTEN_DEADLINE):
                await self._until_listening(rsock)
            self.load_resume()
            pending, self._pending = self._pending, []
            for torrent in pending:
                self.ensure_seeding(torrent)
            task_status.started(self._listen_port)
            log.info("libtorrent %s listening on port %d", lt.__version__, self._listen_port)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._stats_loop)
                while True:
                    await self._pump(rsock)
        except trio.TooSlowError:
            raise SeedError(f"not listening on {self.config.listen_interfaces}") from None
        finally:
            self._stopped = True
            with trio.CancelScope(shield=True):
                await self._shutdown(rsock, holder)
                rsock.close()
                wsock.close()

    async def _until_listening(self, rsock: socket.socket) -> None:
        ses = self._session()
        failures: list[str] = []
        while True:
            for a in ses.pop_alerts():
                self._on_alert(a)
                if isinstance(a, lt.listen_failed_alert):
                    failures.append(a.message())
            if ses.is_listening() and ses.listen_port():
                self._listen_port = ses.listen_port()
                return
            if failures and not ses.is_listening():
                raise SeedError("; ".join(failures))
            await self._wait_alert(rsock)

    async def _wait_alert(self, rsock: socket.socket) -> None:
        await trio.lowlevel.wait_readable(rsock)
        # Drain before popping: a notification that arrives after the pop is not lost.
        with contextlib.suppress(BlockingIOError):
            while rsock.recv(4096):
                pass

    async def _pump(self, rsock: socket.socket) -> None:
        await self._wait_alert(rsock)
        for a in self._session().pop_alerts():
            self._on_alert(a)

    async def _stats_loop(self) -> None:
        next_stats = 0.0
        while True:
            ses = self._session()
            if trio.current_time() >= next_stats:
                ses.post_session_stats()
                next_stats = trio.current_time() + self.stats_interval
            ses.post_torrent_updates()
            await trio.sleep(min(UPDATES_INTERVAL, self.stats_interval))

    async def _shutdown(self, rsock: socket.socket, holder: list[lt.session]) -> None:
        with trio.move_on_after(RESUME_SAVE_DEADLINE) as scope:
            for a in self._session().pop_alerts():
                self._on_alert(a)
            flags = lt.torrent_handle.save_info_dict | lt.torrent_handle.flush_disk_cache
            for key, h in list(self._handles.items()):
                if h.is_valid():
                    h.save_resume_data(flags)
                    self._resume_waiting.add(key)
            while self._resume_waiting:
                await self._pump(rsock)
        if scope.cancelled_caught:
            log.warning("resume data: %d torrents not saved in time", len(self._resume_waiting))
        self._session().pause()
        self._ses = None
        self._handles.clear()
        # The destructor waits for "stopped" announces (STOP_TRACKER_TIMEOUT): run it in a
        # worker thread, which drops the last reference (holder's).
        await trio.to_thread.run_sync(_drop, holder)

    def _session(self) -> lt.session:
        if self._ses is None:
            raise RuntimeError("the libtorrent session is not running")
        return self._ses

    # -- torrents ------------------------------------------------------------------------

    def add(self, torrent: bytes, *, seed_from_cache: bool = True) -> str:
        """Add a torrent to the session; its cache key (info-hash hex). Idempotent.

        When the seed cache holds the complete object: seeds from there, in seed_mode (no
        re-hash) if ``seed_from_cache``, else after libtorrent checks the files. Otherwise
        reserves room in the cache (pinned) and downloads into it from the torrent's web
        seeds and peers; when finished it becomes a regular cache entry.
        Raises SeedError for bad metainfo or when the cache has no room for the object.
        """
        ses = self._session()
        ti = parse_torrent(torrent)
        key = torrent_key(ti)
        if key in self._handles and self._handles[key].is_valid():
            return key
        params = lt.add_torrent_params()
        params.ti = ti
        params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        path = self.cache.lookup(key)
        if path is not None and self.cache.is_complete(key) and seed_from_cache:
            params.flags |= lt.torrent_flags.seed_mode | seed_flags(url_list(torrent))
            self._from_cache.add(key)
        else:
            path = self.cache.reserve(key, ti.total_size())
            if path is None:
                raise SeedError(
                    f"{key}: {ti.total_size()} bytes do not fit the seed cache "
                    f"({self.cache.max_bytes} bytes, pinned entries included)"
                )
            self._downloading.add(key)
        params.save_path = str(path)
        try:
            handle = ses.add_torrent(params)
        except RuntimeError as e:
            self._forget(key, drop_partial=True)
            raise SeedError(f"{key}: libtorrent refused the torrent: {e}") from None
        self._handles[key] = handle
        self._uploaded[key] = 0
        if key in self._from_cache:
            self._completed(key)
        handle.save_resume_data(lt.torrent_handle.save_info_dict)
        log.info(
            "seeding %s (%s) %s",
            key,
            ti.name(),
            "from the seed cache" if key in self._from_cache else "after download",
        )
        return key

    def ensure_seeding(self, torrent: bytes) -> bool:
        """Make sure the torrent is in the session (added as by `add`). Idempotent.

        Before `run` has started, the torrent is queued and added at startup (True). Returns
        False, with a log line, when it cannot be (bad torrent, no cache room, shut down).
        """
        if self._ses is None:
            if self._stopped:
                return False
            self._pending.append(bytes(torrent))
            return True
        try:
            self.add(torrent, seed_from_cache=True)
        except SeedError as e:
            log.warning("cannot seed: %s", e)
            return False
        return True

    def load_resume(self) -> int:
        """Re-add every torrent with resume data whose cache entry still exists; the count.

        Called by `run` at startup. Unusable resume files (unreadable, or their cache entry
        is gone) are deleted.
        """
        ses = self._session()
        added = 0
        for path in sorted(self.resume_dir.glob("*" + RESUME_SUFFIX)):
            try:
                params = lt.read_resume_data(path.read_bytes())
            except (OSError, RuntimeError) as e:
                log.warning("resume data %s unreadable (%s): deleted", path.name, e)
                path.unlink(missing_ok=True)
                continue
            if params.ti is None:
                path.unlink(missing_ok=True)
                continue
            key = torrent_key(params.ti)
            cache_path = self.cache.lookup(key)
            if cache_path is None or key in self._handles:
                log.info("resume data %s: not in the seed cache any more: deleted", key)
                path.unlink(missing_ok=True)
                continue
            params.save_path = str(cache_path)
            params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
            self._current_links(key, params)
            if not self.cache.is_complete(key):
                self.cache.pin(key)
                self._downloading.add(key)
            else:
                params.flags |= seed_flags(params.url_seeds)
            try:
                handle = ses.add_torrent(params)
            except RuntimeError as e:
                log.warning("resume data %s refused (%s): deleted", key, e)
                self._forget(key, drop_partial=False)
                path.unlink(missing_ok=True)
                continue
            self._handles[key] = handle
            self._uploaded[key] = 0
            if key not in self._downloading:
                self._completed(key)
            added += 1
        if added:
            log.info("resumed %d torrents from %s", added, self.resume_dir)
        return added

    def _current_links(self, key: str, params: lt.add_torrent_params) -> None:
        """Give a resumed torrent the links ``links_of`` has for it, in place of the resume
        data's (which are what the torrent had when it was saved)."""
        if self.links_of is None:
            return
        try:
            links = self.links_of(key)
        except Exception:  # the catalog failing costs the new links, not the torrent
            log.exception("%s: cannot look up its current links", key)
            return
        if links is None:
            return
        tiers = tracker_tiers(links)
        if ([(u, t) for u, t in zip(params.trackers, params.tracker_tiers, strict=False)] != tiers
                or list(params.url_seeds) != list(links.url_list)):
            log.info("%s: resumed with the catalog's tracker and web seed URLs", key)
        params.trackers = [url for url, _ in tiers]
        params.tracker_tiers = [tier for _, tier in tiers]
        params.url_seeds = list(links.url_list)

    def set_links(self, info_hash: str, links: Links) -> bool:
        """Make a torrent in the session announce to ``links``' trackers and fetch from its
        web seeds (replacing the ones it has; new trackers are announced to at once). The
        resume data is saved again when something changed. False if the torrent is not in
        the session."""
        key = info_hash.lower()
        handle = self._handles.get(key)
        if handle is None or not handle.is_valid():
            return False
        changed = False
        tiers = tracker_tiers(links)
        if self.trackers(key) != tiers:
            entries = []
            for url, tier in tiers:
                entry = lt.announce_entry(url)
                entry.tier = tier
                entries.append(entry)
            handle.replace_trackers(entries)
            changed = True
        have, want = set(handle.url_seeds()), set(links.url_list)
        for url in have - want:
            handle.remove_url_seed(url)
        for url in want - have:
            handle.add_url_seed(url)
        changed = changed or have != want
        if changed:
            handle.save_resume_data(lt.torrent_handle.save_info_dict)
            log.info("%s: trackers %s, web seeds %s", key,
                     ", ".join(url for url, _ in tiers) or "none",
                     ", ".join(links.url_list) or "none")
        return True

    def trackers(self, info_hash: str) -> list[tuple[str, int]] | None:
        """The torrent's trackers as libtorrent has them, (url, tier); None if not in the
        session."""
        handle = self._handles.get(info_hash.lower())
        if handle is None or not handle.is_valid():
            return None
        return [(t["url"], t["tier"]) for t in handle.trackers()]

    def web_seeds(self, info_hash: str) -> list[str] | None:
        """The torrent's BEP 19 web seeds as libtorrent has them (sorted); None if not in
        the session."""
        handle = self._handles.get(info_hash.lower())
        if handle is None or not handle.is_valid():
            return None
        return sorted(handle.url_seeds())

    def remove(self, info_hash: str, *, delete_files: bool = False) -> bool:
        """Stop seeding a torrent; False if it was not in the session.

        ``delete_files`` also drops its seed cache entry. A partial download's entry is
        dropped either way (its bytes are useless without the session's piece bitmap).
        """
        key = info_hash.lower()
        handle = self._handles.pop(key, None)
        if handle is None:
            return False
        ses = self._session()
        partial = key in self._downloading
        if handle.is_valid():
            ses.remove_torrent(handle, lt.session.delete_files if delete_files else 0)
        self._forget(key, drop_partial=partial)
        if delete_files:
            self.cache.remove(key)
        (self.resume_dir / (key + RESUME_SUFFIX)).unlink(missing_ok=True)
        return True

    async def wait_complete(self, info_hash: str) -> TorrentStatus:
        """Wait until the torrent has every piece (at once if it came from the cache);
        its status then. SeedError if it is not in the session or is removed meanwhile."""
        key = info_hash.lower()
        if key not in self._handles:
            raise SeedError(f"{key}: not in the session")
        await self._complete.setdefault(key, trio.Event()).wait()
        status = self.status(key)
        if status is None:
            raise SeedError(f"{key}: removed from the session")
        return status

    def has(self, info_hash: str) -> bool:
        """True when the torrent (cache key / info-hash hex) is in the session."""
        return info_hash.lower() in self._handles

    def status(self, info_hash: str) -> TorrentStatus | None:
        """The torrent's current status, or None if not in the session."""
        key = info_hash.lower()
        handle = self._handles.get(key)
        if handle is None or not handle.is_valid():
            return None
        st = handle.status()
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
            from_cache=key in self._from_cache,
        )

    def torrents(self) -> list[str]:
        """Keys of the torrents in the session."""
        return list(self._handles)

    def peered(self) -> list[str]:
        """Keys of the torrents that had connected peers at the last state update (every
        UPDATES_INTERVAL; libtorrent reports only the torrents whose status changed)."""
        return [k for k, n in self._peered.items() if n > 0 and k in self._handles]

    def swarm_view(
        self,
        info_hash: str,
        extra_sent: int = 0,
        in_flight: Collection[int] = (),
        *,
        coverage: bool = True,
    ) -> SwarmView | None:
        """The torrent's swarm as `swarm_budget` reads it, or None unless the session holds
        the whole torrent. ``sent`` is its BitTorrent payload upload since it was added,
        plus ``extra_sent`` (the web seed's bytes for it); ``in_flight``: pieces the web
        seed is sending to a peer now (they count as held). ``coverage=False`` skips the
        peers' bitfields (``missing`` is then every piece unless a peer is a seed): they
        cost a Python list per peer."""
        handle = self._handles.get(info_hash.lower())
        if handle is None or not handle.is_valid():
            return None
        st = handle.status()
        if st.progress < 1.0 or st.errc.value():
            return None
        ti = handle.torrent_file()
        num_pieces = ti.num_pieces()
        bitfields: list[list[bool]] = []
        holdings: dict[str, int] = {}
        seeded = False
        for p in handle.get_peer_info():
            if p.connection_type & _WEB_SEED_CONNECTIONS:
                continue
            ip, port = p.ip
            holdings[f"{ip}:{port}"] = p.num_pieces
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
        )

    def set_throttle(self, info_hash: str, throttle: Throttle | None) -> bool:
        """Apply a `swarm_budget.Throttle` to the torrent (its unchoke slots and upload
        cap), or lift it (None). False if the torrent is not in the session."""
        key = info_hash.lower()
        handle = self._handles.get(key)
        if handle is None or not handle.is_valid():
            return False
        if throttle is None:
            handle.set_upload_limit(-1)
            handle.set_max_uploads(-1)
            self._throttled.pop(key, None)
        else:
            # set_max_uploads runs the choker at once: the peers it chokes drop their
            # requests queued here and ask their other peers. (Under a bare rate cap they
            # sat queued and the swarm stalled: 5 s measured.)
            handle.set_max_uploads(max(2, throttle.slots))  # libtorrent's least is 2
            handle.set_upload_limit(-1 if throttle.rate is None else max(1, throttle.rate))
            self._throttled[key] = throttle
        return True

    def throttle(self, info_hash: str) -> Throttle | None:
        """The torrent's throttle set by `set_throttle`, or None."""
        return self._throttled.get(info_hash.lower())

    def stats(self) -> SeedStats:
        """The latest session totals (as of the last stats interval)."""
        return self._stats

    @property
    def listen_port(self) -> int:
        return self._listen_port

    # -- alerts --------------------------------------------------------------------------

    def _on_alert(self, a: lt.alert) -> None:
        kind = type(a)
        if kind is lt.session_stats_alert:
            self._on_session_stats(a.values)
        elif kind is lt.state_update_alert:
            self._on_state_update(a.status)
        elif kind is lt.torrent_finished_alert:
            self._on_finished(a.handle)
        elif kind is lt.cache_flushed_alert:
            self._on_flushed(a.handle)
        elif kind is lt.save_resume_data_alert:
            self._on_resume_data(a)
        elif kind is lt.save_resume_data_failed_alert:
            if a.handle.is_valid():
                self._resume_waiting.discard(_key(a.handle.info_hashes()))
            self._problem(a)
        elif kind in _PROBLEM_ALERTS:
            self._problem(a)
        elif a.category() & lt.alert_category.error:
            self._problem(a)

    def _problem(self, a: lt.alert) -> None:
        self._errors += 1
        label = _PROBLEM_ALERTS.get(type(a), a.what())
        log.warning("libtorrent %s: %s", label, a.message())

    def _completed(self, key: str) -> None:
        self._complete.setdefault(key, trio.Event()).set()

    def _on_finished(self, handle: lt.torrent_handle) -> None:
        if not handle.is_valid():
            return
        key = _key(handle.info_hashes())
        if key in self._downloading:
            # Pieces pass their hash check before libtorrent writes them out: the entry is
            # complete (trusted for seed_mode) only once its buffers are flushed.
            handle.flush_cache()
        elif key in self._handles:
            self._completed(key)

    def _on_flushed(self, handle: lt.torrent_handle) -> None:
        if not handle.is_valid():
            return
        key = _key(handle.info_hashes())
        if key not in self._downloading:
            return
        self._downloading.discard(key)
        self.cache.complete(key)
        self._completed(key)
        handle.save_resume_data(lt.torrent_handle.save_info_dict)
        log.info("downloaded %s into the seed cache: seeding", key)

    def _on_resume_data(self, a: Any) -> None:
        key = _key(a.params.info_hashes)
        self._resume_waiting.discard(key)
        if key not in self._handles:
            return  # removed meanwhile: leave no resume file behind
        data = lt.write_resume_data_buf(a.params)
        path = self.resume_dir / (key + RESUME_SUFFIX)
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as e:
            log.warning("cannot write resume data %s: %s", path, e)

    def _on_state_update(self, statuses: list[Any]) -> None:
        # Uploading counts as use of the cache entry (LRU).
        for st in statuses:
            key = _key(st.info_hashes)
            up = st.total_payload_upload
            if up > self._uploaded.get(key, 0):
                with contextlib.suppress(CacheError):
                    self.cache.touch(key)
            self._uploaded[key] = up
            self._peered[key] = st.num_peers

    def _on_session_stats(self, values: dict[str, int]) -> None:
        now = time.monotonic()
        up = values.get("net.sent_payload_bytes", 0)
        down = values.get("net.recv_payload_bytes", 0)
        prev, prev_at = self._stats, self._stats_at
        dt = now - prev_at if prev_at is not None else 0.0
        stats = SeedStats(
            torrents=len(self._handles),
            seeding=values.get("ses.num_seeding_torrents", 0),
            downloading=values.get("ses.num_downloading_torrents", 0),
            errored=values.get("ses.num_error_torrents", 0),
            peers=values.get("peer.num_peers_connected", 0),
            uploaded_bytes=up,
            downloaded_bytes=down,
            upload_rate=(up - prev.uploaded_bytes) / dt if dt > 0 else 0.0,
            download_rate=(down - prev.downloaded_bytes) / dt if dt > 0 else 0.0,
            cache_bytes=self.cache.size_bytes,
            cache_evictions=self.cache.evictions,
            errors=self._errors,
            listen_port=self._listen_port,
        )
        self._stats, self._stats_at = stats, now
        if self.metrics is not None:
            self._feed_metrics(stats)

    def _feed_metrics(self, stats: SeedStats) -> None:
        m = self.metrics
        m.add_session_totals(stats.uploaded_bytes, stats.downloaded_bytes)
        m.peers_connected.set(stats.peers)
        m.torrents_seeding.set(stats.seeding)
        m.seed_cache_bytes.set(stats.cache_bytes)
        m.seed_cache_evictions_total.inc(max(0, stats.cache_evictions - self._evictions_reported))
        self._evictions_reported = stats.cache_evictions

    # -- cache side ----------------------------------------------------------------------

    def _on_evicted(self, key: str) -> None:
        # Called by the cache (maybe from a worker thread, cache lock held) before the
        # files go: take the torrent out of the session first. remove_torrent only posts.
        handle = self._handles.pop(key, None)
        self._from_cache.discard(key)
        self._uploaded.pop(key, None)
        self._peered.pop(key, None)
        self._throttled.pop(key, None)
        self._complete.pop(key, None)  # evictable means complete: this event is already set
        ses = self._ses
        if handle is not None and ses is not None and handle.is_valid():
            ses.remove_torrent(handle)
        with contextlib.suppress(OSError):
            (self.resume_dir / (key + RESUME_SUFFIX)).unlink()

    def _forget(self, key: str, *, drop_partial: bool) -> None:
        self._handles.pop(key, None)
        event = self._complete.pop(key, None)
        if event is not None:
            event.set()  # wake waiters: they find the torrent gone
        self._from_cache.discard(key)
        self._uploaded.pop(key, None)
        self._peered.pop(key, None)
        self._throttled.pop(key, None)
        if key in self._downloading:
            self._downloading.discard(key)
            if drop_partial:
                self.cache.remove(key)
            else:
                self.cache.unpin(key)


def _drop(holder: list[lt.session]) -> None:
    """Drop the session's last reference, so its destructor runs in this thread."""
    holder.clear()
