"""Torrent metainfo for one S3 object: piece size policy, torrent bytes, info-hashes, links.

Shape (v1, the default) follows Amazon S3's own torrents (field notes)::

    {announce, announce-list, url-list, created by,
     info: {length, name, piece length, pieces, x-amz-bucket, x-amz-key}}

- ``name`` is the last segment of the key. ``x-amz-bucket`` and ``x-amz-key`` are inside
  ``info``, as at AWS, so the same bytes under two keys make two torrents (two info-hashes).
- ``url-list`` (BEP 19 web seed) and the trackers are outside ``info``: they can change
  without changing the info-hash. :class:`Links` holds the three; :func:`links` reads them
  and :func:`with_links` rewrites them, copying every other top-level value (``info``
  included) byte for byte, without decoding it.
- No ``creation date`` and nothing machine-specific: the same object, piece length and format
  give the same bytes and info-hashes on any machine, after any restart.
- Bencoding is canonical (keys sorted by raw bytes), so the info-hash is the hash of the
  ``info`` value as it appears in the file.

``hybrid`` (BEP 52 v1+v2) adds ``meta version = 2`` and ``file tree = {name: {"": {length,
pieces root}}}`` to the same ``info`` and ``piece layers = {pieces root: layer}`` at the top
level (only when the object is larger than one piece, as BEP 52 says). A single-file hybrid
torrent needs no pad file: BEP 47 padding aligns the *next* file to a piece boundary and
there is none (libtorrent's ``create_torrent`` makes the same layout, checked in the tests).

Piece length policy (:func:`piece_length_for`): the smallest power of two from 256 KiB (what
AWS used) to 16 MiB that keeps the object at no more than 2000 pieces, so objects from 500 MiB
to 32 GiB get 1000-2000 pieces, smaller ones 256 KiB pieces, larger ones 16 MiB pieces.
A bucket may fix the piece length instead (``piece_length``); that one must be a power of two
and at least 16 KiB (BEP 52's block size, and libtorrent's minimum): :func:`check_piece_length`.

Empty objects: no torrent. A torrent of zero bytes has no pieces, libtorrent refuses to load
one, and BEP 52 gives an empty file no pieces root. :func:`build_torrent` raises
:class:`EmptyObjectError` (``message`` = "Torrent creation is not supported for empty objects"),
which the S3 API answers with 400 InvalidRequest (``seeder.torrent.policy.check_qualifies`` refuses
such objects before hashing, with the same words).

`seeder.torrent.validation.validate` checks torrent bytes apart from building them.

Pure: bytes and dataclasses in and out, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from seeder.torrent import merkle
from tracker import bencode

__all__ = [
    "EMPTY_MESSAGE",
    "MAX_AUTO_PIECE_LENGTH",
    "MIN_AUTO_PIECE_LENGTH",
    "MIN_PIECE_LENGTH",
    "TARGET_MAX_PIECES",
    "EmptyObjectError",
    "InfoHashes",
    "InvalidTorrent",
    "Links",
    "MetainfoError",
    "PieceHashes",
    "build_torrent",
    "build_torrent_hashed",
    "check_piece_length",
    "decode_torrent",
    "info_hashes",
    "key_path",
    "links",
    "num_pieces",
    "piece_length_for",
    "torrent_name",
    "with_links",
    "with_url_list",
]

MIN_PIECE_LENGTH = merkle.BLOCK_SIZE  # 16 KiB: BEP 52 block, libtorrent's smallest piece
MIN_AUTO_PIECE_LENGTH = 256 * 1024  # Amazon S3's piece length
MAX_AUTO_PIECE_LENGTH = 16 * 1024 * 1024
TARGET_MAX_PIECES = 2000

SHA1_SIZE = 20
SHA256_SIZE = 32
EMPTY_MESSAGE = "Torrent creation is not supported for empty objects"


class MetainfoError(ValueError):
    """Base of this module's errors. ``str(err)`` is one line."""


class EmptyObjectError(MetainfoError):
    """A torrent was asked for an object of zero bytes. ``message`` is the S3 error message."""

    def __init__(self, message: str = EMPTY_MESSAGE) -> None:
        super().__init__(message)
        self.message = message


