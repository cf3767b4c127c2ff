"""Peers stored by other trackers (a cluster), merged into this tracker's swarms.

The other half of :mod:`tracker.peerchanges`: what another tracker heard (``tracker.peerlog``
records, carried by the seeder's cluster package) goes into the local
:class:`~tracker.swarm.Swarms` here, never through an announce. The latest word wins: a
peer keeps the later of its two deadlines, and no download is counted for a peer stored
this way (the tracker that heard it finish counts it and sends the count,
:func:`add_downloaded`). Caps apply as for an announce.

Functions of a :class:`~tracker.swarm.Swarms`, not methods: they read its expiry queue
(``_queue``, ``_width``) and its removal helpers, which ``tracker/swarm.pxd`` declares so
the compiled build reaches them as C (``tracker/peermerge.pxd`` types this module).
Pure bookkeeping: no I/O; deadlines are on this tracker's clock.
"""

from __future__ import annotations

from collections.abc import Container

from tracker.peerlog import PLAIN_V4_OPS
from tracker.swarm import Peer, Swarm, SwarmError, Swarms

__all__ = ["add_downloaded", "drop_peer", "in_any", "merge_peer", "merge_upserts"]


def merge_peer(swarms: Swarms, info_hash: bytes, addr: bytes, peer_id: bytes, seeder: bool,
               expires: float) -> bool:
    """Store a peer another tracker heard from: ``addr`` in the swarm of ``info_hash``
    until ``expires`` (this tracker's clock), as a seeder or a leecher. The latest word
    wins: a deadline earlier than the stored one changes nothing. No download is counted.
    False when the swarm is unknown (not served here) or the peer was not stored (caps,
    an address neither 6 nor 18 bytes)."""
    swarm = _merged_into(swarms, info_hash)
    if swarm is None:
        return False
    return _store(swarms, swarm, addr, peer_id, seeder, int(expires / swarms._width) + 1)


def merge_upserts(swarms: Swarms, batch: bytes, base: float, skip: tuple[Container[bytes], ...],
                  skip_peers: tuple[Container[Peer], ...], own: bytes,
                  demand: set[bytes]) -> bool:
    """:func:`merge_peer` for each record of ``batch``, when every one is a plain IPv4
    upsert (``tracker.peerlog.PLAIN_V4``: the usual batch of a cluster), each peer
    living until ``base`` + its time to live; False, with nothing merged, for any other
    batch (the caller decodes it). A record whose info-hash + address is in one of the
    containers of ``skip``, or whose address holds a peer in one of ``skip_peers`` here,
    is passed over (:func:`in_any`; empty tuples: none). The info-hash
    of each peer stored whose id does not start with ``own`` (when not empty) is added
    to ``demand``."""
    n = len(batch)  # PLAIN_V4: 51 bytes a record
    # Any other record would be the first at a multiple of 51 with another op byte.
    if n % 51 or batch[::51].translate(None, PLAIN_V4_OPS):
        return False
    width = swarms._width
    by_hash = swarms.by_hash
    queue = swarms._queue
    mine = 0 < len(own) <= 20  # a longer prefix starts no peer id
    # PLAIN_V4's fields read where they lie (a C pointer in the compiled build,
    # tracker/peermerge.pxd): no tuple per record; the peer id is compared in place
    raw = batch
    for i in range(0, n, 51):
        op = raw[i]
        ih = raw[i + 1 : i + 21]
        addr = raw[i + 21 : i + 27]
        swarm = by_hash.get(ih)
        if swarm is None:
            if skip and in_any(skip, ih + addr):
                continue
            swarm = _merged_into(swarms, ih)
            if swarm is None:
                continue
        ttl = raw[i + 47]  # widened first: shifted as a C int, 255 << 24 would overflow
        ttl = ttl << 24 | raw[i + 48] << 16 | raw[i + 49] << 8 | raw[i + 50]
        bucket = int((base + ttl / 1000) / width) + 1
        peer = swarm.peers.get(addr)
        slot = 1 if op == 0 else 0  # Peer.slot of an IPv4 leecher, seeder
        if peer is not None and peer.slot == slot:
            # A record that changes nothing and adds no demand is passed over whether
            # ``skip`` holds it or not: no key to build and look up.
            if peer.expires > bucket:
                continue  # this tracker heard from it later
            if peer.expires == bucket and batch.startswith(peer.peer_id, i + 27) and (
                    ih in demand or (mine and batch.startswith(own, i + 27))):
                continue
        if skip_peers and peer is not None and in_any(skip_peers, peer):
            continue
        if skip and in_any(skip, ih + addr):
            continue
        if peer is None or peer.slot != slot:
            if not _store(swarms, swarm, addr, batch[i + 27 : i + 47], op != 0, bucket):
                continue
        else:  # a peer already stored in that role: updated here, not in _store
            if not batch.startswith(peer.peer_id, i + 27):
                peer.peer_id = batch[i + 27 : i + 47]
            if peer.expires != bucket:
                peer.expires = bucket
                due = queue.get(bucket)
                if due is None:
                    queue[bucket] = [peer]
                else:
                    due.append(peer)
        if not (mine and batch.startswith(own, i + 27)):
            demand.add(ih)
    return True


