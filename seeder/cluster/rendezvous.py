"""Rendezvous (highest random weight) hashing: which nodes seed which torrent (pure).

Every node computes the same answer from the same list of live node ids, with no
coordination: each (node, item) pair gets a weight from a hash, and an item belongs to the
``replicas`` nodes of highest weight. When a node leaves, only the items it held move, each
to the next node in its own order; when one joins, it takes about 1/N of the items.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["owners", "weight"]


def weight(node_id: str, item: bytes) -> int:
    """The weight of ``node_id`` for ``item`` (64 bits of BLAKE2b of both)."""
    h = hashlib.blake2b(item, digest_size=8, key=node_id.encode()[:64])
    return int.from_bytes(h.digest(), "big")


def owners(item: bytes, nodes: Iterable[str], replicas: int) -> list[str]:
    """The ``replicas`` node ids (fewer if there are fewer nodes) that own ``item``,
    highest weight first; ties broken by node id. Duplicate ids count once."""
    ranked = sorted(set(nodes), key=lambda n: (-weight(n, item), n))
    return ranked[: max(0, replicas)]
