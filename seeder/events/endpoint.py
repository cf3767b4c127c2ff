"""The events endpoint (trio shell): ``POST /-/events`` -> the pending queue -> workers that
reconcile each key with the store through the TorrentService.

The handler answers at once (before any HEAD or hashing), so a sender never times out and
retries: auth (:func:`~seeder.events.auth.check_auth`), parse
(:func:`~seeder.events.payload.parse_delivery`), drop events of unconfigured buckets (2xx,
ignored) and events not newer than the key's last sequencer (a late or repeated event),
refuse a key that would escape a local bucket (400, nothing queued), then queue the rest
all or nothing (503 + Retry-After when the queue is full).

A worker takes one key at a time (the latest event for it) and makes the catalog agree with
the store, through the same TorrentService calls the requests and the scanner use, so the
effects are the usual ones: listeners (the tracker's registered info-hashes, the libtorrent
session) follow the catalog, and in a cluster whatever shared catalog the service writes to
carries the change to every node.

- created: when the catalog's torrent already has the event's ETag and size (and the
  bucket's format), nothing to do (no HEAD: this keeps a flood for current keys cheap);
  otherwise ``get_torrent`` (HEAD, then generate, single flight, behind at most
  ``[generation] concurrency`` jobs).
- removed: when the catalog has no torrent for the key, nothing to do; otherwise
  ``get_torrent``, whose HEAD answers NoSuchKey and which then drops the torrent
  (``TorrentService.forget``: the catalog row, the tracker's swarm, the seed). If the
  object is there after all (re-created, or an old version deleted), its torrent stays or
  is brought up to date: the store has the last word, never the event.

An object that no longer qualifies (emptied, too large) loses its torrent. StoreUnavailable
is retried a few times with backoff; other errors are logged and left to the scanner.

SNS subscription confirmations for a topic in ``[events] sns_topic_arns`` are fetched (GET
``SubscribeURL``) by one task, once per URL; other topics are logged and ignored.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import trio

from httpshell import Handler, Request, Response
from seeder.events.auth import check_auth
from seeder.events.ordering import Sequencers
from seeder.events.payload import (
    CREATED,
    REMOVED,
    EventError,
    ObjectEvent,
    SubscriptionConfirmation,
    parse_delivery,
)
from seeder.events.pending import Pending
from seeder.store import (
    InvalidKey,
    NoSuchBucket,
    NoSuchKey,
    ObjectInfo,
    StoreError,
    StoreUnavailable,
)
from seeder.store.local import key_parts
from seeder.torrent.catalog import CatalogError
from seeder.torrent.policy import NotQualified, is_current
from seeder.torrent.service import TorrentService

__all__ = ["EVENTS_PATH", "EventEndpoint"]

log = logging.getLogger(__name__)

EVENTS_PATH = b"/-/events"
RETRY_AFTER = b"1"  # seconds, on a full queue: the queue drains at thousands of keys a second
RETRIES = 3  # attempts per key while the backend is unavailable
RETRY_DELAY = 1.0  # seconds, doubled per attempt
CONFIRM_TIMEOUT = 10.0  # seconds for one SubscribeURL GET
CONFIRM_QUEUE = 16
CONFIRMED_MEMORY = 256  # SubscribeURLs remembered (each is confirmed once)

_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_JSON = [(b"content-type", b"application/json")]
# Basic first: an SNS subscription sends its URL's credentials after this challenge.
_CHALLENGES = [(b"www-authenticate", b'Basic realm="s3torrent events"'),
               (b"www-authenticate", b'Bearer realm="s3torrent events"')]
REFUSAL_LOG_EVERY = 10.0  # seconds: at most one warning line per interval for refused POSTs

Fetch = Callable[[str], None]


def _get(url: str) -> None:
    """GET ``url`` and read the answer (blocking; in a worker thread). Raises OSError."""
    with urllib.request.urlopen(url, timeout=CONFIRM_TIMEOUT) as answer:
        answer.read(65536)


class EventEndpoint:
    """``POST /-/events`` for ``torrents``: :meth:`handle` (or :meth:`route` in front of
    another handler) and :meth:`run` (the workers; start it in the daemon's nursery).

    The token and SNS topics are read from ``torrents.config.events`` at each request, so a
    reload changes them. ``capacity`` bounds the queued keys, ``memory`` the keys whose last
    sequencer is remembered; ``fetch`` GETs a SubscribeURL (a thread; tests may replace it).
    """

    def __init__(self, torrents: TorrentService, *, capacity: int = 10000,
                 memory: int = 65536, metrics: Any = None, fetch: Fetch = _get) -> None:
        self.torrents = torrents
        self.metrics = metrics
        self.pending = Pending(capacity)
        self.sequencers = Sequencers(memory)
        self._fetch = fetch
        self._work = trio.lowlevel.ParkingLot()
        self._idle = trio.lowlevel.ParkingLot()
        self._confirm_send, self._confirm_recv = trio.open_memory_channel[str](CONFIRM_QUEUE)
        self._confirmed: OrderedDict[str, bool] = OrderedDict()  # url -> done (False: in flight)
        self.applied = 0  # keys reconciled (for tests, benchmarks and the status line)
        self._refusal_logged = -REFUSAL_LOG_EVERY
        self._refusals_unlogged = 0

    # -- the HTTP side -----------------------------------------------------------------------

    def route(self, fallback: Handler) -> Handler:
        """A handler sending ``/-/events`` (any query) here while ``[events] enabled`` (a
        reload may turn it off) and every other request to ``fallback``."""

        async def handler(request: Request) -> Response:
            target = request.target
            if (target == EVENTS_PATH or target.startswith(EVENTS_PATH + b"?")) and (
                    self.torrents.config.events.enabled):
                return await self.handle(request)
            return await fallback(request)

        return handler

    async def handle(self, request: Request) -> Response:
        """Answer one request to ``/-/events``; never raises, never waits for the store."""
        if request.method != b"POST":
            return self._answer(405, "only POST is served here", [(b"allow", b"POST")])
        settings = self.torrents.config.events
        query = request.target.partition(b"?")[2]
        auth = check_auth(settings.token, request.header(b"authorization"), query)
        if not auth.ok:
            self._refused(request, auth.reason)
            return self._answer(auth.status, auth.reason,
                                _CHALLENGES if auth.status == 401 else [])
        try:
            delivery = parse_delivery(request.body, request.header(b"content-type"),
                                      request.header(b"x-amz-sns-message-type"))
            if delivery.confirmation is not None:
                return self._confirmation(delivery.confirmation, settings.sns_topic_arns)
            return self._queue(delivery.events, delivery.ignored, delivery.sender)
        except EventError as exc:
            self._refused(request, exc.message)
            return self._answer(exc.status, exc.message)

    def _queue(self, events: tuple[ObjectEvent, ...], ignored: int, sender: str) -> Response:
        config = self.torrents.config
        wanted: list[ObjectEvent] = []
        for event in events:
            bucket = config.bucket(event.bucket)
            if bucket is None:
                ignored += 1  # not ours: 2xx, or the sender retries it forever
                continue
            if bucket.backend == "local":
                try:
                    key_parts(event.key)
                except InvalidKey as exc:
                    raise EventError(f"key {event.key[:200]!r} of bucket {event.bucket}: "
                                     f"{exc}") from None
            wanted.append(event)
        fresh = [e for e in wanted if self.sequencers.newer(e.bucket, e.key, e.sequencer)]
        if not self.pending.room_for(fresh):
            log.warning("events: queue full (%d keys), answering 503", len(self.pending))
            self._count("busy")
            return self._answer(503, "event queue full, retry later",
                                [(b"retry-after", RETRY_AFTER)])
        accepted = 0
        for event in fresh:
            if self.sequencers.admit(event.bucket, event.key, event.sequencer):
                self.pending.add(event)
                accepted += 1
        ignored += len(wanted) - accepted  # not newer than the key's last sequencer
        if accepted:
            self._work.unpark(count=accepted)
            self._gauge()
        self._count("accepted", accepted)
        self._count("ignored", ignored)
        log.debug("events: %s delivery: %d accepted, %d ignored", sender, accepted, ignored)
        return Response(200, list(_JSON),
                        json.dumps({"accepted": accepted, "ignored": ignored}).encode())

    def _confirmation(self, confirmation: SubscriptionConfirmation,
                      topics: tuple[str, ...]) -> Response:
        if confirmation.topic_arn not in topics:
            log.warning("events: ignored an SNS subscription confirmation for topic %s "
                        "(not in [events] sns_topic_arns)", confirmation.topic_arn)
            self._count("ignored")
            return Response(200, list(_JSON), b'{"confirmed": false}')
        url = confirmation.subscribe_url
        if url not in self._confirmed:
            try:
                self._confirm_send.send_nowait(url)
            except trio.WouldBlock:
                return self._answer(503, "too many subscription confirmations, retry later",
                                    [(b"retry-after", RETRY_AFTER)])
            self._confirmed[url] = False
            while len(self._confirmed) > CONFIRMED_MEMORY:
                self._confirmed.popitem(last=False)
        self._count("accepted")
        return Response(200, list(_JSON), b'{"confirmed": true}')

    def _answer(self, status: int, message: str,
                headers: list[tuple[bytes, bytes]] | None = None) -> Response:
        if status >= 400 and status != 503:
            self._count("refused")
        return Response(status, [*_TEXT, *(headers or [])], message.encode() + b"\n")

    def _refused(self, request: Request, reason: str) -> None:
        """Log a refused POST, at most one line per REFUSAL_LOG_EVERY seconds (a flood of
        bad requests must not flood the log), saying how many went unlogged."""
        now = time.monotonic()
        if now - self._refusal_logged < REFUSAL_LOG_EVERY:
            self._refusals_unlogged += 1
            return
        more = self._refusals_unlogged
        self._refusal_logged, self._refusals_unlogged = now, 0
        log.warning("events: refused a POST from %s: %s%s", request.client[0], reason,
                    f" ({more} more refused since the last such line)" if more else "")

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.events_queued.set(len(self.pending))

    def _count(self, result: str, n: int = 1) -> None:
        if self.metrics is not None and n:
            self.metrics.events_total.labels(result=result).inc(n)

    # -- the workers -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run ``[generation] concurrency`` workers and the SNS confirmer. Returns never,
        unless cancelled; errors of one key are logged, never raised."""
        workers = max(1, self.torrents.config.generation.concurrency)
        async with trio.open_nursery() as nursery:
            for _ in range(workers):
                nursery.start_soon(self._worker)
            nursery.start_soon(self._confirmer)
            task_status.started()

    async def wait_idle(self) -> None:
        """Return once no key waits and no worker holds one (tests and benchmarks)."""
        while len(self.pending) or self.pending.busy:
            await self._idle.park()

    async def _worker(self) -> None:
        while True:
            event = self.pending.pop()
            if event is None:
                await self._work.park()
                continue
            self._gauge()
            try:
                await self._apply(event)
            finally:
                self.pending.done(event)
                self.applied += 1
                if self.pending.ready():
                    self._work.unpark()  # a key held while its new event came is free now
                if not len(self.pending) and not self.pending.busy:
                    self._idle.unpark_all()

    async def _apply(self, event: ObjectEvent) -> None:
        name = f"{event.bucket}/{event.key}"
        bucket = self.torrents.config.bucket(event.bucket)
        if bucket is None:
            return  # unconfigured by a reload since it was queued
        try:
            cached = self.torrents.lookup_cached(event.bucket, event.key)
            pinned = (self.torrents.lookup_cached(event.bucket, event.key, event.version)
                      if event.kind == REMOVED and event.version else None)
        except CatalogError as exc:
            log.error("events: %s: %s", name, exc)
            cached = pinned = None
        if event.kind == CREATED and cached is not None and event.etag and event.size:
            info = ObjectInfo(event.bucket, event.key, event.size, event.etag, 0.0)
            if is_current(cached, info, bucket) and cached.object_version == event.version:
                return  # a retry, or an event for bytes already hashed
        if event.kind == REMOVED and cached is None and pinned is None:
            return  # no torrent to remove
        if event.kind == CREATED or cached is not None:
            await self._reconcile(event, None)
        if pinned is not None:
            await self._reconcile(event, event.version)

    async def _reconcile(self, event: ObjectEvent, version: str | None) -> None:
        """Make the catalog's torrent of the key (pinned to ``version``) agree with the store."""
        name = f"{event.bucket}/{event.key}"
        delay = RETRY_DELAY
        for attempt in range(1, RETRIES + 1):
            try:
                await self.torrents.get_torrent(event.bucket, event.key, version)
                return
            except (NoSuchKey, NoSuchBucket):
                return  # gone: get_torrent dropped its torrent
            except NotQualified as exc:
                log.info("events: %s no longer gets a torrent: %s", name, exc.message)
                self._forget(event, version)
                return
            except StoreUnavailable as exc:
                if attempt == RETRIES:
                    log.warning("events: %s: backend unavailable %d times, leaving it to the "
                                "scanner: %s", name, RETRIES, exc)
                    return
                await trio.sleep(delay)
                delay *= 2
            except (StoreError, CatalogError) as exc:
                log.warning("events: %s: %s: %s", name, type(exc).__name__, exc)
                return
            except Exception:
                log.exception("events: %s: unexpected error", name)
                return

    def _forget(self, event: ObjectEvent, version: str | None) -> None:
        try:
            self.torrents.forget(event.bucket, event.key, version)
        except CatalogError as exc:
            log.error("events: %s/%s: %s", event.bucket, event.key, exc)

    async def _confirmer(self) -> None:
        async for url in self._confirm_recv:
            try:
                # Not abandoned on cancel (no detached threads): CONFIRM_TIMEOUT bounds it.
                await trio.to_thread.run_sync(self._fetch, url)
            except Exception as exc:  # OSError, HTTPError, ValueError: the next one may do
                log.warning("events: confirming the SNS subscription failed (%s: %s); SNS "
                            "sends the confirmation again", type(exc).__name__, exc)
                self._confirmed.pop(url, None)
                continue
            self._confirmed[url] = True
            log.info("events: confirmed an SNS subscription (%s)", url.split("?", 1)[0])
