"""The HTTP/1.1 shell shared by the tracker, the S3 API and the metrics endpoint: h11 on trio.

A handler is ``async (Request) -> Response``; this module owns sockets, framing,
keep-alive, timeouts and the rule that a client never sees a traceback. The APIs served
here are GET/HEAD only, so request bodies are drained (up to a cap) and ignored.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import NoReturn

import h11
import trio

__all__ = ["Handler", "Request", "Response", "serve_http"]

log = logging.getLogger(__name__)

_RECEIVE_SIZE = 65536
_MAX_HEADER_BYTES = 16384
_MAX_BODY_BYTES = 1 << 20  # nothing here takes a body; refuse floods, drain small ones
_FAIRNESS_EVERY = 16  # requests on one connection between forced checkpoints


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request. Header names are lower-case bytes, values raw bytes."""

    method: bytes
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    client: tuple[str, int]
    http_version: bytes = b"1.1"

    def header(self, name: bytes) -> bytes | None:
        """First value of header ``name`` (give it lower-case), or None."""
        for k, v in self.headers:
            if k == name:
                return v
        return None


@dataclass(slots=True)
class Response:
    """A response. A bytes body gets Content-Length automatically; an async-iterable body
    is streamed, and then the handler must set Content-Length itself (or the connection
    closes after the body). For HEAD the shell sends the headers only."""

    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes | AsyncIterable[bytes] = b""


Handler = Callable[[Request], Awaitable[Response]]


