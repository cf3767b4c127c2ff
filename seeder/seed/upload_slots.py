"""How many peers of one torrent the session unchokes at full speed: its slots, plus one for
each unchoked peer that does not use its slot (the slot handoff).

libtorrent's seed choker (``fastest_upload``) keeps a peer unchoked until it completes, so a
slot is held by whoever got it first. Two kinds of peers hold a slot and take little through
it (WAN lab, 100-ms log of the daemon's peers, docs/benchmarks.md):

- A peer in its end game: in its last few percent it asks its other peers for the blocks it
  lacks, and the daemon sends it almost nothing (0.2 MiB/s of 23.8 for 5-9 s in every run,
  with the slots all held by such peers). An unchoked peer lacking at most ``endgame`` of the
  pieces does not count against the slots.
- A slow peer: clients raise their request pipeline on a new connection at very different
  paces (libtorrent and qBittorrent ~1 MiB/s more each second, aria2 0.1-0.3), and the slow
  ones left the daemon's link part idle. An unchoked peer that was unchoked at least
  ``trial`` seconds ago and gets less than ``slow`` times the rate of the fastest unchoked
  peer does not count either, from then on while it stays unchoked (no flapping: a peer
  whose slot was handed on keeps being served; it is not choked for it).

For each of these libtorrent's choker (``set_max_uploads``) unchokes the next peer at its next
run (``seed.settings.UNCHOKE_INTERVAL``).
When such a peer completes or leaves (a seed drops its connection to the daemon), the count
falls by its own slot, so no peer is choked for it. While the swarm budget spends its reserve
(``count(..., grow=False)``) the count stays at the peers unchoked now: the reserve is for the
peers being finished, and a peer unchoked then (an aria2 or Transmission client, slow to ramp
up) took part of it (WAN lab, session 10).

The budget's last bytes go to the peer they are for. Once a swarm's first peers are in their
end game, the peer the daemon still serves behind them (the 4th finisher, in the lab) needs the
rest of the swarm budget: when the budget left (``left``, bytes) would be sent, at the
session's current upload rate to the unchoked peers, before the slowest of the unchoked peers
not in their end game (nor slow) got what it lacks at its own rate, no peer is unchoked anew
(as ``grow=False``), so no newly unchoked client (an aria2 or Transmission one, slow to ramp up)
takes part of those bytes. WAN lab, session 14: with the handoff, 5 MiB/s of the daemon's
23.8 went to newly unchoked aria2 and Transmission clients in the seconds before the budget
ran out, while the 4th finisher, at 88 % then, finished its last 12 % on the peers' uplinks
at ~1.7 MiB/s (18 s).

A slow first pick is picked again. libtorrent unchokes the first four peers that say
"interested", and its per-torrent ``max_uploads`` alone never chokes a peer already unchoked
(libtorrent 2.1), so such a peer kept its slot until it completed: often an aria2 client, quick
to ask and slow to ramp up (0.1-0.3 MiB/s more each second, qBittorrent and libtorrent ~1),
while a qBittorrent client waited on the peers (WAN lab: 6 of 10 runs of session 11, medians
66-80 s against 60-66 s with the qBittorrent and libtorrent clients picked). So, once per
swarm and within its first ``window`` seconds: when an unchoked peer, unchoked at least
``pick_trial`` seconds ago, gets less than ``pick_slow`` times the fastest unchoked peer's rate
while a peer lacking pieces waits choked, every interested peer may be unchoked for ``warm``
seconds (``most`` slots); then the count falls back and libtorrent's session-wide choker,
whose ``unchoke_slots_limit`` the daemon keeps at the torrents' counts summed
(`session_slots`), chokes the peers it uploaded to slowest. Good first picks change nothing:
session 11's warm-up for every swarm (6 s, every interested peer) fixed the bad picks and cost
~3 s of the median in the runs whose picks were good anyway.

The rule keeps a small record per torrent (when its swarm was first counted, when each peer
was first seen unchoked, the peers whose slot was handed on, and the pick again); `forget`
drops it. Pure: no I/O, no clock (``now`` is an argument, seconds on any monotonic origin).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["DEFAULT_ENDGAME", "DEFAULT_PICK_SLOW", "DEFAULT_PICK_TRIAL", "DEFAULT_SLOW",
           "DEFAULT_TRIAL", "DEFAULT_WINDOW", "OPTIMISTIC_SLOTS", "UploadSlots", "budget_short",
           "choked_address", "host_of", "session_slots"]

DEFAULT_ENDGAME = 0.05  # fraction of the pieces: an unchoked peer lacking at most this many
#                         is in its end game (the daemon's rate to it falls from ~8 to <1
#                         MiB/s over its last ~5 %: measured)
DEFAULT_TRIAL = 8.0  # s a newly unchoked peer has to ramp up before it can count as slow
DEFAULT_SLOW = 0.25  # an unchoked peer below this part of the fastest one's rate is slow
DEFAULT_PICK_TRIAL = 3.0  # s a first pick has to ramp up before it can be picked again
DEFAULT_PICK_SLOW = 1 / 3  # a first pick below this part of the fastest one's rate is slow
DEFAULT_WINDOW = 15.0  # s from a swarm's first count within which a slow pick is picked again
OPTIMISTIC_SLOTS = 1  # libtorrent's optimistic unchokes (num_optimistic_unchoke_slots), on top
#                       of the torrents' slots in its session-wide unchoke_slots_limit


@dataclass(slots=True)
class _Peers:
    start: float | None = None  # when the torrent was first counted with peers connected
    since: dict[str, float] = field(default_factory=dict)  # unchoked peer -> first seen so
    handed: set[str] = field(default_factory=set)  # unchoked peers whose slot was handed on
    reopened: float | None = None  # when every slot opened for a pick again (None: never)
    settled: bool = False  # the count fell back after it
    finishing: bool = False  # an unchoked peer was in its end game: the swarm's end began


class UploadSlots:
    """``slots``: unchoked peers at full speed (seed.settings.UPLOAD_SLOTS); ``endgame``:
    the fraction of the pieces (0 <= endgame < 1; 0: no end-game handoff) an unchoked peer
    may lack and not hold a slot; ``trial`` (s) and ``slow`` (0 <= slow < 1; 0: no slow
    handoff): see the module doc; ``most``: the most unchoked peers at once (>= slots,
    default twice the slots); ``warm`` (s, >= 0; 0: no pick again): how long ``most`` slots
    are open when a slow first pick is picked again; ``pick_trial`` (s), ``pick_slow``
    (0 <= pick_slow < 1) and ``window`` (s): when (module doc). Raises ValueError for bad
    values."""

    def __init__(self, slots: int, endgame: float = DEFAULT_ENDGAME, most: int | None = None,
                 *, trial: float = DEFAULT_TRIAL, slow: float = DEFAULT_SLOW, warm: float = 0.0,
                 pick_trial: float = DEFAULT_PICK_TRIAL, pick_slow: float = DEFAULT_PICK_SLOW,
                 window: float = DEFAULT_WINDOW):
        most = 2 * slots if most is None else most
        if (slots < 1 or not 0 <= endgame < 1 or most < slots or trial < 0 or not 0 <= slow < 1
                or warm < 0 or pick_trial < 0 or not 0 <= pick_slow < 1 or window < 0):
            raise ValueError("slots >= 1, 0 <= endgame < 1, most >= slots, trial >= 0, "
                             "0 <= slow < 1, warm >= 0, pick_trial >= 0, 0 <= pick_slow < 1, "
                             "window >= 0")
        self.warm = warm
        self.pick_trial = pick_trial
        self.pick_slow = pick_slow
        self.window = window
        self.slots = slots
        self.endgame = endgame
        self.most = most
        self.trial = trial
        self.slow = slow
        self._torrents: dict[str, _Peers] = {}

    def count(self, torrent: str, holdings: Mapping[str, int],
              unchoked: frozenset[str] | set[str], rates: Mapping[str, int], pieces: int,
              now: float, *, grow: bool = True, left: float | None = None,
              piece_length: int = 0) -> int:
        """The unchoke slots for ``torrent`` (any stable key), of ``pieces`` pieces, whose
        connected peers hold ``holdings`` (endpoint -> pieces held), ``unchoked`` being
        those the session unchokes now and ``rates`` the session's upload rate to each
        (bytes/s; a peer left out: 0). ``grow`` False: no peer is to be unchoked anew (the
        swarm budget's reserve goes to the peers served now): at most the live unchoked
        peers, at least one. ``left``: bytes the swarm budget has left (None: no budget),
        pieces being ``piece_length`` bytes: once the swarm's end began, no peer is
        unchoked anew while that would not last for the unchoked peers' needs (module
        doc)."""
        peers = self._torrents.setdefault(torrent, _Peers())
        live = {p for p in unchoked if p in holdings}
        peers.since = {p: peers.since.get(p, now) for p in live}
        peers.handed &= live
        if peers.start is None and holdings:
            peers.start = now
        if pieces <= 0:
            return self.slots if grow else max(1, min(self.slots, len(live)))
        if peers.reopened is None and self._slow_pick(peers, holdings, live, rates, pieces, now):
            peers.reopened = now
        if peers.reopened is not None and not peers.settled:
            if now < peers.reopened + self.warm:
                return self.most if grow else max(1, min(self.most, len(live)))
            # The count falls back: the choker keeps the fastest, whose trials start now.
            peers.settled = True
            peers.since = dict.fromkeys(live, now)
            peers.handed.clear()
        lack = max(1, int(self.endgame * pieces)) if self.endgame > 0 else 0
        ending = {p for p in live if pieces - lack <= holdings[p] < pieces}
        peers.finishing = peers.finishing or bool(ending)
        best = max((rates.get(p, 0) for p in live), default=0)
        if self.slow > 0 and best > 0:
            peers.handed.update(
                p for p in live - ending
                if now - peers.since[p] >= self.trial and rates.get(p, 0) < self.slow * best
                and holdings[p] < pieces
            )
        n = min(self.most, self.slots + len(ending | peers.handed))
        if grow and left is not None and peers.finishing:
            behind = live - ending - peers.handed
            grow = not budget_short(left, {p: (pieces - holdings[p]) * piece_length
                                           for p in behind}, {p: rates.get(p, 0) for p in live})
        return n if grow else max(1, min(n, len(live)))

    def _slow_pick(self, peers: _Peers, holdings: Mapping[str, int], live: set[str],
                   rates: Mapping[str, int], pieces: int, now: float) -> bool:
        """True when a first pick is to be picked again (module doc): within the window, an
        unchoked peer past its pick trial below ``pick_slow`` of the fastest unchoked peer's
        rate, and a peer lacking pieces choked."""
        if self.warm <= 0 or peers.start is None or now - peers.start > self.window:
            return False
        if not any(p not in live and n < pieces for p, n in holdings.items()):
            return False
        best = max((rates.get(p, 0) for p in live), default=0)
        return best > 0 and any(
            now - peers.since[p] >= self.pick_trial and holdings[p] < pieces
            and rates.get(p, 0) < self.pick_slow * best for p in live)

    def forget(self, torrent: str) -> None:
        """Drop the torrent's record (it left the session)."""
        self._torrents.pop(torrent, None)

    def __contains__(self, torrent: object) -> bool:
        return torrent in self._torrents


