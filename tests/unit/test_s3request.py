"""seeder.s3api.request: raw request -> GetTorrent | GetObject | S3Error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seeder.s3api.errors import S3Error
from seeder.s3api.request import MAX_KEY_BYTES, GetObject, GetTorrent, S3Operation, parse

BASE = "s3.example.com:8000"


def req(target: bytes, *, method: bytes = b"GET", host: bytes = b"127.0.0.1:8000",
        base: str | None = BASE, extra: tuple[tuple[bytes, bytes], ...] = ()):
    return parse(method, target, ((b"host", host), *extra), base)


@pytest.mark.parametrize(("target", "bucket", "key"), [
    (b"/bkt/k", "bkt", "k"),
    (b"/bkt/a%20b", "bkt", "a b"),
    (b"/bkt/a+b", "bkt", "a+b"),  # + in a path is a literal plus
    (b"/bkt/a%2Bb", "bkt", "a+b"),
    (b"/bkt/%C3%BC%E6%97%A5", "bkt", "ü日"),
    (b"/bkt/dir/sub/file.bin", "bkt", "dir/sub/file.bin"),
    (b"/bkt/dir%2Ffile", "bkt", "dir/file"),
    (b"/bkt//lead", "bkt", "/lead"),
    (b"/bkt/dir/", "bkt", "dir/"),
    (b"/bkt/../x", "bkt", "../x"),  # kept literally; the store refuses escapes
    (b"/bkt/a=b&c", "bkt", "a=b&c"),
    (b"/bkt/%7E~", "bkt", "~~"),
    (b"/Legacy_Bucket.Name/k", "Legacy_Bucket.Name", "k"),  # legacy names, path style
    (b"/my.bucket-1/k", "my.bucket-1", "k"),
])
def test_path_style_keys(target, bucket, key):
    op = req(target + b"?torrent")
    assert op == GetTorrent(bucket, key)
    assert op.resource == f"/{bucket}/{key}"
    op = req(target)
    assert isinstance(op, GetObject) and (op.bucket, op.key) == (bucket, key)


@pytest.mark.parametrize(("host", "base", "bucket", "key"), [
    (b"bkt.s3.example.com:8000", "s3.example.com:8000", "bkt", "a/b"),
    (b"bkt.s3.example.com", "s3.example.com:8000", "bkt", "a/b"),  # libtorrent: no port
    (b"bkt.s3.example.com:8000", "s3.example.com", "bkt", "a/b"),
    (b"BKT.S3.Example.COM.", "s3.example.com", "bkt", "a/b"),  # case, trailing dot
    (b"my.dotted.bucket.s3.example.com", "s3.example.com", "my.dotted.bucket", "a/b"),
    (b"bkt.localhost:8000", "localhost:8000", "bkt", "a/b"),
])
def test_virtual_hosted(host, base, bucket, key):
    op = req(b"/a/b?torrent", host=host, base=base)
    assert isinstance(op, GetTorrent)
    assert (op.bucket, op.key, op.virtual_host) == (bucket, key, True)


@pytest.mark.parametrize(("host", "base"), [
    (b"s3.example.com:8000", "s3.example.com:8000"),  # the base itself
    (b"127.0.0.1:8000", "s3.example.com"),
    (b"other.example.org", "s3.example.com"),
    (b"bkt.127.0.0.1", "127.0.0.1:8000"),  # an IP base never means virtual hosting
    (b"[::1]:8000", "[::1]:8000"),
    (b"bkt.s3.example.com", None),
    (b"", "s3.example.com"),
])
def test_path_style_when_host_is_not_a_bucket(host, base):
    op = req(b"/bkt/a/b", host=host, base=base)
    assert (op.bucket, op.key, op.virtual_host) == ("bkt", "a/b", False)


def test_head_version_payer_owner():
    op = req(b"/bkt/k?torrent&versionId=3%2Fx", method=b"HEAD",
             extra=((b"x-amz-request-payer", b"Requester"),
                    (b"x-amz-expected-bucket-owner", b"111122223333")))
    assert op == GetTorrent("bkt", "k", "3/x", True, request_payer=True,
                            expected_bucket_owner="111122223333")


def test_request_payer_in_presigned_query():
    assert req(b"/bkt/k?x-amz-request-payer=requester").request_payer is True
    assert req(b"/bkt/k", extra=((b"x-amz-request-payer", b"nope"),)).request_payer is False


def test_get_object_carries_range_and_conditions():
    op = req(b"/bkt/k?versionId=v1", extra=(
        (b"range", b"bytes=0-9"), (b"if-match", b'"abc"'), (b"if-none-match", b"*"),
        (b"if-modified-since", b"Sat, 01 Jan 2000 00:00:00 GMT"),
        (b"if-unmodified-since", b"Sun, 02 Jan 2000 00:00:00 GMT"), (b"if-range", b'"e"')))
    assert op == GetObject("bkt", "k", "v1", False, "bytes=0-9", if_match='"abc"',
                           if_none_match="*", if_modified_since="Sat, 01 Jan 2000 00:00:00 GMT",
                           if_unmodified_since="Sun, 02 Jan 2000 00:00:00 GMT", if_range='"e"')


def test_repeated_etag_list_headers_are_one_list():
    op = req(b"/bkt/k", extra=((b"if-match", b'"a"'), (b"if-none-match", b'"x"'),
                               (b"if-match", b'"b", "c"'), (b"if-range", b'"r1"'),
                               (b"if-range", b'"r2"')))
    assert (op.if_match, op.if_none_match, op.if_range) == ('"a", "b", "c"', '"x"', '"r1"')


@pytest.mark.parametrize("query", [
    b"x-id=GetObject", b"cachebust=123", b"response-content-type=text%2Fplain",
    b"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00", b"&&", b"prefix=a",
])
def test_unknown_and_auth_parameters_are_ignored(query):
    assert req(b"/bkt/k?" + query) == GetObject("bkt", "k")
    assert req(b"/bkt/k?torrent&" + query) == GetTorrent("bkt", "k")


def test_signed_request_is_what_sigv4_needs():
    headers = ((b"host", b"h"), (b"x-amz-date", b"20130524T000000Z"), (b"x-amz-meta", b"\xc3\xbc"))
    op = parse(b"GET", b"/bkt/a%20b?torrent&x=1", headers, None)
    assert op.signed is not None
    assert op.signed.method == "GET"
    assert op.signed.raw_path == b"/bkt/a%20b"
    assert op.signed.raw_query == b"torrent&x=1"
    assert op.signed.headers == (("host", "h"), ("x-amz-date", "20130524T000000Z"),
                                 ("x-amz-meta", "ü"))


def test_absolute_form_target():
    op = parse(b"GET", b"http://bkt.s3.example.com/a/b?torrent", ((b"host", b"ignored"),),
               "s3.example.com")
    assert (op.bucket, op.key) == ("bkt", "a/b")
    assert op.signed is not None and op.signed.raw_path == b"/a/b"
    op = parse(b"GET", b"https://127.0.0.1:8000/bkt/k", (), "s3.example.com")
    assert (op.bucket, op.key) == ("bkt", "k")


def test_longest_key_allowed():
    key = "é" * (MAX_KEY_BYTES // 2)
    op = req(b"/bkt/" + key.encode().replace(b"\xc3", b"%C3").replace(b"\xa9", b"%A9"))
    assert op.key == key


def test_bucket_and_service_reads():
    from seeder.s3api.request import BucketRead, ListService

    assert isinstance(parse(b"GET", b"/", ((b"host", b"h"),), None), ListService)
    assert parse(b"HEAD", b"/", ((b"host", b"h"),), None).head
    op = parse(b"GET", b"/bkt?list-type=2&prefix=a%2Fb&delimiter=/", ((b"host", b"h"),), None)
    assert isinstance(op, BucketRead) and op.bucket == "bkt" and not op.location
    assert op.params == (("list-type", "2"), ("prefix", "a/b"), ("delimiter", "/"))
    assert op.resource == "/bkt"
    head = parse(b"HEAD", b"/bkt/", ((b"host", b"h"),), None)
    assert isinstance(head, BucketRead) and head.head
    loc = parse(b"GET", b"/?location", ((b"host", b"bkt.s3.example.com"),), "s3.example.com")
    assert isinstance(loc, BucketRead) and loc.location and loc.virtual_host
    payer = parse(b"GET", b"/bkt", ((b"host", b"h"), (b"x-amz-request-payer", b"requester")),
                  None)
    assert payer.request_payer


BAD = [
    # (method, target, host, base, code, status)
    (b"PUT", b"/bkt/k", b"h", None, "MethodNotAllowed", 405),
    (b"POST", b"/bkt/k?torrent", b"h", None, "MethodNotAllowed", 405),
    (b"DELETE", b"/bkt/k", b"h", None, "MethodNotAllowed", 405),
    (b"OPTIONS", b"*", b"h", None, "MethodNotAllowed", 405),
    (b"get", b"/bkt/k", b"h", None, "MethodNotAllowed", 405),
    (b"GET", b"/bkt?acl", b"h", None, "NotImplemented", 501),
    (b"GET", b"/bkt/?versions", b"h", None, "NotImplemented", 501),
    (b"GET", b"/?uploads", b"bkt.s3.example.com", "s3.example.com", "NotImplemented", 501),
    (b"GET", b"/bkt?prefix=%zz", b"h", None, "InvalidURI", 400),
    (b"GET", b"/bkt/k?acl", b"h", None, "NotImplemented", 501),
    (b"GET", b"/bkt/k?tagging", b"h", None, "NotImplemented", 501),
    (b"GET", b"/bkt/k?torrent&acl", b"h", None, "NotImplemented", 501),
    (b"GET", b"/bkt/k?uploads", b"h", None, "NotImplemented", 501),
    (b"GET", b"/bkt/k?uploadId=1", b"h", None, "NotImplemented", 501),
    (b"GET", b"/bkt/k?partNumber=1", b"h", None, "NotImplemented", 501),
    (b"GET", b"/bkt/k?attributes", b"h", None, "NotImplemented", 501),
    (b"GET", b"/bkt/k?versions", b"h", None, "NotImplemented", 501),
    (b"GET", b"/bkt/%zz", b"h", None, "InvalidURI", 400),
    (b"GET", b"/bkt/a%2", b"h", None, "InvalidURI", 400),
    (b"GET", b"/bkt/a%", b"h", None, "InvalidURI", 400),
    (b"GET", b"/b%zzk/a", b"h", None, "InvalidURI", 400),
    (b"GET", b"/bkt/k?%zz", b"h", None, "InvalidURI", 400),
    (b"GET", b"/bkt/k?versionId=%G0", b"h", None, "InvalidURI", 400),
    (b"GET", b"*", b"h", None, "InvalidURI", 400),
    (b"GET", b"bkt/k", b"h", None, "InvalidURI", 400),
    (b"GET", b"", b"h", None, "InvalidURI", 400),
    (b"GET", b"/bkt/%ff", b"h", None, "InvalidArgument", 400),
    (b"GET", b"/bkt/%C3", b"h", None, "InvalidArgument", 400),
    (b"GET", b"/bkt/\xff", b"h", None, "InvalidArgument", 400),
    (b"GET", b"/bkt/a%00b", b"h", None, "InvalidArgument", 400),
    (b"GET", b"/bkt/" + b"a" * (MAX_KEY_BYTES + 1), b"h", None, "KeyTooLongError", 400),
    (b"GET", b"/bkt/" + b"%C3%A9" * 513, b"h", None, "KeyTooLongError", 400),
    (b"GET", b"/bkt/k?versionId=", b"h", None, "InvalidArgument", 400),
    (b"GET", b"/bkt/k?versionId", b"h", None, "InvalidArgument", 400),
    (b"GET", b"/bkt/k?versionId=a&versionId=b", b"h", None, "InvalidArgument", 400),
    (b"GET", b"/ab/k", b"h", None, "InvalidBucketName", 400),
    (b"GET", b"/-bkt/k", b"h", None, "InvalidBucketName", 400),
    (b"GET", b"/../etc/passwd", b"h", None, "InvalidBucketName", 400),
    (b"GET", b"/b%20k/x", b"h", None, "InvalidBucketName", 400),
    (b"GET", b"/" + b"b" * 256 + b"/x", b"h", None, "InvalidBucketName", 400),
    (b"GET", b"/b\xc3\xbck/x", b"h", None, "InvalidBucketName", 400),
    (b"GET", b"/k", b"bad_bkt.s3.example.com", "s3.example.com", "InvalidBucketName", 400),
    (b"GET", b"/k", b"a..b.s3.example.com", "s3.example.com", "InvalidBucketName", 400),
    (b"GET", b"/k", b"ab.s3.example.com", "s3.example.com", "InvalidBucketName", 400),
    (b"GET", b"/k", b"-ab.s3.example.com", "s3.example.com", "InvalidBucketName", 400),
    (b"GET", b"/k", b"b\xffk.s3.example.com", "s3.example.com", "InvalidBucketName", 400),
]


@pytest.mark.parametrize(("method", "target", "host", "base", "code", "status"), BAD,
                         ids=[f"{i}-{b[4]}" for i, b in enumerate(BAD)])
def test_bad_requests(method, target, host, base, code, status):
    with pytest.raises(S3Error) as info:
        parse(method, target, ((b"host", host),), base)
    assert (info.value.code, info.value.status) == (code, status)


def test_method_not_allowed_carries_allow():
    with pytest.raises(S3Error) as info:
        req(b"/bkt/k", method=b"PUT")
    assert (b"allow", b"GET, HEAD") in info.value.headers
    assert info.value.get("Method") == "PUT"


def test_errors_name_the_resource():
    with pytest.raises(S3Error) as info:
        req(b"/bkt/k?acl")
    assert info.value.resource == "/bkt/k"


_http_bytes = st.binary(max_size=60) | st.sampled_from(
    [b"/", b"/bkt/k", b"?torrent", b"%", b"%C3", b"&versionId=", b"/bkt", b"http://", b"\x00"]
).flatmap(lambda p: st.lists(st.sampled_from(
    [p, b"/", b"%2", b"a", b"?", b"&", b"=", b"torrent", b"acl", b"\xff"]), max_size=12).map(
    b"".join))


@given(st.sampled_from([b"GET", b"HEAD", b"PUT", b""]), _http_bytes, st.binary(max_size=40),
       st.sampled_from([None, "s3.example.com", "localhost:8000", "[::1]", ":", ""]))
def test_fuzz_only_operations_or_s3errors(method, target, host, base):
    try:
        op = parse(method, target, ((b"host", host), (b"range", b"\xff")), base)
    except S3Error as err:
        assert 400 <= err.status < 600
        return
    assert isinstance(op, S3Operation)
    if isinstance(op, GetTorrent | GetObject):
        assert op.bucket and op.key and "\x00" not in op.key
