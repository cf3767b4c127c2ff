"""Whose address is this request? The socket peer, or what a trusted reverse proxy says: pure.

Behind a reverse proxy every request comes from the proxy's address; the proxy names the
real client in ``X-Forwarded-For`` (each hop appends the address it saw) or ``X-Real-IP``.
Those headers are believed only when the socket peer is one of the configured trusted
proxies (anyone can send them), and then:

- ``X-Forwarded-For``: read right to left and take the first address that is not a trusted
  proxy (the left part of the chain is whatever the client chose to send, so it is never
  believed past an untrusted hop). A hop that is not an IP address stops the walk: the socket
  address is used. Every hop trusted: the left-most one.
- else ``X-Real-IP``, when it is an IP address.
- else (or garbage): the socket address.

Used by the tracker (the peer address it hands out) and by the seeder's web seed (whose
claims the gate keeps, the request log line). Addresses are packed bytes (4 or 16; an
IPv4-mapped IPv6 address is IPv4) or, via :func:`client_host`, their text.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence

__all__ = [
    "Network",
    "client_host",
    "client_ip",
    "pack_ip",
    "parse_proxies",
    "trusted",
    "trusted_host",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"


def pack_ip(host: str) -> bytes | None:
    """A textual IP address -> 4 or 16 packed bytes (IPv4-mapped IPv6 -> 4), or None."""
    try:
        if ":" in host:
            packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
            return packed[12:] if packed[:12] == _V4_MAPPED else packed
        return socket.inet_pton(socket.AF_INET, host)
    except (OSError, ValueError):
        return None


def parse_proxies(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR networks (host bits allowed) -> networks. Raises ValueError."""
    return tuple(ipaddress.ip_network(p, strict=False) for p in entries)


def trusted(ip: bytes, proxies: Sequence[Network]) -> bool:
    """Whether packed address ``ip`` is inside one of ``proxies``."""
    addr = ipaddress.ip_address(ip)
    return any(addr in net for net in proxies)


def trusted_host(host: str, proxies: Sequence[Network]) -> bool:
    """Whether the textual socket address ``host`` is one of ``proxies`` (the HTTP shells
    count such a connection's slot for the client each request names). Never raises."""
    ip = pack_ip(host)
    return ip is not None and bool(proxies) and trusted(ip, proxies)


def client_ip(
    host: str, headers: Iterable[tuple[bytes, bytes]], proxies: Sequence[Network]
) -> bytes | None:
    """The client's packed address for a request from socket address ``host`` with
    ``headers`` (lower-case names), by the rules in the module docstring. None only when
    ``host`` itself is not an IP address. Never raises."""
    ip = pack_ip(host)
    if not proxies or ip is None or not trusted(ip, proxies):
        return ip
    forwarded = real = None
    for name, value in headers:
        if name == b"x-forwarded-for" and forwarded is None:
            forwarded = value
        elif name == b"x-real-ip" and real is None:
            real = value
    if forwarded is not None:
        # Rightmost first: each proxy appends the address it saw; the first one
        # that is not a trusted proxy is the client.
        hops = [pack_ip(h.strip().decode("ascii", "replace")) for h in forwarded.split(b",")]
        for hop in reversed(hops):
            if hop is None:
                return ip  # garbage in the chain: trust only the socket
            if not trusted(hop, proxies):
                return hop
        return hops[0] or ip
    if real is not None:
        return pack_ip(real.strip().decode("ascii", "replace")) or ip
    return ip


def client_host(
    host: str, headers: Iterable[tuple[bytes, bytes]], proxies: Sequence[Network]
) -> str:
    """:func:`client_ip` as text (``"198.51.100.7"``, ``"2001:db8::5"``). When the headers
    are not believed (or name the socket's own address) ``host`` comes back unchanged, with
    no parse and format round trip: the common case costs nothing. Never raises."""
    if not proxies:
        return host
    ip = client_ip(host, headers, proxies)
    if ip is None or ip == pack_ip(host):
        return host
    return str(ipaddress.ip_address(ip))
