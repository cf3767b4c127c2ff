"""A torrent's links follow the config: the daemon in-process over a moto bucket, restarted
on the same state dir with another ``server.public_url`` / ``tracker.public_url`` /
``tracker.udp_public_url`` / tracker switch, or reloaded with another bucket ``webseed``
mode. GetObjectTorrent then gives the same info-hash with the new links and hashes nothing;
the libtorrent session, resumed from its resume data, announces to the new tracker(s) and a
real libtorrent client completes from it."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

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
    load,
)
from seeder.ops.daemon import Daemon, serve
from seeder.torrent import metainfo, validation
from tests.helpers import free_port, lt_download, resume_keys
from tracker import bencode
from tracker.udp_protocol import PROTOCOL_ID

DEADLINE = 50.0  # s for one whole case: 2 busy CI cores
SIZE = 1024 * 1024 + 777  # 5 pieces of 256 KiB
KEY = "dir/links.bin"
AK, SK = "AKIDLINKSTEST", "links-test-secret"


@dataclass
class Ports:
    s3: int
    tracker: int

    @classmethod
    def fresh(cls) -> Ports:
        return cls(free_port(), free_port())

    @property
    def public(self) -> str:
        return f"http://127.0.0.1:{self.s3}"

    @property
    def announce(self) -> str:
        return f"http://127.0.0.1:{self.tracker}/announce"

    @property
    def udp_announce(self) -> str:
        return f"udp://127.0.0.1:{self.tracker}/announce"


def make_config(tmp: Path, moto: Any, bucket: str, ports: Ports, *, seeding: bool = False,
                tracker: bool = True, webseed: str = "proxy", udp: bool = False) -> Config:
    """``udp``: the UDP tracker on, on the HTTP tracker's port number, advertised by
    ``udp_public_url`` (:attr:`Ports.udp_announce`)."""
    return Config(
        server=ServerConfig(listen=HostPort("127.0.0.1", ports.s3), public_url=ports.public),
        tracker=TrackerConfig(
            enabled=tracker, listen=HostPort("127.0.0.1", ports.tracker),
            udp_listen=HostPort("127.0.0.1", ports.tracker) if udp else None,
            public_url=ports.announce, udp_public_url=ports.udp_announce if udp else "",
            interval=60, min_interval=1,
        ),
        metrics=MetricsConfig(listen=None),
        state=StateConfig(dir=str(tmp / "state")),
        scanner=ScannerConfig(enabled=False),
        seeding=SeedingConfig(enabled=seeding, listen_interfaces="127.0.0.1:0",
                              ssrf_mitigation=False),
        buckets=(
            BucketConfig(
                name=bucket, backend="s3", endpoint_url=moto.endpoint_url, region="us-east-1",
                access_key="testing", secret_key="testing", webseed=webseed,
            ),
        ),
    )


def get_torrent(daemon: Daemon, bucket: str) -> bytes:
    s3 = daemon.bound.s3
    url = f"http://{s3[0]}:{s3[1]}/{bucket}/{urllib.parse.quote(KEY)}?torrent"
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
        return r.read()


def generations(daemon: Daemon) -> float:
    """Torrents this daemon hashed (any result) and the bytes it hashed."""
    reg = daemon.registry
    made = sum(reg.get_sample_value("seeder_generations_total", {"result": r}) or 0.0
               for r in ("ok", "error", "cancelled"))
    return made + (reg.get_sample_value("seeder_hashed_bytes_total") or 0.0)


async def start(nursery: trio.Nursery, config: Config, config_path: Path | None = None) -> Daemon:
    return await nursery.start(lambda task_status: serve(
        config, config_path=None if config_path is None else str(config_path),
        task_status=task_status))


async def generate_then_restart(tmp: Path, moto: Any, first: Config,
                                second: Config) -> tuple[bytes, bytes, Daemon]:
    """Run a daemon on ``first``, get the torrent, stop it; run one on ``second`` (same state
    dir) and get the torrent again. Both torrents and the second daemon (stopped)."""
    async with trio.open_nursery() as nursery:
        daemon = await start(nursery, first)
        before = await trio.to_thread.run_sync(get_torrent, daemon, first.buckets[0].name)
        assert generations(daemon) > 0
        nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery:
        daemon = await start(nursery, second)
        after = await trio.to_thread.run_sync(get_torrent, daemon, second.buckets[0].name)
        nursery.cancel_scope.cancel()
    return before, after, daemon


def announces(daemon: Daemon, transport: str, *events: str) -> float:
    """Announces the daemon's tracker served over ``transport`` with one of ``events``."""
    return sum(daemon.registry.get_sample_value(
        "tracker_announces_total", {"event": e, "transport": transport}) or 0.0 for e in events)


