"""Every ``seeder_*`` Prometheus metric, defined in one place, and the ``/metrics`` server.

Names follow the Prometheus conventions: ``seeder_`` prefix, base units (bytes,
seconds) as the last word before ``_total``, counters end in ``_total``. Label values
come from bounded sets only (configured bucket names, S3 operation names, HTTP status
codes, short error kinds), never from keys or clients.

Each attribute of :class:`SeederMetrics` is named like its metric without the
``seeder_`` prefix (``m.api_requests_total`` is ``seeder_api_requests_total``). The
standard ``process_*`` metrics are registered too (don't add another ProcessCollector).
"""

from __future__ import annotations

import gzip
import threading
from collections import OrderedDict
from typing import NoReturn

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector
from prometheus_client.exposition import choose_encoder

from httpshell import Handler, Request, Response, serve_http
from seeder import __version__

__all__ = ["ObjectBytes", "SeederMetrics", "accepts_gzip", "counter_delta",
           "make_metrics_handler", "serve_metrics"]

# Request latency: a cached torrent is milliseconds; a ?torrent that waits for a
# generation may take minutes.
_REQUEST_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
# Generation: a small object hashes in milliseconds, 5 GiB from a slow origin in tens of
# minutes; the top bucket is an hour.
_GENERATION_BUCKETS = (
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
)  # fmt: skip


def counter_delta(last: int, now: int) -> int:
    """How much a monotonic total grew from ``last`` to ``now``. A total that went down
    was reset (a new libtorrent session): everything in ``now`` is new."""
    return now - last if now >= last else now


class ObjectBytes:
    """Per-object byte tallies for the status page, never exported to Prometheus (an
    object key is not a bounded label value): bytes read from the origin and bytes served
    by this daemon's web seed, by (bucket, key). At most ``max_objects`` objects are kept;
    the least recently counted one is forgotten first. Thread-safe (hashing threads count)."""

    def __init__(self, max_objects: int = 65536) -> None:
        self.max_objects = max_objects
        self._counts: OrderedDict[tuple[str, str], list[int]] = OrderedDict()
        self._lock = threading.Lock()

    def _add(self, bucket: str, key: str, index: int, n: int) -> None:
        with self._lock:
            counts = self._counts.get((bucket, key))
            if counts is None:
                counts = self._counts[(bucket, key)] = [0, 0]
                if len(self._counts) > self.max_objects:
                    self._counts.popitem(last=False)
            else:
                self._counts.move_to_end((bucket, key))
            counts[index] += n

    def add_origin(self, bucket: str, key: str, n: int) -> None:
        self._add(bucket, key, 0, n)

    def add_served(self, bucket: str, key: str, n: int) -> None:
        self._add(bucket, key, 1, n)

    def get(self, bucket: str, key: str) -> tuple[int, int]:
        """(origin bytes, web seed bytes served) since start; (0, 0) when never counted."""
        with self._lock:
            counts = self._counts.get((bucket, key))
            return (0, 0) if counts is None else (counts[0], counts[1])


