"""The hook through which a tracker shares its swarms with other trackers (a cluster).

The tracker itself stays an island: it answers every announce from its own in-memory
:class:`~tracker.swarm.Swarms`. A :class:`PeerLog` given to :class:`~tracker.core.TrackerCore`
hears each accepted announce (after the swarm recorded it) and may carry it elsewhere; what
other trackers stored comes back through :mod:`tracker.peermerge` (``merge_peer`` /
``drop_peer`` / ``add_downloaded``, and ``merge_upserts`` for a whole batch of the usual record),
whose layout is this module's (below). The core takes the tracker's own implementation,
:class:`~tracker.peerchanges.PeerChanges` (the compiled core calls its ``record`` as C);
the cluster that carries the changes elsewhere extends it (the seeder's cluster package,
which the tracker never imports; the daemon wires it in).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # tracker.swarm reads the record layout below
    from tracker.swarm import Peer, Swarm

__all__ = ["PLAIN_V4", "PLAIN_V4_OPS", "PLAIN_V6", "UPSERT_SEEDER", "UPSERT_V6", "PeerLog"]

# The usual peer change a cluster carries, a plain upsert (seeder.cluster.records writes
# and reads every kind): op byte (0, | UPSERT_SEEDER for a seeder, | UPSERT_V6 for IPv6),
# info-hash (20), address (6 or 18), peer id (20), time to live in ms (u32 big-endian).
UPSERT_SEEDER = 4
UPSERT_V6 = 8
PLAIN_V4 = struct.Struct(">B20s6s20sI")  # 51 bytes
PLAIN_V6 = struct.Struct(">B20s18s20sI")
PLAIN_V4_OPS = bytes((0, UPSERT_SEEDER))  # the op bytes of a plain IPv4 upsert


class PeerLog(Protocol):
    """Told about every accepted announce. Called on the tracker's hot path: it must be
    cheap (a dict write, no I/O) and must not raise."""

    def record(
        self,
        swarm: Swarm,
        addr: bytes,
        peer: Peer | None,
        peer_id: bytes,
        prev_id: bytes | None,
        seeder: bool,
        stopped: bool,
        downloads: int,
        now: float,
    ) -> None:
        """The peer at compact ``addr`` announced into ``swarm`` at ``now`` (the tracker's
        clock). ``peer``: the peer stored for ``addr`` before (None: a new peer), and
        ``prev_id`` its peer id then (the announce may have changed it).
        ``stopped``: it left. ``downloads``: completed downloads this announce counted
        (0 or 1)."""
