"""S3 errors: one exception type carrying what S3 puts in its XML error body, and ``render``.

An ``S3Error`` is raised anywhere in the S3 request path (parsing, SigV4, handlers) and turned
into bytes exactly once, at the edge, by ``render``. The factories below use S3's own codes,
statuses and messages, so AWS SDKs and the CLI recognise them (botocore maps the ``Code``
element to ``ClientError.response["Error"]["Code"]``).

Body shape (S3's; RequestId and HostId are per response, so ``render`` takes them)::

    <?xml version="1.0" encoding="UTF-8"?>
    <Error><Code>NoSuchKey</Code><Message>...</Message><Resource>...</Resource>
    <Key>...</Key><RequestId>...</RequestId><HostId>...</HostId></Error>

Text is XML-escaped; characters XML 1.0 cannot carry at all (most C0 controls, lone
surrogates, U+FFFE/U+FFFF) become U+FFFD, since a numeric reference to them is not
well-formed and would break every client-side parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

__all__ = [
    "S3Error",
    "access_denied",
    "authorization_header_malformed",
    "authorization_query_parameters_error",
    "internal_error",
    "invalid_access_key_id",
    "invalid_argument",
    "invalid_bucket_name",
    "invalid_range",
    "invalid_request",
    "invalid_uri",
    "key_too_long",
    "method_not_allowed",
    "no_such_bucket",
    "no_such_key",
    "not_implemented",
    "precondition_failed",
    "render",
    "request_time_too_skewed",
    "service_unavailable",
    "signature_does_not_match",
    "signature_does_not_match_v2",
    "slow_down",
    "xml_text",
]

MAX_SKEW_SECONDS = 900  # S3's RequestTimeTooSkewed window: 15 minutes either way

# XML 1.0 Char production: anything outside it cannot appear, not even as &#x..;
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;",
            # A literal CR in text is normalised to LF by every XML parser; keep it.
            "\r": "&#13;"}
_TO_ESCAPE = re.compile("[&<>\"'\r]")
_ELEMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")


@dataclass(eq=False)
class S3Error(Exception):
    """An S3 error response, raised by the core and rendered by ``render``.

    ``extra`` holds additional child elements of ``<Error>`` in order (``Key``, ``BucketName``,
    ``AWSAccessKeyId``, ``StringToSign``...); ``headers`` holds extra response headers
    (``Retry-After``, ``Allow``, ``Content-Range``). Treat instances as immutable; use
    ``with_resource`` (or ``dataclasses.replace``) to derive one. Not frozen only because
    Python's exception machinery assigns ``__context__``/``__traceback__`` on raise.
    """

    code: str
    message: str
    status: int
    resource: str = ""
    extra: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def __post_init__(self) -> None:
        super().__init__(self.code, self.message)
        for name, _ in self.extra:
            if not _ELEMENT_NAME.match(name):
                raise ValueError(f"not an XML element name: {name!r}")

    def __str__(self) -> str:
        return f"{self.code} ({self.status}): {self.message}"

    def with_resource(self, resource: str) -> S3Error:
        """A copy naming ``resource`` (e.g. ``/bucket/key``) in the ``<Resource>`` element."""
        return replace(self, resource=resource)

    def get(self, name: str) -> str | None:
        """The value of extra element ``name``, or None."""
        for k, v in self.extra:
            if k == name:
                return v
        return None


def _xml_text(value: str) -> str:
    value = _NOT_XML_CHAR.sub("\ufffd", value)
    return _TO_ESCAPE.sub(lambda m: _ESCAPES[m.group()], value)


def xml_text(value: str) -> str:
    """``value`` as XML character data (escaped; characters XML cannot carry -> U+FFFD)."""
    return _xml_text(value)


def render(err: S3Error, request_id: str, host_id: str = "") -> tuple[
        int, list[tuple[bytes, bytes]], bytes]:
    """Render ``err`` as S3 does: ``(status, headers, body)``.

    Headers: ``content-type: application/xml``, ``x-amz-request-id``, ``x-amz-id-2`` when
    ``host_id`` is given, then ``err.headers``. No Content-Length (the HTTP shell adds it for
    a bytes body and sends no body to HEAD). The body is UTF-8 XML; never raises for any
    string content.
    """
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<Error>']
    parts.append(f"<Code>{_xml_text(err.code)}</Code>")
    parts.append(f"<Message>{_xml_text(err.message)}</Message>")
    parts.append(f"<Resource>{_xml_text(err.resource)}</Resource>")
    for name, value in err.extra:
        parts.append(f"<{name}>{_xml_text(value)}</{name}>")
    parts.append(f"<RequestId>{_xml_text(request_id)}</RequestId>")
    if host_id:
        parts.append(f"<HostId>{_xml_text(host_id)}</HostId>")
    parts.append("</Error>")
    body = "".join(parts).encode("utf-8")
    headers = [(b"content-type", b"application/xml"),
               (b"x-amz-request-id", _header_safe(request_id))]
    if host_id:
        headers.append((b"x-amz-id-2", _header_safe(host_id)))
    headers.extend(err.headers)
    return err.status, headers, body


def _header_safe(value: str) -> bytes:
    # Ids are generated by us, but a header must never carry CR/LF or non-ASCII.
    return value.encode("ascii", "replace").replace(b"\r", b"?").replace(b"\n", b"?")


# --- factories: S3's codes, statuses and messages --------------------------------------------


def no_such_bucket(bucket: str) -> S3Error:
    return S3Error("NoSuchBucket", "The specified bucket does not exist", 404,
                   extra=(("BucketName", bucket),))


def no_such_key(key: str) -> S3Error:
    return S3Error("NoSuchKey", "The specified key does not exist.", 404, extra=(("Key", key),))


def access_denied(message: str = "Access Denied",
                  extra: tuple[tuple[str, str], ...] = ()) -> S3Error:
    return S3Error("AccessDenied", message, 403, extra=extra)


def invalid_access_key_id(access_key: str) -> S3Error:
    return S3Error("InvalidAccessKeyId",
                   "The AWS Access Key Id you provided does not exist in our records.", 403,
                   extra=(("AWSAccessKeyId", access_key),))


def signature_does_not_match(access_key: str, string_to_sign: str, signature_provided: str,
                             canonical_request: str) -> S3Error:
    """As S3 does, echo what we signed so a client author can diff it against theirs (none
    of it is secret: it is all derived from the request)."""
    return S3Error(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.", 403,
        extra=(("AWSAccessKeyId", access_key), ("StringToSign", string_to_sign),
               ("SignatureProvided", signature_provided),
               ("CanonicalRequest", canonical_request)))


def signature_does_not_match_v2(access_key: str, string_to_sign: str, signature_provided: str,
                                string_to_sign_bytes: str) -> S3Error:
    """SigV2's form: S3 echoes the StringToSign and its bytes in hex (``"47 45 54 ..."``)."""
    return S3Error(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.", 403,
        extra=(("AWSAccessKeyId", access_key), ("StringToSign", string_to_sign),
               ("SignatureProvided", signature_provided),
               ("StringToSignBytes", string_to_sign_bytes)))


