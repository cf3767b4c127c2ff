"""Which config the catalog's torrent links were made under (the links fingerprint).

A torrent's trackers and web seed URLs come from the config (`links.torrent_links`). The
catalog records a digest of every setting they read once `TorrentService.relink_all` walked it
(meta ``links_fingerprint``), so a restart under the same settings need not walk a catalog of
a million torrents, and a changed setting is noticed.
"""

from __future__ import annotations

import dataclasses
import hashlib

from seeder.config import Config
from seeder.torrent.catalog import Catalog, CatalogError

__all__ = ["LINKS_META", "links_current", "links_fingerprint"]

LINKS_META = "links_fingerprint"  # catalog meta: the config the links were last made under


def links_fingerprint(config: Config) -> str:
    """A digest of every setting `torrent_links` reads (tracker and server URLs, each
    bucket's config without its keys): equal fingerprints give equal links."""
    t, buckets = config.tracker, []
    for b in sorted(config.buckets, key=lambda b: b.name):
        buckets.append(repr(dataclasses.replace(b, access_key=None, secret_key=None)))
    text = repr((t.enabled, t.public_url, t.udp_public_url, config.server.public_url, buckets))
    return hashlib.sha256(text.encode()).hexdigest()


def links_current(catalog: Catalog, config: Config) -> bool:
    """Whether the catalog's links were all made under ``config`` (recorded by
    `TorrentService.relink_all`): a restart with the same URLs need not walk a catalog of a
    million torrents."""
    try:
        return catalog.get_meta(LINKS_META) == links_fingerprint(config)
    except CatalogError:
        return False
