"""seeder.s3api.sigv2: AWS's published SigV2 vectors, botocore's own signatures, every failure."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st

from seeder.s3api import sigv2
from seeder.s3api.errors import S3Error
from seeder.s3api.sigv4 import SignedRequest

# "Signing and Authenticating REST Requests" (Amazon S3 developer guide, SigV2 examples).
AK = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SECRETS = {AK: SECRET}
T_GET = datetime(2007, 3, 27, 19, 36, 42, tzinfo=UTC)
DOC_GET = SignedRequest("GET", b"/photos/puppy.jpg", b"", (
    ("host", "johnsmith.s3.amazonaws.com"), ("date", "Tue, 27 Mar 2007 19:36:42 +0000"),
    ("authorization", f"AWS {AK}:bWq2s1WEIj+Ydj0vQ697zp+IXMU=")))
DOC_ACL = SignedRequest("GET", b"/", b"acl", (
    ("host", "johnsmith.s3.amazonaws.com"), ("date", "Tue, 27 Mar 2007 19:44:46 +0000"),
    ("authorization", f"AWS {AK}:c2WLPFtWHVgbEmeEG93a4cG37dM=")))
DOC_QUERY = SignedRequest("GET", b"/photos/puppy.jpg", (
    f"AWSAccessKeyId={AK}&Expires=1175139620&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D"
).encode(), (("host", "johnsmith.s3.amazonaws.com"),))


def expect(code: str, req: SignedRequest, now: datetime | float = T_GET,
           bucket: str | None = "johnsmith") -> S3Error:
    with pytest.raises(S3Error) as info:
        sigv2.verify(req, SECRETS, now, bucket)
    assert info.value.code == code, info.value
    return info.value


def with_header(req: SignedRequest, name: str, value: str | None) -> SignedRequest:
    headers = tuple((k, v) for k, v in req.headers if k != name)
    if value is not None:
        headers += ((name, value),)
    return SignedRequest(req.method, req.raw_path, req.raw_query, headers)


def test_published_vectors():
    assert sigv2.verify(DOC_GET, SECRETS, T_GET, "johnsmith") == AK
    assert sigv2.verify(DOC_ACL, SECRETS, T_GET + timedelta(minutes=8), "johnsmith") == AK
    assert sigv2.verify(DOC_QUERY, SECRETS, 1175139000, "johnsmith") == AK
    # path style: the same resource, the bucket in the path
    path_style = SignedRequest("GET", b"/johnsmith/photos/puppy.jpg", b"", DOC_GET.headers)
    assert sigv2.verify(path_style, SECRETS, T_GET) == AK


def test_applies():
    assert sigv2.applies(DOC_GET) and sigv2.applies(DOC_QUERY)
    v4 = with_header(DOC_GET, "authorization", "AWS4-HMAC-SHA256 Credential=x")
    assert not sigv2.applies(v4)
    assert not sigv2.applies(SignedRequest("GET", b"/b/k", b"torrent", ()))
    both = SignedRequest("GET", b"/p", DOC_QUERY.raw_query, DOC_GET.headers)
    assert not sigv2.applies(both)  # sigv4.verify answers "only one auth mechanism"
    v4_query = SignedRequest("GET", b"/p", b"X-Amz-Algorithm=A&Signature=x", ())
    assert not sigv2.applies(v4_query)


def test_canonical_resource_sub_resources():
    assert sigv2.canonical_resource(b"/b/k", b"torrent", None) == "/b/k?torrent"
    assert sigv2.canonical_resource(b"/k", b"versionId=a%2Bb&torrent&x=1", "b") == \
        "/b/k?torrent&versionId=a+b"
    assert sigv2.canonical_resource(b"/b/a%20b", b"prefix=x&list-type=2", None) == "/b/a%20b"
    assert sigv2.canonical_resource(b"/", b"", None) == "/"
    assert sigv2.canonical_resource(b"/bkt", b"acl", None) == "/bkt/?acl"
    assert sigv2.canonical_resource(b"/", b"", "bkt") == "/bkt/"


def botocore_signed(method: str, url: str, headers: dict[str, str] | None = None,
                    query: bool = False, expires: int = 3600,
                    auth_path: str | None = None) -> SignedRequest:
    creds = Credentials(AK, SECRET)
    req = AWSRequest(method=method, url=url, headers=headers or {})
    if auth_path is not None:
        req.auth_path = auth_path
    (HmacV1QueryAuth(creds, expires) if query else HmacV1Auth(creds)).add_auth(req)
    split = urlsplit(req.url)
    # a presigned URL travels alone: none of the headers it was signed with are sent
    sent = () if query else tuple((k.lower(), v) for k, v in req.headers.items())
    sent += (("host", split.netloc),)
    return SignedRequest(method, split.path.encode(), split.query.encode(), sent)


@pytest.mark.parametrize("query", [False, True])
@pytest.mark.parametrize("path,params", [
    ("/bkt/key.bin", "torrent"),
    ("/bkt/dir/%C3%A9t%C3%A9%20%2B.txt", "torrent&versionId=3%2FL4kqtJl"),
    ("/bkt/", "list-type=2&prefix=a%2Fb&delimiter=%2F"),
    ("/bkt", "location"),
    ("/", ""),
])
def test_botocore_signatures_verify(query, path, params):
    url = "http://127.0.0.1:8000" + path + ("?" + params if params else "")
    # a botocore client signs a bucket alone as "/bkt/" (its authPath)
    auth_path = path + "/" if path.count("/") == 1 and path != "/" else None
    req = botocore_signed("GET", url, {"x-amz-request-payer": "requester"}, query=query,
                          auth_path=auth_path)
    assert sigv2.applies(req)
    assert sigv2.verify(req, SECRETS, time.time()) == AK


def test_botocore_virtual_hosted():
    req = botocore_signed("GET", "http://bkt.s3.example/k?torrent", auth_path="/bkt/k")
    assert sigv2.verify(req, SECRETS, time.time(), "bkt") == AK
    expect("SignatureDoesNotMatch", req, time.time(), None)


def test_x_amz_date_blanks_the_date_line():
    when = "Tue, 27 Mar 2007 19:36:42 +0000"
    sts = f"GET\n\n\n\nx-amz-date:{when}\n/johnsmith/k"
    import base64
    import hashlib
    import hmac
    sig = base64.b64encode(hmac.digest(SECRET.encode(), sts.encode(), hashlib.sha1)).decode()
    req = SignedRequest("GET", b"/johnsmith/k", b"", (
        ("x-amz-date", when), ("date", "garbage"), ("authorization", f"AWS {AK}:{sig}")))
    assert sigv2.verify(req, SECRETS, T_GET) == AK


def test_wrong_secret_echoes_string_to_sign():
    err = expect("SignatureDoesNotMatch",
                 with_header(DOC_GET, "authorization", f"AWS {AK}:AAAAAAAAAAAAAAAAAAAAAAAAAAA="))
    assert err.status == 403
    sts = "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/johnsmith/photos/puppy.jpg"
    assert err.get("StringToSign") == sts
    assert err.get("StringToSignBytes") == sts.encode().hex(" ")
    assert err.get("AWSAccessKeyId") == AK
    assert err.get("SignatureProvided") == "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
    # a tampered resource is a mismatch too (torrent is signed)
    tampered = SignedRequest("GET", DOC_GET.raw_path, b"torrent", DOC_GET.headers)
    expect("SignatureDoesNotMatch", tampered)


def test_unknown_key():
    err = expect("InvalidAccessKeyId", with_header(DOC_GET, "authorization", "AWS nobody:x="))
    assert err.get("AWSAccessKeyId") == "nobody" and err.status == 403


def test_header_time():
    expect("RequestTimeTooSkewed", DOC_GET, T_GET + timedelta(minutes=16))
    expect("RequestTimeTooSkewed", DOC_GET, T_GET - timedelta(minutes=16))
    assert sigv2.verify(DOC_GET, SECRETS, T_GET + timedelta(minutes=14), "johnsmith") == AK
    err = expect("AccessDenied", with_header(DOC_GET, "date", None))
    assert "Date or x-amz-date" in err.message
    expect("AccessDenied", with_header(DOC_GET, "date", "yesterday"))


def test_query_expired_and_malformed():
    err = expect("AccessDenied", DOC_QUERY, 1175139621)
    assert err.message == "Request has expired"
    assert err.get("Expires") == "2007-03-29T03:40:20Z"
    q = DOC_QUERY.raw_query
    for bad, message in [
        (q.replace(b"Expires=1175139620", b"Expires=soon"), "Invalid date"),
        (q.replace(b"Expires=1175139620", b"Expires=-5"), "Invalid date"),
        (q.replace(b"&Expires=1175139620", b""), "Query-string authentication requires"),
        (q.replace(b"Signature=", b"Signature=%zz"), "Query-string authentication requires"),
    ]:
        err = expect("AccessDenied", SignedRequest("GET", DOC_QUERY.raw_path, bad, ()), 0)
        assert message in err.message
    expect("InvalidArgument", SignedRequest("GET", b"/p", q + b"&Expires=1", ()), 0)
    # bad base64 is just another signature that does not match
    bad_sig = q.replace(b"NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D", b"!!!not-base64")
    expect("SignatureDoesNotMatch", SignedRequest("GET", DOC_QUERY.raw_path, bad_sig, ()), 0)


@pytest.mark.parametrize("value", ["AWS", "AWS ", "AWS nocolon", "AWS :sig", "AWS ak:",
                                   "AWS a b:sig"])
def test_malformed_header(value):
    err = expect("InvalidArgument", with_header(DOC_GET, "authorization", value))
    assert err.get("ArgumentName") == "Authorization"


@given(st.binary(max_size=60), st.binary(max_size=60), st.text(max_size=40))
def test_garbage_gives_only_s3_errors(path, query, authz):
    req = SignedRequest("GET", b"/" + path, query, (("authorization", "AWS " + authz),
                                                     ("date", authz)))
    try:
        sigv2.verify(req, SECRETS, T_GET, None)
    except S3Error as err:
        assert err.status in (400, 403)
    qreq = SignedRequest("GET", b"/" + path, b"AWSAccessKeyId=" + query, ())
    try:
        sigv2.verify(qreq, SECRETS, T_GET, None)
    except S3Error as err:
        assert err.status in (400, 403)


def test_authenticate_switch():
    from seeder.s3api.auth import authenticate

    assert authenticate(DOC_GET, SECRETS, T_GET, allow_sigv2=True,
                        virtual_bucket="johnsmith") == AK
    with pytest.raises(S3Error) as info:
        authenticate(DOC_GET, SECRETS, T_GET, allow_sigv2=False, virtual_bucket="johnsmith")
    assert info.value.code == "InvalidRequest" and "AWS4-HMAC-SHA256" in info.value.message
    assert authenticate(SignedRequest("GET", b"/b/k", b"", ()), SECRETS, T_GET,
                        allow_sigv2=True) is None
