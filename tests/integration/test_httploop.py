"""tracker.httploop (the tracker's one-task HTTP front) over real loopback sockets.

The first half holds it to the contract of the shared shell (tests/integration/
test_httpserve.py, for bytes responses); the second half covers its own edges: requests
split across reads, long pipelines, a client that never reads, the connection cap and
cancellation."""

from __future__ import annotations

import socket

import pytest
import trio

from tracker.httploop import serve_http_sync
from tracker.httpserve import Request, Response


def handler(request: Request) -> Response:
    if request.target == b"/boom":
        raise RuntimeError("handler bug: must become a 500, never a traceback")
    if request.target == b"/inject":
        return Response(200, [(b"x-bad", b"1\r\nset-cookie: evil")], b"body")
    if request.target == b"/big":
        return Response(200, [], b"x" * 20000)
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


async def read_all(stream: trio.SocketStream) -> bytes:
    out = bytearray()
    with trio.fail_after(5):
        while chunk := await stream.receive_some(65536):
            out += chunk
    return bytes(out)


async def exchange(host: str, port: int, raw: bytes) -> bytes:
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(raw)
    return await read_all(stream)


# -- the shared shell's contract ---------------------------------------------------------


async def test_keep_alive_and_pipelining(nursery: trio.Nursery) -> None:
    host, port = await start(nursery)
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


async def test_handler_exception_is_a_500_without_traceback(nursery: trio.Nursery) -> None:
    host, port = await start(nursery)
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
    ],
)
async def test_bad_requests_get_their_status(
    nursery: trio.Nursery, raw: bytes, status: bytes
) -> None:
    host, port = await start(nursery)
    data = await exchange(host, port, raw)
    assert data.split(b" ")[1] == status
    assert b"connection: close" in data.lower()


async def test_oversized_body_is_refused(nursery: trio.Nursery) -> None:
    host, port = await start(nursery)
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


async def test_idle_connection_is_closed(nursery: trio.Nursery) -> None:
    host, port = await start(nursery, idle_timeout=1.0)
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await read_all(stream)  # returns only because the server closes the idle connection
    assert data.startswith(b"HTTP/1.1 200 ")


async def test_a_bad_request_after_good_ones_in_one_buffer(nursery: trio.Nursery) -> None:
    host, port = await start(nursery)
    data = await exchange(
        host,
        port,
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n",
    )
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.index(b"GET /a") < data.index(b"GET /b") < data.index(b"HTTP/1.1 400 Bad Request")


async def test_chunked_request_body_is_drained(nursery: trio.Nursery) -> None:
    host, port = await start(nursery)
    data = await exchange(
        host,
        port,
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
        b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert b"POST /a from" in data and b"GET /b from" in data
    assert b"hello" not in data


async def test_oversized_chunked_body_is_refused(nursery: trio.Nursery) -> None:
    host, port = await start(nursery)
    chunk = b"x" * 65536
    body = b"%x\r\n%b\r\n" % (len(chunk), chunk) * 17 + b"0\r\n\r\n"
    data = await exchange(
        host, port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    )
    assert data.startswith(b"HTTP/1.1 413 ")


async def test_expect_100_continue(nursery: trio.Nursery) -> None:
    host, port = await start(nursery)
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
) -> None:
    host, port = await start(nursery)
    data = await exchange(
        host,
        port,
        b"PUT /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
        % ((1 << 20) + 1),
    )  # no body sent: the answer cannot wait for it
    assert data.startswith(b"HTTP/1.1 413 ")


async def test_http10_closes_unless_keep_alive(nursery: trio.Nursery) -> None:
    host, port = await start(nursery)
    data = await exchange(host, port, b"GET /a HTTP/1.0\r\n\r\n")  # ends: server closed
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" in data.lower()

    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    with trio.fail_after(5):
        first = await stream.receive_some(65536)
    assert b"connection: keep-alive" in first.lower()
    await stream.send_all(b"GET /b HTTP/1.0\r\n\r\n")  # the same connection still serves
    assert b"GET /b from" in await read_all(stream)


async def test_header_injection_by_a_handler_becomes_a_500(nursery: trio.Nursery) -> None:
    host, port = await start(nursery)
    data = await exchange(host, port, b"GET /inject HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ") and b"evil" not in data


async def test_connection_cap_answers_503(nursery: trio.Nursery) -> None:
    host, port = await start(nursery, max_connections=1)
    held = await trio.open_tcp_stream(host, port)
    await held.send_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    with trio.fail_after(5):
        assert (await held.receive_some(65536)).startswith(b"HTTP/1.1 200 ")
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