def request_time_too_skewed(request_time: str, server_time: str) -> S3Error:
    """``request_time`` as the client sent it; ``server_time`` ISO 8601 (``...Z``)."""
    return S3Error("RequestTimeTooSkewed",
                   "The difference between the request time and the current time is too large.",
                   403, extra=(("RequestTime", request_time), ("ServerTime", server_time),
                               ("MaxAllowedSkewMilliseconds", str(MAX_SKEW_SECONDS * 1000))))


def authorization_header_malformed(message: str, region: str | None = None) -> S3Error:
    extra = (("Region", region),) if region else ()
    return S3Error("AuthorizationHeaderMalformed",
                   f"The authorization header is malformed; {message}", 400, extra=extra)


def authorization_query_parameters_error(message: str) -> S3Error:
    return S3Error("AuthorizationQueryParametersError", message, 400)


def invalid_request(message: str) -> S3Error:
    return S3Error("InvalidRequest", message, 400)


def invalid_argument(message: str, name: str | None = None,
                     value: str | None = None) -> S3Error:
    extra: tuple[tuple[str, str], ...] = ()
    if name is not None:
        extra += (("ArgumentName", name),)
    if value is not None:
        extra += (("ArgumentValue", value),)
    return S3Error("InvalidArgument", message, 400, extra=extra)


def invalid_bucket_name(bucket: str) -> S3Error:
    return S3Error("InvalidBucketName", "The specified bucket is not valid.", 400,
                   extra=(("BucketName", bucket),))


def invalid_uri(uri: str) -> S3Error:
    return S3Error("InvalidURI", "Couldn't parse the specified URI.", 400, extra=(("URI", uri),))


def key_too_long(size: int, max_size: int = 1024) -> S3Error:
    return S3Error("KeyTooLongError", "Your key is too long", 400,
                   extra=(("MaxSizeAllowed", str(max_size)), ("Size", str(size))))


def method_not_allowed(method: str, resource_type: str = "OBJECT",
                       allow: bytes = b"GET, HEAD") -> S3Error:
    return S3Error("MethodNotAllowed",
                   "The specified method is not allowed against this resource.", 405,
                   extra=(("Method", method), ("ResourceType", resource_type)),
                   headers=((b"allow", allow),))


def service_unavailable(retry_after: int = 1,
                        message: str = "Service is unable to handle request.") -> S3Error:
    return S3Error("ServiceUnavailable", message, 503,
                   headers=((b"retry-after", str(retry_after).encode()),))


def slow_down(retry_after: int = 1) -> S3Error:
    return S3Error("SlowDown", "Please reduce your request rate.", 503,
                   headers=((b"retry-after", str(retry_after).encode()),))


def internal_error() -> S3Error:
    return S3Error("InternalError", "We encountered an internal error. Please try again.", 500)


def invalid_range(size: int, range_requested: str = "") -> S3Error:
    """416 with ``Content-Range: bytes */size`` (RFC 9110 §15.5.17), as S3 sends it."""
    extra: tuple[tuple[str, str], ...] = ()
    if range_requested:
        extra += (("RangeRequested", range_requested),)
    extra += (("ActualObjectSize", str(size)),)
    return S3Error("InvalidRange", "The requested range is not satisfiable", 416, extra=extra,
                   headers=((b"content-range", b"bytes */%d" % size),))


def precondition_failed(condition: str) -> S3Error:
    return S3Error("PreconditionFailed",
                   "At least one of the pre-conditions you specified did not hold", 412,
                   extra=(("Condition", condition),))


def not_implemented(message: str = "A header you provided implies functionality that is not "
                    "implemented", header: str | None = None) -> S3Error:
    extra = (("Header", header),) if header else ()
    return S3Error("NotImplemented", message, 501, extra=extra)
