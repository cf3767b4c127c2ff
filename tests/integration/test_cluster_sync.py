"""The swarm sync of three nodes against a real redis-server, in process, each tick driven by
the test: what a node catching up after a failed Redis call does to a peer another node
just stopped (tests/integration/test_cluster.py runs the same sync in real daemons)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from seeder.cluster import records
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
        self.lose_replies = 0  # the next scripts run in Redis, their replies are lost

    async def script(self, source: str, keys: Any, args: Any) -> Any:
        step = self.before.pop(0) if self.before else None
        if step is not None:
            await step()
        reply = await super().script(source, keys, args)
        if self.lose_replies:
            # As a client-side timeout after Redis ran the script: the call fails as
            # any failure does (degraded; the next success bumps the epoch).
            self.lose_replies -= 1
            self._failed(TimeoutError("reply lost (test)"))
            raise Unavailable("reply lost (test)")
        return reply


class Node:
    def __init__(self, name: str, url: str, keys: Keys) -> None:
        self.core = TrackerCore(interval=100, min_interval=1, rng=random.Random(1))
        self.core.register([IH])
        self.link = StepLink(url)
        self.sync = SwarmSync(self.link, self.core, name, keys=keys)
        self.core.peer_log = self.sync

    def announce(self, peer: int, rest: bytes = b"&left=5", at: float | None = None) -> None:
        pid = b"-TS0001-%012d" % peer
        now = trio.current_time() if at is None else at
        body = self.core.http_announce(_query(pid, rest), [], f"10.0.0.{peer}", now)
        assert b"failure" not in body, body

    def peers(self) -> set[int]:
        swarm = self.core.swarms.get(IH)
        assert swarm is not None
        return {addr[3] for addr in swarm.peers}

    def roles(self) -> dict[int, str]:
        swarm = self.core.swarms.get(IH)
        assert swarm is not None
        return {addr[3]: "leecher" if p.slot & 1 else "seeder" for addr, p in swarm.peers.items()}

    def downloaded(self) -> int:
        swarm = self.core.swarms.get(IH)
        assert swarm is not None
        return swarm.downloaded

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


async def test_a_stop_heard_while_a_round_trip_is_out_is_not_undone_by_what_it_reads(
        redis_server: RedisServer) -> None:
    """b's tick is on its way to Redis (it took what was pending) when the peer stops on b,
    and a pushes its announce of that peer just before b's script runs: b's reply brings
    a's announce, which the log orders before b's stop (b pushes it next). Applying it
    brought the peer back on b alone (test_cluster.py's 'stopped on another at once', 1 in
    ~20 suite runs)."""
    async with three_nodes(redis_server, b"sync-stop-6:") as (a, b, c):
        a.announce(7)

        async def meanwhile() -> None:
            b.announce(7, b"&left=5&event=stopped")
            await a.sync.tick()

        b.link.before.append(meanwhile)
        await b.sync.tick()
        assert 7 not in b.peers()
        for n in (a, b, c, a, b, c):
            await n.sync.tick()
        assert (a.peers(), b.peers(), c.peers()) == (set(), set(), set())


async def test_an_announce_heard_while_a_round_trip_is_out_is_not_undone_by_a_stop_it_reads(
        redis_server: RedisServer) -> None:
    """The other way round: the peer stops on a, and a pushes the stop, while b's tick is
    on its way and b hears the peer announce: b's announce goes out after a's stop, so the
    peer stays on every node, b included."""
    async with three_nodes(redis_server, b"sync-stop-7:") as (a, b, c):
        for n in (a, b, c):
            n.announce(8)
        for n in (a, b, c):
            await n.sync.tick()

        async def meanwhile() -> None:
            a.announce(8, b"&left=5&event=stopped")
            await a.sync.tick()
            b.announce(8)

        b.link.before.append(meanwhile)
        await b.sync.tick()
        assert 8 in b.peers()
        for n in (a, b, c, a, b, c):
            await n.sync.tick()
        assert (a.peers(), b.peers(), c.peers()) == ({8}, {8}, {8})


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
        peer, unread = 2, None
        with trio.fail_after(20):
            while True:  # a's batches (over 4 KB: one stream node each) trim the log
                for _ in range(100):
                    a.announce(peer % 250 + 2)
                    peer += 1
                await a.sync.tick()
                log = await a.link.call(lambda r: r.xrange(b"sync-gap-1:log"))
                if unread is None:  # the first entry b has not read
                    unread = swarm_sync.log_id(log[-1][0])
                if swarm_sync.log_id(log[0][0]) > unread:  # trimmed: b missed it
                    break
                await trio.sleep(0.01)
        await b.sync.tick()  # the gap found ...
        assert b.sync._epoch == 0
        await b.sync.tick()  # ... and read again
        assert b.peers() == a.peers()


async def test_a_push_whose_reply_was_lost_is_not_applied_twice(
        redis_server: RedisServer) -> None:
    """A push that ran in Redis but whose reply the node never got (a client-side timeout)
    is sent again: Redis answers the resend without applying or logging it again, so the
    download it carries is counted once in Redis and on every node (was: twice)."""
    async with three_nodes(redis_server, b"sync-dup-1:") as (a, b, c):
        a.announce(1)
        await a.sync.tick()
        a.announce(1, b"&left=0&event=completed")
        a.announce(2)
        a.link.lose_replies = 1
        with pytest.raises(Unavailable):
            await a.sync.tick()
        b.announce(3)
        for n in (a, b, c, a, b, c):
            await n.sync.tick()  # a catches up (its epoch moved): the batch goes again
        assert (a.downloaded(), b.downloaded(), c.downloaded()) == (1, 1, 1)
        assert await a.link.call(lambda r: r.hget(b"sync-dup-1:dl", IH)) == b"1"
        assert a.peers() == b.peers() == c.peers() == {1, 2, 3}
        entries = await a.link.call(lambda r: r.xrange(b"sync-dup-1:log"))
        logged = [c for e in entries for c in records.decode_changes(e[1][b"d"])]
        assert [c.count for c in logged if c.kind == records.DOWNLOADS] == [1]


@pytest.mark.parametrize("first", ["older", "newer"])
async def test_two_words_of_one_peer_on_two_nodes_end_as_the_later_one_everywhere(
        redis_server: RedisServer, first: str) -> None:
    """A peer announced as a leecher on a, then (0.5 s later, both words in one 25-s expiry
    bucket) finished on b. Whichever node pushes first, every node and Redis end with the
    later word, the seeder: the node pushing second must not apply the other's word on top
    of its own when that one is older (was: the log's order won on two nodes, the other
    node kept the other word)."""
    async with three_nodes(redis_server, b"sync-order-%s:" % first.encode()) as (a, b, c):
        timeout, width = a.core.swarms.peer_timeout, a.core.swarms.sweep_every
        now = trio.current_time()
        start = now + (-(now + timeout) % width) + 1.0  # 1 s into a deadline bucket
        for n in (a, b, c):
            n.announce(1, at=start)
        for n in (a, b, c):
            await n.sync.tick()
        a.announce(1, at=start + 1.0)
        a.announce(2, at=start + 1.0)  # in a's batch too: kept when peer 1's word is cut out
        b.announce(1, b"&left=0&event=completed", at=start + 1.5)
        for n in (b, a) if first == "newer" else (a, b):
            await n.sync.tick()
        for n in (c, a, b, c):
            await n.sync.tick()
        assert (a.roles(), b.roles(), c.roles()) == ({1: "seeder", 2: "leecher"},) * 3
        stored = await a.link.call(
            lambda r: r.zrange(b"sync-order-%s:swarm:" % first.encode() + IH, 0, -1,
                               withscores=True))
        assert sorted(-int(score) & 1 for _, score in stored) == [0, 1]  # 1 a seeder


async def test_a_quiet_log_trimmed_past_a_node_is_no_gap(
        redis_server: RedisServer, monkeypatch: Any) -> None:
    """No announce for longer than the log keeps (30 s; 100 ms here): the next push trims
    the last entry every node read. The nodes read on (nothing was missed): no gap, no
    reading every swarm again (was: each node caught up needlessly)."""
    from seeder.cluster import swarm_sync

    monkeypatch.setattr(swarm_sync, "LOG_KEEP_MS", 100)
    async with three_nodes(redis_server, b"sync-quiet-1:") as (a, b, c):
        a.announce(1)
        for n in (a, b, c):
            await n.sync.tick()
        last = swarm_sync.log_id(b.sync._last_id)
        with trio.fail_after(10):
            while True:  # quiet; the nodes keep pulling (every 0.1 s in a daemon)
                for n in (a, b, c):
                    await n.sync.tick()
                t = await a.link.call(lambda r: r.time())
                if t.timestamp() * 1000 > last[0] + 150:
                    break
                await trio.sleep(0.02)
        for peer in range(2, 102):  # over 4 KB: a stream node of its own
            a.announce(peer)
        await a.sync.tick()
        first = await a.link.call(lambda r: r.xrange(b"sync-quiet-1:log", count=1))
        assert swarm_sync.log_id(first[0][0]) > last  # b's last entry was trimmed
        await b.sync.tick()
        assert b.sync._epoch != 0  # no gap seen
        assert b.peers() == a.peers()


async def test_every_score_is_the_deadline_in_small_and_large_batches(
        redis_server: RedisServer) -> None:
    """The push script hands ZADD a large batch's scores as digit strings (Redis 7.0 formats
    a Lua number with printf) and a small batch's as numbers: in both, each peer's score is
    -(deadline * 2 + seeder), the deadline the script's now + the time to live, to the ms;
    and a large batch's older words are left out of the log and returned as dropped, as a
    small batch's are. The swarm's key expires the time asked after the push."""
    from seeder.cluster import scripts

    keys = Keys(b"sync-score-1:")
    link = RedisLink(redis_server.url(DB))

    def addr(p: int) -> bytes:
        return bytes((10, 0, p >> 8, p & 255, 0x1a, 0xe1))

    async def push(ih: bytes, ttls: list[int]) -> tuple[int, list[bytes], dict[bytes, int]]:
        batch = b"".join(records.encode_upsert(ih, addr(p), b"-TS0001-%012d" % p, p % 2 == 1,
                                               ttl, None) for p, ttl in enumerate(ttls))
        reply = await link.script(
            scripts.PUSH_PULL, [keys.log, keys.downloads, keys.pushed],
            [keys.swarm_prefix, batch, b"t", b"0-0", 256, 30_000, 3_660_000, b"", b"", b"",
             b"0"])
        stored = await link.call(lambda r: r.zrange(keys.swarm(ih), 0, -1, withscores=True))
        return int(reply[0]), list(reply[7]), {m[:6]: int(s) for m, s in stored}

    rng = random.Random(12)
    edges = [0, 1, 999, 1000, 999_999, 1_000_000, 2**32 - 1]
    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        for count, ih in ((5, b"\x05" * 20), (300, b"\x06" * 20)):
            ttls = (edges + [rng.randrange(2**32) for _ in range(count)])[:count]
            now, dropped, scores = await push(ih, ttls)
            assert dropped == [] and len(scores) == count
            # the swarm key lives the time asked (ARGV 7: 3 660 000 ms) from the push
            key = keys.swarm(ih)
            assert 3_600_000 < await link.call(lambda r, k=key: r.pttl(k)) <= 3_660_000
            for p, ttl in enumerate(ttls):
                assert scores[addr(p)] == -((now + ttl) * 2 + p % 2), (count, p, ttl)
            # again: the first two thirds older than what the set holds, the rest later
            again = [0 if p < 2 * count // 3 else 2**32 - 1 for p in range(count)]
            later, dropped, rescored = await push(ih, again)
            older = [p for p in range(count) if p < 2 * count // 3 and ttls[p] > later - now]
            assert sorted(dropped) == sorted(ih + addr(p) for p in older)
            for p, ttl in enumerate(ttls):
                kept = -((now + ttl) * 2 + p % 2)
                new = -((later + again[p]) * 2 + p % 2)
                assert rescored[addr(p)] == min(kept, new), (count, p)  # the later deadline
        nursery.cancel_scope.cancel()
