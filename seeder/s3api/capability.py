"""Web seed capabilities of private buckets: an unguessable token in the web seed URL. Pure.

A BitTorrent client sends no credentials, so a non-public bucket's torrent can only carry a
working web seed if the URL itself grants access. The token is an HMAC-SHA256, under a key
kept in the state directory (``state/webseed.key``, 0600; every node that shares the key
accepts the others' tokens), over the bucket, the key and the object version the torrent
was hashed from (its ETag and version id). So:

- a token opens that one object version and nothing else: another key, another bucket, a
  changed token or a changed server key gets 403 AccessDenied;
- an overwrite or a delete moves the catalog to another version (or none), and the old
  tokens stop working with it;
- the token sits in ``url-list``, outside ``info``: the info-hash does not depend on it.

The URL is this server's ``/{bucket}/{key}`` (``webseed_url`` in proxy form, with its
``versionId`` and ``x-amz-request-payer`` parameters) plus ``webseed-token=``.
"""

from __future__ import annotations

import base64
import hmac
from urllib.parse import quote

__all__ = ["PARAM", "TOKEN_CHARS", "token", "valid", "with_token"]

PARAM = "webseed-token"
TOKEN_CHARS = 32  # 192 bits of the HMAC, base64url


def token(secret: bytes, bucket: str, key: str, etag: str, version: str | None) -> str:
    """The capability of one object version."""
    msg = "\x00".join(("webseed/1", bucket, key, etag, version or "")).encode(
        "utf-8", "surrogateescape")
    digest = hmac.digest(secret, msg, "sha256")
    return base64.urlsafe_b64encode(digest).decode("ascii")[:TOKEN_CHARS]


def valid(secret: bytes, given: str, bucket: str, key: str, etag: str,
          version: str | None) -> bool:
    """Does ``given`` open this object version? (constant-time comparison)"""
    expected = token(secret, bucket, key, etag, version)
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def with_token(url: str, value: str) -> str:
    """``url`` with the capability parameter appended."""
    return f"{url}{'&' if '?' in url else '?'}{PARAM}={quote(value, safe='')}"

