"""seeder.s3api.sigv4: AWS's published S3 vectors, real botocore/boto3 signatures, every failure.

No sockets: boto3 requests are captured in botocore's ``before-send`` hook, exactly as they
would go on the wire, then fed through ``s3request.parse`` and ``sigv4.verify``.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st

from seeder.s3api import request as s3request
from seeder.s3api.errors import S3Error
from seeder.s3api.sigv4 import (
    EMPTY_SHA256,
    SignedRequest,
    canonical_query,
    canonical_uri,
    signing_key,
    verify,
)

# --- AWS documentation vectors ("Signature Calculations for the Authorization Header:
# Transferring Payload in a Single Chunk", GET Object example; and "Authenticating Requests:
# Using Query Parameters", presigned GET example).
AK = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SECRETS = {AK: SECRET}
T0 = datetime(2013, 5, 24, tzinfo=UTC)
HOST = "examplebucket.s3.amazonaws.com"
AWS_AUTH = (f"AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
AWS_HEADERS = (("host", HOST), ("range", "bytes=0-9"), ("x-amz-content-sha256", EMPTY_SHA256),
               ("x-amz-date", "20130524T000000Z"), ("authorization", AWS_AUTH))
AWS_GET = SignedRequest("GET", b"/test.txt", b"", AWS_HEADERS)
AWS_PRESIGNED_QUERY = (
    b"X-Amz-Algorithm=AWS4-HMAC-SHA256"
    b"&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
    b"&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
    b"&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")
AWS_PRESIGNED = SignedRequest("GET", b"/test.txt", AWS_PRESIGNED_QUERY, (("host", HOST),))


def with_header(req: SignedRequest, name: str, value: str | None) -> SignedRequest:
    """Replace (or drop, for None) header ``name``; append it if absent."""
    headers = [(k, v) for k, v in req.headers if k != name]
    if value is not None:
        headers.append((name, value))
    return dataclasses.replace(req, headers=tuple(headers))


def with_query_param(query: bytes, name: bytes, value: bytes | None) -> bytes:
    pairs = [p for p in query.split(b"&") if p.partition(b"=")[0] != name]
    if value is not None:
        pairs.append(name + b"=" + value)
    return b"&".join(pairs)


def expect(code: str, req: SignedRequest, now=T0, secrets=SECRETS, region=None) -> S3Error:
    with pytest.raises(S3Error) as info:
        verify(req, secrets, now, region)
    assert info.value.code == code, info.value
    return info.value


def test_aws_vector_header_form():
    assert verify(AWS_GET, SECRETS, T0) == AK
    assert verify(AWS_GET, SECRETS, T0.timestamp()) == AK
    assert verify(AWS_GET, SECRETS, T0.replace(tzinfo=None)) == AK  # naive means UTC
    assert verify(AWS_GET, SECRETS.get, T0, region="us-east-1") == AK  # callable secrets
    assert verify(dataclasses.replace(AWS_GET, headers=dict(AWS_HEADERS)), SECRETS, T0) == AK


def test_aws_vector_presigned():
    assert verify(AWS_PRESIGNED, SECRETS, T0) == AK
    assert verify(AWS_PRESIGNED, SECRETS, T0 + timedelta(seconds=86400)) == AK


def test_anonymous():
    assert verify(SignedRequest("GET", b"/b/k", b"torrent", (("host", "h"),)), {}, T0) is None
    assert verify(SignedRequest("GET", b"/b/k", b"", ()), {}, T0) is None


def test_unsigned_ordinary_headers_are_fine():
    req = with_header(AWS_GET, "user-agent", "libtorrent/2.1.1")
    req = with_header(req, "amz-sdk-request", "attempt=1")
    assert verify(req, SECRETS, T0) == AK


# --- tampering: one changed byte anywhere in what was signed -> SignatureDoesNotMatch --------

TAMPER_HEADER_FORM = {
    "method": dataclasses.replace(AWS_GET, method="HEAD"),
    "path": dataclasses.replace(AWS_GET, raw_path=b"/test.txu"),
    "path-case": dataclasses.replace(AWS_GET, raw_path=b"/Test.txt"),
    "query-added": dataclasses.replace(AWS_GET, raw_query=b"torrent"),
    "host": with_header(AWS_GET, "host", "examplebucket.s3.amazonaws.co"),
    "range": with_header(AWS_GET, "range", "bytes=0-8"),
    "date-second": with_header(AWS_GET, "x-amz-date", "20130524T000001Z"),
    "payload-hash": with_header(AWS_GET, "x-amz-content-sha256", "f" + EMPTY_SHA256[1:]),
    "signature": with_header(AWS_GET, "authorization", AWS_AUTH[:-1] + "2"),
    "signature-upper": with_header(AWS_GET, "authorization", AWS_AUTH[:-64] + AWS_AUTH[-64:]
                                   .upper()),
    "signature-short": with_header(AWS_GET, "authorization", AWS_AUTH[:-1]),
    "signature-non-ascii": with_header(AWS_GET, "authorization", AWS_AUTH[:-1] + "é"),
    "region": with_header(AWS_GET, "authorization", AWS_AUTH.replace("us-east-1", "us-east-2")),
    "signed-headers-dropped": with_header(AWS_GET, "authorization",
                                          AWS_AUTH.replace("host;range;", "host;")),
    "repeated-range": dataclasses.replace(AWS_GET, headers=(*AWS_HEADERS,
                                                            ("range", "bytes=0-9"))),
}


@pytest.mark.parametrize("name", sorted(TAMPER_HEADER_FORM))
def test_tampered_header_form(name):
    err = expect("SignatureDoesNotMatch", TAMPER_HEADER_FORM[name])
    assert err.status == 403
    assert err.get("AWSAccessKeyId") == AK
    assert err.get("StringToSign", ).startswith("AWS4-HMAC-SHA256\n")
    assert err.get("CanonicalRequest").startswith(TAMPER_HEADER_FORM[name].method + "\n")


def _tamper_query(name: bytes, value: bytes) -> SignedRequest:
    return dataclasses.replace(AWS_PRESIGNED, raw_query=with_query_param(
        AWS_PRESIGNED_QUERY, name, value))


TAMPER_QUERY_FORM = {
    "expires": _tamper_query(b"X-Amz-Expires", b"86401"),
    "date": _tamper_query(b"X-Amz-Date", b"20130524T000001Z"),
    "signature": _tamper_query(b"X-Amz-Signature", b"beeed9bbccd4d02ee5c0109b86d86835f995330da4c"
                                                   b"265957d157751f604d404"),
    "extra-param": dataclasses.replace(AWS_PRESIGNED, raw_query=AWS_PRESIGNED_QUERY + b"&torrent"),
    "path": dataclasses.replace(AWS_PRESIGNED, raw_path=b"/test.tx"),
    "host": with_header(AWS_PRESIGNED, "host", HOST + ":80"),
    "method": dataclasses.replace(AWS_PRESIGNED, method="HEAD"),
    "signed-headers": _tamper_query(b"X-Amz-SignedHeaders", b"host%3Brange"),
}


@pytest.mark.parametrize("name", sorted(TAMPER_QUERY_FORM))
def test_tampered_presigned(name):
    expect("SignatureDoesNotMatch", TAMPER_QUERY_FORM[name])


def test_wrong_secret_and_unknown_key():
    expect("SignatureDoesNotMatch", AWS_GET, secrets={AK: SECRET[:-1] + "X"})
    expect("SignatureDoesNotMatch", AWS_PRESIGNED, secrets={AK: SECRET + " "})
    err = expect("InvalidAccessKeyId", AWS_GET, secrets={"OTHER": SECRET})
    assert err.get("AWSAccessKeyId") == AK
    expect("InvalidAccessKeyId", AWS_PRESIGNED, secrets=lambda ak: None)


# --- time ------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [timedelta(minutes=16), timedelta(minutes=-16),
                                    timedelta(days=3), timedelta(seconds=-901)])
def test_header_form_clock_skew(offset):
    err = expect("RequestTimeTooSkewed", AWS_GET, now=T0 + offset)
    assert err.status == 403
    assert err.get("RequestTime") == "20130524T000000Z"
    assert err.get("ServerTime") == (T0 + offset).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert err.get("MaxAllowedSkewMilliseconds") == "900000"


@pytest.mark.parametrize("offset", [timedelta(minutes=15), timedelta(minutes=-15)])
def test_header_form_within_skew(offset):
    assert verify(AWS_GET, SECRETS, T0 + offset) == AK


def test_presigned_expired_and_not_yet_valid():
    err = expect("AccessDenied", AWS_PRESIGNED, now=T0 + timedelta(seconds=86401))
    assert err.message == "Request has expired"
    assert err.get("X-Amz-Expires") == "86400"
    assert err.get("Expires") == "2013-05-25T00:00:00Z"
    err = expect("AccessDenied", AWS_PRESIGNED, now=T0 - timedelta(minutes=16))
    assert err.message == "Request is not yet valid"
    assert verify(AWS_PRESIGNED, SECRETS, T0 - timedelta(minutes=14)) == AK


def test_region_parameter():
    assert verify(AWS_GET, SECRETS, T0, region="us-east-1") == AK
    err = expect("AuthorizationHeaderMalformed", AWS_GET, region="eu-west-1")
    assert "'us-east-1' is wrong; expecting 'eu-west-1'" in err.message
    assert err.get("Region") == "eu-west-1"
    err = expect("AuthorizationQueryParametersError", AWS_PRESIGNED, region="eu-west-1")
    assert "X-Amz-Credential" in err.message


# --- malformed: header form ------------------------------------------------------------------

CRED = f"Credential={AK}/20130524/us-east-1/s3/aws4_request"
REST = ",SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=" + "0" * 64
MALFORMED_AUTH = [
    ("AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=", "InvalidRequest", 400),
    ("AWS4-ECDSA-P256-SHA256 " + CRED + REST, "InvalidRequest", 400),
    ("Basic dXNlcjpwYXNz", "InvalidArgument", 400),
    ("Bearer x", "InvalidArgument", 400),
    ("", "InvalidArgument", 400),
    ("AWS4-HMAC-SHA256", "AuthorizationHeaderMalformed", 400),
    ("AWS4-HMAC-SHA256 " + CRED, "AuthorizationHeaderMalformed", 400),
    ("AWS4-HMAC-SHA256 " + CRED + REST + ",Extra=1", "AuthorizationHeaderMalformed", 400),
    ("AWS4-HMAC-SHA256 " + CRED + "," + CRED + REST, "AuthorizationHeaderMalformed", 400),
    ("AWS4-HMAC-SHA256 " + CRED + REST.replace("Signature=", "Signature"),
     "AuthorizationHeaderMalformed", 400),
    ("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3" + REST,
     "AuthorizationHeaderMalformed", 400),
    ("AWS4-HMAC-SHA256 Credential=/20130524/us-east-1/s3/aws4_request" + REST,
     "AuthorizationHeaderMalformed", 400),
    ("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/ec2/aws4_request" + REST,
     "AuthorizationHeaderMalformed", 400),
    ("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_reqest" + REST,
     "AuthorizationHeaderMalformed", 400),
    ("AWS4-HMAC-SHA256 Credential=AK/2013052/us-east-1/s3/aws4_request" + REST,
     "AuthorizationHeaderMalformed", 400),
    ("AWS4-HMAC-SHA256 Credential=AK/20130525/us-east-1/s3/aws4_request" + REST,
     "AuthorizationHeaderMalformed", 400),  # not the x-amz-date's day
    ("AWS4-HMAC-SHA256 Credential=AK/20130524//s3/aws4_request" + REST,
     "AuthorizationHeaderMalformed", 400),
    ("AWS4-HMAC-SHA256 " + CRED + ",SignedHeaders=,Signature=" + "0" * 64,
     "AuthorizationHeaderMalformed", 400),
    ("AWS4-HMAC-SHA256 " + CRED + ",SignedHeaders=range;x-amz-date,Signature=" + "0" * 64,
     "AuthorizationHeaderMalformed", 400),  # host not signed
    ("AWS4-HMAC-SHA256 " + CRED + ",SignedHeaders=Host;range,Signature=" + "0" * 64,
     "AuthorizationHeaderMalformed", 400),
    ("AWS4-HMAC-SHA256 " + CRED + ",SignedHeaders=host;;range,Signature=" + "0" * 64,
     "AuthorizationHeaderMalformed", 400),
    # x-amz-* headers present but not signed
    ("AWS4-HMAC-SHA256 " + CRED + ",SignedHeaders=host;range,Signature=" + "0" * 64,
     "AccessDenied", 403),
]


@pytest.mark.parametrize(("value", "code", "status"), MALFORMED_AUTH)
def test_malformed_authorization(value, code, status):
    err = expect(code, with_header(AWS_GET, "authorization", value))
    assert err.status == status
    assert "dXNlcjpwYXNz" not in repr(err)  # never echo a foreign credential


@pytest.mark.parametrize(("header", "value", "code"), [
    ("x-amz-date", None, "AccessDenied"),
    ("x-amz-date", "2013-05-24T00:00:00Z", "AccessDenied"),
    ("x-amz-date", "20130524T250000Z", "AccessDenied"),
    ("x-amz-date", "20130525T000000Z", "AuthorizationHeaderMalformed"),
    ("x-amz-content-sha256", None, "InvalidRequest"),
    ("x-amz-content-sha256", "abc", "InvalidArgument"),
    ("x-amz-content-sha256", EMPTY_SHA256.upper(), "InvalidArgument"),
    ("x-amz-security-token", "tok", "AccessDenied"),  # an x-amz-* header left unsigned
    ("x-amz-meta-x", "1", "AccessDenied"),
])
def test_malformed_headers(header, value, code):
    expect(code, with_header(AWS_GET, header, value))


def test_unsigned_header_names_listed():
    err = expect("AccessDenied", with_header(AWS_GET, "x-amz-meta-z", "1"))
    assert err.get("HeadersNotSigned") == "x-amz-meta-z"


def test_two_authorization_headers():
    req = dataclasses.replace(AWS_GET, headers=(*AWS_HEADERS, ("authorization", AWS_AUTH)))
    expect("AuthorizationHeaderMalformed", req)


def test_header_and_query_auth_together():
    req = dataclasses.replace(AWS_GET, raw_query=AWS_PRESIGNED_QUERY)
    err = expect("InvalidArgument", req)
    assert err.get("ArgumentName") == "Authorization"


def test_payload_markers_accepted():
    for marker in ("UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"):
        # accepted as syntax, then the signature (computed over the marker) decides
        expect("SignatureDoesNotMatch", with_header(AWS_GET, "x-amz-content-sha256", marker))


# --- malformed: query form -------------------------------------------------------------------

MALFORMED_QUERY = [
    (b"X-Amz-Algorithm", b"AWS4-HMAC-SHA1"),
    (b"X-Amz-Algorithm", None),
    (b"X-Amz-Credential", None),
    (b"X-Amz-Date", None),
    (b"X-Amz-Expires", None),
    (b"X-Amz-SignedHeaders", None),
    (b"X-Amz-Signature", None),
    (b"X-Amz-Expires", b"604801"),
    (b"X-Amz-Expires", b"-1"),
    (b"X-Amz-Expires", b"1e3"),
    (b"X-Amz-Expires", b"9" * 40),
    (b"X-Amz-Date", b"2013-05-24T00:00:00Z"),
    (b"X-Amz-Date", b"20130525T000000Z"),  # not the credential's day
    (b"X-Amz-Credential", b"AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3"),
    (b"X-Amz-Credential", b"AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fsqs%2Faws4_request"),
    (b"X-Amz-Credential", b"AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request%zz"),
    (b"X-Amz-Credential", b"%FF"),
    (b"X-Amz-SignedHeaders", b"range"),
    (b"X-Amz-SignedHeaders", b""),
]


@pytest.mark.parametrize(("name", "value"), MALFORMED_QUERY)
def test_malformed_presigned(name, value):
    err = expect("AuthorizationQueryParametersError", _tamper_query(name, value))
    assert err.status == 400


def test_presigned_duplicate_parameter():
    req = dataclasses.replace(AWS_PRESIGNED, raw_query=AWS_PRESIGNED_QUERY
                              + b"&X-Amz-Signature=" + b"0" * 64)
    expect("AuthorizationQueryParametersError", req)


def test_presigned_unsigned_amz_header():
    expect("AccessDenied", with_header(AWS_PRESIGNED, "x-amz-meta-a", "1"))


@pytest.mark.parametrize("query", [
    b"AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=abc%3D&Expires=1369353600",
    b"torrent&AWSAccessKeyId=AK&Signature=x",
])
def test_sigv2_presigned_refused(query):
    err = expect("InvalidRequest", SignedRequest("GET", b"/b/k", query, (("host", "h"),)))
    assert "AWS4-HMAC-SHA256" in err.message


# --- canonical forms ----------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "canonical"), [
    (b"/test.txt", "/test.txt"),
    (b"", "/"),
    (b"/a%20b", "/a%20b"),
    (b"/a b", "/a%20b"),
    (b"/a+b", "/a%2Bb"),
    (b"/%7e%7E~", "/~~~"),
    (b"/%41", "/A"),
    (b"/a%2fb/c", "/a%2Fb/c"),  # an escaped slash is key data, not a separator
    (b"/\xc3\xbc", "/%C3%BC"),
    (b"/%c3%bc", "/%C3%BC"),
    (b"/%zz%", "/%25zz%25"),
    (b"/a!'()*", "/a%21%27%28%29%2A"),
    (b"//x/", "//x/"),
])
def test_canonical_uri(raw, canonical):
    assert canonical_uri(raw) == canonical


@pytest.mark.parametrize(("raw", "canonical"), [
    (b"torrent", "torrent="),
    (b"torrent=", "torrent="),
    (b"versionId=v&torrent", "torrent=&versionId=v"),
    (b"b=2&a=1&a=0", "a=0&a=1&b=2"),
    (b"B=1&a=1", "B=1&a=1"),  # sorted by code point: upper case first
    (b"k=a/b", "k=a%2Fb"),
    (b"k=a%2fb+c", "k=a%2Fb%2Bc"),
    (b"k=%7e", "k=~"),
    (b"&&", ""),
    (b"", ""),
])
def test_canonical_query(raw, canonical):
    assert canonical_query(raw) == canonical


def test_canonical_query_excludes_signature():
    assert canonical_query(b"X-Amz-Signature=s&a", exclude=b"X-Amz-Signature") == "a="


def test_signing_key_is_cached():
    signing_key.cache_clear()
    for _ in range(3):
        verify(AWS_GET, SECRETS, T0)
    info = signing_key.cache_info()
    assert info.misses == 1 and info.hits == 2


# --- botocore's signers, and boto3's real requests, for many keys and both styles ---------------

KEYS = [
    "plain.txt", "with space.bin", "ü日本/😀.iso", "a+b=c&d", "dir/sub/file", "~tilde~",
    "q?mark#hash", "percent%20literal", "semi;colon,comma", "quote'\"s", "trailing/",
    "/leading", "star*!(paren)", "back\\slash", "tab\tand\u00a0nbsp", "x" * 900,
]
CREDS = Credentials("AKIDEXAMPLE", "secret/with+chars=")
BOTO_SECRETS = {"AKIDEXAMPLE": "secret/with+chars="}


def _quote_key(key: str) -> str:
    from botocore.utils import percent_encode
    return percent_encode(key, safe="/~")


def _to_shell(method: str, url: str, headers) -> tuple[bytes, bytes, tuple]:
    parts = urlsplit(url)
    target = (parts.path + ("?" + parts.query if parts.query else "")).encode()
    raw = [(b"host", parts.netloc.encode())]
    for k, v in headers.items():
        raw.append((k.lower().encode(), v if isinstance(v, bytes) else v.encode("utf-8")))
    return method.encode(), target, tuple(raw)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("style", ["path", "virtual"])
@pytest.mark.parametrize("form", ["header", "query"])
def test_botocore_signers(key, style, form):
    base = "s3.example.com:9000"
    if style == "path":
        url = f"http://{base}/bkt/{_quote_key(key)}?torrent"
    else:
        url = f"http://bkt.{base}/{_quote_key(key)}?torrent"
    request = AWSRequest("GET", url, headers={"Range": "bytes=0-  9", "User-Agent": "x"})
    if form == "header":
        S3SigV4Auth(CREDS, "s3", "ap-south-2").add_auth(request)
    else:
        S3SigV4QueryAuth(CREDS, "s3", "ap-south-2", expires=60).add_auth(request)
    prepared = request.prepare()
    op = s3request.parse(*_to_shell("GET", prepared.url, prepared.headers), base)
    assert (op.bucket, op.key) == ("bkt", key)
    assert isinstance(op, s3request.GetTorrent)
    now = time.time()
    assert verify(op.signed, BOTO_SECRETS, now) == "AKIDEXAMPLE"
    assert verify(op.signed, BOTO_SECRETS, now, region="ap-south-2") == "AKIDEXAMPLE"
    with pytest.raises(S3Error) as info:
        verify(op.signed, {"AKIDEXAMPLE": "other"}, now)
    assert info.value.code == "SignatureDoesNotMatch"


class _Captured(Exception):
    pass


@pytest.fixture(params=["path", "virtual"])
def boto_client(request):
    """A real boto3 client whose requests stop at botocore's before-send hook."""
    client = boto3.client(
        "s3", endpoint_url="http://s3.example.com:8000", region_name="eu-west-3",
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret/with+chars=",
        config=Config(signature_version="s3v4", retries={"max_attempts": 1},
                      s3={"addressing_style": request.param}))
    captured: list = []

    def grab(request, **_):
        captured.append(request)
        raise _Captured

    client.meta.events.register("before-send.s3", grab)
    return client, captured


