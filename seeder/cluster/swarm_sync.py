"""One swarm per torrent across the cluster: this node's announces go to Redis, the other
nodes' come back into this node's tracker.

Every node answers announces from its own in-memory swarms (the tracker's fast path is
unchanged but for one dict write per announce, :meth:`SwarmSync.record`). Every
``FLUSH_EVERY`` seconds one Lua script (``scripts.PUSH_PULL``, one round trip) applies this
node's coalesced changes to the swarms' sorted sets in Redis, appends them to the change
log, and returns what the other nodes appended since the last tick; those are merged into
the local swarms (``tracker.peermerge``: ``merge_upserts`` for the usual batch, one call
into the tracker; ``merge_peer`` / ``drop_peer`` / ``add_downloaded`` record by record
otherwise). A peer
announced to any node is in every node's answers one tick later; ``stopped`` removes it
everywhere; every node expires it at the deadline of its last announce, whichever node
heard it (deadlines travel as "ms to live", converted through the Redis clock).

Catching up: at the first contact, after Redis was unreachable (the link's epoch
changed), or when the change log was trimmed past what this node read, the node first
pushes its pending changes and reads the log through (the other nodes' changes meanwhile,
their stops included), then pushes its whole local view (Redis may have restarted empty:
it runs without persistence in most deployments), and reads every registered swarm's
sorted set and download count back (``scripts.RESYNC``, :meth:`SwarmSync.resync`): every
node ends with the union. The view goes out only when it is current: the push script
refuses it while the log holds an entry this node has not read (a stop there would be
undone by the view's older word for that peer); the node reads it and tries again. A
swarm registered later (a torrent another node made) is read the same way at the next
tick. A swarm's download count read so already holds the log entries up to that read: the
downloads of those entries are not added again when the log brings them (each download is
counted once on every node); a peer heard here since the last push keeps what this node
heard (its word is newer than Redis's, and goes out at the next push).

Every node ends with a peer's later word. Redis decides which word is later: the push
script stores an upsert with ``ZADD GT`` (exact deadlines on the Redis clock) and leaves
out of the logged batch an upsert older than what the swarm holds for that peer (the same
peer announced later to another node, which pushed first), so the log's order is the
words' order. A push returns the other nodes' entries that precede this node's own in the
log; where such an entry stops or announces a peer this node's own entry carries, or
one heard here since the last push (pending: it goes out next), this node's (later) word
stands, as it does on every node reading both in order (an upsert of
this node's that the script left out is not its word: the earlier entry is applied). A
peer that stopped on another node in log entries that were trimmed before this node read
them stays here until its deadline.

Batches are numbered per node: a push whose reply was lost (a client-side timeout after
the script ran) is sent again (the same changes, under its number) before anything newer; the
script answers it without applying or logging it again (its downloads counted once). A
log trimmed past a node that read it to its end since the trim's cut-off is no gap (a
quiet cluster: the last entry every node read goes, nothing was missed).

While Redis is unreachable the changes wait, coalesced per (swarm, peer), at most
``MAX_PENDING``; beyond that they are dropped and the whole local view is pushed at
recovery instead.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import trio

from seeder.cluster import records, scripts
from seeder.cluster.keys import DEFAULT_KEYS, Keys
from seeder.cluster.link import ClusterMetrics, RedisLink, Unavailable
from tracker.core import TrackerCore
from tracker.peerchanges import MAX_U32, PeerChanges, change_record
from tracker.peermerge import add_downloaded, drop_peer, in_any, merge_peer, merge_upserts
from tracker.swarm import Peer

__all__ = ["FLUSH_EVERY", "SwarmSync", "log_id"]

log = logging.getLogger(__name__)

FLUSH_EVERY = 0.1  # s between push/pull round trips
READ_COUNT = 256  # change-log entries per round trip
LOG_KEEP_MS = 30_000  # how long the change log keeps a batch (a node reads it every 0.1 s)
MAX_PENDING = 500_000  # coalesced changes held while Redis is unreachable
RESYNC_BATCH = 2_000  # swarms per resync round trip
PUSH_BATCH = 20_000  # peer changes per push round trip (~1 MB)
VIEW_TRIES = 10  # a view slice refused this often (the log moves on) goes out regardless
SWARM_KEY_MARGIN_MS = 60_000  # a swarm key outlives its last peer's deadline by this


class Changes(NamedTuple):
    """Pending changes taken for one push: their records (``PeerChanges.take``), the
    ``pending`` and ``peers`` entries they came from (this node's words they carry), the
    ``downloads``, and the ``since`` the records' times count from."""

    records: bytes
    pending: dict[bytes, bytes]
    peers: dict[Peer, object]
    downloads: dict[bytes, int]
    since: float


_NONE = Changes(b"", {}, {}, {}, 0.0)  # nothing to send
# This node's later words (``SwarmSync._words_after``): keys (info-hash + address) and peers,
# each a tuple of the containers that hold them (tracker.peermerge.in_any looks through them)
Words = tuple[tuple[Mapping[bytes, object], ...], tuple[Mapping[Peer, object], ...]]


class SwarmSync(PeerChanges):
    """The tracker's :class:`~tracker.peerlog.PeerLog` in cluster mode (``record``: the
    changes it coalesces, :class:`~tracker.peerchanges.PeerChanges`), and its sync task."""

    def __init__(self, link: RedisLink, core: TrackerCore, node_id: str, *,
                 keys: Keys = DEFAULT_KEYS, metrics: ClusterMetrics | None = None,
                 flush_every: float = FLUSH_EVERY,
                 clock: Callable[[], float] = trio.current_time,
                 on_announce: Callable[[bytes], None] | None = None) -> None:
        """``on_announce``: told the info-hash of every peer another node stored (the
        seeding policy's demand hook, as for the tracker's own announces)."""
        super().__init__(MAX_PENDING)  # pending, downloads, overflow: dropped past it
        self.link = link
        self.on_announce = on_announce
        self.core = core
        self.node_id = node_id.encode()
        self.keys = keys
        self.metrics = metrics
        self.flush_every = flush_every
        self.clock = clock
        self.peer_timeout = core.swarms.peer_timeout
        self._last_id = b"0-0"
        self._read_end_ms = b"0"  # when (Redis clock) the last pull read the log to its end
        # Batches are numbered (per incarnation: a restarted node must not look like a
        # resend); a batch whose round trip failed is sent again as it was, under its
        # number, before anything newer: it may have run in Redis (a lost reply), which
        # then answers without applying it twice.
        self._incarnation = secrets.token_hex(8)
        self._seq = 0
        self._inflight: tuple[int, Changes] | None = None
        self._epoch = 0  # the link epoch caught up with
        self._watch: set[bytes] = set()
        # ih -> the log id up to which a resync's download count included that swarm's
        # entries (dropped once the log is read past it); _all_counted: the same for every
        # swarm a full resync read
        self._counted: dict[bytes, tuple[int, int]] = {}
        self._all_counted: tuple[int, int] | None = None
        # this node's own log entries not read past yet: (entry id, the changes it carried:
        # pending records by key, peers): entries before them yield to them (``_apply``)
        self._mine: list[tuple[tuple[int, int], dict[bytes, bytes], dict[Peer, object]]] = []
        self._ttl_arg = str(int(self.peer_timeout * 1000) + SWARM_KEY_MARGIN_MS).encode()
        self.ticks = 0  # round trips done (tests wait on it)

    def watch(self, hashes: Iterable[bytes]) -> None:
        """A swarm was registered here: read what Redis holds for it at the next tick."""
        self._watch.add(next(iter(hashes)))

    # -- the task -----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Push and pull every ``flush_every`` seconds, forever. Redis failures are the
        link's business (degraded); this loop just tries again at the next tick."""
        task_status.started()
        while True:
            try:
                await self.tick()
            except Unavailable:
                pass
            await trio.sleep(self.flush_every)

    async def tick(self) -> None:
        """One round: push, pull, and catch up where needed. Raises Unavailable."""
        if self.link.epoch != self._epoch or self.overflow:
            epoch = self.link.epoch
            self.overflow = False
            await self._catch_up()
            self._epoch = max(epoch, 1)
        elif self._watch:
            await self.push_pull()
            watch, self._watch = self._watch, set()
            await self.resync(watch)
        else:
            while await self.push_pull() >= READ_COUNT:
                pass
        self.ticks += 1

    async def _catch_up(self) -> None:
        """Push what is pending and read the log through, push the whole local view, read
        every registered swarm back. Raises Unavailable (the next tick starts over)."""
        if self._last_id == b"0-0":  # first contact: the sets hold what the log did
            reply = await self.link.script(scripts.RESYNC, [self.keys.log, self.keys.downloads],
                                           [self.keys.swarm_prefix])
            self._last_id, self._read_end_ms = reply[1], reply[0]
        while await self.push_pull() >= READ_COUNT:
            pass
        swarms = self.core.swarms
        view = [s.hashes[0] + addr for s in swarms.registered() for addr in s.peers]
        for start in range(0, len(view), PUSH_BATCH):
            part = view[start : start + PUSH_BATCH]
            for attempt in range(VIEW_TRIES):
                self._seq += 1
                _, applied = await self._push_pull(_NONE, self._seq, self._view(part),
                                                   force=attempt == VIEW_TRIES - 1)
                if applied:
                    break
        await self.resync(None)

    async def push_pull(self) -> int:
        """Send the pending changes, apply the other nodes' new ones; the number of log
        entries read. Raises Unavailable (the batch that failed goes first next time, as
        it was; changes recorded since follow it)."""
        read, sent = 0, False
        while True:
            more = self._inflight is not None  # a batch to send again: the pending next
            if not more:
                downloads = self.downloads
                if not self.pending and not self.peers and not downloads:
                    return read if sent else (await self._push_pull(_NONE, 0))[0]
                since = self.since  # the rest's too
                records, pending, peers = self.take(PUSH_BATCH)  # more than that: in slices
                more = bool(self.pending or self.peers)
                self.downloads = {}
                self._seq += 1
                self._inflight = (self._seq, Changes(records, pending, peers, downloads, since))
            seq, changes = self._inflight
            read += (await self._push_pull(changes, seq))[0]
            self._inflight, sent = None, True
            if not more:
                return read

    async def _push_pull(self, changes: Changes, seq: int, view: Changes | None = None,
                         force: bool = False) -> tuple[int, bool]:
        """One round trip (``seq``: the batch's number, 0 with nothing to send): (log
        entries read, whether ``view`` was applied)."""
        now = self.clock()
        blob = self._encode(changes, now)
        view_blob = self._encode(view, now) if view is not None else b""
        reply = await self.link.script(
            scripts.PUSH_PULL, [self.keys.log, self.keys.downloads, self.keys.pushed],
            [self.keys.swarm_prefix, blob, self.node_id, self._last_id, READ_COUNT,
             LOG_KEEP_MS, self._ttl_arg, view_blob, b"force" if force else b"",
             f"{self._incarnation}:{seq}" if seq else b"", self._read_end_ms])
        applied = bool(int(reply[4]))
        pending, peers = changes.pending, changes.peers
        sent = len(pending) + len(peers) + (
            len(view.pending) if view is not None and applied else 0)
        if self.metrics is not None and sent:
            self.metrics.synced_peers.labels(direction="out").inc(sent)
        now_ms, last_id, entries, gap = int(reply[0]), reply[1], reply[2], int(reply[3])
        self._last_id = last_id
        self._read_end_ms = reply[0] if int(reply[6]) else b"0"
        if gap:
            log.info("cluster: the swarm change log moved past this node: reading it all again")
            self._epoch = 0
        if reply[5]:
            carried = {**pending, **view.pending} if view is not None and applied else pending
            if reply[7]:  # left out: Redis holds a later word for them (read before own)
                dropped = set(reply[7])
                carried = {k: v for k, v in carried.items() if k not in dropped}
                gone = self._peers_at(dropped)
                peers = {p: v for p, v in peers.items() if p not in gone}
            self._mine.append((log_id(reply[5]), carried, peers))
        self._apply(entries, now_ms, self.clock())
        self._read_through(last_id)
        return len(entries) // 2, applied

    async def resync(self, hashes: Iterable[bytes] | None) -> None:
        """Read the swarms of ``hashes`` (None: every registered swarm) from Redis into the
        local ones. Raises Unavailable."""
        if hashes is None:
            wanted = [s.hashes[0] for s in self.core.swarms.registered()]
        else:
            wanted = list(hashes)
        for start in range(0, len(wanted), RESYNC_BATCH):
            batch = wanted[start : start + RESYNC_BATCH]
            reply = await self.link.script(
                scripts.RESYNC, [self.keys.log, self.keys.downloads],
                [self.keys.swarm_prefix, *batch])
            now_ms, last_id, out = int(reply[0]), reply[1], reply[2]
            upto = log_id(last_id)
            if start == 0 and hashes is None and upto < log_id(self._last_id):
                self._last_id = b"0-0"  # a new log (Redis restarted): read all of it
            # The counts read include the log up to last_id; this node has not read that far
            # (it reads on from where it is: a stop in between is applied then): those
            # downloads are not added again.
            if hashes is None and start == 0:
                self._all_counted = upto  # one mark for all (the later batches' counts
            else:                         # hold more of the log: marks of their own)
                for ih in batch:
                    self._counted[ih] = upto
            self._read_through(self._last_id)
            local_now = self.clock()
            for j, ih in enumerate(batch):
                if self._load_swarm(ih, out[2 * j], out[2 * j + 1], now_ms, local_now) and (
                        self.on_announce is not None):
                    self.on_announce(ih)  # peers there: demand, as for a synced announce

    # -- helpers --------------------------------------------------------------------------

    def _encode(self, changes: Changes, now: float) -> bytes:
        """The batch of ``changes``, flushed at ``now``."""
        return records.encode_batch(changes.records, changes.downloads, changes.since, now,
                                    self.peer_timeout)

    def _peers_at(self, keys: Iterable[bytes]) -> set[Peer]:
        """The peers stored here at ``keys`` (info-hash + address)."""
        swarms = self.core.swarms
        out = set()
        for k in keys:
            swarm = swarms.get(k[:20])
            peer = None if swarm is None else swarm.peers.get(k[20:])
            if peer is not None:
                out.add(peer)
        return out

    def _view(self, keys: list[bytes]) -> Changes:
        """The local view of ``keys`` (ih + addr) as upserts, read now: peers gone since
        are left out, and so are peers with a pending change (newer, sent with it)."""
        now = self.clock()
        since = now - self.peer_timeout  # a live peer was heard after it
        swarms = self.core.swarms
        width = swarms.sweep_every
        pending, peers = self.pending, self.peers
        out = {}
        for k in keys:
            swarm = swarms.get(k[:20])
            peer = None if swarm is None or k in pending else swarm.peers.get(k[20:])
            if peer is not None and peer not in peers:
                heard = peer.expires * width - self.peer_timeout  # about when it announced
                ms = min(max(int((min(heard, now) - since) * 1000), 0), MAX_U32)
                out[k] = change_record(k, peer.peer_id, None, not peer.slot & 1, False, ms)
        return Changes(b"".join(out.values()), out, {}, {}, since)

    def _read_through(self, last_id: bytes | str) -> None:
        """The log was read up to ``last_id``: forget the resync marks and own entries it
        passed."""
        if self._mine:
            done = log_id(last_id)
            self._mine = [m for m in self._mine if m[0] > done]
        if self._counted or self._all_counted is not None:
            done = log_id(last_id)
            if self._all_counted is not None and self._all_counted <= done:
                self._all_counted = None
            if self._counted:
                self._counted = {ih: m for ih, m in self._counted.items() if m > done}

    def _apply(self, entries: list[bytes], now_ms: int, local_now: float) -> None:
        swarms = self.core.swarms
        counted = self._counted
        all_counted = self._all_counted
        marked = bool(counted) or all_counted is not None
        mine = self._mine
        own = self.core.own_peer_prefix  # another node's own seed: not demand
        changes = 0
        demand: set[bytes] = set()
        for j in range(0, len(entries), 2):
            # The batch's time on this node's clock: a change expires at base + its ttl.
            base = local_now - (now_ms - int(entries[j].split(b"-", 1)[0])) / 1000
            entry = log_id(entries[j]) if marked or mine else (0, 0)
            # this node's later words (its own later entries, the changes heard since its
            # last push), by key and by peer: they stand over this entry
            words = self._words_after(entry) if mine or self.pending or self.peers else None
            skip, skip_peers = words or ((), ())
            if merge_upserts(swarms, entries[j + 1], base, skip, skip_peers, own, demand):
                changes += len(entries[j + 1]) // records.PLAIN_V4.size  # the usual batch
                continue
            try:
                for kind, ih, addr, peer_id, seeder, ttl_ms, count in records.decode_changes(
                        entries[j + 1]):
                    changes += 1
                    if kind != records.DOWNLOADS and words is not None and self._said(
                            words, ih, addr):
                        continue
                    if kind == records.UPSERT:
                        if merge_peer(swarms, ih, addr, peer_id, seeder,
                                      base + ttl_ms / 1000) and not (
                                own and peer_id.startswith(own)):
                            demand.add(ih)
                    elif kind == records.STOPPED:
                        drop_peer(swarms, ih, addr)
                    else:  # unless in the count a resync read
                        mark = counted.get(ih) if counted else None
                        if (mark is None or entry > mark) and (
                                all_counted is None or entry > all_counted):
                            add_downloaded(swarms, ih, count)
            except records.RecordError as exc:
                log.warning("cluster: skipping a swarm change batch: %s", exc)
        if self.metrics is not None and changes:
            self.metrics.synced_peers.labels(direction="in").inc(changes)
        if self.on_announce is not None:
            for ih in demand:
                self.on_announce(ih)

    def _words_after(self, entry: tuple[int, int]) -> Words | None:
        """This node's words later than ``entry`` (None: none), as the keys (ih + addr) of
        records and the peers (``PeerChanges.peers``) they are about: those its own
        entries after ``entry`` carry (an older upsert of theirs was left out of the log by
        the push script), and those pending, heard here since the last push (on its way
        when the reply was read: they go out next, after every entry read now).
        A stop or an announce of those peers in ``entry`` is not applied here, as every
        node reading the log in order has it overridden. (A pending upsert the script will
        leave out, the same peer having announced later elsewhere, keeps this node's
        deadline for it, a round trip or so earlier, until the peer's next word.)"""
        after = [(keys, peers) for oid, keys, peers in self._mine if entry < oid]
        after.append((self.pending, self.peers))
        # chains, not one mapping: merge_upserts looks through them (tracker.peermerge.in_any)
        keys = tuple(k for k, _ in after if k)
        peers = tuple(p for _, p in after if p)
        return (keys, peers) if keys or peers else None

    def _said(self, words: Words, ih: bytes, addr: bytes) -> bool:
        """Whether ``words`` (``_words_after``'s) hold a word about ``addr`` in the swarm of
        ``ih``."""
        keys, peers = words
        if keys and in_any(keys, ih + addr):
            return True
        swarm = self.core.swarms.get(ih) if peers else None
        peer = None if swarm is None else swarm.peers.get(addr)
        return peer is not None and in_any(peers, peer)

    def _load_swarm(self, ih: bytes, members: list[bytes], downloads: bytes, now_ms: int,
                    local_now: float) -> bool:
        """Merge one swarm read from Redis; whether any peer was stored."""
        swarms = self.core.swarms
        swarm = swarms.get(ih)
        if swarm is None:
            return False
        stored = False
        pending, peers, held = self.pending, self.peers, swarm.peers
        for j in range(0, len(members), 2):
            member, score = members[j], -int(members[j + 1])  # keys.py: negated
            addr, peer_id = member[:-20], member[-20:]
            if len(addr) not in (6, 18) or ih + addr in pending or held.get(addr) in peers:
                continue  # pending: heard here since the last push, newer than Redis's word
            expires = local_now + ((score >> 1) - now_ms) / 1000
            stored |= merge_peer(swarms, ih, addr, peer_id, bool(score & 1), expires)
        swarm.downloaded = max(swarm.downloaded, int(downloads or 0) + self.downloads.get(ih, 0))
        return stored


def log_id(entry_id: bytes | str) -> tuple[int, int]:
    """A Redis stream id (b"ms-seq") as a tuple that orders as the stream does."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def wall_offset(clock: Callable[[], float] = trio.current_time) -> float:
    """Seconds to add to ``clock()`` to get the wall clock (for UDP connection ids that
    every node computes alike)."""
    return time.time() - clock()
