"""Swarms: the peers of each torrent, keyed by info-hash, with caps and cheap expiry.

Pure bookkeeping: no I/O; ``now`` (seconds, any monotonic origin) and the random source
are arguments. Built for the hot path:

- A peer is keyed by its compact address (4- or 16-byte IP + 2-byte port), which is
  also what the compact response carries.
- Each swarm keeps its peers' compact addresses back to back in four byte strings
  (IPv4/IPv6 x seeder/leecher, ``Swarm.packed``): the compact peer list of an answer is
  one or two slices of them, never a join of per-peer objects. Removal moves the last
  address into the hole (O(1)); an answer is a window of numwant addresses at a random
  offset in those strings read as one ring (O(numwant), never a copy or a scan of the
  swarm). Swap-removal and appends keep reshuffling the order.
- Expiry is a queue of time buckets: an announce files the peer under the bucket in
  which it expires (once per bucket, so a chatty peer costs a bounded number of
  entries); ``clean(now)`` pops the due buckets (in bounded slices if asked) and drops
  the peers whose deadline was not moved since. No request ever scans a swarm or the whole table.
- Hybrid torrents announce under two hashes; ``register`` aliases them to one swarm.

Peers another tracker heard from (a cluster) come in through :mod:`tracker.peermerge`,
which files them in the same expiry queue.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from tracker.announce import EVENT_COMPLETED, EVENT_STOPPED
from tracker.peerwindow import WIDTH as _WIDTH
from tracker.peerwindow import mixed, ring

__all__ = [
    "FAMILY_ANY",
    "FAMILY_V4",
    "FAMILY_V6",
    "Peer",
    "Swarm",
    "SwarmError",
    "Swarms",
]

FAMILY_V4 = 1
FAMILY_V6 = 2
FAMILY_ANY = FAMILY_V4 | FAMILY_V6

_SEEDER = 0
_LEECHER = 1
_NO_PEERS = (b"", b"")
_BUCKETS_PER_TIMEOUT = 8  # expiry precision: a peer lives timeout .. timeout * 9/8


class SwarmError(ValueError):
    """The swarm cannot be used: ``str(exc)`` is the failure reason for the client,
    ``code`` a short label ("unregistered", "full")."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class Peer:
    """One peer of one swarm. ``slot`` = family * 2 + role (0 seeder, 1 leecher) names the
    address string it sits in, at index ``idx`` (in addresses). ``swarm`` is None once
    removed (the expiry queue may still hold it; it is skipped then).

    A peer's compact address is in ``swarm.packed[slot]`` (the ``addr`` property), not a
    field: with 100k peers every 8 bytes per peer is ~1 MB of RSS."""

    __slots__ = ("completed", "expires", "idx", "peer_id", "slot", "swarm")

    def __init__(self, peer_id: bytes, swarm: Swarm, slot: int, idx: int) -> None:
        self.peer_id = peer_id
        self.swarm: Swarm | None = swarm
        self.slot = slot
        self.idx = idx
        self.expires = -1
        self.completed = False

    @property
    def addr(self) -> bytes:
        """The compact address (only while the peer is in a swarm)."""
        assert self.swarm is not None
        w = _WIDTH[self.slot]
        return bytes(self.swarm.packed[self.slot][self.idx * w : self.idx * w + w])


