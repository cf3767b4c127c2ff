"""httpshell: a request body up to 1 MiB reaches the handler whole (``Request.body``), framed
by Content-Length or chunked, pipelined requests keep theirs apart; one byte more is a 413."""

from __future__ import annotations

import pytest
import trio

from httpshell import Request, Response, serve_http, serve_http_sync
from tests.helpers import exchange

MIB = 1 << 20


def echo(request: Request) -> Response:
    return Response(200, [(b"x-length", b"%d" % len(request.body))], request.body)


async def echo_async(request: Request) -> Response:
    return echo(request)


@pytest.fixture(params=["tasks", "loop"])
async def address(request: pytest.FixtureRequest, nursery: trio.Nursery) -> tuple[str, int]:
    if request.param == "loop":
        bound = await nursery.start(serve_http_sync, echo, "127.0.0.1", 0)
    else:
        bound = await nursery.start(serve_http, echo_async, "127.0.0.1", 0)
    return bound[0]


async def test_bodies_reach_the_handler(address: tuple[str, int]) -> None:
    data = await exchange(
        *address,
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nwor\r\n2\r\nld\r\n0\r\n\r\n"
        b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    answers = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert [a.split(b"\r\n\r\n", 1)[1] for a in answers] == [b"hello", b"world", b""]


async def test_one_mib_is_the_limit(address: tuple[str, int]) -> None:
    body = bytes(range(256)) * (MIB // 256)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
    data = await exchange(*address, head % MIB + body)
    assert data.startswith(b"HTTP/1.1 200 ") and b"x-length: 1048576\r\n" in data
    assert data.endswith(body)
    data = await exchange(*address, head % (MIB + 1) + body + b"!")
    assert data.startswith(b"HTTP/1.1 413 ")
