"""AWS Signature Version 4 verification for S3 requests (service ``s3``): pure, no I/O.

Two forms are accepted, as S3 accepts them:

- header: ``Authorization: AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request,
  SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=<64 hex>`` with ``x-amz-date``
  (or ``Date``) and ``x-amz-content-sha256`` (a hex SHA-256, ``UNSIGNED-PAYLOAD`` or a
  ``STREAMING-*`` marker; the body of a GET/HEAD is drained unread, so it is not checked);
- presigned query: ``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``,
  ``X-Amz-Expires`` (0..604800), ``X-Amz-SignedHeaders``, ``X-Amz-Signature``; the payload hash
  is ``UNSIGNED-PAYLOAD``. ``X-Amz-Security-Token`` is allowed and signed like any other
  parameter, but not validated (there is no STS here).

Canonical request, as S3 computes it (and botocore's ``S3SigV4Auth`` produces it):

- URI: the raw path as sent, NOT double-encoded. Each octet is re-expressed in the canonical
  percent-encoding: RFC 3986 unreserved characters literal, ``/`` literal, everything else
  ``%XX`` upper-case; an escape of an unreserved character is decoded (``%7E`` -> ``~``), an
  escaped ``/`` (``%2F``) stays escaped (it is part of a key, not a separator). botocore sends
  exactly this form, so it signs the path as sent. A client that signs its path verbatim when
  that is not canonical (``+``, ``!``, lower-case hex) is accepted by a second try with the raw
  path: it binds the same bytes the server acts on.
- query: every ``name=value`` pair (``torrent`` -> ``torrent=``), each side in the canonical
  percent-encoding (``/`` encoded too), sorted by name then value; ``X-Amz-Signature`` left
  out.
- headers: the SignedHeaders, lower-case, each ``name:value`` with runs of whitespace collapsed,
  repeated headers joined by ``,``.

Checks, in S3's order: form and syntax (AuthorizationHeaderMalformed /
AuthorizationQueryParametersError / InvalidRequest; ``host`` must be signed), ``x-amz-*``
headers present but not signed (AccessDenied; ``x-amz-cf-id`` excepted), unknown access key
(InvalidAccessKeyId), time (RequestTimeTooSkewed beyond 15 minutes for the header form;
AccessDenied "Request has expired" / "Request is not yet valid" for presigned), signature
(SignatureDoesNotMatch, constant-time comparison). SigV2 (``Authorization: AWS AK:sig`` or
``?AWSAccessKeyId=&Signature=``) and SigV4a get InvalidRequest
telling the client to use AWS4-HMAC-SHA256.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import unquote_to_bytes

from seeder.s3api import errors as s3errors
from seeder.s3api.errors import S3Error

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "MAX_EXPIRES",
    "UNSIGNED_PAYLOAD",
    "SignedRequest",
    "canonical_query",
    "canonical_uri",
    "percent_decode",
    "signing_key",
    "verify",
]

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_EXPIRES = 604800  # a week: S3's ceiling for X-Amz-Expires
MAX_SKEW = timedelta(seconds=s3errors.MAX_SKEW_SECONDS)

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# CloudFront adds this to requests it forwards to an origin, after the client signed them.
_MAY_BE_UNSIGNED = frozenset({"x-amz-cf-id"})
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_PCT_B = tuple(b"%%%02X" % b for b in range(256))
# An escape (to normalise: hex case, needless escapes) or a byte that must be escaped.
_NOT_CANONICAL_PATH = re.compile(rb"%([0-9A-Fa-f]{2})|[^A-Za-z0-9._~/-]")
_NOT_CANONICAL_QUERY = re.compile(rb"%([0-9A-Fa-f]{2})|[^A-Za-z0-9._~-]")
_AMZ_DATE = re.compile(r"(\d{8})T\d{6}Z\Z")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}\Z")
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+\Z")
_STREAMING = frozenset({
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
    "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER"})
_USE_SIGV4 = ("The authorization mechanism you have provided is not supported. "
              "Please use AWS4-HMAC-SHA256.")
_CRED_FORMAT = 'expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".'
_QUERY_AUTH = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-SignedHeaders")
_QUERY_REQUIRED = ("Query-string authentication version 4 requires the X-Amz-Algorithm, "
                   "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
                   "and X-Amz-Expires parameters.")

Headers = Mapping[str, str] | tuple[tuple[str, str], ...]
Secrets = Callable[[str], str | None] | Mapping[str, str]


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What SigV4 covers. ``raw_path``/``raw_query`` exactly as on the wire (the target split
    at the first ``?``); ``headers`` lower-case names with values (repeats allowed in the
    tuple form), or a mapping."""

    method: str
    raw_path: bytes
    raw_query: bytes
    headers: Headers

    @classmethod
    def from_http(cls, method: bytes, target: bytes,
                  headers: Iterable[tuple[bytes, bytes]]) -> SignedRequest:
        """From the HTTP shell's request. Header bytes are decoded UTF-8 with surrogateescape,
        so the canonical request re-encodes to exactly the bytes received."""
        path, _, query = target.partition(b"?")
        return cls(method.decode("ascii", "replace"), path, query,
                   tuple((k.decode("latin-1").lower(), v.decode("utf-8", "surrogateescape"))
                         for k, v in headers))


def _fix_octet(m: re.Match[bytes]) -> bytes:
    hx = m.group(1)
    b = int(hx, 16) if hx else m.group()[0]
    # A decoded escape is literal only if unreserved; "%2F" stays an escaped slash.
    return _PCT_B[b] if b not in _UNRESERVED else bytes((b,))


def _canonical_octets(raw: bytes, pattern: re.Pattern[bytes]) -> str:
    return pattern.sub(_fix_octet, raw).decode("ascii")


def canonical_uri(raw_path: bytes) -> str:
    """The S3 canonical URI of a raw request path (see the module docstring)."""
    return _canonical_octets(raw_path, _NOT_CANONICAL_PATH) or "/"


def _query_pairs(raw_query: bytes) -> list[tuple[bytes, bytes]]:
    pairs = []
    for piece in raw_query.split(b"&"):
        if piece:
            name, _, value = piece.partition(b"=")
            pairs.append((name, value))
    return pairs


def canonical_query(raw_query: bytes, *, exclude: bytes | None = None) -> str:
    """The canonical query string of a raw query; ``exclude`` names a raw parameter name to
    leave out (the presigned ``X-Amz-Signature``)."""
    items = sorted((_canonical_octets(k, _NOT_CANONICAL_QUERY),
                    _canonical_octets(v, _NOT_CANONICAL_QUERY))
                   for k, v in _query_pairs(raw_query) if k != exclude)
    return "&".join(f"{k}={v}" for k, v in items)


@functools.lru_cache(maxsize=512)
def signing_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    """kSigning = HMAC chain over date, region, service, "aws4_request" (cached: it changes
    once a day per key, and every request needs it)."""
    k = hmac.digest(b"AWS4" + secret.encode("utf-8"), date.encode(), "sha256")
    k = hmac.digest(k, region.encode("utf-8"), "sha256")
    k = hmac.digest(k, service.encode("utf-8"), "sha256")
    return hmac.digest(k, b"aws4_request", "sha256")


@dataclass(frozen=True, slots=True)
class _Auth:
    access_key: str
    date: str  # credential scope date YYYYMMDD
    region: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str  # the timestamp in the string to sign (ISO 8601 basic)
    when: datetime
    payload_hash: str
    presigned: bool
    expires: int = 0
    raw_query_signature_name: bytes | None = None


