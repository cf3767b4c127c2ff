"""S3Store against a real moto server in its own process (tests/conftest.py), and against
a scripted HTTP peer for the answers moto never gives (SSE-C 400, 403, 503 SlowDown, 500)."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import random
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import trio

from seeder.config import BucketConfig
from seeder.store import (
    BackendAccessDenied,
    NoSuchBucket,
    NoSuchKey,
    ObjectChanged,
    ObjectInfo,
    Store,
    StoreError,
    StoreUnavailable,
    make_store,
)
from seeder.store.s3 import S3Store
from tests.conftest import MotoServer
from tests.helpers import free_port

SIZE = 100_003
PAYLOAD = random.Random(11).randbytes(SIZE)
ODD_KEYS = ["with space.bin", "ünï/cödé ✓.txt", "a+b=c&d.txt", "q?x#y%20z", "dir/sub/leaf"]
HANG_GUARD = 60  # seconds: only stops a hung test, never asserts speed


def store_at(moto: MotoServer, bucket: str, **kwargs) -> S3Store:
    kwargs.setdefault("threads", 2)
    return S3Store(bucket, endpoint_url=moto.endpoint_url, region="us-east-1", **kwargs)


@pytest.fixture
def moto_store(moto_server: MotoServer, s3_bucket: str) -> Iterator[S3Store]:
    yield store_at(moto_server, s3_bucket)


async def test_head_plain_object(moto_server: MotoServer, s3_bucket: str) -> None:
    moto_server.client().put_object(Bucket=s3_bucket, Key="obj", Body=PAYLOAD)
    store = store_at(moto_server, s3_bucket)
    info = await store.head("obj")
    assert info.bucket == s3_bucket and info.key == "obj"
    assert info.size == SIZE
    assert info.etag == hashlib.md5(PAYLOAD).hexdigest()  # single-part ETag, unquoted
    assert info.last_modified > 1_600_000_000
    assert info.version_id is None
    assert info.sse_c is False
    await store.aclose()


async def test_head_versions(moto_server: MotoServer, s3_versioned_bucket: str) -> None:
    c = moto_server.client()
    v1 = c.put_object(Bucket=s3_versioned_bucket, Key="obj", Body=b"first")["VersionId"]
    v2 = c.put_object(Bucket=s3_versioned_bucket, Key="obj", Body=b"second!")["VersionId"]
    assert v1 != v2
    store = store_at(moto_server, s3_versioned_bucket)
    latest = await store.head("obj")
    assert (latest.size, latest.version_id) == (7, v2)
    old = await store.head("obj", version_id=v1)
    assert (old.size, old.version_id, old.etag) == (5, v1, hashlib.md5(b"first").hexdigest())
    # A pinned version stays readable after later overwrites: versions are immutable.
    c.put_object(Bucket=s3_versioned_bucket, Key="obj", Body=b"third")
    assert await store.read(old, 0, 100) == b"first"
    with pytest.raises(NoSuchKey):
        await store.head("obj", version_id="no-such-version")


async def test_list_paginates_in_key_order(moto_server: MotoServer, s3_bucket: str) -> None:
    c = moto_server.client()
    keys = [*ODD_KEYS, "a", "b/c", "b.d"]
    for i, k in enumerate(keys):
        c.put_object(Bucket=s3_bucket, Key=k, Body=b"x" * i)
    store = store_at(moto_server, s3_bucket, page_size=2)  # 8 keys: 4 pages
    infos = [i async for i in store.list()]
    assert [i.key for i in infos] == sorted(keys, key=lambda k: k.encode())
    for info in infos:
        head = await store.head(info.key)
        assert (info.size, info.etag) == (head.size, head.etag)
        assert info.last_modified == pytest.approx(head.last_modified, abs=1.0)


async def test_list_empty_bucket(moto_store: S3Store) -> None:
    assert [i async for i in moto_store.list()] == []


@pytest.mark.parametrize(
    ("start", "length", "want"),
    [
        (0, 0, (0, 0)),
        (0, SIZE, (0, SIZE)),
        (0, 1, (0, 1)),
        (SIZE - 1, 1, (SIZE - 1, SIZE)),  # the last byte
        (SIZE - 1, 10, (SIZE - 1, SIZE)),  # past the end: short
        (SIZE, 5, (SIZE, SIZE)),
        (SIZE + 10, 5, (SIZE, SIZE)),
        (12_345, 67_890, (12_345, 12_345 + 67_890)),
    ],
)
async def test_ranged_reads_are_exact(
    moto_server: MotoServer, s3_bucket: str, start: int, length: int, want: tuple[int, int]
) -> None:
    moto_server.client().put_object(Bucket=s3_bucket, Key="obj", Body=PAYLOAD)
    store = store_at(moto_server, s3_bucket)
    info = await store.head("obj")
    assert await store.read(info, start, length) == PAYLOAD[want[0] : want[1]]
    streamed = [c async for c in store.stream(info, start, length, chunk=8192)]
    assert all(0 < len(c) <= 8192 for c in streamed)
    assert b"".join(streamed) == PAYLOAD[want[0] : want[1]]


async def test_overwrite_between_head_and_read(moto_server: MotoServer, s3_bucket: str) -> None:
    c = moto_server.client()
    c.put_object(Bucket=s3_bucket, Key="obj", Body=PAYLOAD)
    store = store_at(moto_server, s3_bucket)
    info = await store.head("obj")
    assert len(await store.read(info, 0, 10)) == 10
    c.put_object(Bucket=s3_bucket, Key="obj", Body=PAYLOAD[::-1])  # same size, new bytes
    with pytest.raises(ObjectChanged):
        await store.read(info, 0, 10)
    with pytest.raises(ObjectChanged):
        [chunk async for chunk in store.stream(info, 0, 10)]


async def test_missing_key_and_bucket(moto_server: MotoServer, s3_bucket: str) -> None:
    store = store_at(moto_server, s3_bucket)
    with pytest.raises(NoSuchKey):
        await store.head("nope")
    with pytest.raises(NoSuchKey):
        await store.read(ObjectInfo(s3_bucket, "nope", 10, "0" * 32, 0.0), 0, 10)
    gone = store_at(moto_server, "no-such-bucket-" + s3_bucket)
    with pytest.raises(NoSuchBucket):
        await gone.head("nope")
    with pytest.raises(NoSuchBucket):
        await gone.read(ObjectInfo(gone.bucket, "nope", 10, "0" * 32, 0.0), 0, 10)
    with pytest.raises(NoSuchBucket):
        [i async for i in gone.list()]


async def test_unreachable_endpoint_is_unavailable() -> None:
    # A port that was just free on loopback: connection refused, at once and on every retry.
    store = S3Store("bkt", endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=2)
    with trio.fail_after(HANG_GUARD):
        with pytest.raises(StoreUnavailable):
            await store.head("k")
        with pytest.raises(StoreUnavailable):
            [i async for i in store.list()]
        with pytest.raises(StoreUnavailable):
            await store.read(ObjectInfo("bkt", "k", 10, "e", 0.0), 0, 10)


async def test_silent_endpoint_times_out_as_unavailable() -> None:
    # A listening socket nobody accepts from: connects (kernel backlog), never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        store = S3Store(
            "bkt", endpoint_url=f"http://127.0.0.1:{port}", read_timeout=0.3, max_attempts=1
        )
        with trio.fail_after(HANG_GUARD), pytest.raises(StoreUnavailable):
            await store.head("k")


@pytest.mark.parametrize("key", ODD_KEYS)
async def test_odd_keys_round_trip(moto_server: MotoServer, s3_bucket: str, key: str) -> None:
    c = moto_server.client()
    c.put_object(Bucket=s3_bucket, Key=key, Body=PAYLOAD[:1000], ACL="public-read")
    store = store_at(moto_server, s3_bucket)
    info = await store.head(key)
    assert info.key == key and info.size == 1000
    assert await store.read(info, 10, 20) == PAYLOAD[10:30]
    assert [i.key async for i in store.list()] == [key]
    # origin_url: fetched by a plain HTTP client it is the object (BEP 19 web seed use).
    url = store.origin_url(key)
    assert url is not None and url.startswith(f"{moto_server.endpoint_url}/{s3_bucket}/")
    assert " " not in url and "+" not in url.split(s3_bucket, 1)[1]
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read() == PAYLOAD[:1000]


async def test_virtual_style_origin_url(moto_server: MotoServer, s3_bucket: str) -> None:
    moto_server.client().put_object(
        Bucket=s3_bucket, Key="v k.bin", Body=b"virtual", ACL="public-read"
    )
    endpoint = f"http://localhost:{moto_server.port}"
    store = S3Store(s3_bucket, endpoint_url=endpoint, addressing_style="virtual")
    url = store.origin_url("v k.bin")
    assert url == f"http://{s3_bucket}.localhost:{moto_server.port}/v%20k.bin"
    # Connect to loopback ourselves: the bucket is named by the Host header alone.
    parts = urlsplit(url)
    conn = http.client.HTTPConnection("127.0.0.1", moto_server.port, timeout=10)
    try:
        conn.request("GET", parts.path, headers={"Host": parts.netloc})
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"virtual")
    finally:
        conn.close()


async def test_presigned_url_reads_a_private_object(
    moto_server: MotoServer, s3_bucket: str
) -> None:
    moto_server.client().put_object(Bucket=s3_bucket, Key="private k+", Body=b"secret")
    store = make_store(
        BucketConfig(
            name=s3_bucket,
            backend="s3",
            endpoint_url=moto_server.endpoint_url,
            region="us-east-1",
            access_key="testing",
            secret_key="testing",
            public=False,
        )
    )
    plain = store.origin_url("private k+")
    assert plain is not None
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(plain, timeout=10)
    assert denied.value.code == 403
    signed = store.presigned_url("private k+", 300)
    assert signed is not None and "X-Amz-Signature=" in signed
    with urllib.request.urlopen(signed, timeout=10) as r:
        assert r.read() == b"secret"
    await store.aclose()


async def test_make_store_s3_is_a_store(moto_server: MotoServer, s3_bucket: str) -> None:
    moto_server.client().put_object(Bucket=s3_bucket, Key="k", Body=b"0123456789")
    store = make_store(
        BucketConfig(name=s3_bucket, backend="s3", endpoint_url=moto_server.endpoint_url),
        threads=3,
    )
    assert isinstance(store, Store)
    info = await store.head("k")
    assert await store.read(info, 3, 4) == b"3456"
    await store.aclose()
    await store.aclose()  # idempotent
    with pytest.raises(StoreError):
        await store.head("k")


@pytest.mark.xfail(
    strict=True, reason="moto 5.2 serves SSE-C objects without the key (no 400 on HEAD)"
)
async def test_sse_c_object_on_moto(moto_server: MotoServer, s3_bucket: str) -> None:
    moto_server.client().put_object(
        Bucket=s3_bucket,
        Key="enc",
        Body=b"secret",
        SSECustomerAlgorithm="AES256",
        SSECustomerKey=b"k" * 32,
    )
    info = await store_at(moto_server, s3_bucket).head("enc")
    assert info.sse_c


# -- a scripted S3 peer: the answers moto does not give ---------------------------------

ERROR_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
    b"<Message>scripted</Message><RequestId>r</RequestId></Error>"
)
SCRIPT: dict[str, tuple[int, bytes]] = {
    "/bkt/ssec": (400, b""),  # S3's answer to a HEAD of an SSE-C object without the key
    "/bkt/denied": (403, b"AccessDenied"),
    "/bkt/slow": (503, b"SlowDown"),
    "/bkt/boom": (500, b"InternalError"),
    "/bkt/throttled": (400, b"RequestTimeout"),
}


class ScriptedS3(http.server.BaseHTTPRequestHandler):
    hits: dict[str, int]

    def _answer(self, with_body: bool) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        status, code = SCRIPT.get(self.path, (404, b"NoSuchKey"))
        body = ERROR_XML % code if code else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[tuple[str, dict[str, int]]]:
    hits: dict[str, int] = {}
    handler = type("Handler", (ScriptedS3,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def test_head_400_means_sse_c(scripted: tuple[str, dict[str, int]]) -> None:
    url, hits = scripted
    store = S3Store("bkt", endpoint_url=url, max_attempts=1)
    info = await store.head("ssec")
    assert info.sse_c and info.key == "ssec"
    with pytest.raises(StoreError):
        await store.read(info, 0, 10)
    # One HEAD, no GET: the read was refused without a request. (botocore's region
    # redirector also HEADs the bucket after a 400 HeadObject, as it would at AWS.)
    assert hits["/bkt/ssec"] == 1


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("denied", BackendAccessDenied),
        ("slow", StoreUnavailable),
        ("boom", StoreUnavailable),
        ("throttled", StoreUnavailable),
        ("missing", NoSuchKey),
    ],
)
async def test_error_answers_map(
    scripted: tuple[str, dict[str, int]], key: str, error: type[StoreError]
) -> None:
    url, hits = scripted
    store = S3Store("bkt", endpoint_url=url, max_attempts=2)
    with trio.fail_after(HANG_GUARD):
        with pytest.raises(error):
            await store.read(ObjectInfo("bkt", key, 10, "e", 0.0), 0, 10)
    retried = error is StoreUnavailable
    assert hits[f"/bkt/{key}"] == (2 if retried else 1)
