"""GetObjectTorrent end to end: the daemon in-process on loopback, real clients (boto3, the
aws CLI, urllib, raw sockets), a real S3 endpoint (moto server) and a local directory."""

from __future__ import annotations

import hashlib
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import boto3
import libtorrent as lt
import pytest
import trio
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from seeder.config import (
    BucketConfig,
    Config,
    CredentialConfig,
    HostPort,
    MetricsConfig,
    ScannerConfig,
    SeedingConfig,
    ServerConfig,
    StateConfig,
    TrackerConfig,
)
from seeder.ops.daemon import Daemon, serve
from tests.helpers import free_port
from tracker import bencode

AK, SK = "AKIDSEEDERTEST", "seeder-test-secret"
AK_DATA_ONLY, SK_DATA_ONLY = "AKIDDATAONLY", "data-only-secret"
FIVE_GIB = 5368709120


@dataclass
class Env:
    daemon: Daemon
    url: str
    local_dir: Path
    moto: Any
    buckets: dict[str, str]  # role -> bucket name

    def client(self, access_key: str = AK, secret: str = SK, **config: Any) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret,
            config=BotoConfig(
                **{
                    "signature_version": "s3v4",
                    "s3": {"addressing_style": "path"},
                    "retries": {"max_attempts": 1},
                    **config,
                }
            ),
        )


async def run_sync(fn: Callable[..., Any], *args: Any) -> Any:
    return await trio.to_thread.run_sync(fn, *args)


def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


@pytest.fixture
async def env(tmp_path: Path, moto_server: Any, nursery: trio.Nursery) -> AsyncIterator[Env]:
    local = tmp_path / "data"
    local.mkdir()
    (local / "hello.txt").write_bytes(b"hello, torrent world\n")
    s3 = moto_server.client()
    names = {role: moto_server.create_bucket(prefix=role) for role in ("pub", "priv", "rp")}
    for role, name in names.items():
        # Only the public bucket is readable anonymously at the origin (its web seed).
        acl = "public-read" if role == "pub" else "private"
        s3.put_object(Bucket=name, Key="obj.bin", Body=os.urandom(300_000), ACL=acl)
    common = {"backend": "s3", "endpoint_url": moto_server.endpoint_url, "region": "us-east-1",
              "access_key": "testing", "secret_key": "testing"}
    config = Config(
        server=ServerConfig(listen=HostPort("127.0.0.1", 0), public_url="http://localhost:1"),
        tracker=TrackerConfig(listen=HostPort("127.0.0.1", 0), udp_listen=HostPort("127.0.0.1", 0)),
        metrics=MetricsConfig(listen=HostPort("127.0.0.1", 0)),
        state=StateConfig(dir=str(tmp_path / "state")),
        scanner=ScannerConfig(enabled=False),
        seeding=SeedingConfig(enabled=True, listen_interfaces="127.0.0.1:0"),
        buckets=(
            BucketConfig(name="data", backend="local", path=str(local)),
            BucketConfig(name=names["pub"], **common),
            BucketConfig(name=names["priv"], public=False, presign_webseed=3600, **common),
            BucketConfig(name=names["rp"], requester_pays=True, **common),
            # An endpoint nobody listens on: the backend is unreachable.
            BucketConfig(name="down", backend="s3", endpoint_url=f"http://127.0.0.1:{free_port()}",
                         region="us-east-1", access_key="x", secret_key="y"),
        ),
        credentials=(
            CredentialConfig(AK, SK, ("*",)),
            CredentialConfig(AK_DATA_ONLY, SK_DATA_ONLY, ("data",)),
        ),
    )
    daemon: Daemon = await nursery.start(lambda task_status: serve(config, task_status=task_status))
    assert daemon.bound is not None
    host, port = daemon.bound.s3
    yield Env(daemon, f"http://{host}:{port}", local, moto_server, names)


def check_torrent(data: bytes, content: bytes, name: str) -> dict:
    """The torrent loads in libtorrent and its piece hashes are hashlib's over ``content``."""
    meta = bencode.decode(data)
    info = meta[b"info"]
    assert info[b"name"] == name.encode()
    assert info[b"length"] == len(content)
    plen = info[b"piece length"]
    expected = b"".join(
        hashlib.sha1(content[i : i + plen]).digest() for i in range(0, len(content), plen)
    )
    assert info[b"pieces"] == expected
    ti = lt.torrent_info(data)
    assert ti.total_size() == len(content)
    return meta


