"""This daemon as one node of a cluster: the parts built from ``[cluster]`` and run together.

The daemon builds a :class:`ClusterNode` when ``[cluster] redis_url`` is set, hands it the
tracker core, the torrent service and the seeding policy (:meth:`attach_tracker`,
:meth:`attach_torrents`, :meth:`replicas`), and starts :meth:`run` before its listeners.
Redis being down at start does not stop the daemon: it starts degraded and joins when
Redis answers.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

import trio
from coredis.tokens import PureToken
from prometheus_client import CollectorRegistry

from seeder.cluster.keys import DEFAULT_KEYS, Keys
from seeder.cluster.link import ClusterMetrics, RedisLink, Unavailable
from seeder.cluster.membership import Membership
from seeder.cluster.replicas import Replicas
from seeder.cluster.shared_catalog import SharedCatalog
from seeder.cluster.swarm_sync import SwarmSync, wall_offset
from seeder.seed.policy import Seeding
from seeder.torrent.entry import Entry
from seeder.torrent.service import TorrentService
from tracker.core import TrackerCore
from tracker.udp_protocol import ConnectionIds

__all__ = ["ClusterNode"]

log = logging.getLogger(__name__)

UDP_KEY_RETRY = 1.0  # s between looks at whether the UDP key must be agreed again


class ClusterNode:
    """One node: its Redis link, swarm sync, shared catalog and membership."""

    def __init__(self, redis_url: str, node_id: str, seed_replicas: int,
                 registry: CollectorRegistry, *, keys: Keys = DEFAULT_KEYS) -> None:
        self.node_id = node_id
        self.keys = keys
        self.metrics = ClusterMetrics(registry)
        self.link = RedisLink(redis_url, metrics=self.metrics)
        self.catalog = SharedCatalog(self.link, node_id, keys=keys, metrics=self.metrics)
        self.membership = Membership(self.link, node_id, seed_replicas, keys=keys,
                                     metrics=self.metrics)
        self.swarms: SwarmSync | None = None
        self.tracker: TrackerCore | None = None
        self._udp_key: bytes | None = None

    # -- wiring (before run) ------------------------------------------------------------------

    def attach_tracker(self, core: TrackerCore,
                       on_announce: Callable[[bytes], None] | None = None) -> None:
        """Share ``core``'s swarms; ``on_announce`` also hears peers other nodes stored."""
        self.tracker = core
        self.swarms = SwarmSync(self.link, core, self.node_id, keys=self.keys,
                                metrics=self.metrics, on_announce=on_announce)
        core.peer_log = self.swarms

    def attach_torrents(self, torrents: TorrentService) -> None:
        """Share ``torrents``' catalog; the swarm of every torrent added is read from Redis."""
        self.catalog.torrents = torrents
        torrents.shared = self.catalog
        if self.swarms is not None:
            torrents.add_listener(_WatchSwarms(self.swarms))

    def replicas(self, seeding: Seeding, entries: Callable[[], list[Entry]]) -> Replicas:
        """``seeding`` restricted to the torrents this node owns (``entries``: the
        catalog's torrents, for rebalancing)."""
        session = seeding.session
        self.metrics.seeded_torrents.set_function(lambda: len(session.torrents()))
        return Replicas(seeding, self.membership, entries, self._in_demand)

    def _in_demand(self, entry: Entry) -> bool:
        if self.tracker is None:
            return False
        for h in entry.tracker_hashes:
            swarm = self.tracker.swarms.get(h)
            if swarm is not None and swarm.peers:
                return True
        return False

    # -- the task -----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every part until cancelled. Reports started after one try to reach Redis
        (a failure leaves the node degraded, not stopped)."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.link.run)
            if self.tracker is not None:
                await self._share_udp_key()
                nursery.start_soon(self._keep_udp_key)
            await self.membership.beat()
            if self.swarms is not None:
                nursery.start_soon(self.swarms.run)
            nursery.start_soon(self.catalog.run)
            nursery.start_soon(self.membership.run)
            task_status.started()

    async def leave(self) -> None:
        """A clean stop, before the daemon cancels its tasks: leave the cluster (the other
        nodes take this node's seeds at once) and treat Redis failures from here on as
        part of the stop, not as an outage."""
        await self.membership.leave()
        self.link.closing = True

    async def _share_udp_key(self) -> bool:
        """Make every node issue and accept the same UDP connection ids: the key in Redis,
        stored by the first node that finds none (``SET NX``: this node's key, so that a
        Redis restarted empty takes a key the running nodes already use). Returns False
        while Redis is down."""
        core = self.tracker
        assert core is not None
        candidate = self._udp_key or secrets.token_bytes(32)
        try:
            await self.link.call(
                lambda c: c.set(self.keys.udp_key, candidate, condition=PureToken.NX))
            key = await self.link.call(lambda c: c.get(self.keys.udp_key))
        except Unavailable:
            return False
        if not key or not 16 <= len(key) <= 64:
            log.warning("cluster: the shared UDP key in Redis is malformed; keeping this "
                        "node's own")
            return True
        if key != self._udp_key:
            self._udp_key = key
            core.connection_ids = ConnectionIds(key, offset=wall_offset())
        return True

    async def _keep_udp_key(self) -> None:
        """Agree on the UDP key again whenever Redis comes back (it may have restarted)."""
        seen = self.link.epoch if self._udp_key else -1
        while True:
            if self.link.epoch != seen and await self._share_udp_key():
                seen = self.link.epoch
            await trio.sleep(UDP_KEY_RETRY)


class _WatchSwarms:
    """A torrent service listener: a new torrent's swarm is read from Redis."""

    def __init__(self, sync: SwarmSync) -> None:
        self.sync = sync

    def torrent_added(self, entry: Entry) -> None:
        self.sync.watch(entry.tracker_hashes)

    def torrent_removed(self, entry: Entry) -> None:
        pass

    def torrent_relinked(self, entry: Entry) -> None:
        pass