def put(moto: Any, bucket: str, data: bytes) -> None:
    moto.client().put_object(Bucket=bucket, Key=KEY, Body=data, ACL="public-read")

async def download_from_the_seed_only(tmp: Path, torrent: bytes, data: bytes) -> None:
    """A libtorrent client on 127.0.0.2 given ``torrent`` without its web seed (url-list is
    outside ``info``: same swarm) completes with every byte from BitTorrent peers: the
    daemon's session, which it can only have found through the torrent's tracker."""
    result = await lt_download(metainfo.with_url_list(torrent, []), tmp / "client",
                               "127.0.0.2", DEADLINE)
    assert result["sha1"] == hashlib.sha1(data).hexdigest()
    assert result["peer_bytes"] >= SIZE and result["web_seed_bytes"] == 0



@pytest.mark.parametrize("change", ["server", "tracker", "tracker off", "unchanged"])
async def test_restarted_with_other_urls_the_torrent_gets_them_without_hashing(
    tmp_path: Path, moto_server: Any, change: str
) -> None:
    bucket = moto_server.create_bucket(prefix="links")
    put(moto_server, bucket, os.urandom(SIZE))
    ports = Ports.fresh()
    first = make_config(tmp_path, moto_server, bucket, ports)
    if change == "server":  # behind another address: the proxy web seed URL moves
        second = make_config(tmp_path, moto_server, bucket, Ports(free_port(), ports.tracker))
    elif change == "tracker":
        second = make_config(tmp_path, moto_server, bucket, Ports(ports.s3, free_port()))
    elif change == "tracker off":
        second = make_config(tmp_path, moto_server, bucket, ports, tracker=False)
    else:
        second = first
    with trio.fail_after(DEADLINE):
        before, after, daemon = await generate_then_restart(tmp_path, moto_server, first, second)
    assert generations(daemon) == 0  # relinked, not hashed again
    assert metainfo.info_hashes(after) == metainfo.info_hashes(before)
    validation.validate(after)
    want_announce = None if change == "tracker off" else second.tracker.public_url
    assert metainfo.links(after) == metainfo.Links.of(
        want_announce, [[want_announce]] if want_announce else None,
        [f"{second.server.public_url}/{bucket}/{KEY}"])
    top = bencode.decode(after)
    if change == "tracker off":
        assert b"announce" not in top and b"announce-list" not in top
    if change == "unchanged":
        assert after == before
    else:
        assert after != before
        assert after == metainfo.with_links(before, metainfo.links(after))


