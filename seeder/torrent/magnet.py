"""Magnet links (BEP 9 / BEP 53 style URIs) for catalog torrents, and this server's
GetObjectTorrent URL of an object. Pure: strings in, strings out.

A link holds, in this order::

    magnet:?xt=urn:btih:<40 hex>            the v1 info-hash (every torrent made here has one)
           &xt=urn:btmh:1220<64 hex>        the v2 info-hash as a multihash (hybrid torrents)
           &dn=<name>                       the torrent's name: the key's last segment
           &xl=<size>                       the object's size in bytes
           &tr=<url>                        each tracker (announce, then announce-list tiers)
           &ws=<url>                        each BEP 19 web seed (url-list)
           &xs=<url>                        where the .torrent itself is (public buckets)

Every value but ``xt`` is percent-encoded with nothing left safe (a web seed URL's own
``?`` and ``&`` must not end the parameter); names are UTF-8 (the raw bytes of a local
file name that is not, kept by surrogate escapes). A client that fetches the metadata from
peers (BEP 9) finds them through ``tr``; ``ws`` lets it download from the web seed once it
has the metadata.
"""

from __future__ import annotations

from urllib.parse import quote

from seeder.config import Config
from seeder.torrent.entry import Entry
from seeder.torrent.metainfo import Links, links, torrent_name

__all__ = ["entry_magnet", "exact_source", "magnet_link", "torrent_url"]

# multihash prefix of a sha2-256 digest: function code 0x12, length 0x20 (BEP 52 magnets)
_SHA256_MULTIHASH = "1220"


def _enc(value: str) -> str:
    return quote(value, safe="", encoding="utf-8", errors="surrogateescape")


def torrent_url(public_url: str, bucket: str, key: str, version_id: str | None = None) -> str:
    """This server's GetObjectTorrent URL of ``bucket``/``key`` (``?torrent``, plus
    ``&versionId=`` for a pinned version) under ``public_url`` (``[server] public_url``);
    the key percent-encoded with ``/`` kept, as the web seed URL is."""
    url = (f"{public_url.rstrip('/')}/{_enc(bucket)}/"
           f"{quote(key, safe='/', encoding='utf-8', errors='surrogateescape')}?torrent")
    if version_id:
        url += "&versionId=" + _enc(version_id)
    return url


def magnet_link(entry: Entry, links: Links, exact_source: str | None = None) -> str:
    """The magnet URI of ``entry``'s torrent with ``links`` (its trackers and web seeds:
    ``metainfo.links(entry.torrent)``) and, when given, ``exact_source`` as ``xs`` (the
    GetObjectTorrent URL, for buckets anyone may read). Trackers appear once each, in
    announce-list order after ``announce``. Raises ValueError for an entry with no v1
    info-hash (the daemon makes none)."""
    if entry.info_hash_v1 is None:
        raise ValueError(f"{entry.bucket}/{entry.key}: no v1 info-hash")
    parts = [f"xt=urn:btih:{entry.info_hash_v1.hex()}"]
    if entry.info_hash_v2 is not None:
        parts.append(f"xt=urn:btmh:{_SHA256_MULTIHASH}{entry.info_hash_v2.hex()}")
    parts.append("dn=" + _enc(torrent_name(entry.bucket, entry.key)))
    parts.append(f"xl={entry.size}")
    trackers = [links.announce] if links.announce else []
    trackers += [url for tier in links.announce_list for url in tier]
    parts += ["tr=" + _enc(url) for url in dict.fromkeys(trackers)]
    parts += ["ws=" + _enc(url) for url in links.url_list]
    if exact_source:
        parts.append("xs=" + _enc(exact_source))
    return "magnet:?" + "&".join(parts)


def exact_source(config: Config, entry: Entry) -> str | None:
    """The ``xs`` of ``entry``'s magnet under ``config``: its GetObjectTorrent URL when its
    bucket is configured, public and not requester pays (anyone may fetch it unsigned),
    else None."""
    bucket = next((b for b in config.buckets if b.name == entry.bucket), None)
    if bucket is None or not bucket.public or bucket.requester_pays:
        return None
    return torrent_url(config.server.public_url, entry.bucket, entry.key, entry.version_id)


def entry_magnet(config: Config, entry: Entry) -> str:
    """``entry``'s magnet with the links of its cached torrent and :func:`exact_source`.
    Raises ValueError (``metainfo.InvalidTorrent``) for torrent bytes it cannot read."""
    return magnet_link(entry, links(entry.torrent), exact_source(config, entry))
