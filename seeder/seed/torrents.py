"""The session's torrents: their libtorrent handles and the bookkeeping around each.

Keys are seed keys (`seeder.torrent.entry.seed_key`). A torrent is either seeding from the
seed cache (``from_cache``) or downloading into a pinned cache entry (``downloading``) until
libtorrent has flushed every piece; `flushed` then completes the cache entry. Used on the trio
thread only, except `evict`, which the cache may call from a worker thread.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import libtorrent as lt
import trio

from seeder.seed.cache import CacheError, SeedCache
from seeder.seed.settings import key_of
from seeder.seed.swarm_budget import Throttle

__all__ = ["TorrentTable"]

log = logging.getLogger("seeder.seed.session")  # the session's lines, whichever module


class TorrentTable:
    """Handles by seed key, and what the session knows of each torrent."""

    def __init__(self, cache: SeedCache) -> None:
        self.cache = cache
        self.handles: dict[str, lt.torrent_handle] = {}
        self.downloading: set[str] = set()  # pinned in the cache until finished
        self.from_cache: set[str] = set()
        self.uploaded: dict[str, int] = {}  # last total_payload_upload seen, for LRU touch
        self.peered: dict[str, int] = {}  # connected peers, from the last state update
        self.throttled: dict[str, Throttle] = {}  # torrent -> its throttle (set_throttle)
        self.complete: dict[str, trio.Event] = {}  # set once the torrent has every piece
        # Torrents libtorrent accepts peers for (torrent_checked_alert). Until then it turns
        # every incoming peer away ("torrent is not ready to accept peers"), even for a
        # torrent added whole in seed_mode, whose add_torrent returns before that.
        self.checked: set[str] = set()

    def valid(self, key: str) -> lt.torrent_handle | None:
        """The torrent's handle if it is in the session and valid, else None."""
        handle = self.handles.get(key)
        if handle is None or not handle.is_valid():
            return None
        return handle

    def completed(self, key: str) -> None:
        """The torrent has every piece: wake `SeedSession.wait_complete`."""
        self.complete.setdefault(key, trio.Event()).set()

    def finished(self, handle: lt.torrent_handle) -> None:
        """libtorrent says the torrent has every piece (torrent_finished_alert)."""
        key = _key(handle)
        if key is None:
            return
        if key in self.downloading:
            # Pieces pass their hash check before libtorrent writes them out: the entry is
            # complete (trusted for seed_mode) only once its buffers are flushed.
            handle.flush_cache()
        elif key in self.checked:
            self.completed(key)

    def ready(self, handle: lt.torrent_handle) -> None:
        """libtorrent accepts peers for the torrent (torrent_checked_alert): a torrent added
        whole (seed mode, resume data, a checked cache entry) is complete from now. For
        those libtorrent posts torrent_finished_alert *before* this one, so `finished`
        alone would wake `wait_complete` while peers are still turned away."""
        key = _key(handle)
        if key not in self.handles:
            return
        self.checked.add(key)
        if key not in self.downloading and handle.status(0).is_seeding:
            self.completed(key)

    def flushed(self, handle: lt.torrent_handle) -> None:
        """A download's pieces are on disk (cache_flushed_alert): its cache entry is complete."""
        key = _key(handle)
        if key not in self.downloading:
            return
        self.downloading.discard(key)
        self.cache.complete(key)
        self.completed(key)
        handle.save_resume_data(lt.torrent_handle.save_info_dict)
        log.info("downloaded %s into the seed cache: seeding", key)

    def state_update(self, statuses: list[Any]) -> None:
        """Record each torrent's upload and peers (state_update_alert)."""
        # Uploading counts as use of the cache entry (LRU).
        for st in statuses:
            key = key_of(st.info_hashes)
            up = st.total_payload_upload
            if up > self.uploaded.get(key, 0):
                with contextlib.suppress(CacheError):
                    self.cache.touch(key)
            self.uploaded[key] = up
            self.peered[key] = st.num_peers

    def evict(self, key: str) -> lt.torrent_handle | None:
        """Drop the torrent's bookkeeping as its cache entry is evicted; its handle, if any."""
        handle = self.handles.get(key)
        self._drop(key)
        return handle

    def forget(self, key: str, *, drop_partial: bool) -> None:
        """Drop the torrent's bookkeeping (waiters wake and find it gone); a download's
        pinned cache entry is dropped (``drop_partial``) or unpinned."""
        self._drop(key)
        if key in self.downloading:
            self.downloading.discard(key)
            if drop_partial:
                self.cache.remove(key)
            else:
                self.cache.unpin(key)

    def _drop(self, key: str) -> None:
        """Forget the torrent's handle and what was known of it; waiters of its completion
        wake and find it gone (evicted means complete, or removed before it was ready)."""
        self.handles.pop(key, None)
        self.checked.discard(key)
        event = self.complete.pop(key, None)
        if event is not None:
            event.set()
        self.from_cache.discard(key)
        self.uploaded.pop(key, None)
        self.peered.pop(key, None)
        self.throttled.pop(key, None)


def _key(handle: lt.torrent_handle) -> str | None:
    """The seed key of an alert's torrent; None once the handle is no longer valid."""
    return key_of(handle.info_hashes()) if handle.is_valid() else None
