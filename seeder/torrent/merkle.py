"""BEP 52 merkle trees for one file: leaf hashes, piece-layer hashes, the file's pieces root.

BEP 52 (BitTorrent v2) hashes a file as a binary SHA-256 merkle tree whose leaves are the
hashes of its 16 KiB blocks (the last block may be shorter and is hashed as it is). The leaf
row is padded to a power of two with leaves of 32 zero bytes; an inner node is
``sha256(left + right)``. The tree's root is the file's ``pieces root``.

The *piece layer* is the row of the tree whose nodes each cover one piece (``piece length /
16 KiB`` leaves). A torrent carries it in ``piece layers`` for every file larger than one piece;
it holds exactly one hash per piece (the last piece's subtree padded with zero leaves like the
rest), without the padding nodes that complete the row to a power of two. Those padding nodes
are roots of all-zero-leaf subtrees (:func:`pad_hash`), not zero bytes.

For a file of at most one piece the root is over its leaves padded only to the next power of
two (not to a whole piece), and there is no piece layer. Both cases are the same rule: the
leaf row is padded to ``next_pow2(number of blocks)``; the piece layer is a shortcut through it.

Pure functions over bytes; the hashing pipeline (``seeder.torrent.hashing``) calls
:func:`piece_root` per piece in worker threads and :func:`root_from_layer` once at the end.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

__all__ = [
    "BLOCK_SIZE",
    "HASH_SIZE",
    "ZERO_HASH",
    "MerkleError",
    "block_hashes",
    "file_root_and_layer",
    "is_pow2",
    "merkle_root",
    "next_pow2",
    "pad_hash",
    "piece_root",
    "root_from_layer",
]

BLOCK_SIZE = 16 * 1024  # BEP 52: leaves are SHA-256 of 16 KiB blocks
HASH_SIZE = 32
ZERO_HASH = bytes(HASH_SIZE)  # BEP 52: padding leaves are zero, not hashes of zeros


class MerkleError(ValueError):
    """Arguments that cannot describe a BEP 52 tree (width not a power of two, ...)."""


def next_pow2(n: int) -> int:
    """The smallest power of two >= ``n`` (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def is_pow2(n: int) -> bool:
    """True when ``n`` is a power of two (1, 2, 4, ...)."""
    return n > 0 and n & (n - 1) == 0


@lru_cache(maxsize=64)
def pad_hash(leaves: int) -> bytes:
    """Root of a subtree of ``leaves`` zero leaves (``leaves`` a power of two)."""
    if not is_pow2(leaves):
        raise MerkleError(f"subtree width {leaves} is not a power of two")
    h = ZERO_HASH
    while leaves > 1:
        h = hashlib.sha256(h + h).digest()
        leaves //= 2
    return h


def merkle_root(hashes: Sequence[bytes], width: int, pad: bytes = ZERO_HASH) -> bytes:
    """Root of a tree whose bottom row is ``hashes`` padded with ``pad`` to ``width`` nodes.

    ``width`` must be a power of two >= ``len(hashes)``. ``pad`` is the value of one padding
    node of that row: :data:`ZERO_HASH` for leaves, ``pad_hash(n)`` for a row of n-leaf
    subtrees. Padding is folded in as precomputed subtree roots, so a wide, mostly empty row
    costs O(len(hashes) + log(width)) hashes, not O(width).
    """
    if not is_pow2(width) or len(hashes) > width:
        raise MerkleError(f"row of {len(hashes)} hashes cannot be padded to width {width}")
    row = list(hashes)
    while width > 1:
        if len(row) % 2:
            row.append(pad)
        row = [hashlib.sha256(row[i] + row[i + 1]).digest() for i in range(0, len(row), 2)]
        pad = hashlib.sha256(pad + pad).digest()
        width //= 2
    return row[0] if row else pad


def block_hashes(data: bytes | memoryview) -> list[bytes]:
    """SHA-256 of each 16 KiB block of ``data`` (the last one may be shorter). [] if empty."""
    view = memoryview(data)
    return [
        hashlib.sha256(view[i : i + BLOCK_SIZE]).digest() for i in range(0, len(view), BLOCK_SIZE)
    ]


def piece_root(data: bytes | memoryview, width: int) -> bytes:
    """Root of the subtree over ``data``'s blocks, padded with zero leaves to ``width`` leaves.

    For a piece of a multi-piece file, ``width = piece_length // BLOCK_SIZE`` (the piece layer
    node). For a file of one piece or less, ``width = next_pow2(blocks)`` gives the file's
    pieces root.
    """
    return merkle_root(block_hashes(data), width)


def root_from_layer(layer: Sequence[bytes], piece_length: int) -> bytes:
    """The pieces root of a file from its piece layer (one hash per piece, no padding)."""
    if not is_pow2(piece_length) or piece_length < BLOCK_SIZE:
        raise MerkleError(f"piece length {piece_length} is not a power of two >= {BLOCK_SIZE}")
    if not layer:
        raise MerkleError("empty piece layer")
    return merkle_root(layer, next_pow2(len(layer)), pad_hash(piece_length // BLOCK_SIZE))


def file_root_and_layer(data: bytes | memoryview, piece_length: int) -> tuple[bytes, bytes | None]:
    """Reference: ``(pieces root, piece layer bytes or None)`` of a whole file in memory.

    The piece layer is None when the file fits in one piece (BEP 52 stores none then). For an
    empty file the root is None-like: BEP 52 gives empty files no pieces root, so this raises.
    """
    view = memoryview(data)
    if not len(view):
        raise MerkleError("an empty file has no pieces root")
    if not is_pow2(piece_length) or piece_length < BLOCK_SIZE:
        raise MerkleError(f"piece length {piece_length} is not a power of two >= {BLOCK_SIZE}")
    if len(view) <= piece_length:
        blocks = -(-len(view) // BLOCK_SIZE)
        return piece_root(view, next_pow2(blocks)), None
    width = piece_length // BLOCK_SIZE
    layer = [piece_root(view[i : i + piece_length], width)
             for i in range(0, len(view), piece_length)]
    return root_from_layer(layer, piece_length), b"".join(layer)
