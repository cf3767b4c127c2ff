"""Sans-I/O request framing shared by both HTTP shells (``serve`` and ``epoll``): httptools
(llhttp) parses the bytes fed in, within this module's caps, into requests, error statuses
and interim responses. ``parse_whole`` reads the common case (one whole GET or HEAD
without a body in one buffer) without a parser object, as httptools would.
"""

from __future__ import annotations

import re
from collections import deque
from typing import NoReturn

import httptools

from httpshell.messages import Request

__all__ = ["MAX_BODY_BYTES", "MAX_HEADER_BYTES", "RECEIVE_SIZE", "RequestParser", "parse_whole"]

RECEIVE_SIZE = 65536  # bytes the shell reads per receive (the partial-head cap counts on it)
MAX_HEADER_BYTES = 16384
MAX_BODY_BYTES = 1 << 20  # the largest body a handler gets (POST /-/events); beyond: 413
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# A header line still being received is buffered inside httptools, where it cannot be
# measured; it is bounded by the bytes received since the parser last reported progress.
_MAX_PARTIAL_HEAD = MAX_HEADER_BYTES + RECEIVE_SIZE
_VERSIONS = {"1.1": b"1.1", "1.0": b"1.0"}


class _Reject(Exception):
    """Raised from a parser callback to stop parsing; the status is in ``rejected``."""


# What the parser hands the serving loop, in arrival order: a complete request and whether
# the connection stays open after it; an error status to answer before closing; an interim
# response to write (100 Continue); or None: stop (an Upgrade, nothing here speaks another
# protocol).
_Item = tuple[Request, bool] | int | bytes | None


class RequestParser:
    """Sans-I/O request framing shared by the HTTP shells: httptools parses what is fed
    into ``ready`` (see _Item), with this module's caps (16 KiB head -> 414/431, 1 MiB
    body -> 413, parser errors -> 400, HTTP/1.1 without Host -> 400); a request's body is
    collected whole into ``Request.body``. ``broken``: the
    parser stopped, nothing more is to be read. The ``on_*`` methods are httptools'
    protocol.

    The parser holds this object and this object the parser: a reference cycle, which
    ``release()`` breaks so that a closed connection is freed by refcount, not by the
    cyclic GC (one cycle per connection adds up on a tracker)."""

    __slots__ = (
        "body",
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
        self.body: list[bytes] = []
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
        self.body = []
        self.head_bytes = self.body_bytes = 0
        self.in_head = True
        self.has_host = self.expect_continue = False
        self.progressed = True

    def on_url(self, url: bytes) -> None:
        self.progressed = True
        self.url += url  # may come in pieces
        self.head_bytes += len(url)
        if self.head_bytes > MAX_HEADER_BYTES:
            self._reject(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.progressed = True
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_HEADER_BYTES:
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
                if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
                    self._reject(413)

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > MAX_BODY_BYTES:
            self._reject(413)
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.in_body = False
        body = self.body
        request = Request(self.method, self.url, tuple(self.headers), self.client, self.version,
                          body[0] if len(body) == 1 else b"".join(body))
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


# One whole request head and nothing after it: GET or HEAD, an origin-form target of visible
# ASCII, HTTP/1.1 or 1.0, header lines "token: visible ASCII" with no obs-fold. Anything
# else (bodies, pipelining, tabs, bytes >= 0x80, odd spacing) is left to httptools.
# The regex takes the target up to the next space (a loop of a few instructions a byte)
# and one ``bytes.translate`` checks it is visible ASCII: a regex class read a 3 KB
# scrape target at ~24 instructions a byte.
_WHOLE_HEAD = re.compile(
    rb"(GET|HEAD) (/[^ ]*) HTTP/1\.([01])\r\n"
    rb"((?:[-!#$%&'*+.^_`|~0-9A-Za-z]+: *(?:[!-~][ -~]*)?\r\n)*)\r\n"
)
# Visible ASCII (0x21-0x7E) to itself, any other byte to another ("!"): a target is
# visible ASCII when it translates to itself.
_VISIBLE = bytes(c if 0x21 <= c <= 0x7E else 0x21 for c in range(256))
# Headers that change the framing or the connection: their requests go through httptools
# (except one "Connection: close" or "keep-alive", read here).
_FRAMING = frozenset(
    (b"connection", b"proxy-connection", b"content-length", b"transfer-encoding", b"upgrade",
     b"expect")
)  # fmt: skip
_VERSION_BYTES = {b"1": b"1.1", b"0": b"1.0"}
# RequestParser counts 4 bytes per header line where the line may have 3 (no space after
# the colon), so its 16 KiB cap is never reached by a buffer of at most half that.
_MAX_WHOLE = MAX_HEADER_BYTES // 2


def parse_whole(data: bytes, client: tuple[str, int]) -> tuple[Request, bool] | None:
    """``data`` as the one request it holds and whether the connection stays open after
    it, exactly as ``RequestParser`` would give them, when ``data`` is a whole GET or HEAD
    head in the plain shape real clients send (see ``_WHOLE_HEAD``) and nothing else; None
    for anything else, which the caller then feeds to a RequestParser. Pure; costs a
    fraction of a parser object and its callbacks."""
    if len(data) > _MAX_WHOLE:
        return None
    m = _WHOLE_HEAD.fullmatch(data)
    if m is None:
        return None
    method, target, minor, block = m.groups()
    if target.translate(_VISIBLE) != target:
        return None
    keep_alive = minor == b"1"  # HTTP/1.1 stays open unless told; 1.0 closes unless told
    has_host = connection = False
    headers = []
    for line in block.split(b"\r\n")[:-1]:
        name, _, value = line.partition(b":")
        name = name.lower()
        value = value.lstrip(b" ")
        if name in _FRAMING:
            if name != b"connection" or connection:
                return None
            connection = True
            token = value.lower()
            if token == b"close":
                keep_alive = False
            elif token == b"keep-alive":
                keep_alive = True
            else:
                return None
        elif name == b"host":
            has_host = True
        headers.append((name, value))
    if minor == b"1" and not has_host:
        return None  # RequestParser answers this one with a 400
    return Request(method, target, tuple(headers), client, _VERSION_BYTES[minor]), keep_alive
