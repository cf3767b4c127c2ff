"""Announce and scrape queries (BEP 3, 7, 23, 48): raw query bytes -> frozen request.

Pure: no I/O, no clock. ``info_hash`` and ``peer_id`` are binary, so the query is
percent-decoded straight to ``bytes`` (never through ``str``). Tolerant of real clients:
optional parameters may be missing, unknown parameters are ignored, and ``left`` may be
anything up to 2^64-1 (Transmission sends 2^64-1 before it has the metadata).
Every problem raises :class:`AnnounceError` naming it; nothing else escapes.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

__all__ = [
    "DEFAULT_NUMWANT",
    "EVENT_COMPLETED",
    "EVENT_NONE",
    "EVENT_STARTED",
    "EVENT_STOPPED",
    "MAX_SCRAPE_HASHES",
    "AnnounceError",
    "AnnounceRequest",
    "ScrapeRequest",
    "parse_announce",
    "parse_query",
    "parse_scrape",
]

# Event numbers are BEP 15's, so the UDP parser produces the same values.
EVENT_NONE = 0
EVENT_COMPLETED = 1
EVENT_STARTED = 2
EVENT_STOPPED = 3

_EVENTS = {
    b"": EVENT_NONE,
    b"started": EVENT_STARTED,
    b"completed": EVENT_COMPLETED,
    b"stopped": EVENT_STOPPED,
    b"paused": EVENT_NONE,  # BEP 21 partial seeds: a regular update for this tracker
    b"empty": EVENT_NONE,  # some clients spell "no event" this way
}

DEFAULT_NUMWANT = 50
MAX_SCRAPE_HASHES = 256  # per HTTP scrape; BEP 15 limits UDP to 74 by packet size
MAX_QUERY_BYTES = 32768  # a real announce is < 600 bytes; a 256-hash scrape < 16 KiB
_MAX_U64 = (1 << 64) - 1
_MAX_DIGITS = 20  # 2^64-1 has 20 digits; longer is junk (and int() of it is slow)
_MAX_KEY_BYTES = 64  # key / trackerid: opaque, but short in every client

_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


class AnnounceError(ValueError):
    """The query cannot be served. ``str(exc)`` is the failure reason for the client;
    ``code`` is a short stable label (metrics, logs)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class AnnounceRequest(NamedTuple):
    """A valid announce. ``left`` is None when the client did not send it (then the peer
    counts as a leecher); ``numwant`` is the client's wish, uncapped. A NamedTuple: built
    on every announce, and a 13-field frozen dataclass cost ~3.5 us to build."""

    info_hash: bytes
    peer_id: bytes
    port: int
    uploaded: int = 0
    downloaded: int = 0
    left: int | None = None
    event: int = EVENT_NONE
    compact: bool = True
    no_peer_id: bool = False
    numwant: int = DEFAULT_NUMWANT
    key: bytes | None = None
    trackerid: bytes | None = None
    ip: bytes | None = None


@dataclass(frozen=True, slots=True)
class ScrapeRequest:
    """A valid scrape: the info-hashes in request order (duplicates kept)."""

    info_hashes: tuple[bytes, ...]


def percent_decode(value: bytes, name: str) -> bytes:
    """Decode ``%XX`` escapes (and ``+`` as space, form style) to raw bytes.

    Raises AnnounceError on a ``%`` not followed by two hex digits.
    """
    if b"%" not in value:
        return value.replace(b"+", b" ") if b"+" in value else value
    n = value.count(b"%")
    # Fast path: a fully escaped binary value (what libtorrent sends for info_hash).
    if n * 3 == len(value) and value[::3] == b"%" * n:
        try:
            return binascii.unhexlify(value.replace(b"%", b""))
        except (binascii.Error, ValueError):
            raise AnnounceError(f"bad percent-encoding in {name}", "encoding") from None
    if _BAD_ESCAPE.search(value):
        raise AnnounceError(f"bad percent-encoding in {name}", "encoding")
    if b"+" in value:
        value = value.replace(b"+", b" ")
    return unquote_to_bytes(value)


def parse_query(query: bytes) -> dict[bytes, bytes]:
    """Split a raw query string into name -> raw (still percent-encoded) value; the first
    occurrence of a name wins. Names are matched literally (no client escapes them);
    values are left encoded so that unknown parameters cost nothing.
    """
    if len(query) > MAX_QUERY_BYTES:
        raise AnnounceError("query too long", "query")
    params: dict[bytes, bytes] = {}
    for field in query.split(b"&"):
        name, _, value = field.partition(b"=")
        if name not in params:
            params[name] = value
    return params


_HASH_MEMO_MAX = 4096  # encoded info_hash -> 20 bytes; a tracker sees few distinct ones
_hash_memo: dict[bytes, bytes] = {}


def _hash(raw: bytes, name: str) -> bytes:
    value = percent_decode(raw, name)
    if len(value) != 20:
        raise AnnounceError(f"{name} must be 20 bytes, got {len(value)}", name)
    return value


