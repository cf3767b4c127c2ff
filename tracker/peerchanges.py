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

The usual change, an announce of a peer stored here, is kept keyed by its
:class:`~tracker.swarm.Peer` until the flush packs it (:meth:`PeerChanges.take`); any
other (a stop, an announce not stored) as its record, packed when heard. A pending
record's time to live field holds when it was heard (ms after ``PeerChanges.since``) until
:func:`encode_batch` turns it into a time to live in one pass over the records; the op's
``KNOWN`` bit (pending records only, cleared by the flush) says that the peer id the
record names is the one sent last for its address (what a later change replaces).
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
    from cython.cimports.cpython.bytearray import (
        PyByteArray_AS_STRING,
        PyByteArray_FromStringAndSize,
    )
    from cython.cimports.cpython.bytes import PyBytes_AS_STRING, PyBytes_FromStringAndSize
    from cython.cimports.libc.string import memcpy

if TYPE_CHECKING:
    from tracker.swarm import Peer, Swarm

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

class PeerChanges:
    """The changes since the last flush, at most one per (swarm, address): ``peers`` maps a
    :class:`~tracker.swarm.Peer` stored here to its change, an upsert packed at the flush
    (:meth:`take`) from the peer itself (no key or record made per announce); ``pending``
    maps info-hash + address to any other change's record (a stop, an announce not
    stored), packed when heard (the module's docstring). A ``peers`` value holds when the
    change was heard (ms after ``since``) and the peer id sent last for its address: an int
    ``heard`` when that is the peer's own id, ``~heard`` (negative) when none was sent, a
    tuple (heard, that id) when the peer replaced it. ``downloads`` maps info-hash to the
    downloads counted. At most ``max_pending`` changes: beyond, they are all dropped and
    ``overflow`` is set (the owner sends its whole view instead); so are changes held
    longer than a u32 of ms.

    A peer with a change in ``peers`` is this node's word until the flush: the cluster
    merges no other node's change over it (``SwarmSync._words_after``), so nothing but
    this node's own announces (each through :meth:`record`) changes it meanwhile. One
    removed since without a word of this node (expired; its torrent unregistered; its
    swarm merged into one that held its address already) has nothing packed: it has no
    address left to name."""

    __slots__ = ("downloads", "max_pending", "overflow", "peers", "pending", "since")

    def __init__(self, max_pending: int) -> None:
        self.peers: dict[Peer, object] = {}
        self.pending: dict[bytes, bytes] = {}
        self.downloads: dict[bytes, int] = {}
        self.max_pending = max_pending
        self.overflow = False
        self.since = 0.0  # the clock the pending records' times count from

    def record(self, swarm: Swarm, addr: bytes, peer: Peer | None, peer_id: bytes,
               prev_id: bytes | None, seeder: bool, stopped: bool, downloads: int,
               now: float) -> None:
        """``tracker.peerlog.PeerLog``: one accepted announce (a dict write; coalesced until
        the next flush). ``peer``: the peer stored at ``addr`` before the announce (None:
        none), ``prev_id`` its peer id then."""
        ih = swarm.hashes[0]
        if downloads:
            self.downloads[ih] = self.downloads.get(ih, 0) + downloads
        peers = self.peers
        if peer is not None and not stopped:  # the usual change: a peer stored here announced
            held = peers.get(peer)
            if held is None:
                self._new(now)
                peers[peer] = self._held(prev_id, peer_id, now)
            else:  # what was sent last still holds what the first replaces
                peers[peer] = self._held(_sent(held, prev_id), peer_id, now)
            return
        k = _joined(ih, addr) if COMPILED else ih + addr
        pending = self.pending
        old = pending.pop(k, None)
        held = None if peer is None or old is not None else peers.pop(peer, None)
        if old is not None:
            prev_id = sent_id(old)
        elif held is not None:  # a stop of a peer whose change is still here
            prev_id = _sent(held, prev_id)
        else:
            self._new(now)
        stored = None if stopped else swarm.peers.get(addr)
        if stored is not None:  # new here (a stop or an unstored announce before it went)
            peers[stored] = self._held(prev_id, peer_id, now)
        else:
            pending[k] = change_record(k, peer_id, prev_id, seeder, stopped, self._heard(now))

    def take(self, limit: int) -> tuple[bytes, dict[bytes, bytes], dict[Peer, object]]:
        """Up to ``limit`` changes out of the pending ones, for one batch: their records
        (times ms after ``since``, as :func:`encode_batch` reads them), and the ``pending``
        and ``peers`` entries they came from (what the batch says this node heard). The
        peers' records are packed now, as each peer is now (its later announces coalesced
        into it; nothing else changes it meanwhile: the class's docstring)."""
        pending, peers = self.pending, self.peers
        if len(pending) + len(peers) <= limit:
            self.pending, self.peers = {}, {}
        else:  # a long outage's changes: in slices
            items = list(pending.items())
            pending, self.pending = dict(items[:limit]), dict(items[limit:])
            rest = list(peers.items())
            n = limit - len(pending)
            peers, self.peers = dict(rest[:n]), dict(rest[n:])
        return _packed(pending, peers), pending, peers

    def _new(self, now: float) -> None:
        """A change for an address with none pending is coming: ``since`` set by the first,
        everything dropped past ``max_pending``."""
        n = len(self.pending) + len(self.peers)
        if not n:
            self.since = now
        elif n >= self.max_pending:
            self._drop(now)

    def _heard(self, now: float) -> int:
        heard = int((now - self.since) * 1000)
        if heard < 0 or heard >> 32:  # a clock turned back; held for 49 days
            if heard > 0:
                self._drop(now)
            heard = 0
        return heard

    def _held(self, sent: bytes | None, peer_id: bytes, now: float) -> object:
        """A ``peers`` value (the class's docstring)."""
        heard = self._heard(now)
        if sent is None:
            return ~heard
        return heard if sent == peer_id else (heard, sent)

    def _drop(self, now: float) -> None:
        self.pending.clear()
        self.peers.clear()
        self.overflow = True
        self.since = now


