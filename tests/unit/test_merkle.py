"""seeder.torrent.merkle: BEP 52 trees against a naive full tree and libtorrent's answers."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seeder.torrent import merkle
from seeder.torrent.merkle import BLOCK_SIZE, ZERO_HASH, MerkleError


def pattern(n: int) -> bytes:
    """Deterministic, non-repeating-per-block test content (the vectors below use it)."""
    return bytes(i % 251 for i in range(n))


def naive_root(leaves: list[bytes], width: int) -> bytes:
    """The tree as BEP 52 defines it: every padding leaf written out, no shortcuts."""
    row = leaves + [ZERO_HASH] * (width - len(leaves))
    while len(row) > 1:
        row = [hashlib.sha256(row[i] + row[i + 1]).digest() for i in range(0, len(row), 2)]
    return row[0]


# (size, piece length, pieces root, sha256 of the piece layer or None), from libtorrent 2.1.1
# lt.create_torrent(..., flags=0) (hybrid) over pattern(size).
LIBTORRENT_VECTORS = [
    (1, 16384, "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d", None),
    (16384, 16384, "4348e3b98e8a327b34ced39c1da9e67cdb4cd5e48e4d7960607a3ae403d35f0c", None),
    (40000, 16384, "ab671631a9fa97a1fdac651fff6c68773b9acf0735b9c7f6ecdd54cbf1bf5dc2",
     "2d9734668988a4c3b9ea9f8bf293049584fb7ebd0625617f2e5400005e877fff"),
    (100000, 65536, "505fc9a922f60ae071450b07256a4ba760612bffc38c27584ed03fd96c69841b",
     "505fc9a922f60ae071450b07256a4ba760612bffc38c27584ed03fd96c69841b"),
    (300000, 32768, "1c5fb49bf57e0e945d9428a1798ddc8acc5dc57e19aa0c9bb1ed90e9b7885ee1",
     "4187113de474f2eb99c210753224d5dd2d8efcba37f3efff8ef2e5010354982f"),
]


@pytest.mark.parametrize(("size", "piece_length", "root_hex", "layer_sha256"), LIBTORRENT_VECTORS)
def test_file_root_and_layer_match_libtorrent(
    size: int, piece_length: int, root_hex: str, layer_sha256: str | None
) -> None:
    root, layer = merkle.file_root_and_layer(pattern(size), piece_length)
    assert root.hex() == root_hex
    if layer_sha256 is None:
        assert layer is None
    else:
        assert layer is not None
        assert len(layer) == 32 * -(-size // piece_length)
        assert hashlib.sha256(layer).hexdigest() == layer_sha256


@pytest.mark.parametrize(("n", "expected"), [(0, 1), (1, 1), (2, 2), (3, 4), (4, 4), (5, 8),
                                             (1023, 1024), (1024, 1024), (1025, 2048)])
def test_next_pow2(n: int, expected: int) -> None:
    assert merkle.next_pow2(n) == expected


def test_pad_hash_is_the_root_of_zero_leaves() -> None:
    assert merkle.pad_hash(1) == ZERO_HASH
    assert merkle.pad_hash(2) == hashlib.sha256(ZERO_HASH * 2).digest()
    assert merkle.pad_hash(64) == naive_root([], 64)


@given(count=st.integers(0, 40), extra=st.integers(0, 3))
def test_merkle_root_equals_the_naive_tree(count: int, extra: int) -> None:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(count)]
    width = merkle.next_pow2(count) << extra
    assert merkle.merkle_root(leaves, width) == naive_root(leaves, width)


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 9 * BLOCK_SIZE + 7), shift=st.integers(0, 2))
def test_piece_layer_route_equals_the_full_tree(size: int, shift: int) -> None:
    """Root via per-piece nodes and padded piece layer == the leaf row padded to a power of 2."""
    piece_length = BLOCK_SIZE << shift
    data = pattern(size)
    root, layer = merkle.file_root_and_layer(data, piece_length)
    leaves = merkle.block_hashes(data)
    assert root == naive_root(leaves, merkle.next_pow2(len(leaves)))
    assert (layer is None) == (size <= piece_length)


def test_block_hashes_hash_the_short_last_block_as_is() -> None:
    data = pattern(BLOCK_SIZE + 10)
    assert merkle.block_hashes(data) == [
        hashlib.sha256(data[:BLOCK_SIZE]).digest(),
        hashlib.sha256(data[BLOCK_SIZE:]).digest(),
    ]
    assert merkle.block_hashes(b"") == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: merkle.pad_hash(3), "subtree width 3 is not a power of two"),
        (lambda: merkle.pad_hash(0), "subtree width 0 is not a power of two"),
        (lambda: merkle.merkle_root([ZERO_HASH] * 3, 2), "row of 3 hashes cannot be padded"),
        (lambda: merkle.merkle_root([], 6), "row of 0 hashes cannot be padded to width 6"),
        (lambda: merkle.root_from_layer([ZERO_HASH], 8192), "piece length 8192 is not"),
        (lambda: merkle.root_from_layer([ZERO_HASH], 3 * BLOCK_SIZE), "is not a power of two"),
        (lambda: merkle.root_from_layer([], BLOCK_SIZE), "empty piece layer"),
        (lambda: merkle.file_root_and_layer(b"", BLOCK_SIZE), "an empty file has no pieces root"),
        (lambda: merkle.file_root_and_layer(b"x", 1000), "piece length 1000 is not"),
    ],
)
def test_bad_arguments_raise_merkle_error(call, message: str) -> None:
    with pytest.raises(MerkleError, match=message):
        call()


def test_core_modules_import_no_io_libraries() -> None:
    code = (
        "import sys, seeder.torrent.merkle, seeder.torrent.metainfo\n"
        "bad = {'trio', 'libtorrent', 'boto3', 'botocore'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