def _info_hash(raw: bytes) -> bytes:
    """``_hash`` of an info_hash, memoised (bounded): every announce of a torrent sends
    the same encoding, and decoding it is a measurable part of an announce."""
    value = _hash_memo.get(raw)
    if value is None:
        value = _hash(raw, "info_hash")
        if len(_hash_memo) >= _HASH_MEMO_MAX:
            _hash_memo.clear()
        _hash_memo[raw] = value
    return value


def _uint(raw: bytes | None, name: str, default: int | None) -> int | None:
    if raw is None or raw == b"":
        return default
    if len(raw) < _MAX_DIGITS and raw.isdigit():
        return int(raw)  # 19 digits or fewer: always below 2^64
    if len(raw) > _MAX_DIGITS or not raw.isdigit():
        raise AnnounceError(f"{name} is not a number", "counter")
    value = int(raw)
    if value > _MAX_U64:
        raise AnnounceError(f"{name} is out of range", "counter")
    return value


def _opaque(raw: bytes | None, name: str) -> bytes | None:
    if raw is None:
        return None
    value = percent_decode(raw, name)
    if len(value) > _MAX_KEY_BYTES:
        raise AnnounceError(f"{name} is too long", name)
    return value


def parse_announce(query: bytes) -> AnnounceRequest:
    """Parse the query string of ``GET /announce?...`` (without the ``?``).

    Required: info_hash and peer_id (20 bytes each), port (1-65535). Optional: uploaded,
    downloaded, left (0..2^64-1), event (started/completed/stopped/paused/empty), compact,
    no_peer_id, numwant (a negative value means the default), key, trackerid, ip.
    Anything else is ignored. Raises AnnounceError naming the first problem.
    """
    params = parse_query(query)
    raw = params.get(b"info_hash")
    if raw is None:
        raise AnnounceError("missing info_hash", "info_hash")
    info_hash = _info_hash(raw)
    raw = params.get(b"peer_id")
    if raw is None:
        raise AnnounceError("missing peer_id", "peer_id")
    peer_id = _hash(raw, "peer_id")
    raw = params.get(b"port")
    if raw is None:
        raise AnnounceError("missing port", "port")
    if not raw.isdigit() or len(raw) > 5 or not 0 < int(raw) < 65536:
        raise AnnounceError("invalid port", "port")
    port = int(raw)
    event_raw = params.get(b"event")
    event = EVENT_NONE
    if event_raw is not None:
        event = _EVENTS.get(event_raw, -1)
        if event < 0:
            raise AnnounceError("invalid event", "event")
    numwant_raw = params.get(b"numwant")
    numwant = DEFAULT_NUMWANT
    if numwant_raw:
        if numwant_raw[:1] == b"-" and numwant_raw[1:].isdigit():
            numwant = DEFAULT_NUMWANT  # -1 is "tracker's choice" in several clients
        else:
            numwant = _uint(numwant_raw, "numwant", DEFAULT_NUMWANT)  # type: ignore[assignment]
    get = params.get
    uploaded = _uint(get(b"uploaded"), "uploaded", 0)
    downloaded = _uint(get(b"downloaded"), "downloaded", 0)
    left = _uint(get(b"left"), "left", None)
    no_peer_id = get(b"no_peer_id")
    key = get(b"key")
    trackerid = get(b"trackerid")
    ip_raw = get(b"ip")
    return AnnounceRequest(
        info_hash,
        peer_id,
        port,
        uploaded,  # type: ignore[arg-type]
        downloaded,  # type: ignore[arg-type]
        left,
        event,
        get(b"compact") != b"0",
        no_peer_id is not None and no_peer_id not in (b"0", b""),
        numwant,
        None if key is None else _opaque(key, "key"),
        None if trackerid is None else _opaque(trackerid, "trackerid"),
        _opaque(ip_raw, "ip") if ip_raw else None,
    )


def parse_scrape(query: bytes) -> ScrapeRequest:
    """Parse the query string of ``GET /scrape?...``: one or more ``info_hash`` (BEP 48).

    A scrape without info_hash (a "full scrape") is refused, as is one with more than
    MAX_SCRAPE_HASHES hashes. Raises AnnounceError naming the problem.
    """
    if len(query) > MAX_QUERY_BYTES:
        raise AnnounceError("query too long", "query")
    raws = query[10:].split(b"&info_hash=")
    if query[:10] != b"info_hash=" or b"&" in b"".join(raws):
        # Not only info_hash=... fields (else every "&" started one): field by field.
        raws = [f[10:] for f in query.split(b"&") if f[:10] == b"info_hash=" or f == b"info_hash"]
    if not raws:
        raise AnnounceError("missing info_hash (full scrape is not supported)", "info_hash")
    if len(raws) > MAX_SCRAPE_HASHES:
        raise AnnounceError(f"too many info_hash (at most {MAX_SCRAPE_HASHES})", "info_hash")
    hashes = tuple(map(_hash_memo.get, raws))  # the hashes seen lately, in C
    if not all(hashes):  # one was not (None)
        hashes = tuple(map(_info_hash, raws))
    return ScrapeRequest(hashes)
