"""The daemon: one trio nursery tree holding every service.

```
run(config)                       trio.run, signals, exit code
└── serve(config)                 one nursery; a crash of any child cancels all
    ├── ClusterNode.run           Redis: shared swarms, catalog, membership [cluster]
    ├── TorrentService.run        generation jobs (single flight, bounded)
    ├── EventEndpoint.run         S3 event workers                    [events]
    ├── serve_http (S3 API)       GetObjectTorrent + web seed        [server.listen]
                                  (+ POST /-/events when [events] enabled)
    ├── serve_tracker             HTTP + UDP announce/scrape          [tracker.listen]
    ├── serve_metrics             /metrics, status page / and         [metrics.listen]
    │                             /torrents.json (seeder/status/)
    ├── run_sampler               byte totals for the status chart, 10 s [metrics.listen]
    ├── SeedSession.run           libtorrent, alerts via set_alert_fd [seeding]
    ├── Seeding.run               swarm budget: upload caps, 2/s      [seeding]
    ├── run_scanner               periodic bucket listing             [scanner]
    ├── status loop               STATUS= lines, gauges
    └── run_watchdog              WATCHDOG=1 from the trio loop
```
READY=1 is sent once every listener is bound and the catalog is open.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from httpshell import Request, serve_http
from seeder import __version__
from seeder.cluster.node import ClusterNode
from seeder.cluster.replicas import Replicas
from seeder.config import Config, ConfigError, load
from seeder.demand import Activation
from seeder.events.endpoint import EventEndpoint
from seeder.metrics import SeederMetrics, serve_metrics
from seeder.ops.scanner import run_scanner
from seeder.ops.sdnotify import Notifier, run_watchdog
from seeder.ops.statuspage import cluster_state, make_status_page
from seeder.s3api.handlers import Runtime, S3Api
from seeder.seed.cache import SeedCache
from seeder.seed.policy import Seeding
from seeder.seed.session import SeedSession
from seeder.seed.settings import PEER_FINGERPRINT
from seeder.seed.swarm_budget import SwarmBudget
from seeder.seed.upload_share import UploadShare
from seeder.status.sampler import run_sampler
from seeder.store import Store, make_store
from seeder.torrent import metainfo
from seeder.torrent.catalog import Catalog, CatalogError
from seeder.torrent.entry import Entry
from seeder.torrent.linkstate import links_current
from seeder.torrent.service import SMALL_JOBS, Listener, TorrentService
from tracker.build import describe as tracker_build
from tracker.clientaddr import client_host, parse_proxies, trusted_host
from tracker.clock import MonotonicClock
from tracker.core import TrackerCore
from tracker.metrics import TrackerMetrics
from tracker.secret import load_or_create
from tracker.service import serve_tracker

log = logging.getLogger(__name__)

STATUS_INTERVAL = 10.0
SHUTDOWN_GRACE = 10.0


@dataclass
class Bound:
    """Where the daemon listens (ports resolved when the config said 0)."""

    s3: tuple[str, int]
    tracker_http: tuple[str, int] | None = None
    tracker_udp: tuple[str, int] | None = None
    metrics: tuple[str, int] | None = None
    bittorrent_port: int | None = None


@dataclass
class Daemon:
    """The live objects of one running daemon (what tests and reload reach into)."""

    config: Config
    config_path: str | None
    catalog: Catalog
    stores: dict[str, Store]
    metrics: SeederMetrics
    registry: CollectorRegistry
    torrents: TorrentService
    api: S3Api
    notifier: Notifier
    seeding: Seeding | None = None
    tracker: TrackerCore | None = None
    cluster: ClusterNode | None = None
    events: EventEndpoint | None = None
    bound: Bound | None = None

    async def reload(self, environ: dict[str, str] | None = None) -> bool:
        """Re-read the config file; swap buckets and credentials in place.

        A bad new config is refused with a log line and the old one stays. Listeners,
        swarms and the libtorrent session are kept (changing listen addresses needs a
        restart, which is logged). Returns True when the new config was applied.
        """
        self.notifier.reloading()
        try:
            new = load(self.config_path, os.environ if environ is None else environ)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused: %s", problem)
            self.notifier.ready()
            return False
        old = self.config
        for section in _RESTART_SECTIONS:
            if getattr(old, section) != getattr(new, section):
                log.warning("reload: [%s] changed; it takes effect at the next restart", section)
        if new.events.enabled and self.events is None:
            log.warning("reload: [events] enabled; POST /-/events is served after a restart")
        new = _keep_sections(new, old)
        new_by_name = {b.name: b for b in new.buckets}
        old_by_name = {b.name: b for b in old.buckets}
        changed = {n for n in old_by_name.keys() | new_by_name.keys()
                   if old_by_name.get(n) != new_by_name.get(n)}
        for b in old.buckets:
            if b.name in changed:
                store = self.stores.pop(b.name, None)
                if store is not None:
                    await store.aclose()
        for b in new.buckets:
            if b.name not in self.stores:
                self.stores[b.name] = make_store(b, threads=_store_threads(new),
                                                 on_breaker=self.metrics.breaker_changed)
        self.config = new
        self.torrents.config = new
        self.api.runtime = Runtime.build(new, self.stores)
        # A changed bucket's web seed settings: its cached torrents and the session follow
        # them now, not at each object's next request. (Other sections wait for a restart.)
        self.torrents.relink_all(changed)
        log.info(
            "reloaded config: %d buckets, %d credentials", len(new.buckets), len(new.credentials)
        )
        self.notifier.ready()
        return True


# Sections a reload cannot apply to a running daemon (listeners, limiters, the session and
# the logging setup are built once): they keep their old values until a restart.
_RESTART_SECTIONS = ("server", "tracker", "metrics", "state", "seeding", "generation", "scanner",
                     "log", "cluster")


def _keep_sections(new: Config, old: Config) -> Config:
    return replace(new, **{section: getattr(old, section) for section in _RESTART_SECTIONS})


async def serve(
    config: Config,
    *,
    config_path: str | None = None,
    notifier: Notifier | None = None,
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until cancelled. Reports the live :class:`Daemon` (with ``bound``
    set) through ``task_status`` once every listener is bound and the catalog is open;
    sends READY=1 then. On cancellation: stops listeners, saves libtorrent resume data,
    closes the catalog and the stores."""
    notifier = notifier or Notifier.from_env()
    state_dir = Path(config.state.dir)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DaemonError(f"state dir {state_dir}: {exc.strerror or exc}") from None
    registry = CollectorRegistry()
    metrics = SeederMetrics(registry)
    catalog = Catalog.open(state_dir / "catalog.sqlite3")
    stores: dict[str, Store] = {}
    error_ring: logging.Handler | None = None
    try:
        for b in config.buckets:
            stores[b.name] = make_store(b, threads=_store_threads(config),
                                        on_breaker=metrics.breaker_changed)
        seeding = _make_seeding(config, state_dir, metrics, catalog, stores)
        cluster = None
        if config.cluster.redis_url:
            c = config.cluster
            cluster = ClusterNode(c.redis_url, c.node(), c.seed_replicas, registry)
        # What seeds on demand: the policy, or in a cluster the policy behind the gate of
        # the torrents this node owns.
        demand: Seeding | Replicas | None = seeding
        if cluster is not None and seeding is not None:
            demand = cluster.replicas(seeding, lambda: list(catalog.entries()))
        on_announce = None
        if demand is not None:
            # An announce in a swarm is demand (issue 4): seed it if the session lacks it.
            on_announce = functools.partial(demand.on_announce, lookup=catalog.by_info_hash)
        tracker = _make_tracker(config, registry, catalog, state_dir, on_announce,
                                lazy=cluster is None)
        if cluster is not None and tracker is not None:
            cluster.attach_tracker(tracker, on_announce)
        listeners: list[Listener] = []
        if tracker is not None:
            listeners.append(_TrackerListener(tracker, lazy=cluster is None))
        if demand is not None:
            listeners.append(demand)
        torrents = TorrentService(
            catalog,
            stores,
            config,
            metrics=metrics,
            chunk_sink_factory=demand.chunk_sink if demand else None,
            listeners=listeners,
        )
        if cluster is not None:
            cluster.attach_torrents(torrents)
        api = S3Api(
            Runtime.build(config, stores),
            torrents,
            metrics=metrics,
            seed_path=seeding.cached_file if seeding else None,
            on_demand=demand.on_demand if demand else None,
            gate=seeding,
            webseed_key=_webseed_key(state_dir),
        )
        # Events reach the torrent service like requests do (so, in a cluster, its shared
        # catalog); the endpoint answers while [events] enabled, even after a reload.
        events = EventEndpoint(torrents, metrics=metrics) if config.events.enabled else None
        handler = api.handle if events is None else events.route(api.handle)
        daemon = Daemon(
            config=config,
            config_path=config_path,
            catalog=catalog,
            stores=stores,
            metrics=metrics,
            registry=registry,
            torrents=torrents,
            api=api,
            notifier=notifier,
            seeding=seeding,
            tracker=tracker,
            events=events,
            cluster=cluster,
        )
        # The config may have moved the tracker or a web seed since the catalog's torrents
        # were made: relink them before the session resumes them and anyone asks. Only then:
        # a restart under the same URLs does not walk the catalog (a million rows: ~50 s).
        if not links_current(catalog, config):
            torrents.relink_all()
        status_page = make_status_page(
            daemon, cluster=None if cluster is None else functools.partial(cluster_state, cluster))
        error_ring = status_page.errors
        logging.getLogger().addHandler(error_ring)
        async with trio.open_nursery() as nursery:
            # The cluster first (the tracker's UDP key comes from it), then the listeners,
            # the libtorrent session last (below): see there.
            if cluster is not None:
                await nursery.start(cluster.run)
            tb = None
            if tracker is not None:
                t = config.tracker
                http = (t.listen.host, t.listen.port) if t.listen else None
                udp = (t.udp_listen.host, t.udp_listen.port) if t.udp_listen else None
                where = " and ".join(
                    f"{kind} {hp}" for kind, hp in (("HTTP", t.listen), ("UDP", t.udp_listen)) if hp
                )
                tb = await _start_listener(
                    nursery, f"tracker on {where}",
                    functools.partial(serve_tracker, header_timeout=t.header_timeout,
                                      max_connections_per_ip=t.max_connections_per_ip),
                    tracker, http, udp,
                )
            await nursery.start(torrents.run)
            if events is not None:
                await nursery.start(events.run)
            listen = config.server.listen
            s3_bound = await _start_listener(
                nursery, f"S3 API on {listen}", _s3_listener(config), handler, listen.host,
                listen.port,
            )
            bound = Bound(s3=s3_bound[0])
            if config.metrics.listen is not None:
                m = config.metrics.listen
                with_pages = functools.partial(serve_metrics, pages=status_page.handler())
                bound.metrics = (
                    await _start_listener(
                        nursery, f"metrics on {m}", with_pages, registry, m.host, m.port
                    )
                )[0]
                nursery.start_soon(run_sampler, status_page.history, status_page.sources.totals)
            if tb is not None:
                bound.tracker_http, bound.tracker_udp = tb.http, tb.udp
            # The session last: its resumed torrents announce at once and may fetch through
            # this daemon's web seed, so the tracker and the S3 API must be listening. A
            # refused (HTTP) or unanswered (UDP) first announce delays the seed in its
            # swarms by libtorrent's retry backoff (measured after a restart: 16 s over
            # HTTP, 39 s with a UDP tier). Requests before it runs are fine:
            # ensure_seeding queues until then.
            if seeding is not None:
                bound.bittorrent_port = await nursery.start(seeding.session.run)
                assert demand is not None
                restored = demand.restore()
                nursery.start_soon(seeding.run)
                log.info("seeding on demand on port %d: %d torrents resumed (at most %d active)",
                         bound.bittorrent_port, restored, config.seeding.max_active_torrents)
            daemon.bound = bound
            if config.scanner.enabled:
                nursery.start_soon(_scanner, daemon)
            nursery.start_soon(_status_loop, daemon)
            await nursery.start(run_watchdog, notifier)
            log.info(
                "seeder %s ready (tracker: %s): S3 API on %s, %d buckets, %d torrents in the "
                "catalog",
                __version__,
                tracker_build(),
                _url(bound.s3),
                len(config.buckets),
                catalog.count(),
            )
            notifier.ready(status=_status_line(daemon))
            task_status.started(daemon)
    finally:
        if error_ring is not None:
            logging.getLogger().removeHandler(error_ring)
        with trio.CancelScope(shield=True):
            for store in stores.values():
                with trio.move_on_after(5):
                    await store.aclose()
        catalog.close()


