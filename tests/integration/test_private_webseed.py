"""Private buckets' torrents carry a working web seed: this server's URL with a capability.

The daemon in-process (no libtorrent seed of its own, no tracker), a private local bucket, a
private S3 bucket on moto (origin mode, no presign_webseed) and one with presign_webseed;
a libtorrent client holding only the .torrent downloads through the capability URL."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
import trio
from botocore.config import Config as BotoConfig

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
from seeder.torrent import metainfo
from tests.helpers import free_port, lt_download
from tracker import bencode

AK, SK = "AKIDPRIVWS", "private-webseed-secret"
CONTENT = os.urandom(700_000)


@dataclass
class Env:
    daemon: Daemon
    url: str
    local: Path
    s3: dict[str, str]
    state: Path

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=AK, aws_secret_access_key=SK,
                            config=BotoConfig(s3={"addressing_style": "path"},
                                              retries={"max_attempts": 1}))

    async def torrent(self, bucket: str, key: str, **params: str) -> bytes:
        c = self.client()
        resp = await trio.to_thread.run_sync(
            lambda: c.get_object_torrent(Bucket=bucket, Key=key, **params))
        return resp["Body"].read()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


async def get(url: str, **headers: str) -> tuple[int, bytes]:
    return await trio.to_thread.run_sync(fetch, url, headers)


def seed_url(torrent: bytes) -> str:
    urls = bencode.decode(torrent)[b"url-list"]
    (url,) = urls if isinstance(urls, list) else [urls]
    return url.decode()


@pytest.fixture
async def env(tmp_path: Path, moto_server: Any, nursery: trio.Nursery) -> AsyncIterator[Env]:
    local = tmp_path / "priv"
    local.mkdir()
    (local / "big.bin").write_bytes(CONTENT)
    (local / "other.bin").write_bytes(b"other" * 1000)
    backend = moto_server.client()
    s3 = {role: moto_server.create_bucket(prefix=role) for role in ("s3priv", "s3presign")}
    for name in s3.values():
        backend.put_object(Bucket=name, Key="obj.bin", Body=CONTENT)
    common = {"backend": "s3", "endpoint_url": moto_server.endpoint_url, "region": "us-east-1",
              "access_key": "testing", "secret_key": "testing", "public": False}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = Config(
        server=ServerConfig(listen=HostPort("127.0.0.1", port), public_url=url),
        tracker=TrackerConfig(enabled=False, listen=None),
        metrics=MetricsConfig(listen=None),
        state=StateConfig(dir=str(tmp_path / "state")),
        scanner=ScannerConfig(enabled=False),
        seeding=SeedingConfig(enabled=False),
        buckets=(
            BucketConfig(name="priv", backend="local", path=str(local), public=False),
            BucketConfig(name="rpay", backend="local", path=str(local), public=False,
                         requester_pays=True),
            BucketConfig(name=s3["s3priv"], **common),
            BucketConfig(name=s3["s3presign"], presign_webseed=600, **common),
        ),
        credentials=(CredentialConfig(AK, SK, ("*",)),),
    )
    daemon: Daemon = await nursery.start(lambda task_status: serve(config, task_status=task_status))
    yield Env(daemon, url, local, s3, tmp_path / "state")


async def test_capability_url_serves_the_bytes(env: Env) -> None:
    torrent = await env.torrent("priv", "big.bin")
    url = seed_url(torrent)
    assert url.startswith(f"{env.url}/priv/big.bin?webseed-token=")
    assert (await get(url)) == (200, CONTENT)
    assert (await get(url, Range="bytes=10-19")) == (206, CONTENT[10:20])
    # the info-hash does not depend on the capability (url-list is outside info)
    again = await env.torrent("priv", "big.bin")
    assert metainfo.info_hashes(again) == metainfo.info_hashes(torrent)
    assert bencode.decode(again)[b"info"] == bencode.decode(torrent)[b"info"]
    assert (env.state / "webseed.key").stat().st_mode & 0o777 == 0o600


async def test_wrong_or_missing_token_is_refused(env: Env) -> None:
    url = seed_url(await env.torrent("priv", "big.bin"))
    other = seed_url(await env.torrent("priv", "other.bin"))
    token = dict(parse_qsl(urlsplit(url).query))["webseed-token"]
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (url.replace(token, flipped), url.split("?")[0],
                other.split("?")[0] + "?webseed-token=" + token,
                url.replace("/priv/", "/rpay/") + "&x-amz-request-payer=requester"):
        status, body = await get(bad)
        assert status == 403 and b"<Code>AccessDenied</Code>" in body, bad
    # a token never opens a listing or a torrent
    assert (await get(f"{env.url}/priv?list-type=2&webseed-token={token}"))[0] == 403
    assert (await get(f"{env.url}/priv/big.bin?torrent&webseed-token={token}"))[0] == 403


async def test_overwrite_and_delete_revoke(env: Env) -> None:
    old = seed_url(await env.torrent("priv", "big.bin"))
    path = env.local / "big.bin"
    path.write_bytes(CONTENT[::-1])
    os.utime(path, ns=(1, 2_000_000_000_000_000_000))
    new = seed_url(await env.torrent("priv", "big.bin"))
    assert new != old
    assert (await get(old))[0] == 403
    assert (await get(new)) == (200, CONTENT[::-1])
    path.unlink()
    status, _ = await get(f"{env.url}/priv/big.bin?torrent")  # anonymous: refused
    assert status == 403
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        await env.torrent("priv", "big.bin")  # NoSuchKey: the entry is dropped
    assert (await get(new))[0] == 403


async def test_requester_pays_and_s3_buckets(env: Env) -> None:
    rp = seed_url(await env.torrent("rpay", "other.bin", RequestPayer="requester"))
    assert "x-amz-request-payer=requester" in rp and "webseed-token=" in rp
    assert (await get(rp)) == (200, b"other" * 1000)
    s3url = seed_url(await env.torrent(env.s3["s3priv"], "obj.bin"))
    assert s3url.startswith(f"{env.url}/{env.s3['s3priv']}/obj.bin?")
    assert (await get(s3url)) == (200, CONTENT)
    # presign_webseed keeps S3 serving the bytes
    presigned = seed_url(await env.torrent(env.s3["s3presign"], "obj.bin"))
    assert "X-Amz-Signature=" in presigned and "webseed-token" not in presigned


async def test_a_client_with_only_the_torrent_downloads(env: Env, tmp_path: Path) -> None:
    torrent = await env.torrent("priv", "big.bin")
    with trio.fail_after(90):
        done = await lt_download(torrent, tmp_path / "client", "127.0.0.2", 60, "--no-ssrf")
    assert done["sha1"] == hashlib.sha1(CONTENT).hexdigest()
    assert done["web_seed_bytes"] >= len(CONTENT)
