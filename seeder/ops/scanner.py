"""The bucket scanner: list every bucket periodically, make torrents ahead of requests.

A pass lists each bucket and merges the listing with the catalog in key order, a page of
``PAGE`` objects at a time (:func:`plan`, pure, on each page and the catalog rows of its key
range; memory stays constant whatever the bucket's size). It asks the TorrentService for every
new or changed qualifying object (so single flight and the generation bounds apply; at most
``generation.concurrency`` scanner requests are in flight, or ``service.SMALL_JOBS`` for small
objects), except the small objects of a store that reads many in one hop (a local directory):
those are made a batch at a time (``seeder.torrent.batch``, ``BATCHES_IN_FLIGHT`` batches at
once). It drops catalog entries whose objects are gone. An unchanged object costs its
listing entry only: no HEAD, no read. A backend error in one bucket is logged and the pass
moves on; a listing that failed midway drops nothing past the last page it gave. Entries of
buckets no longer configured are dropped. The first pass starts right away, later ones
``interval`` seconds after the previous pass ended.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass

import trio

from seeder.store import NoSuchKey, ObjectInfo, Store, StoreError
from seeder.torrent.batch import SmallBatches
from seeder.torrent.batchplan import BATCHES_IN_FLIGHT, batches
from seeder.torrent.entry import Entry
from seeder.torrent.hashing import SMALL_OBJECT
from seeder.torrent.policy import NotQualified, check_qualifies
from seeder.torrent.service import SMALL_JOBS, TorrentService

__all__ = ["ScanPlan", "ScanSummary", "plan", "run_scanner", "scan_once"]

log = logging.getLogger(__name__)

PAGE = 1000  # listing entries merged with the catalog at once (S3 lists 1000 per request)


@dataclass(frozen=True, slots=True)
class ScanPlan:
    to_generate: tuple[ObjectInfo, ...]  # new or changed, qualifying, in listing order
    to_drop: tuple[str, ...]  # keys with a cached torrent whose object is gone or unqualified
    skipped: int  # listed objects that do not qualify (too large, empty, SSE-C)


def plan(listing: Iterable[ObjectInfo], cached: Mapping[str, str]) -> ScanPlan:
    """Compare a bucket listing with the catalog's ``{key: etag}`` for that bucket.

    To generate: qualifying objects with no cached torrent or a different ETag. To drop: cached
    keys no longer listed, and cached keys whose object changed into one that does not qualify
    (the old torrent describes bytes that are gone). Unchanged objects are left alone.
    """
    to_generate: list[ObjectInfo] = []
    to_drop: list[str] = []
    listed: set[str] = set()
    skipped = 0
    for info in listing:
        if info.key in listed:  # a listing never repeats a key; if one does, first wins
            continue
        listed.add(info.key)
        try:
            check_qualifies(info.size, info.sse_c)
        except NotQualified:
            skipped += 1
            if info.key in cached and cached[info.key] != info.etag:
                to_drop.append(info.key)
            continue
        if cached.get(info.key) != info.etag:
            to_generate.append(info)
    to_drop.extend(sorted(k for k in cached if k not in listed))
    return ScanPlan(tuple(to_generate), tuple(to_drop), skipped)


@dataclass(slots=True)
class ScanSummary:
    """What one pass did; counted into while the pass runs."""

    buckets: int = 0
    bucket_errors: int = 0
    listed: int = 0
    generated: int = 0
    failed: int = 0
    skipped: int = 0
    dropped: int = 0
    seconds: float = 0.0


async def run_scanner(
    service: TorrentService,
    stores: Mapping[str, Store],
    interval: float,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Scan forever: a pass now, then one ``interval`` seconds after each pass ends.

    Reports started before the first pass (startup does not wait for hashing). Returns never,
    unless cancelled. Errors of one object or bucket are logged, never raised.
    """
    task_status.started()
    while True:
        try:
            await scan_once(service, stores)
        except Exception:
            # e.g. the catalog's disk failing: the requests path reports that; keep scanning.
            log.exception("scan pass failed")
        await trio.sleep(interval)


async def scan_once(service: TorrentService, stores: Mapping[str, Store]) -> ScanSummary:
    """One pass over every bucket; returns (and logs) what it did."""
    t0 = time.monotonic()
    totals = ScanSummary()
    catalog = service.catalog
    for stale in catalog.buckets() - set(stores):
        while rows := catalog.slot_page(stale, PAGE):  # bounded: every row found is deleted
            for key, version_id in rows:
                if service.forget(stale, key, version_id):
                    totals.dropped += 1
                else:
                    catalog.delete(stale, key, version_id)
    for bucket, store in stores.items():
        totals.buckets += 1
        try:
            await _scan_bucket(service, bucket, store, totals)
        except Exception as exc:
            totals.bucket_errors += 1
            log.warning("scan: listing bucket %s failed, skipping the rest of it this pass:"
                        " %s: %s", bucket, type(exc).__name__, exc,
                        exc_info=not isinstance(exc, StoreError))
    totals.seconds = time.monotonic() - t0
    log.info("scan: %d buckets (%d failed), %d objects listed, %d torrents generated, "
             "%d failed, %d not qualifying, %d dropped, %.2f s",
             totals.buckets, totals.bucket_errors, totals.listed, totals.generated,
             totals.failed, totals.skipped, totals.dropped, totals.seconds)
    return totals


async def _pages(listing: AsyncIterator[ObjectInfo]) -> AsyncIterator[list[ObjectInfo]]:
    """The listing in pages of up to PAGE objects."""
    page: list[ObjectInfo] = []
    async for info in listing:
        page.append(info)
        if len(page) >= PAGE:
            yield page
            page = []
    if page:
        yield page


