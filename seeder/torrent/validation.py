"""Validation of torrent bytes, apart from building them (pure).

`validate` checks that bytes are a single-file torrent as `seeder.torrent.metainfo` builds them
(v1 or hybrid, BEP 3 / 12 / 19 / 52); each failure is an `InvalidTorrent` naming the key path,
e.g. ``['info']['piece length']: 1000 is not a power of two of at least 16384``.
"""

from __future__ import annotations

from typing import Any

from seeder.torrent import merkle
from seeder.torrent.metainfo import (
    MIN_PIECE_LENGTH,
    SHA1_SIZE,
    SHA256_SIZE,
    InvalidTorrent,
    decode_torrent,
    key_path,
    num_pieces,
)
from tracker import bencode

__all__ = ["validate"]


def _need(obj: dict[bytes, Any], key: bytes, kind: type | tuple[type, ...], *parent: bytes) -> Any:
    if key not in obj:
        raise InvalidTorrent(key_path(*parent, key), "missing")
    value = obj[key]
    if not isinstance(value, kind):
        raise InvalidTorrent(key_path(*parent, key), f"must be {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {bytes: "a string", int: "an integer", dict: "a dictionary", list: "a list"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _check_url(value: Any, path: str) -> None:
    if not isinstance(value, bytes):
        raise InvalidTorrent(path, "must be a string")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidTorrent(path, "is not UTF-8") from None
    scheme, sep, rest = text.partition("://")
    if not sep or not rest or scheme.lower() not in ("http", "https", "udp"):
        raise InvalidTorrent(path, f"{text!r} is not an http(s) or udp URL")


def validate(torrent: bytes) -> None:
    """Check that ``torrent`` is a well-formed single-file torrent as this module builds them
    (v1 or hybrid). Returns None; raises InvalidTorrent naming the first bad key path.

    Checked: canonical bencoding; ``announce`` / ``announce-list`` / ``url-list`` URLs;
    ``info``: ``name`` (a file name, not a path), ``length`` >= 1, ``piece length`` (power of
    two >= 16 KiB), ``pieces`` (20 bytes per piece); optional ``x-amz-bucket`` / ``x-amz-key``
    strings; for ``meta version`` 2: the one-file ``file tree`` (same name and length, 32-byte
    root) and ``piece layers`` (present exactly when needed, right size, hashing to the root).
    Multi-file torrents (``files``) are not made here and are refused.
    """
    top = decode_torrent(torrent)
    if bencode.encode(top) != bytes(torrent):
        raise InvalidTorrent("", "not canonical bencoding (keys unsorted or duplicated)")
    if b"announce" in top:
        _check_url(top[b"announce"], key_path(b"announce"))
    if b"announce-list" in top:
        tiers = _need(top, b"announce-list", list)
        for i, tier in enumerate(tiers):
            if not isinstance(tier, list) or not tier:
                raise InvalidTorrent(key_path(b"announce-list", i), "must be a non-empty list")
            for j, url in enumerate(tier):
                _check_url(url, key_path(b"announce-list", i, j))
    if b"url-list" in top:
        urls = top[b"url-list"]
        if isinstance(urls, bytes):
            _check_url(urls, key_path(b"url-list"))
        elif isinstance(urls, list):
            for i, url in enumerate(urls):
                _check_url(url, key_path(b"url-list", i))
        else:
            raise InvalidTorrent(key_path(b"url-list"), "must be a string or a list")
    if b"created by" in top:
        _need(top, b"created by", bytes)

    info = _need(top, b"info", dict)
    if b"files" in info:
        raise InvalidTorrent(key_path(b"info", b"files"), "multi-file torrents are not supported")
    name = _need(info, b"name", bytes, b"info")
    if name in (b"", b".", b"..") or b"/" in name or b"\0" in name:
        raise InvalidTorrent(key_path(b"info", b"name"), f"{name!r} is not a file name")
    length = _need(info, b"length", int, b"info")
    if length < 1:
        raise InvalidTorrent(key_path(b"info", b"length"), f"{length} is not a positive size")
    plen = _need(info, b"piece length", int, b"info")
    if plen < MIN_PIECE_LENGTH or not merkle.is_pow2(plen):
        raise InvalidTorrent(
            key_path(b"info", b"piece length"),
            f"{plen} is not a power of two of at least {MIN_PIECE_LENGTH}",
        )
    count = num_pieces(length, plen)
    pieces = _need(info, b"pieces", bytes, b"info")
    if len(pieces) != SHA1_SIZE * count:
        raise InvalidTorrent(
            key_path(b"info", b"pieces"),
            f"{len(pieces)} bytes, expected {SHA1_SIZE * count} ({count} pieces)",
        )
    for amz in (b"x-amz-bucket", b"x-amz-key"):
        if amz in info:
            _need(info, amz, bytes, b"info")
    if b"meta version" in info:
        _validate_v2(top, info, name, length, plen, count)
    elif b"piece layers" in top:
        raise InvalidTorrent(key_path(b"piece layers"), "present in a v1-only torrent")
    elif b"file tree" in info:
        # libtorrent refuses v2 keys without the version that gives them meaning.
        raise InvalidTorrent(key_path(b"info", b"file tree"), "present without meta version 2")


def _validate_v2(top: dict[bytes, Any], info: dict[bytes, Any], name: bytes, length: int,
                 plen: int, count: int) -> None:
    version = _need(info, b"meta version", int, b"info")
    if version != 2:
        raise InvalidTorrent(key_path(b"info", b"meta version"), f"{version} is not 2")
    tree = _need(info, b"file tree", dict, b"info")
    if list(tree) != [name]:
        raise InvalidTorrent(key_path(b"info", b"file tree"), "must hold exactly the file 'name'")
    node = _need(tree, name, dict, b"info", b"file tree")
    at = (b"info", b"file tree", name)
    if list(node) != [b""]:
        raise InvalidTorrent(key_path(*at), "must be a file entry (only the '' key)")
    entry = _need(node, b"", dict, *at)
    at = (*at, b"")
    flen = _need(entry, b"length", int, *at)
    if flen != length:
        raise InvalidTorrent(key_path(*at, b"length"), f"{flen} != info length {length}")
    root = _need(entry, b"pieces root", bytes, *at)
    if len(root) != SHA256_SIZE:
        raise InvalidTorrent(key_path(*at, b"pieces root"), f"must be {SHA256_SIZE} bytes")
    layers = top.get(b"piece layers", {})
    if not isinstance(layers, dict):
        raise InvalidTorrent(key_path(b"piece layers"), "must be a dictionary")
    if count == 1:
        if layers:
            raise InvalidTorrent(key_path(b"piece layers"), "a one-piece file has no piece layer")
        return
    at_layer = key_path(b"piece layers", root.hex().encode())  # the key is binary: show hex
    layer = layers.get(root)
    if not isinstance(layer, bytes):
        raise InvalidTorrent(at_layer, "missing" if layer is None else "must be a string")
    if len(layer) != SHA256_SIZE * count:
        raise InvalidTorrent(
            at_layer, f"{len(layer)} bytes, expected {SHA256_SIZE * count} ({count} pieces)"
        )
    if len(layers) != 1:
        raise InvalidTorrent(key_path(b"piece layers"), "holds layers of no file in the torrent")
    hashes = [layer[i : i + SHA256_SIZE] for i in range(0, len(layer), SHA256_SIZE)]
    if merkle.root_from_layer(hashes, plen) != root:
        raise InvalidTorrent(at_layer, "does not hash to the pieces root")