def verify(request: SignedRequest, secrets: Secrets, now: datetime | float,
           region: str | None = None) -> str | None:
    """Verify the SigV4 signature of ``request``.

    ``secrets`` maps an access key id to its secret (a mapping or a function returning None
    for an unknown key). ``now`` is the server time (aware datetime, naive = UTC, or unix
    seconds). ``region``: the credential scope region to require, or None to accept any (the
    service must always be ``s3``).

    Returns the verified access key id, or None for an anonymous request (no Authorization
    header and no authentication query parameters at all). Raises S3Error for every failure;
    never anything else, whatever the input.
    """
    now_dt = _as_datetime(now)
    headers = _header_lists(request.headers)
    params = _query_pairs(request.raw_query)
    by_name: dict[str, list[tuple[bytes, bytes]]] = {}
    for k, v in params:
        by_name.setdefault(k.decode("latin-1").lower(), []).append((k, v))

    authz = headers.get("authorization")
    query_auth = any(n.lower() in by_name for n in _QUERY_AUTH)
    sigv2_query = "awsaccesskeyid" in by_name and "signature" in by_name
    if authz is not None and (query_auth or sigv2_query):
        raise s3errors.invalid_argument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified",
            "Authorization")
    if authz is not None:
        auth = _parse_header_auth(authz, headers, region)
    elif query_auth:
        auth = _parse_query_auth(by_name, headers, region)
    elif sigv2_query:
        raise s3errors.invalid_request(_USE_SIGV4)
    else:
        return None

    _check_unsigned_headers(headers, auth.signed_headers)
    secret = secrets.get(auth.access_key) if isinstance(secrets, Mapping) else \
        secrets(auth.access_key)
    if secret is None:
        raise s3errors.invalid_access_key_id(auth.access_key)
    _check_time(auth, now_dt)

    key = signing_key(secret, auth.date, auth.region)
    scope = f"{auth.date}/{auth.region}/{SERVICE}/aws4_request"
    canon_headers = "".join(
        f"{name}:{','.join(' '.join(v.split()) for v in headers.get(name, ()))}\n"
        for name in auth.signed_headers)
    query = canonical_query(request.raw_query, exclude=auth.raw_query_signature_name)
    tail = f"{query}\n{canon_headers}\n{';'.join(auth.signed_headers)}\n{auth.payload_hash}"
    uris = [canonical_uri(request.raw_path)]
    raw_uri = request.raw_path.decode("utf-8", "surrogateescape") or "/"
    if raw_uri != uris[0]:
        uris.append(raw_uri)
    provided = wire_bytes(auth.signature)
    first: tuple[str, str] | None = None
    for uri in uris:
        canonical = f"{request.method}\n{uri}\n{tail}"
        digest = hashlib.sha256(wire_bytes(canonical)).hexdigest()
        string_to_sign = f"{ALGORITHM}\n{auth.amz_date}\n{scope}\n{digest}"
        expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected.encode(), provided):
            return auth.access_key
        if first is None:
            first = (string_to_sign, canonical)
    assert first is not None
    raise s3errors.signature_does_not_match(
        auth.access_key, first[0], printable(auth.signature), printable(first[1]))


def wire_bytes(s: str) -> bytes:
    """The bytes a ``from_http`` string came from; any other lone surrogate becomes "?"."""
    try:
        return s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return s.encode("utf-8", "replace")


def printable(s: str) -> str:
    """``s`` as text safe to echo in an error message (undecodable bytes become U+FFFD)."""
    return wire_bytes(s).decode("utf-8", "replace")


def _as_datetime(now: datetime | float) -> datetime:
    if isinstance(now, datetime):
        return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    return datetime.fromtimestamp(now, UTC)


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _header_lists(headers: Headers) -> dict[str, list[str]]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, list[str]] = {}
    for name, value in items:
        out.setdefault(name.lower(), []).append(value)
    return out


