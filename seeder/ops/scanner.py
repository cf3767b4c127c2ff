"""The bucket scanner: list every bucket periodically, make torrents ahead of requests.

A pass lists each bucket, compares the listing with the catalog (:func:`plan`, pure), asks the
TorrentService for every new or changed qualifying object (so single flight and the global
generation bound apply; at most ``generation.concurrency`` scanner requests are in flight), and
drops catalog entries whose objects are gone. A backend error in one bucket is logged and the
pass moves on; a bucket whose listing failed drops nothing. Entries of buckets no longer
configured are dropped. The first pass starts right away, later ones ``interval`` seconds after
the previous pass ended.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import trio

from seeder.store import NoSuchKey, ObjectInfo, Store, StoreError
from seeder.torrent.service import NotQualified, TorrentService, check_qualifies

__all__ = ["ScanPlan", "ScanSummary", "plan", "run_scanner", "scan_once"]

log = logging.getLogger(__name__)


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
    for stale in service.catalog.buckets() - set(stores):
        for entry in service.catalog.entries(stale):
            if service.forget(entry.bucket, entry.key, entry.version_id):
                totals.dropped += 1
    for bucket, store in stores.items():
        totals.buckets += 1
        try:
            listing = [info async for info in store.list()]
        except Exception as exc:
            totals.bucket_errors += 1
            log.warning("scan: listing bucket %s failed, skipping it this pass: %s: %s",
                        bucket, type(exc).__name__, exc,
                        exc_info=not isinstance(exc, StoreError))
            continue
        totals.listed += len(listing)
        cached = service.catalog.etags(bucket)
        the_plan = plan(listing, cached)
        totals.skipped += the_plan.skipped
        for key in the_plan.to_drop:
            if service.forget(bucket, key, etag=cached.get(key)):
                totals.dropped += 1
        await _generate_all(service, bucket, the_plan.to_generate, totals)
    totals.seconds = time.monotonic() - t0
    log.info("scan: %d buckets (%d failed), %d objects listed, %d torrents generated, "
             "%d failed, %d not qualifying, %d dropped, %.1f s",
             totals.buckets, totals.bucket_errors, totals.listed, totals.generated,
             totals.failed, totals.skipped, totals.dropped, totals.seconds)
    return totals


async def _generate_all(service: TorrentService, bucket: str, infos: Iterable[ObjectInfo],
                        totals: ScanSummary) -> None:
    # Only `limit` tasks exist at once, however long the listing: acquire before spawning.
    limit = trio.CapacityLimiter(max(1, service.config.generation.concurrency))

    async def one(info: ObjectInfo, token: object) -> None:
        try:
            await service.get_torrent(bucket, info.key)
            totals.generated += 1
        except NotQualified:
            totals.skipped += 1  # e.g. SSE-C: a listing does not tell, a HEAD does
        except NoSuchKey:
            pass  # deleted since the listing; get_torrent dropped any entry
        except StoreError as exc:
            totals.failed += 1
            log.warning("scan: %s/%s: %s: %s", bucket, info.key, type(exc).__name__, exc)
        except Exception:
            totals.failed += 1
            log.exception("scan: %s/%s: unexpected error", bucket, info.key)
        finally:
            limit.release_on_behalf_of(token)

    async with trio.open_nursery() as nursery:
        for info in infos:
            token = object()
            await limit.acquire_on_behalf_of(token)
            nursery.start_soon(one, info, token)