def in_any(parts: tuple[Container[object], ...], key: object) -> bool:
    """Whether one of the containers of ``parts`` holds ``key``."""
    # Not a collections.ChainMap: its __contains__ is Python code (a generator over its
    # maps), and merge_upserts asks once per merged record (docs/benchmarks.md, session 16).
    for part in parts:
        if key in part:
            return True
    return False


def drop_peer(swarms: Swarms, info_hash: bytes, addr: bytes) -> bool:
    """Remove ``addr`` from the swarm of ``info_hash`` (it stopped, on another tracker).
    True when it was there."""
    swarm = swarms.by_hash.get(info_hash)
    peer = None if swarm is None else swarm.peers.get(addr)
    if peer is None:
        return False
    swarms._remove(peer, addr)
    return True


def add_downloaded(swarms: Swarms, info_hash: bytes, count: int) -> None:
    """Add downloads another tracker counted to the swarm of ``info_hash``, if known."""
    swarm = swarms.by_hash.get(info_hash)
    if swarm is not None:
        swarm.downloaded += count


def _merged_into(swarms: Swarms, info_hash: bytes) -> Swarm | None:
    """The swarm a peer of another tracker goes to (None: not served here)."""
    try:
        return swarms.by_hash.get(info_hash) or swarms._resolved(info_hash)
    except SwarmError:
        return None  # tracker is full


def _store(swarms: Swarms, swarm: Swarm, addr: bytes, peer_id: bytes, seeder: bool,
           bucket: int) -> bool:
    """:func:`merge_peer` into ``swarm``, expiring in ``bucket``."""
    peer = swarm.peers.get(addr)
    if peer is not None and peer.expires > bucket:
        return False  # this tracker heard from it later
    slot = (2 if len(addr) == 18 else 0) + (0 if seeder else 1)  # Peer.slot
    if peer is None:
        if len(addr) not in (6, 18) or len(swarm.peers) >= swarms.max_peers_per_swarm or (
            swarms.seeders + swarms.leechers >= swarms.max_peers
        ):
            return False
        peer = Peer(peer_id, swarm, slot, 0)
        swarm.add(peer, addr)
        swarm.peers[addr] = peer
        swarms._count(slot, 1)
    elif peer.slot != slot:
        if seeder and peer.slot & 1:
            peer.completed = True  # counted by the tracker that heard it finish
        swarms._unlink(peer)
        peer.slot = slot
        swarm.add(peer, addr)
        swarms._count(slot, 1)
    if peer.peer_id != peer_id:
        peer.peer_id = peer_id
    if peer.expires != bucket:
        peer.expires = bucket
        due = swarms._queue.get(bucket)
        if due is None:
            swarms._queue[bucket] = [peer]
        else:
            due.append(peer)
    return True
