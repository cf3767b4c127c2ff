"""Pure helpers of the S3 store (seeder.store.s3_urls, s3_errors, s3.info_from_head): object
URLs, key encoding, botocore error mapping."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from seeder.store import (
    BackendAccessDenied,
    NoSuchBucket,
    NoSuchKey,
    ObjectChanged,
    StoreError,
    StoreUnavailable,
)
from seeder.store.s3 import info_from_head
from seeder.store.s3_errors import is_sse_c_head_error, translate_error
from seeder.store.s3_urls import default_endpoint, object_url, quote_key


@pytest.mark.parametrize(
    ("args", "url"),
    [
        ((None, None, "bkt", "k"), "https://s3.us-east-1.amazonaws.com/bkt/k"),
        ((None, "eu-west-1", "bkt", "a/b.iso"), "https://s3.eu-west-1.amazonaws.com/bkt/a/b.iso"),
        ((None, "eu-west-1", "bkt", "k", "virtual"), "https://bkt.s3.eu-west-1.amazonaws.com/k"),
        ((None, "cn-north-1", "bkt", "k"), "https://s3.cn-north-1.amazonaws.com.cn/bkt/k"),
        (("http://127.0.0.1:9000", None, "bkt", "k"), "http://127.0.0.1:9000/bkt/k"),
        (("http://127.0.0.1:9000/", None, "bkt", "k"), "http://127.0.0.1:9000/bkt/k"),
        (("https://gw.example/s3/", None, "bkt", "k"), "https://gw.example/s3/bkt/k"),
        (("https://minio.example", None, "bkt", "k", "virtual"), "https://bkt.minio.example/k"),
        (
            ("http://h", None, "bkt", "a b+c=d&e?f#g%h/ü ✓"),
            "http://h/bkt/a%20b%2Bc%3Dd%26e%3Ff%23g%25h/%C3%BC%20%E2%9C%93",
        ),
        (("http://h", None, "bkt", "~tilde-_.x"), "http://h/bkt/~tilde-_.x"),
    ],
)
def test_object_url(args: tuple, url: str) -> None:
    assert object_url(*args) == url


def test_default_endpoint() -> None:
    assert default_endpoint("ap-south-1") == "https://s3.ap-south-1.amazonaws.com"


def test_quote_key_keeps_slashes_only() -> None:
    assert quote_key("a/b c/+") == "a/b%20c/%2B"


def client_error(status: int, code: str, op: str = "GetObject") -> ClientError:
    response = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, op)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (client_error(404, "NoSuchKey"), NoSuchKey),
        (client_error(404, "404", "HeadObject"), NoSuchKey),
        (client_error(404, "NoSuchVersion"), NoSuchKey),
        (client_error(404, "NoSuchBucket"), NoSuchBucket),
        (client_error(403, "AccessDenied"), BackendAccessDenied),
        (client_error(403, "403", "HeadObject"), BackendAccessDenied),
        (client_error(403, "SignatureDoesNotMatch"), BackendAccessDenied),
        (client_error(412, "PreconditionFailed"), ObjectChanged),
        (client_error(412, "412", "HeadObject"), ObjectChanged),
        (client_error(503, "SlowDown"), StoreUnavailable),
        (client_error(500, "InternalError"), StoreUnavailable),
        (client_error(502, "502"), StoreUnavailable),
        (client_error(400, "RequestTimeout"), StoreUnavailable),
        (client_error(429, "TooManyRequests"), StoreUnavailable),
        (client_error(400, "InvalidArgument"), StoreError),
        (EndpointConnectionError(endpoint_url="http://x"), StoreUnavailable),
        (ConnectTimeoutError(endpoint_url="http://x"), StoreUnavailable),
        (ReadTimeoutError(endpoint_url="http://x"), StoreUnavailable),
        (ResponseStreamingError(error="reset"), StoreUnavailable),
        (NoCredentialsError(), BackendAccessDenied),
        (ConnectionResetError(104, "Connection reset by peer"), StoreUnavailable),
        (RuntimeError("??"), StoreError),
    ],
)
def test_translate_error(exc: Exception, kind: type[StoreError]) -> None:
    err = translate_error(exc, "s3://b/k")
    assert type(err) is kind
    assert str(err).startswith("s3://b/k: ")


def test_translate_error_keeps_store_errors() -> None:
    err = ObjectChanged("x")
    assert translate_error(err, "w") is err


@pytest.mark.parametrize(
    ("exc", "sse_c"),
    [
        (client_error(400, "400", "HeadObject"), True),
        (client_error(400, "BadRequest", "HeadObject"), True),
        (client_error(403, "403", "HeadObject"), False),
        (client_error(404, "404", "HeadObject"), False),
        (client_error(400, "RequestTimeout", "HeadObject"), False),
        (EndpointConnectionError(endpoint_url="http://x"), False),
    ],
)
def test_sse_c_head_error(exc: Exception, sse_c: bool) -> None:
    assert is_sse_c_head_error(exc) is sse_c


def test_info_from_head() -> None:
    from datetime import UTC, datetime

    info = info_from_head(
        "b",
        "k",
        {
            "ContentLength": 12,
            "ETag": '"abc-2"',
            "LastModified": datetime(2024, 1, 2, tzinfo=UTC),
            "VersionId": "v9",
            "SSECustomerAlgorithm": "AES256",
        },
    )
    assert (info.size, info.etag, info.version_id, info.sse_c) == (12, "abc-2", "v9", True)
    assert info.last_modified == datetime(2024, 1, 2, tzinfo=UTC).timestamp()
    bare = info_from_head("b", "k", {"ContentLength": 0, "ETag": 'W/"x"'})
    assert (bare.etag, bare.version_id, bare.sse_c, bare.last_modified) == ("x", None, False, 0.0)
