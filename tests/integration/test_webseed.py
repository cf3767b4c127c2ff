"""The web seed endpoint (``GET/HEAD /{bucket}/{key}``) and web seed URLs, end to end: the
daemon in-process on loopback, curl and raw sockets as clients, a local directory and a moto
server (versioned buckets) as backends.

Conditional requests (If-Match / If-None-Match / If-Modified-Since / If-Unmodified-Since /
If-Range) as S3 answers them; web seed URLs pinned to the torrent's version (plain and
presigned); presigned web seeds of requester-pays buckets usable with no extra header."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
import trio

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
from seeder.s3api import sigv4
from seeder.s3api.conditional import http_date
from seeder.s3api.errors import S3Error
from tests.helpers import lt_download
from tests.integration.test_api import Env, fetch, run_sync
from tracker import bencode

AK, SK = "AKIDWEBSEEDTEST", "webseed-test-secret"
PUBLIC_URL = "http://localhost:1"  # in web seed URLs of this daemon; tests swap in env.url
CONTENT = b"hello, torrent world, in one version only\n"
NEWER = b"a newer version of the object, of another length\n"


@pytest.fixture
async def env(tmp_path: Path, moto_server: Any, nursery: trio.Nursery) -> AsyncIterator[Env]:
    local = tmp_path / "data"
    local.mkdir()
    (local / "hello.txt").write_bytes(CONTENT)
    names = {
        role: moto_server.create_bucket(prefix=role, versioned=True)
        for role in ("pub", "proxy", "priv", "rp")
    }
    common = {"backend": "s3", "endpoint_url": moto_server.endpoint_url, "region": "us-east-1",
              "access_key": "testing", "secret_key": "testing"}
    config = Config(
        server=ServerConfig(listen=HostPort("127.0.0.1", 0), public_url=PUBLIC_URL),
        tracker=TrackerConfig(enabled=False),
        metrics=MetricsConfig(listen=None),
        state=StateConfig(dir=str(tmp_path / "state")),
        scanner=ScannerConfig(enabled=False),
        seeding=SeedingConfig(enabled=False),
        buckets=(
            BucketConfig(name="data", backend="local", path=str(local)),
            BucketConfig(name="datarp", backend="local", path=str(local), requester_pays=True),
            BucketConfig(name=names["pub"], **common),
            BucketConfig(name=names["proxy"], webseed="proxy", **common),
            BucketConfig(name=names["priv"], public=False, presign_webseed=3600, **common),
            # Public, but requester pays: S3 refuses anonymous requests, so presigned.
            BucketConfig(name=names["rp"], presign_webseed=3600, requester_pays=True, **common),
        ),
        credentials=(CredentialConfig(AK, SK, ("*",)),),
    )
    daemon: Daemon = await nursery.start(lambda task_status: serve(config, task_status=task_status))
    assert daemon.bound is not None
    host, port = daemon.bound.s3
    yield Env(daemon, f"http://{host}:{port}", local, moto_server, names)


async def raw_exchange(env: Env, requests: bytes, answers: int) -> list[tuple[bytes, bytes]]:
    """Send ``requests`` (pipelined) on one connection; read ``answers`` responses, each framed
    by its own Content-Length (none: no body). Returns (head, body) pairs."""
    host, port = env.daemon.bound.s3
    stream = await trio.open_tcp_stream(host, port)
    buf = b""
    out: list[tuple[bytes, bytes]] = []
    with trio.fail_after(20):
        async with stream:
            await stream.send_all(requests)
            while len(out) < answers:
                while b"\r\n\r\n" not in buf:
                    chunk = await stream.receive_some(65536)
                    assert chunk, f"connection closed after {len(out)} answers: {buf!r}"
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    chunk = await stream.receive_some(65536)
                    assert chunk, "connection closed mid-body"
                    buf += chunk
                out.append((head, buf[:length]))
                buf = buf[length:]
    return out


def header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name:
            return v.strip()
    return None


async def torrent_of(env: Env, bucket: str, key: str, version: str | None = None,
                     headers: dict[str, str] | None = None) -> dict:
    url = f"{env.url}/{bucket}/{urllib.parse.quote(key)}?torrent"
    if version:
        url += "&versionId=" + urllib.parse.quote(version)
    status, _, body = await run_sync(fetch, url, "GET", headers)
    assert status == 200, body
    return bencode.decode(body)


# -- conditional requests ------------------------------------------------------------------


async def test_responses_carry_etag_and_last_modified(env: Env) -> None:
    await torrent_of(env, "data", "hello.txt")
    entry = env.daemon.torrents.lookup_cached("data", "hello.txt")
    for method in ("GET", "HEAD"):
        status, headers, body = await run_sync(fetch, f"{env.url}/data/hello.txt", method)
        assert status == 200 and body == (CONTENT if method == "GET" else b"")
        assert headers["etag"] == f'"{entry.etag}"'
        assert headers["last-modified"] == http_date(entry.last_modified).decode()


async def test_conditional_requests_as_s3_answers_them(env: Env) -> None:
    await torrent_of(env, "data", "hello.txt")
    url = f"{env.url}/data/hello.txt"
    _, h, _ = await run_sync(fetch, url)
    etag, modified = h["etag"], h["last-modified"]
    before = http_date(env.daemon.torrents.lookup_cached("data", "hello.txt").last_modified - 60)
    cases = [
        ({"If-Match": etag}, 200),
        ({"If-Match": etag.strip('"')}, 200),  # S3 takes a bare ETag
        ({"If-Match": '"other"'}, 412),
        ({"If-None-Match": etag}, 304),
        ({"If-None-Match": '"other"'}, 200),
        ({"If-None-Match": "*"}, 304),
        ({"If-Modified-Since": modified}, 304),
        ({"If-Modified-Since": before.decode()}, 200),
        ({"If-Unmodified-Since": before.decode()}, 412),
        ({"If-Unmodified-Since": modified}, 200),
        ({"If-Match": etag, "If-Unmodified-Since": before.decode()}, 200),  # S3's precedence
        ({"If-None-Match": etag, "If-Modified-Since": before.decode()}, 304),  # S3's precedence
        ({"If-Match": '"other"', "Range": "bytes=999-"}, 412),  # 412 before 416
        ({"If-Modified-Since": "not a date"}, 200),  # ignored
    ]
    for headers, expected in cases:
        for method in ("GET", "HEAD"):
            status, got, body = await run_sync(fetch, url, method, headers)
            assert status == expected, (method, headers, body)
            if expected == 412:
                assert got["content-type"] == "application/xml"
                if method == "GET":
                    condition = next(k for k in headers if k.startswith("If-"))
                    assert b"<Code>PreconditionFailed</Code>" in body
                    assert f"<Condition>{condition}</Condition>".encode() in body
            elif expected == 304:
                assert body == b"" and got["etag"] == etag and got["last-modified"] == modified
                assert "content-length" not in got  # RFC 9110 §15.4.5: not 0 for a 304
            else:
                assert body == (CONTENT if method == "GET" else b"")


async def test_304_and_412_keep_the_connection_usable(env: Env) -> None:
    """A 304 has no body and no Content-Length: the next pipelined answer must still frame."""
    await torrent_of(env, "data", "hello.txt")
    etag = (await run_sync(fetch, f"{env.url}/data/hello.txt"))[1]["etag"].encode()
    get = b"GET /data/hello.txt HTTP/1.1\r\nHost: x\r\n"
    answers = await raw_exchange(
        env,
        get + b"If-None-Match: " + etag + b"\r\n\r\n"
        + get + b"If-Match: \"nope\"\r\n\r\n"
        + get + b"Range: bytes=0-4\r\n\r\n",
        3,
    )
    (h1, b1), (h2, b2), (h3, b3) = answers
    assert h1.startswith(b"HTTP/1.1 304 ") and b1 == b"" and header(h1, b"etag") == etag
    assert header(h1, b"content-length") is None
    assert h2.startswith(b"HTTP/1.1 412 ") and b"<Condition>If-Match</Condition>" in b2
    assert h3.startswith(b"HTTP/1.1 206 ") and b3 == CONTENT[:5]


async def test_if_range_never_mixes_two_versions(env: Env) -> None:
    """A download resumed with If-Range gets the rest of the same version, or all of the new
    one: never the tail of another version appended to the head it has."""
    await torrent_of(env, "data", "hello.txt")
    url = f"{env.url}/data/hello.txt"
    status, h, head = await run_sync(fetch, url, "GET", {"Range": "bytes=0-9"})
    assert (status, head) == (206, CONTENT[:10])
    etag, modified = h["etag"], h["last-modified"]
    for validator in (etag, modified):
        status, _, rest = await run_sync(
            fetch, url, "GET", {"Range": "bytes=10-", "If-Range": validator}
        )
        assert (status, rest) == (206, CONTENT[10:])
    # The object changes and its torrent is made again.
    (env.local_dir / "hello.txt").write_bytes(NEWER)
    os.utime(env.local_dir / "hello.txt", (1_900_000_000, 1_900_000_000))
    await torrent_of(env, "data", "hello.txt")
    for validator in (etag, modified, "W/" + etag):
        status, h2, body = await run_sync(
            fetch, url, "GET", {"Range": "bytes=10-", "If-Range": validator}
        )
        assert (status, body) == (200, NEWER), validator
        assert h2["etag"] != etag and "content-range" not in h2
    # The new version's validator resumes it.
    status, _, rest = await run_sync(
        fetch, url, "GET", {"Range": "bytes=10-", "If-Range": h2["etag"]}
    )
    assert (status, rest) == (206, NEWER[10:])


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_time_condition_and_etag_compare(env: Env, tmp_path: Path) -> None:
    await torrent_of(env, "data", "hello.txt")
    url = f"{env.url}/data/hello.txt"
    out = tmp_path / "out"

    def curl(*args: str) -> str:
        done = subprocess.run(
            ["curl", "-sS", "-o", str(out), "-w", "%{http_code}", *args, url],
            capture_output=True, timeout=30, check=True,
        )
        return done.stdout.decode()

    # -z FILE: If-Modified-Since the file's mtime.
    stamp = tmp_path / "stamp"
    stamp.write_bytes(b"")
    mtime = env.daemon.torrents.lookup_cached("data", "hello.txt").last_modified
    os.utime(stamp, (mtime + 5, mtime + 5))
    assert await run_sync(curl, "-z", str(stamp)) == "304"
    os.utime(stamp, (mtime - 5, mtime - 5))
    assert await run_sync(curl, "-z", str(stamp)) == "200"
    assert out.read_bytes() == CONTENT
    # --etag-save / --etag-compare: If-None-Match with the ETag of the last download.
    etags = tmp_path / "etag"
    assert await run_sync(curl, "--etag-save", str(etags)) == "200"
    assert await run_sync(curl, "--etag-compare", str(etags)) == "304"


# -- web seed URLs pinned to a version --------------------------------------------------------


def signed_torrent_url(env: Env, bucket: str, key: str, version: str | None) -> str:
    """A presigned GetObjectTorrent URL of this daemon (the private bucket needs one)."""
    import boto3
    from botocore.config import Config as BotoConfig

    client = boto3.client(
        "s3", endpoint_url=env.url, region_name="us-east-1", aws_access_key_id=AK,
        aws_secret_access_key=SK,
        config=BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"}),
    )

    def add_version(request: Any, **_: Any) -> None:
        # botocore's GetObjectTorrent has no VersionId (S3's does): sign it into the query.
        request.url += "&versionId=" + urllib.parse.quote(version, safe="")

    if version is not None:
        client.meta.events.register("before-sign.s3.GetObjectTorrent", add_version)
    return client.generate_presigned_url(
        "get_object_torrent", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
    )


@pytest.mark.parametrize("role", ["pub", "proxy", "priv", "rp"])
async def test_a_version_pinned_web_seed_fetches_that_version_after_an_overwrite(
    env: Env, role: str
) -> None:
    """``?torrent&versionId=v1``: the web seed URL (plain origin, this daemon's, or presigned)
    asks for v1, so after the key is overwritten it still gives v1's bytes, the ones the
    piece hashes describe."""
    bucket, key = env.buckets[role], "dir/obj ü.bin"
    s3 = env.moto.client()
    old, new = os.urandom(70_000), os.urandom(80_000)
    v1 = s3.put_object(Bucket=bucket, Key=key, Body=old, ACL="public-read")["VersionId"]
    payer = {"x-amz-request-payer": "requester"} if role == "rp" else None
    if role == "priv":
        url = await run_sync(signed_torrent_url, env, bucket, key, v1)
        status, _, body = await run_sync(fetch, url)
        assert status == 200, body
        meta = bencode.decode(body)
    else:
        meta = await torrent_of(env, bucket, key, v1, payer)
    s3.put_object(Bucket=bucket, Key=key, Body=new, ACL="public-read")
    seed_url = seed_url_of(env, meta, role, v1)
    status, _, body = await run_sync(fetch, seed_url)
    assert (status, body) == (200, old)
    status, _, body = await run_sync(fetch, seed_url, "GET", {"Range": "bytes=100-199"})
    assert (status, body) == (206, old[100:200])


async def current_torrent(env: Env, role: str, key: str) -> dict:
    """The torrent of the object now at ``key`` (no versionId), asked as ``role`` needs."""
    bucket = env.buckets[role]
    if role == "priv":
        status, _, body = await run_sync(fetch, await run_sync(
            signed_torrent_url, env, bucket, key, None))
        assert status == 200, body
        return bencode.decode(body)
    payer = {"x-amz-request-payer": "requester"} if role == "rp" else None
    return await torrent_of(env, bucket, key, None, payer)


def seed_url_of(env: Env, meta: dict, role: str, version: str) -> str:
    """The torrent's one web seed URL, checked to ask for ``version``, made fetchable here."""
    (seed,) = meta[b"url-list"]
    url = seed.decode()
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["versionId"] == [version]
    if role == "proxy":
        assert url.startswith(PUBLIC_URL + "/")
        url = env.url + url[len(PUBLIC_URL):]
    elif role in ("priv", "rp"):
        assert "X-Amz-Signature" in query
    else:
        assert url.startswith(env.moto.endpoint_url + "/")
    return url


@pytest.mark.parametrize("role", ["pub", "proxy", "priv", "rp"])
async def test_the_current_object_s_web_seed_keeps_its_version_after_an_overwrite(
    env: Env, role: str
) -> None:
    """``?torrent`` without versionId on a versioned bucket: the web seed URL (plain origin,
    this daemon's, or presigned) asks for the version that was hashed. After an overwrite the
    earlier torrent's URL still gives the old bytes, the ones its piece hashes describe,
    before and after the daemon made the new torrent; the new torrent's URL the new bytes."""
    bucket, key = env.buckets[role], "dir/cur ü.bin"
    s3 = env.moto.client()
    old, new = os.urandom(70_000), os.urandom(80_000)
    v1 = s3.put_object(Bucket=bucket, Key=key, Body=old, ACL="public-read")["VersionId"]
    first = await current_torrent(env, role, key)
    old_url = seed_url_of(env, first, role, v1)
    v2 = s3.put_object(Bucket=bucket, Key=key, Body=new, ACL="public-read")["VersionId"]

    async def check_old() -> None:
        status, headers, body = await run_sync(fetch, old_url)
        assert (status, body) == (200, old)
        if role == "proxy":  # S3's own validators at the origin; these are the daemon's
            assert headers["etag"] == f'"{hashlib.md5(old).hexdigest()}"'
        status, _, body = await run_sync(fetch, old_url, "GET", {"Range": "bytes=100-199"})
        assert (status, body) == (206, old[100:200])

    await check_old()  # overwritten, the daemon has not noticed yet
    second = await current_torrent(env, role, key)
    assert second[b"info"] != first[b"info"]
    new_url = seed_url_of(env, second, role, v2)
    await check_old()  # the daemon's torrent is now the new one
    status, _, body = await run_sync(fetch, new_url)
    assert (status, body) == (200, new)


@pytest.mark.parametrize("role", ["pub", "proxy"])
async def test_libtorrent_finishes_an_earlier_torrent_from_its_web_seed(
    env: Env, role: str, tmp_path: Path
) -> None:
    """The case this is for (FIELD-NOTES: an overwritten object's web seed fails the piece
    hashes and libtorrent bans it): a client holding the torrent made before the overwrite,
    started after the daemon made the new one, downloads the old bytes from the web seed."""
    bucket, key = env.buckets[role], "lt.bin"
    s3 = env.moto.client()
    old = os.urandom(3 * 262144 + 999)
    s3.put_object(Bucket=bucket, Key=key, Body=old, ACL="public-read")
    meta = await torrent_of(env, bucket, key)
    s3.put_object(Bucket=bucket, Key=key, Body=os.urandom(len(old)), ACL="public-read")
    assert (await torrent_of(env, bucket, key))[b"info"] != meta[b"info"]
    if role == "proxy":  # the daemon's web seed at its test address (outside info)
        (seed,) = meta[b"url-list"]
        meta[b"url-list"] = [env.url.encode() + seed[len(PUBLIC_URL):]]
    with trio.fail_after(90):
        done = await lt_download(bencode.encode(meta), tmp_path / "dl", "127.0.0.2", 60,
                                 "--no-ssrf")
    assert done["sha1"] == hashlib.sha1(old).hexdigest()
    assert done["web_seed_bytes"] == len(old)


async def test_a_superseded_version_through_this_daemon_s_web_seed(env: Env) -> None:
    """Proxy mode, the version an earlier torrent hashed: its own validators, conditional
    requests and ranges as for any web seed answer; only versions of a key that has a torrent
    are served (else 404 NoSuchKey, as for any object without one)."""
    bucket, key = env.buckets["proxy"], "sup.bin"
    s3 = env.moto.client()
    old, new = os.urandom(60_000), os.urandom(61_000)
    v1 = s3.put_object(Bucket=bucket, Key=key, Body=old)["VersionId"]
    await torrent_of(env, bucket, key)
    s3.put_object(Bucket=bucket, Key=key, Body=new)
    await torrent_of(env, bucket, key)  # the current torrent is now v2's
    url = f"{env.url}/{bucket}/{key}?versionId={urllib.parse.quote(v1, safe='')}"
    old_etag, new_etag = (f'"{hashlib.md5(b).hexdigest()}"' for b in (old, new))
    status, headers, body = await run_sync(fetch, url, "HEAD")
    assert (status, headers["etag"], headers["content-length"], body) == (
        200, old_etag, str(len(old)), b"")
    modified = headers["last-modified"]
    for extra, want in [
        ({"If-None-Match": old_etag}, 304),
        ({"If-Match": new_etag}, 412),
        ({"If-Match": old_etag}, 200),
        ({"If-Modified-Since": modified}, 304),
        ({"Range": "bytes=-10", "If-Range": old_etag}, 206),
        ({"Range": "bytes=-10", "If-Range": new_etag}, 200),  # whole object: never mixed
    ]:
        status, _, body = await run_sync(fetch, url, "GET", extra)
        assert status == want, extra
        assert body == {200: old, 206: old[-10:], 304: b"", 412: body}[status]
    # The plain URL is the current torrent's: v2.
    status, _, body = await run_sync(fetch, f"{env.url}/{bucket}/{key}")
    assert (status, body) == (200, new)
    for target in (f"{bucket}/{key}?versionId=no-such-version",
                   f"{bucket}/other.bin?versionId={urllib.parse.quote(v1, safe='')}"):
        status, _, body = await run_sync(fetch, f"{env.url}/{target}")
        assert status == 404 and b"<Code>NoSuchKey</Code>" in body, target


async def test_requester_pays_presigned_web_seed_needs_no_header(env: Env) -> None:
    """botocore signs x-amz-request-payer as a header (boto/boto3#3685); a BitTorrent client
    sends none. The web seed URL carries it as a signed query parameter instead: the daemon's
    SigV4 verifier accepts the URL with only Host, and moto serves it."""
    bucket, key = env.buckets["rp"], "obj.bin"
    content = os.urandom(50_000)
    env.moto.client().put_object(Bucket=bucket, Key=key, Body=content)
    meta = await torrent_of(env, bucket, key, None, {"x-amz-request-payer": "requester"})
    (seed,) = meta[b"url-list"]
    parts = urllib.parse.urlsplit(seed.decode())
    query = urllib.parse.parse_qs(parts.query)
    assert query["x-amz-request-payer"] == ["requester"]
    assert query["X-Amz-SignedHeaders"] == ["host"]
    signed = sigv4.SignedRequest.from_http(
        b"GET", f"{parts.path}?{parts.query}".encode(), ((b"host", parts.netloc.encode()),)
    )
    assert sigv4.verify(signed, {"testing": "testing"}, time.time()) == "testing"
    # The parameter is signed: dropping it breaks the signature.
    dropped = parts.query.replace("x-amz-request-payer=requester&", "")
    unsigned = sigv4.SignedRequest.from_http(
        b"GET", f"{parts.path}?{dropped}".encode(), ((b"host", parts.netloc.encode()),)
    )
    with pytest.raises(S3Error, match="SignatureDoesNotMatch"):
        sigv4.verify(unsigned, {"testing": "testing"}, time.time())
    assert await run_sync(fetch, seed.decode()) == (200, ANY, content)


async def test_the_daemons_own_web_seed_of_a_requester_pays_bucket_takes_no_header(
    env: Env,
) -> None:
    """A local bucket's web seed is this daemon; with requester_pays its URL carries
    x-amz-request-payer=requester (the daemon requires it; clients send no such header)."""
    payer = {"x-amz-request-payer": "requester"}
    meta = await torrent_of(env, "datarp", "hello.txt", None, payer)
    (seed,) = meta[b"url-list"]
    assert seed.decode() == f"{PUBLIC_URL}/datarp/hello.txt?x-amz-request-payer=requester"
    status, headers, body = await run_sync(fetch, env.url + seed.decode()[len(PUBLIC_URL):])
    assert (status, body) == (200, CONTENT)
    assert headers["x-amz-request-charged"] == "requester"
    # Without it: S3's answer to a requester-pays request that does not say so.
    assert (await run_sync(fetch, f"{env.url}/datarp/hello.txt"))[0] == 403
