"""The hook through which a tracker shares its swarms with other trackers (a cluster).

The tracker itself stays an island: it answers every announce from its own in-memory
:class:`~tracker.swarm.Swarms`. A :class:`PeerLog` given to :class:`~tracker.core.TrackerCore`
hears each accepted announce (after the swarm recorded it) and may carry it elsewhere; what
other trackers stored comes back through ``Swarms.merge_peer`` / ``drop_peer`` /
``add_downloaded``. The tracker never imports the implementation (the seeder's cluster
package does that, the daemon wires it in).
"""

from __future__ import annotations

from typing import Protocol

from tracker.swarm import Swarm

__all__ = ["PeerLog"]


class PeerLog(Protocol):
    """Told about every accepted announce. Called on the tracker's hot path: it must be
    cheap (a dict write, no I/O) and must not raise."""

    def record(
        self,
        swarm: Swarm,
        addr: bytes,
        peer_id: bytes,
        prev_id: bytes | None,
        seeder: bool,
        stopped: bool,
        downloads: int,
        now: float,
    ) -> None:
        """The peer at compact ``addr`` announced into ``swarm`` at ``now`` (the tracker's
        clock). ``prev_id``: the peer id stored for ``addr`` before (None: a new peer).
        ``stopped``: it left. ``downloads``: completed downloads this announce counted
        (0 or 1)."""
