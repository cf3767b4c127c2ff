"""tracker.peerwindow: the windows match the list-based reference they replaced."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.peerwindow import JOIN_MAX, mixed, ring


def reference(lists: list[list[bytes]], k: int, asker: bytes | None, r: float) -> list[bytes]:
    """The window as the swarm computed it over lists of address objects."""
    ring_ = [a for lst in lists for a in lst]
    total = len(ring_)
    if total <= k + 1:
        out = [a for a in ring_ if a != asker]
        return out[:k]
    start = int(r * total)
    out = [ring_[(start + i) % total] for i in range(k + 1)]
    if asker in out:
        out.remove(asker)
    else:
        out.pop()
    return out


def addrs(n: int, width: int, base: int) -> list[bytes]:
    return [(base + i).to_bytes(width, "big") for i in range(n)]


def split(blob: bytes, width: int) -> list[bytes]:
    return [blob[i : i + width] for i in range(0, len(blob), width)]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=3), st.integers(0, 40),
       st.floats(0, 0.999), st.integers(-1, 200), st.sampled_from([JOIN_MAX, 0]))
def test_ring_matches_reference(
    sizes: list[int], k: int, r: float, pick: int, join_max: int
) -> None:
    """Both ways of cutting the window: a small ring joined first (the default, what
    these sizes get) and the slices of a large one (join_max 0)."""
    lists = [addrs(n, 6, 1000 * j) for j, n in enumerate(sizes)]
    flat = [a for lst in lists for a in lst]
    asker = flat[pick] if 0 <= pick < len(flat) else None
    offset = flat.index(asker) * 6 if asker is not None else -1
    strings = tuple(bytearray(b"".join(lst)) for lst in lists)
    got = ring(strings, 6, k, offset, lambda: r, join_max)
    assert type(got) is bytes
    assert split(got, 6) == reference(lists, k, asker, r)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=4, max_size=4), st.integers(0, 30),
       st.floats(0, 0.999), st.integers(-1, 60))
def test_mixed_families_match_reference(sizes: list[int], k: int, r: float, pick: int) -> None:
    widths = (6, 6, 18, 18)
    packed = tuple(bytearray(b"".join(addrs(n, widths[s], 1000 * s)))
                   for s, n in enumerate(sizes))
    slots = (0, 2, 1, 3)  # a leecher's ring: seeders then leechers, each IPv4 then IPv6
    lists = [split(bytes(packed[s]), widths[s]) for s in slots]
    flat = [a for lst in lists for a in lst]
    asker = flat[pick] if 0 <= pick < len(flat) else b"\xff" * 6
    v4, v6 = mixed(packed, slots, k, asker, lambda: r)
    want = reference(lists, k, asker, r)
    assert split(v4, 6) == [a for a in want if len(a) == 6]
    assert split(v6, 18) == [a for a in want if len(a) == 18]


def test_rand_is_drawn_only_for_a_ring_larger_than_the_window() -> None:
    calls = []

    def rand() -> float:
        calls.append(1)
        return random.random()

    ring((bytearray(bytes(6 * 5)),), 6, 4, -1, rand)  # 5 <= k + 1: all of them
    assert calls == []
    ring((bytearray(bytes(6 * 7)),), 6, 4, -1, rand)
    assert calls == [1]
