"""The tracker's HTTP front: one trio task serving every connection from one epoll set.

A tracker request is tiny and its handler (``TrackerCore.http``) is synchronous and pure,
so a task per connection (spawn, scheduler trips, an epoll registration per wait) costs
more than the announce itself. Here ONE task owns a ``select.epoll`` set holding the
listeners and their connections, parks on ``trio.lowlevel.wait_readable`` of that set
when nothing is ready, and serves every ready fd synchronously: accept all pending,
``recv``, parse (:class:`httpshell.parser.RequestParser`: same httptools parser and
caps), call the handler, ``send``, close or keep. A connection that closes after one
answer (what real clients do) never touches the epoll set: the request is usually there
by the time it is accepted.

Same behaviour as ``httpshell.serve.serve_http`` for bytes responses: keep-alive and
pipelining (answered in order), ``Connection: close``, HTTP/1.0, HEAD, 100-continue,
caps (16 KiB head -> 414/431, 1 MiB body -> 413, parser errors -> 400, each answered,
then a half-close and a short drain), idle timeout (no progress either way for
``idle_timeout`` seconds: closed; this also bounds a client that never reads), a cap on
open connections (503), a handler's exception -> 500 and a log line, never a traceback.
Backpressure: while a connection's answers wait for the client to read, nothing more is
read or answered for it. Handlers cannot stream (the S3 API and /metrics use
``serve_http``). Cancellation closes every socket and the epoll set.
"""

from __future__ import annotations

import _socket
import logging
import math
import select
import socket
from collections.abc import Callable
from typing import NoReturn

import trio

from httpshell.listeners import ACCEPT_BURST, ACCEPT_RESOURCE_ERRNOS, open_listeners
from httpshell.messages import Request, Response
from httpshell.parser import RequestParser
from httpshell.render import error_response, render_response

__all__ = ["SyncHandler", "serve_http_sync"]

log = logging.getLogger(__name__)

SyncHandler = Callable[[Request], Response]

_RECEIVE_SIZE = 65536
_MAX_DRAIN = 1 << 20  # bytes read and dropped after an error answer (as httpserve)
_LINGER = 1.0  # seconds a half-closed connection is drained after an error answer
_MAX_EVENTS = 256  # ready fds served per wake-up
_ANSWERS_PER_TURN = 32  # pipelined requests answered per connection before the others
_MAX_PENDING_OUT = 65536  # answer no more while this much waits for the client to read
_ACCEPT_PAUSE = 0.1  # out of fds / memory: retry accepting after this long
_DONTWAIT = socket.MSG_DONTWAIT
_DONTWAIT_MORE = socket.MSG_DONTWAIT | socket.MSG_MORE
_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
_INTERNAL_ERROR = Response(500, [(b"content-type", b"text/plain")], b"internal error\n")
_REFUSAL_BODY = b"too many connections\n"


class _Conn(RequestParser):
    """One connection's state in the loop (the parser state is inherited)."""

    __slots__ = (
        "closing",
        "deadline",
        "drained",
        "draining",
        "fd",
        "linger",
        "mask",
        "nodelay",
        "out",
        "registered",
        "sock",
    )

    def __init__(self, sock: _socket.socket, client: tuple[str, int], deadline: float) -> None:
        super().__init__(client)
        self.sock = sock
        self.fd = sock.fileno()
        self.out = b""  # answers not yet taken by the kernel
        self.mask = 0  # what the epoll set waits for on this fd (0: nothing)
        self.registered = False  # the fd is in the epoll set
        self.nodelay = False  # TCP_NODELAY set (only once it outlives its first answer)
        self.closing = False  # close (or linger) once ``out`` is sent
        self.linger = False  # the close follows an error answer: half-close and drain
        self.draining = False  # half-closed: reading and dropping until EOF or deadline
        self.drained = 0
        self.deadline = deadline


