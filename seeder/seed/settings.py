"""What the seeder tells libtorrent: session settings, per-torrent add flags, and the pure
helpers that read a torrent the way libtorrent does (its web seeds, tracker tiers, seed key).

No session here: every function is pure over its arguments (libtorrent types in, plain values
out), so the unit tests need no running session.
"""

from __future__ import annotations

from typing import Any

import libtorrent as lt

from seeder import __version__
from seeder.config import SeedingConfig
from seeder.seed.upload_slots import OPTIMISTIC_SLOTS
from seeder.torrent.entry import seed_key
from seeder.torrent.metainfo import Links

__all__ = [
    "ALERT_MASK",
    "PEER_FINGERPRINT",
    "STOP_TRACKER_TIMEOUT",
    "SUPER_SEEDING",
    "UNCHOKE_INTERVAL",
    "UNCHOKE_WARMUP",
    "UPLOAD_SLOTS",
    "SeedError",
    "key_of",
    "parse_torrent",
    "peer_class_filter",
    "seed_flags",
    "session_settings",
    "torrent_key",
    "tracker_tiers",
    "url_list",
]

# No `stats` category: it posts a stats_alert per torrent per second, which overflowed the
# alert queue (alerts_dropped) with thousands of torrents. The per-torrent views come from
# post_torrent_updates (state_update_alert) and the totals from post_session_stats, which
# libtorrent posts whatever the mask.
ALERT_MASK = lt.alert_category.error | lt.alert_category.status | lt.alert_category.storage

# The daemon's own peer id prefix (Azureus style: client "S3", version 0.1.0.0): its tracker
# tells its own seed's announces from demand by it (TrackerCore(own_peer_prefix=...)).
PEER_FINGERPRINT = "-S30100-"

STOP_TRACKER_TIMEOUT = 2  # seconds libtorrent waits for "stopped" announces when closing
# Seed policy (the measured trade-off is in seed/policy.py): no super seeding (BEP 16): it kept
# the daemon near one copy but made the clients wait on each other (15-19 s against 13 s for
# plain GETs); the per-swarm byte budget (seed/swarm_budget.py) bounds the bytes instead. True
# super-seeds torrents added whole that have a web seed (bench_swarm --super-seed on).
SUPER_SEEDING = False

# Unchoked peers per torrent at full speed (libtorrent's max_uploads; the swarm budget's
# throttle keeps 2 at a trickle, seed/upload_slots.py adds one for each unchoked peer in its
# end game or slow), and the seed choker keeps the peers it uploads to fastest. Four clients
# served at once (and trading among themselves) finish by ~35-45 s on the daemon's copies,
# the others then from the clients' uplinks (WAN lab, docs/benchmarks.md session 8: the median
# 62.7-72.5 s with 4 and the handoff, 67-74 s with 2).
UPLOAD_SLOTS = 4

# Seconds between two runs of libtorrent's choker (its default: 15). A slot handed on by the
# daemon (seed/upload_slots.py: set_max_uploads) is given to the next peer only when the
# choker runs (or an unchoked peer disconnects): with 15 s the daemon's link idled up to 5 s
# after a handoff (measured).
UNCHOKE_INTERVAL = 2

# Seconds every interested peer of a swarm is unchoked when one of its first picks ramps up
# slowly (seed/upload_slots.py: a slow first pick is picked again); then the slots apply and
# the session's choker keeps the peers it uploaded to fastest. Long enough for the clients'
# request pipelines to tell apart (qBittorrent and libtorrent ramp up ~1 MiB/s per second,
# aria2 0.1-0.3), short beside a swarm of tens of seconds.
UNCHOKE_WARMUP = 3.0


class SeedError(Exception):
    """A torrent cannot be seeded: bad metainfo, or no room in the seed cache."""


