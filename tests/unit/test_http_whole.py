"""The HTTP shell's short ways for the common request, checked against its general ones.

httpshell.parser.parse_whole: the common request read without httptools, and always read
as RequestParser (httptools) reads it, or not at all.

The check is an equivalence over a corpus: real clients' tracker requests and edge shapes,
and every one-byte change of them at each position (a space, tab, colon, CR, LF, a byte
>= 0x80, a letter, a slash, or the byte deleted). For each, parse_whole gives None or
exactly RequestParser's one (Request, keep-alive) item. httpshell.render.render_response:
headers given as a tuple (memoised) render to the same bytes as the same headers in a list."""

from __future__ import annotations

import pytest

from httpshell import render
from httpshell.messages import Request, Response
from httpshell.parser import RequestParser, parse_whole
from httpshell.render import render_response

CLIENT = ("192.0.2.7", 51413)
ANNOUNCE = (
    b"/announce?info_hash=%b7%b7%b7%b7%b7%b7%b7%b7%b7%b7%b7%b7%b7%b7%b7%b7%00%00%01%02"
    b"&peer_id=-qB4250-a1b2c3d4e5f6&port=6881&uploaded=0&downloaded=0&left=1000&corrupt=0"
    b"&key=1A2B3C4D&event=started&numwant=200&compact=1&no_peer_id=1"
)
CORPUS = [
    # libtorrent / qBittorrent
    b"GET " + ANNOUNCE + b" HTTP/1.1\r\nHost: tracker.example:6969\r\nUser-Agent: qBittorrent/"
    b"4.2.5\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    # Transmission (libcurl: keep-alive)
    b"GET " + ANNOUNCE + b" HTTP/1.1\r\nHost: t:6969\r\nUser-Agent: Transmission/3.00\r\n"
    b"Accept: */*\r\nAccept-Encoding: deflate, gzip, br, zstd\r\n\r\n",
    # aria2, HTTP/1.0 style clients, HEAD, a scrape, wrk
    b"GET /scrape?info_hash=%aa%bb HTTP/1.0\r\nUser-Agent: x\r\n\r\n",
    b"GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
    b"HEAD /announce HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    b"GET /announce?a=1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: close\r\n\r\n",
    # edges
    b"GET / HTTP/1.1\r\nHost:\r\nX-Empty:\r\nX-Spaces:   v\r\nX-Trail: v  \r\n\r\n",
    b"GET /#frag?x HTTP/1.1\r\nhost: x\r\nCONNECTION: CLOSE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close, te\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nProxy-Connection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
]
SUBSTITUTES = [b" ", b"\t", b":", b"\r", b"\n", b"\x80", b"A", b"/", b"", b"\x7f", b"\x00", b"~"]


def reference(data: bytes) -> tuple[Request, bool] | None:
    """What RequestParser makes of ``data`` when it is one whole request and nothing more."""
    parser = RequestParser(CLIENT)
    parser.feed(data)
    items = list(parser.ready)
    parser.release()
    if len(items) == 1 and type(items[0]) is tuple and not parser.in_head:
        return items[0]  # type: ignore[return-value]
    return None


def variants(data: bytes) -> list[bytes]:
    out = [data]
    for i in range(len(data)):
        out += [data[:i] + sub + data[i + 1 :] for sub in SUBSTITUTES]
    return out


@pytest.mark.parametrize("base", CORPUS, ids=range(len(CORPUS)))
def test_whole_requests_are_read_as_httptools_reads_them(base: bytes) -> None:
    for data in variants(base):
        got = parse_whole(data, CLIENT)
        if got is not None:
            assert got == reference(data), data


def test_the_plain_shapes_take_the_short_way() -> None:
    for base in CORPUS[:8]:
        assert parse_whole(base, CLIENT) is not None, base
    request, keep_alive = parse_whole(CORPUS[0], CLIENT)  # type: ignore[misc]
    assert request.target == ANNOUNCE and request.http_version == b"1.1"
    assert request.header(b"user-agent") == b"qBittorrent/4.2.5" and not keep_alive
    assert parse_whole(CORPUS[1], CLIENT)[1] is True  # type: ignore[index]
    assert parse_whole(CORPUS[2], CLIENT)[1] is False  # type: ignore[index]


def test_a_50_hash_scrape_takes_the_short_way() -> None:
    target = b"/scrape?" + b"&".join(b"info_hash=" + b"%B7" * 16 + b"%%%02X" % k * 4
                                     for k in range(50))
    data = b"GET " + target + b" HTTP/1.1\r\nHost: t:6969\r\nConnection: close\r\n\r\n"
    got = parse_whole(data, CLIENT)
    assert got is not None and got == reference(data) and got[0].target == target
    for bad in (b"\x7f", b"\x00", b"\x1f", b"\xff", b" "):
        broken = data.replace(b"%B7", bad, 1)  # one byte of the long target
        assert parse_whole(broken, CLIENT) is None


def test_long_heads_are_left_to_the_parser() -> None:
    data = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert parse_whole(data, CLIENT) is None
    assert reference(data) is not None


# -- render_response: headers given as a tuple take a memoised way to the same bytes --------


@pytest.mark.parametrize("status", [200, 404, 500, 204, 304, 999, 1000, 99])
@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
@pytest.mark.parametrize("keep_alive", [True, False])
@pytest.mark.parametrize("body", [b"d8:intervali1800ee", b""])
def test_tuple_headers_render_as_list_headers(
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    method: bytes,
    version: bytes,
    keep_alive: bool,
    body: bytes,
) -> None:
    monkeypatch.setattr(render._date, "get", lambda: b"Sun, 06 Dec 2026 08:00:00 GMT")
    request = Request(method, b"/announce", (), CLIENT, version)
    for headers in (
        [(b"content-type", b"text/plain"), (b"cache-control", b"no-store")],
        [],
        [(b"Content-Length", b"%d" % len(body))],
        [(b"connection", b"close")],
        [(b"server", b"other")],
        [(b"x-bad", b"1\r\nset-cookie: evil")],
    ):
        expected = render_response(request, Response(status, headers, body), keep_alive, b"s")
        got = render_response(request, Response(status, tuple(headers), body), keep_alive, b"s")
        assert got == expected, headers
