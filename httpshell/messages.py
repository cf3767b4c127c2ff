"""What a handler sees and returns: ``Request`` (parsed by the shell), ``Response`` (bytes or
a streamed body) and ``Handler``, the async handler type of ``serve_http``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["Handler", "Request", "Response"]


class Request(NamedTuple):
    """One parsed request. Header names are lower-case bytes, values raw bytes.
    (Immutable; a NamedTuple because one is built per request and a frozen dataclass
    costs several times more to build.)"""

    method: bytes
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    client: tuple[str, int]
    http_version: bytes = b"1.1"
    body: bytes = b""  # the whole request body (at most parser.MAX_BODY_BYTES, 1 MiB)

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
    closes after the body). For HEAD the shell sends the headers only. ``headers`` given
    as a tuple are checked and rendered once and memoised (a handler that answers with
    the same few, as the tracker does)."""

    status: int
    headers: Sequence[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes | AsyncIterable[bytes] = b""


Handler = Callable[[Request], Awaitable[Response]]
