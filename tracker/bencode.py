"""Bencoding (BEP 3) over bytes: keys and strings stay ``bytes``, never ``str``.

A thin wrapper over ``bencodepy`` (bencode.py), whose bytes-keeping API is the one that
does not turn valid UTF-8 (``pieces`` included) into ``str``.
"""

from __future__ import annotations

from typing import Any

import bencodepy

__all__ = ["BencodeError", "decode", "encode"]


class BencodeError(ValueError):
    """Input is not valid bencoding, or a value cannot be bencoded."""


def encode(value: Any) -> bytes:
    """Bencode ``value`` (int, bytes, str as UTF-8, list/tuple, dict with bytes or str keys).

    Dict keys are emitted in sorted raw-byte order, as BEP 3 requires.
    Raises BencodeError for anything else (floats, None, bools, ...).
    """
    try:
        return bencodepy.encode(_check(value))
    except BencodeError:
        raise
    except Exception as exc:  # bencodepy raises a mix of types
        raise BencodeError(f"cannot bencode: {exc}") from None


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


def _check(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, float):
        raise BencodeError(f"cannot bencode {type(value).__name__}")
    if isinstance(value, dict):
        return {k.encode() if isinstance(k, str) else k: _check(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_check(v) for v in value]
    return value
