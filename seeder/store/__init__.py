"""Object store backends: the one interface the rest of the seeder reads objects through.

A :class:`Store` serves one bucket. Two backends implement it:

- ``seeder.store.local.LocalStore``: a directory on disk (``backend = "local"``, ``path``).
- ``seeder.store.s3.S3Store``: any S3 endpoint through boto3 in trio worker threads
  (``backend = "s3"``: AWS, MinIO, Ceph RGW, moto).

Every failure a backend can meet leaves it as one of the :class:`StoreError` subclasses
below; a botocore or OSError never escapes a store method.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from seeder.config import BucketConfig
    from seeder.store.paging import ListPage

__all__ = [
    "DEFAULT_STREAM_CHUNK",
    "BackendAccessDenied",
    "BlockingReader",
    "InvalidKey",
    "NoSuchBucket",
    "NoSuchKey",
    "ObjectChanged",
    "ObjectInfo",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "SupportsBlockingRead",
    "SupportsListPage",
    "SupportsReadMany",
    "make_store",
]

#: Default chunk size of :meth:`Store.stream`: bounded memory per streaming response.
DEFAULT_STREAM_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a store knows about one object version: enough to read it consistently.

    ``etag`` is the backend's change token without quotes: the S3 ETag, or for local files
    a cheap fingerprint of (inode, size, mtime_ns) (see ``seeder.store.local``). Reads are
    pinned to it: if the object no longer matches, the read raises :class:`ObjectChanged`.
    """

    bucket: str
    key: str
    size: int
    etag: str  # as the backend reports it, without quotes
    last_modified: float  # unix seconds
    version_id: str | None = None
    sse_c: bool = False  # encrypted with a customer key (SSE-C): we cannot read it


class StoreError(Exception):
    """Base of every error a store raises. ``str(err)`` is one human line, no secrets."""


class NoSuchKey(StoreError):
    """The object (or that version of it) does not exist."""


class NoSuchBucket(StoreError):
    """The bucket does not exist at the backend (or the local root is missing)."""


class ObjectChanged(StoreError):
    """The object changed since its ``ObjectInfo`` was taken (S3 412 on If-Match; local
    size/mtime/inode moved). Whatever was read of it must be thrown away."""


class StoreUnavailable(StoreError):
    """The backend is unreachable, timed out, answered 5xx, or throttled (S3 503 SlowDown).
    Worth retrying later; says nothing about the object."""


class BackendAccessDenied(StoreError):
    """The backend refused our credentials for this request (403)."""


class InvalidKey(StoreError):
    """The key cannot name an object here (local: escapes the root, NUL byte, empty
    segment, trailing ``/``, ...)."""


@runtime_checkable
class Store(Protocol):
    """One bucket of one backend. Methods are trio-async; blocking I/O runs in threads.

    Errors: every method raises only :class:`StoreError` subclasses (and trio.Cancelled).
    """

    bucket: str

    async def head(self, key: str, version_id: str | None = None) -> ObjectInfo:
        """Metadata of ``key`` (of ``version_id`` if given). NoSuchKey if absent.

        S3: a HEAD of an SSE-C object without its key answers 400; that gives
        ``ObjectInfo(sse_c=True)`` with whatever is known (size 0, etag ``""``)."""
        ...

    def list(self) -> AsyncIterator[ObjectInfo]:
        """All objects of the bucket, paginated under the hood, in key order.

        ``sse_c`` is never known from a listing (always False there): ``head`` decides."""
        ...

    async def read(self, info: ObjectInfo, start: int, length: int) -> bytes:
        """Exactly ``length`` bytes from offset ``start`` of the object ``info`` describes
        (fewer only when the range runs past the end; ``b""`` at or past the end).
        Pinned to ``info.etag`` (and ``info.version_id``): ObjectChanged if it moved."""
        ...

    def stream(
        self, info: ObjectInfo, start: int, length: int, chunk: int = DEFAULT_STREAM_CHUNK
    ) -> AsyncIterator[bytes]:
        """The same bytes as ``read(info, start, length)`` as chunks of at most ``chunk``
        bytes, holding at most about one chunk in memory. Errors as ``read``; an error
        after the first chunk ends the iteration with that error (the caller must cut
        the response short, never pad it). A consumer that may stop early should wrap it
        in ``contextlib.aclosing`` so the backend releases its connection at once."""
        ...

    def origin_url(self, key: str) -> str | None:
        """The object's plain URL at the backend (the BEP 19 web seed in ``origin`` mode),
        or None if there is none (local directories)."""
        ...

    def presigned_url(
        self, key: str, expires: int, version_id: str | None = None
    ) -> str | None:
        """A SigV4 presigned GET URL valid ``expires`` seconds (private S3 buckets), for
        ``version_id`` when given; usable with no extra header (a requester-pays bucket's
        ``x-amz-request-payer`` is a signed query parameter). None if the backend has no
        such thing."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads' resources. Idempotent."""
        ...