def _s3_listener(config: Config) -> Callable[..., Awaitable[object]]:
    """``serve_http`` with the ``[server]`` limits: head deadline, slots per client
    address (a trusted proxy's connections count for the client each request names)."""
    server = config.server
    proxies = parse_proxies(server.trusted_proxies)

    def client_of(request: Request) -> str:
        return client_host(request.client[0], request.headers, proxies)

    return functools.partial(
        serve_http,
        header_timeout=server.header_timeout,
        max_connections_per_ip=server.max_connections_per_ip,
        proxied=functools.partial(trusted_host, proxies=proxies) if proxies else None,
        client_of=client_of if proxies else None,
    )


async def _start_listener(
    nursery: trio.Nursery, name: str, fn: Callable[..., Awaitable[object]], *args: object
) -> Any:
    """``nursery.start(fn, *args)``, with a failure to bind turned into one DaemonError line
    (the service may raise it bare or inside its own nursery's group)."""
    try:
        return await nursery.start(fn, *args)
    except OSError as exc:
        raise DaemonError(f"{name}: cannot listen: {exc.strerror or exc}") from None
    except BaseExceptionGroup as group:
        found, rest = group.split(OSError)
        if found is None or rest is not None:
            raise
        exc = _first_leaf(found)
        reason = getattr(exc, "strerror", None) or exc
        raise DaemonError(f"{name}: cannot listen: {reason}") from None


