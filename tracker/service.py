"""The tracker's trio shell: HTTP and UDP listeners and the expiry sweeper around a
:class:`~tracker.core.TrackerCore`.

```
serve_tracker(core, http, udp)     one nursery; a crash of any child cancels all
├── serve_http_sync(handler)       /announce, /scrape (httpshell.epoll: one task, one epoll set)
├── serve_tracker_udp              BEP 15, bursts of datagrams (tracker.udpburst)
└── run_cleaner                    core.clean(now) every core.sweep_every seconds
```
``now`` is ``trio.current_time()`` everywhere, so tests can drive expiry with a mock clock.
"""

from __future__ import annotations

import functools
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import trio

from httpshell import Request, Response, serve_http_sync
from tracker.clientaddr import client_host, trusted_host
from tracker.core import TrackerCore
from tracker.udpburst import serve_burst

__all__ = [
    "TrackerBound",
    "TrackerCore",
    "make_sync_http_handler",
    "run_cleaner",
    "serve_tracker",
    "serve_tracker_udp",
]

log = logging.getLogger(__name__)

_CLEAN_SLICE = 4096  # expiry entries per slice: ~1 ms, so announces wait no longer
_UDP_BURST = 64  # datagrams served per wake-up before yielding to the other tasks


@dataclass(frozen=True, slots=True)
class TrackerBound:
    """Where the tracker listens (ports resolved when 0 was asked for)."""

    http: tuple[str, int] | None
    udp: tuple[str, int] | None


def make_sync_http_handler(core: TrackerCore) -> Callable[[Request], Response]:
    """A synchronous handler (``httpshell.epoll``) answering ``/announce`` and ``/scrape``
    from ``core``."""
    metrics = core.metrics
    http = core.http
    try:
        # The run's clock itself (a MockClock in tests): trio.current_time() finds it
        # through the run context on every call, ~1 us per announce.
        now = trio.lowlevel.current_clock().current_time
    except RuntimeError:  # built outside trio.run: look the clock up per call
        now = trio.current_time

    def handle(request: Request) -> Response:
        if request.method not in (b"GET", b"HEAD"):
            return Response(405, [(b"allow", b"GET, HEAD")], b"method not allowed\n")
        if metrics is None:
            return Response(*http(request.target, request.headers, request.client, now()))
        start = time.perf_counter()
        status, headers, body = http(request.target, request.headers, request.client, now())
        if status == 200:
            metrics.observe("http", time.perf_counter() - start)
        return Response(status, headers, body)

    return handle


async def serve_tracker_udp(
    core: TrackerCore,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve BEP 15 on ``host:port`` (port 0 picks one) until cancelled; reports the bound
    (host, port). Every datagram is answered, refused with an error packet, or dropped;
    none can stop the loop."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # A plain non-blocking socket driven by wait_readable: a burst of datagrams is
    # served without a trip through trio's scheduler (and its address resolution in
    # sendto) per datagram, which cost more than the announce itself.
    infos = await trio.socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    with sock:
        sock.setblocking(False)
        if family == socket.AF_INET6 and host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(infos[0][4])
        bound = sock.getsockname()
        task_status.started((bound[0], bound[1]))
        try:
            await _udp_loop(core, sock)
        finally:
            trio.lowlevel.notify_closing(sock)
    raise AssertionError("unreachable")  # pragma: no cover


async def _udp_loop(core: TrackerCore, sock: socket.socket) -> NoReturn:
    clock = trio.lowlevel.current_clock().current_time  # trio.current_time() without the lookup
    while True:
        await trio.lowlevel.wait_readable(sock)
        # One clock read per burst: they arrived together.
        left = serve_burst(core, sock, clock(), _UDP_BURST)
        if left is True:
            await trio.lowlevel.checkpoint()  # a long burst: let the other tasks run
        elif left is not False:  # a reply the full send buffer did not take
            reply, client = left
            await trio.lowlevel.wait_writable(sock)
            try:
                sock.sendto(reply, client)
            except OSError as exc:
                log.debug("udp sendto %s: %s", client[0], exc)


async def run_cleaner(
    core: TrackerCore, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    """Call ``core.clean`` every ``core.sweep_every`` seconds, forever, in slices of
    ``_CLEAN_SLICE`` entries with the other tasks served between them."""
    task_status.started()
    while True:
        await trio.sleep(core.sweep_every)
        removed = core.clean(trio.current_time(), _CLEAN_SLICE)
        while core.clean_due(trio.current_time()):
            await trio.lowlevel.checkpoint()
            removed += core.clean(trio.current_time(), _CLEAN_SLICE)
        if removed:
            log.debug("tracker: %d peers expired", removed)


async def serve_tracker(
    core: TrackerCore,
    http: tuple[str, int] | None,
    udp: tuple[str, int] | None,
    *,
    header_timeout: float = 10.0,
    max_connections_per_ip: int = 64,
    task_status: trio.TaskStatus[TrackerBound] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``core`` over HTTP at ``http`` and/or UDP at ``udp`` ((host, port), port 0
    picks one; None: not on that transport), with the expiry sweeper, until cancelled.
    ``header_timeout`` and ``max_connections_per_ip`` (0: no cap) are the HTTP
    listener's (``httpshell.epoll``); its slots count a trusted proxy's requests for
    the client it names (``core.proxies``).

    Reports a :class:`TrackerBound` once every listener is bound. Never returns unless
    cancelled; a failure to bind raises (OSError) before ``started``.
    """
    async with trio.open_nursery() as nursery:
        http_bound = udp_bound = None
        if http is not None:
            proxies = core.proxies
            proxied = functools.partial(trusted_host, proxies=proxies)

            def client_of(request: Request) -> str:
                return client_host(request.client[0], request.headers, proxies)

            addrs = await nursery.start(
                functools.partial(
                    serve_http_sync,
                    make_sync_http_handler(core),
                    http[0],
                    http[1],
                    header_timeout=header_timeout,
                    max_connections_per_ip=max_connections_per_ip,
                    proxied=proxied if proxies else None,
                    client_of=client_of if proxies else None,
                    defer_accept=True,  # clients send at once: see httpshell.epoll
                )
            )
            http_bound = addrs[0]
        if udp is not None:
            udp_bound = await nursery.start(serve_tracker_udp, core, udp[0], udp[1])
        await nursery.start(run_cleaner, core)
        task_status.started(TrackerBound(http_bound, udp_bound))
        await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover
