"""SigV2 and the read-only calls around a torrent, end to end: the daemon in-process on
loopback, real boto3 (SigV2 presigned and header-signed, SigV4, paginators), the aws CLI,
s3cmd, a local directory bucket and S3-backed buckets on the S3 servers of the suite."""

from __future__ import annotations

import os
import shutil
import sys
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import trio
from botocore import UNSIGNED
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
from tracker import bencode

AK, SK = "AKIDREADS", "reads-secret"
AK_PUB, SK_PUB = "AKIDPUBONLY", "pub-only-secret"
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
# the tests that read an S3 backend run against both S3 servers of the suite
BOTH = pytest.mark.parametrize("s3_server", ["moto", "s3rver"], indirect=True)
KEYS = ["a.txt", "dir/one.bin", "dir/sub/two.bin", "dir/three.bin", "é t+é.txt", "z/last"]


@dataclass
class Env:
    daemon: Daemon
    url: str
    s3: dict[str, str]  # role -> daemon bucket backed by the S3 server

    def client(self, access_key: str | None = AK, secret: str = SK, **config: Any) -> Any:
        cfg: dict[str, Any] = {"s3": {"addressing_style": "path"},
                               "retries": {"max_attempts": 1}, **config}
        if access_key is None:
            cfg["signature_version"] = UNSIGNED
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=access_key or "x", aws_secret_access_key=secret,
                            config=BotoConfig(**cfg))


async def run_sync(fn: Callable[..., Any], *args: Any) -> Any:
    return await trio.to_thread.run_sync(fn, *args)


def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def error_code(body: bytes) -> str:
    return ET.fromstring(body).findtext("Code") or ""


@pytest.fixture
async def env(tmp_path: Path, s3_server: Any, nursery: trio.Nursery) -> AsyncIterator[Env]:
    for name in ("pub", "priv"):
        root = tmp_path / name
        for key in KEYS:
            path = root.joinpath(*key.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(key.encode() * 100)
    backend = s3_server.client()
    s3 = {role: s3_server.create_bucket(prefix=role) for role in ("s3pub", "s3priv")}
    for name in s3.values():
        for key in KEYS:
            backend.put_object(Bucket=name, Key=key, Body=key.encode() * 100)
    common = {"backend": "s3", "endpoint_url": s3_server.endpoint_url, "region": "us-east-1",
              "access_key": s3_server.access_key, "secret_key": s3_server.secret_key}
    config = Config(
        server=ServerConfig(listen=HostPort("127.0.0.1", 0), public_url="http://localhost:1"),
        tracker=TrackerConfig(enabled=False, listen=None),
        metrics=MetricsConfig(listen=None),
        state=StateConfig(dir=str(tmp_path / "state")),
        scanner=ScannerConfig(enabled=False),
        seeding=SeedingConfig(enabled=False),
        buckets=(
            BucketConfig(name="pub", backend="local", path=str(tmp_path / "pub")),
            BucketConfig(name="priv", backend="local", path=str(tmp_path / "priv"),
                         public=False),
            BucketConfig(name=s3["s3pub"], **common),
            BucketConfig(name=s3["s3priv"], public=False, **common),
        ),
        credentials=(CredentialConfig(AK, SK, ("*",)), CredentialConfig(AK_PUB, SK_PUB, ("pub",))),
    )
    daemon: Daemon = await nursery.start(lambda task_status: serve(config, task_status=task_status))
    assert daemon.bound is not None
    host, port = daemon.bound.s3
    yield Env(daemon, f"http://{host}:{port}", s3)


# -- SigV2 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("signature_version", [None, "s3"])
async def test_sigv2_presigned_torrent(env: Env, signature_version: str | None) -> None:
    # A default client presigns with SigV2 against a custom endpoint; "s3" always does.
    config = {} if signature_version is None else {"signature_version": signature_version}
    c = env.client(**config)
    url = c.generate_presigned_url("get_object_torrent",
                                   Params={"Bucket": "priv", "Key": "dir/one.bin"})
    assert "AWSAccessKeyId=" in url and "Signature=" in url and "torrent" in url
    status, headers, body = await run_sync(fetch, url)
    assert status == 200, body
    assert headers["content-type"] == "application/x-bittorrent"
    assert bencode.decode(body)[b"info"][b"x-amz-key"] == b"dir/one.bin"
    # the same URL signed by a wrong secret: SigV2's SignatureDoesNotMatch
    bad = env.client(secret="wrong", **config).generate_presigned_url(
        "get_object_torrent", Params={"Bucket": "priv", "Key": "dir/one.bin"})
    status, _, body = await run_sync(fetch, bad)
    assert status == 403 and error_code(body) == "SignatureDoesNotMatch"
    assert ET.fromstring(body).findtext("StringToSign", "").endswith("/priv/dir/one.bin?torrent")


async def test_sigv2_header_signed_calls(env: Env) -> None:
    c = env.client(signature_version="s3")
    resp = await run_sync(lambda: c.get_object_torrent(Bucket="priv", Key="a.txt"))
    assert bencode.decode(resp["Body"].read())[b"info"][b"length"] == len(b"a.txt") * 100
    listed = await run_sync(lambda: c.list_objects_v2(Bucket="priv", Prefix="dir/"))
    assert [o["Key"] for o in listed["Contents"]] == sorted(k for k in KEYS
                                                            if k.startswith("dir/"))
    with pytest.raises(ClientError) as info:
        await run_sync(lambda: env.client("nobody", signature_version="s3").list_objects_v2(
            Bucket="priv"))
    assert info.value.response["Error"]["Code"] == "InvalidAccessKeyId"


async def test_sigv2_expired_and_malformed(env: Env) -> None:
    c = env.client()
    url = c.generate_presigned_url("get_object_torrent", ExpiresIn=-60,
                                   Params={"Bucket": "priv", "Key": "a.txt"})
    status, _, body = await run_sync(fetch, url)
    assert status == 403 and error_code(body) == "AccessDenied"
    assert ET.fromstring(body).findtext("Message") == "Request has expired"
    base = f"{env.url}/priv/a.txt?torrent&AWSAccessKeyId={AK}&Signature=x"
    for query, code in [("&Expires=soon", "AccessDenied"), ("", "AccessDenied")]:
        status, _, body = await run_sync(fetch, base + query)
        assert (status, error_code(body)) == (403, code)


@BOTH
@pytest.mark.parametrize("signature_version", ["s3", "s3v4"])
async def test_torrent_of_an_s3_object(env: Env, signature_version: str) -> None:
    """GetObjectTorrent of an object on each S3 server, SigV2 and SigV4: the torrent's
    pieces are the object's, and its web seed (this server's, capability) serves it."""
    import hashlib

    c = env.client(signature_version=signature_version)
    bucket = env.s3["s3priv"]
    resp = await run_sync(lambda: c.get_object_torrent(Bucket=bucket, Key="dir/sub/two.bin"))
    meta = bencode.decode(resp["Body"].read())
    content = b"dir/sub/two.bin" * 100
    info = meta[b"info"]
    assert info[b"length"] == len(content) and info[b"x-amz-bucket"] == bucket.encode()
    plen = info[b"piece length"]
    assert info[b"pieces"] == b"".join(hashlib.sha1(content[i:i + plen]).digest()
                                       for i in range(0, len(content), plen))
    seeds = meta[b"url-list"]
    (seed,) = seeds if isinstance(seeds, list) else [seeds]
    assert b"webseed-token=" in seed


# -- the read-only calls -------------------------------------------------------------------


async def test_list_buckets_by_caller(env: Env) -> None:
    def names(client: Any) -> list[str]:
        return [b["Name"] for b in client.list_buckets()["Buckets"]]

    assert await run_sync(names, env.client(None)) == sorted(["pub", env.s3["s3pub"]])
    assert await run_sync(names, env.client(AK_PUB, SK_PUB)) == sorted(["pub", env.s3["s3pub"]])
    assert await run_sync(names, env.client()) == sorted(["pub", "priv", *env.s3.values()])
    assert await run_sync(names, env.client(signature_version="s3")) == sorted(
        ["pub", "priv", *env.s3.values()])


@pytest.mark.parametrize(("role", "s3_server"), [("local", "moto"), ("s3", "moto"),
                                                 ("s3", "s3rver")], indirect=["s3_server"])
async def test_paginators_match_the_keys(env: Env, role: str) -> None:
    bucket = "priv" if role == "local" else env.s3["s3priv"]
    c = env.client()

    def walk(op: str, **kw: Any) -> tuple[list[str], list[str], int]:
        keys: list[str] = []
        prefixes: list[str] = []
        pages = 0
        for page in c.get_paginator(op).paginate(Bucket=bucket, **kw):
            pages += 1
            keys += [o["Key"] for o in page.get("Contents", ())]
            prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", ())]
        return keys, prefixes, pages

    everything = sorted(KEYS)
    for op in ("list_objects_v2", "list_objects"):
        keys, prefixes, pages = await run_sync(
            lambda op=op: walk(op, PaginationConfig={"PageSize": 2}))
        assert (keys, prefixes, pages) == (everything, [], 3)
        keys, prefixes, _ = await run_sync(
            lambda op=op: walk(op, Delimiter="/", PaginationConfig={"PageSize": 1}))
        assert (keys, prefixes) == (["a.txt", "é t+é.txt"], ["dir/", "z/"])
        keys, prefixes, _ = await run_sync(lambda op=op: walk(op, Prefix="dir/", Delimiter="/"))
        assert (keys, prefixes) == (["dir/one.bin", "dir/three.bin"], ["dir/sub/"])
    resp = await run_sync(lambda: c.list_objects_v2(Bucket=bucket, StartAfter="dir/three.bin",
                                                    FetchOwner=True))
    assert [o["Key"] for o in resp["Contents"]] == ["z/last", "é t+é.txt"]  # UTF-8 order
    assert resp["Contents"][0]["Owner"]["DisplayName"] == "s3torrent"
    assert resp["Contents"][0]["Size"] == len(b"z/last") * 100


async def test_list_xml_shape(env: Env) -> None:
    url = f"{env.url}/pub?list-type=2&max-keys=2&delimiter=/&encoding-type=url"
    status, headers, body = await run_sync(fetch, url)
    assert status == 200 and headers["content-type"] == "application/xml"
    root = ET.fromstring(body)
    assert root.tag == f"{NS}ListBucketResult"
    assert [e.tag.removeprefix(NS) for e in root] == [
        "Name", "Prefix", "NextContinuationToken", "KeyCount", "MaxKeys", "Delimiter",
        "EncodingType", "IsTruncated", "Contents", "CommonPrefixes"]
    assert root.findtext(f"{NS}Delimiter") == "%2F"
    contents = root.find(f"{NS}Contents")
    assert [e.tag.removeprefix(NS) for e in contents] == [
        "Key", "LastModified", "ETag", "Size", "StorageClass"]
    status, _, body = await run_sync(fetch, f"{env.url}/pub?max-keys=1&delimiter=/&marker=a.txt")
    root = ET.fromstring(body)
    assert [e.tag.removeprefix(NS) for e in root][:6] == [
        "Name", "Prefix", "Marker", "NextMarker", "MaxKeys", "Delimiter"]
    assert root.findtext(f"{NS}NextMarker") == "dir/"


@pytest.mark.parametrize(("query", "code"), [
    ("list-type=2&max-keys=-1", "InvalidArgument"),
    ("list-type=2&max-keys=abc", "InvalidArgument"),
    ("list-type=2&continuation-token=bogus", "InvalidArgument"),
    ("list-type=2&continuation-token=", "InvalidArgument"),
    ("encoding-type=bogus", "InvalidArgument"),
    ("list-type=3", "InvalidArgument"),
    ("acl", "NotImplemented"),
])
async def test_bad_list_parameters(env: Env, query: str, code: str) -> None:
    status, _, body = await run_sync(fetch, f"{env.url}/pub?{query}")
    assert status in (400, 501) and error_code(body) == code
    assert b"Traceback" not in body


@BOTH
async def test_private_buckets_need_a_signature(env: Env) -> None:
    for bucket in ("priv", env.s3["s3priv"]):
        status, _, body = await run_sync(fetch, f"{env.url}/{bucket}?list-type=2")
        assert (status, error_code(body)) == (403, "AccessDenied")
        with pytest.raises(ClientError) as info:
            await run_sync(lambda b=bucket: env.client(AK_PUB, SK_PUB).list_objects_v2(Bucket=b))
        assert info.value.response["Error"]["Code"] == "AccessDenied"
    status, _, _ = await run_sync(fetch, f"{env.url}/nope?list-type=2")
    assert status == 404


@BOTH
async def test_head_bucket_object_and_location(env: Env) -> None:
    c = env.client()
    for bucket in ("priv", env.s3["s3priv"]):
        head = await run_sync(lambda b=bucket: c.head_bucket(Bucket=b))
        assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
        # any object of a readable bucket, torrent or not
        obj = await run_sync(lambda b=bucket: c.head_object(Bucket=b, Key="dir/sub/two.bin"))
        assert obj["ContentLength"] == len(b"dir/sub/two.bin") * 100
        assert obj["ETag"].startswith('"') and obj["LastModified"]
        with pytest.raises(ClientError) as info:
            await run_sync(lambda b=bucket: c.head_object(Bucket=b, Key="missing"))
        assert info.value.response["Error"]["Code"] == "404"
        loc = await run_sync(lambda b=bucket: c.get_bucket_location(Bucket=b))
        assert loc["LocationConstraint"] is None
    with pytest.raises(ClientError) as info:
        await run_sync(lambda: c.head_bucket(Bucket="nope"))
    assert info.value.response["Error"]["Code"] == "404"


# -- real clients --------------------------------------------------------------------------


def cli_env(access_key: str = AK, secret: str = SK) -> dict[str, str]:
    out = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret,
           "AWS_DEFAULT_REGION": "us-east-1"}
    out.pop("AWS_SESSION_TOKEN", None)
    out.pop("AWS_SECURITY_TOKEN", None)
    return out