async def _scanner(daemon: Daemon) -> None:
    await run_scanner(daemon.torrents, daemon.stores, daemon.config.scanner.interval)


class _TrackerListener:
    """Keeps the tracker's registered info-hashes equal to the catalog's torrents (``lazy``:
    the tracker registers on first use through the catalog; only removals matter here)."""

    def __init__(self, core: TrackerCore, lazy: bool = False) -> None:
        self.core = core
        self.lazy = lazy

    def torrent_added(self, entry: Entry) -> None:
        if not self.lazy:
            self.core.register(entry.tracker_hashes)

    def torrent_removed(self, entry: Entry) -> None:
        self.core.unregister(entry.tracker_hashes)

    def torrent_relinked(self, entry: Entry) -> None:
        pass  # same info-hashes: nothing to register


def _webseed_key(state_dir: Path) -> bytes:
    """The key of private buckets' web seed capabilities (s3api.capability): kept in the
    state dir so that torrents handed out before a restart keep working, and the same on
    every node that shares the file."""
    key_path = state_dir / "webseed.key"
    try:
        return load_or_create(key_path)
    except OSError as exc:
        raise DaemonError(f"web seed key {key_path}: {exc.strerror or exc}") from None


def _make_tracker(
    config: Config,
    registry: CollectorRegistry,
    catalog: Catalog,
    state_dir: Path,
    on_announce: Callable[[bytes], None] | None = None,
    *,
    lazy: bool = True,
) -> TrackerCore | None:
    """The tracker core. ``lazy``: a swarm is registered at its first announce through the
    catalog (start-up and memory independent of the catalog's size); otherwise (cluster
    mode, whose swarm sync follows the registered swarms) every catalog torrent now."""
    t = config.tracker
    if not t.enabled:
        return None
    # The UDP connection-id key outlives a restart (with the monotonic clock `run` uses),
    # so clients that connected just before it keep announcing (tracker.secret).
    key_path = state_dir / "tracker.key"
    try:
        secret = load_or_create(key_path)
    except OSError as exc:
        raise DaemonError(f"tracker key {key_path}: {exc.strerror or exc}") from None
    core = TrackerCore(
        interval=t.interval,
        min_interval=t.min_interval,
        peer_timeout_factor=t.peer_timeout_factor,
        max_swarms=t.max_swarms,
        max_peers_per_swarm=t.max_peers_per_swarm,
        max_numwant=t.max_numwant,
        open=False,
        trusted_proxies=t.trusted_proxies,
        metrics=TrackerMetrics(registry),
        on_announce=on_announce,
        # The daemon's own seed announces too: that is not demand.
        own_peer_prefix=PEER_FINGERPRINT.encode(),
        secret=secret,
        resolve=functools.partial(_tracker_hashes, catalog) if lazy else None,
    )
    if not lazy:
        for entry in catalog.entries():
            core.register(entry.tracker_hashes)
    return core


