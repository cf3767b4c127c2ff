"""Which catalog torrents the libtorrent session seeds, and when (the daemon's policy).

- A torrent is in the session while it is *in demand* (seeder/seed/active.py over
  seeder.demand.Activation): a GetObjectTorrent request for it, an announce in its swarm by
  another peer, web seed traffic, or peers connected to the session's copy, within the
  tracker's peer timeout; at most ``[seeding] max_active_torrents`` at once, the least
  recently demanded leaving first. Making a torrent (the scanner) is not demand.
- When its bytes are in the seed cache (the generator streamed them there) it is added in
  ``seed_mode`` (no second read of the object); otherwise libtorrent fetches it through its
  web seed (S3 is the first peer) into the cache, and seeds from there.
- A retired torrent (object changed or deleted) leaves the session and the cache.
- A relinked torrent (same info-hashes, the config moved its tracker or web seed) keeps
  seeding with the new trackers and web seeds.

Keeping the daemon's bytes near two copies of an object however many clients fetch it,
without slowing them (issue 4; what each choice measured, and the rejected alternatives, is
in docs/benchmarks.md, "Seeding policy"):

- The session seeds at full speed while a swarm needs it, then backs off (`swarm_budget`,
  `run`): once it has sent ``[seeding] swarm_budget`` copies (2.9) less the reserve for the
  swarm's end (0.3 copy) into the current swarm,
  BitTorrent and web seed together, *and* the connected peers together hold every piece
  (or get it from the web seed right now, or a client that completed and left the daemon
  seeds them), the torrent keeps two unchoked peers and an
  upload cap of ``swarm_trickle_rate`` (64 KiB/s), and its web seed answers busy and stops
  the responses in flight; the peers finish among themselves. Back to full speed when a
  piece is only in the session again (peers left before completing), for the swarm's last
  0.3 copy or a peer about to complete (out of the budget's reserve), after
  2 s without progress, or when it empties. A lone client never reaches the throttle (it
  holds no piece the session lacks). Each peer may queue only
  ``[seeding] peer_request_queue`` requests (64 blocks, 1 MiB) here, so clients ask their
  other peers for the rare pieces instead of all queueing them here.
- At full speed the session unchokes ``seed.settings.UPLOAD_SLOTS`` peers (4), plus one for
  each unchoked peer in its end game or slow to ramp up (`upload_slots`): the daemon's link
  stays busy while the peers it serves finish their last blocks elsewhere. While the
  budget's reserve is spent (`SwarmBudget.on_reserve`) no peer is unchoked anew: the
  reserve goes to the peers served now, the one near completion among them; nor at a
  swarm's end while the budget left (`SwarmBudget.left`) would not last for the unchoked
  peer behind the others (`upload_slots.budget_short`).
- The web seed (``webseed = "proxy"``) yields to the swarm through `webseed_gate`: each
  piece goes out of the web seed to one client address per claim window; others are told
  busy (503 + Retry-After) while this session seeds the whole torrent to connected peers.
  It also answers busy to a client whose BitTorrent connections the session's choker
  chokes while its slots are taken (`upload_slots.choked_address`): the web seed is the same
  uplink, and serving it would be a slot the choker did not give.
  Otherwise it always serves (seeding disabled, torrent not in the session, still
  downloading: the swarm could not stand in). libtorrent 2.1 never asks a web seed again
  after one busy answer, which is safe only because this session is then a complete seeder.
- Not done (each measured worse): super seeding (BEP 16, ``seed.settings.SUPER_SEEDING``),
  the web seed answering busy as soon as this session can serve, more unchoke slots without
  the handoff (their holders keep them through their end game), any throttle while some
  piece is only here, a bare rate cap, and upload slots alone.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import trio

from seeder.demand import Activation
from seeder.seed.active import ActiveSet
from seeder.seed.cache import CacheError, CacheWriter, SeedCache
from seeder.seed.nocopy import LocalSource, local_source, open_unchanged
from seeder.seed.session import SeedSession
from seeder.seed.settings import UNCHOKE_WARMUP, UPLOAD_SLOTS
from seeder.seed.swarm_budget import SwarmBudget, SwarmView, Throttle
from seeder.seed.upload_share import UploadShare
from seeder.seed.upload_slots import UploadSlots, choked_address, session_slots
from seeder.seed.webseed_gate import Busy, Grant, WebSeedGate
from seeder.store import ObjectInfo
from seeder.store.local import LocalStore
from seeder.torrent import metainfo
from seeder.torrent.entry import Entry

log = logging.getLogger(__name__)

SWARM_STATUS_TTL = 1.0  # s: a torrent's session status is asked of libtorrent at most this often
BUDGET_INTERVAL = 0.5  # s between swarm budget decisions (run)
ANNOUNCE_RETRY = 30.0  # s: an announced torrent the session lacks is looked up this rarely
ANNOUNCE_TRIED_MAX = 10_000  # torrents remembered for ANNOUNCE_RETRY (cleared when full)
DEFAULT_CAP = 2000  # [seeding] max_active_torrents' default
DEFAULT_IDLE = 3600.0  # s: the tracker's default peer timeout (interval 1800 x factor 2)


def torrent_name(key: str) -> str:
    """The torrent's ``name``: the last segment of the object key."""
    return key.rsplit("/", 1)[-1]