class Swarm:
    """The peers of one torrent (under one or more info-hashes). ``complete`` (seeders)
    and ``incomplete`` (leechers) count the addresses in ``packed``: kept by ``add`` and
    ``take`` (plain attributes, so a scrape reads them without a Python call).

    ``scrape_http`` / ``scrape_udp``: the three counts as a scrape answers them in each
    protocol's bytes, made and kept by the tracker core (``tracker.core``); None when the
    counts changed since. ``add``, ``take``, ``clear`` and every change of ``downloaded``
    (a property for that reason, whoever assigns it) set both to None."""

    __slots__ = (
        "_downloaded", "complete", "hashes", "incomplete", "lazy", "packed", "peers",
        "registered", "scrape_http", "scrape_udp",
    )  # fmt: skip

    def __init__(self, hashes: tuple[bytes, ...], registered: bool) -> None:
        self.hashes = hashes
        self.registered = registered
        self.lazy = False  # registered through ``Swarms.resolve``: dropped once empty
        self.peers: dict[bytes, Peer] = {}
        # slot = family * 2 + role: v4 seeders, v4 leechers, v6 seeders, v6 leechers; each
        # the compact addresses back to back (6 or 18 bytes each, _WIDTH)
        self.packed = (bytearray(), bytearray(), bytearray(), bytearray())
        self._downloaded = 0
        self.complete = 0
        self.incomplete = 0
        self.scrape_http: bytes | None = None
        self.scrape_udp: bytes | None = None

    @property
    def downloaded(self) -> int:
        """Downloads counted (``completed`` events, and peers seen finishing)."""
        return self._downloaded

    @downloaded.setter
    def downloaded(self, value: int) -> None:
        self._downloaded = value
        self.scrape_http = self.scrape_udp = None

    def add(self, peer: Peer, addr: bytes) -> None:
        """Append ``addr`` to the string of ``peer.slot``; sets ``peer.idx``."""
        blob = self.packed[peer.slot]
        peer.idx = len(blob) // _WIDTH[peer.slot]
        blob += addr
        if peer.slot & 1:
            self.incomplete += 1
        else:
            self.complete += 1
        self.scrape_http = self.scrape_udp = None

    def take(self, peer: Peer) -> None:
        """Take ``peer``'s address out of its string: the last one moves into the hole."""
        blob = self.packed[peer.slot]
        w = _WIDTH[peer.slot]
        at = peer.idx * w
        if at + w < len(blob):
            last = bytes(blob[-w:])
            blob[at : at + w] = last
            self.peers[last].idx = peer.idx
        del blob[-w:]
        if peer.slot & 1:
            self.incomplete -= 1
        else:
            self.complete -= 1
        self.scrape_http = self.scrape_udp = None

    def clear(self) -> None:
        """Forget every peer (their ``swarm`` is left to the caller)."""
        self.peers.clear()
        for blob in self.packed:
            blob.clear()
        self.complete = self.incomplete = 0
        self.scrape_http = self.scrape_udp = None


