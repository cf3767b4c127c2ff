"""The session's torrents follow demand: `seeder.demand.Activation` applied to a `SeedSession`.

Demand comes in (`want`: a GetObjectTorrent, an announce, web seed traffic; `tick`: the
torrents with connected peers, and the sweep of idle ones), adds and removes go out to the
session. A torrent that leaves the session keeps its seed cache entry, so it comes back in
seed mode, without reading the origin, within a second of the next demand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from seeder.demand import Activation, Change
from seeder.seed.nocopy import LocalSource
from seeder.seed.session import SeedSession
from seeder.torrent.entry import Entry

__all__ = ["ActiveSet"]

log = logging.getLogger("seeder.seed.policy")


class ActiveSet:
    """One `Activation` over one `SeedSession`. Sync; called from the trio thread."""

    def __init__(self, session: SeedSession, activation: Activation, *,
                 clock: Callable[[], float], metrics: Any = None) -> None:
        self.session = session
        self.activation = activation
        self.clock = clock
        self.metrics = metrics
        # Whether this node may seed a torrent at all (a cluster: it is among the torrent's
        # replicas); None: every torrent. Demand for others is ignored, whatever its source.
        self.eligible: Callable[[Entry], bool] | None = None
        # Where a torrent can be seeded in place (a local bucket's file; seed/nocopy.py).
        self.source_of: Callable[[Entry], LocalSource | None] = lambda entry: None

    def __contains__(self, key: object) -> bool:
        return key in self.activation

    def want(self, entry: Entry, reason: str) -> bool:
        """Demand for ``entry`` now (``reason``: torrent, announce, webseed): in the session
        afterwards (True), unless not eligible here or the session cannot take it."""
        key = entry.seed_key
        if self.eligible is not None and not self.eligible(entry):
            return False
        change = self.activation.demand(key, self.clock())
        self._remove(change.remove, "cap")
        if key in self.activation and not self.session.has(key):
            # Newly active, or active but gone from the session meanwhile (its cache entry
            # was evicted, a test removed it): add it.
            if self.session.ensure_seeding(entry.torrent, self.source_of(entry)):
                self._count("activations", reason)
                log.info("%s/%s in demand (%s): seeding", entry.bucket, entry.key, reason)
            else:
                self.activation.forget(key)
        if change:
            self._gauge()
        return key in self.activation

    def touch(self, key: str) -> bool:
        """Demand for a torrent by key; True when it is active (then nothing else to do)."""
        if key not in self.activation:
            return False
        self.activation.demand(key, self.clock())
        return True

    def tick(self, now: float) -> Change:
        """Torrents with connected peers stay; idle (or no longer eligible) ones leave."""
        self.session.recheck_sources()  # files changed in place leave first
        self.activation.keep(self.session.peered(), now)
        change = self.activation.sweep(now)
        if change:
            self._remove(change.remove, "idle")
            self._gauge()
        return change

    def adopt(self) -> int:
        """Take the session's torrents as demanded now (resumed at startup: they were active
        when the daemon stopped); beyond the cap the extra ones leave. The count kept."""
        now = self.clock()
        for key in self.session.torrents():
            self._remove(self.activation.demand(key, now).remove, "cap")
        self._gauge()
        return len(self.activation)

    def forget(self, key: str) -> None:
        """The torrent left the catalog (the caller removes it from the session)."""
        if self.activation.forget(key):
            self._gauge()

    def _remove(self, keys: tuple[str, ...], reason: str) -> None:
        for key in keys:
            if self.session.remove(key):
                self._count("deactivations", reason)
                log.debug("%s: left the session (%s)", key, reason)

    def _count(self, what: str, reason: str) -> None:
        if self.metrics is not None:
            counter = (self.metrics.torrent_activations_total if what == "activations"
                       else self.metrics.torrent_deactivations_total)
            counter.labels(reason=reason).inc()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.active_torrents.set(len(self.activation))