@pytest.mark.parametrize("key", KEYS[:12])
def test_boto3_get_object_torrent_and_get_object(boto_client, key):
    client, captured = boto_client
    for call, kwargs, kind in [
        (client.get_object_torrent, {}, s3request.GetTorrent),
        (client.get_object, {"Range": "bytes=0-15", "VersionId": "v+1/x"}, s3request.GetObject),
        (client.get_object_torrent, {"RequestPayer": "requester"}, s3request.GetTorrent),
    ]:
        with pytest.raises(_Captured):
            call(Bucket="bkt", Key=key, **kwargs)
        sent = captured.pop()
        op = s3request.parse(*_to_shell(sent.method, sent.url, sent.headers),
                             "s3.example.com:8000")
        assert isinstance(op, kind)
        assert (op.bucket, op.key) == ("bkt", key)
        if "VersionId" in kwargs:
            assert op.version_id == "v+1/x" and op.range_header == "bytes=0-15"
        assert op.request_payer == ("RequestPayer" in kwargs)
        assert verify(op.signed, BOTO_SECRETS, time.time(), region="eu-west-3") == "AKIDEXAMPLE"


@pytest.mark.parametrize("key", KEYS[:12])
def test_boto3_presigned_urls(boto_client, key):
    client, _ = boto_client
    for method, params in [("get_object_torrent", {}), ("get_object", {"VersionId": "3"}),
                           ("get_object", {"RequestPayer": "requester"})]:
        url = client.generate_presigned_url(method, Params={"Bucket": "bkt", "Key": key,
                                                            **params}, ExpiresIn=600)
        # botocore signs RequestPayer as a header the user of the URL must send
        headers = {"x-amz-request-payer": "requester"} if "RequestPayer" in params else {}
        op = s3request.parse(*_to_shell("GET", url, headers), "s3.example.com:8000")
        assert (op.bucket, op.key) == ("bkt", key)
        assert op.request_payer == ("RequestPayer" in params)
        assert verify(op.signed, BOTO_SECRETS, time.time()) == "AKIDEXAMPLE"
        head = dataclasses.replace(op.signed, method="HEAD")
        with pytest.raises(S3Error) as info:
            verify(head, BOTO_SECRETS, time.time())
        assert info.value.code == "SignatureDoesNotMatch"