class Swarms:
    """All swarms of a tracker, with caps.

    ``open``: any info-hash gets a swarm on its first announce (until ``max_swarms``), and
    such a swarm is forgotten when its last peer leaves. Otherwise only ``register``-ed
    hashes are served. A new peer beyond ``max_peers_per_swarm`` or ``max_peers`` (all
    swarms) gets an answer but is not stored. Peers not heard from for ``peer_timeout``
    seconds are dropped by ``clean``.
    """

    def __init__(
        self,
        *,
        peer_timeout: float,
        max_swarms: int = 100_000,
        max_peers_per_swarm: int = 50_000,
        max_peers: int = 2_000_000,
        open: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        if peer_timeout <= 0:
            raise ValueError("peer_timeout must be positive")
        self.peer_timeout = float(peer_timeout)
        self.max_swarms = max_swarms
        self.max_peers_per_swarm = max_peers_per_swarm
        self.max_peers = max_peers
        self.open = open
        self.rng = rng or random.Random()
        self.by_hash: dict[bytes, Swarm] = {}
        # resolve(info_hash) -> the torrent's hashes, or None: registration on first use, for
        # a tracker serving more torrents than it should hold swarms for (a catalog of a
        # million objects). Such a swarm is created at its first announce (or a peer merged
        # from another tracker) and dropped when its last peer leaves, like an open one.
        self.resolve: Callable[[bytes], Sequence[bytes] | None] | None = None
        self.swarm_count = 0
        self.seeders = 0
        self.leechers = 0
        self._width = max(1.0, self.peer_timeout / _BUCKETS_PER_TIMEOUT)
        self._queue: dict[int, list[Peer]] = {}
        self._bucket = -1  # the last expiry bucket filed: peers share this int object

    # -- registration -------------------------------------------------------------

    def register(self, hashes: Sequence[bytes]) -> Swarm:
        """Serve the torrent known by ``hashes`` (v1 and/or truncated v2, 20 bytes each):
        they all name one swarm from now on. A 32-byte v2 hash is truncated to the 20
        bytes clients announce (BEP 52). Idempotent. Hashes already in use (an open
        swarm, or another registration) are merged into that swarm, peers kept.
        Raises ValueError for an empty list or a hash that is not 20 or 32 bytes."""
        wanted = tuple(dict.fromkeys(h[:20] if len(h) == 32 else h for h in hashes))
        if not wanted or any(len(h) != 20 for h in wanted):
            raise ValueError("register takes one or more 20-byte (or 32-byte v2) info-hashes")
        existing: list[Swarm] = []
        for h in wanted:
            s = self.by_hash.get(h)
            if s is not None and s not in existing:
                existing.append(s)
        if not existing:
            swarm = Swarm(wanted, registered=True)
            self.swarm_count += 1
        else:
            swarm = existing[0]
            for other in existing[1:]:
                self._merge(swarm, other)
            swarm.registered = True
            swarm.hashes = tuple(dict.fromkeys(swarm.hashes + wanted))
        for h in wanted:
            self.by_hash[h] = swarm
        swarm.lazy = False
        return swarm

    def _resolved(self, info_hash: bytes) -> Swarm | None:
        """A swarm registered on first use through ``resolve`` (None: unknown hash).
        Raises SwarmError "tracker is full" past ``max_swarms``."""
        if self.resolve is None:
            return None
        hashes = self.resolve(info_hash)
        if not hashes:
            return None
        if self.swarm_count >= self.max_swarms:
            raise SwarmError("tracker is full", "full")
        swarm = self.register(hashes)
        swarm.lazy = True
        return swarm

    @staticmethod
    def _kept_empty(swarm: Swarm) -> bool:
        """Whether an empty swarm stays: registered, and not on first use."""
        return swarm.registered and not swarm.lazy

    def unregister(self, hashes: Sequence[bytes]) -> bool:
        """Forget the swarm(s) named by any of ``hashes`` (32-byte v2 hashes truncated):
        every alias and every peer. Returns True when something was forgotten."""
        found = False
        for h in hashes:
            h = h[:20] if len(h) == 32 else h
            swarm = self.by_hash.get(h)
            if swarm is not None:
                self._drop_swarm(swarm)
                found = True
        return found

    def _merge(self, into: Swarm, other: Swarm) -> None:
        for addr, peer in list(other.peers.items()):
            if addr in into.peers:
                self._count(peer.slot, -1)
                peer.swarm = None
                continue
            into.add(peer, addr)
            peer.swarm = into
            into.peers[addr] = peer
        into.downloaded += other.downloaded
        into.hashes = tuple(dict.fromkeys(into.hashes + other.hashes))
        for h in other.hashes:
            self.by_hash[h] = into
        self.swarm_count -= 1

    def _drop_swarm(self, swarm: Swarm) -> None:
        if not any(self.by_hash.get(h) is swarm for h in swarm.hashes):
            return  # dropped already
        for peer in swarm.peers.values():
            self._count(peer.slot, -1)
            peer.swarm = None
        swarm.clear()
        for h in swarm.hashes:
            if self.by_hash.get(h) is swarm:
                del self.by_hash[h]
        self.swarm_count -= 1

    # -- lookups --------------------------------------------------------------------

    def get(self, info_hash: bytes) -> Swarm | None:
        """The swarm of ``info_hash`` if it exists (never creates one)."""
        return self.by_hash.get(info_hash)

    def get_or_create(self, info_hash: bytes) -> Swarm:
        """The swarm to announce into. Open mode creates it on first use.
        Raises SwarmError "unregistered torrent" / "tracker is full"."""
        swarm = self.by_hash.get(info_hash)
        if swarm is not None:
            return swarm
        swarm = self._resolved(info_hash)
        if swarm is not None:
            return swarm
        if not self.open:
            raise SwarmError("unregistered torrent", "unregistered")
        if self.swarm_count >= self.max_swarms:
            raise SwarmError("tracker is full", "full")
        swarm = Swarm((info_hash,), registered=False)
        self.by_hash[info_hash] = swarm
        self.swarm_count += 1
        return swarm

    def scrape(self, info_hash: bytes) -> tuple[int, int, int] | None:
        """(complete, downloaded, incomplete) of ``info_hash``, or None if unknown."""
        swarm = self.by_hash.get(info_hash)
        if swarm is None:
            if self.resolve is not None and self.resolve(info_hash):
                return 0, 0, 0  # a known torrent nobody announced lately
            return None
        return swarm.complete, swarm.downloaded, swarm.incomplete

    # -- announce -------------------------------------------------------------------

    def announce(
        self,
        swarm: Swarm,
        addr: bytes,
        peer_id: bytes,
        seeder: bool,
        event: int,
        numwant: int,
        families: int,
        now: float,
    ) -> tuple[bytes, bytes]:
        """Record one announce from the peer at compact ``addr`` (6 or 18 bytes) and return
        up to ``numwant`` compact addresses of other peers, of the ``families`` asked for
        (FAMILY_V4 / FAMILY_V6 bits), never ``addr`` itself, as (IPv4 addresses, IPv6
        addresses), each string the compact addresses back to back (BEP 23 / BEP 7).
        Seeders get leechers first.
        ``stopped`` removes the peer and returns no peers. One download is counted per
        peer (a hybrid torrent announces it under both hashes) on ``completed``, or when
        a peer stored as a leecher comes back with nothing left (any event): aria2, for
        one, sends no ``completed`` when it stops right after finishing."""
        return self.announce_peer(swarm, swarm.peers.get(addr), addr, peer_id, seeder, event,
                                  numwant, families, now)

    def announce_peer(
        self,
        swarm: Swarm,
        peer: Peer | None,
        addr: bytes,
        peer_id: bytes,
        seeder: bool,
        event: int,
        numwant: int,
        families: int,
        now: float,
    ) -> tuple[bytes, bytes]:
        """:meth:`announce`, ``peer`` the peer stored at ``addr`` (None: none), as the caller
        looked it up (the tracker core reads it before the announce changes it)."""
        if event == EVENT_STOPPED:
            if peer is not None:
                if seeder and peer.slot & 1 and not peer.completed:
                    swarm.downloaded += 1  # finished, and said only "stopped"
                self._remove(peer, addr)
            elif not swarm.peers and not self._kept_empty(swarm):
                self._drop_swarm(swarm)
            return _NO_PEERS
        slot = (2 if len(addr) == 18 else 0) + (_SEEDER if seeder else _LEECHER)
        if peer is None:
            if len(swarm.peers) < self.max_peers_per_swarm and (
                self.seeders + self.leechers < self.max_peers
            ):
                peer = Peer(peer_id, swarm, slot, 0)
                swarm.add(peer, addr)
                swarm.peers[addr] = peer
                self._count(slot, 1)
        elif peer.slot != slot:
            if seeder and peer.slot & 1 and not peer.completed:
                peer.completed = True  # a leecher that finished, whatever its event says
                swarm.downloaded += 1
            self._unlink(peer)
            peer.slot = slot
            swarm.add(peer, addr)
            self._count(slot, 1)
        if peer is not None:
            if peer.peer_id != peer_id:
                peer.peer_id = peer_id
            bucket = int((now + self.peer_timeout) / self._width) + 1
            if bucket == self._bucket:
                bucket = self._bucket  # one int object for all, not 32 bytes per peer
            else:
                self._bucket = bucket
            if peer.expires != bucket:
                peer.expires = bucket
                due = self._queue.get(bucket)
                if due is None:
                    self._queue[bucket] = [peer]
                else:
                    due.append(peer)
        if event == EVENT_COMPLETED:
            if peer is None:
                swarm.downloaded += 1
            elif not peer.completed:
                peer.completed = True
                swarm.downloaded += 1
        if peer is None and not swarm.peers and not self._kept_empty(swarm):
            # Not stored (caps) into an empty open swarm: do not keep an empty shell.
            self._drop_swarm(swarm)
            return _NO_PEERS
        if numwant <= 0:
            return _NO_PEERS
        packed = swarm.packed
        rand = self.rng.random
        if families == FAMILY_ANY:  # one family when the swarm has only one: same ring
            if not (packed[2] or packed[3]):
                families = FAMILY_V4
            elif not (packed[0] or packed[1]):
                families = FAMILY_V6
            elif seeder:
                v4, v6 = mixed(packed, (1, 3), numwant, addr, rand)
                got = len(v4) // 6 + len(v6) // 18
                if got < numwant:
                    s4, s6 = mixed(packed, (0, 2), numwant - got, addr, rand)
                    return v4 + s4, v6 + s6
                return v4, v6
            else:
                return mixed(packed, (0, 2, 1, 3), numwant, addr, rand)
        f = 2 if families == FAMILY_V6 else 0  # the family's seeders; f + 1 its leechers
        w = _WIDTH[f]
        asker = -1  # the asker's byte offset in the ring, if it is there
        if peer is not None and peer.slot >> 1 == f >> 1:
            asker = peer.idx * w
        if seeder:
            out = ring((packed[f + 1],), w, numwant, -1, rand)
            if len(out) < numwant * w:
                out += ring((packed[f],), w, numwant - len(out) // w, asker, rand)
        else:
            if asker >= 0 and peer.slot & 1:  # type: ignore[union-attr]
                asker += len(packed[f])  # the ring: seeders, then leechers
            out = ring((packed[f], packed[f + 1]), w, numwant, asker, rand)
        return (out, b"") if f == 0 else (b"", out)

    def registered(self) -> list[Swarm]:
        """Every registered swarm, once each."""
        seen: dict[int, Swarm] = {}
        for swarm in self.by_hash.values():
            if swarm.registered:
                seen.setdefault(id(swarm), swarm)
        return list(seen.values())

    # -- removal and expiry -------------------------------------------------------------

    def _count(self, slot: int, delta: int) -> None:
        if slot & 1:
            self.leechers += delta
        else:
            self.seeders += delta

    def _unlink(self, peer: Peer) -> None:
        """Take ``peer`` out of its address list (swap-remove) and the counters."""
        swarm = peer.swarm
        assert swarm is not None
        swarm.take(peer)
        self._count(peer.slot, -1)

    def _remove(self, peer: Peer, addr: bytes) -> None:
        swarm = peer.swarm
        assert swarm is not None
        self._unlink(peer)
        del swarm.peers[addr]
        peer.swarm = None
        if not swarm.peers and not self._kept_empty(swarm):
            self._drop_swarm(swarm)

    def clean(self, now: float, limit: int | None = None) -> int:
        """Drop the peers whose deadline passed by ``now``; returns how many. Costs the
        number of queue entries due (bounded per peer), not the number of peers. With
        ``limit``, looks at no more than ``limit`` entries: one slice of the work, the
        rest stays due (``clean_due``). A busy tracker files millions of entries per
        bucket (every re-announce moves its peer to a later one), so the shell cleans
        in slices rather than stall its loop for a second."""
        if limit is not None and limit <= 0:
            raise ValueError("limit must be positive")
        current = int(now / self._width)
        queue = self._queue
        budget = -1 if limit is None else limit
        removed = 0
        for bucket in sorted(b for b in queue if b <= current):
            entries = queue[bucket]
            # From the end: a partly cleaned bucket stays in place, no copy of the rest.
            while entries and budget:
                peer = entries.pop()
                budget -= 1
                if peer.swarm is not None and peer.expires == bucket:
                    self._remove(peer, peer.addr)
                    removed += 1
            if entries:
                break  # out of budget
            del queue[bucket]
        return removed

    def clean_due(self, now: float) -> bool:
        """Whether ``clean(now)`` has entries left to look at."""
        current = int(now / self._width)
        return any(b <= current for b in self._queue)

    @property
    def sweep_every(self) -> float:
        """How often ``clean`` is worth calling (the width of one expiry bucket)."""
        return self._width
