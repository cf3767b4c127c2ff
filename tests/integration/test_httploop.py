"""httpshell.epoll (the tracker's one-task HTTP front) over real loopback sockets.

The contract it shares with the task shell runs against both in test_httpserve.py; here
are its own edges: requests split across reads, long pipelines, a client that never reads,
cancellation."""

from __future__ import annotations

import socket

import pytest
import trio

from httpshell import Request, Response, serve_http_sync
from tests.helpers import exchange, read_all

HUGE = b"h" * (8 << 20)  # more than a new connection's socket buffers take at once


def handler(request: Request) -> Response:
    if request.target == b"/boom":
        raise RuntimeError("handler bug: must become a 500, never a traceback")
    if request.target == b"/inject":
        return Response(200, [(b"x-bad", b"1\r\nset-cookie: evil")], b"body")
    if request.target == b"/big":
        return Response(200, [], b"x" * 20000)
    if request.target == b"/huge":
        return Response(200, [], HUGE)
    body = b"%s %s from %s" % (request.method, request.target, request.client[0].encode())
    echo = request.header(b"x-echo") or b""
    return Response(200, [(b"content-type", b"text/plain"), (b"x-echo", echo)], body)


async def start(nursery: trio.Nursery, **kwargs: object) -> tuple[str, int]:
    bound = await nursery.start(
        lambda task_status: serve_http_sync(
            handler, "127.0.0.1", 0, task_status=task_status, **kwargs
        )
    )
    return bound[0]


# -- the loop's own edges ----------------------------------------------------------------


async def answered(host: str, port: int) -> bool:
    data = await exchange(
        host, port, b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    return data.startswith(b"HTTP/1.1 200 ")


async def test_a_request_split_across_reads(nursery: trio.Nursery) -> None:
    host, port = await start(nursery)
    stream = await trio.open_tcp_stream(host, port)
    request = b"GET /split?a=1 HTTP/1.1\r\nHost: x\r\nX-Echo: yes\r\nConnection: close\r\n\r\n"
    for cut in (3, 17, 30, 45):
        await stream.send_all(request[:cut])
        request = request[cut:]
        # Another connection answered: the loop has had its turn at this fragment.
        assert await answered(host, port)
    await stream.send_all(request)
    data = await read_all(stream)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.endswith(b"GET /split?a=1 from 127.0.0.1") and b"x-echo: yes" in data


async def test_a_long_pipeline_is_answered_in_order(nursery: trio.Nursery) -> None:
    host, port = await start(nursery)
    n = 300  # several turns' worth: the loop interleaves other connections between them
    raw = b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(n))
    stream = await trio.open_tcp_stream(host, port)
    async with trio.open_nursery() as inner:
        inner.start_soon(
            stream.send_all, raw + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = await read_all(stream)
    assert data.count(b"HTTP/1.1 200 ") == n + 1
    positions = [data.index(b"GET /p%d from" % i) for i in range(n)]
    assert positions == sorted(positions)
    assert data.endswith(b"GET /last from 127.0.0.1")


async def test_a_client_that_never_reads_holds_nobody_up_and_is_closed(
    nursery: trio.Nursery,
) -> None:
    # One slot: while the stuck client holds it, a newcomer gets the loop's 503 (the loop
    # still serves); once the stuck one is dropped for making no progress, a 200.
    host, port = await start(nursery, idle_timeout=1.0, max_connections=1)
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect((host, port))
    stuck = trio.SocketStream(sock)
    await stuck.send_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 2000)  # 40 MB of answers
    statuses = []
    with trio.fail_after(30):
        while True:
            data = await exchange(
                host, port, b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            statuses.append(data[9:12])
            if statuses[-1] == b"200":
                break
            await trio.sleep(0.05)  # poll pacing
    assert statuses[0] == b"503" and set(statuses[:-1]) == {b"503"}
    got = 0
    with trio.fail_after(10):
        try:
            while chunk := await stuck.receive_some(65536):
                got += len(chunk)
        except trio.BrokenResourceError:
            pass  # a reset for the requests it never read: closed all the same
    assert got < 2000 * 20000


async def test_an_answer_sent_at_once_that_the_kernel_takes_in_part_is_finished(
    nursery: trio.Nursery,
) -> None:
    # A plain socket connects and sends before the loop runs again: the request is there
    # at the accept, so it is answered at once; 8 MiB cannot leave in one send.
    host, port = await start(nursery, defer_accept=True)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, port))
    sock.sendall(b"GET /huge HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    data = await read_all(stream, deadline=20)
    assert data.startswith(b"HTTP/1.1 200 ") and b"connection: close" in data
    assert data.endswith(HUGE) and b"content-length: %d" % len(HUGE) in data


async def test_deferred_accept_serves_late_requests_and_closes_silent_connections(
    nursery: trio.Nursery,
) -> None:
    host, port = await start(nursery, defer_accept=True, header_timeout=0.5)
    late = await trio.open_tcp_stream(host, port)
    silent = await trio.open_tcp_stream(host, port)
    await trio.sleep(0.3)  # the request comes a while after the connection
    await late.send_all(b"GET /late HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await read_all(late)).endswith(b"GET /late from 127.0.0.1")
    # Accepted after about a second without a byte, then held to the head deadline.
    assert await read_all(silent, deadline=10) == b""


async def test_cancellation_closes_every_socket() -> None:
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def serve(task_status: trio.TaskStatus[list[tuple[str, int]]]) -> None:
            with scope:
                await serve_http_sync(handler, "127.0.0.1", 0, task_status=task_status)

        (host, port), *_ = await nursery.start(serve)
        kept = await trio.open_tcp_stream(host, port)
        await kept.send_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(5):
            assert (await kept.receive_some(65536)).startswith(b"HTTP/1.1 200 ")
        half = await trio.open_tcp_stream(host, port)
        await half.send_all(b"GET /half HTTP/1.1\r\nHo")
        assert await answered(host, port)  # the half request is parsed and waiting
        scope.cancel()
    for stream in (kept, half):
        with trio.fail_after(5):
            try:
                assert await stream.receive_some(65536) == b""
            except trio.BrokenResourceError:
                pass
    with pytest.raises(OSError):
        await trio.open_tcp_stream(host, port)
