"""The tracker's HTTP front: one trio task serving every connection from one epoll set.

A tracker request is tiny and its handler (``TrackerCore.http``) is synchronous and pure,
so a task per connection (spawn, scheduler trips, an epoll registration per wait) costs
more than the announce itself. Here ONE task owns a ``select.epoll`` set holding the
listeners and their connections, parks on ``trio.lowlevel.wait_readable`` of that set
when nothing is ready, and serves every ready fd synchronously: accept all pending,
``recv``, parse (:class:`httpshell.parser.RequestParser`: same httptools parser and
caps), call the handler, ``send``, close or keep. A new connection whose first read is
one whole plain request that closes after its answer (what tracker clients send:
``parser.parse_whole``) is answered and closed right there, with no connection object,
epoll registration or slot, as it never outlives the call (``defer_accept`` has the kernel
accept only once the request is there); anything else gets a connection object in the
epoll set.

Same behaviour as ``httpshell.serve.serve_http`` for bytes responses: keep-alive and
pipelining (answered in order), ``Connection: close``, HTTP/1.0, HEAD, 100-continue,
caps (16 KiB head -> 414/431, 1 MiB body -> 413, parser errors -> 400, each answered,
then a half-close and a short drain), deadlines counted in total, not restarted by each
byte (``httpshell.deadlines``: a request head within ``header_timeout`` of the connection's
start or of its first byte, keep-alive idle ``idle_timeout``, bodies and answers at a
minimum rate), fair slots (``httpshell.slots``: ``max_connections`` in all, at most
``max_connections_per_ip`` per client address; when full, a new connection evicts the
oldest one still waiting for a request head, and only when none waits is it refused with
503), a handler's exception -> 500 and a log line, never a traceback.
Backpressure: while a connection's answers wait for the client to read, nothing more is
read or answered for it. Handlers cannot stream (the S3 API and /metrics use
``serve_http``). Cancellation closes every socket and the epoll set.
"""

from __future__ import annotations

import _socket
import functools
import logging
import math
import select
import socket
from collections.abc import Callable
from typing import NoReturn

import trio

from httpshell.deadlines import Timeouts
from httpshell.listeners import ACCEPT_BURST, ACCEPT_RESOURCE_ERRNOS, open_listeners
from httpshell.messages import Request, Response
from httpshell.parser import RequestParser, parse_whole
from httpshell.render import error_response, render_response
from httpshell.slots import Slots

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
# What a connection is doing, for its deadline and its slot (see _Loop.rearm).
_HEAD, _IDLE, _BUSY, _BODY, _SENDING = range(5)


class _Conn(RequestParser):
    """One connection's state in the loop (the parser state is inherited)."""

    __slots__ = (
        "closing", "counted", "deadline", "drained", "draining", "fd", "key", "linger", "mask",
        "moved", "nodelay", "out", "phase", "proxied", "registered", "since", "sock",
    )  # fmt: skip

    def __init__(
        self, sock: _socket.socket, client: tuple[str, int], deadline: float, key: str | None
    ) -> None:
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
        self.phase = _HEAD  # a new connection waits for its first head
        self.since = 0.0  # when the body or answer being moved started
        self.moved = 0  # answer bytes taken by the kernel since ``since``
        self.key = key  # the client its slot is counted for (None: a trusted proxy's)
        self.proxied = key is None
        self.counted = True  # holds a slot in _Loop.slots


