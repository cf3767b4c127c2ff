"""S3 event notifications end to end: the daemon in-process over a moto bucket (and a local
one), events POSTed in each sender's captured shape to ``/-/events`` over loopback.

An upload + its event -> the torrent is in the catalog (polled with a deadline, no request
made it) and served; a delete + its event -> the catalog drops it, GetObjectTorrent answers
404 NoSuchKey and the tracker refuses announces for it. Then every auth mode, bad input,
ordering, retries, SNS subscription confirmation against a small local HTTP server.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio

from seeder.config import (
    BucketConfig,
    Config,
    EventsConfig,
    HostPort,
    MetricsConfig,
    ScannerConfig,
    SeedingConfig,
    ServerConfig,
    StateConfig,
    TrackerConfig,
)
from seeder.ops.daemon import Daemon, serve
from tests.event_shapes import SNS_HEADERS, headers, load, shaped
from tracker import bencode

TOKEN = "events-test-token"
TOPIC = "arn:aws:sns:us-east-1:123456789012:seeder-events"
DEADLINE = 30.0  # seconds for one wait: 2 busy CI cores
SIZE = 1024 * 1024
KEY = "dir/hello world+é.bin"
BEARER = {"authorization": f"Bearer {TOKEN}"}


def make_config(tmp: Path, moto: Any, bucket: str, *, enabled: bool = True) -> Config:
    local = tmp / "local"
    local.mkdir(exist_ok=True)
    return Config(
        server=ServerConfig(listen=HostPort("127.0.0.1", 0)),
        tracker=TrackerConfig(enabled=True, listen=HostPort("127.0.0.1", 0),
                              public_url="http://127.0.0.1:1/announce"),
        metrics=MetricsConfig(listen=None),
        state=StateConfig(dir=str(tmp / "state")),
        scanner=ScannerConfig(enabled=False),
        seeding=SeedingConfig(enabled=False),
        events=EventsConfig(enabled=enabled, token=TOKEN, sns_topic_arns=(TOPIC,)),
        buckets=(
            BucketConfig(name=bucket, backend="s3", endpoint_url=moto.endpoint_url,
                         region="us-east-1", access_key="testing", secret_key="testing"),
            BucketConfig(name="local", backend="local", path=str(local)),
        ),
    )


async def start(nursery: trio.Nursery, config: Config) -> Daemon:
    return await nursery.start(lambda task_status: serve(config, task_status=task_status))


def _request(daemon: Daemon, method: str, target: str, body: bytes = b"",
             hdrs: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = daemon.bound.s3
    conn = http.client.HTTPConnection(host, port, timeout=DEADLINE)
    try:
        conn.request(method, target, body=body, headers=hdrs or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


async def request(daemon: Daemon, method: str, target: str, body: bytes = b"",
                  hdrs: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return await trio.to_thread.run_sync(_request, daemon, method, target, body, hdrs)


async def post(daemon: Daemon, body: bytes, hdrs: dict[str, str] | None = None,
               query: str = "") -> tuple[int, dict[str, str], bytes]:
    return await request(daemon, "POST", "/-/events" + query, body, hdrs)


async def send(daemon: Daemon, sender: str, kind: str, bucket: str, key: str = KEY,
               auth: dict[str, str] | None = None, **fields: Any) -> dict[str, int]:
    """POST one event as ``sender`` shapes it; the 200 answer's counts."""
    status, _, body = await post(daemon, shaped(sender, kind, bucket, key, **fields),
                                 {**headers(sender), **(BEARER if auth is None else auth)})
    assert status == 200, body
    return json.loads(body)


async def until(predicate: Any, what: str) -> None:
    """Poll ``predicate`` (sync, cheap) until true; bounded by DEADLINE."""
    with trio.fail_after(DEADLINE):
        while not predicate():
            await trio.sleep(0.01)
    assert predicate(), what


