"""One upload limit over the daemon's BitTorrent uploads and its web seed bodies together
(``[seeding] upload_rate_limit``).

libtorrent limits the session's peers (all of them in its global peer class:
`settings.peer_class_filter`); the web seed's bodies leave through the daemon's HTTP server,
which libtorrent never sees. `UploadShare` splits the one limit between the two so that they
never add up to more:

- The web seed has a share, ``web_rate`` bytes/s, and a token bucket at that rate, at most
  ``burst`` bytes deep. Before each body chunk a response asks `take` how long to wait.
- libtorrent gets the rest: `bt_limit` = limit - ``web_rate``. The caller sets it on the
  session whenever it changes (after `take` and after `tick`).
- The share follows the web seed's use (`tick`, every half second or so, with the bytes
  libtorrent sent meanwhile):

  - no web seed bytes and no response waiting: 0 (libtorrent has the whole limit);
  - the first web seed chunk after that: ``MIN_SHARE`` of the limit at once;
  - a response waited for tokens: the share doubles, up to the limit less libtorrent's
    ``MIN_SHARE``; up to half the limit only, while libtorrent too sends at (nearly) its
    whole share (both busy: they end up with half each);
  - otherwise: the web seed's use with half again as headroom, at least ``MIN_SHARE``.

Bound: at every moment ``bt_limit + web_rate == limit``, so over any ``t`` seconds the
daemon sends at most ``limit * t`` plus the bucket's ``burst`` plus one chunk taken on
credit (`take` debits first, then the caller waits), plus libtorrent's own rounding.

Pure: no I/O, no clock (``now`` is an argument, seconds on any monotonic origin).
"""

from __future__ import annotations

__all__ = ["DEFAULT_BURST", "MIN_SHARE", "UploadShare"]

DEFAULT_BURST = 256 * 1024  # bytes the web seed may send at once (one body chunk)
MIN_SHARE = 1 / 8  # of the limit: the web seed's least share while in use, and libtorrent's
BUSY = 0.8  # libtorrent sent at least this part of its share: it wants more


class UploadShare:
    """The split of ``limit`` bytes/s (0: no limit) between libtorrent and the web seed
    (see the module doc). Raises ValueError for a negative limit or a burst < 1."""

    def __init__(self, limit: int, *, burst: int = DEFAULT_BURST, now: float = 0.0) -> None:
        if limit < 0 or burst < 1:
            raise ValueError("limit >= 0 and burst >= 1 required")
        self.limit = limit
        self.burst = burst
        self.web_rate = 0.0
        self._tokens = float(burst)
        self._at = now  # the tokens' time
        self._ticked = now
        self._used = 0  # web seed bytes taken since the last tick
        self._waited = False  # a take since the last tick had to wait
        self._blocked_until = now  # a response sleeps on a take until then

    @property
    def bt_limit(self) -> int:
        """libtorrent's upload_rate_limit now (bytes/s; 0: none, as libtorrent reads 0)."""
        if self.limit == 0:
            return 0
        return max(1, int(self.limit - self.web_rate))

    def take(self, n: int, now: float) -> float:
        """The web seed is about to send ``n`` bytes: debit them; the seconds to wait first
        (0.0: send now). Always 0.0 without a limit."""
        if self.limit == 0 or n <= 0:
            return 0.0
        self._refill(now)
        if self.web_rate == 0:
            self.web_rate = self.limit * MIN_SHARE
        self._tokens -= n
        self._used += n
        if self._tokens >= 0:
            return 0.0
        wait = -self._tokens / self.web_rate
        self._waited = True
        self._blocked_until = max(self._blocked_until, now + wait)
        return wait

    def tick(self, now: float, bt_sent: int) -> None:
        """Re-split the limit: ``bt_sent`` is libtorrent's payload bytes since the last tick."""
        if self.limit == 0:
            return
        self._refill(now)
        dt = max(now - self._ticked, 1e-3)
        waited = self._waited or now < self._blocked_until
        floor = self.limit * MIN_SHARE
        if self._used == 0 and not waited:
            self.web_rate = 0.0
        elif waited:
            grown = min(self.limit - floor, max(2 * self.web_rate, floor))
            bt_busy = bt_sent >= BUSY * (self.limit - self.web_rate) * dt
            self.web_rate = min(grown, max(floor, self.limit / 2)) if bt_busy else grown
        else:
            self.web_rate = max(floor, min(self.web_rate, 1.5 * self._used / dt))
        self._ticked = now
        self._used = 0
        self._waited = False

    def _refill(self, now: float) -> None:
        if self.web_rate == 0:  # idle: the bucket is full again (the burst allowance)
            self._tokens, self._at = float(self.burst), now
        elif now > self._at:
            self._tokens = min(float(self.burst), self._tokens + self.web_rate * (now - self._at))
            self._at = now
