"""Listening sockets for both HTTP shells: bind through trio, serve on plain non-blocking
sockets; and how many connections to accept per wake-up.
"""

from __future__ import annotations

import errno
import socket

import trio

__all__ = ["ACCEPT_BURST", "ACCEPT_RESOURCE_ERRNOS", "open_listeners", "sockname"]

ACCEPT_BURST = 64  # connections accepted per wake-up of a listener
# What trio.serve_listeners also treats as "out of resources, retry soon".
ACCEPT_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


async def open_listeners(host: str, port: int) -> tuple[list[tuple[str, int]], list[socket.socket]]:
    """Bind ``host:port`` (port 0 picks one): the bound ``(host, port)`` of each listener and
    the listeners as plain non-blocking sockets, for both HTTP fronts. trio binds (every
    address family of ``host``, SO_REUSEADDR, backlog); the serving is done on plain sockets."""
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=1024)
    bound = [sockname(lst.socket.getsockname()) for lst in listeners]
    socks = [socket.socket(fileno=lst.socket.detach()) for lst in listeners]
    for sock in socks:
        sock.setblocking(False)
    return bound, socks


def sockname(addr: tuple) -> tuple[str, int]:
    """``(host, port)`` of a socket address (IPv6 flow info and scope dropped); ``("", 0)``
    for one that is not a tuple."""
    return (addr[0], addr[1]) if isinstance(addr, tuple) else ("", 0)
