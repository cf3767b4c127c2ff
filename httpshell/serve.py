"""The HTTP/1.1 shell of the S3 API and the metrics endpoint: httptools (llhttp) on
trio, a task per connection. Request framing (``httpshell.parser``) and response
rendering (``httpshell.render``) are sans-I/O and shared with the tracker's one-task
front, ``httpshell.epoll``.

A handler is ``async (Request) -> Response``; this module owns sockets, keep-alive,
timeouts and the rule that a client never sees a traceback. A request body (at most
1 MiB, else 413) reaches the handler whole in ``Request.body``; the GET/HEAD APIs ignore
it, ``POST /-/events`` reads it. The parser is
llhttp's (via httptools); the response head is written here, which is most of what h11
cost per request (parsing, then formatting and validating the answer).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import NoReturn

import trio

from httpshell.listeners import ACCEPT_BURST, ACCEPT_RESOURCE_ERRNOS, open_listeners, sockname
from httpshell.messages import Handler, Request, Response
from httpshell.parser import MAX_BODY_BYTES, RECEIVE_SIZE, RequestParser
from httpshell.render import error_response, invalid_response, plan_response, render_response

__all__ = ["serve_http"]

log = logging.getLogger(__name__)

_FAIRNESS_EVERY = 16  # requests on one connection between forced checkpoints


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
    bound, socks = await open_listeners(host, port)
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
            await _Connection(conn, sockname(addr), handler, idle_timeout, server_header).run()
        finally:
            open_connections -= 1

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

    def __init__(
        self,
        stream: _Socket,
        client: tuple[str, int],
        handler: Handler,
        idle_timeout: float,
        server: bytes,
    ) -> None:
        super().__init__(client)
        self.stream = stream
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.server = server

    # -- reading ------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._serve()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass  # the peer went away: nothing to tell anyone
        except OSError as exc:
            log.debug("connection from %s: %s", self.client, exc)
        finally:
            self.stream.close()
            self.release()

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
            # The request is usually there already on a new connection: then no cancel
            # scope and no parking.
            data = self.stream.try_receive(RECEIVE_SIZE)
            if data is None:
                with trio.move_on_after(self.idle_timeout):
                    data = await self.stream.receive_some(RECEIVE_SIZE)
                if data is None:
                    return  # idle (between or inside requests) for too long
            if not data:
                return  # EOF; a request cut short is nobody's to answer
            self.feed(data)

    async def _call(self, request: Request) -> Response:
        try:
            return await self.handler(request)
        except Exception:
            log.exception("handler failed for %r %r", request.method, request.target[:200])
            return Response(500, [(b"content-type", b"text/plain")], b"internal error\n")

    # -- writing ------------------------------------------------------------------------

    async def _send(self, request: Request, response: Response, keep_alive: bool) -> bool:
        """Write ``response``; False when the connection must close after it."""
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
