"""Windows of compact peer addresses: the peer list of one answer, cut out of a swarm's
address strings (``tracker.swarm``). Pure.

A swarm keeps each (family, role) of its peers as one string of compact addresses back
to back; an answer is ``k`` of them at a random offset in some of these strings read as
one ring, without the asker's own address: one or two slices, never a per-peer object.
``rand()`` (a float in [0, 1)) is called once, and only when the ring holds more than
``k + 1`` addresses (the asker and one spare).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["JOIN_MAX", "WIDTH", "mixed", "ring"]

WIDTH = (6, 6, 18, 18)  # bytes per compact address, by slot (family * 2 + role)
JOIN_MAX = 8192  # ring() joins a ring this small (~1400 IPv4 peers) before cutting it


def ring(strings: tuple[bytearray, ...], w: int, k: int, asker: int,
         rand: Callable[[], float], join_max: int = JOIN_MAX) -> bytes:
    """Up to ``k`` addresses of ``w`` bytes from ``strings`` read back to back as one
    ring, from a random offset, without the one at byte offset ``asker`` (-1: none).
    A ring of at most ``join_max`` bytes is joined into one string first (the usual
    swarm: a copy of a few hundred bytes costs less than locating the window); a larger
    one gives one slice of one string, unless the window wraps."""
    total = 0
    for blob in strings:
        total += len(blob)
    need = (k + 1) * w  # one spare, in case the window holds the asker
    if total <= need:
        out = b"".join(strings)
        if asker >= 0:
            out = out[:asker] + out[asker + w :]
        return out[: k * w]
    start = int(rand() * (total // w)) * w  # randrange costs ~4x more
    end = start + need
    at = (asker - start) % total if asker >= 0 else need
    if total <= join_max:
        whole = b"".join(strings)
        if at >= need and end <= total:  # the usual window: one slice, without the spare
            return whole[start : end - w]
        part = whole[start:end] if end <= total else whole[start:] + whole[: end - total]
    else:
        part = _window(strings, start, need)
    if at >= need:
        return part[: need - w]  # the asker is not in it: the spare goes
    return part[:at] + part[at + w :]


def _window(strings: tuple[bytearray, ...], start: int, need: int) -> bytes:
    """``need`` bytes of the ring from byte ``start`` (the ring is longer than that)."""
    i = 0
    while start >= len(strings[i]):  # empty strings are skipped here
        start -= len(strings[i])
        i += 1
    part = strings[i][start : start + need]  # usually the whole window
    if len(part) == need:
        return bytes(part)
    parts = [part]  # the ring wraps into the next strings (it is longer: it ends)
    left = need - len(part)
    while left:
        i = (i + 1) % len(strings)
        parts.append(strings[i][:left])
        left -= len(parts[-1])
    return b"".join(parts)

def mixed(packed: tuple[bytearray, ...], slots: tuple[int, ...], k: int, asker: bytes,
      rand: Callable[[], float]) -> tuple[bytes, bytes]:
    """``_ring`` over the strings of ``slots`` of both families (HTTP, a swarm with IPv4
    and IPv6 peers), as (IPv4, IPv6) strings; ``asker`` is the asker's address."""
    counts = [len(packed[s]) // WIDTH[s] for s in slots]
    total = sum(counts)
    if total <= k + 1:
        if not total:
            return (b"", b"")
        start, need = 0, total
    else:  # one spare, in case the window holds the asker
        start, need = int(rand() * total), k + 1  # randrange costs ~4x more
    i = 0
    while start >= counts[i]:  # empty strings are skipped here
        start -= counts[i]
        i += 1
    chunks: list[tuple[int, bytearray]] = []  # (family: 0 IPv4, 1 IPv6; addresses)
    taken = 0
    while taken < need:  # the ring wraps into the next strings (total >= need: it ends)
        n = min(counts[i] - start, need - taken)
        if n > 0:
            w = WIDTH[slots[i]]
            chunks.append((slots[i] >> 1, packed[slots[i]][start * w : (start + n) * w]))
            taken += n
        start = 0
        i = (i + 1) % len(slots)
    # Leave out the asker (an address is in a swarm once: an aligned match is it), else
    # the spare at the end, if one was taken.
    family, w = (1, 18) if len(asker) == 18 else (0, 6)
    for f, chunk in chunks:
        if f == family:
            at = chunk.find(asker)
            while at > 0 and at % w:
                at = chunk.find(asker, at + 1)
            if at >= 0:
                del chunk[at : at + w]
                taken -= 1
                break
    if taken > k:
        f, chunk = chunks[-1]
        del chunk[-WIDTH[f * 2] :]
    parts: tuple[list[bytearray], list[bytearray]] = ([], [])
    for f, chunk in chunks:
        parts[f].append(chunk)
    return b"".join(parts[0]), b"".join(parts[1])
