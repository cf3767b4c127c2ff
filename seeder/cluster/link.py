"""The cluster's one connection to Redis: a coredis client that knows whether Redis works.

Every Redis call of the cluster goes through :meth:`RedisLink.call`, bounded by a timeout.
Any failure (refused, reset, slow, authentication, a script error) becomes
:class:`Unavailable` for the caller, which then serves from its local view; the link
counts it (``seeder_cluster_redis_errors_total``), sets ``seeder_cluster_degraded`` to 1
and logs one line when the state changes, not per error. While degraded, :meth:`run`
pings every ``PROBE_EVERY`` seconds; the first success logs one line, clears the gauge
and bumps :attr:`epoch`, which tells the sync tasks to catch up (push what they hold,
read everything again).

Why coredis: it is built on anyio and runs natively under trio (redis-py's asyncio client
needs an asyncio loop), has pipelines, Lua scripts (EVALSHA with a fallback after a Redis
restart), Sentinel and TLS (``rediss://``), and is maintained.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import coredis
import coredis.exceptions
import trio
from coredis.retry import NoRetryPolicy
from prometheus_client import CollectorRegistry, Counter, Gauge

from seeder.cluster.keys import redact

__all__ = ["ClusterMetrics", "RedisLink", "Unavailable"]

log = logging.getLogger(__name__)

CALL_TIMEOUT = 2.0  # s: one Redis round trip (a resync script may move megabytes)
PROBE_EVERY = 1.0  # s between pings while degraded

T = TypeVar("T")

# anyio's: coredis' connection streams, closed under a command when the daemon stops (the
# membership's shielded "leave" races the client's close).
_ERRORS: tuple[type[BaseException], ...] = (
    coredis.exceptions.RedisError, OSError, TimeoutError, trio.TooSlowError, EOFError,
    anyio.ClosedResourceError, anyio.BrokenResourceError,
)


class Unavailable(Exception):
    """Redis could not be used just now; the caller falls back to its local view."""


class ClusterMetrics:
    """``seeder_cluster_*`` metrics, registered in the daemon's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.degraded = Gauge(
            "seeder_cluster_degraded",
            "1 while Redis is unreachable and this node serves from its local view.",
            registry=registry,
        )
        self.redis_errors = Counter(
            "seeder_cluster_redis_errors_total",
            "Redis calls that failed (unreachable, timeout, refused).",
            registry=registry,
        )
        self.nodes = Gauge(
            "seeder_cluster_nodes", "Live cluster nodes this node sees.", registry=registry
        )
        self.synced_peers = Counter(
            "seeder_cluster_synced_peer_changes_total",
            "Peer changes exchanged through Redis, by direction (out: this node's, in: "
            "other nodes').",
            ["direction"],
            registry=registry,
        )
        self.seeded_torrents = Gauge(
            "seeder_cluster_seeded_torrents",
            "Torrents in this node's libtorrent session: the ones it owns that are in demand.",
            registry=registry,
        )
        self.shared_torrents = Counter(
            "seeder_cluster_shared_torrents_total",
            "Torrents this node took from the shared catalog instead of hashing the object.",
            registry=registry,
        )


class RedisLink:
    """A coredis client plus health. Start :meth:`run` in a nursery before :meth:`call`."""

    def __init__(self, url: str, *, metrics: ClusterMetrics | None = None,
                 timeout: float = CALL_TIMEOUT) -> None:
        self.url = url
        self.metrics = metrics
        # coredis logs its EVALSHA -> EVAL fallback (first run of a script, or after a
        # Redis restart) at INFO as a "retry due to error": expected here, not news.
        logging.getLogger("coredis").setLevel(logging.WARNING)
        self.timeout = timeout
        self.client: Any = coredis.Redis.from_url(
            url, stream_timeout=timeout, connect_timeout=timeout, retry_policy=NoRetryPolicy(),
        )
        self.healthy: bool | None = None  # None: not tried yet
        self.epoch = 0  # bumped each time Redis becomes reachable (first contact included)
        self.changed = trio.Event()  # set (and replaced) at every health change
        self.closing = False  # set when the daemon stops: failures are then not news
        self._scripts: dict[str, Any] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the client's connections; probe Redis while degraded. Never returns."""
        async with self.client:
            task_status.started()
            while True:
                if not self.healthy:
                    try:
                        await self.call(lambda c: c.ping())
                    except Unavailable:
                        pass
                await trio.sleep(PROBE_EVERY)

    async def call(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """``await fn(client)`` within the timeout. Raises Unavailable on any failure."""
        try:
            with trio.fail_after(self.timeout):
                result = await fn(self.client)
        except _ERRORS as exc:
            self._failed(exc)
            raise Unavailable(str(exc)) from None
        except BaseExceptionGroup as group:  # anyio task groups inside coredis
            found, rest = group.split(_ERRORS)
            if found is None or rest is not None:
                raise
            exc = found.exceptions[0]
            self._failed(exc)
            raise Unavailable(str(exc)) from None
        if not self.healthy:
            self._set(True, "")
        return result

    async def script(self, source: str, keys: Sequence[bytes], args: Sequence[Any]) -> Any:
        """Run a Lua script (EVALSHA, EVAL after a Redis restart forgot it)."""
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.client.register_script(source)
        return await self.call(lambda c: script(keys=list(keys), args=list(args)))

    def _failed(self, exc: BaseException) -> None:
        if self.closing:
            return  # the daemon is stopping: calls cut short by the client's close
        if self.metrics is not None:
            self.metrics.redis_errors.inc()
        if self.healthy is not False:
            self._set(False, f"{type(exc).__name__}: {exc}")

    def _set(self, healthy: bool, why: str) -> None:
        self.healthy = healthy
        if healthy:
            self.epoch += 1
            log.info("cluster: Redis at %s reachable%s", redact(self.url),
                     "" if self.epoch == 1 else " again: catching up")
        else:
            log.warning("cluster degraded: Redis at %s unreachable (%s): serving from this "
                        "node's local view", redact(self.url), why)
        if self.metrics is not None:
            self.metrics.degraded.set(0 if healthy else 1)
        self.changed.set()
        self.changed = trio.Event()
