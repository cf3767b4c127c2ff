"""The status page's model: what one page shows, gathered from :class:`Sources` (cheap,
on the trio thread) into frozen rows that the templates render (anywhere).

Only one page of the catalog is read (``Catalog.page``), never the whole of it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from seeder.status.chart import render_chart
from seeder.status.errors import ErrorRing, LoggedError
from seeder.status.history import RateHistory, RatePoint
from seeder.status.paging import Page
from seeder.status.sources import ClusterState, SessionFacts, Sources
from seeder.torrent.entry import Entry
from seeder.torrent.magnet import entry_magnet, torrent_url

__all__ = ["BucketRow", "PageView", "TorrentRow", "gather", "torrent_rows"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TorrentRow:
    bucket: str
    key: str
    version_id: str | None
    size: int
    format: str
    info_hash: str  # v1 hex
    info_hash_v2: str | None  # hybrid
    seeders: int | None
    leechers: int | None
    uploaded: int | None
    origin: int | None
    magnet: str | None  # None: the torrent bytes could not be read (logged)
    torrent_url: str

    def as_json(self) -> dict[str, object]:
        """The ``/torrents.json`` object (contract: bucket, key, size, info_hash,
        info_hash_v2, magnet, torrent_url; plus version_id of a pinned torrent)."""
        return {
            "bucket": self.bucket, "key": self.key, "version_id": self.version_id,
            "size": self.size, "info_hash": self.info_hash, "info_hash_v2": self.info_hash_v2,
            "magnet": self.magnet, "torrent_url": self.torrent_url,
        }


@dataclass(frozen=True, slots=True)
class BucketRow:
    name: str
    torrents: int
    bytes: int
    configured: bool  # still in the config (else: left over in the catalog)
    public: bool


@dataclass(frozen=True, slots=True)
class PageView:
    version: str
    uptime: float  # seconds
    now: float  # unix time
    page: Page
    torrents: list[TorrentRow]
    buckets: list[BucketRow]
    session: SessionFacts | None
    generating: int
    cluster: ClusterState | None
    errors: list[LoggedError]
    errors_seen: int
    rate: RatePoint | None
    chart_svg: str


def torrent_rows(sources: Sources, page: Page, *, facts: bool = True) -> list[TorrentRow]:
    """The rows of ``page``: one catalog query of at most ``page.per_page`` entries; with
    ``facts``, each row's tracker counts and byte tallies from ``sources`` too."""
    config = sources.config()
    return [_row(sources, config, e, facts) for e in sources.catalog.page(page.offset,
                                                                           page.per_page)]


def _row(sources: Sources, config, entry: Entry, facts: bool) -> TorrentRow:
    try:
        magnet: str | None = entry_magnet(config, entry)
    except ValueError as exc:
        log.warning("status page: no magnet for %s/%s: %s", entry.bucket, entry.key, exc)
        magnet = None
    swarm = sources.swarm(entry) if facts else None
    return TorrentRow(
        bucket=entry.bucket, key=entry.key, version_id=entry.version_id, size=entry.size,
        format=entry.format,
        info_hash=(entry.info_hash_v1 or b"").hex(),
        info_hash_v2=None if entry.info_hash_v2 is None else entry.info_hash_v2.hex(),
        seeders=None if swarm is None else swarm[0],
        leechers=None if swarm is None else swarm[1],
        uploaded=sources.uploaded(entry) if facts else None,
        origin=sources.origin(entry) if facts else None,
        magnet=magnet,
        torrent_url=torrent_url(config.server.public_url, entry.bucket, entry.key,
                                entry.version_id),
    )


def gather(sources: Sources, page: Page, *, version: str, uptime: float, now: float,
           mono_now: float, history: RateHistory, errors: ErrorRing) -> PageView:
    """Everything one HTML page shows."""
    config = sources.config()
    totals = sources.catalog.bucket_totals()
    configured = {b.name: b for b in config.buckets}
    buckets = [
        BucketRow(name, *totals.get(name, (0, 0)), configured=True, public=b.public)
        for name, b in configured.items()
    ] + [
        BucketRow(name, n, size, configured=False, public=False)
        for name, (n, size) in totals.items() if name not in configured
    ]
    points = history.points(mono_now)
    return PageView(
        version=version, uptime=uptime, now=now, page=page,
        torrents=torrent_rows(sources, page), buckets=buckets,
        session=sources.session(), generating=sources.generating(),
        cluster=sources.cluster(), errors=errors.recent(), errors_seen=errors.seen,
        rate=history.latest(),
        chart_svg=render_chart(points, mono_now, history.window),
    )