def session_settings(config: SeedingConfig) -> dict[str, Any]:
    """The lt.session settings dict for `config` (pure)."""
    return {
        "listen_interfaces": config.listen_interfaces,
        "upload_rate_limit": config.upload_rate_limit,
        "connections_limit": config.connections_limit,
        "enable_dht": config.dht,
        "enable_lsd": config.lsd,
        "enable_upnp": config.upnp,
        "enable_natpmp": config.natpmp,
        "ssrf_mitigation": config.ssrf_mitigation,
        "alert_mask": ALERT_MASK,
        "peer_fingerprint": PEER_FINGERPRINT,
        # Many users behind one NAT address must all be served, not one at a time.
        "allow_multiple_connections_per_ip": True,
        # A seeder is a peer in every swarm it holds: announce everywhere it can.
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "stop_tracker_timeout": STOP_TRACKER_TIMEOUT,
        "enable_ip_notifier": False,
        "seed_choking_algorithm": int(lt.seed_choking_algorithm_t.fastest_upload),
        "unchoke_interval": UNCHOKE_INTERVAL,
        # The session-wide slots follow the torrents' own counts (Seeding.tick,
        # upload_slots.session_slots): one optimistic unchoke on top of them, whatever their sum.
        "num_optimistic_unchoke_slots": OPTIMISTIC_SLOTS,
        # Few requests per peer queued here (libtorrent's default: 2000 blocks, 32 MiB): a
        # client then asks its other peers for the rest instead of queueing every rare
        # piece here, where the other clients ask for the same (issue 4: 3.1-3.5x -> 2.3-2.4x).
        "max_allowed_in_request_queue": config.peer_request_queue,
        "user_agent": f"s3torrent/{__version__} libtorrent/{lt.__version__}",
    }


def peer_class_filter(global_class: int) -> lt.ip_filter:
    """Every peer address in libtorrent's global peer class (``global_class``: the session's
    ``global_peer_class_id``). By default peers on private and loopback addresses are in its
    *local* class instead, which the session's ``upload_rate_limit`` does not cover and whose
    peers ignore the unchoke slots: a daemon's LAN or private-network users would then
    bypass ``[seeding] upload_rate_limit`` (measured in the WAN lab, 10.99.0.0/24: 193 Mbit/s
    under a 4 MiB/s limit), and a lab on private addresses would not behave as the WAN."""
    every = lt.ip_filter()
    every.add_rule("0.0.0.0", "255.255.255.255", 1 << global_class)
    every.add_rule("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1 << global_class)
    return every


def seed_flags(web_seeds: object) -> int:
    """Extra torrent flags for a torrent added whole, given its web seeds (any sized
    collection): super seeding when SUPER_SEEDING and it has one. libtorrent 2.1 must be
    told at add time: switched on or off under connected peers it stalls them. Without a
    web seed the session is a lone peer's only source, and super seeding's one piece at a
    time slows that peer down (docs/benchmarks.md, "Seeding policy")."""
    return int(lt.torrent_flags.super_seeding) if SUPER_SEEDING and web_seeds else 0


def url_list(torrent: bytes) -> list[bytes]:
    """The BEP 19 web seeds (``url-list``) of metainfo bytes; [] if none or unreadable."""
    try:
        value = lt.bdecode(bytes(torrent)).get(b"url-list")
    except (RuntimeError, AttributeError, TypeError):
        return []
    if isinstance(value, bytes):
        return [value] if value else []
    return [u for u in value if isinstance(u, bytes) and u] if isinstance(value, list) else []


def tracker_tiers(links: Links) -> list[tuple[str, int]]:
    """The (url, tier) list libtorrent makes of a torrent with ``links``: ``announce-list``
    when it has one (BEP 12: ``announce`` is then ignored), else ``announce`` alone."""
    if links.announce_list:
        return [(url, tier) for tier, urls in enumerate(links.announce_list) for url in urls]
    return [(links.announce, 0)] if links.announce else []


def torrent_key(ti: lt.torrent_info) -> str:
    """The seed key (`seeder.torrent.entry.seed_key`) of a parsed torrent."""
    return key_of(ti.info_hashes())


def key_of(hashes: Any) -> str:
    """The seed key of libtorrent's ``info_hash_t``."""
    return seed_key(
        hashes.v1.to_bytes() if hashes.has_v1() else None,
        hashes.v2.to_bytes() if hashes.has_v2() else None,
    )


def parse_torrent(torrent: bytes) -> lt.torrent_info:
    """Metainfo bytes -> lt.torrent_info; SeedError if libtorrent refuses them."""
    try:
        return lt.torrent_info(bytes(torrent))
    except (RuntimeError, TypeError, ValueError) as e:
        raise SeedError(f"bad torrent: {e}") from None