def _parse_amz_date(value: str) -> datetime | None:
    if not _AMZ_DATE.match(value):
        return None
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _parse_credential(value: str, region: str | None,
                      fail: Callable[[str], S3Error]) -> tuple[str, str, str]:
    parts = value.split("/")
    if len(parts) != 5 or not parts[0]:
        raise fail(f"the Credential is mal-formed; {_CRED_FORMAT}")
    access_key, date, scope_region, service, terminator = parts
    if not (len(date) == 8 and date.isascii() and date.isdigit()):
        raise fail(f"the credential date {date!r} is not valid; {_CRED_FORMAT}")
    if not scope_region or not scope_region.isascii() or not scope_region.isprintable():
        raise fail(f"the region is not valid; {_CRED_FORMAT}")
    if region is not None and scope_region != region:
        raise fail(f"the region '{scope_region}' is wrong; expecting '{region}'")
    if service != SERVICE:
        raise fail(f'incorrect service "{printable(service)}". This endpoint belongs to "s3".')
    if terminator != "aws4_request":
        raise fail(f'incorrect terminal "{printable(terminator)}". '
                   'This endpoint uses "aws4_request".')
    return access_key, date, scope_region


def _parse_signed_headers(value: str, fail: Callable[[str], S3Error]) -> tuple[str, ...]:
    names = tuple(value.split(";"))
    if not value or not all(_HEADER_NAME.match(n) for n in names):
        raise fail("SignedHeaders must be a ';'-separated list of lower-case header names")
    if "host" not in names:
        raise fail("SignedHeaders must include 'host'")
    return names


def _parse_header_auth(values: list[str], headers: dict[str, list[str]],
                       region: str | None) -> _Auth:
    if len(values) != 1:
        raise s3errors.authorization_header_malformed("more than one Authorization header")
    value = values[0].strip()
    scheme, _, rest = value.partition(" ")
    if scheme != ALGORITHM:
        if scheme in ("AWS", "AWS4-ECDSA-P256-SHA256"):
            raise s3errors.invalid_request(_USE_SIGV4)
        # Never echo the value: it may be someone's Basic/Bearer credential.
        raise s3errors.invalid_argument("Unsupported Authorization Type", "Authorization")

    def fail(msg: str) -> S3Error:
        return s3errors.authorization_header_malformed(msg, region)

    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, eq, val = item.strip().partition("=")
        if not eq or name in fields:
            raise fail("expecting Credential=, SignedHeaders= and Signature= once each")
        fields[name] = val.strip()
    if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        raise fail("expecting Credential=, SignedHeaders= and Signature= once each")
    access_key, date, scope_region = _parse_credential(fields["Credential"], region, fail)
    signed = _parse_signed_headers(fields["SignedHeaders"], fail)

    amz = headers.get("x-amz-date")
    when: datetime | None
    if amz:
        amz_date = amz[0].strip()
        when = _parse_amz_date(amz_date)
    else:
        when = _parse_http_date(headers.get("date"))
        amz_date = when.strftime("%Y%m%dT%H%M%SZ") if when else ""
    if when is None:
        raise s3errors.access_denied(
            "AWS authentication requires a valid Date or x-amz-date header")
    if amz_date[:8] != date:
        raise fail("Invalid credential date. Date is not the same as X-Amz-Date.")

    sha = headers.get("x-amz-content-sha256")
    if not sha:
        raise s3errors.invalid_request(
            "Missing required header for this request: x-amz-content-sha256")
    payload = sha[0].strip()
    if not (payload == UNSIGNED_PAYLOAD or payload in _STREAMING
            or _SHA256_HEX.match(payload)):
        raise s3errors.invalid_argument(
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, or a valid sha256 value.",
            "x-amz-content-sha256", printable(payload))
    return _Auth(access_key, date, scope_region, signed, fields["Signature"], amz_date, when,
                 payload, presigned=False)