def test_botocore_date_header_form():
    request = AWSRequest("GET", "http://h:1/bkt/k?torrent",
                         headers={"Date": "Thu, 01 Jan 1970 00:00:00 GMT"})
    S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(request)
    prepared = request.prepare()
    assert "X-Amz-Date" not in prepared.headers
    op = s3request.parse(*_to_shell("GET", prepared.url, prepared.headers), None)
    assert verify(op.signed, BOTO_SECRETS, time.time()) == "AKIDEXAMPLE"


def test_from_http_keeps_bytes_exact():
    headers = ((b"Host", b"h"), (b"x-amz-meta-n", b"\xff\xc3\xbc"))
    req = SignedRequest.from_http(b"GET", b"/a%20b?x=1", headers)
    assert req.raw_path == b"/a%20b" and req.raw_query == b"x=1"
    assert req.headers[0] == ("host", "h")
    assert req.headers[1][1].encode("utf-8", "surrogateescape") == b"\xff\xc3\xbc"


def test_garbage_only_raises_s3error():
    samples = [b"", b"\xff", b"%", b"X-Amz-Algorithm", b"X-Amz-Algorithm=AWS4-HMAC-SHA256&" * 3,
               b"AWSAccessKeyId&Signature", b"x-amz-algorithm=%ff"]
    for q in samples:
        for auth in (None, "AWS4-HMAC-SHA256 \udcff", "AWS4-HMAC-SHA256 Credential=\x00",
                     "\x00", AWS_AUTH[:-1] + "\ud800", AWS_AUTH.replace("host;", "host;\ud800;"),
                     AWS_AUTH.replace("us-east-1", "\ud800")):
            headers = (("host", "h"),) + ((("authorization", auth),) if auth else ())
            try:
                verify(SignedRequest("GET", b"/\xff%", q, headers), SECRETS, T0)
            except S3Error:
                pass