def _sent(held: object, prev_id: bytes | None) -> bytes | None:
    """The peer id sent last for the address of a ``peers`` entry ``held`` (its value),
    whose peer's id was ``prev_id`` until this announce."""
    if type(held) is tuple:
        return held[1]
    return None if held < 0 else prev_id


def _packed(pending: dict[bytes, bytes], peers: dict[Peer, object]) -> bytes:
    """The records of ``pending`` and ``peers`` (:class:`PeerChanges`' entries) back to
    back; a peer's packed from the peer as it is now (none for a peer no longer stored)."""
    head = b"".join(pending.values())
    if not COMPILED:
        out = bytearray(head)
        for peer, held in peers.items():
            if peer.swarm is not None:
                out += _peer_record(peer, held)
        return bytes(out)
    # 63: a plain IPv6 record, the longest; not zeroed (each byte up to i is written)
    buf = PyByteArray_FromStringAndSize(cython.NULL, len(head) + 63 * len(peers))
    p = cython.cast(cython.p_uchar, PyByteArray_AS_STRING(buf))
    memcpy(p, cython.cast(cython.p_char, head), len(head))
    i = len(head)
    seeder_op, v6_op, known = UPSERT_SEEDER, UPSERT_V6, KNOWN  # C ints
    for peer, held in peers.items():
        swarm = peer.swarm
        if swarm is None:
            continue
        if type(held) is tuple or len(peer.peer_id) != 20:  # REPLACES, or an odd id
            record = _peer_record(peer, held)
            buf[i : i + len(record)] = record  # at most 63 bytes: buf keeps its size
            i += len(record)
            continue
        slot = peer.slot
        w = 6 if slot < 2 else 18
        heard = held
        op = (0 if slot & 1 else seeder_op) | (v6_op if slot & 2 else 0)
        if heard < 0:
            heard = ~heard
        else:
            op |= known  # as change_record writes it (the flush clears it)
        ih, pid = swarm.hashes[0], peer.peer_id
        p[i] = op
        memcpy(p + i + 1, cython.cast(cython.p_char, ih), 20)
        memcpy(p + i + 21, PyByteArray_AS_STRING(swarm.packed[slot]) + peer.idx * w, w)
        memcpy(p + i + 21 + w, cython.cast(cython.p_char, pid), 20)
        i += 41 + w
        p[i] = heard >> 24 & 255
        p[i + 1] = heard >> 16 & 255
        p[i + 2] = heard >> 8 & 255
        p[i + 3] = heard & 255
        i += 4
    del buf[i:]
    return bytes(buf)


def _peer_record(peer: Peer, held: object) -> bytes:
    """The pending record of a ``peers`` entry: ``peer`` (stored) announced as it is now."""
    if type(held) is tuple:
        heard, sent = held
    else:
        heard, sent = (held, peer.peer_id) if held >= 0 else (~held, None)
    swarm = peer.swarm
    assert swarm is not None
    return change_record(swarm.hashes[0] + peer.addr, peer.peer_id, sent, not peer.slot & 1,
                         False, heard)


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


def encode_batch(records: bytes, downloads: Mapping[bytes, int], since: float, now: float,
                 timeout: float) -> bytes:
    """One flush as a batch: pending ``records`` (:meth:`PeerChanges.take`'s, their times
    ms after ``since``), each upsert living ``timeout`` seconds from when it was heard
    (``now``: the clock of ``since``); then a downloads record per info-hash of
    ``downloads``."""
    batch = bytearray(records)
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