@runtime_checkable
class BlockingReader(Protocol):
    """Synchronous reads of one pinned object version, for worker threads (optional).

    Made by :meth:`SupportsBlockingRead.open_reader`. Reading happens in the calling thread
    into the caller's buffer: no trio hop and no new ``bytes`` per read, which is what makes
    hashing from a store as cheap as hashing a file (``seeder.torrent.hashing``).

    Thread-safe: several threads may call :meth:`read_into` at once with their own buffers.
    Never call it from the trio thread (it blocks). :meth:`close` only after every
    ``read_into`` has returned; it is idempotent.
    """

    #: How many ``read_into`` calls at once are worth making: 1 when a read is a memory copy
    #: (local files: more threads than hashing threads only add contention), more when a
    #: read waits on the network (S3: requests in flight, up to the store's connections).
    parallelism: int

    #: Bytes per ``read_into`` call that suit this reader (hashing rounds it to whole pieces):
    #: small enough that the buffers stay in the CPU caches when a read is a memory copy
    #: (local files: 2 MiB), large enough that a request's fixed costs are noise (S3: 8 MiB).
    read_size: int

    def read_into(self, start: int, buf: memoryview) -> int:
        """Fill ``buf`` with the object's bytes from offset ``start``; the count filled.

        Fewer than ``len(buf)`` only when the object (as ``info.size`` says) ends first; 0
        at or past the end. Pinned like :meth:`Store.read`: ObjectChanged if the object is
        no longer the version the reader was opened for (bytes already in ``buf`` must be
        thrown away). Raises only StoreError subclasses (ValueError for a negative start).
        """
        ...

    def close(self) -> None:
        """Release the reader's file or connections. Idempotent."""
        ...


@runtime_checkable
class SupportsBlockingRead(Protocol):
    """A store that can also hand out a :class:`BlockingReader` (LocalStore, S3Store).

    Optional capability: callers check ``isinstance(store, SupportsBlockingRead)`` and fall
    back to :meth:`Store.read` otherwise.
    """

    async def open_reader(self, info: ObjectInfo) -> BlockingReader:
        """A reader of the object version ``info`` describes. Errors as :meth:`Store.read`
        (NoSuchKey, ObjectChanged if it already moved, ...). The caller closes it."""
        ...


@runtime_checkable
class SupportsReadMany(Protocol):
    """A store that reads many whole objects in one worker-thread hop (LocalStore: a local
    file is read in microseconds, less than a hop costs). Optional capability, for many
    small objects (the scanner's); S3 lacks it (its reads wait on round trips, which
    overlap only as separate requests in flight)."""

    async def read_many(self, infos: Sequence[ObjectInfo],
                        then: Callable[[ObjectInfo, bytes], Any]) -> list[Any]:
        """Each object of ``infos`` read whole, pinned to its ETag as :meth:`Store.read`
        is, and ``then(info, data)`` called on it in that worker thread (it must be
        thread-safe: hashing, encoding). Per object, in order: what ``then`` returned, or
        the Exception its read or ``then`` raised (ObjectChanged, NoSuchKey, ...): one
        object's failure is its own."""
        ...


@runtime_checkable
class SupportsListPage(Protocol):
    """A store that lists one ListObjects page at a time from any position (LocalStore,
    S3Store): what the S3 API's ListObjects answers from. Optional capability; without
    it the caller groups :meth:`Store.list` with ``seeder.store.paging.group``."""

    async def list_page(self, prefix: str, delimiter: str, after: str,
                        limit: int) -> ListPage:
        """The page of keys under ``prefix`` after ``after`` (``seeder.store.paging`` has
        the rules), at most ``limit`` (<= 1000) entries. Errors as :meth:`Store.list`."""
        ...


def make_store(
    bucket: BucketConfig,
    *,
    threads: int = 4,
    on_breaker: Callable[[str, Any, Any], None] | None = None,
) -> Store:
    """The store for one ``[[buckets]]`` entry. ``threads`` bounds the worker threads (and
    S3 connections) this store uses at once. ``on_breaker(bucket, old, new)``: told each
    transition of an S3 bucket's circuit breaker (``seeder.store.guard``).

    Raises StoreError (never a crash) for a config it cannot serve, e.g. an unknown backend
    or a local bucket without ``path``. Does no I/O: an unreachable endpoint shows up on
    first use as StoreUnavailable.
    """
    if bucket.backend == "local":
        from seeder.store.local import LocalStore

        if not bucket.path:
            raise StoreError(f"bucket {bucket.name!r}: backend 'local' needs a path")
        return LocalStore(bucket.name, bucket.path, threads=threads)
    if bucket.backend == "s3":
        from seeder.store.s3 import S3Store

        return S3Store.from_config(bucket, threads=threads, on_breaker=on_breaker)
    raise StoreError(f"bucket {bucket.name!r}: unknown backend {bucket.backend!r}")