class InvalidTorrent(MetainfoError):
    """Torrent bytes that fail `validation.validate`. ``path`` names the key (``['info']['name']``),
    ``problem`` says what is wrong with it."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path or 'torrent'}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class PieceHashes:
    """What hashing an object gives: v1 piece hashes, and for hybrid the BEP 52 tree.

    ``pieces`` is the concatenated 20-byte SHA-1 of each piece. ``pieces_root`` (32 bytes) and
    ``piece_layer`` (32 bytes per piece) are None for v1-only; ``piece_layer`` is also None
    when the object fits in one piece (BEP 52 stores no layer then).
    """

    piece_length: int
    pieces: bytes
    pieces_root: bytes | None = None
    piece_layer: bytes | None = None


@dataclass(frozen=True, slots=True)
class InfoHashes:
    """The info-hashes of a torrent: v1 (SHA-1, 20 bytes) and v2 (SHA-256, 32 bytes)."""

    v1: bytes | None
    v2: bytes | None

    @property
    def tracker_hashes(self) -> tuple[bytes, ...]:
        """The 20-byte hashes peers announce this torrent under: v1, and v2 truncated to 20
        bytes (a hybrid torrent announces both, field notes)."""
        return tuple(h[:SHA1_SIZE] for h in (self.v1, self.v2) if h is not None)


@dataclass(frozen=True, slots=True)
class Links:
    """What a client follows out of a torrent, all outside ``info``: ``announce``,
    ``announce-list`` (BEP 12 tiers) and ``url-list`` (BEP 19 web seeds).

    Normal form (:meth:`of`, what :func:`build_torrent` writes and :func:`links` reads back):
    no empty URL, no empty tier, ``announce`` None rather than ``""``. Two torrents with
    equal ``Links`` have equal ``announce``, ``announce-list`` and ``url-list`` bytes.
    """

    announce: str | None = None
    announce_list: tuple[tuple[str, ...], ...] = ()
    url_list: tuple[str, ...] = ()

    @classmethod
    def of(cls, announce: str | None = None,
           announce_list: Iterable[Iterable[str]] | None = None,
           url_list: Iterable[str] | None = None) -> Links:
        """The normal form of these links (empty strings and tiers left out)."""
        tiers = (tuple(url for url in tier if url) for tier in announce_list or ())
        return cls(
            announce or None,
            tuple(tier for tier in tiers if tier),
            tuple(url for url in url_list or () if url),
        )


def piece_length_for(size: int) -> int:
    """The automatic piece length for an object of ``size`` bytes (see the module docstring).

    A power of two in [256 KiB, 16 MiB]: the smallest one giving at most 2000 pieces.
    """
    length = MIN_AUTO_PIECE_LENGTH
    while length < MAX_AUTO_PIECE_LENGTH and -(-size // length) > TARGET_MAX_PIECES:
        length *= 2
    return length


def check_piece_length(piece_length: int) -> int:
    """Return ``piece_length`` if usable (an int, a power of two, >= 16 KiB); else raise
    MetainfoError saying why. For a bucket's fixed ``piece_length``."""
    if isinstance(piece_length, bool) or not isinstance(piece_length, int):
        raise MetainfoError(f"piece length must be an integer, not {type(piece_length).__name__}")
    if piece_length < MIN_PIECE_LENGTH or not merkle.is_pow2(piece_length):
        raise MetainfoError(
            f"piece length {piece_length} must be a power of two of at least {MIN_PIECE_LENGTH}"
        )
    return piece_length


