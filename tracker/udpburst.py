"""One burst of the UDP tracker's socket: datagrams read, answered by the core, replies sent.

The trio shell (``tracker.service``) waits until the socket is readable, then calls
:func:`serve_burst`, which serves what is waiting without a trip through the scheduler.
One behaviour, two bodies:

- plain Python: ``sock.recvfrom`` and ``sock.sendto``, the client as the (host, port)
  address they take and give, answered by ``TrackerCore.udp``;
- the compiled build (Cython compiles this same file; ``COMPILED``): recvfrom(2) and
  sendto(2) on the socket's descriptor, with a C buffer and the client's C socket address.
  Its compact address (what ``TrackerCore.udp_from`` takes) is copied out of that address,
  the reply goes back to it unchanged, and errno is read where Python would raise. Python's
  socket calls format the client's address as text and parse it back for the reply, and
  raise an exception to end every burst: that was ~40 % of a compiled UDP request
  (docs/benchmarks.md, "UDP loop (session 13)").

In both: an ICMP error about an earlier reply (Linux reports it at the next receive) is
ignored, another receive error logged at debug level; a bug in the core is logged and the
burst goes on; a failed send is logged at debug level; ``core.metrics`` (when set) observes
the time of each answered request.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

try:
    import cython
except ImportError:  # the plain build, Cython not installed
    COMPILED = False
else:
    COMPILED = cython.compiled
if COMPILED:  # C declarations, read by the compiler only
    from cython.cimports.libc import errno as c_errno
    from cython.cimports.libc.string import memcmp, memcpy
    from cython.cimports.posix.time import CLOCK_MONOTONIC, clock_gettime, timespec
    from cython.cimports.tracker.csocket import (
        AF_INET,
        AF_INET6,
        ntohs,
        recvfrom,
        sendto,
        sockaddr,
        sockaddr_in,
        sockaddr_in6,
        sockaddr_storage,
    )

if TYPE_CHECKING:
    from tracker.core import TrackerCore

__all__ = ["MAX_DATAGRAM", "serve_burst"]

log = logging.getLogger(__name__)

# A BEP 15 request is <= 98 bytes + BEP 41 options; the rest is junk (cut there, as
# recvfrom does). udpburst.pxd sizes the compiled build's buffer with the same number.
MAX_DATAGRAM = 2048
# What Linux reports at a receive after an earlier reply drew an ICMP error: the
# client went away, nothing to do with this datagram.
_ICMP_ERRORS = (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH)


def serve_burst(core: TrackerCore, sock: socket.socket, now: float, limit: int
                ) -> bool | tuple[bytes, Any]:
    """Serve up to ``limit`` datagrams waiting on the non-blocking UDP socket ``sock`` with
    ``core``, all at ``now``. Returns False when no datagram is left to read (the caller
    waits until ``sock`` is readable), True when ``limit`` were read (more may wait), or
    (reply, address) when ``sock``'s send buffer was full: the caller waits until it is
    writable and sends ``reply`` to ``address`` (a socket address as ``sock.recvfrom``
    gives it). Raises nothing for anything a datagram holds or a socket call reports."""
    if COMPILED:
        return _serve(core, sock.fileno(), now, limit)
    metrics = core.metrics
    recv = sock.recvfrom
    send = sock.sendto
    udp = core.udp
    for _ in range(limit):
        try:
            data, client = recv(MAX_DATAGRAM)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno not in _ICMP_ERRORS:
                log.debug("udp recvfrom: %s", exc)
            continue
        start = time.perf_counter() if metrics is not None else 0.0
        try:
            reply = udp(data, client, now)
        except Exception:  # a bug must not take the listener down
            log.exception("udp request from %s failed", client[0])
            continue
        if reply is None:
            continue
        if metrics is not None:
            metrics.observe("udp", time.perf_counter() - start)
        try:
            send(reply, client)
        except BlockingIOError:
            return reply, client
        except OSError as exc:
            log.debug("udp sendto %s: %s", client[0], exc)
    return True


def _serve(core: TrackerCore, fd: int, now: float, limit: int) -> bool | tuple[bytes, Any]:
    """``serve_burst`` in the compiled build, on the socket's descriptor ``fd``."""
    buf = cython.declare(cython.char[2048])  # MAX_DATAGRAM
    storage = cython.declare(sockaddr_storage)  # room for any family's address
    address = cython.cast(cython.pointer(sockaddr), cython.address(storage))
    metrics = core.metrics
    for _ in range(limit):
        address_len = cython.sizeof(storage)
        got = recvfrom(fd, buf, cython.sizeof(buf), 0, address, cython.address(address_len))
        if got < 0:
            err = c_errno.errno
            if err == c_errno.EAGAIN or err == c_errno.EINTR:  # EAGAIN is EWOULDBLOCK on Linux
                return False  # EINTR: back to trio, which runs the signal's handler
            if err not in _ICMP_ERRORS:
                log.debug("udp recvfrom: %s", OSError(err, os.strerror(err)))
            continue
        source = _source(address)
        if source is None:
            continue  # not an IP address: no reply, as the plain core gives none
        start = _clock() if metrics is not None else 0.0
        try:
            # sin_port and sin6_port: the same place in both families
            port = ntohs(cython.cast(cython.pointer(sockaddr_in), address).sin_port)
            reply = core.udp_from(buf[:got], source, port, now)
        except Exception:  # a bug must not take the listener down
            log.exception("udp request from %s failed",
                          _address(cython.cast(cython.p_char, address)[:address_len])[0])
            continue
        if reply is None:
            continue
        if metrics is not None:
            metrics.observe("udp", _clock() - start)
        if sendto(fd, cython.cast(cython.p_char, reply), len(reply), 0, address,
                  address_len) < 0:
            err = c_errno.errno
            client = _address(cython.cast(cython.p_char, address)[:address_len])
            if err == c_errno.EAGAIN:
                return reply, client
            log.debug("udp sendto %s: %s", client[0], OSError(err, os.strerror(err)))
    return True


def _source(address: Any) -> bytes | None:
    """The compact address (IP + port, as ``TrackerCore.udp_from`` takes it) of the C socket
    address at ``address``; None for a family that is not IP."""
    compact = cython.declare(cython.char[18])
    if address.sa_family == AF_INET:
        v4 = cython.cast(cython.pointer(sockaddr_in), address)
        memcpy(cython.address(compact[0]), cython.address(v4.sin_addr), 4)
        memcpy(cython.address(compact[4]), cython.address(v4.sin_port), 2)
        return compact[:6]
    if address.sa_family == AF_INET6:
        v6 = cython.cast(cython.pointer(sockaddr_in6), address)
        ip = v6.sin6_addr.s6_addr
        if memcmp(ip, b"\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0:  # ::ffff:a.b.c.d
            # a dual-stack socket's IPv4 client: as pack_ip makes it
            memcpy(cython.address(compact[0]), cython.address(ip[12]), 4)
            memcpy(cython.address(compact[4]), cython.address(v6.sin6_port), 2)
            return compact[:6]
        memcpy(cython.address(compact[0]), ip, 16)
        memcpy(cython.address(compact[16]), cython.address(v6.sin6_port), 2)
        return compact[:18]
    return None


def _clock() -> float:
    """``time.perf_counter()`` (CLOCK_MONOTONIC on Linux) without a Python call."""
    ts = cython.declare(timespec)
    clock_gettime(CLOCK_MONOTONIC, cython.address(ts))
    return ts.tv_sec + ts.tv_nsec * 1e-9


def _address(raw: bytes) -> tuple[Any, ...]:
    """The socket address ``socket.recvfrom`` gives for the C ``struct sockaddr_in`` or
    ``sockaddr_in6`` in ``raw``: (host, port), or (host, port, flowinfo, scope id)."""
    family = int.from_bytes(raw[:2], sys.byteorder)
    port = int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    flowinfo = int.from_bytes(raw[4:8], "big")
    scope_id = int.from_bytes(raw[24:28], sys.byteorder)
    return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port, flowinfo, scope_id
