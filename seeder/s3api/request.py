"""An HTTP request to the S3 API -> the operation it asks for, or an S3Error: pure.

Two operations exist: ``GetTorrent`` (``GET|HEAD /{bucket}/{key}?torrent[&versionId=]``,
Amazon's GetObjectTorrent) and ``GetObject`` (the same without ``?torrent``: the BEP 19 web
seed and plain downloads). Each carries the ``SignedRequest`` that ``sigv4.verify`` needs, so
the handler does ``op = parse(...)``, ``sigv4.verify(op.signed, ...)``, then serves ``op``.

Addressing:
- path style ``/{bucket}/{key}``;
- virtual-hosted style, ``Host: {bucket}.{base_domain}`` where ``base_domain`` is the host of
  ``server.public_url``. Ports are ignored on both sides (libtorrent sends Host without the
  port), as is a trailing dot. A Host that is neither (an IP address, another name) means
  path style. CNAME-style hosts (the whole Host is the bucket) are not supported.

Decisions (S3's behaviour where it has one):
- Methods other than GET and HEAD: 405 MethodNotAllowed with ``Allow: GET, HEAD``.
- ``/`` is ListBuckets (``ListService``); ``/{bucket}`` and ``/{bucket}/`` are ListObjects
  (v1, or v2 with ``list-type``), HeadBucket (HEAD) or GetBucketLocation (``?location``), all
  a ``BucketRead`` carrying the decoded query for ``listing.parse_list``; other bucket
  subresources (``?acl``, ``?versions``, ``?uploads`` ...) are 501 NotImplemented.
- Known S3 subresources and operations this server does not implement (``?acl``,
  ``?tagging``, ``?uploads``, ``?list-type``, ``?partNumber``, ...): 501 NotImplemented, so a
  client gets an honest "not here" instead of an object body. Unknown parameters are ignored,
  as S3 ignores them (cache busters, ``x-id=GetObject`` that newer botocore adds,
  ``response-*`` overrides); they are still covered by a SigV4 signature.
- Bucket names: path style accepts the legacy S3 rules (3-255 of ``A-Za-z0-9._-``, starting
  with a letter or digit), so an old real bucket name configured as is keeps working;
  virtual-hosted names must be DNS-compliant (3-63 of ``a-z0-9.-``). Anything else is 400
  InvalidBucketName; a well-formed but unconfigured name is the handler's 404 NoSuchBucket.
- Keys: percent-decoded once (``+`` is a literal plus) to UTF-8 ``str``. A broken ``%``
  escape is 400 InvalidURI; invalid UTF-8 or a NUL is 400 InvalidArgument; more than 1024
  UTF-8 bytes is 400 KeyTooLongError. ``//`` and dot segments are kept literally (S3 keys may
  contain them; the store refuses what it cannot hold).
- ``versionId`` given empty or twice: 400 InvalidArgument.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from seeder.s3api import errors as s3errors
from seeder.s3api.sigv4 import SignedRequest, percent_decode

__all__ = [
    "MAX_KEY_BYTES",
    "BucketRead",
    "GetObject",
    "GetTorrent",
    "ListService",
    "S3Operation",
    "base_domain",
    "parse",
]

MAX_KEY_BYTES = 1024
_LEGACY_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,254}\Z")
_DNS_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_IPV4 = re.compile(r"\d+\.\d+\.\d+\.\d+\Z")

# S3 subresources/operations selected by a query parameter that are not implemented here.
_UNSUPPORTED = frozenset({
    "accelerate", "acl", "analytics", "attributes", "cors", "delete", "encryption",
    "intelligent-tiering", "inventory", "legal-hold", "lifecycle", "list-type", "location",
    "logging", "metadataTable", "metrics", "notification", "object-lock", "ownershipControls",
    "partNumber", "policy", "policyStatus", "publicAccessBlock", "renameObject", "replication",
    "requestPayment", "restore", "retention", "select", "select-type", "session", "tagging",
    "uploadId", "uploads", "versioning", "versions", "website",
})


@dataclass(frozen=True, slots=True)
class _Common:
    bucket: str
    key: str
    version_id: str | None = None
    head: bool = False
    request_payer: bool = field(default=False, kw_only=True)  # x-amz-request-payer: requester
    expected_bucket_owner: str | None = field(default=None, kw_only=True)
    virtual_host: bool = field(default=False, kw_only=True)
    # Always set by parse(); a default only so tests can build operations by hand.
    signed: SignedRequest | None = field(default=None, kw_only=True, compare=False)

    @property
    def resource(self) -> str:
        """``/bucket/key``, for ``S3Error.with_resource``."""
        return f"/{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class GetTorrent(_Common):
    """GetObjectTorrent: the .torrent for the object (or one version of it)."""


@dataclass(frozen=True, slots=True)
class GetObject(_Common):
    """GetObject: the object's bytes (the web seed). Header values are raw, unparsed."""

    range_header: str | None = None
    if_match: str | None = field(default=None, kw_only=True)
    if_none_match: str | None = field(default=None, kw_only=True)
    if_modified_since: str | None = field(default=None, kw_only=True)
    if_unmodified_since: str | None = field(default=None, kw_only=True)
    if_range: str | None = field(default=None, kw_only=True)
    webseed_token: str | None = field(default=None, kw_only=True)  # capability.PARAM


