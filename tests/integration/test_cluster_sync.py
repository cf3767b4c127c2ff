"""The swarm sync of three nodes against a real redis-server, in process, each tick driven by
the test: what a node catching up after a failed Redis call does to a peer another node
just stopped (tests/integration/test_cluster.py runs the same sync in real daemons)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from seeder.cluster.keys import Keys
from seeder.cluster.link import RedisLink, Unavailable
from seeder.cluster.swarm_sync import SwarmSync
from tests.redis_server import RedisServer
from tracker.core import TrackerCore

IH = b"\x07" * 20
DB = 11  # test_cluster uses 1, the lease test 9, test_events_cluster 7, grafana 5


def _query(peer_id: bytes, rest: bytes = b"&left=5") -> bytes:
    return (b"info_hash=" + b"%07" * 20 + b"&port=6881&compact=1&peer_id=" + peer_id + rest)


class StepLink(RedisLink):
    """A real link whose next script calls can be preceded by a step of the test (another
    node acting between two round trips of this one)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.before: list[Callable[[], Awaitable[None]] | None] = []

    async def script(self, source: str, keys: Any, args: Any) -> Any:
        step = self.before.pop(0) if self.before else None
        if step is not None:
            await step()
        return await super().script(source, keys, args)


class Node:
    def __init__(self, name: str, url: str, keys: Keys) -> None:
        self.core = TrackerCore(interval=100, min_interval=1, rng=random.Random(1))
        self.core.register([IH])
        self.link = StepLink(url)
        self.sync = SwarmSync(self.link, self.core, name, keys=keys)
        self.core.peer_log = self.sync

    def announce(self, peer: int, rest: bytes = b"&left=5") -> None:
        pid = b"-TS0001-%012d" % peer
        body = self.core.http_announce(_query(pid, rest), [], f"10.0.0.{peer}", trio.current_time())
        assert b"failure" not in body, body

    def peers(self) -> set[int]:
        swarm = self.core.swarms.get(IH)
        assert swarm is not None
        return {addr[3] for addr in swarm.peers}

    async def lose_redis_once(self) -> None:
        """One failed call (as a 2-s timeout under load): degraded, then reachable again on
        the next call, which bumps the link's epoch: the next tick catches up."""

        async def fail(_: Any) -> None:
            raise OSError("timed out (test)")

        try:
            await self.link.call(fail)
        except Unavailable:
            pass
        await self.link.call(lambda c: c.ping())


@asynccontextmanager
async def three_nodes(redis: RedisServer, prefix: bytes) -> AsyncIterator[list[Node]]:
    keys = Keys(prefix)
    nodes = [Node(f"n{i}", redis.url(DB), keys) for i in range(3)]
    async with trio.open_nursery() as nursery:
        for n in nodes:
            await nursery.start(n.link.run)
        for n in nodes:
            await n.sync.tick()  # first contact
        yield nodes
        nursery.cancel_scope.cancel()


async def test_a_node_catching_up_does_not_bring_back_a_peer_stopped_elsewhere(
        redis_server: RedisServer) -> None:
    """Node a misses one Redis call while the peer stops on node b: a's catch-up pushed its
    whole view, the stopped peer in it, after b's stop: every node had the peer again until
    its deadline (test_one_swarm_over_http_and_udp: 'stopped peer gone everywhere')."""
    async with three_nodes(redis_server, b"sync-stop-1:") as (a, b, c):
        for n in (a, b, c):
            n.announce(1)  # the test's peer 1 announced to every node
        a.announce(2)
        for n in (a, b, c, a, b, c):
            await n.sync.tick()
        assert a.peers() == b.peers() == c.peers() == {1, 2}
        await a.lose_redis_once()
        b.announce(1, b"&left=5&event=stopped")
        await b.sync.tick()
        await a.sync.tick()  # catching up
        for n in (b, c, a, b, c):
            await n.sync.tick()
        assert (a.peers(), b.peers(), c.peers()) == ({2}, {2}, {2})


