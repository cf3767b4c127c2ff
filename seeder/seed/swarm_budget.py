"""How much the daemon sends into one swarm: full speed until the swarm had its copies and
holds every piece, then a trickle (the per-torrent byte budget; issue 4, numbers in
seeding.py and benchmarks/README.md).

The daemon seeds at full speed (no super seeding: it made the clients wait on each other) and
counts what it sends into the current swarm: BitTorrent payload plus web seed bytes. Once

- it has sent ``copies - tail`` times the object into the swarm (the rest of the budget is
  the reserve for the swarm's end), and
- the swarm holds every piece: the connected peers together (``SwarmView.covered``; pieces a
  live web seed response has started sending count as held, not the rest of its range), or
  a peer that was a seed, or left lacking at most ``LEFT_NEAR`` of the pieces, within the
  last ``seed_memory`` seconds (a client that completes drops its connection to the daemon,
  a seed to a seed, and goes on seeding to the others), and
- the peers still lack more than ``tail`` copies in all, and no connected peer lacks at
  most ``near`` of the pieces (while the reserve lasts: a peer about to complete is
  finished at full speed, and becomes a seed for the others sooner), and
- the swarm is not stalled (a peer gained a piece within the last ``stall_after`` seconds),

the torrent is *throttled* (`Throttle`): the session leaves two peers unchoked and caps the
upload to a trickle, the web seed answers busy and stops the responses in flight, so the rest
of the download flows between the peers. The session goes on sending for about a second
after a throttle is set, so the reserve ends ``lag`` seconds of the current send rate early,
and stays ended (``copies`` bounds what the swarm gets in all). Choking matters: under a
bare rate cap the peers' requests sat queued at the daemon and the swarm stalled.
Liveness: the daemon never throttles while some piece exists only in its session (a lone
client, or the peers that held a piece left before completing), serves the swarm's last
``tail`` copies at full speed while the budget's reserve lasts (the last few peers trade
slowly), and a swarm that stops making progress gets it at full speed again for
``stall_after`` seconds. A swarm that empties (no peers, nothing sent for ``stall_after``
seconds) starts a new budget when peers come back.

Pure: no I/O, no clock (``now`` is an argument, seconds on any monotonic origin). One small
record per torrent with peers; `forget` drops it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_COPIES",
    "DEFAULT_LAG",
    "DEFAULT_STALL_AFTER",
    "SwarmBudget",
    "SwarmView",
    "Throttle",
    "missing_pieces",
]

DEFAULT_COPIES = 2.9  # copies of the object sent into a swarm before the daemon backs off
DEFAULT_STALL_AFTER = 2.0  # s without the peers gaining a piece: the daemon serves again;
#                            also how long a swarm is empty and idle before it is over
DEFAULT_TRICKLE_RATE = 64 * 1024  # bytes/s of a swarm that holds every piece, budget spent
DEFAULT_TAIL = 0.3  # copies: the budget's reserve, kept for the swarm's end: full speed once
#                     the peers lack less than this in all (the last peers of a swarm trade
#                     slowly: 18 s seen), or while a peer is NEAR completion
NARROW_SLOTS = 2  # unchoked peers of a torrent over budget (libtorrent's least)
DEFAULT_SEED_MEMORY = 60.0  # s a peer seen complete counts as holding every piece after it
#                             left the daemon (a seed drops its connection to a seed)
DEFAULT_NEAR = 0.25  # fraction of the pieces: a peer lacking at most this many is finished
#                      at full speed out of the budget's reserve (0: never)
DEFAULT_LAG = 1.0  # s libtorrent goes on sending at about the same rate after a throttle is
#                   set (its bandwidth quota is handed out per 500 ms, and the sockets drain):
#                   the budget ends this long before its bytes are all sent
LEFT_NEAR = 0.05  # a peer that leaves lacking at most this fraction completed: libtorrent
#                   drops a peer as soon as both are seeds, often before a view shows it whole


@dataclass(frozen=True, slots=True)
class Throttle:
    """What the session does to one torrent's upload (None elsewhere: nothing)."""

    slots: int  # unchoked peers at most: the rest are choked, their requests go elsewhere
    rate: int | None  # upload cap, bytes/s (None: none)