def object_url(bucket: str, key: str = KEY) -> str:
    return f"/{bucket}/{urllib.parse.quote(key)}?torrent"


def generations(daemon: Daemon) -> float:
    return daemon.registry.get_sample_value("seeder_generations_total", {"result": "ok"}) or 0.0


def events_counted(daemon: Daemon, result: str) -> float:
    return daemon.registry.get_sample_value("seeder_events_total", {"result": result}) or 0.0


async def announce(daemon: Daemon, info_hash: bytes) -> dict:
    return await trio.to_thread.run_sync(_announce, daemon, info_hash)


def _announce(daemon: Daemon, info_hash: bytes) -> dict:
    host, port = daemon.bound.tracker_http
    q = urllib.parse.urlencode({"info_hash": info_hash, "peer_id": b"-XX0001-abcdefghijkl",
                                "port": 6881, "uploaded": 0, "downloaded": 0, "left": 0})
    conn = http.client.HTTPConnection(host, port, timeout=DEADLINE)
    try:
        conn.request("GET", "/announce?" + q)
        return bencode.decode(conn.getresponse().read())
    finally:
        conn.close()


@pytest.fixture
def moto(moto_server: Any) -> Any:
    return moto_server


# -- created and removed, per sender ----------------------------------------------------------


@pytest.mark.parametrize("sender", ["minio", "ceph", "sns"])
async def test_upload_event_then_delete_event(tmp_path: Path, moto: Any, s3_bucket: str,
                                              sender: str) -> None:
    s3 = moto.client()
    body = bytes(range(256)) * (SIZE // 256)
    put = s3.put_object(Bucket=s3_bucket, Key=KEY, Body=body)
    etag = put["ETag"].strip('"')
    async with trio.open_nursery() as nursery:
        daemon = await start(nursery, make_config(tmp_path, moto, s3_bucket))
        counts = await send(daemon, sender, "created", s3_bucket, sequencer="0A",
                            etag=etag, size=SIZE)
        assert counts == {"accepted": 1, "ignored": 0}
        await until(lambda: daemon.catalog.get(s3_bucket, KEY) is not None,
                    "the event made the torrent")
        made = generations(daemon)
        assert made == 1
        status, hdrs, torrent = await request(daemon, "GET", object_url(s3_bucket))
        assert status == 200 and hdrs["content-type"] == "application/x-bittorrent"
        assert generations(daemon) == made  # served from the catalog, not made by the GET
        entry = daemon.catalog.get(s3_bucket, KEY)
        assert entry is not None and entry.torrent == torrent
        assert b"failure reason" not in bencode.encode(await announce(daemon, entry.info_hash_v1))

        # The same event again (a sender's retry): nothing new happens.
        again = await send(daemon, sender, "created", s3_bucket, sequencer="0A",
                           etag=etag, size=SIZE)
        assert again == {"accepted": 0, "ignored": 1}

        s3.delete_object(Bucket=s3_bucket, Key=KEY)
        await send(daemon, sender, "removed", s3_bucket, sequencer="0B")
        await until(lambda: daemon.catalog.get(s3_bucket, KEY) is None,
                    "the event dropped the torrent")
        status, _, xml = await request(daemon, "GET", object_url(s3_bucket))
        assert status == 404 and b"<Code>NoSuchKey</Code>" in xml
        refused = await announce(daemon, entry.info_hash_v1)
        assert refused[b"failure reason"] == b"unregistered torrent"
        assert generations(daemon) == made
        nursery.cancel_scope.cancel()


async def test_created_event_for_a_current_key_costs_no_head(
        tmp_path: Path, moto: Any, s3_bucket: str) -> None:
    """An event naming the ETag already hashed is done without the store; an event with a
    new ETag (an overwrite) makes the new torrent."""
    s3 = moto.client()
    first = s3.put_object(Bucket=s3_bucket, Key=KEY, Body=b"a" * 1000)["ETag"].strip('"')
    async with trio.open_nursery() as nursery:
        daemon = await start(nursery, make_config(tmp_path, moto, s3_bucket))
        await send(daemon, "minio", "created", s3_bucket, sequencer="01", etag=first, size=1000)
        await until(lambda: daemon.catalog.get(s3_bucket, KEY) is not None, "generated")
        await daemon.events.wait_idle()
        applied = daemon.events.applied
        await send(daemon, "minio", "created", s3_bucket, sequencer="02", etag=first, size=1000)
        await daemon.events.wait_idle()
        assert daemon.events.applied == applied + 1 and generations(daemon) == 1
        second = s3.put_object(Bucket=s3_bucket, Key=KEY, Body=b"b" * 2000)["ETag"].strip('"')
        await send(daemon, "minio", "created", s3_bucket, sequencer="03", etag=second, size=2000)
        await until(lambda: (e := daemon.catalog.get(s3_bucket, KEY)) is not None
                    and e.etag == second, "the overwrite's torrent")
        assert generations(daemon) == 2
        nursery.cancel_scope.cancel()


async def test_out_of_order_delete_is_ignored(tmp_path: Path, moto: Any, s3_bucket: str) -> None:
    s3 = moto.client()
    s3.put_object(Bucket=s3_bucket, Key=KEY, Body=b"x" * 5000)
    async with trio.open_nursery() as nursery:
        daemon = await start(nursery, make_config(tmp_path, moto, s3_bucket))
        await send(daemon, "sns", "created", s3_bucket, sequencer="0055AED6DCD90281F7")
        await until(lambda: daemon.catalog.get(s3_bucket, KEY) is not None, "generated")
        late = await send(daemon, "sns", "removed", s3_bucket, sequencer="0055AED6DCD90281E5")
        assert late == {"accepted": 0, "ignored": 1}
        await daemon.events.wait_idle()
        assert daemon.catalog.get(s3_bucket, KEY) is not None
        # A delete event whose object is still there (e.g. it was written again): the
        # store has the last word, the torrent stays.
        await send(daemon, "sns", "removed", s3_bucket, sequencer="0055AED6DCD9028200")
        await daemon.events.wait_idle()
        assert daemon.catalog.get(s3_bucket, KEY) is not None
        nursery.cancel_scope.cancel()


async def test_many_events_for_one_key_coalesce(tmp_path: Path, moto: Any,
                                                s3_bucket: str) -> None:
    s3 = moto.client()
    s3.put_object(Bucket=s3_bucket, Key=KEY, Body=b"y" * 3000)
    async with trio.open_nursery() as nursery:
        daemon = await start(nursery, make_config(tmp_path, moto, s3_bucket))
        records = [json.loads(shaped("ceph", "created", s3_bucket, KEY, sequencer=f"{i:04X}"))
                   ["Records"][0] for i in range(1, 51)]
        status, _, body = await post(daemon, json.dumps({"Records": records}).encode(),
                                     {**headers("ceph"), **BEARER})
        assert status == 200 and json.loads(body) == {"accepted": 50, "ignored": 0}
        await until(lambda: daemon.catalog.get(s3_bucket, KEY) is not None, "generated")
        await daemon.events.wait_idle()
        assert daemon.events.applied <= 2 and generations(daemon) == 1
        nursery.cancel_scope.cancel()


# -- auth -------------------------------------------------------------------------------------


def basic(password: str) -> dict[str, str]:
    raw = base64.b64encode(f"sns:{password}".encode()).decode()
    return {"authorization": f"Basic {raw}"}


@pytest.mark.parametrize(("auth", "query"), [
    (BEARER, ""), (basic(TOKEN), ""), ({}, f"?token={TOKEN}"),
], ids=["bearer", "basic", "query"])
async def test_each_auth_mode_is_accepted(tmp_path: Path, moto: Any, s3_bucket: str,
                                          auth: dict[str, str], query: str) -> None:
    moto.client().put_object(Bucket=s3_bucket, Key=KEY, Body=b"z" * 100)
    async with trio.open_nursery() as nursery:
        daemon = await start(nursery, make_config(tmp_path, moto, s3_bucket))
        status, _, body = await post(daemon, shaped("minio", "created", s3_bucket, KEY),
                                     {**headers("minio"), **auth}, query)
        assert (status, json.loads(body)) == (200, {"accepted": 1, "ignored": 0})
        await until(lambda: daemon.catalog.get(s3_bucket, KEY) is not None, "generated")
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("auth", "query", "status"), [
    ({}, "", 401),
    ({"authorization": "Bearer nope"}, "", 403),
    (basic("nope"), "", 403),
    ({}, "?token=nope", 403),
    ({"authorization": f"Token {TOKEN}"}, "", 403),
], ids=["none", "bearer", "basic", "query", "scheme"])
async def test_missing_or_wrong_token_changes_nothing(tmp_path: Path, moto: Any,
                                                      s3_bucket: str, auth: dict[str, str],
                                                      query: str, status: int) -> None:
    moto.client().put_object(Bucket=s3_bucket, Key=KEY, Body=b"z" * 100)
    async with trio.open_nursery() as nursery:
        daemon = await start(nursery, make_config(tmp_path, moto, s3_bucket))
        got, hdrs, body = await post(daemon, shaped("minio", "created", s3_bucket, KEY),
                                     {**headers("minio"), **auth}, query)
        assert got == status and TOKEN.encode() not in body
        if status == 401:
            assert hdrs["www-authenticate"] in ('Basic realm="s3torrent events"',
                                                'Bearer realm="s3torrent events"')
        assert len(daemon.events.pending) == 0 and daemon.events.applied == 0
        assert daemon.catalog.count() == 0 and events_counted(daemon, "refused") == 1
        nursery.cancel_scope.cancel()