def _tracker_hashes(catalog: Catalog, info_hash: bytes) -> tuple[bytes, ...] | None:
    try:
        return catalog.tracker_hashes(info_hash)
    except CatalogError as exc:  # the announce gets "unregistered torrent", not a 500
        log.error("%s", exc)
        return None


def _store_threads(config: Config) -> int:
    """Worker threads (for s3: requests in flight) per store: enough for the hashing threads
    of two jobs, and for the small-object jobs to overlap their round trips (SMALL_JOBS)."""
    return max(config.generation.threads * 2, SMALL_JOBS)


def _make_seeding(config: Config, state_dir: Path, metrics: SeederMetrics,
                  catalog: Catalog, stores: dict[str, Store]) -> Seeding | None:
    if not config.seeding.enabled:
        return None
    cache_dir = Path(config.seeding.cache_dir) if config.seeding.cache_dir else state_dir / "seeds"
    cache = SeedCache(cache_dir, config.seeding.cache_max_bytes)
    return Seeding(
        SeedSession(config.seeding, state_dir, cache, metrics,
                    links_of=functools.partial(_catalog_links, catalog)),
        cache,
        budget=SwarmBudget(
            config.seeding.swarm_budget,
            trickle_rate=config.seeding.swarm_trickle_rate,
        ),
        # Idle after the tracker's peer timeout: the swarm's last announce is forgotten then.
        activation=Activation(
            config.seeding.max_active_torrents,
            config.tracker.interval * config.tracker.peer_timeout_factor,
        ),
        metrics=metrics,
        share=UploadShare(config.seeding.upload_rate_limit),
        # The live dict (a reload swaps stores): local buckets are seeded in place, or
        # reflinked into the seed cache.
        local_stores=stores, in_place=config.seeding.local_no_copy,
    )


