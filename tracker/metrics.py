"""Prometheus metrics of the tracker (``tracker_*``), in a registry the caller owns.

The daemon passes its own ``CollectorRegistry`` so that one ``/metrics`` shows both the
seeder and the tracker. Gauges of swarm and peer counts are read at scrape time from
callables (nothing on the request path); counters are pre-bound per label value so an
increment is one method call.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["TrackerMetrics"]

TRANSPORTS = ("http", "udp")
EVENTS = ("none", "completed", "started", "stopped")  # index = announce.EVENT_* (BEP 15 order)
_DURATION_BUCKETS = (
    0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25,
)  # fmt: skip


class TrackerMetrics:
    """The tracker's metrics, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.announces = Counter(
            "tracker_announces",
            "Announces served, by event and transport.",
            ["event", "transport"],
            registry=registry,
        )
        self.scrapes = Counter(
            "tracker_scrapes", "Scrapes served, by transport.", ["transport"], registry=registry
        )
        self.failures = Counter(
            "tracker_failures",
            "Requests refused (failure reason or BEP 15 error), by reason.",
            ["reason"],
            registry=registry,
        )
        self.swarms = Gauge("tracker_swarms", "Swarms tracked.", registry=registry)
        self.peers = Gauge("tracker_peers", "Peers tracked, by role.", ["role"], registry=registry)
        self.duration = Histogram(
            "tracker_request_duration_seconds",
            "Time to handle one request (parse to rendered reply), by transport.",
            ["transport"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        # Pre-bound children: labels() costs more than the increment itself.
        self._announce = {
            (t, e): self.announces.labels(event=name, transport=t)
            for t in TRANSPORTS
            for e, name in enumerate(EVENTS)
        }
        self._scrape = {t: self.scrapes.labels(transport=t) for t in TRANSPORTS}
        self._duration = {t: self.duration.labels(transport=t) for t in TRANSPORTS}
        self._failure: dict[str, Counter] = {}

    def watch(
        self,
        swarms: Callable[[], float],
        seeders: Callable[[], float],
        leechers: Callable[[], float],
    ) -> None:
        """Read the gauges from these callables at scrape time."""
        self.swarms.set_function(swarms)
        self.peers.labels(role="seeder").set_function(seeders)
        self.peers.labels(role="leecher").set_function(leechers)

    def announce(self, transport: str, event: int) -> None:
        self._announce[transport, event].inc()

    def scrape(self, transport: str) -> None:
        self._scrape[transport].inc()

    def failure(self, reason: str) -> None:
        child = self._failure.get(reason)
        if child is None:
            child = self._failure[reason] = self.failures.labels(reason=reason)
        child.inc()

    def observe(self, transport: str, seconds: float) -> None:
        self._duration[transport].observe(seconds)