async def test_boto3_signed_local_bucket(env: Env) -> None:
    c = env.client()
    resp = await run_sync(lambda: c.get_object_torrent(Bucket="data", Key="hello.txt"))
    body = resp["Body"].read()
    meta = check_torrent(body, b"hello, torrent world\n", "hello.txt")
    assert meta[b"info"][b"x-amz-bucket"] == b"data"
    assert meta[b"info"][b"x-amz-key"] == b"hello.txt"
    headers = resp["ResponseMetadata"]["HTTPHeaders"]
    assert headers["content-type"] == "application/x-bittorrent"
    assert 'filename="hello.txt.torrent"' in headers["content-disposition"]
    assert headers["content-length"] == str(len(body))
    assert headers["x-amz-request-id"]


async def test_boto3_s3_backend_and_web_seed_is_the_object_url(env: Env) -> None:
    bucket = env.buckets["pub"]
    content = env.moto.client().get_object(Bucket=bucket, Key="obj.bin")["Body"].read()
    c = env.client()
    body = (await run_sync(lambda: c.get_object_torrent(Bucket=bucket, Key="obj.bin")))[
        "Body"
    ].read()
    meta = check_torrent(body, content, "obj.bin")
    (seed,) = meta[b"url-list"] if isinstance(meta[b"url-list"], list) else [meta[b"url-list"]]
    status, _, fetched = await run_sync(fetch, seed.decode())
    assert (status, fetched) == (200, content)


@pytest.mark.parametrize(
    "key",
    [
        "with space.txt",
        "ünïcødé/ファイル.bin",
        "a+b=c&d.txt",
        "deep/er/path/x.txt",
        "q?uestion.txt",
    ],
)
async def test_awkward_keys(env: Env, key: str) -> None:
    path = env.local_dir / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.encode() * 3)
    c = env.client()
    resp = await run_sync(lambda: c.get_object_torrent(Bucket="data", Key=key))
    check_torrent(resp["Body"].read(), key.encode() * 3, key.rsplit("/", 1)[-1])
    cd = resp["ResponseMetadata"]["HTTPHeaders"]["content-disposition"]
    assert "filename*=UTF-8''" in cd


async def test_anonymous_curl_on_public_bucket(env: Env) -> None:
    status, headers, body = await run_sync(fetch, f"{env.url}/data/hello.txt?torrent")
    assert status == 200
    assert headers["content-type"] == "application/x-bittorrent"
    check_torrent(body, b"hello, torrent world\n", "hello.txt")


async def test_head_has_headers_without_body(env: Env) -> None:
    status, headers, body = await run_sync(fetch, f"{env.url}/data/hello.txt?torrent", "HEAD")
    assert status == 200 and body == b""
    assert int(headers["content-length"]) > 0
    assert headers["content-type"] == "application/x-bittorrent"


async def test_presigned_url(env: Env) -> None:
    bucket = env.buckets["priv"]
    c = env.client()
    url = c.generate_presigned_url(
        "get_object_torrent", Params={"Bucket": bucket, "Key": "obj.bin"}, ExpiresIn=300
    )
    status, _, body = await run_sync(fetch, url)
    assert status == 200, body
    meta = bencode.decode(body)
    assert meta[b"info"][b"name"] == b"obj.bin"
    # A private bucket's web seed is a presigned object URL: it fetches the object.
    (seed,) = meta[b"url-list"]
    assert b"X-Amz-Signature=" in seed
    content = env.moto.client().get_object(Bucket=bucket, Key="obj.bin")["Body"].read()
    assert await run_sync(fetch, seed.decode()) == (200, ANY, content)
    tampered = url.replace("X-Amz-Expires=300", "X-Amz-Expires=301")
    status, _, body = await run_sync(fetch, tampered)
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body


