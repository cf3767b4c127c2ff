"""ListObjects (v1) and ListObjectsV2 parameters -> a ``ListRequest``, or S3's error: pure.

Parameters as S3 reads them: ``prefix``, ``delimiter``, ``max-keys`` (0..2147483647; a page
holds at most 1000 entries whatever is asked, and the answer echoes the number asked),
``encoding-type`` (only ``url``), and for v1 ``marker``, for v2 (``list-type=2``)
``start-after``, ``continuation-token`` and ``fetch-owner``. Parameters of the other version
are ignored, as S3 ignores them.

A continuation token names the position where the previous page stopped (its last key or
common prefix), base64url-encoded behind a short tag so that a token we did not make is
refused. Tokens are not secret and bind nothing else: a client that edits one only moves
its own position in a listing it may read anyway.

Errors (S3's codes): ``max-keys`` not a number or out of range, ``encoding-type`` other than
``url``, an empty or foreign ``continuation-token``, ``list-type`` other than 2: 400
InvalidArgument naming the argument.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from seeder.s3api import errors as s3errors

__all__ = ["MAX_KEYS", "ListRequest", "decode_token", "encode_token", "parse_list"]

MAX_KEYS = 1000  # entries per page at most, as on S3
_INT_MAX = 2147483647
_TAG = b"s3t1\x00"


@dataclass(frozen=True, slots=True)
class ListRequest:
    """One ListObjects (``v2=False``) or ListObjectsV2 request's parameters, decoded."""

    v2: bool
    prefix: str = ""
    delimiter: str = ""
    max_keys: int = MAX_KEYS  # as asked (echoed in MaxKeys)
    url_encoding: bool = False
    start_after: str = ""  # v1 marker, v2 start-after, as given
    continuation_token: str | None = None  # v2, as given
    fetch_owner: bool = False

    @property
    def page_size(self) -> int:
        return min(self.max_keys, MAX_KEYS)

    @property
    def after(self) -> str:
        """Where this page starts: after the token's position (v2), else after the
        marker / start-after."""
        if self.continuation_token is not None:
            return decode_token(self.continuation_token)
        return self.start_after


def encode_token(after: str) -> str:
    """The continuation token of the position ``after``."""
    return base64.urlsafe_b64encode(_TAG + after.encode("utf-8")).decode("ascii")


def decode_token(token: str) -> str:
    """The position a token of ``encode_token`` names; S3Error InvalidArgument otherwise."""
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4))
        if not raw.startswith(_TAG):
            raise ValueError("foreign token")
        return raw[len(_TAG):].decode("utf-8")
    except (ValueError, UnicodeError, binascii.Error):
        raise s3errors.invalid_argument("The continuation token provided is incorrect",
                                        "continuation-token", token) from None


def parse_list(params: Sequence[tuple[str, str]]) -> ListRequest:
    """The listing a bucket GET asks for; ``params`` are the decoded query pairs (the first
    of a repeated name wins). Raises S3Error (InvalidArgument) for a bad value."""
    first: dict[str, str] = {}
    for name, value in params:
        first.setdefault(name, value)
    list_type = first.get("list-type")
    if list_type is not None and list_type != "2":
        raise s3errors.invalid_argument("Invalid List Type specified in Request",
                                        "list-type", list_type)
    v2 = list_type == "2"
    encoding = first.get("encoding-type")
    if encoding is not None and encoding != "url":
        raise s3errors.invalid_argument("Invalid Encoding Method specified in Request",
                                        "encoding-type", encoding)
    req = ListRequest(
        v2=v2,
        prefix=first.get("prefix", ""),
        delimiter=first.get("delimiter", ""),
        max_keys=_max_keys(first.get("max-keys")),
        url_encoding=encoding == "url",
        start_after=first.get("start-after" if v2 else "marker", ""),
        continuation_token=first.get("continuation-token") if v2 else None,
        fetch_owner=v2 and first.get("fetch-owner", "").lower() == "true",
    )
    if req.continuation_token is not None:
        decode_token(req.continuation_token)  # refuse a bad token before any work
    return req


def _max_keys(value: str | None) -> int:
    if value is None:
        return MAX_KEYS
    text = value.strip()
    digits = text[1:] if text[:1] == "-" else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 10 or \
            int(digits) > _INT_MAX:
        raise s3errors.invalid_argument(
            "Provided max-keys not an integer or within integer range", "max-keys", value)
    if text.startswith("-"):
        raise s3errors.invalid_argument(
            "Argument maxKeys must be an integer between 0 and 2147483647", "maxKeys", value)
    return int(digits)
