"""Bencoded tracker responses (BEP 3, 7, 23, 48): failure, announce, scrape.

Pure. The compact announce, on every request's path, is assembled by hand (keys in the
sorted order BEP 3 requires); the rarer shapes go through ``tracker.bencode``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence

from tracker import bencode

__all__ = [
    "peer_dicts",
    "render_announce",
    "render_failure",
    "render_scrape",
    "scrape_entry",
]


def render_failure(reason: str) -> bytes:
    """``d14:failure reason...e``: what a client shows when the tracker refuses."""
    return bencode.encode({b"failure reason": reason.encode("utf-8", "replace")})


def _string(value: bytes) -> bytes:
    return b"%d:%s" % (len(value), value)


def render_announce(
    *,
    interval: int,
    min_interval: int,
    complete: int,
    incomplete: int,
    peers: bytes | list[dict[bytes, object]],
    peers6: bytes = b"",
    tracker_id: bytes | None = None,
) -> bytes:
    """An announce answer. ``peers`` is the compact string (BEP 23, 6 bytes per IPv4 peer)
    or a list of ``{peer id, ip, port}`` dicts (compact=0); ``peers6`` the compact IPv6
    peers (BEP 7, 18 bytes each), left out when empty. ``tracker id`` is echoed when given.
    """
    if not isinstance(peers, bytes):
        body: dict[bytes, object] = {
            b"complete": complete,
            b"incomplete": incomplete,
            b"interval": interval,
            b"min interval": min_interval,
            b"peers": peers,
        }
        if peers6:
            body[b"peers6"] = peers6
        if tracker_id is not None:
            body[b"tracker id"] = tracker_id
        return bencode.encode(body)
    out = b"d8:completei%de10:incompletei%de8:intervali%de12:min intervali%de5:peers%s" % (
        complete,
        incomplete,
        interval,
        min_interval,
        _string(peers),
    )
    if peers6:
        out += b"6:peers6" + _string(peers6)
    if tracker_id is not None:
        out += b"10:tracker id" + _string(tracker_id)
    return out + b"e"


def peer_dicts(
    addrs: Iterable[bytes], peer_ids: dict[bytes, bytes] | None
) -> list[dict[bytes, object]]:
    """compact=0 peer list: ``{ip, port[, peer id]}`` per compact address. ``peer_ids``
    maps address -> peer id; None leaves the ids out (no_peer_id)."""
    out: list[dict[bytes, object]] = []
    for a in addrs:
        family = socket.AF_INET if len(a) == 6 else socket.AF_INET6
        entry: dict[bytes, object] = {
            b"ip": socket.inet_ntop(family, a[:-2]).encode(),
            b"port": int.from_bytes(a[-2:], "big"),
        }
        if peer_ids is not None and a in peer_ids:
            entry[b"peer id"] = peer_ids[a]
        out.append(entry)
    return out


# The value of one info-hash in a scrape's ``files`` dict (BEP 48).
_SCRAPE_ENTRY = b"d8:completei%de10:downloadedi%de10:incompletei%dee"


def scrape_entry(complete: int, downloaded: int, incomplete: int) -> bytes:
    """One torrent's counts as a scrape answer's ``files`` dict holds them (the bencoded
    ``{complete, downloaded, incomplete}``), for ``render_scrape``."""
    return _SCRAPE_ENTRY % (complete, downloaded, incomplete)


def render_scrape(hashes: Sequence[bytes], entries: Sequence[bytes]) -> bytes:
    """A scrape answer: ``hashes`` (20 bytes each, distinct, sorted: the order BEP 3
    wants dict keys in), each with its ``scrape_entry`` at the same index in ``entries``.
    The entries are made once per change of a swarm's counts (the core keeps them): an
    answer only copies them, in one join of a list filled by two slice assignments."""
    n = len(hashes)  # (as many entries, else ValueError from the slice assignment)
    parts = [b"20:"] * (3 * n + 2)  # d5:filesd, then 20: hash entry per hash, then ee
    parts[0] = b"d5:filesd"
    parts[2 : 3 * n : 3] = hashes
    parts[3 : 3 * n + 1 : 3] = entries
    parts[-1] = b"ee"
    return b"".join(parts)