class Seeding:
    """Catalog listener and demand hooks around one `SeedSession` and its `SeedCache`."""

    def __init__(
        self,
        session: SeedSession,
        cache: SeedCache,
        gate: WebSeedGate | None = None,
        *,
        budget: SwarmBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
        activation: Activation | None = None,
        metrics: Any = None,
        local_stores: Mapping[str, object] | None = None,
        in_place: bool = True,
        share: UploadShare | None = None,
        slots: UploadSlots | None = None,
    ) -> None:
        """``budget``: the per-swarm byte budget (swarm_budget; None: the default one).
        ``activation``: which torrents the session holds (None: a default `Activation`, cap
        2000, idle after an hour). ``local_stores``: the daemon's stores by bucket (a live
        mapping: a reload swaps them); with ``in_place`` (``[seeding] local_no_copy``) the
        local ones (LocalStore) are seeded from their own files (seed/nocopy.py) and their
        objects not copied into the seed cache; the copies made for the others are
        reflinks where the filesystem can.
        ``share``: ``[seeding] upload_rate_limit`` split between the session and the web
        seed (upload_share; None: no limit). ``slots``: the unchoke slots at full speed
        with the end-game handoff (upload_slots; None: the default one)."""
        self.session = session
        self.active = ActiveSet(
            session,
            activation if activation is not None else Activation(DEFAULT_CAP, DEFAULT_IDLE),
            clock=clock, metrics=metrics,
        )
        self.local_stores: Mapping[str, object] = local_stores or {}
        self.in_place = in_place
        self.active.source_of = self.source_of
        self.cache = cache
        self.gate = gate if gate is not None else WebSeedGate()
        self.budget = budget if budget is not None else SwarmBudget()
        self.slots = slots if slots is not None else UploadSlots(UPLOAD_SLOTS,
                                                                 warm=UNCHOKE_WARMUP)
        self._unchoke_slots: int | None = None  # the session-wide slots as last set
        self.clock = clock
        self.share = share if share is not None else UploadShare(0)
        self._bt_rate = self.share.bt_limit  # the session's upload limit as last set
        self._bt_sent: dict[str, int] = {}  # key -> the session's payload bytes, last tick
        self._views: dict[str, SwarmView] = {}  # key -> its swarm as last read (tick)
        self._ready: dict[str, tuple[float, bool]] = {}  # key -> (asked at, swarm ready)
        self._cleaned = clock()
        self._webseed_sent: dict[str, int] = {}  # key -> web seed body bytes sent
        self._counted: dict[int, int] = {}  # live grant serial -> its bytes counted so far
        self._announce_tried: dict[str, float] = {}  # key -> last announce-demand lookup
        self.announce_adds = 0  # torrents added because of an announce (logs, tests)

    # -- generation side -------------------------------------------------------------------

    def chunk_sink(self, info: ObjectInfo) -> CacheWriter | None:
        """Where the generator writes the bytes it streams (None: not cached). A local
        bucket seeded in place is not copied (a key through a symlink with another name is
        downloaded through the web seed when first wanted: checking for one here would cost
        every scanned object a path resolution); otherwise a local object is reflinked
        where the filesystem can, the writes then only checked."""
        store = self.local_stores.get(info.bucket)
        name = torrent_name(info.key)
        source_fd = None
        if isinstance(store, LocalStore):
            if self.in_place:
                return None
            source_fd = open_unchanged(store, info.key, info.etag)
        try:
            return self.cache.begin(name, info.size, source_fd=source_fd)
        except (CacheError, OSError) as exc:
            log.warning("not caching %s/%s: %s", info.bucket, info.key, exc)
            return None
        finally:
            if source_fd is not None:
                os.close(source_fd)

    def source_of(self, entry: Entry) -> LocalSource | None:
        """The bucket file to seed ``entry`` from in place, if it still has the bytes that
        were hashed (local buckets only; pinned versions never)."""
        store = self.local_stores.get(entry.bucket)
        if (not self.in_place or not isinstance(store, LocalStore)
                or entry.version_id is not None):
            return None
        return local_source(store, entry.key, entry.etag,
                            metainfo.torrent_name(entry.bucket, entry.key))

    # -- catalog listener ------------------------------------------------------------------

    def torrent_added(self, entry: Entry) -> None:
        """A new torrent is seeded when it is in demand (`on_demand`, `on_announce`), not when
        it is made: a scanned bucket of a million objects is not a million swarms."""
        if entry.seed_key in self.active:
            self.session.ensure_seeding(entry.torrent, self.source_of(entry))

    def torrent_relinked(self, entry: Entry) -> None:
        """Same torrent, other trackers or web seeds: the session follows."""
        self.session.set_links(entry.seed_key, metainfo.links(entry.torrent))

    def torrent_removed(self, entry: Entry) -> None:
        key = entry.seed_key
        self.gate.forget(key)
        self.budget.forget(key)
        self._ready.pop(key, None)
        self._webseed_sent.pop(key, None)
        self._bt_sent.pop(key, None)
        self._views.pop(key, None)
        self.slots.forget(key)
        self.active.forget(key)
        if not self.session.remove(key, delete_files=True):
            self.cache.remove(key)

    # -- demand ----------------------------------------------------------------------------

    def on_demand(self, entry: Entry) -> None:
        """Someone asked for this torrent (GetObjectTorrent): the session seeds it."""
        self.active.want(entry, "torrent")

    def on_announce(self, info_hash: bytes, lookup: Callable[[bytes], Entry | None]) -> None:
        """The tracker accepted an announce into the swarm of ``info_hash`` (its canonical
        20-byte hash; ``lookup`` finds the catalog entry): the torrent is in demand.

        Called for every announce, so cheap when the session has it already (a dict
        lookup); otherwise the catalog is asked at most once per ANNOUNCE_RETRY seconds
        per torrent (a torrent that cannot be added, e.g. no cache room, is not retried on
        every announce). Never raises: a failure is logged.

        The swarm's hash is the entry's first tracker hash: the seed key for v1 and hybrid
        torrents, the truncated v2 hash for v2-only ones (whose seed key is the full v2 hex,
        so the session is asked again once the entry is found)."""
        key = info_hash.hex()
        if self.active.touch(key) and self.session.has(key):
            return
        now = self.clock()
        tried = self._announce_tried.get(key)
        if tried is not None and now - tried < ANNOUNCE_RETRY:
            return
        if len(self._announce_tried) >= ANNOUNCE_TRIED_MAX:
            self._announce_tried.clear()
        self._announce_tried[key] = now
        try:
            entry = lookup(info_hash)
            if entry is None or entry.tracker_hashes[:1] != (info_hash,):
                return
            if self.active.touch(entry.seed_key) and self.session.has(entry.seed_key):
                return
            if self.active.want(entry, "announce"):
                self.announce_adds += 1
                # The next time it leaves and is announced again, look it up at once.
                self._announce_tried.pop(key, None)
        except Exception:
            log.exception("announce demand for %s failed", key)

    def restore(self) -> int:
        """At startup, once the session resumed: its torrents (active when the daemon
        stopped) count as demanded now; the number kept."""
        return self.active.adopt()

    # -- web seed --------------------------------------------------------------------------

    def cached_file(self, entry: Entry) -> Path | None:
        """The object's bytes in the seed cache, when complete (the web seed serves them
        from there instead of reading the origin again)."""
        key = entry.seed_key
        if not self.cache.is_complete(key):
            return None
        root = self.cache.lookup(key)
        if root is None:
            return None
        path = root / torrent_name(entry.key)
        return path if path.is_file() else None

    # -- web seed gate (handlers.WebSeedGateHook) ---------------------------------------------

    def admit(self, entry: Entry, start: int, length: int, client: str) -> Grant | Busy:
        """Serve this web seed request, or answer busy (see webseed_gate): busy only while
        the session seeds the whole torrent to connected peers."""
        key = entry.seed_key
        if length > 0 and not self.active.touch(key):
            self.active.want(entry, "webseed")  # web seed traffic is demand
        now = self.clock()
        if now - self._cleaned >= self.gate.claim_ttl:
            self._cleaned = now
            self.gate.clean(now)
            self._ready = {k: v for k, v in self._ready.items() if now - v[0] < SWARM_STATUS_TTL}
        if self.budget.throttled(key) and length > 0:
            # The swarm holds every piece and had its share of the daemon's bytes.
            return Busy(self.gate.retry_after, "swarm", start // entry.piece_length)
        view = self._views.get(key)
        if (length > 0 and view is not None
                and choked_address(client, view.holdings, view.unchoked, self.slots.slots)):
            # The choker gave its slots to other peers (upload_slots.choked_address).
            return Busy(self.gate.retry_after, "choked", start // entry.piece_length)
        if length > 0 and key not in self.budget:
            # Web seed traffic before any peer connected: this swarm's budget starts here.
            st = self.session.status(key)
            if st is not None and st.progress >= 1.0:
                self.budget.start(key, st.uploaded + self._webseed_sent.get(key, 0), now)
        # Nothing is counted here: a granted range (aria2 asks for the rest of the file and
        # hangs up early) counts as its bytes are sent (`carry_on`, `finished`).
        return self.gate.admit(
            key, entry.piece_length, start, length, client, now,
            swarm_ready=self.swarm_ready(key, now),
        )

    def carry_on(self, grant: Grant, sent: int) -> bool:
        """``sent`` body bytes of ``grant`` went to the socket: count them into the swarm's
        budget and move its claims on. False stops the response: the torrent is throttled
        (the swarm holds every piece and had its budget), or its next pieces are another
        client's (see webseed_gate)."""
        self._count_sent(grant, sent)
        if self.budget.throttled(grant.torrent):
            return False
        now = self.clock()
        return self.gate.progress(
            grant, sent, now, swarm_ready=self.swarm_ready(grant.torrent, now)
        )

    def pace(self, grant: Grant, nbytes: int) -> float:
        """Seconds the web seed waits before sending ``nbytes`` more of ``grant``: its share
        of ``[seeding] upload_rate_limit`` (upload_share); the session's share follows."""
        wait = self.share.take(nbytes, self.clock())
        self._apply_upload_rate()
        return wait

    def _apply_upload_rate(self) -> None:
        rate = self.share.bt_limit
        if rate != self._bt_rate and self.session.set_limits(upload_rate=rate):
            self._bt_rate = rate

    def finished(self, grant: Grant, sent: int) -> None:
        self._count_sent(grant, sent)
        self._counted.pop(grant.serial, None)
        self.gate.finished(grant, sent)

    def _count_sent(self, grant: Grant, sent: int) -> None:
        new = min(sent, grant.length) - self._counted.get(grant.serial, 0)
        if new > 0:
            self._counted[grant.serial] = self._counted.get(grant.serial, 0) + new
            self._webseed_sent[grant.torrent] = self._webseed_sent.get(grant.torrent, 0) + new

    # -- swarm budget (swarm_budget) ------------------------------------------------------------

    async def run(self) -> None:
        """Apply the swarm budget every BUDGET_INTERVAL until cancelled (start it once the
        session runs)."""
        while True:
            self.tick(self.clock())
            await trio.sleep(BUDGET_INTERVAL)

    def tick(self, now: float) -> None:
        """One round: idle torrents leave the session (`ActiveSet.tick`), then the budget
        decisions: for every torrent with peers (or throttled), read its swarm from the
        session and cap or uncap its upload."""
        try:
            self.active.tick(now)
        except Exception:  # a libtorrent surprise must not take the daemon down
            log.exception("on-demand sweep failed")
        bt_sent = 0
        keys = set(self.session.peered()).union(self.budget.tracked())
        for key in keys:
            try:
                bt_sent += self._apply_budget(key, now)
            except Exception:  # a libtorrent surprise must not take the daemon down
                log.exception("%s: swarm budget failed", key)
        for key in set(self._views).difference(keys):
            # No peers and no budget any more: its last view must not refuse a web seed
            # client later (choked_address), nor its record stay.
            self._views.pop(key, None)
            self.slots.forget(key)
        self._apply_unchoke_slots()
        self.share.tick(now, bt_sent)
        self._apply_upload_rate()

    def _apply_unchoke_slots(self) -> None:
        """The session-wide unchoke slots: the counts of the torrents with peers summed
        (upload_slots.session_slots), so that its choker chokes a torrent's slowest peers
        when the torrent's count falls (after a slow first pick is picked again)."""
        counts = []
        for key in self._views:
            throttle = self.session.throttle(key)
            counts.append(UPLOAD_SLOTS if throttle is None else max(2, throttle.slots))
        slots = session_slots(counts, UPLOAD_SLOTS)
        if slots != self._unchoke_slots and self.session.set_limits(unchoke_slots=slots):
            self._unchoke_slots = slots

    def _apply_budget(self, key: str, now: float) -> int:
        """Read one torrent's swarm, decide, and throttle its upload or not; the session's
        payload bytes to its peers since the last round (for the upload share)."""
        session = self.session
        sent = self._webseed_sent.get(key, 0)
        view = session.swarm_view(key, sent, coverage=False)
        bt_new = 0
        if view is None:
            self._bt_sent.pop(key, None)
            self._views.pop(key, None)
            self.slots.forget(key)
        else:
            self._views[key] = view
            before = self._bt_sent.get(key, view.sent - sent)
            self._bt_sent[key] = view.sent - sent
            bt_new = max(0, view.sent - sent - before)
        if view is not None and not view.covered and self.budget.over_budget(key, view):
            view = session.swarm_view(key, sent, self.gate.in_flight(key))
        throttle = self.budget.update(key, view, now)
        if throttle is None and view is not None:
            # Full speed: a slot more for each unchoked peer in its end game or slow
            # (upload_slots); none anew out of the budget's reserve, nor at the swarm's end
            # while the budget left is for the unchoked peers' needs.
            n = self.slots.count(key, view.holdings, view.unchoked, view.rates, view.pieces, now,
                                 grow=not self.budget.on_reserve(key),
                                 left=self.budget.left(key, view),
                                 piece_length=view.piece_length)
            throttle = None if n == self.slots.slots else Throttle(n, None)
        if view is not None and log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %d peers, %d pieces held, %d only here, %.2f copies sent: %s",
                      key[:8], view.peers, sum(view.holdings.values()), view.missing,
                      self.budget.spent(key) / view.size if view.size else 0,
                      self.budget.why(key))
        if throttle != session.throttle(key):
            session.set_throttle(key, throttle)
            log.info(
                "%s: upload %s: %s (%.2f copies sent into a swarm of %d peers)",
                key,
                _throttle_text(throttle),
                self.budget.why(key),
                self.budget.spent(key) / view.size if view is not None and view.size else 0,
                view.peers if view is not None else 0,
            )
        return bt_new

    def swarm_ready(self, key: str, now: float) -> bool:
        """True when the session holds every piece of torrent ``key`` and has peers
        connected (asked of libtorrent at most every SWARM_STATUS_TTL seconds)."""
        cached = self._ready.get(key)
        if cached is not None and now - cached[0] < SWARM_STATUS_TTL:
            return cached[1]
        st = self.session.status(key) if self.session.has(key) else None
        ready = st is not None and st.progress >= 1.0 and st.error is None and st.peers > 0
        self._ready[key] = (now, ready)
        return ready


def _throttle_text(throttle: Throttle | None) -> str:
    if throttle is None:
        return "at full speed"
    if throttle.rate is None:
        return f"at full speed, {throttle.slots} unchoked peers"
    return f"throttled to {throttle.slots} unchoked peers, {throttle.rate} B/s"