def num_pieces(size: int, piece_length: int) -> int:
    """How many pieces ``size`` bytes make (0 for 0 bytes)."""
    return -(-size // piece_length)


def torrent_name(bucket: str, key: str) -> str:
    """The torrent ``name`` for an object: the last segment of its key.

    A key ending in ``/`` uses its last non-empty segment; a key with none (``/``) or a
    segment a client would refuse as a file name (``.``, ``..``) falls back to the bucket.
    """
    for part in reversed(key.split("/")):
        if part:
            return part if part not in (".", "..") else bucket
    return bucket


def _text(value: str) -> bytes:
    # Local keys come from file names, which may hold undecodable bytes (surrogateescape):
    # give clients those exact bytes back rather than fail.
    return value.encode("utf-8", "surrogateescape")


def build_torrent(
    *,
    bucket: str,
    key: str,
    size: int,
    hashes: PieceHashes,
    announce: str | None,
    announce_list: Iterable[Iterable[str]] | None,
    url_list: Iterable[str] | None,
    created_by: str,
    piece_length: int | None = None,
) -> bytes:
    """The .torrent bytes for ``bucket``/``key`` of ``size`` bytes hashed as ``hashes``.

    v1 unless ``hashes`` carries a ``pieces_root`` (then hybrid v1+v2). ``announce`` None and
    empty ``announce_list`` / ``url_list`` leave those keys out. ``piece_length``, if given,
    must equal ``hashes.piece_length`` (a guard for callers that track it separately).

    Raises EmptyObjectError for ``size == 0``; MetainfoError if ``hashes`` does not fit
    ``size`` (wrong number of piece hashes, bad piece length, layer without root, ...).
    Deterministic: equal arguments give equal bytes.
    """
    return build_torrent_hashed(
        bucket=bucket, key=key, size=size, hashes=hashes, announce=announce,
        announce_list=announce_list, url_list=url_list, created_by=created_by,
        piece_length=piece_length)[0]


def build_torrent_hashed(
    *,
    bucket: str,
    key: str,
    size: int,
    hashes: PieceHashes,
    announce: str | None,
    announce_list: Iterable[Iterable[str]] | None,
    url_list: Iterable[str] | None,
    created_by: str,
    piece_length: int | None = None,
) -> tuple[bytes, InfoHashes]:
    """:func:`build_torrent` and the torrent's :func:`info_hashes`, hashed over the ``info``
    bytes as they were encoded (no walk of the result). Same arguments, same errors."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise MetainfoError(f"size must be a non-negative integer, not {size!r}")
    if size == 0:
        raise EmptyObjectError()
    plen = check_piece_length(hashes.piece_length)
    if piece_length is not None and piece_length != plen:
        raise MetainfoError(f"piece length {piece_length} != hashes' {plen}")
    count = num_pieces(size, plen)
    if len(hashes.pieces) != SHA1_SIZE * count:
        raise MetainfoError(
            f"{len(hashes.pieces)} bytes of piece hashes for {count} pieces of {plen} bytes"
        )
    name = _text(torrent_name(bucket, key))
    info: dict[bytes, Any] = {
        b"length": size,
        b"name": name,
        b"piece length": plen,
        b"pieces": bytes(hashes.pieces),
        b"x-amz-bucket": _text(bucket),
        b"x-amz-key": _text(key),
    }
    top: dict[bytes, Any] = {}
    if hashes.pieces_root is not None:
        root = bytes(hashes.pieces_root)
        if len(root) != SHA256_SIZE:
            raise MetainfoError(f"pieces root must be {SHA256_SIZE} bytes, not {len(root)}")
        info[b"meta version"] = 2
        info[b"file tree"] = {name: {b"": {b"length": size, b"pieces root": root}}}
        if count > 1:
            layer = hashes.piece_layer
            if layer is None or len(layer) != SHA256_SIZE * count:
                got = "none" if layer is None else f"{len(layer)} bytes"
                raise MetainfoError(f"piece layer for {count} pieces is {got}")
            top[b"piece layers"] = {root: bytes(layer)}
    elif hashes.piece_layer is not None:
        raise MetainfoError("a piece layer without a pieces root")
    top.update(_link_values(Links.of(announce, announce_list, url_list)))
    top[b"created by"] = created_by
    raw = bencode.encode(info)
    v1 = hashlib.sha1(raw).digest()
    v2 = hashlib.sha256(raw).digest() if hashes.pieces_root is not None else None
    # The top level in key order with ``info`` spliced in as encoded (its key sorts between
    # "created by" and "piece layers"; no other key equals it).
    before = bencode.encode({k: v for k, v in top.items() if k < b"info"})
    after = bencode.encode({k: v for k, v in top.items() if k > b"info"})
    torrent = b"".join((before[:-1], b"4:info", raw, after[1:]))
    return torrent, InfoHashes(v1, v2)


def info_hashes(torrent: bytes) -> InfoHashes:
    """The v1 and v2 info-hashes of torrent bytes (v1 if ``info`` has ``pieces``, v2 if it has
    ``meta version`` 2). Raises InvalidTorrent if there is no ``info`` dict to hash.

    The hash is over the canonical encoding of ``info``: for canonical input (all torrents
    built here, and what `validation.validate` accepts) that is the exact bytes in the file.
    Those bytes are found by a walk of the top level and hashed as they are when ``info``'s
    keys are in order (no decoding, no encoding: most of the cost of a small object's
    torrent otherwise); anything else is decoded and encoded again.
    """
    fast = _info_hashes_in_place(torrent)
    if fast is not None:
        return fast
    top = decode_torrent(torrent)
    info = top.get(b"info")
    if not isinstance(info, dict):
        raise InvalidTorrent("['info']", "missing or not a dictionary")
    raw = bencode.encode(info)
    v1 = hashlib.sha1(raw).digest() if b"pieces" in info else None
    v2 = hashlib.sha256(raw).digest() if info.get(b"meta version") == 2 else None
    if v1 is None and v2 is None:
        raise InvalidTorrent("['info']", "neither v1 'pieces' nor v2 'meta version' 2")
    return InfoHashes(v1, v2)


def _info_hashes_in_place(torrent: bytes) -> InfoHashes | None:
    """The info-hashes of the ``info`` bytes as they are in ``torrent``, or None when the
    walk finds anything unusual (info_hashes then takes the slow, canonical path)."""
    try:
        span = _top_level(torrent).get(b"info")
        if span is None:
            return None
        raw = bytes(torrent[span[0]:span[1]])
        keys = _top_level(raw)
    except InvalidTorrent:
        return None
    if list(keys) != sorted(keys):
        return None
    version = keys.get(b"meta version")
    v1 = hashlib.sha1(raw).digest() if b"pieces" in keys else None
    v2 = (hashlib.sha256(raw).digest()
          if version is not None and raw[version[0]:version[1]] == b"i2e" else None)
    return None if v1 is None and v2 is None else InfoHashes(v1, v2)


def links(torrent: bytes) -> Links:
    """The links of torrent bytes, in normal form (see :class:`Links`). A ``url-list`` that is
    one string (BEP 19 allows it) reads as a list of one.

    Cheap on big torrents: the top level is walked without decoding ``info`` or ``piece
    layers`` (their strings are skipped by length); only the three link values are decoded.
    Raises InvalidTorrent if ``torrent`` is not a bencoded dictionary or a link has the
    wrong type. URLs are read as UTF-8 (other bytes kept as surrogate escapes).
    """
    values = _top_level(torrent)
    announce = announce_list = url_list = None
    if b"announce" in values:
        announce = _link_text(_link_value(torrent, values[b"announce"], "announce"), "announce")
    if b"announce-list" in values:
        raw = _link_value(torrent, values[b"announce-list"], "announce-list")
        if not isinstance(raw, list) or not all(isinstance(tier, list) for tier in raw):
            raise InvalidTorrent(key_path(b"announce-list"), "must be a list of lists")
        announce_list = [[_link_text(url, "announce-list") for url in tier] for tier in raw]
    if b"url-list" in values:
        raw = _link_value(torrent, values[b"url-list"], "url-list")
        raw = [raw] if isinstance(raw, bytes) else raw
        if not isinstance(raw, list):
            raise InvalidTorrent(key_path(b"url-list"), "must be a string or a list")
        url_list = [_link_text(url, "url-list") for url in raw]
    return Links.of(announce, announce_list, url_list)


def with_links(torrent: bytes, new: Links) -> bytes:
    """``torrent`` with its ``announce``, ``announce-list`` and ``url-list`` replaced by
    ``new`` (each left out when empty, as :func:`build_torrent` does).

    Every other top-level value (``info``, ``piece layers``, ``created by``, ...) is copied
    byte for byte, never decoded and encoded again, so ``info`` and the info-hashes cannot
    change; top-level keys come out sorted, so canonical input gives canonical output, equal
    to what :func:`build_torrent` makes with those links. InvalidTorrent if ``torrent`` is not
    a bencoded dictionary.
    """
    values = _top_level(torrent)
    parts: dict[bytes, bytes] = {
        key: torrent[start:end] for key, (start, end) in values.items() if key not in _LINK_KEYS
    }
    parts.update((key, bencode.encode(value)) for key, value in _link_values(new).items())
    out = [b"d"]
    for key in sorted(parts):
        out += [b"%d:" % len(key), key, parts[key]]
    out.append(b"e")
    return b"".join(out)


def with_url_list(torrent: bytes, urls: Iterable[str]) -> bytes:
    """``torrent`` with its BEP 19 ``url-list`` set to ``urls`` (empty strings left out; none
    left: no ``url-list``), its trackers kept; as :func:`with_links`."""
    current = links(torrent)
    return with_links(torrent, Links.of(current.announce, current.announce_list, urls))


_LINK_KEYS = (b"announce", b"announce-list", b"url-list")


def _link_values(new: Links) -> dict[bytes, Any]:
    """The top-level keys and values that carry ``new`` (empty ones left out)."""
    out: dict[bytes, Any] = {}
    if new.announce:
        out[b"announce"] = _text(new.announce)
    if new.announce_list:
        out[b"announce-list"] = [[_text(url) for url in tier] for tier in new.announce_list]
    if new.url_list:
        out[b"url-list"] = [_text(url) for url in new.url_list]
    return out


def _link_value(torrent: bytes, span: tuple[int, int], name: str) -> Any:
    try:
        return bencode.decode(torrent[span[0]:span[1]])
    except bencode.BencodeError as exc:
        raise InvalidTorrent(key_path(name.encode()), str(exc)) from None


def _link_text(value: Any, name: str) -> str:
    if not isinstance(value, bytes):
        raise InvalidTorrent(key_path(name.encode()), "holds a URL that is not a string")
    return value.decode("utf-8", "surrogateescape")


def _top_level(torrent: bytes) -> dict[bytes, tuple[int, int]]:
    """Each top-level key of a bencoded dictionary -> the (start, end) of its value's bytes.

    Values are skipped, not decoded: strings by their length prefix, so the walk costs a
    few steps per key whatever the size of ``pieces``. Structure is checked (every value
    complete, the dictionary closed, nothing after it, keys unique); ``info``'s contents are
    not validated (`validation.validate` does that).
    """
    data = bytes(torrent)
    if data[:1] != b"d":
        raise InvalidTorrent("", "not a dictionary")
    out: dict[bytes, tuple[int, int]] = {}
    i = 1
    while True:
        if i >= len(data):
            raise InvalidTorrent("", "invalid bencoding: the dictionary is not closed")
        if data[i : i + 1] == b"e":
            break
        if not data[i : i + 1].isdigit():
            raise InvalidTorrent("", f"invalid bencoding: a key must be a string (at {i})")
        start = i
        i = _skip(data, i)
        key = data[data.index(b":", start) + 1 : i]
        if key in out:
            raise InvalidTorrent("", f"invalid bencoding: key {key!r} twice")
        start = i
        i = _skip(data, i)
        out[key] = (start, i)
    if i + 1 != len(data):
        raise InvalidTorrent("", "invalid bencoding: data after the dictionary")
    return out


def _skip(data: bytes, i: int) -> int:
    """The offset just past the bencoded value starting at ``data[i]``. InvalidTorrent if it
    is malformed or cut short. Bounded: every step moves ``i`` forward."""
    depth = 0
    n = len(data)
    while i < n:
        c = data[i]
        if c == 0x69:  # i<digits>e
            end = data.find(b"e", i + 1)
            digits = data[i + 1 : end].removeprefix(b"-")
            if end < 0 or not digits.isdigit():
                break
            i = end + 1
        elif c in (0x6C, 0x64):  # l, d
            depth += 1
            i += 1
            continue
        elif c == 0x65:  # e
            if depth == 0:
                break
            depth -= 1
            i += 1
        elif 0x30 <= c <= 0x39:  # <length>:<bytes>
            colon = data.find(b":", i)
            if colon < 0 or not data[i:colon].isdigit():
                break
            i = colon + 1 + int(data[i:colon])
            if i > n:
                break
        else:
            break
        if depth == 0:
            return i
    raise InvalidTorrent("", f"invalid bencoding at offset {min(i, n)}")


def decode_torrent(torrent: bytes) -> dict[bytes, Any]:
    """The top-level dictionary of bencoded ``torrent``; InvalidTorrent if it is not one."""
    try:
        top = bencode.decode(torrent)
    except bencode.BencodeError as exc:
        raise InvalidTorrent("", str(exc)) from None
    if not isinstance(top, dict):
        raise InvalidTorrent("", "not a dictionary")
    return top


def key_path(*keys: bytes | int) -> str:
    """A key path as InvalidTorrent names it: ``['info']['name']``, ``['announce-list'][0]``."""
    return "".join(
        f"[{k}]" if isinstance(k, int) else f"[{k.decode('utf-8', 'backslashreplace')!r}]"
        for k in keys
    )
