"""Response rendering, pure and shared by both HTTP shells: the head (status line, Date,
Server, the handler's headers, checked so that a handler cannot forge headers), the whole
bytes of a response, and the shell's own error answers.
"""

from __future__ import annotations

import logging
import time
from email.utils import formatdate
from http import HTTPStatus

from httpshell.messages import Request, Response

__all__ = [
    "error_response",
    "invalid_response",
    "plan_response",
    "render_response",
    "response_head",
]

log = logging.getLogger(__name__)

# "HTTP/1.1 200 OK\r\n" for every status Python knows; others get an empty reason.
_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}
_NO_BODY_STATUSES = frozenset({204, 304})
_ERROR_BODIES = {
    413: b"request body too large\n",
    414: b"request target too long\n",
    431: b"request header fields too large\n",
}


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


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d \r\n" % status


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


def plan_response(
    request: Request, response: Response, keep_alive: bool, server: bytes
) -> tuple[bytes, bool, int | None, bool]:
    """(head, close, the handler's Content-Length or None, chunked) for a streamed ``response``;
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


def invalid_response(request: Request, server: bytes) -> bytes:
    log.error("invalid response from handler for %r", request.target[:200])
    return response_head(500, [(b"content-length", b"0"), (b"connection", b"close")], set(), server)


# A handler's headers given as a tuple -> their lines, once checked (see _plain_fields).
_FIELDS_MEMO: dict[tuple[tuple[bytes, bytes], ...], bytes] = {}
_FIELDS_MEMO_MAX = 256
_SHELL_NAMES = frozenset((b"content-length", b"connection", b"date", b"server"))


def _plain_fields(headers: tuple[tuple[bytes, bytes], ...]) -> bytes | None:
    """The header lines of ``headers`` when they are plain (bytes, one line each, none of
    the names the shell writes itself), else None; memoised, as handlers that give a tuple
    give the same few over and over (the tracker: one)."""
    fields = _FIELDS_MEMO.get(headers)
    if fields is None:
        try:
            lines = [k + b": " + v + b"\r\n" for k, v in headers]
            if any(k.lower() in _SHELL_NAMES for k, _ in headers):
                return None
        except (TypeError, ValueError):
            return None
        fields = b"".join(lines)
        if not fields.count(b"\n") == len(lines) == fields.count(b"\r"):
            return None
        if len(_FIELDS_MEMO) >= _FIELDS_MEMO_MAX:
            _FIELDS_MEMO.clear()
        _FIELDS_MEMO[headers] = fields
    return fields


def render_response(
    request: Request, response: Response, keep_alive: bool, server: bytes
) -> tuple[bytes, bool]:
    """The wire bytes answering ``request`` with ``response`` (a bytes body), and whether
    the connection stays open after them. HEAD and 204/304 get the head only; a handler's
    Content-Length that is not its body's length sends the head and closes (rather than
    lie); an unsendable status or header (or a body that is not bytes) becomes a bare 500
    and a close. The same head as the streaming path's (``plan_response``), built in one pass:
    this runs once per tracker announce. Headers given as a tuple are checked once and
    memoised (the tracker's answers all carry the same two)."""
    body = response.body
    status = response.status
    headers = response.headers
    if (
        type(headers) is tuple
        and type(body) is bytes
        and type(status) is int
        and 200 <= status <= 999
        and status not in _NO_BODY_STATUSES
        and (fields := _plain_fields(headers)) is not None
    ):
        if keep_alive:
            tail = b"\r\n" if request.http_version != b"1.0" else b"connection: keep-alive\r\n\r\n"
        else:
            tail = b"connection: close\r\n\r\n"
        head = b"%sdate: %s\r\nserver: %s\r\n%scontent-length: %d\r\n%s" % (
            _status_line(status), _date.get(), server, fields, len(body), tail
        )
        if request.method == b"HEAD" or not body:
            return head, keep_alive
        return head + body, keep_alive
    if not isinstance(body, bytes | bytearray) or type(status) is not int:
        return invalid_response(request, server), False
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
        return invalid_response(request, server), False
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
        return invalid_response(request, server), False
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