# -- bad input --------------------------------------------------------------------------------


async def test_bad_input(tmp_path: Path, moto: Any, s3_bucket: str) -> None:
    moto.client().put_object(Bucket=s3_bucket, Key=KEY, Body=b"z" * 100)
    good = shaped("minio", "created", s3_bucket, KEY)
    json_ct = {**headers("minio"), **BEARER}
    async with trio.open_nursery() as nursery:
        daemon = await start(nursery, make_config(tmp_path, moto, s3_bucket))
        cases = [
            (b'{"Records": [', json_ct, 400, b"not valid JSON"),
            (good, {**BEARER, "content-type": "text/plain"}, 400, b"not JSON"),
            (good, {**BEARER, "content-type": "application/x-www-form-urlencoded"}, 400,
             b"not JSON"),
            (b'{"EventName": "s3:ObjectCreated:Put"}', json_ct, 400, b"missing 'Records'"),
            (json.dumps({"Records": [{"eventName": 5}]}).encode(), json_ct, 400,
             b"wrong type"),
            (shaped("minio", "created", "local", "a/../../etc/passwd"), json_ct, 400,
             b"'..' segment"),
            (good + b" " * (1 << 20), json_ct, 413, b"too large"),
        ]
        for body, hdrs, status, words in cases:
            got, _, answer = await post(daemon, body, hdrs)
            assert (got, words in answer) == (status, True), (body[:80], got, answer)
        # One bad record refuses the good one with it.
        doc = json.loads(good)
        doc["Records"].append({"eventName": "s3:ObjectCreated:Put", "s3": {}})
        got, _, _ = await post(daemon, json.dumps(doc).encode(), json_ct)
        assert got == 400
        # Unknown buckets and other event types: 2xx, ignored.
        counts = await send(daemon, "minio", "created", "not-configured")
        assert counts == {"accepted": 0, "ignored": 1}
        status, hdrs, _ = await request(daemon, "GET", "/-/events", hdrs=BEARER)
        assert status == 405 and hdrs["allow"] == "POST"
        await daemon.events.wait_idle()
        assert daemon.catalog.count() == 0 and daemon.events.applied == 0
        # Still alive and serving.
        await send(daemon, "minio", "created", s3_bucket)
        await until(lambda: daemon.catalog.get(s3_bucket, KEY) is not None, "generated")
        nursery.cancel_scope.cancel()