class SeederMetrics:
    """The daemon's metrics, registered on ``registry`` (pass a fresh
    ``CollectorRegistry`` per daemon, and per test). Instantiate once per registry:
    registering the same names twice raises ValueError."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

        self.build_info = Info("seeder_build", "Version of the seeder daemon.", registry=registry)
        self.build_info.info({"version": __version__})

        # S3 API (GetObjectTorrent, GetObject via the web seed proxy).
        self.api_requests_total = Counter(
            "seeder_api_requests_total",
            "S3 API requests answered, by operation (GetObjectTorrent, GetObject, ...) "
            "and HTTP status code.",
            ["operation", "code"],
            registry=registry,
        )
        self.api_request_duration_seconds = Histogram(
            "seeder_api_request_duration_seconds",
            "Time from request parsed to response headers ready, by operation.",
            ["operation"],
            buckets=_REQUEST_BUCKETS,
            registry=registry,
        )

        # Torrent generation.
        self.generations_total = Counter(
            "seeder_generations_total",
            "Torrent generations finished, by result (ok, error, cancelled, ...).",
            ["result"],
            registry=registry,
        )
        self.generation_duration_seconds = Histogram(
            "seeder_generation_duration_seconds",
            "Wall time of successful torrent generations (reading and hashing the object).",
            buckets=_GENERATION_BUCKETS,
            registry=registry,
        )
        self.hashed_bytes_total = Counter(
            "seeder_hashed_bytes_total",
            "Object bytes hashed for torrent generation.",
            registry=registry,
        )
        self.generation_queue_depth = Gauge(
            "seeder_generation_queue_depth",
            "Generation jobs waiting for a free generation slot.",
            registry=registry,
        )
        self.catalog_torrents = Gauge(
            "seeder_catalog_torrents",
            "Torrents stored in the catalog.",
            registry=registry,
        )

        # S3 event notifications (POST /-/events).
        self.events_total = Counter(
            "seeder_events_total",
            "Object events and SNS messages received, by result: accepted (queued), "
            "ignored (unknown bucket, not newer than the key's last sequencer, other event "
            "types, test events), refused (401/403/400/413/405), busy (503, queue full).",
            ["result"],
            registry=registry,
        )
        self.events_queued = Gauge(
            "seeder_events_queued",
            "Object keys waiting for an event worker.",
            registry=registry,
        )

        # Object store backends.
        self.backend_errors_total = Counter(
            "seeder_backend_errors_total",
            "Failed object store requests, by bucket and kind (unavailable, denied, "
            "changed, not_found, ...).",
            ["bucket", "kind"],
            registry=registry,
        )
        self.backend_circuit_state = Gauge(
            "seeder_backend_circuit_state",
            "Circuit breaker of each bucket's backend: 0 closed, 1 half-open (probing), "
            "2 open (failing fast).",
            ["bucket"],
            registry=registry,
        )
        self.backend_circuit_changes_total = Counter(
            "seeder_backend_circuit_changes_total",
            "Circuit breaker transitions, by bucket and the state entered.",
            ["bucket", "state"],
            registry=registry,
        )
        self.stale_answers_total = Counter(
            "seeder_stale_answers_total",
            "GetObjectTorrent answers served from the catalog unchecked because the "
            "backend could not be asked (x-amz-meta-s3torrent-stale: true).",
            ["bucket"],
            registry=registry,
        )
        self.backend_read_bytes_total = Counter(
            "seeder_backend_read_bytes_total",
            "Object bytes read from the object store (S3 or local), by bucket.",
            ["bucket"],
            registry=registry,
        )

        # Web seed (BEP 19) served by the daemon itself (webseed = "proxy").
        self.webseed_served_bytes_total = Counter(
            "seeder_webseed_served_bytes_total",
            "Body bytes sent to BitTorrent clients through the web seed endpoint, by bucket.",
            ["bucket"],
            registry=registry,
        )

        # libtorrent session.
        self.session_uploaded_bytes_total = Counter(
            "seeder_session_uploaded_bytes_total",
            "Bytes uploaded to peers by the libtorrent session.",
            registry=registry,
        )
        self.session_downloaded_bytes_total = Counter(
            "seeder_session_downloaded_bytes_total",
            "Bytes downloaded from peers and web seeds by the libtorrent session.",
            registry=registry,
        )
        self.peers_connected = Gauge(
            "seeder_peers_connected",
            "Peers connected to the libtorrent session.",
            registry=registry,
        )
        self.torrents_seeding = Gauge(
            "seeder_torrents_seeding",
            "Torrents the libtorrent session is seeding.",
            registry=registry,
        )

        # Seeding on demand (seeder/seed/active.py): the session holds the torrents in demand,
        # at most [seeding] max_active_torrents; compare with seeder_catalog_torrents.
        self.active_torrents = Gauge(
            "seeder_active_torrents",
            "Catalog torrents active in the libtorrent session (in demand).",
            registry=registry,
        )
        self.torrent_activations_total = Counter(
            "seeder_torrent_activations_total",
            "Torrents added to the session on demand, by reason (torrent, announce, webseed).",
            ["reason"],
            registry=registry,
        )
        self.torrent_deactivations_total = Counter(
            "seeder_torrent_deactivations_total",
            "Torrents that left the session, by reason (idle, cap).",
            ["reason"],
            registry=registry,
        )

        # Seed cache (object bytes on local disk for libtorrent).
        self.seed_cache_bytes = Gauge(
            "seeder_seed_cache_bytes",
            "Bytes held in the on-disk seed cache.",
            registry=registry,
        )
        self.seed_cache_evictions_total = Counter(
            "seeder_seed_cache_evictions_total",
            "Objects evicted from the seed cache to stay within its budget.",
            registry=registry,
        )

        # process_* (RSS, CPU, open fds against max fds: a seeder with hundreds of peer
        # connections can run out of descriptors). Reads /proc/self and /proc/stat.
        self.process = ProcessCollector(registry=registry)

        self._session_last = (0, 0)
        # Per object, for the status page (not exported: keys are unbounded label values).
        self.objects = ObjectBytes()

    def breaker_changed(self, bucket: str, old: object, new: object) -> None:
        """A bucket's circuit breaker moved to ``new`` (a seeder.store.breaker.State)."""
        self.backend_circuit_state.labels(bucket=bucket).set(int(new))  # type: ignore[call-overload]
        name = getattr(new, "name", str(new)).lower()
        self.backend_circuit_changes_total.labels(bucket=bucket, state=name).inc()

    def add_session_totals(self, uploaded: int, downloaded: int) -> None:
        """Feed libtorrent's running session totals (e.g. ``net.sent_bytes`` and
        ``net.recv_bytes`` from a ``session_stats_alert``); the counters grow by the
        difference since the previous call (see :func:`counter_delta`)."""
        last_up, last_down = self._session_last
        self.session_uploaded_bytes_total.inc(counter_delta(last_up, uploaded))
        self.session_downloaded_bytes_total.inc(counter_delta(last_down, downloaded))
        self._session_last = (uploaded, downloaded)


