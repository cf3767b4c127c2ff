"""The two HTTP fronts over real loopback sockets, spoken to with raw bytes and http.client.

Every behaviour both must share (framing, caps, errors, keep-alive, timeouts, the connection
cap) runs against each: ``serve_http`` (a task per connection, async handlers that may
stream: the S3 API and /metrics) and ``serve_http_sync`` (the tracker's one-task loop). The
streaming cases are the task shell's alone; the loop's own edges are in test_httploop.py."""

from __future__ import annotations

import http.client
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from httpshell import Request, Response, serve_http, serve_http_sync
from tests.helpers import exchange, read_all


def answer(request: Request) -> Response:
    """The bytes answers both fronts give."""
    if request.target == b"/boom":
        raise RuntimeError("handler bug: must become a 500, never a traceback")
    if request.target == b"/inject":
        return Response(200, [(b"x-bad", b"1\r\nset-cookie: evil")], b"body")
    body = b"%s %s from %s" % (request.method, request.target, request.client[0].encode())
    echo = request.header(b"x-echo") or b""
    return Response(200, [(b"content-type", b"text/plain"), (b"x-echo", echo)], body)


BIG = 32 << 20  # more than loopback's socket buffers hold


async def handler(request: Request) -> Response:
    if request.target == b"/big":
        return Response(200, [], bytes(BIG))
    if request.target == b"/stream":

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                yield b"chunk%d;" % i

        return Response(200, [(b"content-length", b"21")], chunks())
    if request.target == b"/short-stream":

        async def short() -> AsyncIterator[bytes]:
            yield b"abc"

        return Response(200, [(b"content-length", b"10")], short())
    if request.target == b"/unframed":

        async def unframed() -> AsyncIterator[bytes]:
            yield b"no "
            yield b"length"

        return Response(200, [], unframed())
    return answer(request)


@pytest.fixture(params=["tasks", "loop"])
def shell(request: pytest.FixtureRequest) -> str:
    return request.param


async def start(nursery: trio.Nursery, shell: str = "tasks", **kwargs: object) -> tuple[str, int]:
    """Start one front on 127.0.0.1, port 0: its address."""

    def serve(task_status: trio.TaskStatus[list[tuple[str, int]]]) -> object:
        if shell == "loop":
            return serve_http_sync(answer, "127.0.0.1", 0, task_status=task_status, **kwargs)
        return serve_http(handler, "127.0.0.1", 0, task_status=task_status, **kwargs)

    bound = await nursery.start(serve)
    return bound[0]


# -- the contract of both fronts -----------------------------------------------------------


async def test_keep_alive_and_pipelining(nursery: trio.Nursery, shell: str) -> None:
    host, port = await start(nursery, shell)
    data = await exchange(
        host,
        port,
        b"GET /a HTTP/1.1\r\nHost: x\r\nX-Echo: 1\r\n\r\n"
        b"HEAD /b HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert data.count(b"HTTP/1.1 200 ") == 3
    assert b"GET /a from 127.0.0.1" in data
    assert b"x-echo: 1" in data
    assert b"HEAD /b" not in data  # HEAD: headers only
    assert b"GET /c from 127.0.0.1" in data
    assert data.lower().count(b"date: ") == 3


async def test_handler_exception_is_a_500_without_traceback(
    nursery: trio.Nursery, shell: str
) -> None:
    host, port = await start(nursery, shell)
    data = await exchange(host, port, b"GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ")
    assert b"Traceback" not in data and b"handler bug" not in data


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nNo-Colon-Header\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\n\r\n", b"400"),  # HTTP/1.1 without Host
        (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 3000 + b"\r\n", b"431"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 200000, b"431"),  # never ends
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX : y\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 100000 + b"\r\n\r\n", b"431"),
    ],
    ids=[
        "garbage",
        "no-colon",
        "bad-length",
        "no-host",
        "long-target",
        "many-headers",
        "endless-header",
        "two-lengths",
        "space-colon",
        "huge-header",
    ],
)
async def test_bad_requests_get_their_status(
    nursery: trio.Nursery, shell: str, raw: bytes, status: bytes
) -> None:
    host, port = await start(nursery, shell)
    data = await exchange(host, port, raw)
    assert data.split(b" ")[1] == status
    assert b"connection: close" in data.lower()