@dataclass(frozen=True, slots=True)
class SwarmView:
    """One complete torrent's swarm as the daemon's session sees it now."""

    holdings: Mapping[str, int]  # connected BitTorrent peer (endpoint) -> pieces it holds
    missing: int  # pieces no peer holds (nor gets from the web seed right now): only here
    sent: int  # the daemon's payload bytes for this torrent, cumulative: BitTorrent + web seed
    #            bytes handed to the socket (never a granted range before it is sent)
    size: int  # the torrent's total size, bytes
    piece_length: int
    unchoked: frozenset[str] = frozenset()  # the peers (endpoints) the session unchokes now
    rates: Mapping[str, int] = field(default_factory=dict)  # peer -> upload rate to it, B/s

    @property
    def peers(self) -> int:
        return len(self.holdings)

    @property
    def pieces(self) -> int:
        """The torrent's number of pieces."""
        return -(-self.size // self.piece_length) if self.piece_length > 0 else 0

    @property
    def wanted(self) -> int:
        """Bytes the connected peers still lack, summed over them (about)."""
        pieces = self.pieces
        return sum(max(0, pieces - n) for n in self.holdings.values()) * self.piece_length

    @property
    def covered(self) -> bool:
        """The peers together hold every piece."""
        return self.missing == 0


def missing_pieces(
    bitfields: Iterable[Sequence[bool]], num_pieces: int, in_flight: Collection[int] = ()
) -> int:
    """How many of the pieces ``0..num_pieces-1`` are set in no bitfield and not in
    ``in_flight`` (started by a live web seed response)."""
    missing = set(range(num_pieces)).difference(in_flight)
    for bits in bitfields:
        if not missing:
            break
        missing = {i for i in missing if i >= len(bits) or not bits[i]}
    return len(missing)


@dataclass(slots=True)
class _Swarm:
    base: int  # `sent` when this swarm's budget started
    last_sent: int  # `sent` at the previous update
    sent_at: float  # when `sent` last grew (or the record was made)
    holdings: Mapping[str, int]  # the previous update's
    gained_at: float  # when a peer last gained a piece
    open_until: float = 0.0  # no throttling before this (after a stall)
    throttled: bool = False
    reserve: bool = False  # the last decision: full speed out of the budget's reserve
    reserve_over: bool = False  # the reserve was found used up: it never reopens
    cap: Throttle | None = None  # the last decision
    why: str = "new swarm"  # the last decision's reason (logs)
    seed_seen: float | None = None  # when a connected peer last held every piece
    seen_at: float | None = None  # when the previous update came (its `sent`: last_sent)


class SwarmBudget:
    """Per-torrent upload caps from successive `SwarmView`s (see the module doc).

    ``copies``: the budget, in object sizes, per swarm (0 = never cap).
    ``stall_after``: seconds without progress after which a capped swarm gets the daemon
    at full speed again (for as long again); also how long a swarm without peers and
    without web seed traffic lasts before the next peers get a fresh budget.
    ``trickle_rate``: the cap, bytes/s, once the budget is spent and the peers hold every
    piece. ``lag``: seconds the session goes on sending after a throttle is set; the
    budget counts that many seconds of the current send rate as sent already, so the
    whole swarm's bytes stay within ``copies`` (0: count only what was sent). Raises
    ValueError for bad values.
    """

    def __init__(
        self,
        copies: float = DEFAULT_COPIES,
        stall_after: float = DEFAULT_STALL_AFTER,
        *,
        trickle_rate: int = DEFAULT_TRICKLE_RATE,
        tail: float = DEFAULT_TAIL,
        seed_memory: float = DEFAULT_SEED_MEMORY,
        near: float = DEFAULT_NEAR,
        lag: float = DEFAULT_LAG,
    ):
        if (copies < 0 or stall_after <= 0 or trickle_rate < 1 or tail < 0 or seed_memory < 0
                or not 0 <= near < 1 or lag < 0):
            raise ValueError("copies >= 0, stall_after > 0, trickle_rate >= 1, tail >= 0, "
                             "seed_memory >= 0, 0 <= near < 1, lag >= 0")
        self.copies = copies
        self.lag = lag
        self.seed_memory = seed_memory
        self.near = near
        self.stall_after = stall_after
        self.trickle_rate = trickle_rate
        self.tail = tail
        self._swarms: dict[str, _Swarm] = {}

    def start(self, torrent: str, sent: int, now: float) -> None:
        """The torrent sees activity (a web seed request) before any peer is connected: its
        budget counts from ``sent`` (the cumulative count before this activity). No-op for
        a torrent whose swarm is already tracked."""
        if torrent not in self._swarms:
            self._swarms[torrent] = _Swarm(sent, sent, now, {}, now)

    def update(self, torrent: str, view: SwarmView | None, now: float) -> Throttle | None:
        """Take the torrent's current view (None: not seeding it whole, e.g. still
        downloading or gone); how to throttle the torrent now (None: not at all)."""
        if view is None or self.copies == 0:
            self._swarms.pop(torrent, None)
            return None
        s = self._swarms.get(torrent)
        if s is None:
            if view.peers == 0:
                return None
            s = self._swarms[torrent] = _Swarm(view.sent, view.sent, now, {}, now)
        if view.sent != s.last_sent:
            s.sent_at = now
        if view.peers == 0 and now - s.sent_at >= self.stall_after:
            # Nobody connected and nothing sent for a while: the swarm is over; the next
            # peers start a fresh budget.
            del self._swarms[torrent]
            return None
        before = s.holdings
        pieces = -(-view.size // view.piece_length) if view.piece_length > 0 else 0
        if any(n >= pieces for n in view.holdings.values()) or any(
            n >= pieces - LEFT_NEAR * pieces and peer not in view.holdings
            for peer, n in before.items()
        ):
            s.seed_seen = now  # a seed, or a peer that left about complete (became one)
        if not before or any(n > before.get(peer, n) for peer, n in view.holdings.items()):
            s.gained_at = now  # a peer gained a piece, or peers just came: not stalled
        s.holdings = view.holdings
        # What the session will have sent once a throttle set now takes effect.
        rate = ((view.sent - s.last_sent) / (now - s.seen_at)
                if s.seen_at is not None and now > s.seen_at else 0.0)
        s.last_sent, s.seen_at = view.sent, now
        covered = view.covered or (
            s.seed_seen is not None and now - s.seed_seen <= self.seed_memory
        )
        reserve_left = not s.reserve_over and (
            view.sent + rate * self.lag - s.base < self.copies * view.size)
        stalled = now - s.gained_at >= self.stall_after
        if s.cap is not None and stalled:
            s.open_until = now + self.stall_after
            s.gained_at = now
        spent = view.sent - s.base >= self._main * view.size
        if spent and not reserve_left:
            # Latched: the send rate falls with the throttle this decision sets, and at the
            # trickle's rate the sum above would say "reserve left" again; a reserve reopened
            # so sends another lag of full speed each time (measured: 2.99 copies of 3.0).
            s.reserve_over = True
        s.throttled = s.reserve = False
        if not spent:
            s.why, s.cap = "under budget", None
        elif stalled or now < s.open_until:
            s.why, s.cap = "swarm stalled", None
        elif view.wanted <= self.tail * view.size and reserve_left:
            s.why, s.cap = "the swarm's last pieces (the budget's reserve)", None
            s.reserve = True
        elif reserve_left and any(
            pieces - self.near * pieces <= n < pieces for n in view.holdings.values()
        ):
            s.why, s.cap = "a peer near completion (the budget's reserve)", None
            s.reserve = True
        elif view.peers == 0:
            s.why, s.cap = "no peers (web seed traffic only)", None
        elif not covered:
            # Any throttle here starves or slows the swarm: every client asks the daemon for
            # its rarest pieces. Measured: a 16 MiB/s cap made a 9 s download 20 s, 8 MiB/s
            # 30 s, a cap in proportion to the pieces only here 18-22 s; two unchoked peers
            # at full speed took 1.7-2 copies on their own.
            s.why, s.cap = "budget spent, some pieces only here", None
        else:
            s.why = "budget spent, the swarm holds every piece"
            s.cap = Throttle(NARROW_SLOTS, self.trickle_rate)
            s.throttled = True
        return s.cap

    @property
    def _main(self) -> float:
        """Copies sent at full speed before the budget's reserve (the tail's share)."""
        return max(0.0, self.copies - self.tail)

    def over_budget(self, torrent: str, view: SwarmView) -> bool:
        """True when ``view`` shows the budget of the torrent's current swarm spent (so its
        coverage is worth reading)."""
        s = self._swarms.get(torrent)
        return s is not None and self.copies > 0 and view.sent - s.base >= self._main * view.size

    def throttled(self, torrent: str) -> bool:
        """True when the last decision for ``torrent`` was the trickle: the budget is spent
        and the peers hold every piece (the web seed answers busy then)."""
        s = self._swarms.get(torrent)
        return s is not None and s.throttled

    def on_reserve(self, torrent: str) -> bool:
        """True when the last decision for ``torrent`` was full speed out of the budget's
        reserve (the swarm's last pieces, or a peer near completion): the session then
        unchokes no peer anew (upload_slots), so the reserve goes to the peers it serves."""
        s = self._swarms.get(torrent)
        return s is not None and s.reserve

    def why(self, torrent: str) -> str:
        """The reason of the last decision (logs)."""
        s = self._swarms.get(torrent)
        return s.why if s is not None else "no swarm"

    def left(self, torrent: str, view: SwarmView) -> float | None:
        """Bytes the torrent's current swarm budget has left as of ``view`` (reserve
        included; 0 once spent); None without a budget (no swarm record, or copies 0)."""
        s = self._swarms.get(torrent)
        if s is None or self.copies == 0:
            return None
        return max(0.0, self.copies * view.size - (view.sent - s.base))

    def spent(self, torrent: str) -> int:
        """Bytes sent into the current swarm as of the last update (logs)."""
        s = self._swarms.get(torrent)
        return s.last_sent - s.base if s is not None else 0

    def tracked(self) -> list[str]:
        """Torrents with a live swarm record."""
        return list(self._swarms)

    def forget(self, torrent: str) -> None:
        """Drop the torrent's record (it left the session)."""
        self._swarms.pop(torrent, None)

    def __contains__(self, torrent: object) -> bool:
        """True when ``torrent`` has a live swarm record."""
        return torrent in self._swarms