async def test_a_stop_between_the_catch_up_round_trips_is_not_undone(
        redis_server: RedisServer) -> None:
    """The same with the stop pushed after a's catch-up read the log and before its view
    goes out: the view is refused (a has not read b's stop), read, and sent again."""
    async with three_nodes(redis_server, b"sync-stop-2:") as (a, b, c):
        for n in (a, b, c):
            n.announce(1)
        a.announce(2)
        for n in (a, b, c, a, b, c):
            await n.sync.tick()
        await a.lose_redis_once()
        b.announce(1, b"&left=5&event=stopped")
        # a's catch-up: its first round trip reads the log; b's stop lands before the next.
        a.link.before = [None, b.sync.tick]
        await a.sync.tick()
        assert a.link.before == []  # b's step ran
        for n in (b, c, a, b, c):
            await n.sync.tick()
        assert (a.peers(), b.peers(), c.peers()) == ({2}, {2}, {2})
        # The whole view still reaches Redis (a restarted Redis gets it back): a new node
        # reads peer 2 from the swarm's sorted set.
        d = Node("n3", redis_server.url(DB), Keys(b"sync-stop-2:"))
        async with trio.open_nursery() as nursery:
            await nursery.start(d.link.run)
            await d.sync.tick()
            nursery.cancel_scope.cancel()
        assert d.peers() == {2}


async def test_a_stop_is_not_undone_by_an_older_announce_read_in_the_same_round_trip(
        redis_server: RedisServer) -> None:
    """Node a pushed the peer's announce; before b read it, the peer stopped on b. b's
    round trip pushes the stop and reads a's announce, which the log orders before it:
    applying it on b brought the peer back on b alone, the others dropping it (the
    'stopped peer gone everywhere' failure without any Redis error)."""
    async with three_nodes(redis_server, b"sync-stop-3:") as (a, b, c):
        for n in (a, b, c):
            n.announce(1)
        for n in (a, b, c):
            await n.sync.tick()
        a.announce(1)  # again: a's word on peer 1 goes out ...
        await a.sync.tick()
        b.announce(1, b"&left=5&event=stopped")  # ... and b has not read it when it stops
        for n in (b, c, a, b, c):
            await n.sync.tick()
        assert (a.peers(), b.peers(), c.peers()) == (set(), set(), set())


async def test_an_announce_pushed_after_a_stop_elsewhere_wins_on_every_node(
        redis_server: RedisServer) -> None:
    """The other order: b's stop is in the log before a's later push of the peer's
    announce. Every node follows the log's order (the announce wins), a included: a must not
    apply b's older stop on top of what it just pushed."""
    async with three_nodes(redis_server, b"sync-stop-4:") as (a, b, c):
        for n in (a, b, c):
            n.announce(1)
        for n in (a, b, c):
            await n.sync.tick()
        a.announce(1)  # not pushed yet ...
        b.announce(1, b"&left=5&event=stopped")
        await b.sync.tick()  # ... when b's stop goes out
        for n in (a, b, c, a):
            await n.sync.tick()
        assert (a.peers(), b.peers(), c.peers()) == ({1}, {1}, {1})


async def test_a_node_behind_the_trimmed_log_reads_the_swarms_again(
        redis_server: RedisServer, monkeypatch: Any) -> None:
    """The log keeps LOG_KEEP_MS (30 s; 50 ms here): a node whose last read entry was
    trimmed learns it at its next push (the gap) and reads every swarm back at the tick
    after, so the peers of the entries it missed are there."""
    from seeder.cluster import swarm_sync

    monkeypatch.setattr(swarm_sync, "LOG_KEEP_MS", 50)
    async with three_nodes(redis_server, b"sync-gap-1:") as (a, b, c):
        a.announce(1)
        for n in (a, b, c):
            await n.sync.tick()
        assert b.peers() == {1}
        peer = 2
        with trio.fail_after(20):
            while True:  # a's batches (over 4 KB: one stream node each) trim the log
                for _ in range(100):
                    a.announce(peer % 250 + 2)
                    peer += 1
                await a.sync.tick()
                first = await a.link.call(lambda r: r.xrange(b"sync-gap-1:log", count=1))
                if swarm_sync.log_id(first[0][0]) > swarm_sync.log_id(b.sync._last_id):
                    break
                await trio.sleep(0.01)
        await b.sync.tick()  # the gap found ...
        assert b.sync._epoch == 0
        await b.sync.tick()  # ... and read again
        assert b.peers() == a.peers()