def error_code(fn: Callable[[], Any]) -> tuple[str, int]:
    try:
        fn()
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("expected an S3 error")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("private-anonymous", ("AccessDenied", 403)),
        ("wrong-secret", ("SignatureDoesNotMatch", 403)),
        ("unknown-key-id", ("InvalidAccessKeyId", 403)),
        ("no-grant-on-bucket", ("AccessDenied", 403)),
        ("no-such-key", ("NoSuchKey", 404)),
        ("no-such-bucket", ("NoSuchBucket", 404)),
        ("requester-pays-without-header", ("AccessDenied", 403)),
        ("expected-owner-mismatch", ("AccessDenied", 403)),
        ("too-large", ("InvalidRequest", 400)),
        ("empty-object", ("InvalidRequest", 400)),
        ("key-escapes-root", ("NoSuchKey", 404)),
    ],
)
async def test_errors(env: Env, case: str, expected: tuple[str, int]) -> None:
    from botocore import UNSIGNED

    priv, rp = env.buckets["priv"], env.buckets["rp"]
    if case == "too-large":
        with open(env.local_dir / "huge.iso", "wb") as f:
            f.truncate(FIVE_GIB)  # sparse: no 5 GiB written
    if case == "empty-object":
        (env.local_dir / "empty").write_bytes(b"")
    calls: dict[str, Callable[[], Any]] = {
        "private-anonymous": lambda: env.client(signature_version=UNSIGNED).get_object_torrent(
            Bucket=priv, Key="obj.bin"
        ),
        "wrong-secret": lambda: env.client(AK, "nope").get_object_torrent(
            Bucket="data", Key="hello.txt"
        ),
        "unknown-key-id": lambda: env.client("AKIDUNKNOWN", SK).get_object_torrent(
            Bucket="data", Key="hello.txt"
        ),
        "no-grant-on-bucket": lambda: env.client(AK_DATA_ONLY, SK_DATA_ONLY).get_object_torrent(
            Bucket=priv, Key="obj.bin"
        ),
        "no-such-key": lambda: env.client().get_object_torrent(Bucket="data", Key="missing"),
        "no-such-bucket": lambda: env.client().get_object_torrent(Bucket="nobucket", Key="k"),
        "requester-pays-without-header": lambda: env.client().get_object_torrent(
            Bucket=rp, Key="obj.bin"
        ),
        "expected-owner-mismatch": lambda: env.client().get_object_torrent(
            Bucket="data", Key="hello.txt", ExpectedBucketOwner="111122223333"
        ),
        "too-large": lambda: env.client().get_object_torrent(Bucket="data", Key="huge.iso"),
        "empty-object": lambda: env.client().get_object_torrent(Bucket="data", Key="empty"),
        "key-escapes-root": lambda: env.client().get_object_torrent(
            Bucket="data", Key="../outside.txt"
        ),
    }
    assert await run_sync(error_code, calls[case]) == expected


async def test_too_large_message_is_amazons(env: Env) -> None:
    with open(env.local_dir / "huge.iso", "wb") as f:
        f.truncate(FIVE_GIB)
    status, _, body = await run_sync(fetch, f"{env.url}/data/huge.iso?torrent")
    assert status == 400
    assert b"Torrent creation is not supported for objects larger than 5368709120" in body


async def test_requester_pays(env: Env) -> None:
    rp = env.buckets["rp"]
    c = env.client()
    resp = await run_sync(
        lambda: c.get_object_torrent(Bucket=rp, Key="obj.bin", RequestPayer="requester")
    )
    assert resp["RequestCharged"] == "requester"
    assert bencode.decode(resp["Body"].read())[b"info"][b"name"] == b"obj.bin"


async def test_clock_skew(env: Env) -> None:
    env.daemon.api.clock = lambda: time.time() + 16 * 60
    c = env.client()
    code = await run_sync(
        error_code, lambda: c.get_object_torrent(Bucket="data", Key="hello.txt")
    )
    assert code == ("RequestTimeTooSkewed", 403)