async def test_path_not_served_when_off(tmp_path: Path, moto: Any, s3_bucket: str) -> None:
    async with trio.open_nursery() as nursery:
        daemon = await start(nursery, make_config(tmp_path, moto, s3_bucket, enabled=False))
        assert daemon.events is None
        status, _, body = await post(daemon, shaped("minio", "created", s3_bucket, KEY),
                                     {**headers("minio"), **BEARER})
        assert status != 200 and b"<Error>" in body  # the S3 API's answer, not ours
        nursery.cancel_scope.cancel()


# -- SNS --------------------------------------------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = b"<ConfirmSubscriptionResponse/>"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def sns_server() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server standing in for SNS's ConfirmSubscription endpoint."""
    seen: list[str] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def confirmation(base: str, topic: str, path: str) -> bytes:
    doc = load("sns_subscription_confirmation.json")
    doc["TopicArn"] = topic
    doc["SubscribeURL"] = f"{base}/{path}?Action=ConfirmSubscription&TopicArn={topic}"
    return json.dumps(doc).encode()


async def test_sns_subscription_confirmed_once(tmp_path: Path, moto: Any, s3_bucket: str,
                                               sns_server: tuple[str, list[str]]) -> None:
    base, seen = sns_server
    confirm = {**SNS_HEADERS, "x-amz-sns-message-type": "SubscriptionConfirmation"}
    basic_auth = basic(TOKEN)  # how an SNS subscription URL carries credentials
    async with trio.open_nursery() as nursery:
        daemon = await start(nursery, make_config(tmp_path, moto, s3_bucket))
        for _ in range(2):  # SNS may deliver it twice: confirmed once
            status, _, _ = await post(daemon, confirmation(base, TOPIC, "first"),
                                      {**confirm, **basic_auth})
            assert status == 200
        other = "arn:aws:sns:us-east-1:123456789012:someone-elses"
        status, _, body = await post(daemon, confirmation(base, other, "other"),
                                     {**confirm, **basic_auth})
        assert status == 200 and json.loads(body) == {"confirmed": False}
        # A marker behind them in the same FIFO: once it is fetched, anything queued
        # before it was too.
        await post(daemon, confirmation(base, TOPIC, "marker"), {**confirm, **basic_auth})
        await until(lambda: any(p.startswith("/marker") for p in seen), "marker fetched")
        assert [p.split("?")[0] for p in seen] == ["/first", "/marker"]
        # The test event that follows a new S3 configuration: accepted, ignored.
        status, _, body = await post(daemon, json.dumps(load("sns_test_event.json")).encode(),
                                     {**SNS_HEADERS, **basic_auth})
        assert (status, json.loads(body)) == (200, {"accepted": 0, "ignored": 1})
        nursery.cancel_scope.cancel()


async def test_reload_changes_the_token(tmp_path: Path, moto: Any, s3_bucket: str) -> None:
    async with trio.open_nursery() as nursery:
        config = make_config(tmp_path, moto, s3_bucket)
        daemon = await start(nursery, config)
        new = replace(config, events=replace(config.events, token="another-token"))
        daemon.torrents.config = new  # what Daemon.reload does with a new file
        got, _, _ = await post(daemon, shaped("minio", "created", "x", KEY),
                               {**headers("minio"), **BEARER})
        assert got == 403
        daemon.torrents.config = replace(new, events=replace(new.events, enabled=False))
        got, _, body = await post(daemon, shaped("minio", "created", "x", KEY),
                                  {**headers("minio"), **BEARER})
        assert got != 200 and b"<Error>" in body
        nursery.cancel_scope.cancel()
