"""What the status page reads, as narrow interfaces: the daemon (ops/daemon.py) wires the
real catalog, tracker, libtorrent session, per-object byte tallies and (later) the cluster
into :class:`Sources`; tests pass plain functions. This room imports nothing above
``seeder.torrent``.

Every callable must be cheap (the page calls the per-torrent ones once per row, at most
``PER_PAGE`` times) and must not raise; a source that has nothing to say returns None and
the page shows a dash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from seeder.config import Config
from seeder.torrent.entry import Entry

__all__ = [
    "CatalogView",
    "ClusterNode",
    "ClusterState",
    "SessionFacts",
    "Sources",
    "Totals",
]


class CatalogView(Protocol):
    """The catalog queries the page makes (seeder.torrent.catalog's ``page``,
    ``Catalog.count`` and ``bucket_totals``; seeder/ops/statuspage.py adapts them)."""

    def page(self, offset: int, limit: int) -> list[Entry]: ...
    def count(self) -> int: ...
    def bucket_totals(self) -> dict[str, tuple[int, int]]: ...


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """The libtorrent session at a glance (None from ``Sources.session``: seeding is off)."""

    torrents: int
    seeding: int
    peers: int
    cache_bytes: int
    cache_budget: int
    listen_port: int


@dataclass(frozen=True, slots=True)
class ClusterNode:
    name: str
    address: str
    state: str  # e.g. "up", "leader", "suspect", "down"
    detail: str = ""  # free text: last seen, torrents owned, ...


@dataclass(frozen=True, slots=True)
class ClusterState:
    """The hook for cluster mode (seeder/cluster/): what this node knows of its cluster.
    Wire ``Sources.cluster`` to a function returning it; None means "not clustered" and the
    page shows no cluster section."""

    summary: str  # one line, e.g. "3 nodes, this one leads"
    nodes: tuple[ClusterNode, ...] = ()


@dataclass(frozen=True, slots=True)
class Totals:
    """Running byte totals the rate chart samples (monotonic, except a reset to a lower
    value when a counter starts over)."""

    uploaded: int  # sent to BitTorrent peers and through this daemon's web seed
    origin: int  # read from the buckets' backends (hashing and web seed proxying)


def _none(_: Entry) -> None:
    return None


@dataclass(frozen=True)
class Sources:
    """Everything the page shows, as functions of the daemon's live state."""

    catalog: CatalogView
    config: Callable[[], Config]  # the current config (it changes on reload)
    totals: Callable[[], Totals]
    swarm: Callable[[Entry], tuple[int, int] | None] = _none  # (seeders, leechers) at the tracker
    uploaded: Callable[[Entry], int | None] = _none  # bytes this daemon sent for the torrent
    origin: Callable[[Entry], int | None] = _none  # bytes read from the origin for the object
    session: Callable[[], SessionFacts | None] = field(default=lambda: None)
    generating: Callable[[], int] = field(default=lambda: 0)
    cluster: Callable[[], ClusterState | None] = field(default=lambda: None)
