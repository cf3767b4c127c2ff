"""The HTTP/1.1 shell of the S3 API and the metrics endpoint: httptools (llhttp) on
trio, a task per connection. Its request framing (``RequestParser``) and response
rendering (``render_response``) are sans-I/O and shared with the tracker's one-task
front, ``httpshell.epoll``.

A handler is ``async (Request) -> Response``; this module owns sockets, framing,
keep-alive, timeouts and the rule that a client never sees a traceback. The APIs served
here are GET/HEAD only, so request bodies are drained (up to a cap) and ignored.
The parser is llhttp's (via httptools); the response head is written here, which is
most of what h11 cost per request (parsing, then formatting and validating the answer).
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import NamedTuple, NoReturn

import httptools
import trio

__all__ = [
    "ACCEPT_BURST",
    "ACCEPT_RESOURCE_ERRNOS",
    "Handler",
    "Request",
    "RequestParser",
    "Response",
    "error_response",
    "open_listeners",
    "render_response",
    "response_head",
    "serve_http",
]

log = logging.getLogger(__name__)

_RECEIVE_SIZE = 65536
_MAX_HEADER_BYTES = 16384
_MAX_BODY_BYTES = 1 << 20  # nothing here takes a body; refuse floods, drain small ones
_FAIRNESS_EVERY = 16  # requests on one connection between forced checkpoints


class Request(NamedTuple):
    """One parsed request. Header names are lower-case bytes, values raw bytes.
    (Immutable; a NamedTuple because one is built per request and a frozen dataclass
    costs several times more to build.)"""

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
            await _Connection(conn, _sockname(addr), handler, idle_timeout, server_header).run()
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


async def open_listeners(host: str, port: int) -> tuple[list[tuple[str, int]], list[socket.socket]]:
    """Bind ``host:port`` (port 0 picks one): the bound ``(host, port)`` of each listener and
    the listeners as plain non-blocking sockets, for both HTTP fronts. trio binds (every
    address family of ``host``, SO_REUSEADDR, backlog); the serving is done on plain sockets."""
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=1024)
    bound = [_sockname(lst.socket.getsockname()) for lst in listeners]
    socks = [socket.socket(fileno=lst.socket.detach()) for lst in listeners]
    for sock in socks:
        sock.setblocking(False)
    return bound, socks


ACCEPT_BURST = 64  # connections accepted per wake-up of a listener
# What trio.serve_listeners also treats as "out of resources, retry soon".
ACCEPT_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


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


# "HTTP/1.1 200 OK\r\n" for every status Python knows; others get an empty reason.
_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_NO_BODY_STATUSES = frozenset({204, 304})
# A header line still being received is buffered inside httptools, where it cannot be
# measured; it is bounded by the bytes received since the parser last reported progress.
_MAX_PARTIAL_HEAD = _MAX_HEADER_BYTES + _RECEIVE_SIZE
_ERROR_BODIES = {
    413: b"request body too large\n",
    414: b"request target too long\n",
    431: b"request header fields too large\n",
}
_VERSIONS = {"1.1": b"1.1", "1.0": b"1.0"}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d \r\n" % status


class _Reject(Exception):
    """Raised from a parser callback to stop parsing; the status is in _Connection.rejected."""


# What the parser hands the serving loop, in arrival order: a complete request and whether
# the connection stays open after it; an error status to answer before closing; an interim
# response to write (100 Continue); or None: stop (an Upgrade, nothing here speaks another
# protocol).
_Item = tuple[Request, bool] | int | bytes | None


class RequestParser:
    """Sans-I/O request framing shared by the HTTP shells: httptools parses what is fed
    into ``ready`` (see _Item), with this module's caps (16 KiB head -> 414/431, 1 MiB
    body -> 413, parser errors -> 400, HTTP/1.1 without Host -> 400). ``broken``: the
    parser stopped, nothing more is to be read. The ``on_*`` methods are httptools'
    protocol.

    The parser holds this object and this object the parser: a reference cycle, which
    ``release()`` breaks so that a closed connection is freed by refcount, not by the
    cyclic GC (one cycle per connection adds up on a tracker)."""

    __slots__ = (
        "body_bytes",
        "broken",
        "client",
        "expect_continue",
        "has_host",
        "head_bytes",
        "headers",
        "in_body",
        "in_head",
        "method",
        "parser",
        "partial_head",
        "progressed",
        "ready",
        "rejected",
        "url",
        "version",
    )

    def __init__(self, client: tuple[str, int]) -> None:
        self.client = client
        self.ready: deque[_Item] = deque()
        self.rejected = 0
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.broken = False  # the parser stopped: nothing more is read
        # The message being parsed.
        self.method = b""
        self.version = b"1.1"
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.body_bytes = 0
        self.in_head = False
        self.in_body = False
        self.has_host = False
        self.expect_continue = False
        self.progressed = False
        self.partial_head = 0

    def release(self) -> None:
        """Drop the parser (and so the cycle); nothing may be fed after this."""
        self.parser = None
        self.broken = True

    # -- httptools callbacks ------------------------------------------------------------

    def _reject(self, status: int) -> NoReturn:
        self.rejected = status
        raise _Reject

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_bytes = self.body_bytes = 0
        self.in_head = True
        self.has_host = self.expect_continue = False
        self.progressed = True

    def on_url(self, url: bytes) -> None:
        self.progressed = True
        self.url += url  # may come in pieces
        self.head_bytes += len(url)
        if self.head_bytes > _MAX_HEADER_BYTES:
            self._reject(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.progressed = True
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > _MAX_HEADER_BYTES:
            self._reject(431)
        name = name.lower()
        self.headers.append((name, value))
        if name == b"host":
            self.has_host = True
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.in_body = True
        parser = self.parser
        self.method = parser.get_method()  # type: ignore[union-attr]
        version = parser.get_http_version()  # type: ignore[union-attr]
        self.version = _VERSIONS.get(version) or version.encode()
        if version == "1.1":
            if not self.has_host:
                self._reject(400)  # RFC 9112 3.2: a 1.1 request without Host is a 400
        else:
            self.expect_continue = False  # 100 Continue is HTTP/1.1 only
        if self.expect_continue:
            # The client waits before sending the body: refuse a too-large one now.
            for name, value in self.headers:
                if name == b"content-length" and value.isdigit() and int(value) > _MAX_BODY_BYTES:
                    self._reject(413)

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > _MAX_BODY_BYTES:
            self._reject(413)

    def on_message_complete(self) -> None:
        self.in_body = False
        request = Request(self.method, self.url, tuple(self.headers), self.client, self.version)
        self.ready.append((request, self.parser.should_keep_alive()))  # type: ignore[union-attr]

    def feed(self, data: bytes) -> None:
        """Parse ``data``; complete requests, errors and interim responses go to ``ready``."""
        self.progressed = False
        try:
            self.parser.feed_data(data)  # type: ignore[union-attr]
        except httptools.HttpParserUpgrade:
            self.broken = True
            self.ready.append(None)
            return
        except httptools.HttpParserError:
            self.broken = True
            self.ready.append(self.rejected or 400)
            return
        if self.in_head:
            self.partial_head = len(data) if self.progressed else self.partial_head + len(data)
            if self.partial_head > _MAX_PARTIAL_HEAD:
                self.broken = True
                self.ready.append(431)
        elif self.in_body and self.expect_continue:
            self.expect_continue = False
            self.ready.append(_CONTINUE)


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
            data = self.stream.try_receive(_RECEIVE_SIZE)
            if data is None:
                with trio.move_on_after(self.idle_timeout):
                    data = await self.stream.receive_some(_RECEIVE_SIZE)
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
        head, close, length, chunked = _plan(request, response, keep_alive, self.server)
        if not head:
            await self.stream.send_all(_invalid_response(request, self.server))
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
                while drained < _MAX_BODY_BYTES and (
                    chunk := await self.stream.receive_some(_RECEIVE_SIZE)
                ):
                    drained += len(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass


# -- responses (pure; shared with httpshell.epoll) --------------------------------------


def response_head(
    status: int, headers: list[tuple[bytes, bytes]], names: set[bytes], server: bytes
) -> bytes:
    """The response head, or b"" when the handler's status or headers cannot be sent
    as they are (a CR or LF in a header would let it forge headers or a response).
    ``names``: the lower-case header names already in ``headers`` (Date and Server are
    added unless there)."""
    if not 200 <= status <= 999:
        return b""
    parts = [_status_line(status)]
    lines = 2 + len(headers)  # the status line, the headers, the blank line
    if b"date" not in names:
        parts += (b"date: ", _date.get(), b"\r\n")
        lines += 1
    if b"server" not in names:
        parts += (b"server: ", server, b"\r\n")
        lines += 1
    try:
        for k, v in headers:
            parts += (k, b": ", v, b"\r\n")
        parts.append(b"\r\n")
        head = b"".join(parts)
    except (TypeError, ValueError):
        return b""
    if head.count(b"\n") != lines or head.count(b"\r") != lines:
        return b""
    return head


def _plan(
    request: Request, response: Response, keep_alive: bool, server: bytes
) -> tuple[bytes, bool, int | None, bool]:
    """(head, close, the handler's Content-Length or None, chunked) for ``response``;
    head is b"" when the response cannot be sent as it is."""
    status = response.status
    headers = list(response.headers)
    body = response.body
    close = not keep_alive
    names = set()
    length: int | None = None
    try:
        for k, v in headers:
            name = k.lower()
            names.add(name)
            if name == b"connection" and b"close" in v.lower():
                close = True
            elif name == b"content-length":
                length = int(v)
    except (AttributeError, TypeError, ValueError):
        status = -1  # not sendable: becomes a 500
    chunked = False
    if isinstance(body, bytes | bytearray):
        if length is None and status not in _NO_BODY_STATUSES:
            headers.append((b"content-length", b"%d" % len(body)))
    elif length is None:
        if request.http_version == b"1.1":
            chunked = True
            headers.append((b"transfer-encoding", b"chunked"))
        else:
            close = True  # HTTP/1.0: the body ends where the connection does
    if close:
        if b"connection" not in names:
            headers.append((b"connection", b"close"))
    elif request.http_version == b"1.0" and b"connection" not in names:
        headers.append((b"connection", b"keep-alive"))
    return response_head(status, headers, names, server), close, length, chunked


def _invalid_response(request: Request, server: bytes) -> bytes:
    log.error("invalid response from handler for %r", request.target[:200])
    return response_head(500, [(b"content-length", b"0"), (b"connection", b"close")], set(), server)


def render_response(
    request: Request, response: Response, keep_alive: bool, server: bytes
) -> tuple[bytes, bool]:
    """The wire bytes answering ``request`` with ``response`` (a bytes body), and whether
    the connection stays open after them. HEAD and 204/304 get the head only; a handler's
    Content-Length that is not its body's length sends the head and closes (rather than
    lie); an unsendable status or header (or a body that is not bytes) becomes a bare 500
    and a close. The same head as the streaming path's (``_plan``), built in one pass:
    this runs once per tracker announce."""
    body = response.body
    status = response.status
    if not isinstance(body, bytes | bytearray) or type(status) is not int:
        return _invalid_response(request, server), False
    close = not keep_alive
    length = None
    has_date = has_server = has_connection = False
    try:
        lines = [k + b": " + v + b"\r\n" for k, v in response.headers]
        for k, v in response.headers:
            name = k.lower()
            if name == b"content-length":
                length = int(v)
            elif name == b"connection":
                has_connection = True
                if b"close" in v.lower():
                    close = True
            elif name == b"date":
                has_date = True
            elif name == b"server":
                has_server = True
    except (AttributeError, TypeError, ValueError):
        return _invalid_response(request, server), False
    no_body = status in _NO_BODY_STATUSES
    if length is None and not no_body:
        lines.append(b"content-length: %d\r\n" % len(body))
    if close:
        if not has_connection:
            lines.append(b"connection: close\r\n")
    elif request.http_version == b"1.0" and not has_connection:
        lines.append(b"connection: keep-alive\r\n")
    fields = b"".join(lines)
    # One line each: a CR or LF inside a handler's header would forge headers.
    if not 200 <= status <= 999 or not (fields.count(b"\n") == len(lines) == fields.count(b"\r")):
        return _invalid_response(request, server), False
    head = b"".join(
        (
            _status_line(status),
            b"" if has_date else b"date: " + _date.get() + b"\r\n",
            b"" if has_server else b"server: " + server + b"\r\n",
            fields,
            b"\r\n",
        )
    )
    if request.method == b"HEAD" or no_body:
        return head, not close
    if length is not None and length != len(body):
        return head, False
    return (head + body if body else head), not close


def error_response(status: int, server: bytes) -> bytes:
    """The shell's own error answer for ``status`` (400, 413, 414, 431...), closing."""
    body = _ERROR_BODIES.get(status, b"bad request\n")
    head = response_head(
        status,
        [
            (b"content-type", b"text/plain"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ],
        set(),
        server,
    )
    return head + body
