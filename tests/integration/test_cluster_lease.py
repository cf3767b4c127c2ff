"""The shared catalog's lease against a real redis-server, in process: a node waits while
another holds an object's lease, takes the record the holder publishes, and takes over a
lease its holder let expire (a crash); Redis unreachable: the node hashes on its own."""

from __future__ import annotations

import trio

from seeder.cluster import records
from seeder.cluster.keys import Keys, catalog_name
from seeder.cluster.link import RedisLink
from seeder.cluster.shared_catalog import SharedCatalog
from seeder.torrent.entry import Entry
from tests.redis_server import RedisServer


def _entry(etag: str) -> Entry:
    return Entry(bucket="b", key="k", etag=etag, version_id=None, size=5, last_modified=1.0,
                 torrent=b"d4:infode", info_hash_v1=b"\x01" * 20, info_hash_v2=None,
                 piece_length=16384, format="v1", created_at=1.0)


async def test_lease_wait_take_and_expiry(redis_server: RedisServer) -> None:
    keys = Keys(b"lease-test:")
    link = RedisLink(redis_server.url(9))
    made: list[str] = []

    async def generate() -> Entry:
        made.append("here")
        return _entry('"new"')

    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        shared = SharedCatalog(link, "n1", keys=keys)
        name = catalog_name("b", "k", None)
        lease = keys.lease(name)
        # Another node holds the lease and publishes while we wait: we take its record.
        await link.call(lambda c: c.set(lease, b"n2 x", px=5000))

        async def other_node_publishes() -> None:
            await trio.sleep(0.5)
            await link.call(lambda c: c.set(keys.catalog(name),
                                            records.encode_entry(_entry('"new"'))))
            await link.call(lambda c: c.delete([lease]))

        nursery.start_soon(other_node_publishes)
        with trio.fail_after(10):
            entry, here = await shared.generate_once("b", "k", None,
                                                     lambda e: e.etag == '"new"', generate)
        assert (entry.etag, here, made) == ('"new"', False, [])

        # A stale record and a lease whose holder died: the lease expires, we hash.
        await link.call(lambda c: c.set(lease, b"n3 dead", px=400))
        with trio.fail_after(10):
            entry, here = await shared.generate_once("b", "k", None,
                                                     lambda e: e.etag == '"newer"', generate)
        assert here and made == ["here"]
        stored = await link.call(lambda c: c.get(keys.catalog(name)))
        assert records.decode_entry(stored).etag == '"new"'  # what generate() returned
        assert await link.call(lambda c: c.get(lease)) is None  # given back
        nursery.cancel_scope.cancel()


async def test_unreachable_redis_hashes_here() -> None:
    link = RedisLink("redis://127.0.0.1:1/0", timeout=0.5)
    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        shared = SharedCatalog(link, "n1")

        async def generate() -> Entry:
            return _entry('"e"')

        with trio.fail_after(10):
            entry, here = await shared.generate_once("b", "k", None, lambda e: True, generate)
        assert here and entry.etag == '"e"' and link.healthy is False
        nursery.cancel_scope.cancel()
