"""Seed only the torrents this node owns: the seeding policy behind an ownership gate.

:class:`Replicas` stands where the daemon would put its :class:`~seeder.seed.policy.Seeding`
as a catalog listener and as the S3 API's and the tracker's demand hooks. A torrent this
node does not own (``Membership.owns``) is not added to the session and its bytes are not
cached here; everything else passes through. When the live nodes change,
:meth:`Replicas.rebalance` removes the torrents this node no longer owns and adds the ones
it gained that are in demand (peers in their shared swarm), which is how a dead node's
torrents move to the next nodes. Inside the gate, the session holds only torrents in demand
(seeder/seed/active.py): a torrent is active here if this node is among its replicas *and*
it is in demand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from seeder.cluster.membership import Membership
from seeder.seed.cache import CacheWriter
from seeder.seed.policy import Seeding
from seeder.store import ObjectInfo
from seeder.torrent.entry import Entry

__all__ = ["Replicas"]

log = logging.getLogger(__name__)

_OWNED_MEMO_MAX = 100_000


class Replicas:
    """``Seeding`` restricted to the torrents this node owns. ``entries``: the catalog's
    torrents; ``in_demand(entry)``: whether the torrent's swarm has peers."""

    def __init__(self, seeding: Seeding, membership: Membership,
                 entries: Callable[[], list[Entry]],
                 in_demand: Callable[[Entry], bool] = lambda e: False) -> None:
        self.seeding = seeding
        self.membership = membership
        self.entries = entries
        self.in_demand = in_demand
        self._owned: dict[bytes, bool] = {}  # info-hash -> owned (this membership version)
        self._version = membership.version
        membership.listeners.append(self.rebalance)
        # Demand that reaches the policy some other way (web seed traffic) is gated too.
        seeding.active.eligible = self.owns

    def owns(self, entry: Entry) -> bool:
        return self.membership.owns(entry.bucket, entry.key)

    # -- generation, catalog listener --------------------------------------------------------

    def chunk_sink(self, info: ObjectInfo) -> CacheWriter | None:
        if not self.membership.owns(info.bucket, info.key):
            return None
        return self.seeding.chunk_sink(info)

    def torrent_added(self, entry: Entry) -> None:
        if self.owns(entry):
            self.seeding.torrent_added(entry)

    def torrent_relinked(self, entry: Entry) -> None:
        if self.seeding.session.has(entry.seed_key):
            self.seeding.torrent_relinked(entry)

    def torrent_removed(self, entry: Entry) -> None:
        self.seeding.torrent_removed(entry)

    # -- demand ----------------------------------------------------------------------------

    def on_demand(self, entry: Entry) -> None:
        if self.owns(entry):
            self.seeding.on_demand(entry)

    def on_announce(self, info_hash: bytes, lookup: Callable[[bytes], Entry | None]) -> None:
        """The tracker's demand hook (also for peers other nodes heard): cheap when the
        session has the torrent, a memo lookup when this node does not own it."""
        if self.seeding.session.has(info_hash.hex()):
            return
        if self._version != self.membership.version:
            self._owned.clear()
            self._version = self.membership.version
        owned = self._owned.get(info_hash)
        if owned is None:
            entry = lookup(info_hash)
            if entry is None:
                return  # not in this node's catalog yet: asked again at the next announce
            owned = self.owns(entry)
            if len(self._owned) >= _OWNED_MEMO_MAX:
                self._owned.clear()
            self._owned[info_hash] = owned
        if owned:
            self.seeding.on_announce(info_hash, lookup)

    def restore(self) -> int:
        """The session's resumed torrents are demanded now (the next `rebalance` drops any
        this node no longer owns)."""
        return self.seeding.restore()

    # -- membership --------------------------------------------------------------------------

    def rebalance(self) -> None:
        """The live nodes changed: drop what this node lost, seed what it gained."""
        session = self.seeding.session
        added = removed = 0
        try:
            entries = self.entries()
        except Exception:
            log.exception("cluster: cannot list the catalog to rebalance")
            return
        for entry in entries:
            key = entry.seed_key
            owned = self.owns(entry)
            if not owned and session.has(key):
                self.seeding.torrent_removed(entry)
                removed += 1
            elif owned and not session.has(key) and self.in_demand(entry):
                # Through the on-demand policy, which then lets it go when idle.
                if self.seeding.active.want(entry, "cluster"):
                    added += 1
        if added or removed:
            log.info("cluster: seeding %d more torrents, %d fewer (%d nodes live)", added,
                     removed, len(self.membership.live))
