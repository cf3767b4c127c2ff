"""Wiring of the status page (seeder/status/) to a running daemon's parts: the catalog,
the config, the tracker's swarms, the libtorrent session, the per-object byte tallies and
the byte counters the rate chart samples. Every source here is cheap and never raises."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import Counter

from seeder.cluster.node import ClusterNode
from seeder.status.page import StatusPage
from seeder.status.sources import ClusterNode as NodeRow
from seeder.status.sources import ClusterState, SessionFacts, Sources, Totals
from seeder.torrent.catalog import Catalog, bucket_totals
from seeder.torrent.catalog import page as catalog_page
from seeder.torrent.entry import Entry

if TYPE_CHECKING:
    from seeder.ops.daemon import Daemon

__all__ = ["cluster_state", "make_status_page"]

log = logging.getLogger(__name__)


def make_status_page(daemon: Daemon, *,
                     cluster: Callable[[], ClusterState | None] | None = None) -> StatusPage:
    """The status page of ``daemon``. ``cluster``: cluster mode's view of its nodes (the
    hook for seeder/cluster/; None, or returning None: no cluster section)."""
    return StatusPage(Sources(
        catalog=_CatalogView(daemon.catalog),
        config=lambda: daemon.config,
        totals=lambda: _totals(daemon),
        swarm=lambda e: _swarm(daemon, e),
        uploaded=lambda e: _uploaded(daemon, e),
        origin=lambda e: daemon.metrics.objects.get(e.bucket, e.key)[0],
        session=lambda: _session(daemon),
        generating=lambda: daemon.torrents.generating,
        cluster=cluster or (lambda: None),
    ))


def cluster_state(node: ClusterNode) -> ClusterState:
    """What this node knows of its cluster: the live nodes (by its last heartbeat) and
    whether Redis answers."""
    live = node.membership.live
    healthy = node.link.healthy
    redis = {True: "Redis reachable", False: "Redis unreachable: serving from this node's "
             "local view (degraded)", None: "Redis not reached yet"}[healthy]
    summary = (f"{len(live)} node{'s' if len(live) != 1 else ''} live, this one is "
               f"{node.node_id}, {node.membership.replicas} seed replicas per torrent; {redis}")
    return ClusterState(summary, tuple(
        NodeRow(name, "", "up", "this node" if name == node.node_id else "")
        for name in live
    ))


class _CatalogView:
    """The catalog queries the page makes (``status.sources.CatalogView``)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def page(self, offset: int, limit: int) -> list[Entry]:
        return catalog_page(self.catalog, offset, limit)

    def count(self) -> int:
        return self.catalog.count()

    def bucket_totals(self) -> dict[str, tuple[int, int]]:
        return bucket_totals(self.catalog)


def _sum(counter: Counter) -> int:
    return int(sum(s.value for family in counter.collect() for s in family.samples
                   if s.name.endswith("_total")))


def _totals(daemon: Daemon) -> Totals:
    m = daemon.metrics
    return Totals(
        uploaded=_sum(m.session_uploaded_bytes_total) + _sum(m.webseed_served_bytes_total),
        origin=_sum(m.backend_read_bytes_total),
    )


def _swarm(daemon: Daemon, entry: Entry) -> tuple[int, int] | None:
    if daemon.tracker is None or entry.info_hash_v1 is None:
        return None
    counts = daemon.tracker.swarms.scrape(entry.info_hash_v1)
    return None if counts is None else (counts[0], counts[2])


def _uploaded(daemon: Daemon, entry: Entry) -> int | None:
    served = daemon.metrics.objects.get(entry.bucket, entry.key)[1]
    if daemon.seeding is None:
        return served
    try:
        status = daemon.seeding.session.status(entry.seed_key)
    except Exception:  # a session that is not running (yet, or any more)
        status = None
    return served + (status.uploaded if status is not None else 0)


def _session(daemon: Daemon) -> SessionFacts | None:
    if daemon.seeding is None:
        return None
    stats = daemon.seeding.session.stats()
    return SessionFacts(
        torrents=stats.torrents, seeding=stats.seeding, peers=stats.peers,
        cache_bytes=stats.cache_bytes, cache_budget=daemon.config.seeding.cache_max_bytes,
        listen_port=stats.listen_port,
    )