_METRICS_PATH = b"/metrics"
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]


def make_metrics_handler(registry: CollectorRegistry, pages: Handler | None = None) -> Handler:
    """An HTTP handler for ``GET``/``HEAD /metrics`` (any query string ignored): the
    registry in the text format, or OpenMetrics when the ``Accept`` header asks for it,
    gzip-compressed when ``Accept-Encoding`` allows. 405 for other methods. Every other
    path goes to ``pages`` (the status page's handler), or is a 404 without one. Never
    raises for bad input."""

    async def handler(request: Request) -> Response:
        path = request.target.split(b"?", 1)[0]
        if path != _METRICS_PATH:
            if pages is not None:
                return await pages(request)
            return Response(404, list(_TEXT), b"not found: the metrics are at /metrics\n")
        if request.method not in (b"GET", b"HEAD"):
            return Response(405, [*_TEXT, (b"allow", b"GET, HEAD")], b"method not allowed\n")
        accept = (request.header(b"accept") or b"").decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        body = encoder(registry)
        headers = [(b"content-type", content_type.encode()), (b"vary", b"Accept-Encoding")]
        if accepts_gzip(request.header(b"accept-encoding")):
            body = gzip.compress(body, compresslevel=6)
            headers.append((b"content-encoding", b"gzip"))
        return Response(200, headers, body)

    return handler


def accepts_gzip(value: bytes | None) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (listed, and not with q=0)."""
    if not value:
        return False
    for part in value.split(b","):
        coding, _, params = part.strip().partition(b";")
        if coding.strip().lower() != b"gzip":
            continue
        q = params.strip().lower()
        return q not in (b"q=0", b"q=0.0", b"q=0.00", b"q=0.000")
    return False


async def serve_metrics(
    registry: CollectorRegistry,
    host: str,
    port: int,
    *,
    pages: Handler | None = None,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``registry`` at ``http://host:port/metrics`` until cancelled; other paths go
    to ``pages`` when given (see :func:`make_metrics_handler`).

    Reports the bound ``[(host, port), ...]`` through ``task_status.started`` (port 0
    picks a free one). Built on ``httpshell.serve.serve_http``: keep-alive, timeouts
    and the no-traceback rule come from there. Never returns unless cancelled.
    """
    await serve_http(
        make_metrics_handler(registry, pages),
        host,
        port,
        task_status=task_status,
        max_connections=64,
    )