async def test_oversized_body_is_refused(nursery: trio.Nursery, shell: str) -> None:
    host, port = await start(nursery, shell)
    stream = await trio.open_tcp_stream(host, port)
    size = (1 << 20) + 10
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    with trio.move_on_after(5):
        try:
            await stream.send_all(b"x" * size)
        except trio.BrokenResourceError:
            pass
    data = await read_all(stream)
    assert data.startswith(b"HTTP/1.1 413 ")


async def test_idle_connection_is_closed(nursery: trio.Nursery, shell: str) -> None:
    host, port = await start(nursery, shell, idle_timeout=1.0)
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await read_all(stream)  # returns only because the server closes the idle connection
    assert data.startswith(b"HTTP/1.1 200 ")


async def test_a_bad_request_after_good_ones_in_one_buffer(
    nursery: trio.Nursery, shell: str
) -> None:
    host, port = await start(nursery, shell)
    data = await exchange(
        host,
        port,
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n",
    )
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.index(b"GET /a") < data.index(b"GET /b") < data.index(b"HTTP/1.1 400 Bad Request")


async def test_chunked_request_body_is_drained(nursery: trio.Nursery, shell: str) -> None:
    host, port = await start(nursery, shell)
    data = await exchange(
        host,
        port,
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
        b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert b"POST /a from" in data and b"GET /b from" in data
    assert b"hello" not in data


async def test_oversized_chunked_body_is_refused(nursery: trio.Nursery, shell: str) -> None:
    host, port = await start(nursery, shell)
    chunk = b"x" * 65536
    body = b"%x\r\n%b\r\n" % (len(chunk), chunk) * 17 + b"0\r\n\r\n"
    data = await exchange(
        host, port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    )
    assert data.startswith(b"HTTP/1.1 413 ")


async def test_expect_100_continue(nursery: trio.Nursery, shell: str) -> None:
    host, port = await start(nursery, shell)
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(
        b"PUT /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n"
        b"Connection: close\r\n\r\n"
    )
    with trio.fail_after(5):
        interim = await stream.receive_some(65536)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    await stream.send_all(b"body")
    assert (await read_all(stream)).startswith(b"HTTP/1.1 200 OK\r\n")


async def test_expect_100_continue_with_a_too_large_body_is_refused_at_once(
    nursery: trio.Nursery,
    shell: str,
) -> None:
    host, port = await start(nursery, shell)
    data = await exchange(
        host,
        port,
        b"PUT /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
        % ((1 << 20) + 1),
    )  # no body sent: the answer cannot wait for it
    assert data.startswith(b"HTTP/1.1 413 ")


async def test_http10_closes_unless_keep_alive(nursery: trio.Nursery, shell: str) -> None:
    host, port = await start(nursery, shell)
    data = await exchange(host, port, b"GET /a HTTP/1.0\r\n\r\n")  # ends: server closed
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" in data.lower()

    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    with trio.fail_after(5):
        first = await stream.receive_some(65536)
    assert b"connection: keep-alive" in first.lower()
    await stream.send_all(b"GET /b HTTP/1.0\r\n\r\n")  # the same connection still serves
    assert b"GET /b from" in await read_all(stream)


async def test_header_injection_by_a_handler_becomes_a_500(
    nursery: trio.Nursery, shell: str
) -> None:
    host, port = await start(nursery, shell)
    data = await exchange(host, port, b"GET /inject HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ") and b"evil" not in data


async def test_connection_cap_answers_503(nursery: trio.Nursery, shell: str) -> None:
    host, port = await start(nursery, shell, max_connections=1)
    held = await trio.open_tcp_stream(host, port)
    # Its head is complete and its body on the way: busy, so not evictable.
    await held.send_all(b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    with trio.fail_after(5):  # the head was read once a connection is answered after it
        await exchange_until_503(host, port)
    second = await trio.open_tcp_stream(host, port)
    data = await read_all(second)
    assert data.startswith(b"HTTP/1.1 503 ")
    await held.aclose()
    # The slot is free again once the held connection is gone.
    with trio.fail_after(5):
        while True:
            data = await exchange(
                host, port, b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            if data.startswith(b"HTTP/1.1 200 "):
                break
            assert data.startswith(b"HTTP/1.1 503 ")
            await trio.lowlevel.checkpoint()


async def exchange_until_503(host: str, port: int) -> None:
    """Poll until a new connection is refused (the held one was read and is busy)."""
    while True:  # bounded by the caller's fail_after
        data = await exchange(host, port, b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
        if data.startswith(b"HTTP/1.1 503 "):
            return
        await trio.sleep(0.01)


async def test_a_full_server_evicts_the_oldest_connection_waiting_for_a_head(
    nursery: trio.Nursery, shell: str
) -> None:
    host, port = await start(nursery, shell, max_connections=2, max_connections_per_ip=0)
    first = await trio.open_tcp_stream(host, port)
    await first.send_all(b"GET /a HTTP/1.1\r\n")  # a head never finished
    second = await trio.open_tcp_stream(host, port)
    data = await exchange(host, port, b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 ")
    assert await read_all(first) == b""  # evicted: closed without an answer
    await second.aclose()


async def test_a_client_at_its_cap_evicts_its_own_oldest_waiting_connection(
    nursery: trio.Nursery, shell: str
) -> None:
    host, port = await start(nursery, shell, max_connections_per_ip=1)
    first = await trio.open_tcp_stream(host, port)
    data = await exchange(host, port, b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 ")
    assert await read_all(first) == b""


async def test_the_head_deadline_counts_in_total(nursery: trio.Nursery, shell: str) -> None:
    """A client sending a header byte every 0.1 s is cut at the 0.5 s head deadline (it
    would take 10 s to send what it has, and each byte restarted the old idle timer)."""
    host, port = await start(nursery, shell, header_timeout=0.5)
    stream = await trio.open_tcp_stream(host, port)
    trickle = b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 100
    closed = False
    with trio.fail_after(5):
        for i in range(len(trickle)):  # bounded: 10 s of trickling at most, cut by fail_after
            try:
                await stream.send_all(trickle[i : i + 1])
                with trio.move_on_after(0.1):
                    closed = await stream.receive_some(1) == b""
            except (trio.BrokenResourceError, ConnectionResetError):
                closed = True
            if closed:
                break
    assert closed


# -- streaming (the task shell only) ------------------------------------------------------


async def test_a_stalled_reader_is_cut_off(nursery: trio.Nursery) -> None:
    host, port = await start(nursery, idle_timeout=0.5)
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    await trio.sleep(2)  # the behaviour under test: a client that stops reading
    data = await read_all(stream, 10)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert len(data) < BIG  # the server gave up on it and closed


def _get(host: str, port: int, path: str) -> tuple[int, bytes]:
    """GET ``path`` with http.client (it decodes chunked bodies): (status, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, resp.read()


async def test_streamed_body(nursery: trio.Nursery) -> None:
    host, port = await start(nursery)

    status, body = await trio.to_thread.run_sync(_get, host, port, "/stream")
    assert (status, body) == (200, b"chunk0;chunk1;chunk2;")


async def test_short_stream_closes_instead_of_lying(nursery: trio.Nursery) -> None:
    host, port = await start(nursery)
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(b"GET /short-stream HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await read_all(stream)  # ends: the server closed rather than hang
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"abc")


async def test_streamed_body_without_length(nursery: trio.Nursery) -> None:
    host, port = await start(nursery)

    # HTTP/1.1: chunked, and http.client decodes it.
    assert await trio.to_thread.run_sync(_get, host, port, "/unframed") == (200, b"no length")
    raw = await exchange(
        host, port, b"GET /unframed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert b"transfer-encoding: chunked" in raw.lower() and raw.endswith(b"0\r\n\r\n")
    # HTTP/1.0 knows no chunks: the body ends with the connection.
    raw = await exchange(host, port, b"GET /unframed HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert b"connection: close" in raw.lower() and raw.endswith(b"\r\n\r\nno length")