@pytest.mark.parametrize("path", ["/bkt/a+b", "/bkt/a!b", "/bkt/%7euser", "/bkt/x%2fy"])
def test_client_signing_its_raw_non_canonical_path(path):
    """Some clients sign the path exactly as they send it; that binds the same bytes."""
    request = AWSRequest("GET", f"http://h:1{path}")
    S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(request)
    prepared = request.prepare()
    assert urlsplit(prepared.url).path == path  # sent as is, not canonical
    op = s3request.parse(*_to_shell("GET", prepared.url, prepared.headers), None)
    assert verify(op.signed, BOTO_SECRETS, time.time()) == "AKIDEXAMPLE"
    other = dataclasses.replace(op.signed, raw_path=path.replace("/bkt/", "/bkt/z").encode())
    with pytest.raises(S3Error) as info:
        verify(other, BOTO_SECRETS, time.time())
    assert info.value.code == "SignatureDoesNotMatch"


@given(query=st.binary(max_size=200), auth=st.text(st.characters(), max_size=200),
       path=st.binary(max_size=30),
       extra=st.lists(st.tuples(st.sampled_from(["x-amz-date", "date", "x-amz-content-sha256",
                                                 "host", "x-amz-foo"]), st.text(max_size=30)),
                      max_size=4))
def test_fuzz_only_s3error(query, auth, path, extra):
    headers = (("authorization", "AWS4-HMAC-SHA256 " + auth), *extra) if auth else tuple(extra)
    try:
        verify(SignedRequest("GET", path, query, headers), SECRETS, T0)
    except S3Error:
        pass


@given(st.binary(max_size=200))
def test_fuzz_presigned_query_only_s3error(tail):
    try:
        verify(SignedRequest("GET", b"/test.txt", AWS_PRESIGNED_QUERY[:60] + tail,
                             (("host", HOST),)), SECRETS, T0)
    except S3Error:
        pass


def test_cloudfront_id_may_be_unsigned():
    assert verify(with_header(AWS_GET, "x-amz-cf-id", "abc=="), SECRETS, T0) == AK