@dataclass(frozen=True, slots=True)
class BucketRead:
    """A read-only bucket call: ``location`` (GetBucketLocation), else HeadBucket for HEAD,
    else ListObjects / ListObjectsV2 over ``params`` (decoded query pairs, in order)."""

    bucket: str
    head: bool = False
    location: bool = False
    params: tuple[tuple[str, str], ...] = ()
    request_payer: bool = field(default=False, kw_only=True)
    expected_bucket_owner: str | None = field(default=None, kw_only=True)
    virtual_host: bool = field(default=False, kw_only=True)
    signed: SignedRequest | None = field(default=None, kw_only=True, compare=False)
    key = ""

    @property
    def resource(self) -> str:
        return f"/{self.bucket}"


@dataclass(frozen=True, slots=True)
class ListService:
    """``GET /``: ListBuckets."""

    head: bool = False
    signed: SignedRequest | None = field(default=None, kw_only=True, compare=False)
    resource = "/"


S3Operation = GetTorrent | GetObject | BucketRead | ListService
_BUCKET_QUERY_OK = frozenset({"list-type", "location"})


def parse(method: bytes, target: bytes, headers: tuple[tuple[bytes, bytes], ...],
          base_domain: str | None) -> S3Operation:
    """Parse one request (header names lower-case, as the HTTP shell gives them).

    ``base_domain``: the host of ``server.public_url`` for virtual-hosted addressing (with or
    without a port), or None for path style only. Returns GetTorrent or GetObject; raises
    S3Error (see the module docstring for which); never anything else.
    """
    if method not in (b"GET", b"HEAD"):
        raise s3errors.method_not_allowed(method.decode("latin-1"))
    first: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in _LIST_HEADERS and name in first:
            first[name] += b", " + value  # RFC 9110 §5.3: one list, in order
        else:
            first.setdefault(name, value)

    host = first.get(b"host", b"")
    if target.startswith(b"/"):
        origin = target
    elif target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        # absolute-form (RFC 9112 §3.2.2): its authority replaces Host
        rest = target.split(b"://", 1)[1]
        cut = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
        host, origin = rest[:cut], rest[cut:]
        if not origin.startswith(b"/"):
            origin = b"/" + origin
    else:
        raise s3errors.invalid_uri(target.decode("latin-1"))
    raw_path, _, raw_query = origin.partition(b"?")
    resource = raw_path.decode("latin-1")

    bucket_raw: bytes | None = _virtual_bucket(host, base_domain)
    virtual = bucket_raw is not None
    if bucket_raw is not None:
        key_raw = raw_path[1:]
        if not _DNS_BUCKET.match(bucket_raw.decode("latin-1")) or b".." in bucket_raw:
            raise s3errors.invalid_bucket_name(bucket_raw.decode("latin-1")).with_resource(
                resource)
        bucket = bucket_raw.decode("ascii")
    else:
        if raw_path == b"/":
            return ListService(method == b"HEAD",
                               signed=SignedRequest.from_http(method, origin, headers))
        bucket_raw, _, key_raw = raw_path[1:].partition(b"/")
        bucket = _decode(bucket_raw, resource, "bucket")
        if not _LEGACY_BUCKET.match(bucket):
            raise s3errors.invalid_bucket_name(bucket).with_resource(resource)
    if not key_raw:
        return _bucket_read(bucket, method, origin, raw_query, headers, first, virtual)
    key = _decode(key_raw, resource)
    if "\x00" in key:
        raise s3errors.invalid_argument("Object key must not contain NUL", "key").with_resource(
            resource)
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        raise s3errors.key_too_long(size, MAX_KEY_BYTES).with_resource(resource)

    torrent = False
    version_ids: list[str] = []
    payer_query: str | None = None
    webseed_token: str | None = None
    for piece in raw_query.split(b"&"):
        if not piece:
            continue
        name_raw, _, value_raw = piece.partition(b"=")
        name = _decode(name_raw, resource, "query")
        if name == "torrent":
            torrent = True
        elif name == "versionId":
            version_ids.append(_decode(value_raw, resource, "versionId"))
        elif name in _UNSUPPORTED:
            raise s3errors.not_implemented(
                f"The ?{name} subresource is not implemented by this server").with_resource(
                resource)
        elif name == "webseed-token" and webseed_token is None:
            webseed_token = _decode(value_raw, resource, name)
        elif name.lower() == "x-amz-request-payer":  # presigned URLs carry it in the query
            payer_query = _decode(value_raw, resource, "x-amz-request-payer")
    if len(version_ids) > 1:
        raise s3errors.invalid_argument("versionId may be given only once", "versionId"
                                        ).with_resource(resource)
    version_id = version_ids[0] if version_ids else None
    if version_id == "":
        raise s3errors.invalid_argument("Version id cannot be the empty string", "versionId",
                                        "").with_resource(resource)

    payer = _text(first.get(b"x-amz-request-payer")) or payer_query or ""
    common = {
        "bucket": bucket, "key": key, "version_id": version_id, "head": method == b"HEAD",
        "request_payer": payer.strip().lower() == "requester",
        "expected_bucket_owner": _text(first.get(b"x-amz-expected-bucket-owner")),
        "virtual_host": virtual,
        "signed": SignedRequest.from_http(method, origin, headers),
    }
    if torrent:
        return GetTorrent(**common)
    return GetObject(
        **common, range_header=_text(first.get(b"range")),
        if_match=_text(first.get(b"if-match")),
        if_none_match=_text(first.get(b"if-none-match")),
        if_modified_since=_text(first.get(b"if-modified-since")),
        if_unmodified_since=_text(first.get(b"if-unmodified-since")),
        if_range=_text(first.get(b"if-range")), webseed_token=webseed_token)


