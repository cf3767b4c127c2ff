"""The S3 API and the web seed endpoint: one ``Request`` in, one ``Response`` out.

Flow: ``s3request.parse`` -> bucket lookup -> ``sigv4.verify`` and access rules (public,
credentials, requester pays, expected owner) -> ``TorrentService`` (GetObjectTorrent) or a
ranged object stream (web seed). Every failure becomes an S3 XML error; nothing else ever
reaches the client.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import trio

from httpshell import Request, Response
from seeder.config import BucketConfig, Config
from seeder.metrics import SeederMetrics
from seeder.s3api import bodies, capability, sigv4
from seeder.s3api import errors as s3errors
from seeder.s3api import request as s3request
from seeder.s3api.auth import authenticate
from seeder.s3api.bucketreads import BucketReads, operation_name
from seeder.s3api.conditional import Outcome, Validators, evaluate, http_date, range_applies
from seeder.s3api.errors import S3Error
from seeder.s3api.ranges import RangeNotSatisfiable, parse_range
from seeder.seed.webseed_gate import Busy, Grant
from seeder.store import (
    BackendAccessDenied,
    InvalidKey,
    NoSuchBucket,
    NoSuchKey,
    ObjectChanged,
    ObjectInfo,
    Store,
    StoreError,
    StoreUnavailable,
)
from seeder.store.guard import CircuitOpen
from seeder.torrent import metainfo
from seeder.torrent.entry import Entry
from seeder.torrent.links import presigns_webseed, webseed_url
from seeder.torrent.policy import NotQualified, check_qualifies
from seeder.torrent.service import Fetched, TorrentService
from tracker.clientaddr import Network, client_host, parse_proxies

log = logging.getLogger(__name__)

TORRENT_TYPE = b"application/x-bittorrent"
# On a GetObjectTorrent answered from the catalog while the backend could not be asked.
STALE_HEADER = b"x-amz-meta-s3torrent-stale"
BUSY_MESSAGE = "The web seed is busy: get these pieces from the swarm."
SUPERSEDED_REMEMBERED = 4096  # HEADs of superseded versions kept (~200 bytes each)


class WebSeedGateHook(Protocol):
    """Decides web seed requests (seeding.Seeding implements it over webseed_gate)."""

    def admit(self, entry: Entry, start: int, length: int, client: str) -> Grant | Busy:
        """Serve bytes ``[start, start+length)`` of ``entry`` to address ``client``?"""
        ...

    def finished(self, grant: Grant, sent: int) -> None:
        """A granted response ended after ``sent`` body bytes."""
        ...

    def carry_on(self, grant: Grant, sent: int) -> bool:
        """Asked before each chunk of a granted response with the body bytes handed to the
        socket so far: False stops it there (the swarm has taken over); the connection is
        then closed, the client keeps what it got."""
        ...

    def pace(self, grant: Grant, nbytes: int) -> float:
        """Seconds to wait before the next ``nbytes`` of a granted response go out (the
        upload limit's share of the web seed; 0.0: at once)."""
        ...


@dataclass(frozen=True, slots=True)
class Runtime:
    """What a request reads of the daemon's live state; swapped whole on reload."""

    config: Config
    stores: Mapping[str, Store]
    secrets: Mapping[str, str]  # access key id -> secret key
    proxies: tuple[Network, ...] = ()  # server.trusted_proxies

    @classmethod
    def build(cls, config: Config, stores: Mapping[str, Store]) -> Runtime:
        return cls(
            config,
            stores,
            {c.access_key: c.secret_key for c in config.credentials},
            parse_proxies(config.server.trusted_proxies),
        )

    def client(self, request: Request) -> str:
        """The client's address: the socket peer, or the one a trusted proxy names
        (``server.trusted_proxies``; tracker/clientaddr.py has the rules)."""
        return client_host(request.client[0], request.headers, self.proxies)

    def can_read(self, access_key: str, bucket: str) -> bool:
        return any(
            c.access_key == access_key and c.can_read(bucket) for c in self.config.credentials
        )


def content_disposition(key: str) -> bytes:
    """``attachment`` with the torrent's file name: a plain ASCII ``filename`` fallback
    (quotes and controls replaced) and RFC 6266/5987 ``filename*`` for the exact UTF-8 name."""
    name = key.rsplit("/", 1)[-1] + ".torrent"
    fallback = "".join(
        c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in name
    )
    encoded = urllib.parse.quote(name, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}".encode("ascii")


class S3Api:
    """Handler for the S3 endpoint (``server.listen``)."""

    def __init__(
        self,
        runtime: Runtime,
        torrents: TorrentService,
        *,
        metrics: SeederMetrics | None = None,
        seed_path: Callable[[Entry], Path | None] | None = None,
        on_demand: Callable[[Entry], None] | None = None,
        gate: WebSeedGateHook | None = None,
        clock: Callable[[], float] = time.time,
        webseed_key: bytes | None = None,
    ) -> None:
        """``seed_path``: where the seed cache holds an object's bytes (the web seed serves
        them from there); ``on_demand``: called on every GetObjectTorrent; ``gate``: asked
        before each web seed GET (None: always serve); ``webseed_key``: the key of private
        buckets' web seed capabilities (None: their torrents have no web seed)."""
        self.runtime = runtime
        self.torrents = torrents
        self.metrics = metrics
        self.seed_path = seed_path
        self.on_demand = on_demand
        self.gate = gate
        self.clock = clock
        self.webseed_key = webseed_key
        self.host_id = secrets.token_urlsafe(24)
        # (bucket, key, version id) -> HEAD of a superseded version (_superseded), LRU.
        self._versions: OrderedDict[tuple[str, str, str], ObjectInfo] = OrderedDict()
        self._versions_of = runtime
        self.reads = BucketReads(self._backend_error)

    async def handle(self, request: Request) -> Response:
        """Answer one request; never raises (except trio.Cancelled)."""
        request_id = secrets.token_hex(8).upper()
        started = time.perf_counter()
        operation = "unknown"
        client = self.runtime.client(request)
        try:
            op = s3request.parse(
                request.method,
                request.target,
                request.headers,
                s3request.base_domain(self.runtime.config.server.public_url),
            )
            operation = operation_name(op)
            response = await self._dispatch(request, op, request_id, client)
        except S3Error as err:
            response = self._error(err, request_id)
        except Exception:
            log.exception("request %s failed: %r", request_id, request.target[:200])
            response = self._error(s3errors.internal_error(), request_id)
        log.debug(
            "request %s from %s: %s %r -> %d",
            request_id,
            client,
            request.method.decode("ascii", "replace"),
            request.target[:200],
            response.status,
            extra={"request_id": request_id},
        )
        self._count(operation, response.status, time.perf_counter() - started)
        return response

    # -- dispatch -------------------------------------------------------------------------

    async def _dispatch(
        self,
        request: Request,
        op: s3request.S3Operation,
        request_id: str,
        client: str,
    ) -> Response:
        resource = op.resource
        headers = [
            (b"x-amz-request-id", request_id.encode()),
            (b"x-amz-id-2", self.host_id.encode()),
        ]
        runtime = self.runtime
        try:
            if isinstance(op, s3request.ListService):
                access_key = self._access_key(op.signed, None, request)
                status, headers, body = await self.reads.list_buckets(
                    runtime.config, lambda b: b.public if access_key is None
                    else b.public or runtime.can_read(access_key, b.name), headers)
                return Response(status, headers, body)
            bucket = self._authorize(request, op)
        except S3Error as err:
            raise err.with_resource(resource) from None
        if bucket.requester_pays:
            headers.append((b"x-amz-request-charged", b"requester"))
        try:
            if isinstance(op, s3request.BucketRead):
                status, headers, body = await self.reads.bucket(bucket, runtime.stores, op,
                                                                headers)
                return Response(status, headers, body)
            if isinstance(op, s3request.GetTorrent):
                return await self._get_torrent(op, headers)
            return await self._get_object(request, op, headers, client)
        except S3Error as err:
            raise err.with_resource(resource) from None

    def _access_key(self, signed: sigv4.SignedRequest | None, virtual_bucket: str | None,
                    request: Request) -> str | None:
        """The verified access key (None: anonymous), SigV4 or (``server.sigv2``) SigV2."""
        signed = signed or sigv4.SignedRequest.from_http(request.method, request.target,
                                                         request.headers)
        return authenticate(signed, self.runtime.secrets, self.clock(),
                            allow_sigv2=self.runtime.config.server.sigv2,
                            virtual_bucket=virtual_bucket)

    def _authorize(
        self, request: Request,
        op: s3request.GetTorrent | s3request.GetObject | s3request.BucketRead
    ) -> BucketConfig:
        runtime = self.runtime
        bucket = runtime.config.bucket(op.bucket)
        access_key = self._access_key(op.signed, op.bucket if op.virtual_host else None,
                                      request)
        if bucket is None:
            raise s3errors.no_such_bucket(op.bucket)
        if access_key is None:
            if not bucket.public and not self._capable(op):
                raise s3errors.access_denied()
        elif not runtime.can_read(access_key, bucket.name):
            raise s3errors.access_denied()
        if bucket.requester_pays and not op.request_payer:
            raise s3errors.access_denied(
                "Bucket is a requester pays bucket: send x-amz-request-payer: requester"
            )
        if op.expected_bucket_owner is not None and op.expected_bucket_owner != (
            bucket.expected_owner or ""
        ):
            raise s3errors.access_denied()
        return bucket

    def _capable(self, op: s3request.S3Operation) -> bool:
        """An anonymous web seed request with the capability of the object version the
        catalog holds for it (the version ``_webseed_object`` would serve)."""
        if not isinstance(op, s3request.GetObject) or op.webseed_token is None or \
                self.webseed_key is None:
            return False
        entry = self.torrents.lookup_cached(op.bucket, op.key, op.version_id)
        if entry is None and op.version_id is not None:
            entry = self.torrents.lookup_cached(op.bucket, op.key)
            if entry is not None and entry.object_version != op.version_id:
                entry = None
        return entry is not None and capability.valid(
            self.webseed_key, op.webseed_token, entry.bucket, entry.key, entry.etag,
            entry.object_version)

    # -- GetObjectTorrent -----------------------------------------------------------------

    async def _get_torrent(
        self, op: s3request.GetTorrent, headers: list[tuple[bytes, bytes]]
    ) -> Response:
        entry, stale = await self._entry(op.bucket, op.key, op.version_id)
        torrent = await self._with_presigned_webseed(entry)
        if self.on_demand is not None:
            try:
                self.on_demand(entry)
            except Exception:
                log.exception("on-demand hook failed for %s/%s", entry.bucket, entry.key)
        headers += [
            (b"content-type", TORRENT_TYPE),
            (b"content-disposition", content_disposition(op.key)),
        ]
        if stale:
            # The backend could not be asked: this is the torrent of the version it was
            # hashed from, unconfirmed (docs/operations.md, "Backend outages").
            headers.append((STALE_HEADER, b"true"))
        return Response(200, headers, torrent)

    async def _with_presigned_webseed(self, entry: Entry) -> bytes:
        """The torrent, with a fresh presigned object URL as its web seed when
        ``presigns_webseed(bucket)`` (url-list is outside ``info``: the info-hash stays the
        same). The URL is pinned to the version the torrent was hashed from, if it has one."""
        bucket = self.runtime.config.bucket(entry.bucket)
        store = self.runtime.stores.get(entry.bucket)
        if bucket is not None and not bucket.public and self.webseed_key is not None and \
                not presigns_webseed(bucket):
            # A private bucket: this server's URL with a capability (capability.py).
            url = webseed_url(replace(bucket, public=True, webseed="proxy"), entry.key,
                              self.runtime.config.server.public_url, None, entry.object_version)
            return metainfo.with_url_list(entry.torrent, [capability.with_token(
                url, capability.token(self.webseed_key, entry.bucket, entry.key, entry.etag,
                                      entry.object_version))])
        if bucket is None or store is None or not presigns_webseed(bucket):
            return entry.torrent
        try:
            url = await trio.to_thread.run_sync(
                store.presigned_url, entry.key, bucket.presign_webseed, entry.object_version
            )
        except StoreError as exc:
            log.warning("no presigned web seed for %s/%s: %s", entry.bucket, entry.key, exc)
            return entry.torrent
        if not url:
            return entry.torrent
        return metainfo.with_url_list(entry.torrent, [url])

    async def _entry(self, bucket: str, key: str, version_id: str | None) -> Fetched:
        # An object overwritten while it was hashed is hashed again once, at its new ETag;
        # a second change in a row is reported as a busy backend, never a wrong torrent.
        for attempt in range(2):
            try:
                return await self.torrents.fetch_torrent(bucket, key, version_id)
            except ObjectChanged:
                if attempt:
                    raise s3errors.slow_down(retry_after=1) from None
            except StoreError as exc:
                raise self._backend_error(exc, bucket, key) from None
            except NotQualified as exc:
                raise s3errors.invalid_request(str(exc)) from None
        raise AssertionError("unreachable")

    # -- web seed (GET without ?torrent) --------------------------------------------------

    async def _get_object(
        self,
        request: Request,
        op: s3request.GetObject,
        headers: list[tuple[bytes, bytes]],
        client: str,
    ) -> Response:
        """``client``: the requester's address (after trusted proxies), whose claims the
        gate keeps."""
        # Only objects that have a torrent are served: this is a web seed, not an S3 proxy.
        info, entry = await self._webseed_object(op.bucket, op.key, op.version_id, op.head)
        size = info.size
        # The validators are the torrent's: the bytes served are pinned to that ETag.
        validators = Validators(info.etag, info.last_modified)
        headers += [
            (b"etag", f'"{info.etag}"'.encode()),
            (b"last-modified", http_date(info.last_modified)),
        ]
        outcome = evaluate(
            validators,
            if_match=op.if_match,
            if_none_match=op.if_none_match,
            if_modified_since=op.if_modified_since,
            if_unmodified_since=op.if_unmodified_since,
        )
        if outcome is Outcome.NOT_MODIFIED:
            return Response(304, headers, b"")
        if outcome.failed_condition is not None:
            raise s3errors.precondition_failed(outcome.failed_condition)
        range_header = op.range_header
        if range_header is not None and not range_applies(op.if_range, validators):
            range_header = None  # If-Range: the representation changed, send all of it
        try:
            ranges = parse_range(range_header, size)
        except RangeNotSatisfiable as exc:
            raise s3errors.invalid_range(size, exc.header) from None
        if ranges is not None and len(ranges) > 1:
            ranges = None  # as S3: several ranges get the whole object
        start, length = (0, size) if ranges is None else (ranges[0].start, ranges[0].length)
        grant = None
        # A superseded version (no entry) has left the session: nothing can stand in for it.
        if self.gate is not None and entry is not None and request.method == b"GET":
            decision = self.gate.admit(entry, start, length, client)
            if isinstance(decision, Busy):
                # BEP 19 "busy": the client should get these pieces from its peers.
                raise s3errors.service_unavailable(decision.retry_after, BUSY_MESSAGE)
            grant = decision
        try:
            # HeadObject: no backend read for a body nobody gets
            body = bodies.nothing() if op.head else await self._object_body(info, entry, start,
                                                                      length)
        except BaseException:
            if grant is not None:
                self._gate_finished(grant, 0)
            raise
        if grant is not None:
            body = bodies.while_(body, functools.partial(self._gate_carry_on, grant))
            body = bodies.paced(body, functools.partial(self._gate_pace, grant))
        body = bodies.metered(body, self._served_counter(info.bucket, info.key),
                        None if grant is None else lambda sent: self._gate_finished(grant, sent))
        headers += [
            (b"content-type", b"application/octet-stream"),
            (b"accept-ranges", b"bytes"),
            (b"content-length", str(length).encode()),
        ]
        if ranges is None:
            return Response(200, headers, body)
        headers.append((b"content-range", ranges[0].content_range(size)))
        return Response(206, headers, body)

    async def _webseed_object(self, bucket: str, key: str, version_id: str | None,
                              head: bool = False) -> tuple[ObjectInfo, Entry | None]:
        """The object version a web seed GET serves, and its catalog entry if it has one.

        Without ``versionId``: the current-object torrent's bytes. With one: a torrent pinned
        to it, or the current-object torrent if that hashed this version, or else (the key
        has a current-object torrent, so ``versionId`` names a version it superseded: an
        earlier torrent's web seed asks for it) that version as the backend has it. Versions
        are immutable, so their HEADs are remembered. ``head`` (HeadObject): any object of
        the bucket, as the backend has it. NoSuchKey for anything else.
        """
        entry = self.torrents.lookup_cached(bucket, key, version_id)
        if entry is None and version_id is not None:
            current = self.torrents.lookup_cached(bucket, key)
            if current is not None and current.object_version == version_id:
                entry = current
            elif current is not None:
                return await self._superseded(bucket, key, version_id), None
        if entry is None and head:
            return await self._head(bucket, key, version_id), None
        if entry is None:
            raise s3errors.no_such_key(key)
        return ObjectInfo(
            bucket=entry.bucket,
            key=entry.key,
            size=entry.size,
            etag=entry.etag,
            last_modified=entry.last_modified,
            # Pinned to the version hashed as well as to the ETag: an overwrite not yet
            # noticed leaves these bytes readable (versioned buckets).
            version_id=entry.object_version,
        ), entry

    async def _head(self, bucket: str, key: str, version_id: str | None) -> ObjectInfo:
        store = self.runtime.stores.get(bucket)
        if store is None:
            raise s3errors.no_such_bucket(bucket)
        try:
            return await store.head(key, version_id)
        except StoreError as exc:
            raise self._backend_error(exc, bucket, key) from None

    async def _superseded(self, bucket: str, key: str, version_id: str) -> ObjectInfo:
        """HEAD of one earlier version of ``key``, remembered (immutable) for later requests."""
        if self._versions_of is not self.runtime:
            self._versions.clear()  # reloaded: a bucket may now be another backend
            self._versions_of = self.runtime
        found = self._versions.get((bucket, key, version_id))
        if found is not None:
            self._versions.move_to_end((bucket, key, version_id))
            return found
        info = await self._head(bucket, key, version_id)
        try:
            check_qualifies(info.size, info.sse_c)  # else no torrent was ever made of it
        except NotQualified:
            raise s3errors.no_such_key(key) from None
        self._versions[(bucket, key, version_id)] = info
        if len(self._versions) > SUPERSEDED_REMEMBERED:
            self._versions.popitem(last=False)
        return info

    async def _object_body(self, info: ObjectInfo, entry: Entry | None, start: int,
                           length: int) -> AsyncIterator[bytes]:
        """The bytes the torrent describes: from the seed cache when it holds them,
        else from the backend pinned to ``info``'s ETag and version."""
        path = self.seed_path(entry) if self.seed_path is not None and entry else None
        if path is not None:
            return bodies.file_chunks(path, start, length)
        store = self.runtime.stores.get(info.bucket)
        if store is None:
            raise s3errors.no_such_bucket(info.bucket)
        stream = bodies.metered(store.stream(info, start, length, bodies.STREAM_CHUNK),
                          self._backend_counter(info.bucket, info.key), None)
        # Pull the first chunk now, so that a missing or changed object is an S3 error
        # with a proper status rather than a cut-short 200.
        try:
            first = await stream.__anext__() if length else b""
        except StopAsyncIteration:
            first = b""
        except ObjectChanged:
            raise s3errors.no_such_key(info.key) from None
        except StoreError as exc:
            raise self._backend_error(exc, info.bucket, info.key) from None
        return bodies.prepend(first, stream)

    # -- plumbing -------------------------------------------------------------------------

    def _gate_carry_on(self, grant: Grant, sent: int) -> bool:
        try:
            assert self.gate is not None
            return self.gate.carry_on(grant, sent)
        except Exception:
            log.exception("web seed gate failed on %s", grant.torrent)
            return True

    def _gate_pace(self, grant: Grant, nbytes: int) -> float:
        try:
            assert self.gate is not None
            return self.gate.pace(grant, nbytes)
        except Exception:
            log.exception("web seed pacing failed on %s", grant.torrent)
            return 0.0

    def _gate_finished(self, grant: Grant, sent: int) -> None:
        try:
            assert self.gate is not None
            self.gate.finished(grant, sent)
        except Exception:
            log.exception("web seed gate failed to release %s", grant.torrent)

    def _served_counter(self, bucket: str, key: str) -> Callable[[int], None] | None:
        return self._counter("webseed_served_bytes_total", bucket, key, "add_served")

    def _backend_counter(self, bucket: str, key: str) -> Callable[[int], None] | None:
        return self._counter("backend_read_bytes_total", bucket, key, "add_origin")

    def _counter(self, name: str, bucket: str, key: str,
                 per_object: str) -> Callable[[int], None] | None:
        """The bucket's counter ``name``, and the object's tally for the status page."""
        metric = getattr(self.metrics, name, None)
        if metric is None:
            return None
        inc = metric.labels(bucket=bucket).inc
        objects = getattr(self.metrics, "objects", None)
        if objects is None:
            return inc
        add = getattr(objects, per_object)

        def count(n: int) -> None:
            inc(n)
            add(bucket, key, n)

        return count

    def _backend_error(self, exc: StoreError, bucket: str, key: str) -> S3Error:
        if self.metrics is not None:
            kind = _ERROR_KINDS.get(type(exc), "other")
            self.metrics.backend_errors_total.labels(bucket=bucket, kind=kind).inc()
        return _store_error(exc, bucket, key)

    def _error(self, err: S3Error, request_id: str) -> Response:
        status, headers, body = s3errors.render(err, request_id, self.host_id)
        return Response(status, headers, body)

    def _count(self, operation: str, status: int, seconds: float) -> None:
        m = self.metrics
        if m is None:
            return
        m.api_requests_total.labels(operation=operation, code=str(status)).inc()
        m.api_request_duration_seconds.labels(operation=operation).observe(seconds)


_ERROR_KINDS: dict[type, str] = {
    NoSuchKey: "not_found",
    NoSuchBucket: "no_bucket",
    InvalidKey: "invalid_key",
    BackendAccessDenied: "denied",
    StoreUnavailable: "unavailable",
    CircuitOpen: "circuit_open",
    ObjectChanged: "changed",
}


def _store_error(exc: StoreError, bucket: str, key: str) -> S3Error:
    if isinstance(exc, NoSuchKey | InvalidKey):
        return s3errors.no_such_key(key)
    if isinstance(exc, NoSuchBucket):
        return s3errors.no_such_bucket(bucket)
    if isinstance(exc, BackendAccessDenied):
        return s3errors.access_denied("The daemon's credentials cannot read this object")
    if isinstance(exc, CircuitOpen):
        # Failing fast: the breaker logged the outage once, not once per request.
        return s3errors.service_unavailable(retry_after=exc.retry_after)
    if isinstance(exc, StoreUnavailable | ObjectChanged):
        log.warning("backend of bucket %s unavailable: %s", bucket, exc)
        return s3errors.service_unavailable(retry_after=5)
    log.error("backend error for %s/%s: %r", bucket, key, exc)
    return s3errors.internal_error()