def budget_short(left: float, needs: Mapping[str, int], rates: Mapping[str, int]) -> bool:
    """True when ``left`` bytes, sent at the summed ``rates`` (unchoked peer -> bytes/s),
    are gone before some peer of ``needs`` (peer -> bytes it lacks) with a rate above 0
    got what it lacks at its own rate (no such peer, or no rate: False)."""
    total = sum(rates.values())
    need = max((n / rates[p] for p, n in needs.items() if n > 0 and rates.get(p, 0) > 0),
               default=0.0)
    return total > 0 and need > 0 and max(0.0, left) / total < need


def session_slots(counts: Iterable[int], floor: int) -> int:
    """libtorrent's session-wide ``unchoke_slots_limit`` for torrents whose unchoke counts are
    ``counts`` (one per torrent with peers): their sum, at least ``floor``, plus the
    optimistic unchoke (OPTIMISTIC_SLOTS). The session's choker, unlike a torrent's
    ``max_uploads``, chokes the peers beyond it that it uploads to slowest, so a torrent
    whose count falls (the warm-up's end) gives up its slowest peers' slots; with several
    torrents it is the sum, never fewer slots than libtorrent's default of 8 would give
    two torrents."""
    return max(floor, sum(counts)) + OPTIMISTIC_SLOTS


def host_of(endpoint: str) -> str:
    """The address of a peer endpoint ``"ip:port"`` (``"::1:6881"`` -> ``"::1"``)."""
    return endpoint.rsplit(":", 1)[0]


def choked_address(address: str, holdings: Mapping[str, int],
                   unchoked: frozenset[str] | set[str], slots: int) -> bool:
    """True when the client at ``address`` is one the session's choker passed over: it has
    BitTorrent connections to the session (``holdings``: endpoint -> pieces), the session
    unchokes none of them, and it unchokes ``slots`` peers or more (its slots are taken).
    The web seed is the same uplink: serving such a client at full speed would be a slot
    the choker did not give (measured: 0.4-0.8 copies of the daemon's went out of the web
    seed to clients outside its slots, most of it to those that finish last anyway)."""
    if len(unchoked) < slots:
        return False
    connected = False
    for endpoint in holdings:
        if host_of(endpoint) == address:
            if endpoint in unchoked:
                return False
            connected = True
    return connected
