"""Bencoding (BEP 3) over bytes: keys and strings stay ``bytes``, never ``str``.

Decoding is a thin wrapper over ``bencodepy`` (bencode.py), whose bytes-keeping API is the
one that does not turn valid UTF-8 (``pieces`` included) into ``str``. Encoding is our own
(one recursive pass, parts joined once): bencodepy's, with the type check before it, was
most of the cost of making a torrent for a small object.
"""

from __future__ import annotations

from typing import Any

import bencodepy

__all__ = ["BencodeError", "decode", "encode"]


class BencodeError(ValueError):
    """Input is not valid bencoding, or a value cannot be bencoded."""


def encode(value: Any) -> bytes:
    """Bencode ``value`` (int, bytes, str as UTF-8, list/tuple, dict with bytes or str keys).

    Dict keys are emitted in sorted raw-byte order, as BEP 3 requires (two keys equal as
    bytes are an error). Raises BencodeError for anything else (floats, None, bools, ...).
    """
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: Any, out: list[bytes]) -> None:
    # bool is an int subclass: test the exact types first.
    t = type(value)
    if t is bytes:
        out.append(b"%d:" % len(value))
        out.append(value)
    elif t is int:
        out.append(b"i%de" % value)
    elif t is dict:
        items = []
        for k, v in value.items():
            if type(k) is str:
                k = k.encode()
            elif type(k) is not bytes:
                raise BencodeError(f"cannot bencode a {type(k).__name__} dict key")
            items.append((k, v))
        items.sort(key=lambda kv: kv[0])
        out.append(b"d")
        prev = None
        for k, v in items:
            if k == prev:
                raise BencodeError(f"cannot bencode: dict key {k!r} twice")
            prev = k
            out.append(b"%d:" % len(k))
            out.append(k)
            _encode(v, out)
        out.append(b"e")
    elif t is list or t is tuple:
        out.append(b"l")
        for v in value:
            _encode(v, out)
        out.append(b"e")
    elif t is str:
        data = value.encode()
        out.append(b"%d:" % len(data))
        out.append(data)
    elif isinstance(value, bytearray | memoryview):
        _encode(bytes(value), out)
    elif isinstance(value, int) and not isinstance(value, bool):
        _encode(int(value), out)
    elif isinstance(value, dict | list | tuple | str | bytes):
        _encode(_plain(value), out)
    else:
        raise BencodeError(f"cannot bencode {type(value).__name__}")


def _plain(value: Any) -> Any:
    """A subclass of dict/list/tuple/str/bytes as its base type."""
    for base in (dict, list, tuple, str, bytes):
        if isinstance(value, base):
            return base(value)
    return value


def decode(data: bytes) -> Any:
    """Decode one complete bencoded value; trailing bytes are an error.

    Returns ints, bytes, lists and dicts with bytes keys. Raises BencodeError on any
    malformed input.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BencodeError("bencoded data must be bytes")
    try:
        return bencodepy.decode(bytes(data))
    except Exception as exc:
        raise BencodeError(f"invalid bencoding: {exc}") from None