class _Loop:
    def __init__(
        self,
        handler: SyncHandler,
        listeners: list[socket.socket],
        timeouts: Timeouts,
        slots: Slots,
        server: bytes,
        proxied: Callable[[str], bool] | None = None,
        client_of: Callable[[Request], str] | None = None,
    ) -> None:
        self.handler = handler
        self.listeners = {lst.fileno(): lst for lst in listeners}
        self.families = {lst.fileno(): int(lst.family) for lst in listeners}
        self.timeouts = timeouts
        self.idle_timeout = timeouts.idle
        self.header_timeout = timeouts.header
        self.slots = slots
        self.proxied = proxied
        self.client_of = client_of
        self.server = server
        self.ep = select.epoll()
        self.conns: dict[int, _Conn] = {}
        self.pending: list[_Conn] = []  # connections with requests left to answer
        self.late: list[_Conn] = []  # accepted in this batch before their request came
        self.paused: list[socket.socket] = []  # listeners out of resources
        self.resume_at = math.inf
        self.now = trio.current_time()
        self.sweep_every = max(0.05, min(1.0, min(timeouts.idle, timeouts.header) / 4))
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
        fd = self.ep.fileno()
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
            if wake == math.inf:
                await trio.lowlevel.wait_readable(fd)
            else:
                with trio.move_on_at(wake):
                    await trio.lowlevel.wait_readable(fd)
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
            client = (addr[0], addr[1])
            key = None if self.proxied is not None and self.proxied(client[0]) else client[0]
            data: bytes | None = b""
            tried = key is not None and self.slots.free(key)
            if tried:
                try:
                    data = self.at_once(sock, fd, client, key)
                except Exception:  # a bug: this connection closes, not the loop (guarded())
                    log.exception("http connection from %s failed", client[0])
                    sock.close()
                    continue
                if data is None:
                    continue  # answered and closed, or gone
            admitted, evict = self.slots.open(fd, key)
            if not admitted:
                self.refuse(sock)
                continue
            if evict is not None:
                self.evict(evict)
            conn = _Conn(sock, client, self.now + self.header_timeout, key)
            self.conns[fd] = conn
            if data:
                self.guarded(functools.partial(self.take, data=data), conn)
            elif tried:
                self.want(conn, _IN)  # read already: nothing yet
            else:
                self.guarded(self.read, conn)  # the request has usually arrived already
            if conn.mask == _IN and self.conns.get(fd) is conn:
                self.late.append(conn)

    def at_once(
        self, sock: _socket.socket, fd: int, client: tuple[str, int], key: str
    ) -> bytes | None:
        """Read a new connection that ``Slots`` would admit without evicting anyone. One
        whole request that closes after its answer (``parse_whole``) is answered and the
        socket closed, with no state kept: it never holds a slot across a wake-up, so it
        is not counted in one. Returns None for that (or a client gone), else what was
        read for the connection's parser (b"": nothing yet)."""
        try:
            data = sock.recv(_RECEIVE_SIZE, _DONTWAIT)
        except BlockingIOError:
            return b""  # not here yet (no deferred accept, or it expired)
        except OSError:
            data = b""
        whole = parse_whole(data, client) if data else None
        if data and (whole is None or whole[1]):
            return data  # unusual, pipelined or kept open: the connection object's
        if whole is None:
            sock.close()  # gone before sending anything
            return None
        request = whole[0]
        try:
            response = self.handler(request)
        except Exception:
            log.exception("handler failed for %r %r", request.method, request.target[:200])
            response = _INTERNAL_ERROR
        out = render_response(request, response, False, self.server)[0]
        try:
            sent = sock.send(out, _DONTWAIT_MORE)  # MSG_MORE: see flush()
        except BlockingIOError:
            sent = 0
        except OSError:
            sent = len(out)  # the client is gone: nothing more to do
        if sent == len(out):
            sock.close()
            return None
        # The kernel took part of it (never seen with tracker answers): a connection object
        # sends the rest under the usual deadlines. Admission was checked: nobody is evicted.
        self.slots.open(fd, key)
        self.slots.busy(fd)
        conn = self.conns[fd] = _Conn(sock, client, self.now, key)
        conn.release()  # nothing more is read
        conn.out, conn.closing, conn.phase = out[sent:], True, _BUSY
        self.rearm(conn)
        self.want(conn, _OUT)
        return None

    def evict(self, fd: object) -> None:
        """Close the connection ``Slots`` chose to make room (it forgot it already)."""
        victim = self.conns.get(fd)  # type: ignore[call-overload]
        if victim is not None:
            victim.counted = False
            self.drop(victim)

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
        if conn.draining:
            conn.drained += len(data)
            if conn.drained >= _MAX_DRAIN:
                self.drop(conn)
            return
        self.take(conn, data)

    def take(self, conn: _Conn, data: bytes) -> None:
        """Parse ``data`` (at a request boundary, a whole plain request is read without
        the parser: ``parse_whole``), then answer what is complete."""
        whole = None
        if not (conn.in_head or conn.in_body or conn.broken):
            whole = parse_whole(data, conn.client)
        if whole is None:
            conn.feed(data)
        else:
            conn.ready.append(whole)
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
                self.rearm(conn)
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
            self.rearm(conn)
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
                if conn.phase < _BUSY:  # _HEAD or _IDLE: a head is complete now
                    conn.phase = _BUSY
                    self.slots.busy(conn.fd)
                if conn.proxied and not self.rekey(conn, request):
                    parts.append(self.refusal)
                    conn.closing = True
                    break
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
        conn.moved += sent
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
        conn.deadline = self.now + _LINGER  # in total, not per byte drained
        self.want(conn, _IN)

    def want(self, conn: _Conn, mask: int) -> None:
        if conn.mask != mask or not conn.registered:
            if conn.registered:
                self.ep.modify(conn.fd, mask)
            else:
                self.ep.register(conn.fd, mask)
                conn.registered = True
            conn.mask = mask

    def rearm(self, conn: _Conn) -> None:
        """Set ``conn``'s deadline (and its slot's state) for what it waits for now: an
        answer to be read or a body to arrive (minimum rate), a head (in total), or the
        next request (keep-alive idle: evictable again)."""
        now = self.now
        if conn.out:
            if conn.phase != _SENDING:
                conn.phase, conn.since, conn.moved = _SENDING, now, 0
            conn.deadline = self.timeouts.transfer_deadline(conn.since, conn.moved)
        elif conn.in_body:
            if conn.phase != _BODY:
                if conn.phase < _BUSY:  # its head is complete: no longer evictable
                    self.slots.busy(conn.fd)
                conn.phase, conn.since = _BODY, now
            conn.deadline = self.timeouts.transfer_deadline(conn.since, conn.body_bytes)
        elif conn.in_head:
            if conn.phase != _HEAD:
                if conn.phase != _IDLE:
                    self.slots.idle(conn.fd, conn.key)
                conn.phase = _HEAD
                conn.deadline = now + self.header_timeout
        elif conn.phase != _HEAD and conn.phase != _IDLE:
            conn.phase = _IDLE
            conn.deadline = now + self.idle_timeout
            self.slots.idle(conn.fd, conn.key)

    def rekey(self, conn: _Conn, request: Request) -> bool:
        """Count a trusted proxy's connection for the client it forwards; False when
        that client is at its cap."""
        assert self.client_of is not None
        key = self.client_of(request)
        if not self.slots.rekey(conn.fd, conn.key, key):
            return False
        conn.key = key
        return True

    def drop(self, conn: _Conn) -> None:
        """Close ``conn`` (closing the fd also takes it out of the epoll set)."""
        if self.conns.get(conn.fd) is conn:
            del self.conns[conn.fd]
            if conn.counted:
                conn.counted = False
                self.slots.close(conn.fd, conn.key)
        conn.sock.close()
        conn.release()  # no cycle left: freed by refcount as soon as it is unreferenced


