"""seeder.s3api.errors: S3's codes and statuses, and XML that botocore's own parser reads back."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import pytest
from botocore.parsers import create_parser
from hypothesis import given
from hypothesis import strategies as st

from seeder.s3api import errors as s3errors
from seeder.s3api.errors import S3Error, render


def botocore_reads(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> dict:
    parser = create_parser("rest-xml")
    return parser.parse({"status_code": status, "body": body,
                         "headers": {k.decode(): v.decode() for k, v in headers}}, None)


FACTORIES = [
    (s3errors.no_such_bucket("bk"), "NoSuchBucket", 404),
    (s3errors.no_such_key("k"), "NoSuchKey", 404),
    (s3errors.access_denied(), "AccessDenied", 403),
    (s3errors.invalid_access_key_id("AK"), "InvalidAccessKeyId", 403),
    (s3errors.signature_does_not_match("AK", "sts", "sig", "creq"), "SignatureDoesNotMatch", 403),
    (s3errors.request_time_too_skewed("20130524T000000Z", "2013-05-24T00:20:00Z"),
     "RequestTimeTooSkewed", 403),
    (s3errors.authorization_header_malformed("x", "eu-west-1"),
     "AuthorizationHeaderMalformed", 400),
    (s3errors.authorization_query_parameters_error("x"), "AuthorizationQueryParametersError",
     400),
    (s3errors.invalid_request("x"), "InvalidRequest", 400),
    (s3errors.invalid_argument("x", "n", "v"), "InvalidArgument", 400),
    (s3errors.invalid_bucket_name("B_"), "InvalidBucketName", 400),
    (s3errors.invalid_uri("/%zz"), "InvalidURI", 400),
    (s3errors.key_too_long(2000), "KeyTooLongError", 400),
    (s3errors.method_not_allowed("PUT"), "MethodNotAllowed", 405),
    (s3errors.service_unavailable(), "ServiceUnavailable", 503),
    (s3errors.slow_down(5), "SlowDown", 503),
    (s3errors.internal_error(), "InternalError", 500),
    (s3errors.invalid_range(10, "bytes=20-"), "InvalidRange", 416),
    (s3errors.precondition_failed("If-Match"), "PreconditionFailed", 412),
    (s3errors.not_implemented(), "NotImplemented", 501),
]


@pytest.mark.parametrize(("err", "code", "status"), FACTORIES,
                         ids=[c for _, c, _ in FACTORIES])
def test_factories_round_trip_through_botocore(err, code, status):
    assert isinstance(err, Exception)
    got_status, headers, body = render(err, "REQ123", "HOST456")
    assert got_status == status == err.status
    assert (b"content-type", b"application/xml") in headers
    assert (b"x-amz-request-id", b"REQ123") in headers
    assert (b"x-amz-id-2", b"HOST456") in headers
    parsed = botocore_reads(got_status, headers, body)
    assert parsed["Error"]["Code"] == code
    assert parsed["Error"]["Message"] == err.message
    assert parsed["ResponseMetadata"]["RequestId"] == "REQ123"
    assert parsed["ResponseMetadata"]["HostId"] == "HOST456"
    for name, value in err.extra:
        assert parsed["Error"][name] == value


def test_body_shape():
    err = s3errors.no_such_key("a/b").with_resource("/bk/a/b")
    _, headers, body = render(err, "R1")
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey')
    root = ET.fromstring(body)
    assert [c.tag for c in root] == ["Code", "Message", "Resource", "Key", "RequestId"]
    assert root.findtext("Resource") == "/bk/a/b"
    assert not any(k == b"x-amz-id-2" for k, _ in headers)  # no host id given


@pytest.mark.parametrize(("err", "header", "value"), [
    (s3errors.slow_down(7), b"retry-after", b"7"),
    (s3errors.service_unavailable(3), b"retry-after", b"3"),
    (s3errors.method_not_allowed("POST"), b"allow", b"GET, HEAD"),
    (s3errors.invalid_range(1234), b"content-range", b"bytes */1234"),
])
def test_extra_headers(err, header, value):
    _, headers, _ = render(err, "R")
    assert (header, value) in headers


@pytest.mark.parametrize("key", [
    "a&b<c>d\"e'f", "ünïcødé/日本語 😀", "]]><!--", "&amp;", "line\r\nbreak\ttab",
])
def test_keys_escaped_and_read_back_exactly(key):
    err = s3errors.no_such_key(key).with_resource("/bk/" + key)
    status, headers, body = render(err, "R")
    parsed = botocore_reads(status, headers, body)
    assert parsed["Error"]["Key"] == key
    assert parsed["Error"]["Resource"] == "/bk/" + key
    assert ET.fromstring(body).findtext("Key") == key


@pytest.mark.parametrize("bad", ["\x00", "\x01\x08", "\x0b\x0c", "\ud800", "\ufffe", "\uffff"])
def test_characters_xml_cannot_carry_become_replacement(bad):
    status, headers, body = render(s3errors.no_such_key("a" + bad + "b"), "R")
    assert ET.fromstring(body).findtext("Key") == "a" + "\ufffd" * len(bad) + "b"
    assert botocore_reads(status, headers, body)["Error"]["Code"] == "NoSuchKey"


@given(st.text())
def test_any_text_renders_well_formed(text):
    err = S3Error("InvalidArgument", text, 400, resource=text, extra=(("ArgumentValue", text),))
    _, _, body = render(err, text, text)
    ET.fromstring(body)  # well-formed, whatever the text


def test_request_id_cannot_inject_headers():
    _, headers, _ = render(s3errors.internal_error(), "a\r\nSet-Cookie: x", "h\nü")
    for _, value in headers:
        assert b"\r" not in value and b"\n" not in value
        value.decode("ascii")


def test_exception_behaviour():
    err = s3errors.no_such_bucket("bk")
    assert str(err) == "NoSuchBucket (404): The specified bucket does not exist"
    assert err.get("BucketName") == "bk"
    assert err.get("Nope") is None
    with pytest.raises(S3Error) as info:
        try:
            raise KeyError("inner")
        except KeyError:
            raise err from None
    assert info.value is err
    derived = err.with_resource("/bk")
    assert derived.resource == "/bk" and err.resource == ""
    assert dataclasses.replace(err, message="m").message == "m"


@pytest.mark.parametrize("name", ["", "1a", "a b", "a<b", "Key/x"])
def test_bad_extra_element_names_refused(name):
    with pytest.raises(ValueError):
        S3Error("X", "m", 400, extra=((name, "v"),))


def test_skew_fields():
    err = s3errors.request_time_too_skewed("20130524T000000Z", "2013-05-24T00:20:00Z")
    assert err.get("MaxAllowedSkewMilliseconds") == "900000"
    assert err.get("RequestTime") == "20130524T000000Z"
    assert err.get("ServerTime") == "2013-05-24T00:20:00Z"