def _parse_http_date(values: list[str] | None) -> datetime | None:
    if not values:
        return None
    try:
        dt = parsedate_to_datetime(values[0])
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _parse_query_auth(by_name: dict[str, list[tuple[bytes, bytes]]],
                      headers: dict[str, list[str]], region: str | None) -> _Auth:
    fail = s3errors.authorization_query_parameters_error

    def one(name: str) -> tuple[bytes, str]:
        found = by_name.get(name.lower())
        if not found:
            raise fail(_QUERY_REQUIRED)
        if len(found) > 1:
            raise fail(f"{name} must appear only once")
        raw_name, raw_value = found[0]
        try:
            return raw_name, _unquote(raw_value)
        except ValueError:
            raise fail(f"{name} is not validly percent-encoded") from None

    algorithm = one("X-Amz-Algorithm")[1]
    if algorithm != ALGORITHM:
        raise fail('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    credential = one("X-Amz-Credential")[1]
    signature_name, signature = one("X-Amz-Signature")
    amz_date = one("X-Amz-Date")[1]
    expires_s = one("X-Amz-Expires")[1]
    signed_s = one("X-Amz-SignedHeaders")[1]

    access_key, date, scope_region = _parse_credential(
        credential, region, lambda m: fail(f"Error parsing the X-Amz-Credential parameter; {m}"))
    when = _parse_amz_date(amz_date)
    if when is None:
        raise fail("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    if amz_date[:8] != date:
        raise fail("Error parsing the X-Amz-Credential parameter; the date is not the same as "
                   "X-Amz-Date.")
    if not (expires_s.isascii() and expires_s.isdigit()) or len(expires_s) > 12:
        raise fail("X-Amz-Expires should be a number")
    expires = int(expires_s)
    if expires > MAX_EXPIRES:
        raise fail("X-Amz-Expires must be less than a week (in seconds) that is 604800 seconds")
    signed = _parse_signed_headers(signed_s, lambda m: fail(f"X-Amz-SignedHeaders: {m}"))

    # botocore puts an x-amz-content-sha256 header's value in the canonical request if one
    # was sent; otherwise (the normal presigned case) the payload is UNSIGNED-PAYLOAD.
    payload = UNSIGNED_PAYLOAD
    sha = headers.get("x-amz-content-sha256")
    if sha:
        payload = sha[0].strip()
    elif "x-amz-content-sha256" in by_name:
        try:
            payload = _unquote(by_name["x-amz-content-sha256"][0][1])
        except ValueError:
            raise fail("X-Amz-Content-Sha256 is not validly percent-encoded") from None
    return _Auth(access_key, date, scope_region, signed, signature, amz_date, when, payload,
                 presigned=True, expires=expires, raw_query_signature_name=signature_name)


def percent_decode(raw: bytes) -> bytes:
    """Strict single percent-decoding (``+`` stays a plus); ValueError on a broken escape."""
    if _BAD_ESCAPE.search(raw):
        raise ValueError("bad percent escape")
    return unquote_to_bytes(raw) if b"%" in raw else raw


def _unquote(raw: bytes) -> str:
    """``percent_decode`` to UTF-8 text; ValueError on a bad escape or bad UTF-8."""
    return percent_decode(raw).decode("utf-8")


def _check_unsigned_headers(headers: dict[str, list[str]], signed: tuple[str, ...]) -> None:
    missing = sorted(n for n in headers if n.startswith("x-amz-") and n not in signed
                     and n not in _MAY_BE_UNSIGNED)
    if missing:
        raise s3errors.access_denied(
            "There were headers present in the request which were not signed",
            (("HeadersNotSigned", ", ".join(missing)),))


def _check_time(auth: _Auth, now: datetime) -> None:
    if auth.presigned:
        if auth.when - now > MAX_SKEW:
            raise s3errors.access_denied("Request is not yet valid", (
                ("X-Amz-Date", auth.amz_date), ("ServerTime", _iso(now))))
        expiry = auth.when + timedelta(seconds=auth.expires)
        if now > expiry:
            raise s3errors.access_denied("Request has expired", (
                ("X-Amz-Expires", str(auth.expires)), ("Expires", _iso(expiry)),
                ("ServerTime", _iso(now))))
    elif abs(now - auth.when) > MAX_SKEW:
        raise s3errors.request_time_too_skewed(auth.amz_date, _iso(now))