_LIST_HEADERS = frozenset({b"if-match", b"if-none-match"})


def _bucket_read(bucket: str, method: bytes, origin: bytes, raw_query: bytes,
                 headers: tuple[tuple[bytes, bytes], ...], first: dict[bytes, bytes],
                 virtual: bool) -> BucketRead:
    resource = f"/{bucket}"
    params: list[tuple[str, str]] = []
    for piece in raw_query.split(b"&"):
        if not piece:
            continue
        name_raw, _, value_raw = piece.partition(b"=")
        name = _decode(name_raw, resource, "query")
        if name in _UNSUPPORTED and name not in _BUCKET_QUERY_OK:
            raise s3errors.not_implemented(
                f"The ?{name} subresource is not implemented by this server").with_resource(
                resource)
        params.append((name, _decode(value_raw, resource, name)))
    names = {n for n, _ in params}
    payer = _text(first.get(b"x-amz-request-payer")) or next(
        (v for n, v in params if n.lower() == "x-amz-request-payer"), "")
    return BucketRead(
        bucket, method == b"HEAD", "location" in names, tuple(params),
        request_payer=payer.strip().lower() == "requester",
        expected_bucket_owner=_text(first.get(b"x-amz-expected-bucket-owner")),
        virtual_host=virtual, signed=SignedRequest.from_http(method, origin, headers))


def base_domain(public_url: str) -> str | None:
    """The host of ``server.public_url``: ``parse``'s ``base_domain``."""
    host = urlsplit(public_url).hostname
    return host.lower() if host else None


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _strip_port(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _virtual_bucket(host: bytes, base_domain: str | None) -> bytes | None:
    """The bucket named by a virtual-hosted Host, or None for path style."""
    if not base_domain or not host:
        return None
    h = _strip_port(host.decode("latin-1")).rstrip(".")
    base = _strip_port(base_domain).rstrip(".")
    if not base or base.startswith("[") or _IPV4.match(base) or h == base:
        return None
    if h.endswith("." + base):
        return h[: -len(base) - 1].encode("latin-1")
    return None


def _decode(raw: bytes, resource: str, what: str = "key") -> str:
    """Strict single percent-decoding to UTF-8 text (``+`` stays a plus)."""
    try:
        raw = percent_decode(raw)
    except ValueError:
        raise s3errors.invalid_uri(resource).with_resource(resource) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise s3errors.invalid_argument(f"The {what} is not valid UTF-8", what
                                        ).with_resource(resource) from None
