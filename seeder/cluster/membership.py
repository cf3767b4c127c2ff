"""Which nodes are alive, and which of them seed which torrent.

Each node writes a heartbeat every ``HEARTBEAT_EVERY`` seconds (``scripts.HEARTBEAT``:
its id scored with the Redis clock in one sorted set) and reads back the ids heard from
within ``DEAD_AFTER_MS``. A node killed with kill -9 drops out of every view that long
after its last heartbeat; a node that stops cleanly leaves at once. While Redis is
unreachable the last view is kept (no reshuffle on an outage).

A torrent is seeded by the ``seed_replicas`` live nodes that rendezvous hashing ranks
first for its object (``rendezvous.owners`` over ``bucket \\0 key``), not by every node:
the cluster's seed caches hold each object about ``seed_replicas`` times. When the view
changes, the listeners (:class:`~seeder.cluster.replicas.Replicas`) move the torrents.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from seeder.cluster import scripts
from seeder.cluster.keys import DEFAULT_KEYS, Keys
from seeder.cluster.link import ClusterMetrics, RedisLink, Unavailable
from seeder.cluster.rendezvous import owners

__all__ = ["DEAD_AFTER_MS", "HEARTBEAT_EVERY", "Membership"]

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 1.0  # s
DEAD_AFTER_MS = 5_000  # a node silent this long is out of the view


class Membership:
    """This node's view of the live nodes; :meth:`owns` decides what it seeds."""

    def __init__(self, link: RedisLink, node_id: str, replicas: int, *, keys: Keys = DEFAULT_KEYS,
                 metrics: ClusterMetrics | None = None,
                 heartbeat_every: float = HEARTBEAT_EVERY,
                 dead_after_ms: int = DEAD_AFTER_MS) -> None:
        self.link = link
        self.node_id = node_id
        self.replicas = replicas
        self.keys = keys
        self.metrics = metrics
        self.heartbeat_every = heartbeat_every
        self.dead_after_ms = dead_after_ms
        self.live: tuple[str, ...] = (node_id,)
        self.listeners: list[Callable[[], None]] = []
        self.version = 0  # bumped at every change of ``live``
        self.left = False
        if metrics is not None:
            metrics.nodes.set(1)

    def owners(self, bucket: str, key: str) -> list[str]:
        """The live nodes that seed the objects at ``bucket``/``key``."""
        return owners(f"{bucket}\0{key}".encode(), self.live, self.replicas)

    def owns(self, bucket: str, key: str) -> bool:
        return self.node_id in self.owners(bucket, key)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Heartbeat forever (until :meth:`leave`)."""
        task_status.started()
        while True:
            if not self.left:
                await self.beat()
            await trio.sleep(self.heartbeat_every)

    async def leave(self) -> None:
        """Leave the cluster now (a clean stop): the other nodes drop this one from their
        view at their next heartbeat and take its seeds, instead of after ``DEAD_AFTER_MS``.
        No more heartbeats from here on. Best effort: Redis unreachable, nothing happens."""
        self.left = True
        try:
            await self._heartbeat(b"leave")
        except Unavailable:
            pass

    async def beat(self) -> None:
        """One heartbeat and view update (no-op while Redis is unreachable)."""
        try:
            ids = await self._heartbeat(b"")
        except Unavailable:
            return
        live = tuple(sorted({i.decode() for i in ids} | {self.node_id}))
        if live != self.live:
            gone = sorted(set(self.live) - set(live))
            new = sorted(set(live) - set(self.live))
            self.live = live
            self.version += 1
            log.info("cluster: %d nodes live (%s)%s%s", len(live), ", ".join(live),
                     f"; joined: {', '.join(new)}" if new else "",
                     f"; gone: {', '.join(gone)}" if gone else "")
            if self.metrics is not None:
                self.metrics.nodes.set(len(live))
            for listener in self.listeners:
                try:
                    listener()
                except Exception:
                    log.exception("cluster: membership listener failed")

    async def _heartbeat(self, mode: bytes) -> list[bytes]:
        return await self.link.script(scripts.HEARTBEAT, [self.keys.nodes],
                                      [self.node_id, self.dead_after_ms, mode])