class _Loop:
    def __init__(
        self,
        handler: SyncHandler,
        listeners: list[socket.socket],
        idle_timeout: float,
        max_connections: int,
        server: bytes,
    ) -> None:
        self.handler = handler
        self.listeners = {lst.fileno(): lst for lst in listeners}
        self.families = {lst.fileno(): int(lst.family) for lst in listeners}
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.server = server
        self.ep = select.epoll()
        self.conns: dict[int, _Conn] = {}
        self.pending: list[_Conn] = []  # connections with requests left to answer
        self.late: list[_Conn] = []  # accepted in this batch before their request came
        self.paused: list[socket.socket] = []  # listeners out of resources
        self.resume_at = math.inf
        self.now = trio.current_time()
        self.sweep_every = max(0.05, min(1.0, idle_timeout / 4))
        self.next_sweep = self.now + self.sweep_every
        self.refusal = (
            b"HTTP/1.1 503 Service Unavailable\r\nServer: "
            + server
            + b"\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
            % len(_REFUSAL_BODY)
            + _REFUSAL_BODY
        )
        for fd in self.listeners:
            self.ep.register(fd, _IN)

    async def run(self) -> NoReturn:
        poll = self.ep.poll
        while True:
            events = poll(0, _MAX_EVENTS)
            if events or self.pending:
                self.now = trio.current_time()
                self.serve(events)
                self.timers()
                # A busy loop still lets the UDP listener and the cleaner run.
                await trio.lowlevel.checkpoint()
                continue
            wake = min(self.next_sweep if self.conns else math.inf, self.resume_at)
            with trio.move_on_at(wake):
                await trio.lowlevel.wait_readable(self.ep.fileno())
            self.now = trio.current_time()
            self.timers()

    def close(self) -> None:
        """Close every connection, the listeners and the epoll set."""
        for conn in list(self.conns.values()):
            self.drop(conn)
        for lst in self.listeners.values():
            lst.close()
        trio.lowlevel.notify_closing(self.ep.fileno())
        self.ep.close()

    # -- events -----------------------------------------------------------------------

    def serve(self, events: list[tuple[int, int]]) -> None:
        pending, self.pending = self.pending, []
        for conn in pending:
            if self.conns.get(conn.fd) is conn:
                self.guarded(self.progress, conn)
        conns = self.conns
        ready_listeners = []
        for fd, _ev in events:
            conn = conns.get(fd)
            if conn is not None:
                if conn.mask == _OUT:
                    self.guarded(self.progress, conn)
                else:
                    self.guarded(self.read, conn)
            elif fd in self.listeners:
                ready_listeners.append(self.listeners[fd])
            # else: a connection closed earlier in this batch; its event is stale.
        # New connections last: the ones already accepted (whose request came after
        # the accept) go first, which keeps the wait close to first-come first-served.
        for listener in ready_listeners:
            self.accept(listener)
        # Accepted before their request arrived: it usually has by now (the burst took
        # a while); serving them now rather than after the next poll trims the tail.
        late, self.late = self.late, []
        for conn in late:
            if self.conns.get(conn.fd) is conn and not conn.ready and conn.mask == _IN:
                self.guarded(self.read, conn)

    def guarded(self, step: Callable[[_Conn], None], conn: _Conn) -> None:
        """A bug in serving one connection closes that connection, not the loop."""
        try:
            step(conn)
        except Exception:
            log.exception("http connection from %s failed", conn.client[0])
            self.drop(conn)

    def timers(self) -> None:
        now = self.now
        if now >= self.resume_at:
            for lst in self.paused:
                self.ep.register(lst.fileno(), _IN)
            self.paused.clear()
            self.resume_at = math.inf
        if now >= self.next_sweep:
            self.next_sweep = now + self.sweep_every
            for conn in [c for c in self.conns.values() if c.deadline <= now]:
                self.drop(conn)  # idle (or done lingering) for too long

    def accept(self, listener: socket.socket) -> None:
        # ``_accept`` is what socket.accept() calls, minus the socket object it builds
        # through the family/type enum properties (measurable per connection here).
        accept = listener._accept  # type: ignore[attr-defined]
        family = self.families[listener.fileno()]
        for _ in range(ACCEPT_BURST):
            try:
                fd, addr = accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in ACCEPT_RESOURCE_ERRNOS:
                    log.error("accept: %s; retrying in %.1f s", exc, _ACCEPT_PAUSE)
                    self.ep.unregister(listener.fileno())
                    self.paused.append(listener)
                    self.resume_at = self.now + _ACCEPT_PAUSE
                    return
                continue  # ECONNABORTED and friends: that client is gone already
            # Left in blocking mode: every recv/send passes MSG_DONTWAIT instead, which
            # saves a syscall per connection. The C socket type, not socket.socket: its
            # Python-level __init__ and close() wrappers are measurable here too.
            sock = _socket.socket(family, socket.SOCK_STREAM, 0, fd)
            if len(self.conns) >= self.max_connections:
                self.refuse(sock)
                continue
            conn = _Conn(sock, (addr[0], addr[1]), self.now + self.idle_timeout)
            self.conns[fd] = conn
            self.guarded(self.read, conn)  # the request has usually arrived already
            if conn.mask == _IN and self.conns.get(fd) is conn:
                self.late.append(conn)

    def refuse(self, sock: _socket.socket) -> None:
        try:
            sock.send(self.refusal, _DONTWAIT)  # a new socket's buffer takes it whole
        except OSError:
            pass
        sock.close()

    # -- one connection ---------------------------------------------------------------

    def read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(_RECEIVE_SIZE, _DONTWAIT)
        except BlockingIOError:
            self.want(conn, _IN)
            return
        except OSError:
            self.drop(conn)
            return
        if not data:
            self.drop(conn)  # EOF; a request cut short is nobody's to answer
            return
        conn.deadline = self.now + (_LINGER if conn.draining else self.idle_timeout)
        if conn.draining:
            conn.drained += len(data)
            if conn.drained >= _MAX_DRAIN:
                self.drop(conn)
            return
        conn.feed(data)
        self.progress(conn)

    def progress(self, conn: _Conn) -> None:
        """Answer what is parsed, send, then wait for the right thing (or close)."""
        ready = conn.ready
        answered = 0
        while True:
            if ready and not conn.closing and len(conn.out) < _MAX_PENDING_OUT:
                if answered >= _ANSWERS_PER_TURN:
                    # The others first; resumed next turn. Read no more meanwhile, or a
                    # pipelining flood would be parsed faster than it is answered.
                    self.pending.append(conn)
                    if conn.registered:
                        self.want(conn, 0)
                    return
                answered += self.answer(conn)
            if conn.out and not self.flush(conn):
                return
            if conn.out:
                self.want(conn, _OUT)  # the client is not reading: wait, read no more
                return
            if ready and not conn.closing:
                continue
            break
        if conn.closing:
            if conn.linger and not conn.draining:
                self.start_drain(conn)
            else:
                self.drop(conn)
        elif conn.broken:
            self.drop(conn)
        else:
            if not conn.nodelay and answered:
                # Kept open after an answer: pipelined answers must not wait on Nagle.
                # (A connection closed after one answer never needs it: saved syscall.)
                conn.nodelay = True
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.want(conn, _IN)

    def answer(self, conn: _Conn) -> int:
        """Answer parsed items into ``conn.out`` until the output cap; returns how many
        requests were answered."""
        ready = conn.ready
        server = self.server
        parts = [conn.out] if conn.out else []
        size = len(conn.out)
        count = 0
        while ready and size < _MAX_PENDING_OUT and count < _ANSWERS_PER_TURN:
            item = ready.popleft()
            if type(item) is tuple:
                count += 1
                request, keep_alive = item
                try:
                    response = self.handler(request)
                except Exception:
                    log.exception("handler failed for %r %r", request.method, request.target[:200])
                    response = _INTERNAL_ERROR
                data, keep = render_response(request, response, keep_alive, server)
                parts.append(data)
                size += len(data)
                if not keep:
                    conn.closing = True
                    break
            elif item is None:  # an Upgrade: nothing here speaks another protocol
                conn.closing = True
                break
            elif type(item) is int:
                parts.append(error_response(item, server))
                conn.closing = conn.linger = True
                break
            else:
                parts.append(item)  # 100 Continue
                size += len(item)
        if conn.closing:
            ready.clear()
        conn.out = parts[0] if len(parts) == 1 else b"".join(parts)
        return max(count, 1)

    def flush(self, conn: _Conn) -> bool:
        """Send what the kernel takes now; False when the connection was dropped."""
        # Closing right after: MSG_MORE holds the tail so that the FIN rides on the
        # answer's last segment (one segment through both TCP stacks instead of two).
        flags = _DONTWAIT_MORE if conn.closing else _DONTWAIT
        try:
            sent = conn.sock.send(conn.out, flags)
        except BlockingIOError:
            return True
        except OSError:
            self.drop(conn)
            return False
        conn.out = conn.out[sent:]
        conn.deadline = self.now + self.idle_timeout
        return True

    def start_drain(self, conn: _Conn) -> None:
        """Half-close and drain what the peer still sends, briefly, so that our error
        answer is read before the kernel answers unread data with a reset."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.drop(conn)
            return
        conn.draining = True
        conn.release()  # nothing more is parsed
        conn.deadline = self.now + _LINGER
        self.want(conn, _IN)

    def want(self, conn: _Conn, mask: int) -> None:
        if conn.mask != mask or not conn.registered:
            if conn.registered:
                self.ep.modify(conn.fd, mask)
            else:
                self.ep.register(conn.fd, mask)
                conn.registered = True
            conn.mask = mask

    def drop(self, conn: _Conn) -> None:
        """Close ``conn`` (closing the fd also takes it out of the epoll set)."""
        if self.conns.get(conn.fd) is conn:
            del self.conns[conn.fd]
        conn.sock.close()
        conn.release()  # no cycle left: freed by refcount as soon as it is unreferenced


async def serve_http_sync(
    handler: SyncHandler,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
    idle_timeout: float = 30.0,
    max_connections: int = 1024,
    server_header: bytes = b"s3torrent",
) -> NoReturn:
    """Listen on ``host:port`` (port 0 picks one) and serve the synchronous ``handler``
    (``Request -> Response`` with a bytes body) until cancelled, from this one task.

    Reports the bound ``[(host, port), ...]`` through ``task_status.started``. The
    options mean what they mean for ``httpshell.serve.serve_http``. Never returns
    unless cancelled; a handler's exception becomes a 500 and a log line.
    """
    bound, socks = await open_listeners(host, port)
    loop = _Loop(handler, socks, idle_timeout, max_connections, server_header)
    try:
        task_status.started(bound)
        await loop.run()
    finally:
        loop.close()
