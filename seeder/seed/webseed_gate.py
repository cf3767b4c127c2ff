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
- A response cut short (aria2 asks ``bytes=X-<end>`` and hangs up early) gives back the
  claims on the pieces it never started sending (`finished`).

libtorrent 2.1 (measured here): after one non-2xx answer from a web seed it marks the file
as missing from that server and never asks it again for that torrent in the session; the
Retry-After is not honoured. So for libtorrent, `Busy` means "from now on, the swarm only".
That is safe because the gate refuses only while the daemon's session is a complete seeder
that the client can always fall back to. Clients that do retry (BEP 19's intent) come back
after ``retry_after`` seconds and find the claims expired or still fresh.

Pure: no I/O, no clock; time is the ``now`` argument (seconds, any monotonic origin).
Memory: one small tuple per claimed piece, for at most ``max_torrents`` torrents (least
recently used dropped first); `clean` drops expired claims.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = [
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


@dataclass(frozen=True, slots=True)
class Grant:
    """Serve the request. Give it back to `WebSeedGate.finished` once the body is done."""

    torrent: str
    client: str
    start: int
    length: int
    piece_length: int
    at: float  # when the claims were made (they are released only if still this grant's)


@dataclass(frozen=True, slots=True)
class Busy:
    """Refuse the request: 503 with ``Retry-After: retry_after``."""

    retry_after: int
    holder: str  # the address holding the first conflicting claim (for logs)
    piece: int  # that piece


@dataclass(slots=True)
class _Torrent:
    claims: dict[int, tuple[str, float]]  # piece -> (client, claimed at)
    used: float  # last admit


class WebSeedGate:
    """Per-piece claims of web seed traffic, by client address (see the module doc)."""

    def __init__(
        self,
        *,
        claim_ttl: float = DEFAULT_CLAIM_TTL,
        retry_after: int = DEFAULT_RETRY_AFTER,
        max_torrents: int = DEFAULT_MAX_TORRENTS,
    ) -> None:
        if claim_ttl <= 0 or retry_after < 0 or max_torrents < 1:
            raise ValueError("claim_ttl > 0, retry_after >= 0 and max_torrents >= 1 required")
        self.claim_ttl = claim_ttl
        self.retry_after = retry_after
        self.max_torrents = max_torrents
        self._torrents: OrderedDict[str, _Torrent] = OrderedDict()

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

        Returns a `Grant` (the pieces the range touches are now claimed by ``client``) or,
        only when ``swarm_ready``, a `Busy` if another address holds a fresh claim on one
        of them (nothing is claimed then). An empty range is always granted and claims
        nothing. Raises ValueError for a piece length < 1 or a negative start/length.
        """
        if piece_length < 1 or start < 0 or length < 0:
            raise ValueError("piece_length >= 1, start >= 0 and length >= 0 required")
        if length == 0:
            return Grant(torrent, client, start, 0, piece_length, now)
        state = self._torrents.get(torrent)
        if state is None:
            state = self._torrents[torrent] = _Torrent({}, now)
            while len(self._torrents) > self.max_torrents:
                self._torrents.popitem(last=False)
        else:
            self._torrents.move_to_end(torrent)
            state.used = now
        pieces = range(start // piece_length, (start + length - 1) // piece_length + 1)
        claims = state.claims
        if swarm_ready:
            fresh_after = now - self.claim_ttl
            for piece in pieces:
                held = claims.get(piece)
                if held is not None and held[0] != client and held[1] > fresh_after:
                    return Busy(self.retry_after, held[0], piece)
        mine = (client, now)
        for piece in pieces:
            claims[piece] = mine
        return Grant(torrent, client, start, length, piece_length, now)

    def finished(self, grant: Grant, sent: int) -> int:
        """The granted response ended after ``sent`` body bytes: release the claims on the
        pieces it never started sending, if they are still this grant's. The count."""
        state = self._torrents.get(grant.torrent)
        if state is None or sent >= grant.length:
            return 0
        plen = grant.piece_length
        first_unsent = -(-(grant.start + max(sent, 0)) // plen)  # ceil: a started piece stays
        last = (grant.start + grant.length - 1) // plen
        mine = (grant.client, grant.at)
        released = 0
        for piece in range(first_unsent, last + 1):
            if state.claims.get(piece) == mine:
                del state.claims[piece]
                released += 1
        return released

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
            stale = [p for p, (_, at) in state.claims.items() if at <= fresh_after]
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
        return {p: c for p, (c, at) in state.claims.items() if at > fresh_after}

    def __len__(self) -> int:
        """Torrents with remembered claims."""
        return len(self._torrents)
