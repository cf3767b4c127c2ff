"""The links of a torrent (trackers and web seeds, outside ``info``) as the config gives
them, and relinking a cached torrent to them without hashing (pure).

A torrent's tracker and web seed URLs come from ``[tracker]``, ``[server] public_url`` and
the bucket's web seed settings; a config change does not change the object's torrent, only
its links. `relink_entry` rewrites a cached torrent's links and checks its info-hashes stayed.
"""

from __future__ import annotations

import dataclasses
import logging
from urllib.parse import quote

from seeder.config import BucketConfig, Config
from seeder.torrent import metainfo
from seeder.torrent.entry import Entry

__all__ = [
    "has_links",
    "links_or_none",
    "presigns_webseed",
    "relink_entry",
    "torrent_links",
    "webseed_url",
]

log = logging.getLogger("seeder.torrent.service")  # the service's lines, whichever module


def presigns_webseed(bucket: BucketConfig) -> bool:
    """Whether GetObjectTorrent answers for ``bucket`` carry a fresh presigned object URL as
    their web seed: an ``s3`` bucket in ``origin`` mode with ``presign_webseed`` set whose
    objects an anonymous client cannot fetch at the origin, because the bucket is not public
    or because it is requester pays (S3 refuses anonymous requests to those)."""
    return (
        bucket.backend == "s3"
        and bucket.webseed == "origin"
        and bucket.presign_webseed > 0
        and (not bucket.public or bucket.requester_pays)
    )


def webseed_url(bucket: BucketConfig, key: str, public_url: str, origin_url: str | None,
                version_id: str | None = None) -> str:
    """The BEP 19 web seed URL stored in the torrent of one object ("" for none).

    ``webseed = "origin"`` and a backend with a public object URL (S3): that URL. Otherwise
    (a local directory, or ``webseed = "proxy"``): this daemon's own ``/{bucket}/{key}``, the key
    percent-encoded with ``/`` kept. A torrent pinned to a version asks for that version
    (``versionId=``), or a client would get a newer version's bytes, fail the piece hashes and
    ban the web seed. The URL never ends in ``/`` (BEP 19 would append the torrent name) unless
    the key itself does.

    None for a non-public bucket (web seed clients send no credentials), nor for a
    requester-pays bucket's origin URL (S3 refuses anonymous requests to requester-pays
    buckets): there handlers puts a presigned URL per request when ``presigns_webseed``. This
    daemon's own URL of a requester-pays bucket carries ``x-amz-request-payer=requester``,
    which the daemon requires and BitTorrent clients cannot send as a header.
    """
    if not bucket.public:
        return ""
    query: list[str] = []
    if bucket.webseed == "origin" and origin_url:
        if bucket.requester_pays:
            return ""
        url = origin_url
    else:
        url = f"{public_url.rstrip('/')}/{quote(bucket.name, safe='')}/{quote(key, safe='/')}"
        if bucket.requester_pays:
            query.append("x-amz-request-payer=requester")
    if version_id:
        query.insert(0, "versionId=" + quote(version_id, safe=""))
    if query:
        url += ("&" if "?" in url else "?") + "&".join(query)
    return url


def torrent_links(config: Config, bucket: BucketConfig, key: str, origin_url: str | None,
                  version: str | None) -> metainfo.Links:
    """The links a torrent of ``bucket``/``key`` gets under ``config`` (what generation writes
    and what a cached torrent is relinked to); ``origin_url``: the store's public URL of the
    object; ``version``: the object version hashed (:func:`object_version`).

    Trackers, only while the tracker is enabled (else none): ``announce-list`` (BEP 12) has
    a tier of ``[tracker] udp_public_url`` (when set) ahead of one of ``public_url`` (when
    set; one tier if both are the same URL), so a client tries the cheaper UDP tracker first
    and falls back to HTTP. ``announce`` is ``public_url`` (what clients without
    announce-list support use, many of which have no UDP tracker support either), else the
    UDP URL. ``url-list``: :func:`webseed_url` (none when that is ``""``).
    """
    tracker = config.tracker
    http = tracker.public_url if tracker.enabled else ""
    udp = tracker.udp_public_url if tracker.enabled else ""
    tiers = [[url] for url in dict.fromkeys((udp, http)) if url]
    return metainfo.Links.of(
        http or udp or None,
        tiers,
        [webseed_url(bucket, key, config.server.public_url, origin_url, version)],
    )


def relink_entry(cached: Entry, links: metainfo.Links, version: str | None,
              last_modified: float) -> Entry | None:
    """``cached`` with ``links`` and ``version`` recorded; None (with a warning) if the
    rewritten torrent would not keep its info-hashes or cannot be read."""
    try:
        torrent = metainfo.with_links(cached.torrent, links)
        ih = metainfo.info_hashes(torrent)
        if (ih.v1, ih.v2) != (cached.info_hash_v1, cached.info_hash_v2):
            raise metainfo.MetainfoError("the info-hashes changed")
    except metainfo.MetainfoError as exc:
        log.warning("cannot relink %s/%s, hashing it again: %s", cached.bucket, cached.key, exc)
        return None
    return dataclasses.replace(cached, torrent=torrent, object_version=version,
                               last_modified=last_modified)


def links_or_none(entry: Entry) -> metainfo.Links | None:
    try:
        return metainfo.links(entry.torrent)
    except metainfo.MetainfoError:
        return None


def has_links(entry: Entry, want: metainfo.Links) -> bool:
    """Whether ``entry``'s torrent carries ``want`` (an unreadable one does not: relinking
    then fails its checks and the object is hashed again)."""
    return links_or_none(entry) == want
