"""A tracker's accepted announces, coalesced per (swarm, peer) until a cluster sends them on,
and the batch they go out as (``tracker.peerlog``'s record layout).

Pure bookkeeping over bytes, no I/O. One of the hot modules (compiled with
``peerchanges.pxd`` when the build can): the tracker core calls :meth:`PeerChanges.record`
on every announce, and a flush turns every change since the last one into a batch.

Records, each an op byte (kind in bits 0-1, ``UPSERT_SEEDER`` bit 2, ``UPSERT_V6`` bit 3,
``REPLACES`` bit 4) and the 20-byte info-hash, then

- ``UPSERT``: address (6 or 18 bytes), peer id (20), time to live in ms (u32), [the peer
  id it replaces (20)]; without the last, ``PLAIN_V4`` / ``PLAIN_V6``
- ``STOPPED``: address, the peer id to remove (20)
- ``DOWNLOADS``: count (u32)

A pending change is kept as its record, packed when the announce is heard: the time to
live field holds when it was heard (ms after ``PeerChanges.since``) until the flush
(:func:`encode_batch`) turns it into a time to live in one pass over the joined records;
the op's ``KNOWN`` bit (pending records only, cleared by the flush) says that the peer id
the record names is the one sent last for its address (what a later change replaces).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING

from tracker.peerlog import PLAIN_V4, PLAIN_V6, UPSERT_SEEDER, UPSERT_V6

try:
    import cython
except ImportError:  # the plain build, Cython not installed
    COMPILED = False
else:
    COMPILED = cython.compiled
if COMPILED:  # C declarations, read by the compiler only
    from cython.cimports.cpython.bytes import PyBytes_AS_STRING, PyBytes_FromStringAndSize
    from cython.cimports.libc.string import memcpy

if TYPE_CHECKING:
    from tracker.swarm import Swarm

__all__ = [
    "DOWNLOADS",
    "KNOWN",
    "MAX_U32",
    "REPLACES",
    "STOPPED",
    "UPSERT",
    "PeerChanges",
    "change_record",
    "encode_batch",
    "encode_downloads",
    "encode_stopped",
    "encode_upsert",
    "sent_id",
    "to_ttl",
]

UPSERT = 0
STOPPED = 1
DOWNLOADS = 2
REPLACES = 16
KNOWN = 32  # pending records only: the peer id they name is the one sent last
MAX_U32 = 0xFFFFFFFF
_U32 = struct.Struct(">I")
_PLAIN = (PLAIN_V4, PLAIN_V6)
# A plain IPv4 upsert packed from the info-hash and address as one key (what the pending
# changes are keyed by): no slicing per record.
_KEYED_V4 = struct.Struct(">B26s20sI").pack
# Its op byte, by seeder + 2 x (a peer id was sent for the address)
_PLAIN_OPS = (UPSERT, UPSERT_SEEDER, UPSERT | KNOWN, UPSERT_SEEDER | KNOWN)


class PeerChanges:
    """The changes since the last flush: ``pending`` maps info-hash + address to the
    change's record (packed when heard, its time field ms after ``since``: the module's
    docstring), ``downloads`` info-hash to the downloads counted. At most ``max_pending``
    changes: beyond, they are all dropped and ``overflow`` is set (the owner sends its
    whole view instead); so are changes held longer than a u32 of ms."""

    __slots__ = ("downloads", "max_pending", "overflow", "pending", "since")

    def __init__(self, max_pending: int) -> None:
        self.pending: dict[bytes, bytes] = {}
        self.downloads: dict[bytes, int] = {}
        self.max_pending = max_pending
        self.overflow = False
        self.since = 0.0  # the clock the pending records' times count from

    def record(self, swarm: Swarm, addr: bytes, peer_id: bytes, prev_id: bytes | None,
               seeder: bool, stopped: bool, downloads: int, now: float) -> None:
        """``tracker.peerlog.PeerLog``: one accepted announce (a record packed, a dict
        write; coalesced until the next flush)."""
        ih = swarm.hashes[0]
        if downloads:
            self.downloads[ih] = self.downloads.get(ih, 0) + downloads
        k = _joined(ih, addr) if COMPILED else ih + addr
        pending = self.pending
        old = pending.get(k)
        if old is not None:
            prev_id = sent_id(old)  # what was sent last still holds what the first replaces
        elif not pending:
            self.since = now
        elif len(pending) >= self.max_pending:
            self._drop(now)
        heard = int((now - self.since) * 1000)
        if heard < 0 or heard >> 32:  # a clock turned back; held for 49 days
            if heard > 0:
                self._drop(now)
            heard = 0
        if len(k) == 26 and not stopped and (prev_id is None or prev_id == peer_id):
            op = _PLAIN_OPS[seeder + (0 if prev_id is None else 2)]
            if COMPILED and len(peer_id) == 20:
                pending[k] = _keyed_v4(op, k, peer_id, heard)  # the usual change
            else:
                pending[k] = _KEYED_V4(op, k, peer_id, heard)
        else:
            pending[k] = change_record(k, peer_id, prev_id, seeder, stopped, heard)

    def _drop(self, now: float) -> None:
        self.pending.clear()
        self.overflow = True
        self.since = now


def _joined(a: bytes, b: bytes) -> bytes:
    """``a + b``; the compiled build copies both into one new bytes object (no call
    through the number protocol: ~350 of ~2000 instructions of a ``record``)."""
    if not COMPILED:
        return a + b
    out = PyBytes_FromStringAndSize(cython.NULL, len(a) + len(b))
    p = PyBytes_AS_STRING(out)
    memcpy(p, cython.cast(cython.p_char, a), len(a))
    memcpy(p + len(a), cython.cast(cython.p_char, b), len(b))
    return out


def _keyed_v4(op: int, key: bytes, peer_id: bytes, heard: int) -> bytes:
    """``_KEYED_V4(op, key, peer_id, heard)`` for a 26-byte ``key`` and a 20-byte
    ``peer_id``; the compiled build writes the 51 bytes itself (a call of
    ``struct.Struct.pack`` was ~600 of ~2000 instructions of a ``record``)."""
    if not COMPILED:
        return _KEYED_V4(op, key, peer_id, heard)
    out = PyBytes_FromStringAndSize(cython.NULL, 51)
    p = cython.cast(cython.p_uchar, PyBytes_AS_STRING(out))
    p[0] = op
    memcpy(p + 1, cython.cast(cython.p_char, key), 26)
    memcpy(p + 27, cython.cast(cython.p_char, peer_id), 20)
    p[47] = heard >> 24 & 255
    p[48] = heard >> 16 & 255
    p[49] = heard >> 8 & 255
    p[50] = heard & 255
    return out


def change_record(key: bytes, peer_id: bytes, prev_id: bytes | None, seeder: bool,
                  stopped: bool, heard: int) -> bytes:
    """The pending record of a change of the peer at ``key`` (info-hash + address): it
    announced ``peer_id`` (``stopped``: it left), heard ``heard`` ms after the pending
    changes' ``since``; ``prev_id``: the peer id sent last for its address (None: none)."""
    if stopped:
        record = encode_stopped(key[:20], key[20:], prev_id or peer_id)
    else:
        record = encode_upsert(key[:20], key[20:], peer_id, seeder, heard, prev_id)
        if prev_id is not None and prev_id != peer_id:
            return record  # REPLACES: the record names the peer id sent last
    return record if prev_id is None else bytes((record[0] | KNOWN,)) + record[1:]


