"""The libtorrent session that seeds the catalog: the wrapper the daemon and the policy use.

S3 (or the daemon's web seed proxy) is the first peer: every torrent carries its object URL
in ``url-list`` (BEP 19), so a torrent whose bytes are not in the seed cache is added to
download into the cache from that web seed (and from peers), then seeds from there.

The concerns around it live beside it in seeder/seed/: `alerts` (the alert-fd bridge into
trio), `torrents` (handles and per-torrent bookkeeping), `resume` (resume data on disk),
`stats` (statuses, swarm views, session totals, metrics) and `settings` (what libtorrent is
told, pure). libtorrent calls post to its own network thread and return quickly, so they are
made from the trio thread.

Policy (which torrents to seed, when, how fast) belongs to the daemon: this module gives
`add`, `ensure_seeding` (idempotent), `remove`, `has`, `status`, `stats`, and for the swarm
budget `peered`, `swarm_view` and `set_throttle`, and `set_links`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import libtorrent as lt
import trio

from seeder.config import SeedingConfig
from seeder.seed import stats as _stats
from seeder.seed.alerts import AlertBridge, is_problem, log_problem
from seeder.seed.cache import SeedCache
from seeder.seed.nocopy import LocalSource
from seeder.seed.resume import RESUME_SAVE_DEADLINE, ResumeStore, apply_links
from seeder.seed.settings import (
    UPLOAD_SLOTS,
    SeedError,
    key_of,
    parse_torrent,
    peer_class_filter,
    seed_flags,
    session_settings,
    torrent_key,
    tracker_tiers,
    url_list,
)
from seeder.seed.stats import STATS_INTERVAL, SeedStats, StatsFeed, TorrentStatus
from seeder.seed.swarm_budget import SwarmView, Throttle
from seeder.seed.torrents import TorrentTable
from seeder.torrent.metainfo import Links

# The public surface callers import from here (the definitions live in the modules above).
__all__ = [
    "SeedError",
    "SeedSession",
    "SeedStats",
    "TorrentStatus",
    "parse_torrent",
    "session_settings",
    "torrent_key",
    "tracker_tiers",
    "url_list",
]

log = logging.getLogger(__name__)

LISTEN_DEADLINE = 10.0  # seconds to get a listen socket before run() fails


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
        self.resume_path = Path(state_dir) / "resume.sqlite3"
        self.cache = cache
        self.metrics = metrics
        self.stats_interval = stats_interval
        self.links_of = links_of
        self._ses: lt.session | None = None
        self._torrents = TorrentTable(cache)
        self._resume = ResumeStore(self.resume_path, legacy_dir=Path(state_dir) / "resume")
        self._feed = StatsFeed(metrics)
        # ensure_seeding calls made before run started
        self._pending: list[tuple[bytes, LocalSource | None]] = []
        self._sources: dict[str, LocalSource] = {}  # seeded in place (seed/nocopy.py)
        self._stopped = False
        self._resume_waiting: set[str] = set()  # shutdown: resume data not yet written
        self._errors = 0
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
        self._resume.create()
        alerts = AlertBridge(self._session, self._on_alert)
        ses = lt.session(session_settings(self.config))
        ses.set_peer_class_filter(peer_class_filter(ses.global_peer_class_id))
        alerts.attach(ses)
        self._ses = ses
        holder = [ses]
        del ses
        try:
            with trio.fail_after(LISTEN_DEADLINE):
                self._listen_port = await alerts.until_listening()
            self.load_resume()
            pending, self._pending = self._pending, []
            for torrent, source in pending:
                self.ensure_seeding(torrent, source)
            task_status.started(self._listen_port)
            log.info("libtorrent %s listening on port %d", lt.__version__, self._listen_port)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_stats.post_updates, self._session, self.stats_interval)
                while True:
                    await alerts.pump()
        except trio.TooSlowError:
            raise SeedError(f"not listening on {self.config.listen_interfaces}") from None
        finally:
            self._stopped = True
            with trio.CancelScope(shield=True):
                await self._shutdown(alerts, holder)
                alerts.close()
                self._resume.close()

    async def _shutdown(self, alerts: AlertBridge, holder: list[lt.session]) -> None:
        with trio.move_on_after(RESUME_SAVE_DEADLINE) as scope:
            alerts.drain()
            flags = lt.torrent_handle.save_info_dict | lt.torrent_handle.flush_disk_cache
            for key, h in list(self._torrents.handles.items()):
                if h.is_valid():
                    h.save_resume_data(flags)
                    self._resume_waiting.add(key)
            while self._resume_waiting:
                await alerts.pump()
        if scope.cancelled_caught:
            log.warning("resume data: %d torrents not saved in time", len(self._resume_waiting))
        self._session().pause()
        self._ses = None
        self._torrents.handles.clear()
        # The destructor waits for "stopped" announces (STOP_TRACKER_TIMEOUT): run it in a
        # worker thread, which drops the last reference (holder's).
        await trio.to_thread.run_sync(_drop, holder)

    def _session(self) -> lt.session:
        if self._ses is None:
            raise RuntimeError("the libtorrent session is not running")
        return self._ses

    # -- torrents ------------------------------------------------------------------------

    def add(self, torrent: bytes, *, seed_from_cache: bool = True,
            source: LocalSource | None = None) -> str:
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
        if key in self._torrents.handles and self._torrents.handles[key].is_valid():
            return key
        params = lt.add_torrent_params()
        params.ti = ti
        params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        params.max_uploads = UPLOAD_SLOTS
        path = self.cache.lookup(key)
        if source is not None and not (path is not None and self.cache.is_complete(key)):
            # A local bucket's own file (seed/nocopy.py): in place, no copy, in seed mode
            # (each piece checked on its first request), re-checked every second.
            if not source.unchanged():
                raise SeedError(f"{key}: {source.path} changed since it was hashed")
            # upload_mode: never download into the bucket's file, not even a piece that
            # failed its check (a peer's copy of old bytes must not overwrite new ones).
            params.flags |= (lt.torrent_flags.seed_mode | lt.torrent_flags.upload_mode
                             | seed_flags(url_list(torrent)))
            path = Path(source.directory)
            self._sources[key] = source
        elif path is not None and self.cache.is_complete(key) and seed_from_cache:
            params.flags |= lt.torrent_flags.seed_mode | seed_flags(url_list(torrent))
            self._torrents.from_cache.add(key)
        else:
            path = self.cache.reserve(key, ti.total_size())
            if path is None:
                raise SeedError(
                    f"{key}: {ti.total_size()} bytes do not fit the seed cache "
                    f"({self.cache.max_bytes} bytes, pinned entries included)"
                )
            self._torrents.downloading.add(key)
        params.save_path = str(path)
        try:
            handle = ses.add_torrent(params)
        except RuntimeError as e:
            self._torrents.forget(key, drop_partial=True)
            self._sources.pop(key, None)
            raise SeedError(f"{key}: libtorrent refused the torrent: {e}") from None
        self._torrents.handles[key] = handle
        self._torrents.uploaded[key] = 0
        if key not in self._sources:  # in place: nothing to resume from (back on demand)
            handle.save_resume_data(lt.torrent_handle.save_info_dict)
        log.info(
            "seeding %s (%s) %s",
            key,
            ti.name(),
            "from the seed cache" if key in self._torrents.from_cache
            else "in place" if key in self._sources else "after download",
        )
        return key

    def ensure_seeding(self, torrent: bytes, source: LocalSource | None = None) -> bool:
        """Make sure the torrent is in the session (added as by `add`). Idempotent.

        Before `run` has started, the torrent is queued and added at startup (True). Returns
        False, with a log line, when it cannot be (bad torrent, no cache room, shut down).
        """
        if self._ses is None:
            if self._stopped:
                return False
            self._pending.append((bytes(torrent), source))
            return True
        try:
            self.add(torrent, seed_from_cache=True, source=source)
        except SeedError as e:
            log.warning("cannot seed: %s", e)
            return False
        return True

    def load_resume(self) -> int:
        """Re-add every torrent with resume data whose cache entry still exists; the count.

        Called by `run` at startup. Unusable resume data (unreadable, or their cache entry
        is gone) are deleted, and so are those past ``max_active_torrents`` (resume data
        imported from a version that seeded the whole catalog): they come back on demand.
        """
        ses = self._session()
        added = 0
        for name, data in self._resume.saved():
            if added >= self.config.max_active_torrents:
                self._resume.delete(name)
                continue
            try:
                params = lt.read_resume_data(data)
            except RuntimeError as e:
                log.warning("resume data %s unreadable (%s): deleted", name, e)
                self._resume.delete(name)
                continue
            if params.ti is None:
                self._resume.delete(name)
                continue
            key = torrent_key(params.ti)
            cache_path = self.cache.lookup(key)
            if key != name or cache_path is None or key in self._torrents.handles:
                log.info("resume data %s: not in the seed cache any more: deleted", name)
                self._resume.delete(name)
                continue
            params.save_path = str(cache_path)
            params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
            params.max_uploads = UPLOAD_SLOTS
            apply_links(key, params, self.links_of)
            if not self.cache.is_complete(key):
                self.cache.pin(key)
                self._torrents.downloading.add(key)
            else:
                params.flags |= seed_flags(params.url_seeds)
            try:
                handle = ses.add_torrent(params)
            except RuntimeError as e:
                log.warning("resume data %s refused (%s): deleted", key, e)
                self._torrents.forget(key, drop_partial=False)
                self._resume.delete(key)
                continue
            self._torrents.handles[key] = handle
            self._torrents.uploaded[key] = 0
            added += 1
        if added:
            log.info("resumed %d torrents from %s", added, self.resume_path)
        return added

    def set_links(self, info_hash: str, links: Links) -> bool:
        """Make a torrent in the session announce to ``links``' trackers and fetch from its
        web seeds (replacing the ones it has; new trackers are announced to at once). The
        resume data is saved again when something changed. False if the torrent is not in
        the session."""
        key = info_hash.lower()
        handle = self._torrents.handles.get(key)
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
        handle = self._torrents.handles.get(info_hash.lower())
        if handle is None or not handle.is_valid():
            return None
        return [(t["url"], t["tier"]) for t in handle.trackers()]

    def web_seeds(self, info_hash: str) -> list[str] | None:
        """The torrent's BEP 19 web seeds as libtorrent has them (sorted); None if not in
        the session."""
        handle = self._torrents.handles.get(info_hash.lower())
        if handle is None or not handle.is_valid():
            return None
        return sorted(handle.url_seeds())

    def remove(self, info_hash: str, *, delete_files: bool = False) -> bool:
        """Stop seeding a torrent; False if it was not in the session.

        ``delete_files`` also drops its seed cache entry. A partial download's entry is
        dropped either way (its bytes are useless without the session's piece bitmap).
        """
        key = info_hash.lower()
        handle = self._torrents.handles.pop(key, None)
        if handle is None:
            return False
        if self._sources.pop(key, None) is not None:
            delete_files = False  # the files are the bucket's own: never delete them
        ses = self._session()
        partial = key in self._torrents.downloading
        if handle.is_valid():
            ses.remove_torrent(handle, lt.session.delete_files if delete_files else 0)
        self._torrents.forget(key, drop_partial=partial)
        if delete_files:
            self.cache.remove(key)
        self._resume.delete(key)
        return True

    async def wait_complete(self, info_hash: str) -> TorrentStatus:
        """Wait until the torrent has every piece and libtorrent accepts peers for it (for a
        torrent added whole, from the cache or resume data: within milliseconds of the add);
        its status then. SeedError if it is not in the session or is removed meanwhile."""
        key = info_hash.lower()
        if key not in self._torrents.handles:
            raise SeedError(f"{key}: not in the session")
        await self._torrents.complete.setdefault(key, trio.Event()).wait()
        status = self.status(key)
        if status is None:
            raise SeedError(f"{key}: removed from the session")
        return status

    def has(self, info_hash: str) -> bool:
        """True when the torrent (cache key / info-hash hex) is in the session."""
        return info_hash.lower() in self._torrents.handles

    def status(self, info_hash: str) -> TorrentStatus | None:
        """The torrent's current status, or None if not in the session."""
        key = info_hash.lower()
        handle = self._torrents.handles.get(key)
        if handle is None or not handle.is_valid():
            return None
        return _stats.torrent_status(key, handle.status(),
                                     from_cache=key in self._torrents.from_cache)

    def torrents(self) -> list[str]:
        """Keys of the torrents in the session."""
        return list(self._torrents.handles)

    def peered(self) -> list[str]:
        """Keys of the torrents that had connected peers at the last state update (every
        UPDATES_INTERVAL; libtorrent reports only the torrents whose status changed)."""
        t = self._torrents
        return [k for k, n in t.peered.items() if n > 0 and k in t.handles]

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
        handle = self._torrents.valid(info_hash.lower())
        if handle is None:
            return None
        return _stats.swarm_view(handle, extra_sent, in_flight, coverage=coverage)

    def set_throttle(self, info_hash: str, throttle: Throttle | None) -> bool:
        """Apply a `swarm_budget.Throttle` to the torrent (its unchoke slots and upload
        cap), or lift it (None). False if the torrent is not in the session."""
        key = info_hash.lower()
        handle = self._torrents.handles.get(key)
        if handle is None or not handle.is_valid():
            return False
        if throttle is None:
            handle.set_upload_limit(-1)
            handle.set_max_uploads(UPLOAD_SLOTS)
            self._torrents.throttled.pop(key, None)
        else:
            # The choker unchokes at most these peers from its next run on: under a bare
            # rate cap every peer stayed unchoked with its requests queued here and the
            # swarm stalled (5 s measured). libtorrent 2.1 chokes no peer already unchoked
            # when the count falls (WAN lab log, session 9): the rate cap holds those.
            handle.set_max_uploads(max(2, throttle.slots))  # libtorrent's least is 2
            handle.set_upload_limit(-1 if throttle.rate is None else max(1, throttle.rate))
            self._torrents.throttled[key] = throttle
        return True

    def set_limits(self, *, upload_rate: int | None = None,
                   unchoke_slots: int | None = None) -> bool:
        """Session-wide limits, each left as it is when None: ``upload_rate``, the upload
        limit over all its peers in bytes/s (0: none; `run` starts it at ``[seeding]
        upload_rate_limit``); ``unchoke_slots`` (libtorrent's ``unchoke_slots_limit``), whose
        choker, unlike a torrent's ``max_uploads``, chokes the interested peers beyond them
        it uploads to slowest, over all torrents. False when the session is not running."""
        if self._ses is None:
            return False
        limits = {}
        if upload_rate is not None:
            limits["upload_rate_limit"] = max(0, upload_rate)
        if unchoke_slots is not None:
            limits["unchoke_slots_limit"] = max(1, unchoke_slots)
        self._ses.apply_settings(limits)
        return True

    def throttle(self, info_hash: str) -> Throttle | None:
        """The torrent's throttle set by `set_throttle`, or None."""
        return self._torrents.throttled.get(info_hash.lower())

    def stats(self) -> SeedStats:
        """The latest session totals (as of the last stats interval)."""
        return self._feed.current

    @property
    def listen_port(self) -> int:
        return self._listen_port

    # -- alerts --------------------------------------------------------------------------

    def _on_alert(self, a: lt.alert) -> None:
        kind = type(a)
        t = self._torrents
        if kind is lt.session_stats_alert:
            self._feed.update(a.values, torrents=len(t.handles), cache=self.cache,
                              errors=self._errors, listen_port=self._listen_port)
        elif kind is lt.state_update_alert:
            t.state_update(a.status)
        elif kind is lt.torrent_finished_alert:
            t.finished(a.handle)
        elif kind is lt.cache_flushed_alert:
            t.flushed(a.handle)
        elif kind is lt.torrent_checked_alert:
            t.ready(a.handle)
        elif kind is lt.save_resume_data_alert:
            key = key_of(a.params.info_hashes)
            self._resume_waiting.discard(key)
            if key in t.handles and key not in self._sources:  # else removed meanwhile (or
                # seeded in place, which needs none): leave no resume data behind
                self._resume.write(key, a.params)
        else:
            if kind is lt.save_resume_data_failed_alert and a.handle.is_valid():
                self._resume_waiting.discard(key_of(a.handle.info_hashes()))
            if is_problem(a):
                self._errors += 1
                log_problem(a)

    def recheck_sources(self) -> list[str]:
        """Take out of the session every torrent seeded in place whose file changed since it
        was hashed (seed/nocopy.py); their keys. A stat per such torrent."""
        changed = [key for key, src in self._sources.items() if not src.unchanged()]
        for key in changed:
            log.warning("%s: %s changed since it was hashed: no longer seeded", key,
                        self._sources[key].path)
            self.remove(key)
        return changed

    # -- cache side ----------------------------------------------------------------------

    def _on_evicted(self, key: str) -> None:
        # Called by the cache (maybe from a worker thread, cache lock held) before the
        # files go: take the torrent out of the session first. remove_torrent only posts.
        handle = self._torrents.evict(key)
        ses = self._ses
        if handle is not None and ses is not None and handle.is_valid():
            ses.remove_torrent(handle)
        with contextlib.suppress(OSError):
            self._resume.delete(key)


def _drop(holder: list[lt.session]) -> None:
    """Drop the session's last reference, so its destructor runs in this thread."""
    holder.clear()
