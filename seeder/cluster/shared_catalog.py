"""One catalog for the cluster: a torrent made by one node is served by all, hashed once.

Redis holds the shared record of each object slot (``records.encode_entry``: the torrent's
bytes, ETag, version, info-hashes) under ``keys.catalog(name)``; each node's SQLite catalog
stays its cache, and every GetObjectTorrent still HEADs the object first, so a node never
answers with a torrent of bytes the object no longer has (an overwritten object's old
torrent fails the ETag check, a deleted one is 404 NoSuchKey, on every node).

Making a torrent (:meth:`SharedCatalog.generate_once`, called by the torrent service when
its cache has nothing current): read the record; if it describes the object as it is now,
take it (no read of the object). Else take the object's lease (``SET NX PX``, renewed
every ``LEASE_MS / 3`` while hashing, expiring ``LEASE_MS`` after a crash), read the record
again, hash, publish the record and a ``put`` event, give the lease back. A node that finds
the lease taken polls the record until it appears or the lease is gone (then takes it).
Two nodes asked at once thus read the object once.

Following the others (:meth:`SharedCatalog.run`): the catalog change log (``put``/``del``
events) is read every ``POLL_EVERY`` seconds; a ``put`` from another node is stored in the
local catalog (the tracker registers its info-hashes, so announces for it are accepted
here too; a newer ETag retires the old torrent: its swarm and its seed), a ``del`` drops
the entry. At the first contact and after Redis was unreachable, the whole shared catalog
is scanned: records this node lacks are taken, torrents this node made meanwhile are
published.

Redis unreachable: the node hashes on its own (it cannot know whether another node is),
and catches up later; a lost ``del`` only costs the stale entry until the object's next
request finds it gone.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio
from coredis.tokens import PureToken

from seeder.cluster import records, scripts
from seeder.cluster.keys import DEFAULT_KEYS, Keys, catalog_name
from seeder.cluster.link import ClusterMetrics, RedisLink, Unavailable
from seeder.torrent.entry import Entry

__all__ = ["LEASE_MS", "SharedCatalog"]

log = logging.getLogger(__name__)

LEASE_MS = 15_000  # a crashed node's lease frees the object after this long
WAIT_POLL = 0.2  # s between looks at a record another node is making
POLL_EVERY = 0.5  # s between reads of the catalog change log
LOG_KEEP = 100_000  # catalog change-log entries kept (about, MAXLEN ~)
READ_COUNT = 200
SCAN_COUNT = 500


class Torrents(Protocol):
    """What the shared catalog needs of the torrent service."""

    def adopt(self, entry: Entry) -> None: ...
    def forget(self, bucket: str, key: str, version_id: str | None = None, *,
               etag: str | None = None, share: bool = True) -> Entry | None: ...
    def local_entries(self) -> list[Entry]: ...


def _split(name: bytes) -> tuple[str, str, str | None]:
    bucket, key, version = name.decode().split("\0")
    return bucket, key, version or None


class SharedCatalog:
    """The torrent service's :class:`~seeder.torrent.service.SharedStore` in cluster mode,
    and the task that follows the other nodes' catalog changes."""

    def __init__(self, link: RedisLink, node_id: str, *, keys: Keys = DEFAULT_KEYS,
                 metrics: ClusterMetrics | None = None) -> None:
        self.link = link
        self.node_id = node_id.encode()
        self.keys = keys
        self.metrics = metrics
        self.torrents: Torrents | None = None
        self._last_id = b"0-0"
        self._epoch = 0
        self._outbox: list[tuple[bytes, bytes, bytes]] = []  # (op, name, record) to publish
        self._kick = trio.Event()

    # -- the torrent service's side ---------------------------------------------------------

    async def generate_once(self, bucket: str, key: str, version_id: str | None,
                            accept: Callable[[Entry], bool],
                            generate: Callable[[], Awaitable[Entry]]) -> tuple[Entry, bool]:
        """An entry for the object: a shared one that ``accept`` takes, or ``generate()``
        run under the object's cluster-wide lease (then published). The bool: made here."""
        name = catalog_name(bucket, key, version_id)
        lease = self.keys.lease(name)
        token = self.node_id + b" " + secrets.token_hex(8).encode()
        while True:
            try:
                found = await self._take(name, accept)
                if found is not None:
                    return found, False
                got = await self.link.call(
                    lambda c: c.set(lease, token, condition=PureToken.NX, px=LEASE_MS))
            except Unavailable:
                return await generate(), True  # degraded: hash here, publish later
            if got:
                break
            await trio.sleep(WAIT_POLL)  # another node is hashing it
        try:
            try:
                found = await self._take(name, accept)  # made while we looked
            except Unavailable:
                found = None
            if found is not None:
                return found, False
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._renew, lease, token)
                entry = await generate()
                nursery.cancel_scope.cancel()
            await self._publish(b"put", name, records.encode_entry(entry))
            return entry, True
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(self.link.timeout):
                try:
                    await self.link.script(scripts.LEASE_RELEASE, [lease], [token])
                except Unavailable:
                    pass  # it expires

    def forgotten(self, entry: Entry) -> None:
        """The torrent service dropped ``entry`` (object gone): tell the other nodes."""
        self._outbox.append((b"del", catalog_name(entry.bucket, entry.key, entry.version_id),
                             b""))
        self._kick.set()

    async def _take(self, name: bytes, accept: Callable[[Entry], bool]) -> Entry | None:
        value = await self.link.call(lambda c: c.get(self.keys.catalog(name)))
        if value is None:
            return None
        try:
            entry = records.decode_entry(value)
        except records.RecordError as exc:
            log.warning("cluster: ignoring the shared record of %r: %s", name, exc)
            return None
        if not accept(entry):
            return None
        if self.metrics is not None:
            self.metrics.shared_torrents.inc()
        return entry

    async def _renew(self, lease: bytes, token: bytes) -> None:
        while True:
            await trio.sleep(LEASE_MS / 3000)
            try:
                await self.link.script(scripts.LEASE_RENEW, [lease], [token, LEASE_MS])
            except Unavailable:
                pass

    async def _publish(self, op: bytes, name: bytes, record: bytes) -> None:
        try:
            await self.link.script(scripts.PUBLISH,
                                   [self.keys.catalog(name), self.keys.catalog_log],
                                   [self.node_id, op, name, record, LOG_KEEP])
        except Unavailable:
            if op == b"del":
                self._outbox.append((op, name, record))  # puts are found by the next scan

    # -- following the other nodes ----------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the catalog change log forever (see the module docstring)."""
        task_status.started()
        while True:
            try:
                await self.tick()
            except Unavailable:
                pass
            with trio.move_on_after(POLL_EVERY):
                await self._kick.wait()
            self._kick = trio.Event()

    async def tick(self) -> None:
        """One round. Raises Unavailable."""
        while self._outbox:
            op, name, record = self._outbox[0]
            await self.link.script(scripts.PUBLISH,
                                   [self.keys.catalog(name), self.keys.catalog_log],
                                   [self.node_id, op, name, record, LOG_KEEP])
            self._outbox.pop(0)
        if self.link.epoch != self._epoch:
            epoch = self.link.epoch
            await self.reconcile()
            self._epoch = max(epoch, 1)
        while await self._follow() >= READ_COUNT:
            pass

    async def _follow(self) -> int:
        entries: Any = await self.link.call(
            lambda c: c.xrange(self.keys.catalog_log, b"(" + self._last_id, b"+",
                               count=READ_COUNT))
        for e in entries:
            self._last_id = e.identifier
            fields = e.field_values
            if fields.get(b"n") == self.node_id:
                continue
            name = fields.get(b"k", b"")
            try:
                if fields.get(b"o") == b"del":
                    self._drop(name)
                else:
                    value = await self.link.call(lambda c, n=name: c.get(self.keys.catalog(n)))
                    if value is not None:
                        self._adopt(records.decode_entry(value))
            except (records.RecordError, ValueError) as exc:
                log.warning("cluster: skipping catalog change %r: %s", name, exc)
        return len(entries)

    async def reconcile(self) -> None:
        """Take every shared record this node lacks; publish what only this node has."""
        if self.torrents is None:
            return
        last: Any = await self.link.call(
            lambda c: c.xrevrange(self.keys.catalog_log, b"+", b"-", count=1))
        self._last_id = last[0].identifier if last else b"0-0"
        shared: set[bytes] = set()
        prefix = self.keys.catalog(b"")
        cursor: int | None = 0
        for _ in range(1_000_000):  # bounded: SCAN ends when the cursor is 0 again
            reply: Any = await self.link.call(
                lambda c, cur=cursor: c.scan(cur, match=prefix + b"*", count=SCAN_COUNT))
            cursor, names = reply
            if names:
                values: Any = await self.link.call(lambda c, ns=names: c.mget(list(ns)))
                for name, value in zip(names, values, strict=True):
                    shared.add(name[len(prefix):])
                    if value is None:
                        continue
                    try:
                        self._adopt(records.decode_entry(value))
                    except records.RecordError as exc:
                        log.warning("cluster: ignoring the shared record %r: %s", name, exc)
            if not cursor:
                break
        for entry in self.torrents.local_entries():
            name = catalog_name(entry.bucket, entry.key, entry.version_id)
            if name not in shared:
                await self._publish(b"put", name, records.encode_entry(entry))

    def _adopt(self, entry: Entry) -> None:
        if self.torrents is not None:
            self.torrents.adopt(entry)

    def _drop(self, name: bytes) -> None:
        if self.torrents is not None:
            bucket, key, version = _split(name)
            self.torrents.forget(bucket, key, version, share=False)