async def test_aws_cli(env: Env, tmp_path: Path) -> None:
    out = tmp_path / "cli.torrent"
    cli_env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": AK,
        "AWS_SECRET_ACCESS_KEY": SK,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    cli_env.pop("AWS_SESSION_TOKEN", None)
    cli_env.pop("AWS_SECURITY_TOKEN", None)
    cmd = [sys.executable, "-m", "awscli", "s3api", "get-object-torrent", "--endpoint-url",
           env.url, "--bucket", "data", "--key", "hello.txt", str(out)]
    proc = await trio.run_process(cmd, env=cli_env, capture_stdout=True, capture_stderr=True,
                                  check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    check_torrent(out.read_bytes(), b"hello, torrent world\n", "hello.txt")


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"POST /data/hello.txt?torrent HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
         405, b"MethodNotAllowed"),
        (b"DELETE /data/hello.txt?torrent HTTP/1.1\r\nHost: x\r\n\r\n", 405, b"MethodNotAllowed"),
        (b"GET /data/%ZZbad?torrent HTTP/1.1\r\nHost: x\r\n\r\n", 400, None),
        (b"GET /data/a%00b?torrent HTTP/1.1\r\nHost: x\r\n\r\n", 400, None),
        (b"GET /data/hello.txt?torrent HTTP/1.1\r\nHost: x\r\n"
         b"Authorization: AWS4-HMAC-SHA256 garbage\r\n\r\n", 400, b"AuthorizationHeaderMalformed"),
        (b"GET /data/hello.txt?torrent HTTP/1.1\r\nHost: x\r\n"
         b"Authorization: AWS AKID:c2lnbmF0dXJl\r\n\r\n", 403, b"InvalidAccessKeyId"),
    ],
    ids=["post", "delete", "bad-percent", "nul", "malformed-auth", "sigv2"],
)
async def test_raw_bad_requests_get_s3_xml(env: Env, raw: bytes, status: int,
                                           code: bytes | None) -> None:
    host, port = env.daemon.bound.s3
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(raw.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
    data = b""
    with trio.fail_after(10):
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode(), data
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>')
    assert b"Traceback" not in data
    if code is not None:
        assert b"<Code>" + code + b"</Code>" in body


async def test_web_seed_ranges(env: Env) -> None:
    content = b"hello, torrent world\n"
    url = f"{env.url}/data/hello.txt"
    status, _, _ = await run_sync(fetch, url)
    assert status == 404  # no torrent yet: not served (a web seed, not an S3 proxy)
    assert (await run_sync(fetch, url + "?torrent"))[0] == 200
    status, headers, body = await run_sync(fetch, url, "GET", {"Range": "bytes=7-13"})
    assert (status, body) == (206, content[7:14])
    assert headers["content-range"] == f"bytes 7-13/{len(content)}"
    status, _, body = await run_sync(fetch, url)
    assert (status, body) == (200, content)
    status, headers, _ = await run_sync(fetch, url, "GET", {"Range": "bytes=999-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(content)}"


async def test_changed_object_gets_a_new_torrent(env: Env) -> None:
    c = env.client()

    def get() -> bytes:
        return c.get_object_torrent(Bucket="data", Key="hello.txt")["Body"].read()

    first = await run_sync(get)
    (env.local_dir / "hello.txt").write_bytes(b"something else entirely, longer\n")
    second = await run_sync(get)
    assert first != second
    check_torrent(second, b"something else entirely, longer\n", "hello.txt")


async def test_metrics_after_real_traffic(env: Env) -> None:
    import shutil

    from prometheus_client.parser import text_string_to_metric_families

    assert (await run_sync(fetch, f"{env.url}/data/hello.txt?torrent"))[0] == 200
    assert (await run_sync(fetch, f"{env.url}/data/missing?torrent"))[0] == 404
    host, port = env.daemon.bound.metrics
    status, _, body = await run_sync(fetch, f"http://{host}:{port}/metrics")
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(body.decode())
        for s in fam.samples
    }
    ok = ("seeder_api_requests_total", (("code", "200"), ("operation", "GetObjectTorrent")))
    missing = ("seeder_api_requests_total", (("code", "404"), ("operation", "GetObjectTorrent")))
    assert samples[ok] == 1 and samples[missing] == 1
    assert samples[("seeder_generations_total", (("result", "ok"),))] == 1
    assert samples[("seeder_catalog_torrents", ())] == 1
    errors = ("seeder_backend_errors_total", (("bucket", "data"), ("kind", "not_found")))
    assert samples[errors] == 1
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (scripts/test.sh installs Debian's prometheus)")
    proc = await trio.run_process(
        [promtool, "check", "metrics"], stdin=body, capture_stdout=True, capture_stderr=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


async def raw_request(env: Env, raw: bytes) -> tuple[bytes, bytes]:
    host, port = env.daemon.bound.s3
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(raw)
    data = b""
    with trio.fail_after(30):
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


async def test_virtual_hosted_style(env: Env) -> None:
    # Host: <bucket>.<host of server.public_url>, without the port as libtorrent sends it.
    head, body = await raw_request(
        env, b"GET /hello.txt?torrent HTTP/1.1\r\nHost: data.localhost\r\nConnection: close\r\n\r\n"
    )
    assert head.startswith(b"HTTP/1.1 200 "), head
    check_torrent(body, b"hello, torrent world\n", "hello.txt")


async def test_unreachable_backend_is_503_with_retry_after(env: Env) -> None:
    status, headers, body = await run_sync(fetch, f"{env.url}/down/obj.bin?torrent")
    assert status == 503, body
    assert int(headers["retry-after"]) > 0
    assert b"<Code>ServiceUnavailable</Code>" in body or b"<Code>SlowDown</Code>" in body