async def run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    with trio.fail_after(60):
        proc = await trio.run_process(cmd, env=env, capture_stdout=True, capture_stderr=True,
                                      check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


async def test_aws_cli(env: Env) -> None:
    aws = [sys.executable, "-m", "awscli", "--endpoint-url", env.url]
    out = await run([*aws, "s3", "ls"], cli_env())
    assert {line.split()[-1] for line in out.splitlines()} == {"pub", "priv", *env.s3.values()}
    out = await run([*aws, "s3", "ls", "s3://priv/", "--recursive", "--page-size", "2"],
                    cli_env())
    assert [line.split(None, 3)[3] for line in out.splitlines()] == sorted(KEYS)
    out = await run([*aws, "s3", "ls", "s3://priv/dir/"], cli_env())
    assert "PRE sub/" in out and "one.bin" in out
    out = await run([*aws, "s3api", "head-object", "--bucket", "priv", "--key", "a.txt"],
                    cli_env())
    assert '"ContentLength": 500' in out
    out = await run([*aws, "s3api", "list-objects-v2", "--bucket", env.s3["s3priv"],
                     "--prefix", "dir/", "--page-size", "1"], cli_env())
    assert out.count('"Key"') == 3


@pytest.mark.skipif(shutil.which("s3cmd") is None, reason="s3cmd is installed by scripts/test.sh")
@pytest.mark.parametrize("signature_v2", [True, False])
async def test_s3cmd_ls(env: Env, tmp_path: Path, signature_v2: bool) -> None:
    hostport = env.url.removeprefix("http://")
    cfg = tmp_path / "s3cfg"
    cfg.write_text(
        "[default]\n"
        f"access_key = {AK}\nsecret_key = {SK}\n"
        f"host_base = {hostport}\nhost_bucket = {hostport}\n"
        "use_https = False\nbucket_location = us-east-1\n"
        f"signature_v2 = {signature_v2}\n")
    s3cmd = ["s3cmd", "-c", str(cfg)]
    out = await run([*s3cmd, "ls"])
    assert "s3://priv" in out and "s3://pub" in out
    out = await run([*s3cmd, "ls", "--recursive", "s3://priv/"])
    assert [line.split(None, 3)[3] for line in out.splitlines()] == [
        f"s3://priv/{k}" for k in sorted(KEYS)]
