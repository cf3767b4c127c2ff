"""Per-key rules: a check for each converted value that needs more than its type (ranges,
choices, URLs, networks, names), collected in ``CHECKS``. A check returns the problem text
(what follows ``KEY: `` in the problem line) or None. Rules that span keys are in
``checks``.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Callable

from seeder.config.schema import (
    ADDRESSING_STYLES,
    BACKENDS,
    LOG_FORMATS,
    LOG_LEVELS,
    MIN_PIECE_LENGTH,
    TORRENT_FORMATS,
    WEBSEEDS,
)

__all__ = ["CHECKS"]

# Legacy S3 bucket names (us-east-1 allowed upper case and '_'); the name is a URL path segment.
_BUCKET_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_REGION_RE = re.compile(r"[a-z0-9][a-z0-9-]*")


# --- per-key checks on converted values: a message, or None -----------------------------------


def _at_least(n: float) -> Callable[[object], str | None]:
    def check(v: object) -> str | None:
        return None if v >= n else f"must be at least {n}, got {v}"  # type: ignore[operator]

    return check


def _above(n: float) -> Callable[[object], str | None]:
    def check(v: object) -> str | None:
        return None if v > n else f"must be more than {n}, got {v}"  # type: ignore[operator]

    return check


def _between(lo: int, hi: int) -> Callable[[object], str | None]:
    def check(v: object) -> str | None:
        ok = lo <= v <= hi  # type: ignore[operator]
        return None if ok else f"must be from {lo} to {hi}, got {v}"

    return check


def _one_of(choices: tuple[str, ...]) -> Callable[[object], str | None]:
    def check(v: object) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}, got {v!r}"

    return check


def _url(schemes: tuple[str, ...], *, empty_ok: bool = False) -> Callable[[object], str | None]:
    def check(v: object) -> str | None:
        assert isinstance(v, str)
        if v == "" and empty_ok:
            return None
        want = " or ".join(f"{s}://" for s in schemes)
        bad = f"bad URL {v!r}"
        if any(c.isspace() for c in v):
            return f"{bad}: contains white space"
        try:
            parts = urllib.parse.urlsplit(v)
            parts.port  # noqa: B018 -- raises ValueError for a bad port
        except ValueError as e:
            return f"{bad}: {e}"
        if parts.scheme not in schemes:
            return f"{bad}: expected {want}"
        if not parts.hostname:
            return f"{bad}: no host"
        if parts.query or parts.fragment:
            return f"{bad}: no query or fragment allowed"
        return None

    return check


def _udp_url(v: object) -> str | None:
    """A ``udp://host:port[/path]`` URL or ``""``. The port is required: UDP trackers have no
    default port. The path is BEP 41 "URL data" that
    the UDP tracker ignores, so any path (usually ``/announce``) is accepted."""
    problem = _url(("udp",), empty_ok=True)(v)
    if problem is None and v and not urllib.parse.urlsplit(v).port:  # type: ignore[arg-type]
        problem = f"bad URL {v!r}: needs a port 1-65535 (udp://host:port/announce)"
    return problem


def _redis_url(v: object) -> str | None:
    """``redis://`` / ``rediss://`` (TLS) with a host, or ``""`` (standalone). The URL's
    password is never echoed back."""
    assert isinstance(v, str)
    if v == "":
        return None
    try:
        parts = urllib.parse.urlsplit(v)
        shown = v if parts.password is None else v.replace(f":{parts.password}@", ":***@", 1)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError as e:
        return f"bad URL: {e}"
    bad = f"bad URL {shown!r}"
    if any(c.isspace() for c in v):
        return f"{bad}: contains white space"
    if parts.scheme not in ("redis", "rediss"):
        return f"{bad}: expected redis:// or rediss://"
    if not parts.hostname:
        return f"{bad}: no host"
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        return f"{bad}: the path is a database number (redis://host:6379/0)"
    return None


_NODE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def _node_id(v: object) -> str | None:
    assert isinstance(v, str)
    if v == "" or _NODE_ID_RE.fullmatch(v):
        return None
    return (f"bad node id {v!r}: 1-64 letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit")


def _networks(v: object) -> str | None:
    for item in v:  # type: ignore[attr-defined]
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            return f"bad address or network {item!r}: expected e.g. 10.0.0.1 or 10.0.0.0/8"
    return None


def _listen_interfaces(v: object) -> str | None:
    # libtorrent's listen_interfaces: "ADDRESS:PORT[s|l],..." where ADDRESS may also be a
    # device name (eth0) or [ipv6].
    assert isinstance(v, str)
    if not v.strip():
        return "must name at least one address:port"
    for item in v.split(","):
        item = item.strip()
        host, sep, port = item.rpartition(":")
        port = port.rstrip("sl")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            return f'bad interface {item!r}: expected "address:port", e.g. 0.0.0.0:6881'
    return None


def _piece_length(v: object) -> str | None:
    assert isinstance(v, int)
    if v == 0 or (v >= MIN_PIECE_LENGTH and v & (v - 1) == 0):
        return None
    return f"must be 0 (automatic) or a power of two of at least 16 KiB (16384), got {v}"


def _bucket_name(v: object) -> str | None:
    assert isinstance(v, str)
    if _BUCKET_NAME_RE.fullmatch(v):
        return None
    return f"bad bucket name {v!r}: letters, digits, '.', '-', '_', starting with a letter or digit"


def _region(v: object) -> str | None:
    return None if _REGION_RE.fullmatch(v) else f"bad region {v!r}"  # type: ignore[arg-type]


def _not_empty(v: object) -> str | None:
    return "must not be empty" if not v else None


def _topic_arns(v: object) -> str | None:
    for arn in v:  # type: ignore[attr-defined]
        parts = arn.split(":")
        if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sns" or not (
                parts[1] and parts[5]):
            return f"{arn!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC)"
    return None


def _credential_buckets(v: object) -> str | None:
    return 'must name at least one bucket, or "*" for all' if not v else None


CHECKS: dict[tuple[str, str], Callable[[object], str | None]] = {
    ("server", "public_url"): _url(("http", "https")),
    ("server", "trusted_proxies"): _networks,
    ("server", "header_timeout"): _above(0),
    ("server", "max_connections_per_ip"): _at_least(0),
    ("tracker", "public_url"): _url(("http", "https", "udp"), empty_ok=True),
    ("tracker", "udp_public_url"): _udp_url,
    ("tracker", "interval"): _at_least(1),
    ("tracker", "min_interval"): _at_least(1),
    ("tracker", "peer_timeout_factor"): _at_least(1.0),
    ("tracker", "max_swarms"): _at_least(1),
    ("tracker", "max_peers_per_swarm"): _at_least(1),
    ("tracker", "max_numwant"): _at_least(1),
    ("tracker", "trusted_proxies"): _networks,
    ("tracker", "header_timeout"): _above(0),
    ("tracker", "max_connections_per_ip"): _at_least(0),
    ("generation", "threads"): _at_least(1),
    ("generation", "concurrency"): _at_least(1),
    ("generation", "read_ahead"): _at_least(1),
    ("scanner", "interval"): _above(0),
    ("events", "sns_topic_arns"): _topic_arns,
    ("seeding", "listen_interfaces"): _listen_interfaces,
    ("seeding", "connections_limit"): _at_least(1),
    ("seeding", "swarm_budget"): _at_least(0.0),
    ("seeding", "swarm_trickle_rate"): _at_least(1),
    ("seeding", "peer_request_queue"): _between(2, 2000),
    ("seeding", "max_active_torrents"): _at_least(1),
    ("log", "level"): _one_of(LOG_LEVELS),
    ("cluster", "redis_url"): _redis_url,
    ("cluster", "node_id"): _node_id,
    ("cluster", "seed_replicas"): _at_least(1),
    ("log", "format"): _one_of(LOG_FORMATS),
    ("buckets", "name"): _bucket_name,
    ("buckets", "backend"): _one_of(BACKENDS),
    ("buckets", "endpoint_url"): _url(("http", "https")),
    ("buckets", "region"): _region,
    ("buckets", "addressing_style"): _one_of(ADDRESSING_STYLES),
    ("buckets", "access_key"): _not_empty,
    ("buckets", "secret_key"): _not_empty,
    ("buckets", "torrent_format"): _one_of(TORRENT_FORMATS),
    ("buckets", "webseed"): _one_of(WEBSEEDS),
    ("buckets", "piece_length"): _piece_length,
    # SigV4 presigned URLs live at most 7 days.
    ("buckets", "presign_webseed"): _between(0, 604800),
    ("buckets", "connect_timeout"): _above(0),
    ("buckets", "read_timeout"): _above(0),
    ("credentials", "access_key"): _not_empty,
    ("credentials", "secret_key"): _not_empty,
    ("credentials", "buckets"): _credential_buckets,
}


