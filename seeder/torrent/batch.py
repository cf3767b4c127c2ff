"""Torrents of many small listed objects, a batch per worker-thread hop (the scanner's).

A first scan of a bucket of many small files costs per object, not per byte. Through
``TorrentService.get_torrent(listed=)`` each object is a job of its own: two tasks, a limiter,
a thread hop for its read and the trio thread's wake-up after it, every hop a GIL handoff
among the store's threads (docs/benchmarks.md, issue 19). Here the small objects of a listing
page (``hashing.SMALL_OBJECT`` or less) of a store that reads many objects in one hop
(``SupportsReadMany``: a local directory, whose listing entry is its HEAD) are made a batch
(``batchplan``) at a time: one worker-thread hop reads each object pinned to its listed ETag
(a file changed since fails alone, ObjectChanged: never a wrong torrent), hashes it and
encodes its torrent (``service.entry_of``); the bytes go into the seed cache where the
seeding policy wants a copy (one more thread hop for the batch's writes and commits), and the
trio thread records each entry as a job does (``TorrentService.store_entry``: its row in the
catalog's open transaction, committed with the scanner's next flush; the listeners told).

Left to the per-object path: stores without ``read_many`` (S3: its reads overlap only as
requests in flight), and every object of a daemon in a cluster (``SharedStore.generate_once``
makes each torrent once across the nodes). A request for an object of a batch meanwhile is
not joined to it (no single flight): both make the same torrent; the catalog keeps one row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import trio

from seeder.store import NoSuchBucket, NoSuchKey, ObjectInfo, Store, SupportsReadMany
from seeder.torrent import hashing
from seeder.torrent.catalog import CatalogError
from seeder.torrent.entry import Entry
from seeder.torrent.policy import wanted_piece_length
from seeder.torrent.service import SafeSink, TorrentService, entry_of

__all__ = ["SmallBatches"]

log = logging.getLogger(__name__)


class SmallBatches:
    """Makes the torrents of listed small objects a batch at a time, for ``service``."""

    def __init__(self, service: TorrentService) -> None:
        self.service = service

    def takes(self, store: Store) -> bool:
        """Whether the small objects ``store`` lists can be made in batches here."""
        return (self.service.shared is None and isinstance(store, SupportsReadMany)
                and getattr(store, "listing_is_head", False))

    async def make(self, bucket: str, infos: Sequence[ObjectInfo]) -> list[Entry | Exception]:
        """The torrents of ``infos`` (current objects of ``bucket`` as just listed, each at
        most ``hashing.SMALL_OBJECT`` bytes), made and recorded; per object, in order, its
        Entry or the Exception that failed it (ObjectChanged, NoSuchKey: its cached entry
        is dropped, StoreError, ...). NoSuchBucket if the bucket is not configured."""
        service = self.service
        store, bconf = service.stores.get(bucket), service.config.bucket(bucket)
        if store is None or bconf is None or not isinstance(store, SupportsReadMany):
            raise NoSuchBucket(bucket)
        config = service.config
        hybrid = bconf.torrent_format == "hybrid"
        started = time.monotonic()
        sinks = [SafeSink.open(service.chunk_sink_factory, info, f"{bucket}/{info.key}")
                 for info in infos]
        keep = any(sink is not None for sink in sinks)

        def then(info: ObjectInfo, data: bytes) -> tuple[Entry, bytes | None]:
            # In the worker thread: everything but the catalog and the listeners.
            hashes = hashing.hash_whole(info, data, wanted_piece_length(bconf, info.size),
                                        hybrid=hybrid)
            return entry_of(config, bconf, store, info, None, hashes), data if keep else None

        try:
            results = await store.read_many(infos, then)
            out: list[Entry | Exception] = []
            commits: list[tuple[SafeSink, bytes, str]] = []
            for result, sink in zip(results, sinks, strict=True):
                if isinstance(result, Exception):
                    out.append(result)
                    if sink is not None:
                        sink.abort()
                    continue
                entry, data = result
                out.append(entry)
                if sink is not None and data is not None:
                    commits.append((sink, data, entry.seed_key))
            if commits:  # file writes and an fsync per commit: not on the trio thread
                await trio.to_thread.run_sync(_commit_all, commits)
        except BaseException:
            for sink in sinks:
                if sink is not None:
                    sink.abort()  # a no-op for a sink committed already
            raise
        self._record(bucket, infos, out, time.monotonic() - started)
        return out

    def _record(self, bucket: str, infos: Sequence[ObjectInfo], results: list[Entry | Exception],
                seconds: float) -> None:
        """The batch's entries into the catalog and to the listeners, its failures' cached
        entries dropped where the object is gone, the metrics counted."""
        service = self.service
        metrics = service.metrics
        made = read = 0
        for info, result in zip(infos, results, strict=True):
            if isinstance(result, Entry):
                service.store_entry(result, commit=False)
                made += 1
                read += info.size
                if metrics:
                    metrics.objects.add_origin(bucket, info.key, info.size)
                    metrics.generation_duration_seconds.observe(seconds)
            elif isinstance(result, NoSuchKey):
                try:
                    service.forget(bucket, info.key)
                except CatalogError as exc:
                    log.error("%s", exc)
        if not metrics:
            return
        metrics.hashed_bytes_total.inc(read)
        metrics.backend_read_bytes_total.labels(bucket=bucket).inc(read)
        metrics.generations_total.labels(result="ok").inc(made)
        if made < len(infos):
            metrics.generations_total.labels(result="error").inc(len(infos) - made)


def _commit_all(commits: list[tuple[SafeSink, bytes, str]]) -> None:
    """Write and commit the batch's seed-cache copies (a worker thread; SafeSink logs its
    failures and never raises)."""
    for sink, data, seed_key in commits:
        sink.write(0, data)
        sink.commit(seed_key)
