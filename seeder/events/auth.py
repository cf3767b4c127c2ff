"""Who may POST events: whoever shows the configured ``[events] token``.

Three ways to show it, one per sender's habits: ``Authorization: Bearer <token>`` (MinIO's
``auth_token``), HTTP Basic whose password is the token (the user name is not checked: an
SNS HTTPS subscription carries credentials as ``https://user:token@host/...``), or the
query parameter ``?token=<token>`` (a Ceph push endpoint URL). Every candidate is compared
in constant time (``hmac.compare_digest``), and all of them are, so the answer's timing
tells nothing about which one came close.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

__all__ = ["AuthResult", "check_auth"]


@dataclass(frozen=True, slots=True)
class AuthResult:
    """``status`` 0: allowed; 401: no credentials shown; 403: credentials, none right."""

    status: int
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 0


_MAX_QUERY_FIELDS = 64  # a query of thousands of fields is not a sender's
_OK = AuthResult(0)
_MISSING = AuthResult(401, "no token: send Authorization: Bearer <token>, Basic, or ?token=")
_WRONG = AuthResult(403, "wrong token")


def check_auth(token: str, authorization: bytes | None, query: bytes) -> AuthResult:
    """Check the request's ``Authorization`` header value and raw query string (the part
    after ``?``) against ``token`` (non-empty). Pure."""
    want = token.encode()
    candidates = _candidates(authorization, query)
    if not candidates:
        return _MISSING
    matched = False
    for given in candidates:
        matched |= hmac.compare_digest(given, want)
    return _OK if matched else _WRONG


def _candidates(authorization: bytes | None, query: bytes) -> list[bytes]:
    found: list[bytes] = []
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(b" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == b"bearer":
            found.append(value)
        elif scheme == b"basic":
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                decoded = b""
            found.append(decoded.partition(b":")[2])
        else:
            found.append(b"")  # credentials of another kind: shown, and wrong
    if query:
        for pair in query.split(b"&")[:_MAX_QUERY_FIELDS]:
            name, _, value = pair.partition(b"=")
            if unquote_to_bytes(name.replace(b"+", b" ")) == b"token":
                found.append(unquote_to_bytes(value.replace(b"+", b" ")))
    return found