async def test_a_reload_to_proxy_mode_moves_the_web_seed_of_cached_torrents(
    tmp_path: Path, moto_server: Any
) -> None:
    """``webseed = "origin"`` -> ``"proxy"`` by a reload: the cached torrent (and the
    session's copy) now names this daemon as its web seed; no hashing."""
    bucket = moto_server.create_bucket(prefix="links")
    put(moto_server, bucket, os.urandom(SIZE))
    ports = Ports.fresh()
    state = tmp_path / "state"
    conf = tmp_path / "seeder.toml"

    def write_config(webseed: str) -> None:
        conf.write_text(f"""
[server]
listen = "127.0.0.1:{ports.s3}"
public_url = "{ports.public}"
[tracker]
listen = "127.0.0.1:{ports.tracker}"
public_url = "{ports.announce}"
[metrics]
[state]
dir = "{state}"
[seeding]
listen_interfaces = "127.0.0.1:0"
ssrf_mitigation = false
[scanner]
enabled = false
[[buckets]]
name = "{bucket}"
backend = "s3"
endpoint_url = "{moto_server.endpoint_url}"
region = "us-east-1"
access_key = "testing"
secret_key = "testing"
webseed = "{webseed}"
""")

    write_config("origin")
    config = load(str(conf), {})
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            daemon = await start(nursery, config, conf)
            before = await trio.to_thread.run_sync(get_torrent, daemon, bucket)
            origin = daemon.stores[bucket].origin_url(KEY)
            assert metainfo.links(before).url_list == (origin,)
            entry = daemon.torrents.lookup_cached(bucket, KEY)
            key = entry.seed_key
            session = daemon.seeding.session
            await session.wait_complete(key)
            assert session.web_seeds(key) == [origin]
            hashed = generations(daemon)

            write_config("proxy")
            assert await daemon.reload({})
            proxy = f"{ports.public}/{bucket}/{KEY}"
            # The reload relinked the catalog and the session at once ...
            assert session.web_seeds(key) == [proxy]
            after = await trio.to_thread.run_sync(get_torrent, daemon, bucket)
            assert generations(daemon) == hashed  # ... and nothing was hashed again
            assert metainfo.links(after).url_list == (proxy,)
            assert metainfo.links(after).announce == ports.announce
            assert metainfo.info_hashes(after) == metainfo.info_hashes(before)
            nursery.cancel_scope.cancel()


async def test_the_session_resumed_after_a_restart_announces_to_the_new_tracker(
    tmp_path: Path, moto_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Restarted with another tracker URL and S3 address: the session (resumed from its
    resume data, which hold the old links) announces to the new tracker and has the new web
    seed; a libtorrent client whose torrent has no web seed finds it through that tracker
    and downloads everything from it."""
    bucket = moto_server.create_bucket(prefix="links")
    data = os.urandom(SIZE)
    put(moto_server, bucket, data)
    old_ports, new_ports = Ports.fresh(), Ports.fresh()
    first = make_config(tmp_path, moto_server, bucket, old_ports, seeding=True)
    second = make_config(tmp_path, moto_server, bucket, new_ports, seeding=True)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            daemon = await start(nursery, first)
            await trio.to_thread.run_sync(get_torrent, daemon, bucket)
            entry = daemon.torrents.lookup_cached(bucket, KEY)
            key = entry.seed_key
            session = daemon.seeding.session
            await session.wait_complete(key)
            assert session.trackers(key) == [(old_ports.announce, 0)]
            nursery.cancel_scope.cancel()
        assert key in resume_keys(tmp_path / "state")

        async with trio.open_nursery() as nursery:
            daemon = await start(nursery, second)
            session = daemon.seeding.session
            assert session.has(key)  # from the resume data, not from a request
            assert session.trackers(key) == [(new_ports.announce, 0)]
            assert session.web_seeds(key) == [f"{new_ports.public}/{bucket}/{KEY}"]
            st = await session.wait_complete(key)
            assert st.downloaded == 0
            # The session's own "started" reaches the new tracker (polled; fail_after bounds it).
            while (daemon.registry.get_sample_value(
                    "tracker_announces_total", {"event": "started", "transport": "http"}) or 0) < 1:
                await trio.sleep(0.05)
            # ... at its first try: the tracker listened before the session resumed anything
            # (a refused announce backs off for ~15 s, the seed invisible meanwhile). Only the
            # new tracker's errors count: the first daemon's last "stopped" announce to its
            # own, closed tracker may be refused (libtorrent's message names the URL).
            refused = [
                r.getMessage() for r in caplog.records
                if "tracker error" in r.getMessage() and new_ports.announce in r.getMessage()
            ]
            assert refused == []

            torrent = await trio.to_thread.run_sync(get_torrent, daemon, bucket)
            assert generations(daemon) == 0
            assert metainfo.links(torrent).announce == new_ports.announce
            # Without its web seed, the client's only source is the session, found through
            # the tracker.
            await download_from_the_seed_only(tmp_path, torrent, data)
            nursery.cancel_scope.cancel()


async def test_a_restart_with_a_udp_url_puts_the_udp_tier_first_and_clients_announce_there(
    tmp_path: Path, moto_server: Any
) -> None:
    """Restarted with ``tracker.udp_public_url`` set: the cached torrent is relinked at
    startup (no hashing) to ``[[udp], [http]]`` with ``announce`` still HTTP; the session,
    resumed, announces to both tiers; a libtorrent client whose torrent has no web seed
    announces over UDP only (the first tier answers, so it never falls back to HTTP), finds
    the session there and downloads everything from it."""
    bucket = moto_server.create_bucket(prefix="links")
    data = os.urandom(SIZE)
    put(moto_server, bucket, data)
    ports = Ports.fresh()
    first = make_config(tmp_path, moto_server, bucket, ports, seeding=True)
    second = make_config(tmp_path, moto_server, bucket, ports, seeding=True, udp=True)
    want = metainfo.Links.of(ports.announce, [[ports.udp_announce], [ports.announce]],
                             [f"{ports.public}/{bucket}/{KEY}"])
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            daemon = await start(nursery, first)
            before = await trio.to_thread.run_sync(get_torrent, daemon, bucket)
            assert metainfo.links(before).announce_list == ((ports.announce,),)
            key = daemon.torrents.lookup_cached(bucket, KEY).seed_key
            await daemon.seeding.session.wait_complete(key)
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            daemon = await start(nursery, second)
            # relink_all at startup, before any request: the catalog row and the session.
            assert metainfo.links(daemon.torrents.lookup_cached(bucket, KEY).torrent) == want
            session = daemon.seeding.session
            assert session.trackers(key) == [(ports.udp_announce, 0), (ports.announce, 1)]
            st = await session.wait_complete(key)
            assert st.downloaded == 0
            # The session announces to every tier: its "started" reaches both transports.
            for transport in ("udp", "http"):
                while announces(daemon, transport, "started") < 1:
                    await trio.sleep(0.05)

            torrent = await trio.to_thread.run_sync(get_torrent, daemon, bucket)
            assert generations(daemon) == 0
            assert metainfo.info_hashes(torrent) == metainfo.info_hashes(before)
            assert metainfo.links(torrent) == want
            udp_before = announces(daemon, "udp", "started")
            http_before = announces(daemon, "http", "started", "completed", "stopped")
            # Without its web seed, the client's only source is the session, found through
            # the tracker.
            await download_from_the_seed_only(tmp_path, torrent, data)
            assert announces(daemon, "udp", "started") == udp_before + 1
            assert announces(daemon, "http", "started", "completed", "stopped") == http_before
            nursery.cancel_scope.cancel()


async def test_the_old_links_in_resume_data_stay_when_the_catalog_has_none(
    tmp_path: Path, moto_server: Any
) -> None:
    """A resumed torrent the catalog no longer knows keeps its resume data's links (the
    session is told nothing better); it is not dropped."""
    bucket = moto_server.create_bucket(prefix="links")
    put(moto_server, bucket, os.urandom(SIZE))
    ports = Ports.fresh()
    config = make_config(tmp_path, moto_server, bucket, ports, seeding=True)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            daemon = await start(nursery, config)
            await trio.to_thread.run_sync(get_torrent, daemon, bucket)
            entry = daemon.torrents.lookup_cached(bucket, KEY)
            key = entry.seed_key
            await daemon.seeding.session.wait_complete(key)
            daemon.catalog.delete(bucket, KEY)  # behind the service's back: no listener told
            nursery.cancel_scope.cancel()
        async with trio.open_nursery() as nursery:
            daemon = await start(nursery, replace(config, tracker=replace(
                config.tracker, public_url="http://127.0.0.1:1/announce")))
            assert daemon.seeding.session.trackers(key) == [(ports.announce, 0)]
            nursery.cancel_scope.cancel()


def signed_get_torrent(daemon: Daemon, bucket: str) -> bytes:
    """GetObjectTorrent through boto3, SigV4-signed with the test credentials."""
    import boto3
    from botocore.config import Config as BotoConfig

    host, port = daemon.bound.s3
    client = boto3.client(
        "s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
        aws_access_key_id=AK, aws_secret_access_key=SK,
        config=BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    return client.get_object_torrent(Bucket=bucket, Key=KEY)["Body"].read()


async def test_a_presigned_web_seed_comes_with_the_new_tracker(
    tmp_path: Path, moto_server: Any
) -> None:
    """A private bucket's answers carry a fresh presigned URL as their web seed (none is
    stored); after a restart with another tracker URL they carry that tracker too."""
    bucket = moto_server.create_bucket(prefix="links")
    moto_server.client().put_object(Bucket=bucket, Key=KEY, Body=os.urandom(SIZE))

    def private(config: Config) -> Config:
        b = replace(config.buckets[0], public=False, presign_webseed=600, webseed="origin")
        return replace(config, buckets=(b,), credentials=(CredentialConfig(AK, SK, ("*",)),))

    ports = Ports.fresh()
    first = private(make_config(tmp_path, moto_server, bucket, ports))
    second = private(make_config(tmp_path, moto_server, bucket, Ports(ports.s3, free_port())))
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            daemon = await start(nursery, first)
            before = await trio.to_thread.run_sync(signed_get_torrent, daemon, bucket)
            stored = daemon.torrents.lookup_cached(bucket, KEY).torrent
            nursery.cancel_scope.cancel()
        async with trio.open_nursery() as nursery:
            daemon = await start(nursery, second)
            after = await trio.to_thread.run_sync(signed_get_torrent, daemon, bucket)
            assert generations(daemon) == 0
            nursery.cancel_scope.cancel()
    assert metainfo.links(stored).url_list == ()  # the presigned URL is per answer
    for torrent, announce in ((before, first.tracker.public_url),
                              (after, second.tracker.public_url)):
        links = metainfo.links(torrent)
        assert links.announce == announce and links.announce_list == ((announce,),)
        (seed,) = links.url_list
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(seed).query)
        assert seed.startswith(moto_server.endpoint_url) and "X-Amz-Signature" in query
    assert metainfo.info_hashes(after) == metainfo.info_hashes(before)


async def test_udp_connection_ids_outlive_a_restart(tmp_path: Path, moto_server: Any) -> None:
    """The UDP tracker's connection-id key lives in the state dir: a client that connected
    before a restart announces with the same id after it (BEP 15 ids last two minutes)."""
    bucket = moto_server.create_bucket(prefix="links")
    put(moto_server, bucket, os.urandom(SIZE))
    config = make_config(tmp_path, moto_server, bucket, Ports.fresh(), udp=True)
    server = ("127.0.0.1", config.tracker.udp_listen.port)
    client = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await client.bind(("127.0.0.1", 0))  # one client port: the id is bound to it

    async def exchange(packet: bytes) -> bytes:
        await client.sendto(packet, server)
        return (await client.recvfrom(4096))[0]

    with client, trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            daemon = await start(nursery, config)
            await trio.to_thread.run_sync(get_torrent, daemon, bucket)
            info_hash = daemon.torrents.lookup_cached(bucket, KEY).info_hash_v1
            action, _, cid = struct.unpack(
                ">IIQ", await exchange(struct.pack(">QII", PROTOCOL_ID, 0, 1)))
            assert action == 0
            nursery.cancel_scope.cancel()
        assert (tmp_path / "state" / "tracker.key").stat().st_mode & 0o777 == 0o600
        async with trio.open_nursery() as nursery:
            daemon = await start(nursery, config)
            reply = await exchange(struct.pack(
                ">QII20s20sQQQIIIiH", cid, 1, 2, info_hash, b"-YY0001-" + bytes(12),
                0, SIZE, 0, 2, 0, 0, 50, 6881))  # fmt: skip
            assert struct.unpack(">II", reply[:8]) == (1, 2)  # an announce answer, no error
            assert announces(daemon, "udp", "started") == 1
            nursery.cancel_scope.cancel()