def sent_id(record: bytes) -> bytes | None:
    """The peer id sent last for the address of a pending ``record`` (None: none)."""
    op = record[0]
    if op & REPLACES:
        return record[-20:]
    if not op & KNOWN:
        return None
    if op & 3 == STOPPED:
        return record[-20:]
    start = 39 if op & UPSERT_V6 else 27
    return record[start : start + 20]


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


def encode_batch(pending: Mapping[bytes, bytes], downloads: Mapping[bytes, int],
                 since: float, now: float, timeout: float) -> bytes:
    """One flush as a batch: the records of ``pending`` (:class:`PeerChanges`', their times
    ms after ``since``), each upsert living ``timeout`` seconds from when it was heard
    (``now``: the clock of ``since``); then a downloads record per info-hash of
    ``downloads``."""
    batch = bytearray().join(pending.values())
    to_ttl(batch, int((timeout - (now - since)) * 1000))
    for ih, count in downloads.items():
        batch += encode_downloads(ih, count)
    return bytes(batch)


def to_ttl(batch: bytearray, shift: int) -> None:
    """Pending records in place into records to send: each upsert's time field plus
    ``shift`` (ms), within 0 and a u32; the ``KNOWN`` bits cleared."""
    known, v6, replaces, top = KNOWN, UPSERT_V6, REPLACES, MAX_U32  # C ints when compiled
    i, n = 0, len(batch)
    while i < n:
        op = batch[i]
        batch[i] = op & ~known
        i += 41 + (18 if op & v6 else 6)  # past the peer id
        if op & 3 == UPSERT:
            ttl = batch[i]  # a 64-bit int when compiled: the shift below fits
            ttl = (ttl << 24 | batch[i + 1] << 16 | batch[i + 2] << 8 | batch[i + 3]) + shift
            if ttl < 0 or ttl > top:
                ttl = 0 if ttl < 0 else top
            batch[i] = ttl >> 24
            batch[i + 1] = ttl >> 16 & 255
            batch[i + 2] = ttl >> 8 & 255
            batch[i + 3] = ttl & 255
            i += 24 if op & replaces else 4