class _DateCache:
    """The Date header, formatted at most once per second (it is on every response)."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode()
        return self._value


_date = _DateCache()


async def serve_http(
    handler: Handler,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
    idle_timeout: float = 30.0,
    max_connections: int = 1024,
    server_header: bytes = b"s3torrent",
) -> NoReturn:
    """Listen on ``host:port`` (port 0 picks one) and serve ``handler`` until cancelled.

    Reports the bound ``[(host, port), ...]`` through ``task_status.started``. Connections
    idle for ``idle_timeout`` seconds (between or inside requests) are closed. Past
    ``max_connections`` open connections, new ones get 503 and are closed. Never returns
    unless cancelled; a handler's exception becomes a 500 and a log line, never a crash.
    """
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=1024)
    bound = [_sockname(lst.socket.getsockname()) for lst in listeners]
    # trio binds (every address family of ``host``, SO_REUSEADDR, backlog); the serving
    # is done on plain non-blocking sockets (see _Socket).
    socks = [socket.socket(fileno=lst.socket.detach()) for lst in listeners]
    # A plain counter: one trio task runs at a time, and a CapacityLimiter's per-task
    # bookkeeping is measurable on a tracker that sees one connection per announce.
    open_connections = 0

    async def on_connection(sock: socket.socket, addr: tuple) -> None:
        nonlocal open_connections
        conn = _Socket(sock)
        if open_connections >= max_connections:
            await _refuse(conn, server_header)
            return
        open_connections += 1
        try:
            await _Connection(conn, _sockname(addr), handler, idle_timeout, server_header).run()
        finally:
            open_connections -= 1

    try:
        async with trio.open_nursery() as nursery:
            for listener in socks:
                listener.setblocking(False)
                nursery.start_soon(_accept_loop, listener, nursery, on_connection)
            task_status.started(bound)
            await trio.sleep_forever()
    finally:
        for listener in socks:
            trio.lowlevel.notify_closing(listener)
            listener.close()
    raise AssertionError("unreachable")  # pragma: no cover


_ACCEPT_BURST = 64
# What trio.serve_listeners also treats as "out of resources, retry soon".
_ACCEPT_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


async def _accept_loop(
    listener: socket.socket,
    nursery: trio.Nursery,
    on_connection: Callable[[socket.socket, tuple], Awaitable[None]],
) -> NoReturn:
    while True:
        await trio.lowlevel.wait_readable(listener)
        for _ in range(_ACCEPT_BURST):
            try:
                sock, addr = listener.accept()
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in _ACCEPT_RESOURCE_ERRNOS:
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

    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

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
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.sock)
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(exc) from exc
            view = view[sent:]

    async def send_eof(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise trio.BrokenResourceError(exc) from exc

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()


def _sockname(addr: tuple) -> tuple[str, int]:
    return (addr[0], addr[1]) if isinstance(addr, tuple) else ("", 0)


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


class _Connection:
    def __init__(
        self,
        stream: _Socket,
        client: tuple[str, int],
        handler: Handler,
        idle_timeout: float,
        server: bytes,
    ) -> None:
        self.stream = stream
        self.client = client
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.server = server
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADER_BYTES)

    async def run(self) -> None:
        try:
            await self._serve()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass  # the peer went away: nothing to tell anyone
        except OSError as exc:
            log.debug("connection from %s: %s", self.client, exc)
        finally:
            self.stream.close()

    async def _next_event(self) -> h11.Event | type[h11.PAUSED] | None:
        """The next h11 event, or None when the idle timeout passed."""
        event = self.conn.next_event()
        if event is not h11.NEED_DATA:
            return event  # already buffered (a GET's EndOfMessage): no I/O, no scope
        data = self.stream.try_receive(_RECEIVE_SIZE)
        if data is not None:  # the request is there already (it usually is on a new
            self.conn.receive_data(data)  # connection): no cancel scope, no parking
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
        with trio.move_on_after(self.idle_timeout):
            while True:
                data = await self.stream.receive_some(_RECEIVE_SIZE)
                self.conn.receive_data(data)
                event = self.conn.next_event()
                if event is not h11.NEED_DATA:
                    return event
        return None

    async def _serve(self) -> None:
        served = 0
        while True:
            served += 1
            if served % _FAIRNESS_EVERY == 0:
                # Requests already buffered are served without parking (see _Socket):
                # a pipelining client must still let the other connections run.
                await trio.lowlevel.checkpoint()
            try:
                event = await self._next_event()
                if event is None or isinstance(event, h11.ConnectionClosed):
                    return
                if not isinstance(event, h11.Request):
                    return  # PAUSED or stray data: nothing sensible to answer
                request = Request(
                    method=event.method,
                    target=event.target,
                    headers=tuple((bytes(k), bytes(v)) for k, v in event.headers),
                    client=self.client,
                    http_version=event.http_version,
                )
                if not await self._drain_body():
                    await self._send_simple(413, b"request body too large\n", close=True)
                    return
            except h11.RemoteProtocolError as exc:
                if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    status = exc.error_status_hint or 400
                    await self._send_simple(status, b"bad request\n", close=True)
                return
            response = await self._call(request)
            await self._send(request, response)
            if self.conn.our_state is h11.MUST_CLOSE or self.conn.their_state is h11.MUST_CLOSE:
                return
            try:
                self.conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _drain_body(self) -> bool:
        received = 0
        while True:
            event = await self._next_event()
            if event is None or isinstance(event, h11.ConnectionClosed):
                raise trio.BrokenResourceError
            if isinstance(event, h11.EndOfMessage):
                return True
            if isinstance(event, h11.Data):
                received += len(event.data)
                if received > _MAX_BODY_BYTES:
                    return False

    async def _call(self, request: Request) -> Response:
        try:
            return await self.handler(request)
        except Exception:
            log.exception("handler failed for %r %r", request.method, request.target[:200])
            return Response(500, [(b"content-type", b"text/plain")], b"internal error\n")

    def _base_headers(
        self, headers: list[tuple[bytes, bytes]], names: set[bytes] | None = None
    ) -> list[tuple[bytes, bytes]]:
        if names is None:
            names = {k.lower() for k, _ in headers}
        extra = []
        if b"date" not in names:
            extra.append((b"date", _date.get()))
        if b"server" not in names:
            extra.append((b"server", self.server))
        return extra + headers

    async def _send(self, request: Request, response: Response) -> None:
        names = {k.lower() for k, _ in response.headers}
        headers = self._base_headers(list(response.headers), names)
        body = response.body
        if isinstance(body, bytes | bytearray) and b"content-length" not in names:
            headers.append((b"content-length", b"%d" % len(body)))
        try:
            data = self.conn.send(h11.Response(status_code=response.status, headers=headers))
        except h11.LocalProtocolError:
            log.exception("invalid response from handler for %r", request.target[:200])
            data = self.conn.send(
                h11.Response(
                    status_code=500,
                    headers=self._base_headers(
                        [(b"content-length", b"0"), (b"connection", b"close")]
                    ),
                )
            )
            body = b""
        if request.method == b"HEAD":
            await self.stream.send_all(data + self.conn.send(h11.EndOfMessage()))
            return
        if isinstance(body, bytes | bytearray):
            # The whole response in one write: one syscall and one checkpoint, not three.
            try:
                if body:
                    data += self.conn.send(h11.Data(data=body))
                end = self.conn.send(h11.EndOfMessage())
            except h11.LocalProtocolError:
                # A handler's Content-Length that is not the body's: close rather than lie.
                await self.stream.send_all(data)
                raise trio.BrokenResourceError from None
            await self.stream.send_all(data + end)
            return
        await self.stream.send_all(data)
        try:
            async for chunk in body:
                if chunk:
                    await self.stream.send_all(self.conn.send(h11.Data(data=chunk)))
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
        try:
            await self.stream.send_all(self.conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:
            # A streamed body shorter than its Content-Length: close rather than lie.
            raise trio.BrokenResourceError from None

    async def _send_simple(self, status: int, body: bytes, *, close: bool) -> None:
        headers = self._base_headers(
            [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
        )
        if close:
            headers.append((b"connection", b"close"))
        try:
            await self.stream.send_all(
                self.conn.send(h11.Response(status_code=status, headers=headers))
                + self.conn.send(h11.Data(data=body))
                + self.conn.send(h11.EndOfMessage())
            )
        except h11.LocalProtocolError:
            return
        if close:
            await self._linger()

    async def _linger(self) -> None:
        """Half-close and drain what the peer still sends, briefly, so that our error
        response is read before the kernel answers unread data with a reset."""
        with trio.move_on_after(1.0):
            try:
                await self.stream.send_eof()
                drained = 0
                while drained < _MAX_BODY_BYTES and (
                    chunk := await self.stream.receive_some(_RECEIVE_SIZE)
                ):
                    drained += len(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
