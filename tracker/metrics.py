"""Prometheus metrics of the tracker (``tracker_*``), in a registry the caller owns.

The daemon passes its own ``CollectorRegistry`` so that one ``/metrics`` shows both the
seeder and the tracker. Gauges of swarm and peer counts are read at scrape time from
callables. The announce and scrape counters and the duration histogram are plain ints on the
request path (an increment, a ``bisect``), turned into metric families when the registry
is collected: a prometheus_client Counter.inc or Histogram.observe costs 0.5-2 us, as
much as a third of an announce. The families, names, labels and ``_created`` samples are
those the prometheus_client types would give.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.utils import floatToGoString

__all__ = ["TrackerMetrics"]

TRANSPORTS = ("http", "udp")
EVENTS = ("none", "completed", "started", "stopped")  # index = announce.EVENT_* (BEP 15 order)
_DURATION_BUCKETS = (
    0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25,
)  # fmt: skip
_DURATION = "tracker_request_duration_seconds"


class TrackerMetrics:
    """The tracker's metrics, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        created = time.time()
        self._created = created
        self._announces = {(t, e): 0 for t in TRANSPORTS for e in range(len(EVENTS))}
        self._scrapes = dict.fromkeys(TRANSPORTS, 0)
        # per transport: observations per bucket (the last one: above every bound), sum
        self._bucket_counts = {t: [0] * (len(_DURATION_BUCKETS) + 1) for t in TRANSPORTS}
        self._duration_sums = dict.fromkeys(TRANSPORTS, 0.0)
        registry.register(_Collector(self))
        # Refusals are rare: a plain Counter (its children made on first use).
        self.failures = Counter(
            "tracker_failures",
            "Requests refused (failure reason or BEP 15 error), by reason.",
            ["reason"],
            registry=registry,
        )
        self._failure: dict[str, Counter] = {}
        self.swarms = Gauge("tracker_swarms", "Swarms tracked.", registry=registry)
        self.peers = Gauge("tracker_peers", "Peers tracked, by role.", ["role"], registry=registry)

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
        self._announces[transport, event] += 1

    def scrape(self, transport: str) -> None:
        self._scrapes[transport] += 1

    def failure(self, reason: str) -> None:
        child = self._failure.get(reason)
        if child is None:
            child = self._failure[reason] = self.failures.labels(reason=reason)
        child.inc()

    def observe(self, transport: str, seconds: float) -> None:
        self._bucket_counts[transport][bisect.bisect_left(_DURATION_BUCKETS, seconds)] += 1
        self._duration_sums[transport] += seconds

    def families(self) -> Iterator[Metric]:
        """The request counters and the histogram as metric families (what the registry
        collects)."""
        created = self._created
        announces = CounterMetricFamily(
            "tracker_announces", "Announces served, by event and transport.",
            labels=["event", "transport"])  # fmt: skip
        for (t, e), n in self._announces.items():
            announces.add_metric([EVENTS[e], t], n, created=created)
        yield announces
        scrapes = CounterMetricFamily(
            "tracker_scrapes", "Scrapes served, by transport.", labels=["transport"])
        for t, n in self._scrapes.items():
            scrapes.add_metric([t], n, created=created)
        yield scrapes
        duration = Metric(
            _DURATION, "Time to handle one request (parse to rendered reply), by transport.",
            "histogram")  # fmt: skip
        for t in TRANSPORTS:
            total = 0
            for bound, n in zip((*_DURATION_BUCKETS, float("inf")), self._bucket_counts[t],
                                strict=True):  # fmt: skip
                total += n
                duration.add_sample(_DURATION + "_bucket",
                                    {"transport": t, "le": floatToGoString(bound)}, total)
            duration.add_sample(_DURATION + "_count", {"transport": t}, total)
            duration.add_sample(_DURATION + "_sum", {"transport": t}, self._duration_sums[t])
            duration.add_sample(_DURATION + "_created", {"transport": t}, created)
        yield duration


class _Collector:
    """What the registry calls at scrape time."""

    def __init__(self, metrics: TrackerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.families()
