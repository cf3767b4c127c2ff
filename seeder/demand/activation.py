"""Which torrents are active (in the libtorrent session): the ones in demand, at most a cap.

Pure: keys are opaque strings (the seed keys), time is an argument, nothing is done here;
every call returns a `Change` (keys to add to the session, keys to remove) for the caller to
apply.

- A torrent is *in demand* while its last demand is younger than ``idle_after`` seconds. A
  demand is an announce into its swarm by anyone but this daemon's own seed, a
  GetObjectTorrent, web seed traffic, or peers connected to the session's copy (the shell
  reports those with `keep`). The tracker forgets a peer after its peer timeout; the same
  window is the natural ``idle_after``.
- It is *eligible* unless ``eligible(key)`` says otherwise: in a cluster, this node is among
  the torrent's replicas. A torrent is active only if eligible and in demand.
- At most ``cap`` torrents are active. Demand for one more evicts the least recently
  demanded (never the one just demanded).
- `sweep(now)` removes the idle ones and those no longer eligible (call it every few
  seconds, and after the cluster's membership changed).

The shell tells the policy when an add failed (`forget`), so the key is not believed active.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["Activation", "Change"]


@dataclass(frozen=True, slots=True)
class Change:
    """What the session should do now: ``add`` these keys, ``remove`` those."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.add or self.remove)


NO_CHANGE = Change()


class Activation:
    """The active set, ordered by last demand (least recent first)."""

    def __init__(self, cap: int, idle_after: float,
                 eligible: Callable[[str], bool] | None = None) -> None:
        """``cap`` >= 1 torrents at most; ``idle_after`` > 0 seconds without demand makes a
        torrent idle. ValueError otherwise."""
        if cap < 1:
            raise ValueError(f"cap must be at least 1, not {cap}")
        if not idle_after > 0:
            raise ValueError(f"idle_after must be positive, not {idle_after}")
        self.cap = cap
        self.idle_after = float(idle_after)
        self.eligible = eligible
        self._last: OrderedDict[str, float] = OrderedDict()  # active key -> last demand

    def __contains__(self, key: object) -> bool:
        return key in self._last

    def __len__(self) -> int:
        return len(self._last)

    def active(self) -> list[str]:
        """The active keys, least recently demanded first."""
        return list(self._last)

    def demand(self, key: str, now: float) -> Change:
        """A demand for ``key`` at ``now``: add it (evicting the least recently demanded
        beyond the cap) unless it is active already or not eligible."""
        if key in self._last:
            self._touch(key, now)
            return NO_CHANGE
        if self.eligible is not None and not self.eligible(key):
            return NO_CHANGE
        evicted = []
        while len(self._last) >= self.cap:  # bounded: each pass removes one
            old, _ = self._last.popitem(last=False)
            evicted.append(old)
        self._last[key] = now
        return Change(add=(key,), remove=tuple(evicted))

    def keep(self, keys: Iterable[str], now: float) -> None:
        """Demand at ``now`` for those of ``keys`` that are active (the session's torrents
        with connected peers); others are ignored (no add from here)."""
        for key in keys:
            if key in self._last:
                self._touch(key, now)

    def sweep(self, now: float) -> Change:
        """Remove the torrents idle for ``idle_after`` and those no longer eligible."""
        gone = []
        while self._last:  # bounded: each pass removes one or stops
            key, last = next(iter(self._last.items()))
            if now - last < self.idle_after:
                break
            del self._last[key]
            gone.append(key)
        if self.eligible is not None:
            for key in [k for k in self._last if not self.eligible(k)]:
                del self._last[key]
                gone.append(key)
        return Change(remove=tuple(gone)) if gone else NO_CHANGE

    def forget(self, key: str) -> bool:
        """``key`` is not active (its add failed, or its torrent left the catalog)."""
        return self._last.pop(key, None) is not None

    def _touch(self, key: str, now: float) -> None:
        # Demand times only grow: an out-of-order report must not make a torrent look older.
        if now > self._last[key]:
            self._last[key] = now
        self._last.move_to_end(key)
