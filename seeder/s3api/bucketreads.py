"""The read-only calls around a torrent: ListBuckets, ListObjects(V2), HeadBucket,
GetBucketLocation. Called by ``handlers.S3Api`` once the request is authorised.

Listing pages come from the store's ``list_page`` (``seeder.store.paging``): a local bucket
walks its directory from the page's position, an ``s3`` bucket makes one ListObjectsV2 call
to its backend per page; no listing is ever held whole. Store failures become S3 errors the
way ``handlers`` maps them (``store_error``).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Mapping

import trio

from seeder.config import BucketConfig, Config
from seeder.s3api import listing, results
from seeder.s3api.errors import S3Error
from seeder.s3api.request import BucketRead, GetTorrent, ListService, S3Operation
from seeder.store import Store, StoreError, SupportsListPage
from seeder.store.paging import ListPage, group, skips_under, wanted

__all__ = ["OWNER", "BucketReads", "operation_name"]

# One owner for everything this server lists (S3's 64-hex canonical user id form).
OWNER = results.Owner(hashlib.sha256(b"s3torrent").hexdigest(), "s3torrent")
XML = b"application/xml"

Headers = list[tuple[bytes, bytes]]
StoreErrorMap = Callable[[StoreError, str, str], S3Error]


def operation_name(op: S3Operation) -> str:
    """The S3 operation's name, as the metrics label it."""
    if isinstance(op, GetTorrent):
        return "GetObjectTorrent"
    if isinstance(op, ListService):
        return "ListBuckets"
    if not isinstance(op, BucketRead):
        return "HeadObject" if op.head else "GetObject"
    if op.location:
        return "GetBucketLocation"
    if op.head:
        return "HeadBucket"
    return "ListObjectsV2" if ("list-type", "2") in op.params else "ListObjects"


class BucketReads:
    """Answers ``ListService`` and ``BucketRead`` operations; ``store_error`` maps a
    StoreError to the S3Error the client gets (the handlers' mapping, with its metrics)."""

    def __init__(self, store_error: StoreErrorMap) -> None:
        self.store_error = store_error
        self.started = time.time()

    async def list_buckets(self, config: Config, readable: Callable[[BucketConfig], bool],
                           headers: Headers) -> tuple[int, Headers, bytes]:
        """ListBuckets: the configured buckets ``readable`` says the caller may read."""
        buckets = [b for b in config.buckets if readable(b)]
        dates = await trio.to_thread.run_sync(self._creation_dates, buckets)
        body = results.list_buckets(OWNER, list(zip((b.name for b in buckets), dates,
                                                     strict=True)))
        return 200, [*headers, (b"content-type", XML)], body

    def _creation_dates(self, buckets: Iterable[BucketConfig]) -> list[float]:
        """A local bucket's directory mtime; the daemon's start for others (we do not
        know when a backend bucket was made, and ListBuckets there may be denied)."""
        out = []
        for b in buckets:
            when = self.started
            if b.backend == "local" and b.path:
                try:
                    when = os.stat(b.path).st_mtime
                except OSError:
                    pass
            out.append(when)
        return out

    async def bucket(self, bucket: BucketConfig, stores: Mapping[str, Store], op: BucketRead,
                     headers: Headers) -> tuple[int, Headers, bytes]:
        """HeadBucket, GetBucketLocation or a ListObjects(V2) page of ``bucket``."""
        region = bucket.region or "us-east-1"
        headers = [*headers, (b"x-amz-bucket-region", region.encode("ascii", "replace"))]
        if op.location:
            return 200, [*headers, (b"content-type", XML)], results.location(region)
        req = listing.parse_list(op.params) if not op.head else None
        store = stores.get(bucket.name)
        if store is None:
            raise self.store_error(StoreError("no store"), bucket.name, "")
        if req is None:  # HeadBucket: the bucket must exist at the backend
            await self._page(store, "", "", "", 0)
            return 200, headers, b""
        page = ListPage()
        if req.page_size > 0:
            page = await self._page(store, req.prefix, req.delimiter, req.after, req.page_size)
        body = results.list_objects(bucket.name, req, page, OWNER)
        return 200, [*headers, (b"content-type", XML)], body

    async def _page(self, store: Store, prefix: str, delimiter: str, after: str,
                    limit: int) -> ListPage:
        try:
            if isinstance(store, SupportsListPage):
                return await store.list_page(prefix, delimiter, after, limit)
            return await _group_stream(store, prefix, delimiter, after, limit)
        except StoreError as exc:
            raise self.store_error(exc, store.bucket, "") from None


async def _group_stream(store: Store, prefix: str, delimiter: str, after: str,
                        limit: int) -> ListPage:
    """A page from a store without ``list_page`` (test doubles): its listing, filtered as it
    streams, then grouped."""
    skip = skips_under(after, prefix, delimiter)
    items = [info async for info in store.list() if wanted(info.key, prefix, after, skip)]
    return group(items, prefix, delimiter, after, limit)
