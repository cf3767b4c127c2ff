"""What the cluster writes into Redis values, and reads back (pure, bytes in and out).

Peer changes
    One flush of a node's announces is one binary batch: the Lua push script applies it
    to the swarms' sorted sets and appends it to the change log unchanged; other nodes
    decode the same bytes. The tracker writes them (``tracker.peerchanges``: the layout,
    the encode_* functions re-exported here) and merges the usual batch, plain IPv4
    upserts, itself (``tracker.peermerge.merge_upserts``); :func:`decode_changes` reads
    any batch.

    51 bytes per IPv4 announce. Times are relative (ms to live) so that no two clocks
    are compared: the push script turns them into Redis-clock deadlines, readers turn the
    Redis clock back into their own with the ``now`` the script returns.

Catalog entries
    A torrent record: a JSON header (the entry's fields but the torrent) and the
    torrent's bytes, ``len(header) (u32) + header + torrent``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import NamedTuple

from seeder.torrent.entry import Entry
from tracker.peerchanges import (
    DOWNLOADS,
    REPLACES,
    STOPPED,
    UPSERT,
    encode_batch,
    encode_downloads,
    encode_stopped,
    encode_upsert,
)
from tracker.peerlog import PLAIN_V4, PLAIN_V6, UPSERT_SEEDER, UPSERT_V6

__all__ = [
    "DOWNLOADS",
    "PLAIN_V4",
    "STOPPED",
    "UPSERT",
    "Change",
    "RecordError",
    "decode_changes",
    "decode_entry",
    "encode_batch",
    "encode_downloads",
    "encode_entry",
    "encode_stopped",
    "encode_upsert",
]

_U32 = struct.Struct(">I")
# The usual record, a plain upsert (IPv4 or IPv6, replacing no peer id): one struct call;
# indexed by op >> 3 (0 IPv4, 1 IPv6).
_PLAIN = (PLAIN_V4, PLAIN_V6)
_new = tuple.__new__  # a NamedTuple without its Python-level __new__ (~4x cheaper)


class RecordError(ValueError):
    """Bytes that are not a record this version writes (another version, corruption)."""


class Change(NamedTuple):
    """One decoded peer change. ``ttl_ms``: for UPSERT; ``count``: for DOWNLOADS."""

    kind: int
    info_hash: bytes
    addr: bytes
    peer_id: bytes
    seeder: bool
    ttl_ms: int
    count: int


def decode_changes(blob: bytes) -> Iterator[Change]:
    """The records of one batch, in order. Raises RecordError at the first bad one."""
    i, n = 0, len(blob)
    while i < n:
        op = blob[i]
        if not op & ~(UPSERT_SEEDER | UPSERT_V6):  # a plain upsert, the usual record
            plain = _PLAIN[op >> 3]
            if i + plain.size > n:
                raise RecordError("truncated peer record")
            _, info_hash, addr, peer_id, ttl = plain.unpack_from(blob, i)
            yield _new(Change, (UPSERT, info_hash, addr, peer_id, bool(op & UPSERT_SEEDER), ttl, 0))
            i += plain.size
            continue
        kind = op & 3
        info_hash = blob[i + 1 : i + 21]
        i += 21
        if kind == DOWNLOADS:
            if i + 4 > n:
                raise RecordError("truncated downloads record")
            yield Change(kind, info_hash, b"", b"", False, 0, _U32.unpack_from(blob, i)[0])
            i += 4
            continue
        if kind not in (UPSERT, STOPPED):
            raise RecordError(f"unknown record kind {kind}")
        alen = 18 if op & UPSERT_V6 else 6
        end = i + alen + 20 + (4 if kind == UPSERT else 0) + (20 if op & REPLACES else 0)
        if end > n:
            raise RecordError("truncated peer record")
        addr = blob[i : i + alen]
        peer_id = blob[i + alen : i + alen + 20]
        ttl = _U32.unpack_from(blob, i + alen + 20)[0] if kind == UPSERT else 0
        yield Change(kind, info_hash, addr, peer_id, bool(op & UPSERT_SEEDER), ttl, 0)
        i = end


_ENTRY_FIELDS = ("bucket", "key", "etag", "version_id", "size", "last_modified",
                 "piece_length", "format", "created_at", "object_version")


def encode_entry(entry: Entry) -> bytes:
    """A catalog entry as a Redis value (the info-hashes are recomputed from the torrent
    by readers: one source of truth)."""
    header = {name: getattr(entry, name) for name in _ENTRY_FIELDS}
    header["v1"] = None if entry.info_hash_v1 is None else entry.info_hash_v1.hex()
    header["v2"] = None if entry.info_hash_v2 is None else entry.info_hash_v2.hex()
    raw = json.dumps(header, separators=(",", ":")).encode()
    return _U32.pack(len(raw)) + raw + entry.torrent


def decode_entry(value: bytes) -> Entry:
    """The entry of :func:`encode_entry`. Raises RecordError for anything else."""
    try:
        (size,) = _U32.unpack_from(value)
        header = json.loads(value[4 : 4 + size])
        torrent = value[4 + size :]
        fields = {name: header[name] for name in _ENTRY_FIELDS}
        v1, v2 = header["v1"], header["v2"]
        return Entry(**fields, torrent=torrent,
                     info_hash_v1=None if v1 is None else bytes.fromhex(v1),
                     info_hash_v2=None if v2 is None else bytes.fromhex(v2))
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise RecordError(f"not a catalog record: {exc}") from None
