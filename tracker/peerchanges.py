"""A tracker's accepted announces, coalesced per (swarm, peer) until a cluster sends them on,
and the batch they go out as (``tracker.peerlog``'s record layout).

Pure bookkeeping over bytes, no I/O. One of the hot modules (compiled with
``peerchanges.pxd`` when the build can): the tracker core calls :meth:`PeerChanges.record`
on every announce, and a flush encodes every change since the last one.

Records, each an op byte (kind in bits 0-1, ``UPSERT_SEEDER`` bit 2, ``UPSERT_V6`` bit 3,
``REPLACES`` bit 4) and the 20-byte info-hash, then

- ``UPSERT``: address (6 or 18 bytes), peer id (20), time to live in ms (u32), [the peer
  id it replaces (20)]; without the last, ``PLAIN_V4`` / ``PLAIN_V6``
- ``STOPPED``: address, the peer id to remove (20)
- ``DOWNLOADS``: count (u32)
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING

from tracker.peerlog import PLAIN_V4, PLAIN_V6, UPSERT_SEEDER, UPSERT_V6

if TYPE_CHECKING:
    from tracker.swarm import Swarm

__all__ = [
    "DOWNLOADS",
    "MAX_U32",
    "REPLACES",
    "STOPPED",
    "UPSERT",
    "PeerChanges",
    "encode_batch",
    "encode_downloads",
    "encode_stopped",
    "encode_upsert",
]

UPSERT = 0
STOPPED = 1
DOWNLOADS = 2
REPLACES = 16
MAX_U32 = 0xFFFFFFFF
_U32 = struct.Struct(">I")
_PLAIN = (PLAIN_V4, PLAIN_V6)
# A plain IPv4 upsert packed from the info-hash and address as one key (what the pending
# changes are keyed by): no slicing per record.
_KEYED_V4 = struct.Struct(">B26s20sI").pack


class PeerChanges:
    """The changes since the last flush: ``pending`` maps info-hash + address to (peer id,
    the peer id it replaces or None, seeder, stopped, time heard), ``downloads`` info-hash
    to the downloads counted. At most ``max_pending`` changes: beyond, they are all
    dropped and ``overflow`` is set (the owner sends its whole view instead)."""

    __slots__ = ("downloads", "max_pending", "overflow", "pending")

    def __init__(self, max_pending: int) -> None:
        self.pending: dict[bytes, tuple[bytes, bytes | None, bool, bool, float]] = {}
        self.downloads: dict[bytes, int] = {}
        self.max_pending = max_pending
        self.overflow = False

    def record(self, swarm: Swarm, addr: bytes, peer_id: bytes, prev_id: bytes | None,
               seeder: bool, stopped: bool, downloads: int, now: float) -> None:
        """``tracker.peerlog.PeerLog``: one accepted announce (a dict write; coalesced
        until the next flush)."""
        ih = swarm.hashes[0]
        if downloads:
            self.downloads[ih] = self.downloads.get(ih, 0) + downloads
        k = ih + addr
        pending = self.pending
        old = pending.get(k)
        if old is not None:
            prev_id = old[1]  # what was sent last still holds what the first change replaces
        elif len(pending) >= self.max_pending:
            pending.clear()
            self.overflow = True
        pending[k] = (peer_id, prev_id, seeder, stopped, now)


def encode_upsert(info_hash: bytes, addr: bytes, peer_id: bytes, seeder: bool, ttl_ms: int,
                  replaces: bytes | None) -> bytes:
    """A peer announced and lives ``ttl_ms`` more; ``replaces``: the peer id stored for
    ``addr`` until now, when it differs (its member is removed)."""
    v6 = len(addr) == 18
    op = UPSERT | (UPSERT_SEEDER if seeder else 0) | (UPSERT_V6 if v6 else 0)
    ttl = int(ttl_ms)
    if ttl < 0 or ttl > MAX_U32:
        ttl = 0 if ttl < 0 else MAX_U32
    if replaces is not None and replaces != peer_id:
        return bytes((op | REPLACES,)) + info_hash + addr + peer_id + _U32.pack(ttl) + replaces
    return _PLAIN[v6].pack(op, info_hash, addr, peer_id, ttl)


def encode_stopped(info_hash: bytes, addr: bytes, peer_id: bytes) -> bytes:
    """The peer at ``addr`` (stored with ``peer_id``) left the swarm."""
    return bytes((STOPPED | (UPSERT_V6 if len(addr) == 18 else 0),)) + info_hash + addr + peer_id


def encode_downloads(info_hash: bytes, count: int) -> bytes:
    return bytes((DOWNLOADS,)) + info_hash + _U32.pack(min(count, MAX_U32))


def encode_batch(pending: Mapping[bytes, tuple[bytes, bytes | None, bool, bool, float]],
                 downloads: Mapping[bytes, int], now: float, timeout: float,
                 stops: list[bytes] | None = None) -> bytes:
    """One flush as a batch: ``pending`` as in :class:`PeerChanges`, each upsert living
    ``timeout`` seconds from when it was heard (``now``: the clock of those times); then a
    downloads record per info-hash of ``downloads``. The keys of stopped peers are appended
    to ``stops``. Same bytes as the encode_* functions record by record."""
    parts: list[bytes] = []
    pack = _KEYED_V4
    for k, change in pending.items():
        peer_id, prev_id, seeder, stopped, heard = change
        if stopped:
            parts.append(encode_stopped(k[:20], k[20:], prev_id or peer_id))
            if stops is not None:
                stops.append(k)
            continue
        ttl = int((heard + timeout - now) * 1000)
        if len(k) == 26 and 0 <= ttl <= MAX_U32 and (prev_id is None or prev_id == peer_id):
            parts.append(pack(UPSERT_SEEDER if seeder else UPSERT, k, peer_id, ttl))  # the usual
        else:
            parts.append(encode_upsert(k[:20], k[20:], peer_id, seeder, ttl, prev_id))
    for ih, count in downloads.items():
        parts.append(encode_downloads(ih, count))
    return b"".join(parts)
