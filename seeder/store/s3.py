"""An S3 bucket at any endpoint (AWS, MinIO, Ceph RGW, moto) through boto3 in trio threads.

One botocore client per store (clients are thread-safe), made lazily in a worker thread on
first use (credential discovery may touch the network: instance metadata). Every blocking
call goes through the bucket's :class:`~seeder.store.guard.BackendGuard`: its own thread
limiter (the urllib3 pool is sized to it), a retry budget per call and a circuit breaker.
Retries use botocore's ``standard`` mode with few attempts, and the bucket's connect and
read timeouts are set, so a hung or unreachable endpoint fails within the budget as
StoreUnavailable, and at once (CircuitOpen) while its breaker is open.

Consistency: every ranged read of an object carries ``If-Match: "<etag>"`` (and the version
id when known). An object overwritten between head and read, or mid-hash, answers 412 and
the read raises ObjectChanged: it is never hashed into a wrong torrent.

Credentials: ``access_key``/``secret_key`` from the bucket config if set, else the standard
AWS chain (env, config files, instance role). If the chain finds nothing, requests go
unsigned, which works for public buckets only.

Hashing reads through :meth:`S3Store.open_reader`: an :class:`S3Reader` whose ``read_into``
makes the same ranged If-Match GetObject in the calling (hashing) thread and reads the body
straight into the caller's buffer (``http.client``'s ``readinto`` under urllib3, no copy),
so several ranged GETs are in flight at once without a trio hop or a new ``bytes`` each.

SSE-C: a HEAD of an object encrypted with a customer key answers 400 without the key; that
gives ``ObjectInfo(sse_c=True, size=0, etag="")``. A listing cannot tell SSE-C objects
apart, so ``list()`` says ``sse_c=False`` and ``head`` decides. (moto 5.2 stores SSE-C
objects but serves them without the key, so against moto they look like plain objects.)

Beside it: `s3_urls` (plain object URLs, pure) and `s3_errors` (botocore's exceptions as
StoreErrors).
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import trio

from seeder.config import BucketConfig
from seeder.store import (
    DEFAULT_STREAM_CHUNK,
    NoSuchBucket,
    NoSuchKey,
    ObjectInfo,
    StoreError,
    StoreUnavailable,
)
from seeder.store.guard import BackendGuard, ChangeHook
from seeder.store.paging import MAX_PAGE, ListPage, group
from seeder.store.s3_errors import error_fields, is_sse_c_head_error, translate_error
from seeder.store.s3_urls import object_url

CONNECT_TIMEOUT = 3.0  # seconds per connection attempt ([[buckets]] connect_timeout)
READ_TIMEOUT = 5.0  # seconds of silence on a socket before botocore gives up (read_timeout)
# botocore "standard" retry mode: 1 try + 1 retry, jittered backoff. Every call is also
# bounded by the guard's retry budget (seeder.store.guard.RETRY_BUDGET), whatever these add
# up to: a hung backend answers StoreUnavailable within the budget.
MAX_ATTEMPTS = 2
LIST_PAGE_SIZE = 1000  # S3's maximum keys per ListObjectsV2 page

T = TypeVar("T")


# -- pure helpers ----------------------------------------------------------------------


def _unquote_etag(etag: str | None) -> str:
    etag = etag or ""
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def _timestamp(value: datetime | None) -> float:
    return value.timestamp() if value is not None else 0.0


def info_from_head(bucket: str, key: str, response: Mapping[str, Any]) -> ObjectInfo:
    """ObjectInfo from a HeadObject/GetObject response dict (pure)."""
    return ObjectInfo(
        bucket=bucket,
        key=key,
        size=int(response.get("ContentLength", 0)),
        etag=_unquote_etag(response.get("ETag")),
        last_modified=_timestamp(response.get("LastModified")),
        version_id=response.get("VersionId") or None,
        sse_c=bool(response.get("SSECustomerAlgorithm")),
    )


def read_body_into(body: Any, view: memoryview) -> int:
    """Read a botocore streaming body into ``view``; the bytes read (fewer only if the body
    ends first). Raises whatever the body raises (callers translate).

    A plain ``StreamingBody`` over urllib3 over ``http.client`` is read with the latter's
    ``readinto``: straight from the socket buffer into ``view``, where urllib3's own
    ``readinto`` reads a new ``bytes`` and copies it. Anything else (a checksum-validating
    body, a content encoding, another HTTP stack) is read the ordinary way and copied.
    """
    from botocore.response import StreamingBody

    raw = getattr(body, "_raw_stream", None)
    fp = getattr(raw, "_fp", None)
    headers = getattr(raw, "headers", None) or {}
    want = len(view)
    pos = 0
    if (
        type(body) is StreamingBody
        and isinstance(fp, http.client.HTTPResponse)
        and not headers.get("content-encoding")
    ):
        while pos < want:  # bounded: each pass advances pos or breaks at EOF
            n = fp.readinto(view[pos:])
            if not n:
                break
            pos += n
        if fp.isclosed() and raw is not None:
            # All of the body read: hand the connection back to urllib3's pool for reuse
            # (as urllib3 does itself when its own read reaches the end).
            raw.release_conn()
        return pos
    while pos < want:  # bounded: each pass advances pos or breaks at EOF
        data = body.read(min(want - pos, 1024 * 1024))
        if not data:
            break
        view[pos : pos + len(data)] = data
        pos += len(data)
    return pos


class S3Reader:
    """A :class:`~seeder.store.BlockingReader`: ranged If-Match GETs read into the caller's
    buffer in the caller's thread. Made by :meth:`S3Store.open_reader`.

    ``parallelism`` is the store's thread budget: that many GETs at once fit its connection
    pool. Thread-safe (botocore clients are).
    """

    read_size = 8 * 1024 * 1024  # per ranged GET: a request's fixed costs become noise

    def __init__(self, store: S3Store, info: ObjectInfo, client: Any) -> None:
        self._store = store
        self._info = info
        self._client = client
        self.parallelism = store._threads

    def read_into(self, start: int, buf: memoryview) -> int:
        """One ranged GetObject with If-Match into ``buf`` (short only at ``info.size``).
        ObjectChanged on 412; a body shorter than its range is StoreUnavailable."""
        if start < 0:
            raise ValueError(f"bad range start={start}")
        client = self._client
        if client is None:
            raise StoreError(f"{self._store._what(self._info.key)}: reader is closed")
        want = max(0, min(len(buf), self._info.size - start))
        if want == 0:
            return 0
        what = self._store._what(self._info.key)
        params = self._store._get_params(self._info, start, start + want - 1)
        try:
            try:
                response = client.get_object(**params)
            except Exception as e:
                if error_fields(e)[0] == "InvalidRange":
                    return 0  # shorter than info says though If-Match held: EOF
                raise
            body = response["Body"]
            try:
                got = read_body_into(body, buf[:want])
            finally:
                body.close()  # after a full read: a no-op; else drops the connection
        except Exception as e:
            raise translate_error(e, what) from None
        if got != want:
            raise StoreUnavailable(f"{what}: short read ({got} of {want})")
        return got

    def close(self) -> None:
        """Forget the client (the store owns it). Idempotent."""
        self._client = None


def request_payer_in_query(request: Any, **_: Any) -> None:
    """botocore ``before-sign`` hook: in a *presigned* URL, move ``x-amz-request-payer`` from
    the headers into the query string, where SigV4 query auth signs it.

    botocore signs it as a header (``X-Amz-SignedHeaders=host;x-amz-request-payer``,
    boto/boto3#3685), so the URL works only for a client that sends that header too, and a
    BitTorrent client sends none. Requests signed with an Authorization header are left alone.
    """
    if not request.context.get("is_presign_request"):
        return
    payer = request.headers.get("x-amz-request-payer")
    if payer is None:
        return
    del request.headers["x-amz-request-payer"]
    sep = "&" if "?" in request.url else "?"
    request.url += f"{sep}x-amz-request-payer={quote(payer, safe='')}"


# -- the store -------------------------------------------------------------------------


class S3Store:
    """Bucket ``bucket`` at an S3 endpoint. Make it with :meth:`from_config`."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: str = "path",
        access_key: str | None = None,
        secret_key: str | None = None,
        requester_pays: bool = False,
        expected_owner: str | None = None,
        threads: int = 4,
        page_size: int = LIST_PAGE_SIZE,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        max_attempts: int = MAX_ATTEMPTS,
        on_breaker: ChangeHook | None = None,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region or "us-east-1"
        self.addressing_style = addressing_style if addressing_style == "virtual" else "path"
        self._access_key = access_key
        self._secret_key = secret_key
        self._threads = max(1, threads)
        # The bucket's threads, retry budget and circuit breaker: every blocking call.
        self.guard = BackendGuard(bucket, threads=self._threads, on_change=on_breaker)
        self._page_size = max(1, min(page_size, LIST_PAGE_SIZE))
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_attempts = max(1, max_attempts)
        self._extra: dict[str, str] = {}  # sent with every object request
        if requester_pays:
            self._extra["RequestPayer"] = "requester"
        if expected_owner:
            self._extra["ExpectedBucketOwner"] = expected_owner
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_config(cls, cfg: BucketConfig, *, threads: int = 4,
                    on_breaker: ChangeHook | None = None) -> S3Store:
        """The store for one ``[[buckets]]`` entry with ``backend = "s3"``. No I/O.
        ``on_breaker(bucket, old, new)``: told each circuit breaker transition."""
        return cls(
            cfg.name,
            endpoint_url=cfg.endpoint_url,
            region=cfg.region,
            addressing_style=cfg.addressing_style,
            access_key=cfg.access_key,
            secret_key=cfg.secret_key,
            requester_pays=cfg.requester_pays,
            expected_owner=cfg.expected_owner,
            threads=threads,
            connect_timeout=cfg.connect_timeout,
            read_timeout=cfg.read_timeout,
            on_breaker=on_breaker,
        )

    def __repr__(self) -> str:
        return f"S3Store({self.bucket!r}, endpoint={self.endpoint_url or 'aws'!r})"

    # -- client (sync, worker threads) ---------------------------------------------------

    def _get_client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                if self._closed:
                    raise StoreError(f"bucket {self.bucket!r}: store is closed")
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        import boto3.session
        from botocore import UNSIGNED
        from botocore.config import Config

        session = boto3.session.Session()
        signature: Any = "s3v4"
        if self._access_key and self._secret_key:
            creds = {
                "aws_access_key_id": self._access_key,
                "aws_secret_access_key": self._secret_key,
            }
        else:
            creds = {}
            if session.get_credentials() is None:
                signature = UNSIGNED  # public buckets only
        config = Config(
            region_name=self.region,
            signature_version=signature,
            s3={"addressing_style": self.addressing_style},
            retries={"mode": "standard", "total_max_attempts": self._max_attempts},
            connect_timeout=self._connect_timeout,
            read_timeout=self._read_timeout,
            # One connection per worker thread, plus room for open streams (stream() keeps
            # its response open between chunks; urllib3 makes extra connections if needed).
            max_pool_connections=self._threads * 2,
            tcp_keepalive=True,
        )
        client = session.client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config, **creds
        )
        client.meta.events.register("before-sign.s3.GetObject", request_payer_in_query)
        return client

    async def _run(self, fn: Callable[[], T], what: str) -> T:
        def call() -> T:
            try:
                return fn()
            except Exception as e:
                raise translate_error(e, what) from None

        return await self.guard.run_sync(call, what)

    def _what(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # -- Store interface -------------------------------------------------------------------

    async def head(self, key: str, version_id: str | None = None) -> ObjectInfo:
        """HeadObject. NoSuchKey / NoSuchBucket (a 404 HEAD has no body, so a HeadBucket
        tells the two apart), BackendAccessDenied, StoreUnavailable; a 400 gives sse_c=True."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, **self._extra}
        if version_id is not None:
            params["VersionId"] = version_id

        def call() -> ObjectInfo:
            client = self._get_client()
            try:
                response = client.head_object(**params)
            except Exception as e:
                if is_sse_c_head_error(e):
                    return ObjectInfo(self.bucket, key, 0, "", 0.0, version_id, sse_c=True)
                err = translate_error(e, self._what(key))
                if isinstance(err, NoSuchKey) and not self._bucket_exists(client):
                    raise NoSuchBucket(f"{self._what(key)}: NoSuchBucket") from None
                raise err from None
            return info_from_head(self.bucket, key, response)

        return await self._run(call, self._what(key))

    def _bucket_exists(self, client: Any) -> bool:
        """False only if HeadBucket says 404; any other answer leaves the key to blame."""
        owner = self._extra.get("ExpectedBucketOwner")
        try:
            if owner:
                client.head_bucket(Bucket=self.bucket, ExpectedBucketOwner=owner)
            else:
                client.head_bucket(Bucket=self.bucket)
        except Exception as e:
            code, status = error_fields(e)
            return not (status == 404 or code == "NoSuchBucket")
        return True

    async def list(self) -> AsyncIterator[ObjectInfo]:
        """ListObjectsV2, a page per worker-thread hop, in S3's key order. ``version_id`` is
        None and ``sse_c`` False in listings (S3 does not say); ``head`` for more."""
        what = f"s3://{self.bucket}/ (list)"
        params: dict[str, Any] = {"Bucket": self.bucket}
        if "RequestPayer" in self._extra:
            params["RequestPayer"] = self._extra["RequestPayer"]
        if "ExpectedBucketOwner" in self._extra:
            params["ExpectedBucketOwner"] = self._extra["ExpectedBucketOwner"]

        def start() -> Iterator[Mapping[str, Any]]:
            paginator = self._get_client().get_paginator("list_objects_v2")
            return iter(
                paginator.paginate(**params, PaginationConfig={"PageSize": self._page_size})
            )

        pages = await self._run(start, what)
        while True:  # bounded by the listing: the paginator stops at the last page
            page = await self._run(lambda: next(pages, None), what)
            if page is None:
                return
            for obj in page.get("Contents", ()):
                yield ObjectInfo(
                    bucket=self.bucket,
                    key=obj["Key"],
                    size=int(obj.get("Size", 0)),
                    etag=_unquote_etag(obj.get("ETag")),
                    last_modified=_timestamp(obj.get("LastModified")),
                )

    async def list_page(self, prefix: str, delimiter: str, after: str,
                        limit: int) -> ListPage:
        """One ListObjects page (``seeder.store.paging``): one ListObjectsV2 call to the
        backend with the same prefix, delimiter and ``StartAfter``, so nothing but the page
        is held. A backend that lists the ``after`` common prefix again (moto does; S3
        skips it) has it dropped here, which is why one more entry is asked for."""
        what = f"s3://{self.bucket}/ (list)"
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix,
                                  "MaxKeys": min(max(limit, 0) + 1, MAX_PAGE)}
        if delimiter:
            params["Delimiter"] = delimiter
        if after:
            params["StartAfter"] = after
        for name in ("RequestPayer", "ExpectedBucketOwner"):
            if name in self._extra:
                params[name] = self._extra[name]

        def call() -> Mapping[str, Any]:
            return self._get_client().list_objects_v2(**params)

        page = await self._run(call, what)
        items: list[ObjectInfo | str] = [
            ObjectInfo(bucket=self.bucket, key=obj["Key"], size=int(obj.get("Size", 0)),
                       etag=_unquote_etag(obj.get("ETag")),
                       last_modified=_timestamp(obj.get("LastModified")))
            for obj in page.get("Contents", ())]
        items += [cp["Prefix"] for cp in page.get("CommonPrefixes", ()) if "Prefix" in cp]
        items.sort(key=lambda i: i if isinstance(i, str) else i.key)
        found = group(items, prefix, delimiter, after, limit)
        if page.get("IsTruncated") and not found.truncated:
            return ListPage(found.objects, found.prefixes, True)
        return found

    def _get_params(self, info: ObjectInfo, first: int, last: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": info.key,
            "Range": f"bytes={first}-{last}",
            "IfMatch": f'"{info.etag}"',
            **self._extra,
        }
        if info.version_id is not None:
            params["VersionId"] = info.version_id
        return params

    def _check_readable(self, info: ObjectInfo, start: int, length: int) -> None:
        if start < 0 or length < 0:
            raise ValueError(f"bad range start={start} length={length}")
        if info.sse_c:
            raise StoreError(f"{self._what(info.key)}: encrypted with a customer key (SSE-C)")

    async def read(self, info: ObjectInfo, start: int, length: int) -> bytes:
        """GetObject ``Range: bytes=a-b`` with ``If-Match`` (and ``VersionId``): exactly the
        bytes, short only past ``info.size``. ObjectChanged on 412; a response shorter than
        asked (a broken transfer) is StoreUnavailable. ValueError on a negative range."""
        self._check_readable(info, start, length)
        end = min(start + length, info.size)
        if end <= start:
            return b""
        params = self._get_params(info, start, end - 1)
        what = self._what(info.key)

        def call() -> bytes:
            try:
                response = self._get_client().get_object(**params)
            except Exception as e:
                if error_fields(e)[0] == "InvalidRange":
                    return b""  # the object is shorter than info says: If-Match held, so EOF
                raise
            body = response["Body"]
            try:
                data = body.read()
            finally:
                body.close()
            if len(data) != end - start:
                raise StoreUnavailable(f"{what}: short read ({len(data)} of {end - start})")
            return data

        return await self._run(call, what)

    async def stream(
        self, info: ObjectInfo, start: int, length: int, chunk: int = DEFAULT_STREAM_CHUNK
    ) -> AsyncIterator[bytes]:
        """One ranged, If-Match GetObject, its body read ``chunk`` bytes per thread hop: one
        request per stream, about one chunk in memory. Errors as :meth:`read`; a transfer
        that breaks after the first chunk raises StoreUnavailable from the iteration."""
        self._check_readable(info, start, length)
        if chunk <= 0:
            raise ValueError("chunk must be positive")
        end = min(start + length, info.size)
        if end <= start:
            return
        params = self._get_params(info, start, end - 1)
        what = self._what(info.key)
        response = await self._run(lambda: self._get_client().get_object(**params), what)
        body = response["Body"]
        try:
            remaining = end - start
            while remaining > 0:  # bounded: every pass yields >= 1 byte or raises
                data = await self._run(lambda: body.read(min(chunk, remaining)), what)  # noqa: B023
                if not data:
                    raise StoreUnavailable(f"{what}: stream ended {remaining} bytes short")
                remaining -= len(data)
                yield data
        finally:
            body.close()  # unread rest: urllib3 drops the connection instead of reusing it

    async def open_reader(self, info: ObjectInfo) -> S3Reader:
        """An :class:`S3Reader` of ``info`` (its reads are pinned to ``info.etag`` and
        ``info.version_id``). Makes the client if needed; StoreError for an SSE-C object."""
        self._check_readable(info, 0, 0)
        client = await self._run(self._get_client, self._what(info.key))
        return S3Reader(self, info, client)

    def origin_url(self, key: str) -> str | None:
        """The object's plain URL at the endpoint (the BEP 19 web seed in ``origin`` mode)."""
        return object_url(self.endpoint_url, self.region, self.bucket, key, self.addressing_style)

    def presigned_url(
        self, key: str, expires: int, version_id: str | None = None
    ) -> str | None:
        """A SigV4 presigned GetObject URL valid ``expires`` seconds, pinned to
        ``version_id`` when given (``versionId=`` is signed: a client cannot drop it and get
        another version's bytes). For a requester-pays bucket ``x-amz-request-payer=requester``
        is a signed query parameter, so the URL needs no header (S3 accepts it there:
        "For signed URLs, include x-amz-request-payer=requester in the request"). Pure
        computation once the client exists; the first call may block briefly discovering
        credentials."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id is not None:
            params["VersionId"] = version_id
        if "RequestPayer" in self._extra:
            params["RequestPayer"] = self._extra["RequestPayer"]
        try:
            return self._get_client().generate_presigned_url(
                "get_object", Params=params, ExpiresIn=int(expires)
            )
        except Exception as e:
            raise translate_error(e, self._what(key)) from None

    async def aclose(self) -> None:
        """Close the client's connection pool. Idempotent; later calls raise StoreError."""
        with self._client_lock:
            client, self._client, self._closed = self._client, None, True
        if client is not None:
            await trio.to_thread.run_sync(client.close)
