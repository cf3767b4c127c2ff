"""AWS Signature Version 2 verification for S3 requests: pure, no I/O.

S3 still accepts SigV2 in two forms, and botocore still produces both (``generate_presigned_url``
signs with SigV2 by default against a custom endpoint; ``signature_version='s3'`` always):

- header: ``Authorization: AWS <AccessKeyId>:<Signature>`` with a ``Date`` or ``x-amz-date``
  header within 15 minutes of the server's clock;
- query: ``AWSAccessKeyId``, ``Expires`` (unix seconds) and ``Signature`` parameters.

``Signature`` is base64(HMAC-SHA1(secret, StringToSign)), where StringToSign is::

    VERB \\n Content-MD5 \\n Content-Type \\n Date-or-Expires \\n
    CanonicalizedAmzHeaders   (one "name:value\\n" per x-amz-* header, sorted, lower-case)
    CanonicalizedResource     (/bucket/path as sent, then ?sub-resources sorted by name)

The Date line is empty when an ``x-amz-date`` header is present (S3's rule); in the query form
it is the ``Expires`` value, and ``x-amz-*`` query parameters count as amz headers (botocore
moves them there when presigning). The path is the raw path as sent, prefixed with
``/bucket`` for virtual-hosted requests; sub-resources are S3's list (``torrent``,
``versionId``, ``acl``, ``response-*`` ...), their values percent-decoded, as botocore's
``HmacV1Auth.canonical_resource`` builds them; a bucket alone is ``/bucket/``.

Checks, in order: form (InvalidArgument for a malformed header; AccessDenied for a query
missing a parameter or a non-numeric ``Expires``, as S3 answers), unknown access key
(InvalidAccessKeyId), time (header: a missing date is AccessDenied, skew beyond 15 minutes
RequestTimeTooSkewed; query: AccessDenied "Request has expired"), then the signature
(SignatureDoesNotMatch with the StringToSign we computed, constant-time comparison).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from seeder.s3api import errors as s3errors
from seeder.s3api.sigv4 import Secrets, SignedRequest, percent_decode, printable, wire_bytes

__all__ = ["SUB_RESOURCES", "applies", "canonical_resource", "string_to_sign", "verify"]

# The query parameters that are part of the canonical resource (botocore's QSAOfInterest,
# S3's "sub-resources" and response overrides).
SUB_RESOURCES = frozenset({
    "accelerate", "acl", "analytics", "cors", "defaultObjectAcl", "delete",
    "intelligent-tiering", "inventory", "lifecycle", "location", "logging", "metrics",
    "notification", "object-lock", "partNumber", "policy", "replication", "requestPayment",
    "response-cache-control", "response-content-disposition", "response-content-encoding",
    "response-content-language", "response-content-type", "response-expires", "restore",
    "select", "select-type", "storageClass", "tagging", "torrent", "uploadId", "uploads",
    "versionId", "versioning", "versions", "website",
})
MAX_SKEW = timedelta(seconds=s3errors.MAX_SKEW_SECONDS)
_QUERY_AUTH = frozenset({"AWSAccessKeyId", "Signature", "Expires"})
_QUERY_REQUIRED = ("Query-string authentication requires the Signature, Expires and "
                   "AWSAccessKeyId parameters")
_HEADER_FORM = "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature"


def applies(request: SignedRequest) -> bool:
    """Does ``request`` carry SigV2 (and only SigV2) authentication?

    True for an ``Authorization: AWS ...`` header without query authentication, or for
    ``AWSAccessKeyId``/``Signature`` query parameters without an Authorization header.
    Anything else (SigV4, anonymous, both mechanisms at once) is ``sigv4.verify``'s to
    answer."""
    authz = [v for k, v in _items(request) if k == "authorization"]
    names = {n.decode("latin-1") for n, _ in _pairs(request.raw_query)}
    v2_query = "AWSAccessKeyId" in names or "Signature" in names
    v4_query = any(n.lower() in ("x-amz-algorithm", "x-amz-signature") for n in names)
    if authz:
        return (len(authz) == 1 and authz[0].strip().startswith("AWS ")
                and not v2_query and not v4_query)
    return v2_query and not v4_query


def canonical_resource(raw_path: bytes, raw_query: bytes, virtual_bucket: str | None) -> str:
    """``/bucket/key?sub&resources`` as SigV2 signs it (see the module docstring)."""
    path = raw_path.decode("utf-8", "surrogateescape") or "/"
    if virtual_bucket is not None:
        path = f"/{virtual_bucket}{path}"
    if path.count("/") == 1 and path != "/":
        path += "/"  # a bucket alone is signed as "/bucket/" (S3's rule, botocore's authPath)
    subs: list[tuple[str, str | None]] = []
    for name_raw, value_raw in _pairs(raw_query):
        name = name_raw.decode("latin-1")
        if name in SUB_RESOURCES:
            subs.append((name, None if value_raw is None else _decode(value_raw)))
    if not subs:
        return path
    subs.sort(key=lambda s: s[0])
    return path + "?" + "&".join(n if v is None else f"{n}={v}" for n, v in subs)


def string_to_sign(method: str, headers: Mapping[str, list[str]], date_line: str,
                   amz: Mapping[str, list[str]], resource: str) -> str:
    """The SigV2 StringToSign. ``headers``/``amz``: lower-case names to their values."""
    def one(name: str) -> str:
        values = headers.get(name)
        return values[0].strip() if values else ""

    lines = [method.upper(), one("content-md5"), one("content-type"), date_line]
    lines += [f"{name}:{','.join(' '.join(v.split()) for v in amz[name])}"
              for name in sorted(amz)]
    return "\n".join(lines) + "\n" + resource


def verify(request: SignedRequest, secrets: Secrets, now: datetime | float,
           virtual_bucket: str | None = None) -> str:
    """Verify the SigV2 signature of ``request`` (for which ``applies`` is true).

    ``virtual_bucket``: the bucket a virtual-hosted request named in its Host, else None.
    Returns the verified access key id; raises S3Error for every failure, never anything
    else, whatever the input."""
    now_dt = _as_datetime(now)
    headers: dict[str, list[str]] = {}
    for name, value in _items(request):
        headers.setdefault(name, []).append(value)
    authz = headers.get("authorization")
    amz = {k: v for k, v in headers.items() if k.startswith("x-amz-")}
    if authz:
        access_key, signature = _parse_header(authz[0])
        secret = _secret(secrets, access_key)
        date_line = _check_header_time(headers, now_dt)
    else:
        access_key, signature, expires = _parse_query(request.raw_query)
        secret = _secret(secrets, access_key)
        _check_expires(expires, now_dt)
        date_line = str(expires)
        for name_raw, value_raw in _pairs(request.raw_query):
            name = name_raw.decode("latin-1").lower()
            if name.startswith("x-amz-") and value_raw is not None:
                amz.setdefault(name, []).append(_decode(value_raw))
            elif name in ("content-type", "content-md5") and name not in headers:
                headers[name] = [_decode(value_raw or b"")]
    resource = canonical_resource(request.raw_path, request.raw_query, virtual_bucket)
    sts = string_to_sign(request.method, headers, date_line, amz, resource)
    sts_bytes = wire_bytes(sts)
    expected = base64.b64encode(
        hmac.digest(secret.encode("utf-8"), sts_bytes, hashlib.sha1)).decode("ascii")
    if hmac.compare_digest(expected.encode(), wire_bytes(signature)):
        return access_key
    raise s3errors.signature_does_not_match_v2(
        access_key, printable(sts), printable(signature), sts_bytes.hex(" "))


# -- parsing ----------------------------------------------------------------------------------


def _parse_header(value: str) -> tuple[str, str]:
    scheme, _, credential = value.strip().partition(" ")
    access_key, colon, signature = credential.strip().rpartition(":")
    if scheme != "AWS" or not colon or not access_key or not signature or " " in access_key:
        raise s3errors.invalid_argument(_HEADER_FORM, "Authorization", printable(value))
    return access_key, signature


def _parse_query(raw_query: bytes) -> tuple[str, str, int]:
    found: dict[str, list[bytes]] = {}
    for name_raw, value_raw in _pairs(raw_query):
        name = name_raw.decode("latin-1")
        if name in _QUERY_AUTH:
            found.setdefault(name, []).append(value_raw or b"")
    if set(found) != _QUERY_AUTH:
        raise s3errors.access_denied(_QUERY_REQUIRED)
    for name, values in found.items():
        if len(values) > 1:
            raise s3errors.invalid_argument(f"{name} may be given only once", name)
    try:
        access_key = _decode(found["AWSAccessKeyId"][0], strict=True)
        signature = _decode(found["Signature"][0], strict=True)
        expires_s = _decode(found["Expires"][0], strict=True)
    except ValueError:
        raise s3errors.access_denied(_QUERY_REQUIRED) from None
    if not (expires_s.isascii() and expires_s.isdigit()) or len(expires_s) > 12:
        raise s3errors.access_denied(
            f"Invalid date (should be seconds since epoch): {printable(expires_s)}")
    if not access_key or not signature:
        raise s3errors.access_denied(_QUERY_REQUIRED)
    return access_key, signature, int(expires_s)


def _secret(secrets: Secrets, access_key: str) -> str:
    secret = secrets.get(access_key) if isinstance(secrets, Mapping) else secrets(access_key)
    if secret is None:
        raise s3errors.invalid_access_key_id(printable(access_key))
    return secret


def _check_header_time(headers: Mapping[str, list[str]], now: datetime) -> str:
    """The Date line of the StringToSign (empty with x-amz-date); raises on a bad time."""
    amz = headers.get("x-amz-date")
    raw = (amz or headers.get("date") or [""])[0].strip()
    when = _parse_date(raw)
    if when is None:
        raise s3errors.access_denied(
            "AWS authentication requires a valid Date or x-amz-date header")
    if abs(now - when) > MAX_SKEW:
        raise s3errors.request_time_too_skewed(raw, _iso(now))
    return "" if amz else raw


def _check_expires(expires: int, now: datetime) -> None:
    if now.timestamp() > expires:
        expiry = datetime.fromtimestamp(min(expires, 253402300799), UTC)
        raise s3errors.access_denied("Request has expired", (
            ("Expires", _iso(expiry)), ("ServerTime", _iso(now))))


def _parse_date(value: str) -> datetime | None:
    """RFC 1123 (what SigV2 clients send), or ISO 8601 basic in x-amz-date."""
    if not value:
        return None
    try:
        dt = datetime.strptime(value, "%Y%m%dT%H%M%SZ")
    except ValueError:
        try:
            dt = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if dt is None:
            return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


# -- small helpers ------------------------------------------------------------------------------


def _items(request: SignedRequest) -> list[tuple[str, str]]:
    items = request.headers.items() if isinstance(request.headers, Mapping) else request.headers
    return [(k.lower(), v) for k, v in items]


def _pairs(raw_query: bytes) -> list[tuple[bytes, bytes | None]]:
    """(name, value) of each query piece; value None when the piece has no ``=``."""
    out: list[tuple[bytes, bytes | None]] = []
    for piece in raw_query.split(b"&"):
        if piece:
            name, eq, value = piece.partition(b"=")
            out.append((name, value if eq else None))
    return out


def _decode(raw: bytes, *, strict: bool = False) -> str:
    """Percent-decoded UTF-8 text; ``strict``: ValueError on a bad escape or bad UTF-8,
    else such bytes are kept as they came."""
    try:
        return percent_decode(raw).decode("utf-8")
    except ValueError:
        if strict:
            raise
        return raw.decode("utf-8", "surrogateescape")


def _as_datetime(now: datetime | float) -> datetime:
    if isinstance(now, datetime):
        return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    return datetime.fromtimestamp(now, UTC)


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