async def serve_http_sync(
    handler: SyncHandler,
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
    defer_accept: bool = False,
) -> NoReturn:
    """Listen on ``host:port`` (port 0 picks one) and serve the synchronous ``handler``
    (``Request -> Response`` with a bytes body) until cancelled, from this one task.

    Reports the bound ``[(host, port), ...]`` through ``task_status.started``. Deadlines
    (``header_timeout``, ``idle_timeout``, ``min_rate``: ``httpshell.deadlines``) and slots
    (``max_connections``, ``max_connections_per_ip``, 0 = no per-address cap:
    ``httpshell.slots``) as in the module docstring. ``proxied(host)``: whether a peer is a
    trusted proxy, whose connections are counted per request for ``client_of(request)``
    (the client it names) instead. ``defer_accept``: a connection is accepted once its
    first bytes arrive, or after about a second without any (TCP_DEFER_ACCEPT), so that
    a whole request is usually served at once with no state kept; for clients that send
    their request right after connecting (the tracker's). Never returns unless cancelled;
    a handler's exception becomes a 500 and a log line.
    """
    bound, socks = await open_listeners(host, port)
    if defer_accept:
        for sock in socks:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
    loop = _Loop(
        handler,
        socks,
        Timeouts(header_timeout, idle_timeout, min_rate),
        Slots(max_connections, max_connections_per_ip),
        server_header,
        proxied if client_of is not None else None,
        client_of,
    )
    try:
        task_status.started(bound)
        await loop.run()
    finally:
        loop.close()
