"""The HTTP/1.1 shell of the S3 API and the metrics endpoint: httptools (llhttp) on
trio, a task per connection. Request framing (``httpshell.parser``) and response
rendering (``httpshell.render``) are sans-I/O and shared with the tracker's one-task
front, ``httpshell.epoll``.

A handler is ``async (Request) -> Response``; this module owns sockets, keep-alive,
deadlines (``httpshell.deadlines``: a request head in total within ``header_timeout``,
keep-alive idle ``idle_timeout``, bodies and responses at ``min_rate`` on average), fair
slots (``httpshell.slots``) and the rule that a client never sees a traceback. A request
body (at most 1 MiB, else 413) reaches the handler whole in ``Request.body``; the GET/HEAD
APIs ignore it, ``POST /-/events`` reads it. The parser is llhttp's (via httptools); the
response head is written here, which is most of what h11 cost per request (parsing, then
formatting and validating the answer).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import NoReturn

import trio

from httpshell.deadlines import Timeouts
from httpshell.listeners import ACCEPT_BURST, ACCEPT_RESOURCE_ERRNOS, open_listeners, sockname
from httpshell.messages import Handler, Request, Response
from httpshell.parser import MAX_BODY_BYTES, RECEIVE_SIZE, RequestParser
from httpshell.render import error_response, invalid_response, plan_response, render_response
from httpshell.slots import Slots

__all__ = ["serve_http"]

log = logging.getLogger(__name__)

_FAIRNESS_EVERY = 16  # requests on one connection between forced checkpoints
# What a connection waits for (its deadline and whether its slot may be evicted).
_HEAD, _IDLE, _BODY, _BUSY = range(4)


async def serve_http(
    handler: Handler,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
    idle_timeout: float = 30.0,
    header_timeout: float = 10.0,
    min_rate: float = 1024.0,
    max_connections: int = 1024,
    max_connections_per_ip: int = 64,
    proxied: Callable[[str], bool] | None = None,
    client_of: Callable[[Request], str] | None = None,
    server_header: bytes = b"s3torrent",
) -> NoReturn:
    """Listen on ``host:port`` (port 0 picks one) and serve ``handler`` until cancelled.

    Reports the bound ``[(host, port), ...]`` through ``task_status.started``.

    Deadlines (``httpshell.deadlines``): a request head must be complete within
    ``header_timeout`` seconds of the connection's start (a later request: of its first
    byte), in total; a keep-alive connection with no request under way closes after
    ``idle_timeout``; a request body or a response must move at ``min_rate`` bytes/s on
    average after ``idle_timeout`` of grace. Past a deadline the connection is closed.

    Slots (``httpshell.slots``): ``max_connections`` in all, ``max_connections_per_ip``
    per client address (0: no cap); when full, a new connection evicts the oldest one
    still waiting for a request head, and only when none waits gets 503 and is closed.
    ``proxied(host)``: whether a peer is a trusted proxy; its connections are counted per
    request for ``client_of(request)`` (a client over its cap: 503) instead.

    Never returns unless cancelled; a handler's exception becomes a 500 and a log line,
    never a crash.
    """
    bound, socks = await open_listeners(host, port)
    timeouts = Timeouts(header_timeout, idle_timeout, min_rate)
    slots = Slots(max_connections, max_connections_per_ip)
    if client_of is None:
        proxied = None

    async def on_connection(sock: socket.socket, addr: tuple) -> None:
        stream = _Socket(sock)
        client = sockname(addr)
        key = None if proxied is not None and proxied(client[0]) else client[0]
        conn = _Connection(stream, client, handler, timeouts, server_header, slots, key,
                           client_of)
        admitted, evict = slots.open(conn, key)
        if not admitted:
            await _refuse(stream, server_header)
            conn.release()
            return
        if evict is not None:
            evict.evict()  # type: ignore[attr-defined]
        await conn.run()

    try:
        async with trio.open_nursery() as nursery:
            for listener in socks:
                nursery.start_soon(_accept_loop, listener, nursery, on_connection)
            task_status.started(bound)
            await trio.sleep_forever()
    finally:
        for listener in socks:
            trio.lowlevel.notify_closing(listener)
            listener.close()
    raise AssertionError("unreachable")  # pragma: no cover



async def _accept_loop(
    listener: socket.socket,
    nursery: trio.Nursery,
    on_connection: Callable[[socket.socket, tuple], Awaitable[None]],
) -> NoReturn:
    while True:
        await trio.lowlevel.wait_readable(listener)
        for _ in range(ACCEPT_BURST):
            try:
                sock, addr = listener.accept()
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in ACCEPT_RESOURCE_ERRNOS:
                    log.error("accept: %s; retrying in 0.1 s", exc)
                    await trio.sleep(0.1)
                break  # ECONNABORTED and friends: that client is gone already
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            nursery.start_soon(on_connection, sock, addr)
        else:
            await trio.lowlevel.checkpoint()  # a flood of connections: let them run


class _Socket:
    """The few stream operations the shell needs, on a non-blocking socket.

    trio's SocketStream wraps every send and receive in two checkpoints (a trip through
    the scheduler each); here an operation that can complete now does so without one,
    and the task parks (wait_readable / wait_writable, cancellable) only when it must.
    Callers checkpoint now and then themselves so that a busy connection cannot starve
    the others. Socket errors become trio.BrokenResourceError, as with SocketStream.
    """

    __slots__ = ("moved", "sock", "started", "timeouts")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        # The response being sent: when it started and the bytes moved since; a wait for
        # the client to read ends at ``timeouts.transfer_deadline(started, moved)``.
        self.timeouts: Timeouts | None = None
        self.started = 0.0
        self.moved = 0

    def begin(self, timeouts: Timeouts) -> None:
        """A response starts: ``send_all`` now enforces the minimum rate. (Its clock starts
        at the first wait for the client: a response sent without one never reads it.)"""
        self.timeouts = timeouts
        self.started = -1.0
        self.moved = 0

    def try_receive(self, max_bytes: int) -> bytes | None:
        """What has arrived (b"" at EOF), or None when nothing has: never parks."""
        try:
            return self.sock.recv(max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise trio.BrokenResourceError(exc) from exc

    async def receive_some(self, max_bytes: int) -> bytes:
        while True:
            try:
                return self.sock.recv(max_bytes)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
            except OSError as exc:
                raise trio.BrokenResourceError(exc) from exc

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """All of ``data``; BrokenResourceError if the peer is gone, or (after
        :meth:`begin`) reads slower than the minimum rate."""
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise trio.BrokenResourceError(exc) from exc
            if sent:
                self.moved += sent
                view = view[sent:]
                continue
            timeouts = self.timeouts
            if timeouts is None:
                await trio.lowlevel.wait_writable(self.sock)
                continue
            if self.started < 0:
                self.started = trio.current_time()
            # Behind on the average rate, or no byte taken for ``idle`` seconds (kernel
            # buffers give a stalled reader credit that the average alone would honour).
            deadline = min(
                timeouts.transfer_deadline(self.started, self.moved),
                trio.current_time() + timeouts.idle,
            )
            with trio.move_on_at(deadline) as scope:
                await trio.lowlevel.wait_writable(self.sock)
            if scope.cancelled_caught:
                raise trio.BrokenResourceError("the client reads too slowly")

    async def send_eof(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise trio.BrokenResourceError(exc) from exc

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()


async def _refuse(conn: _Socket, server_header: bytes) -> None:
    body = b"too many connections\n"
    head = (
        b"HTTP/1.1 503 Service Unavailable\r\nServer: "
        + server_header
        + b"\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
    )
    try:
        with trio.move_on_after(1):
            try:
                await conn.send_all(head + body)
            except OSError:
                pass
    finally:
        conn.close()


class _Connection(RequestParser):
    """One client connection of the task-per-connection shell: the parser fills
    ``ready``, the serving loop answers it in order."""

    # No __dict__: one of these is made per connection (and a slot store is cheaper).
    __slots__ = ("client_of", "counted", "deadline", "handler", "key", "phase", "server",
                 "since", "slots", "stream", "timeouts")

    def __init__(
        self,
        stream: _Socket,
        client: tuple[str, int],
        handler: Handler,
        timeouts: Timeouts,
        server: bytes,
        slots: Slots,
        key: str | None,
        client_of: Callable[[Request], str] | None,
    ) -> None:
        super().__init__(client)
        self.stream = stream
        self.handler = handler
        self.timeouts = timeouts
        self.server = server
        self.slots = slots
        self.key = key  # the client its slot counts for (None: a trusted proxy's)
        self.client_of = client_of if key is None else None
        self.counted = True  # holds a slot (an evicted connection no longer does)
        self.phase = _HEAD
        # Set at the first wait (the request is usually there at once: no clock read).
        self.deadline = -1.0
        self.since = 0.0  # when the body being received started

    def evict(self) -> None:
        """Close this connection at once (``Slots`` gave its slot to another). Closing the
        socket wakes its task, parked on it, with ClosedResourceError (notify_closing)."""
        self.counted = False
        self.stream.close()

    # -- reading ------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._serve()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass  # the peer went away (or was too slow): nothing to tell anyone
        except OSError as exc:
            log.debug("connection from %s: %s", self.client, exc)
        finally:
            self.stream.close()
            self.release()
            if self.counted:
                self.counted = False
                self.slots.close(self, self.key)

    def _waiting(self) -> None:
        """Answered everything: wait for the next head (keep-alive; evictable again)."""
        now = trio.current_time()
        if self.in_head:  # the next request has begun
            self.phase, self.deadline = _HEAD, now + self.timeouts.header
        else:
            self.phase, self.deadline = _IDLE, now + self.timeouts.idle
        self.slots.idle(self, self.key)

    def _received(self) -> None:
        """After bytes were fed: the deadline for what is under way now."""
        if self.in_body:
            if self.phase < _BODY:  # the head is complete, its body is arriving
                self.phase, self.since = _BODY, trio.current_time()
                self.slots.busy(self)
            self.deadline = self.timeouts.transfer_deadline(self.since, self.body_bytes)
        elif self.phase == _IDLE and self.in_head:
            self.phase, self.deadline = _HEAD, trio.current_time() + self.timeouts.header

    async def _serve(self) -> None:
        served = 0
        ready = self.ready
        while True:
            while ready:
                item = ready.popleft()
                if type(item) is tuple:
                    served += 1
                    if served % _FAIRNESS_EVERY == 0:
                        # Requests already buffered are served without parking (see
                        # _Socket): a pipelining client must still let the others run.
                        await trio.lowlevel.checkpoint()
                    request, keep_alive = item
                    if self.phase != _BUSY:
                        if self.phase != _BODY:
                            self.slots.busy(self)
                        self.phase = _BUSY
                    if self.client_of is not None and not self._rekey(request):
                        await _refuse(self.stream, self.server)
                        return
                    response = await self._call(request)
                    if not await self._send(request, response, keep_alive):
                        return
                elif item is None:
                    return
                elif type(item) is int:
                    await self._send_simple(item)
                    return
                else:
                    await self.stream.send_all(item)
            if self.broken:
                return
            if self.phase == _BUSY:
                self._waiting()
            # The request is usually there already on a new connection: then no cancel
            # scope and no parking.
            data = self.stream.try_receive(RECEIVE_SIZE)
            if data is None:
                if self.deadline < 0:  # the first wait for the first head
                    self.deadline = trio.current_time() + self.timeouts.header
                with trio.move_on_at(self.deadline):
                    data = await self.stream.receive_some(RECEIVE_SIZE)
                if data is None:
                    return  # no head in time, idle too long, or a body too slow
            if not data:
                return  # EOF; a request cut short is nobody's to answer
            self.feed(data)
            if self.in_body or self.phase == _IDLE:  # (else: nothing for _received to do)
                self._received()

    def _rekey(self, request: Request) -> bool:
        """Count a trusted proxy's connection for the client this request names; False
        when that client is at its cap."""
        assert self.client_of is not None
        key = self.client_of(request)
        if not self.slots.rekey(self, self.key, key):
            return False
        self.key = key
        return True

    async def _call(self, request: Request) -> Response:
        try:
            return await self.handler(request)
        except Exception:
            log.exception("handler failed for %r %r", request.method, request.target[:200])
            return Response(500, [(b"content-type", b"text/plain")], b"internal error\n")

    # -- writing ------------------------------------------------------------------------

    async def _send(self, request: Request, response: Response, keep_alive: bool) -> bool:
        """Write ``response``; False when the connection must close after it."""
        self.stream.begin(self.timeouts)
        body = response.body
        if isinstance(body, bytes | bytearray):
            # The whole response in one write: one syscall, no checkpoint.
            data, keep = render_response(request, response, keep_alive, self.server)
            await self.stream.send_all(data)
            return keep
        head, close, length, chunked = plan_response(request, response, keep_alive, self.server)
        if not head:
            await self.stream.send_all(invalid_response(request, self.server))
            return False
        head_only = request.method == b"HEAD"
        return (
            await self._stream_body(request, body, head, head_only, length, chunked) and not close
        )

    async def _stream_body(
        self,
        request: Request,
        body: AsyncIterable[bytes],
        head: bytes,
        head_only: bool,
        length: int | None,
        chunked: bool,
    ) -> bool:
        sent = 0
        try:
            await self.stream.send_all(head)
            if head_only:
                return True
            async for chunk in body:
                if chunk:
                    sent += len(chunk)
                    if length is not None and sent > length:
                        raise ValueError("streamed body longer than its Content-Length")
                    if chunked:
                        chunk = b"%x\r\n%b\r\n" % (len(chunk), chunk)
                    await self.stream.send_all(chunk)
                    await trio.lowlevel.checkpoint()  # a fast reader must not starve others
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise
        except Exception:
            # Headers are gone already: the only honest signal left is a short body.
            log.exception("streaming body failed for %r", request.target[:200])
            raise trio.BrokenResourceError from None
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
        if chunked:
            await self.stream.send_all(b"0\r\n\r\n")
        elif length is None or sent != length:
            return False  # close-delimited, or shorter than promised: close rather than lie
        return True

    async def _send_simple(self, status: int) -> None:
        """An error answer of our own; the connection closes after it."""
        self.stream.begin(self.timeouts)
        await self.stream.send_all(error_response(status, self.server))
        await self._linger()

    async def _linger(self) -> None:
        """Half-close and drain what the peer still sends, briefly, so that our error
        response is read before the kernel answers unread data with a reset."""
        with trio.move_on_after(1.0):
            try:
                await self.stream.send_eof()
                drained = 0
                while drained < MAX_BODY_BYTES and (
                    chunk := await self.stream.receive_some(RECEIVE_SIZE)
                ):
                    drained += len(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
