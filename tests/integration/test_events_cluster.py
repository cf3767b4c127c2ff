"""Events in a cluster: two daemons (in-process) sharing one redis-server, moto as the
backend. An upload event POSTed to one node gives every node the torrent (hashed once);
a delete event POSTed to the other drops it everywhere (catalog and tracker)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import trio

from seeder.config import ClusterConfig
from seeder.ops.daemon import Daemon
from tests.integration.test_events import (
    KEY,
    announce,
    generations,
    make_config,
    send,
    start,
    until,
)
from tests.redis_server import RedisServer

REDIS_DB = 7  # test_cluster uses 1; keys are per bucket anyway


def in_catalog(daemon: Daemon, bucket: str) -> bool:
    return daemon.catalog.get(bucket, KEY) is not None


async def test_events_reach_every_node(tmp_path: Path, moto_server: Any, s3_bucket: str,
                                       redis_server: RedisServer) -> None:
    s3 = moto_server.client()
    etag = s3.put_object(Bucket=s3_bucket, Key=KEY, Body=b"c" * 70_000)["ETag"].strip('"')
    async with trio.open_nursery() as nursery:
        nodes = []
        for name in ("ev-a", "ev-b"):
            (tmp_path / name).mkdir()
            config = make_config(tmp_path / name, moto_server, s3_bucket)
            config = replace(config, cluster=ClusterConfig(
                redis_url=redis_server.url(REDIS_DB), node_id=name))
            nodes.append(await start(nursery, config))
        a, b = nodes
        await send(a, "minio", "created", s3_bucket, sequencer="01", etag=etag, size=70_000)
        await until(lambda: in_catalog(a, s3_bucket) and in_catalog(b, s3_bucket),
                    "the torrent on both nodes")
        assert generations(a) + generations(b) == 1  # hashed once, on the node told
        entry = b.catalog.get(s3_bucket, KEY)
        assert entry is not None and entry.torrent == a.catalog.get(s3_bucket, KEY).torrent
        for node in nodes:
            assert b"failure reason" not in await announce(node, entry.info_hash_v1)

        s3.delete_object(Bucket=s3_bucket, Key=KEY)
        await send(b, "ceph", "removed", s3_bucket, sequencer="02")
        await until(lambda: not in_catalog(a, s3_bucket) and not in_catalog(b, s3_bucket),
                    "the torrent gone from both nodes")
        for node in nodes:
            refused = await announce(node, entry.info_hash_v1)
            assert refused[b"failure reason"] == b"unregistered torrent"
        nursery.cancel_scope.cancel()