async def _scan_bucket(service: TorrentService, bucket: str, store: Store,
                       totals: ScanSummary) -> None:
    """Merge the bucket's listing with its catalog rows in key order, a page at a time
    (constant memory); generate and drop as each page says. A listing that fails midway
    has dropped only what its pages proved gone; a listing out of key order stops the
    bucket's pass (a merge could not tell deleted keys from late ones). The torrents made
    are committed to the catalog a page at a time and when the pass ends, however it ends
    (``get_torrent(listed=)`` leaves them in the open transaction)."""
    try:
        await _merge(service, bucket, store, totals)
    finally:
        service.catalog.flush()


async def _merge(service: TorrentService, bucket: str, store: Store,
                 totals: ScanSummary) -> None:
    catalog = service.catalog
    after: str | None = None  # the catalog is merged up to and including this key
    async with trio.open_nursery() as nursery:
        generate = _Generator(service, bucket, store, nursery, totals)
        async for page in _pages(store.list()):
            upto = page[-1].key
            if (after is not None and page[0].key < after) or any(
                    a.key > b.key for a, b in itertools.pairwise(page)):
                raise StoreError(f"the listing of {bucket} is not in key order")
            totals.listed += len(page)
            cached = _cached_for(service, bucket, page, after, upto, totals)
            the_plan = plan(page, cached)
            after = upto
            totals.skipped += the_plan.skipped
            for key in the_plan.to_drop:
                if service.forget(bucket, key, etag=cached.get(key)):
                    totals.dropped += 1
            await generate.start_all(the_plan.to_generate)
            catalog.flush()  # the rows the jobs made so far: one commit for many
        # Everything the catalog holds past the last listed key is gone.
        while rest := catalog.etag_page(bucket, after, None, PAGE):  # bounded: after grows
            for key, etag in rest:
                if service.forget(bucket, key, etag=etag):
                    totals.dropped += 1
            after = rest[-1][0]


def _cached_for(service: TorrentService, bucket: str, page: list[ObjectInfo], after: str | None,
                upto: str, totals: ScanSummary) -> dict[str, str]:
    """The catalog's ETags of the keys in ``page``; rows in the page's key range that the page
    does not list are gone and dropped here (paged too: a range may hide many deletions)."""
    listed = {info.key for info in page}
    cached: dict[str, str] = {}
    while rows := service.catalog.etag_page(bucket, after, upto, PAGE):  # bounded: after grows
        for key, etag in rows:
            if key in listed:
                cached[key] = etag
            elif service.forget(bucket, key, etag=etag):
                totals.dropped += 1
        after = rows[-1][0]
    return cached


class _Generator:
    """Spawns generation tasks into ``nursery``: only as many exist as the service runs jobs
    (acquire before spawning); small objects have their own, wider bound (SMALL_JOBS), or
    are made in batches (``seeder.torrent.batch``) where the store allows, BATCHES_IN_FLIGHT
    at once."""

    def __init__(self, service: TorrentService, bucket: str, store: Store,
                 nursery: trio.Nursery, totals: ScanSummary) -> None:
        self.service = service
        self.bucket = bucket
        self.nursery = nursery
        self.totals = totals
        self.large = trio.CapacityLimiter(max(1, service.config.generation.concurrency))
        self.small = trio.CapacityLimiter(SMALL_JOBS)
        batched = SmallBatches(service)
        self.batches = batched if batched.takes(store) else None
        self.batch_limit = trio.CapacityLimiter(BATCHES_IN_FLIGHT)

    async def start_all(self, infos: Sequence[ObjectInfo]) -> None:
        """Start making the torrents of ``infos`` (a page's objects to generate)."""
        if self.batches is None:
            for info in infos:
                await self.start(info)
            return
        for info in infos:
            if info.size > SMALL_OBJECT:
                await self.start(info)
        for batch in batches(info for info in infos if info.size <= SMALL_OBJECT):
            token = object()
            await self.batch_limit.acquire_on_behalf_of(token)
            self.nursery.start_soon(self._batch, batch, token)

    async def start(self, info: ObjectInfo) -> None:
        token = object()
        limit = self.small if info.size <= SMALL_OBJECT else self.large
        await limit.acquire_on_behalf_of(token)
        self.nursery.start_soon(self._one, info, limit, token)

    async def _one(self, info: ObjectInfo, limit: trio.CapacityLimiter, token: object) -> None:
        try:
            await self.service.get_torrent(self.bucket, info.key, listed=info)
            self.totals.generated += 1
        except Exception as exc:
            self._failed(info, exc)
        finally:
            limit.release_on_behalf_of(token)

    async def _batch(self, batch: list[ObjectInfo], token: object) -> None:
        assert self.batches is not None
        try:
            results: Sequence[Entry | Exception] = await self.batches.make(self.bucket, batch)
        except Exception as exc:
            results = [exc] * len(batch)
        finally:
            self.batch_limit.release_on_behalf_of(token)
        for info, result in zip(batch, results, strict=True):
            if isinstance(result, Entry):
                self.totals.generated += 1
            else:
                self._failed(info, result)

    def _failed(self, info: ObjectInfo, exc: Exception) -> None:
        """Count (and log) why the torrent of ``info`` was not made."""
        bucket, totals = self.bucket, self.totals
        if isinstance(exc, NotQualified):
            totals.skipped += 1  # e.g. SSE-C: a listing does not tell, a HEAD does
        elif isinstance(exc, NoSuchKey):
            pass  # deleted since the listing; any cached entry was dropped
        elif isinstance(exc, StoreError):
            totals.failed += 1
            log.warning("scan: %s/%s: %s: %s", bucket, info.key, type(exc).__name__, exc)
        else:
            totals.failed += 1
            log.error("scan: %s/%s: unexpected error", bucket, info.key, exc_info=exc)