def _catalog_links(catalog: Catalog, key: str) -> metainfo.Links | None:
    """The links of the catalog's torrent with seed key ``key`` (info-hash hex), if any."""
    try:
        entry = catalog.by_info_hash(bytes.fromhex(key))
        return None if entry is None else metainfo.links(entry.torrent)
    except (ValueError, CatalogError):  # MetainfoError is a ValueError
        return None


def _status_line(daemon: Daemon) -> str:
    parts = [f"{daemon.catalog.count()} torrents"]
    if daemon.seeding is not None:
        parts.append(daemon.seeding.session.stats().status_line())
    if daemon.torrents.generating:
        parts.append(f"{daemon.torrents.generating} generating")
    return ", ".join(parts)


async def _status_loop(daemon: Daemon) -> None:
    while True:
        await trio.sleep(STATUS_INTERVAL)
        daemon.notifier.status(_status_line(daemon))


def _url(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class DaemonError(Exception):
    """A start-up failure worth one line to the operator (port taken, state dir unusable)."""


async def _main(config: Config, config_path: str | None) -> int:
    notifier = Notifier.from_env()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            daemon: Daemon = await nursery.start(
                lambda task_status: serve(
                    config, config_path=config_path, notifier=notifier, task_status=task_status
                )
            )
            async for signum in signals:
                if signum == signal.SIGHUP:
                    if config_path is None:
                        log.warning("SIGHUP: no config file to reload (started without --config)")
                        continue
                    await daemon.reload()
                    continue
                log.info("%s: shutting down", signal.Signals(signum).name)
                notifier.stopping()
                if daemon.cluster is not None:
                    with trio.move_on_after(2):
                        await daemon.cluster.leave()
                nursery.cancel_scope.cancel()
                break
    return 0


def run(config: Config, config_path: str | None = None) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT; the process exit code.

    Raises DaemonError (one line for the operator) when it cannot start.
    """
    try:
        return trio.run(_main, config, config_path, clock=MonotonicClock())
    except BaseExceptionGroup as group:
        found, _ = group.split(DaemonError)
        if found is not None:
            raise _first_leaf(found) from None
        if len(_leaves(group)) == 1:
            # One failure (say an OSError at start-up): let the CLI print it as one line.
            raise _first_leaf(group) from None
        raise


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
