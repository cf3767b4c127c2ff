"""TorrentService: get-or-generate a torrent for an object, catalog-backed, single flight.

The flow for one request: HEAD the object, check that S3 would make a torrent for it
(`policy.check_qualifies`), answer from the catalog when the recorded ETag (and format) still
match, else generate. Concurrent requests for one (bucket, key, version, etag) share one
generation job. Jobs run in the service's own nursery (:meth:`TorrentService.run`), so a caller
that gives up (client hung up, cancelled) does not cancel a job others are waiting on; a job
that fails hands the same exception to every waiter and caches nothing.

Generation is bounded globally by ``generation.concurrency`` (small objects: ``SMALL_JOBS``,
see there); each job hashes with
``generation.threads`` worker threads and may stream the bytes it reads into the seed cache
(``chunk_sink_factory``). Listeners hear ``torrent_added(entry)`` / ``torrent_removed(entry)``
after the catalog changed, which is how the tracker and the libtorrent session follow along.

Links follow the config. A torrent's tracker and web seed URLs (`links.torrent_links`: from
``[tracker]``, ``[server] public_url`` and the bucket's web seed settings) are outside
``info``, so a config change does not change the object's torrent, only its links. A cached
torrent whose links differ from what the config now gives is *relinked*: its links are
rewritten (``metainfo.with_links``, no hashing), the info-hashes checked equal, the catalog
row replaced, and listeners hear ``torrent_relinked(entry)`` (the session updates its
trackers and web seeds). This happens on GetObjectTorrent (an unchanged torrent costs one
walk of its top level, no encoding) and for the whole catalog at startup and after a reload
(:meth:`TorrentService.relink_all`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import trio

from seeder import __version__
from seeder.config import BucketConfig, Config
from seeder.store import NoSuchBucket, NoSuchKey, ObjectInfo, Store, StoreUnavailable
from seeder.torrent import hashing, metainfo
from seeder.torrent.catalog import Catalog, CatalogError
from seeder.torrent.entry import Entry
from seeder.torrent.hooks import ChunkSink, ChunkSinkFactory, Listener, SharedStore
from seeder.torrent.links import has_links, links_or_none, relink_entry, torrent_links
from seeder.torrent.linkstate import LINKS_META, links_fingerprint
from seeder.torrent.policy import check_qualifies, is_current, object_version, wanted_piece_length
from seeder.torrent.progress import ProgressLog

__all__ = [
    "FRESHNESS_WAIT",
    "ChunkSink",
    "Fetched",
    "Listener",
    "SafeSink",
    "SharedStore",
    "TorrentService",
    "entry_of",
]

log = logging.getLogger(__name__)

# Jobs for small objects (``hashing.SMALL_OBJECT``: one read, hashed in well under a
# millisecond) have their own bound, apart from ``generation.concurrency``: their cost is the
# round trips (a HEAD, a GET, a catalog commit), so many overlap; for an s3 bucket this is the
# number of small objects whose backend requests are in flight at once.
SMALL_JOBS = 16

RELINK_PAGE = 1000  # catalog rows relinked per read and per commit

# Seconds a cached torrent waits for the backend's freshness answer before it is served
# stale (fetch_torrent): an outage delays cached answers by at most this.
FRESHNESS_WAIT = 2.0


class Fetched(NamedTuple):
    """A torrent and whether it is ``stale`` (served from the catalog unchecked because the
    backend could not be asked)."""

    entry: Entry
    stale: bool


# -- the service -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Job:
    done: trio.Event = field(default_factory=trio.Event)
    scanned: bool = False  # started by the scanner: its row is committed by the scanner's flush
    result: Entry | None = None
    error: BaseException | None = None


class TorrentService:
    """Get-or-generate torrents. Start :meth:`run` in a nursery before calling :meth:`get_torrent`.

    ``stores`` maps bucket name -> Store; ``config.buckets`` gives each bucket's torrent format,
    web seed mode and piece length. ``metrics`` is a SeederMetrics or None.
    """

    def __init__(
        self,
        catalog: Catalog,
        stores: Mapping[str, Store],
        config: Config,
        *,
        metrics: Any = None,
        chunk_sink_factory: ChunkSinkFactory | None = None,
        listeners: Iterable[Listener] = (),
        shared: SharedStore | None = None,
    ) -> None:
        self.catalog = catalog
        self.shared = shared
        self.stores = stores
        self.config = config
        self.metrics = metrics
        self.listeners: list[Listener] = list(listeners)
        self.chunk_sink_factory = chunk_sink_factory
        self._limiter = trio.CapacityLimiter(max(1, config.generation.concurrency))
        self._small_limiter = trio.CapacityLimiter(SMALL_JOBS)
        self._jobs: dict[tuple[str, str, str, str], _Job] = {}
        self._nursery: trio.Nursery | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the generation jobs. Returns never, unless cancelled; then running jobs are
        cancelled and their waiters get StoreUnavailable."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._update_catalog_gauge()
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    def add_listener(self, listener: Listener) -> None:
        """Also tell ``listener`` about catalog changes from now on."""
        self.listeners.append(listener)

    # -- queries -----------------------------------------------------------------------------

    @property
    def generating(self) -> int:
        """Number of generation jobs running or queued."""
        return len(self._jobs)

    def lookup_cached(self, bucket: str, key: str, version_id: str | None = None) -> Entry | None:
        """The cached entry, without touching the store (it may be stale)."""
        return self.catalog.get(bucket, key, version_id)

    async def get_torrent(self, bucket: str, key: str, version_id: str | None = None, *,
                          listed: ObjectInfo | None = None) -> Entry:
        """The torrent for the object now at (bucket, key[, version_id]), generating it if needed.

        ``listed``: this object's entry in a listing of the store just made (the scanner),
        whose merge with the catalog found no current torrent for it: the catalog is not read
        again (a torrent made meanwhile is made again, never a wrong one), and the new row is
        committed with the scanner's next ``catalog.flush()`` (every reader of this catalog
        sees it at once). It stands in for the HEAD when the store says its listing gives
        what a HEAD does (``listing_is_head``: a local directory's stat). Reads are pinned
        to its ETag, so a file changed since fails the job (ObjectChanged), never makes a
        wrong torrent.

        Raises NotQualified (too large, SSE-C, empty), the store's errors (NoSuchBucket,
        NoSuchKey, ObjectChanged, StoreUnavailable, BackendAccessDenied, InvalidKey), and
        CatalogError. A NoSuchKey drops a cached entry for the key. Cancelling the caller
        leaves a shared job running for the others.
        """
        return (await self._get(bucket, key, version_id, stale_ok=False, listed=listed)).entry

    async def fetch_torrent(self, bucket: str, key: str,
                            version_id: str | None = None) -> Fetched:
        """As :meth:`get_torrent`, but when the backend cannot be asked (StoreUnavailable,
        its breaker open, or no answer within ``FRESHNESS_WAIT`` seconds) and the catalog
        has a torrent for the key, that torrent, marked ``stale``: it describes the version
        it was hashed from, which the backend could not confirm is still current. The
        usual freshness check runs again on the next request."""
        return await self._get(bucket, key, version_id, stale_ok=True)

    async def _get(self, bucket: str, key: str, version_id: str | None,
                   stale_ok: bool, listed: ObjectInfo | None = None) -> Fetched:
        store, bconf = self._bucket(bucket)
        try:
            cached = None if listed is not None else self.catalog.get(bucket, key, version_id)
        except CatalogError as exc:
            # A broken catalog costs a generation, not an answer.
            log.error("%s", exc)
            cached = None
        try:
            if stale_ok and cached is not None and getattr(store, "guard", None) is not None:
                # The answer is at hand: a hung backend may delay it only so long. (Only
                # network stores have a guard; a local directory never hangs, and a cancel
                # scope per request is measurable on a cached GetObjectTorrent.)
                found = None
                with trio.move_on_after(FRESHNESS_WAIT):
                    found = await store.head(key, version_id)
                if found is None:
                    raise StoreUnavailable(f"no answer within {FRESHNESS_WAIT:g} s")
                info = found
            elif (listed is not None and version_id is None and listed.key == key
                    and getattr(store, "listing_is_head", False)):
                info = listed
            else:
                info = await store.head(key, version_id)
        except NoSuchKey:
            try:
                self.forget(bucket, key, version_id)
            except CatalogError as exc:
                log.error("%s", exc)
            raise
        except StoreUnavailable as exc:
            if not stale_ok or cached is None:
                raise
            log.warning("%s/%s: backend unavailable (%s): serving the cached torrent",
                        bucket, key, exc)
            if self.metrics:
                self.metrics.stale_answers_total.labels(bucket=bucket).inc()
            return Fetched(cached, True)
        return await self._answer(store, bconf, info, version_id, cached,
                                  scanned=listed is not None)

    async def _answer(self, store: Store, bconf: BucketConfig, info: ObjectInfo,
                      version_id: str | None, cached: Entry | None,
                      scanned: bool = False) -> Fetched:
        """The fresh torrent for ``info``: ``cached`` if still current, else generated."""
        check_qualifies(info.size, info.sse_c)
        if (not scanned and (cached is None or not is_current(cached, info, bconf))
                and (info.bucket, info.key, version_id or "", info.etag) not in self._jobs):
            # A job for this object may have finished while the caller awaited the HEAD: its
            # torrent is in the catalog now, and a new job would read the object again.
            try:
                cached = self.catalog.get(info.bucket, info.key, version_id) or cached
            except CatalogError as exc:
                log.error("%s", exc)
        if cached is not None and is_current(cached, info, bconf):
            version = object_version(info, version_id)
            want = self._links(store, bconf, cached.key, version)
            if cached.object_version == version and has_links(cached, want):
                return Fetched(cached, False)
            # Same bytes, other links: another version id (a row from before versions were
            # recorded, or the same bytes written again), or the config's tracker / web seed
            # changed. Rewrite the links, no hashing.
            relinked = self._relink(cached, want, version, info.last_modified)
            if relinked is not None:
                return Fetched(relinked, False)
        return Fetched(await self._shared_job(store, bconf, info, version_id, scanned), False)

    def forget(self, bucket: str, key: str, version_id: str | None = None, *,
               etag: str | None = None, share: bool = True) -> Entry | None:
        """Drop the entry (only if it still has ``etag``, when given) and tell the listeners
        (and, with ``share``, the other daemons of a cluster)."""
        if etag is not None:
            cur = self.catalog.get(bucket, key, version_id)
            if cur is None or cur.etag != etag:
                return None
        old = self.catalog.delete(bucket, key, version_id)
        if old is not None:
            log.info("dropped the torrent for %s/%s (object gone)", bucket, key)
            self._notify_removed(old)
            self._update_catalog_gauge()
            if share and self.shared is not None:
                self.shared.forgotten(old)
        return old

    def adopt(self, entry: Entry) -> None:
        """Store a torrent another daemon of the cluster made (listeners told as for one
        made here; an older object's entry does not replace a newer one). Raises
        CatalogError."""
        cur = self.catalog.get(entry.bucket, entry.key, entry.version_id)
        if cur is not None and cur.etag == entry.etag and cur.torrent == entry.torrent:
            return
        self.store_entry(entry)

    def local_entries(self) -> list[Entry]:
        """Every torrent in this daemon's catalog. Raises CatalogError."""
        return list(self.catalog.entries())

    def relink_all(self, buckets: Iterable[str] | None = None) -> int:
        """Relink every catalog torrent of a configured bucket (of ``buckets``, if given)
        whose links differ from what the config gives now (see the module docstring); the
        number relinked. No store access: the links depend on the config, the key and the
        recorded object version. For startup (before the session resumes) and after a
        reload. Synchronous (no hashing), a page of rows at a time (constant memory). Catalog
        errors are logged, never raised; once the whole catalog was walked without one, the
        catalog records `links_fingerprint` (see `links_current`)."""
        relinked = 0
        try:
            names = self.catalog.buckets()
            if buckets is not None:
                names &= set(buckets)
            for bucket in sorted(names):
                store, bconf = self.stores.get(bucket), self.config.bucket(bucket)
                if store is None or bconf is None:
                    continue  # the scanner drops entries of buckets no longer configured
                after: tuple[str, str] | None = None
                while page := self.catalog.entry_page(bucket, after, RELINK_PAGE):
                    after = (page[-1].key, page[-1].version_id or "")
                    batch = []
                    for entry in page:
                        want = self._links(store, bconf, entry.key, entry.object_version)
                        if not has_links(entry, want):
                            new = relink_entry(entry, want, entry.object_version,
                                               entry.last_modified)
                            if new is not None:  # else hashed again at its next request
                                batch.append(new)
                    self.catalog.put_many(batch)  # one commit: ~10x faster than one per row
                    relinked += len(batch)
                    for entry in batch:
                        self._notify_relinked(entry)
            # Every row whose links could differ was walked (a reload passes the buckets
            # whose config changed; its [server] and [tracker] wait for a restart).
            self.catalog.set_meta(LINKS_META, links_fingerprint(self.config))
        except CatalogError as exc:
            log.error("relinking the catalog stopped: %s", exc)
        if relinked:
            log.info("relinked %d torrents to the configured tracker and web seed URLs",
                     relinked)
        return relinked

    def _links(self, store: Store, bconf: BucketConfig, key: str,
               version: str | None) -> metainfo.Links:
        return torrent_links(self.config, bconf, key, store.origin_url(key), version)

    def _relink(self, cached: Entry, links: metainfo.Links, version: str | None,
                last_modified: float) -> Entry | None:
        """``cached`` relinked (`links.relink_entry`), stored in the catalog, listeners told;
        None (the caller regenerates) if it cannot be."""
        entry = relink_entry(cached, links, version, last_modified)
        if entry is not None:
            self.store_entry(entry)
            trackers = [url for tier in links.announce_list for url in tier]
            log.info("%s/%s: relinked (trackers %s, web seed %s)", cached.bucket, cached.key,
                     ", ".join(trackers) or links.announce or "none",
                     ", ".join(links.url_list) or "none")
        return entry

    # -- generation --------------------------------------------------------------------------

    def _bucket(self, bucket: str) -> tuple[Store, BucketConfig]:
        store = self.stores.get(bucket)
        bconf = self.config.bucket(bucket)
        if store is None or bconf is None:
            raise NoSuchBucket(bucket)
        return store, bconf

    async def _shared_job(self, store: Store, bconf: BucketConfig, info: ObjectInfo,
                          version_id: str | None, scanned: bool = False) -> Entry:
        if self._nursery is None:
            raise RuntimeError("TorrentService.run() is not running")
        job_key = (info.bucket, info.key, version_id or "", info.etag)
        job = self._jobs.get(job_key)
        if job is None:
            job = self._jobs[job_key] = _Job(scanned=scanned)
            self._nursery.start_soon(self._run_job, job_key, job, store, bconf, info, version_id)
        await job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    async def _run_job(self, job_key: tuple[str, str, str, str], job: _Job, store: Store,
                       bconf: BucketConfig, info: ObjectInfo, version_id: str | None) -> None:
        name = f"{info.bucket}/{info.key}" + (f"?versionId={version_id}" if version_id else "")
        started = time.monotonic()
        result = "error"
        try:
            queued = bool(self.metrics)
            if queued:
                self.metrics.generation_queue_depth.inc()
            try:
                small = info.size <= hashing.SMALL_OBJECT
                async with self._small_limiter if small else self._limiter:
                    if queued:
                        queued = False
                        self.metrics.generation_queue_depth.dec()
                    started = time.monotonic()
                    entry = await self._generate_shared(store, bconf, info, version_id, name)
            finally:
                if queued:
                    self.metrics.generation_queue_depth.dec()
            job.result = entry
            result = "ok"
            self.store_entry(entry, commit=not job.scanned)
            log.log(_level(info), "generated the torrent for %s (%d bytes, %s, piece %d KiB)"
                    " in %.1f s", name, info.size, entry.format, entry.piece_length // 1024,
                    time.monotonic() - started)
        except trio.Cancelled:
            result = "cancelled"
            job.error = StoreUnavailable("torrent generation cancelled: the service is stopping")
            raise
        except Exception as exc:
            # Never into the service nursery: one object's failure is its waiters' business.
            job.error = exc
            log.warning("torrent generation for %s failed: %s: %s", name,
                        type(exc).__name__, exc)
        finally:
            del self._jobs[job_key]
            job.done.set()
            if self.metrics:
                self.metrics.generations_total.labels(result=result).inc()
                if result == "ok":
                    self.metrics.generation_duration_seconds.observe(time.monotonic() - started)

    async def _generate_shared(self, store: Store, bconf: BucketConfig, info: ObjectInfo,
                               version_id: str | None, name: str) -> Entry:
        """``_generate``, or in a cluster the torrent another daemon made of the object as
        it is now (relinked to this daemon's config if its links differ)."""
        if self.shared is None:
            return await self._generate(store, bconf, info, version_id, name)

        def accept(entry: Entry) -> bool:
            return entry.version_id == version_id and is_current(entry, info, bconf)

        entry, made_here = await self.shared.generate_once(
            info.bucket, info.key, version_id, accept,
            lambda: self._generate(store, bconf, info, version_id, name))
        if not made_here:
            version = object_version(info, version_id)
            want = self._links(store, bconf, info.key, version)
            if entry.object_version != version or not has_links(entry, want):
                entry = relink_entry(entry, want, version, info.last_modified) or entry
            log.info("took the torrent for %s from the cluster (no hashing)", name)
        return entry

    async def _generate(self, store: Store, bconf: BucketConfig, info: ObjectInfo,
                        version_id: str | None, name: str) -> Entry:
        piece_length = wanted_piece_length(bconf, info.size)
        hybrid = bconf.torrent_format == "hybrid"
        sink = SafeSink.open(self.chunk_sink_factory, info, name)
        progress = ProgressLog(name, info.size, time.monotonic())
        hashed = 0

        def on_progress(done: int) -> None:
            nonlocal hashed
            if self.metrics:
                self.metrics.hashed_bytes_total.inc(done - hashed)
                # Every hashed byte was read from the backend exactly once.
                self.metrics.backend_read_bytes_total.labels(bucket=info.bucket).inc(done - hashed)
                self.metrics.objects.add_origin(info.bucket, info.key, done - hashed)
            hashed = done
            line = progress.update(done, time.monotonic())
            if line:
                log.info("%s", line)

        log.log(_level(info), "generating the torrent for %s (%d bytes)", name, info.size)
        try:
            hashes = await hashing.hash_object(
                store, info, piece_length, hybrid=hybrid,
                threads=self.config.generation.threads,
                read_ahead=self.config.generation.read_ahead,
                on_chunk=None if sink is None else sink.write, on_progress=on_progress,
            )
            entry = entry_of(self.config, bconf, store, info, version_id, hashes)
        except BaseException:
            if sink is not None:
                sink.abort()
            raise
        if sink is not None:
            # commit fsyncs the whole object: seconds for a big one, so not on the trio thread.
            await trio.to_thread.run_sync(sink.commit, entry.seed_key)
        return entry

    def store_entry(self, entry: Entry, commit: bool = True) -> None:
        """Record a torrent made here or taken from the cluster: its catalog row (``commit``:
        at once; else in the open transaction, see ``Catalog.put_newest``), the listeners
        told, the gauge updated. A catalog error is logged (the torrent still serves)."""
        try:
            # Jobs for two ETags of one key may finish out of order: keep the newer object.
            written, old = self.catalog.put_newest(entry, commit=commit)
            if not written:
                return
        except CatalogError as exc:
            # The torrent is still good for the waiters; it just won't survive a restart.
            log.error("cannot record the torrent for %s/%s: %s", entry.bucket, entry.key, exc)
            return
        if old is not None and old.tracker_hashes != entry.tracker_hashes:
            self._notify_removed(old)
        if old is None or old.tracker_hashes != entry.tracker_hashes:
            self._notify_added(entry)
        elif old.torrent != entry.torrent and links_or_none(old) != links_or_none(entry):
            self._notify_relinked(entry)
        self._update_catalog_gauge()

    # -- listeners and gauges ----------------------------------------------------------------

    def _notify_added(self, entry: Entry) -> None:
        for listener in self.listeners:
            try:
                listener.torrent_added(entry)
            except Exception:
                log.exception("listener %r failed on torrent_added", listener)

    def _notify_relinked(self, entry: Entry) -> None:
        for listener in self.listeners:
            try:
                listener.torrent_relinked(entry)
            except Exception:
                log.exception("listener %r failed on torrent_relinked", listener)

    def _notify_removed(self, entry: Entry) -> None:
        for listener in self.listeners:
            try:
                listener.torrent_removed(entry)
            except Exception:
                log.exception("listener %r failed on torrent_removed", listener)

    def _update_catalog_gauge(self) -> None:
        if self.metrics:
            try:
                self.metrics.catalog_torrents.set(self.catalog.count())
            except CatalogError:
                pass


def entry_of(config: Config, bconf: BucketConfig, store: Store, info: ObjectInfo,
             version_id: str | None, hashes: metainfo.PieceHashes) -> Entry:
    """The catalog entry of ``info`` hashed into ``hashes``, its torrent linked as ``config``
    says now. Sync and thread-safe (no I/O): also for the worker threads of a batch."""
    # The hashed version, also for the current object: after an overwrite the web seed URL
    # must still give the bytes the piece hashes describe.
    version = object_version(info, version_id)
    links = torrent_links(config, bconf, info.key, store.origin_url(info.key), version)
    torrent, ih = metainfo.build_torrent_hashed(
        bucket=info.bucket, key=info.key, size=info.size, piece_length=hashes.piece_length,
        hashes=hashes, announce=links.announce, announce_list=links.announce_list,
        url_list=links.url_list, created_by=f"s3torrent/{__version__}",
    )
    return Entry(
        bucket=info.bucket, key=info.key, etag=info.etag, version_id=version_id,
        size=info.size, last_modified=info.last_modified, torrent=torrent,
        info_hash_v1=ih.v1, info_hash_v2=ih.v2, piece_length=hashes.piece_length,
        format="hybrid" if hashes.pieces_root is not None else "v1", created_at=time.time(),
        object_version=version,
    )


def _level(info: ObjectInfo) -> int:
    """The level of a job's "generating" / "generated" lines: debug for small objects (a
    scanned bucket of a million would log two million lines; the scan's summary counts
    them), info for the others."""
    return logging.DEBUG if info.size <= hashing.SMALL_OBJECT else logging.INFO


class SafeSink:
    """Wraps a seed-cache writer so that a failing cache (disk full) never fails a generation:
    the first error aborts the writer and later calls do nothing."""

    def __init__(self, sink: ChunkSink, name: str) -> None:
        self._sink: ChunkSink | None = sink
        self._name = name

    @classmethod
    def open(cls, factory: ChunkSinkFactory | None, info: ObjectInfo,
             name: str) -> SafeSink | None:
        if factory is None:
            return None
        try:
            sink = factory(info)
        except Exception as exc:
            log.warning("seed cache unavailable for %s: %s", name, exc)
            return None
        return None if sink is None else cls(sink, name)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        if self._sink is None:
            return
        try:
            self._sink.write(offset, data)
        except Exception as exc:
            log.warning("seed cache write failed for %s, not caching it: %s", self._name, exc)
            self.abort()

    def commit(self, info_hash_hex: str) -> None:
        if self._sink is None:
            return
        sink, self._sink = self._sink, None
        try:
            sink.commit(info_hash_hex)
        except Exception as exc:
            log.warning("seed cache commit failed for %s: %s", self._name, exc)

    def abort(self) -> None:
        if self._sink is None:
            return
        sink, self._sink = self._sink, None
        try:
            sink.abort()
        except Exception as exc:
            log.warning("seed cache abort failed for %s: %s", self._name, exc)
