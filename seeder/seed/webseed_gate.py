"""The web seed yields to the swarm: per web seed request, serve it or answer "busy".

Measured (docs FIELD-NOTES): BitTorrent clients keep streaming from a BEP 19 web seed for the
whole download even when a full seeder is present, so with the daemon as the web seed
(``webseed = "proxy"``) eight clients pulled four to six copies of an object through it. The
gate makes each *piece* flow from the web seed to one client per claim window:

- A served request *claims* every piece its byte range touches, for the client's address,
  at ``now``. The claiming client may come back for the same pieces (libtorrent asks for
  single 16 KiB blocks as well as 1-16 MiB ranges): its own claims never stop it, and each
  request refreshes them.
- A request touching a piece that another address claimed less than ``claim_ttl`` seconds
  ago is refused (`Busy`: 503 + Retry-After) -- but only while the swarm can supply the
  piece instead: ``swarm_ready``, i.e. the daemon's libtorrent session holds the whole
  torrent and has peers connected. Otherwise every request is served (no session, seeding
  disabled, torrent not in the session, still downloading).
- Claims expire (liveness): after ``claim_ttl`` a piece the swarm failed to spread is
  served again, to whoever asks first.
- A granted response claims only the pieces of its next ``claim_ahead`` bytes, and moves
  that window on as its body goes out (`progress`, with the bytes handed to the socket so
  far): aria2 asks ``bytes=X-<end>`` and hangs up early, and a claim on the whole rest of
  the file kept everyone else off it. A piece ahead that another address claimed meanwhile
  stops the response there (`progress` says False) while the swarm is ready.
- A response cut short gives back the claims on the pieces it never started sending
  (`finished`).
- `in_flight`: the pieces live responses have started sending (bytes sent, not bytes
  promised): only those count as held by the swarm.

libtorrent 2.1 (measured here): after one non-2xx answer from a web seed it marks the file
as missing from that server and never asks it again for that torrent in the session; the
Retry-After is not honoured. So for libtorrent, `Busy` means "from now on, the swarm only".
That is safe because the gate refuses only while the daemon's session is a complete seeder
that the client can always fall back to. Clients that do retry (BEP 19's intent) come back
after ``retry_after`` seconds and find the claims expired or still fresh.

Pure: no I/O, no clock; time is the ``now`` argument (seconds, any monotonic origin).
Memory: one small tuple per claimed piece, for at most ``max_torrents`` torrents (least
recently used dropped first), and one record per live response (until `finished`); `clean`
drops expired claims.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = [
    "DEFAULT_CLAIM_AHEAD",
    "DEFAULT_CLAIM_TTL",
    "DEFAULT_MAX_TORRENTS",
    "DEFAULT_RETRY_AFTER",
    "Busy",
    "Grant",
    "WebSeedGate",
]

DEFAULT_CLAIM_TTL = 30.0  # s: long enough for a piece to spread through a swarm, short
#                           enough that a stuck swarm gets it again soon
DEFAULT_RETRY_AFTER = 30  # s, the Retry-After of a busy answer
DEFAULT_MAX_TORRENTS = 10_000  # torrents whose claims are remembered at once
DEFAULT_CLAIM_AHEAD = 16 * 1024 * 1024  # bytes a response claims ahead of what it sent:
#                                         libtorrent's largest web seed request


SENT = 0  # the grant serial of a claim on a piece whose bytes have (partly) left: kept


@dataclass(frozen=True, slots=True)
class Grant:
    """Serve the request. Report its body to `WebSeedGate.progress` as it goes out and give
    it back to `WebSeedGate.finished` once the body is done."""

    torrent: str
    client: str
    start: int
    length: int
    piece_length: int
    serial: int  # this grant's number in its gate (claims are released only if still its)


@dataclass(frozen=True, slots=True)
class Busy:
    """Refuse the request: 503 with ``Retry-After: retry_after``."""

    retry_after: int
    holder: str  # the address holding the first conflicting claim (for logs)
    piece: int  # that piece


@dataclass(slots=True)
class _Torrent:
    claims: dict[int, tuple[str, float, int]]  # piece -> (client, claimed at, grant serial
    #                                             or SENT)
    used: float  # last admit


@dataclass(slots=True)
class _Flow:
    grant: Grant
    sent: int = 0  # body bytes handed to the socket, as last reported
    stop_at: int | None = None  # where another address's claim ends this response


class WebSeedGate:
    """Per-piece claims of web seed traffic, by client address (see the module doc)."""

    def __init__(
        self,
        *,
        claim_ttl: float = DEFAULT_CLAIM_TTL,
        retry_after: int = DEFAULT_RETRY_AFTER,
        max_torrents: int = DEFAULT_MAX_TORRENTS,
        claim_ahead: int = DEFAULT_CLAIM_AHEAD,
    ) -> None:
        if claim_ttl <= 0 or retry_after < 0 or max_torrents < 1 or claim_ahead < 1:
            raise ValueError(
                "claim_ttl > 0, retry_after >= 0, max_torrents >= 1 and claim_ahead >= 1 required"
            )
        self.claim_ttl = claim_ttl
        self.retry_after = retry_after
        self.max_torrents = max_torrents
        self.claim_ahead = claim_ahead
        self._torrents: OrderedDict[str, _Torrent] = OrderedDict()
        self._flows: dict[int, _Flow] = {}  # serial -> live response
        self._serial = 0

    def admit(
        self,
        torrent: str,
        piece_length: int,
        start: int,
        length: int,
        client: str,
        now: float,
        *,
        swarm_ready: bool,
    ) -> Grant | Busy:
        """Decide one web seed request for bytes ``[start, start+length)`` of ``torrent``
        (any stable key; the info-hash hex) from address ``client``.

        Returns a `Grant` (the pieces of the range's first ``claim_ahead`` bytes are now
        claimed by ``client``; the grant is live until `finished`) or, only when
        ``swarm_ready``, a `Busy` if another address holds a fresh claim on one of them
        (nothing is claimed then). An empty range is always granted and claims nothing.
        Raises ValueError for a piece length < 1 or a negative start/length.
        """
        if piece_length < 1 or start < 0 or length < 0:
            raise ValueError("piece_length >= 1, start >= 0 and length >= 0 required")
        self._serial += 1
        grant = Grant(torrent, client, start, length, piece_length, self._serial)
        if length == 0:
            return grant
        state = self._state(torrent, now)
        end = start + min(length, self.claim_ahead)
        pieces = range(start // piece_length, (end - 1) // piece_length + 1)
        if swarm_ready:
            held = self._conflict(state, pieces, client, now)
            if held is not None:
                return Busy(self.retry_after, *held)
        _take(state, pieces, client, now, grant.serial)
        self._flows[grant.serial] = _Flow(grant)
        return grant

    def progress(self, grant: Grant, sent: int, now: float, *, swarm_ready: bool) -> bool:
        """``sent`` body bytes of ``grant`` have been handed to the socket: its claims move on
        to cover the pieces from the one being sent to ``claim_ahead`` bytes ahead (claimed
        or refreshed). While the swarm is ready, the window stops short of a piece another
        address holds a fresh claim on, and the response ends there: False once ``sent``
        reaches it."""
        flow = self._flows.get(grant.serial)
        if flow is None or grant.length == 0:
            return True
        plen = grant.piece_length
        before, flow.sent = flow.sent, max(flow.sent, min(sent, grant.length))
        state = self._state(grant.torrent, now)
        if flow.sent > before:  # these pieces left (partly): no hang-up releases them now
            done = range((grant.start + before) // plen, (grant.start + flow.sent - 1) // plen + 1)
            _take(state, done, grant.client, now, SENT)
        end = grant.start + min(grant.length, flow.sent + self.claim_ahead)
        if flow.stop_at is not None:
            end = min(end, flow.stop_at)
        window = range((grant.start + min(flow.sent, grant.length - 1)) // plen,
                       (end - 1) // plen + 1)
        if swarm_ready:
            held = self._conflict(state, window, grant.client, now)
            if held is not None:
                flow.stop_at = held[1] * plen
                window = range(window.start, held[1])
        _take(state, window, grant.client, now, grant.serial)
        return flow.stop_at is None or grant.start + flow.sent < flow.stop_at

    def finished(self, grant: Grant, sent: int) -> int:
        """The granted response ended after ``sent`` body bytes: it is no longer live, and
        the claims on the pieces it never started sending are released, if they are still
        this grant's. The count released."""
        self._flows.pop(grant.serial, None)
        state = self._torrents.get(grant.torrent)
        if state is None or sent >= grant.length:
            return 0
        plen = grant.piece_length
        first_unsent = -(-(grant.start + max(sent, 0)) // plen)  # ceil: a started piece stays
        last = (grant.start + grant.length - 1) // plen
        released = 0
        for piece in range(first_unsent, last + 1):
            held = state.claims.get(piece)
            if held is not None and held[2] == grant.serial:
                del state.claims[piece]
                released += 1
        return released

    def in_flight(self, torrent: str) -> set[int]:
        """The pieces of ``torrent`` that live responses have started sending (by the bytes
        reported to `progress`; a granted range not yet sent counts nothing)."""
        pieces: set[int] = set()
        for flow in self._flows.values():
            g = flow.grant
            if g.torrent == torrent and flow.sent > 0:
                plen = g.piece_length
                pieces.update(range(g.start // plen, (g.start + flow.sent - 1) // plen + 1))
        return pieces

    def live(self) -> int:
        """Granted responses not yet `finished`."""
        return len(self._flows)

    def forget(self, torrent: str) -> None:
        """Drop every claim on ``torrent`` (retired, or left the session)."""
        self._torrents.pop(torrent, None)

    def clean(self, now: float) -> int:
        """Drop claims older than ``claim_ttl``, and torrents left without any; the number
        of claims dropped."""
        fresh_after = now - self.claim_ttl
        dropped = 0
        for key in list(self._torrents):
            state = self._torrents[key]
            stale = [p for p, held in state.claims.items() if held[1] <= fresh_after]
            for piece in stale:
                del state.claims[piece]
            dropped += len(stale)
            if not state.claims:
                del self._torrents[key]
        return dropped

    def claims(self, torrent: str, now: float) -> dict[int, str]:
        """The fresh claims on ``torrent``: piece -> client address (for tests and logs)."""
        state = self._torrents.get(torrent)
        if state is None:
            return {}
        fresh_after = now - self.claim_ttl
        return {p: held[0] for p, held in state.claims.items() if held[1] > fresh_after}

    def __len__(self) -> int:
        """Torrents with remembered claims."""
        return len(self._torrents)

    def _state(self, torrent: str, now: float) -> _Torrent:
        state = self._torrents.get(torrent)
        if state is None:
            state = self._torrents[torrent] = _Torrent({}, now)
            while len(self._torrents) > self.max_torrents:
                self._torrents.popitem(last=False)
        else:
            self._torrents.move_to_end(torrent)
            state.used = now
        return state

    def _conflict(
        self, state: _Torrent, pieces: range, client: str, now: float
    ) -> tuple[str, int] | None:
        """(holder, piece) of the first fresh claim by another address on ``pieces``."""
        fresh_after = now - self.claim_ttl
        for piece in pieces:
            held = state.claims.get(piece)
            if held is not None and held[0] != client and held[1] > fresh_after:
                return held[0], piece
        return None


def _take(state: _Torrent, pieces: range, client: str, now: float, serial: int) -> None:
    """Claim ``pieces`` for ``client`` by grant ``serial`` at ``now``; a piece this client
    has already been sent bytes of stays SENT (refreshed)."""
    claims = state.claims
    for piece in pieces:
        held = claims.get(piece)
        keep = held is not None and held[2] == SENT and held[0] == client
        claims[piece] = (client, now, SENT if keep else serial)
