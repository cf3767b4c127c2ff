"""Small helpers shared by tests: a free loopback port, a bounded poller, a pass-through
store to subclass, and a catalog listener that records."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import trio


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago.

    Only for programs that cannot bind port 0 themselves and report it (another process
    may take the port in between: callers that start a server should retry on failure).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(
    predicate: Callable[[], bool], deadline: float, *, interval: float = 0.02, what: str = ""
) -> None:
    """Poll ``predicate`` until it returns true or ``deadline`` seconds have passed.

    Raises TimeoutError (naming ``what``) at the deadline. Exceptions from ``predicate``
    propagate. The loop is bounded by the deadline; ``interval`` only spaces the polls.
    """
    end = time.monotonic() + deadline
    while True:
        if predicate():
            return
        if time.monotonic() >= end:
            raise TimeoutError(f"not true within {deadline} s: {what or predicate!r}")
        time.sleep(interval)


class DelegatingStore:
    """A real store passed through unchanged: subclass it and override what a test counts or
    breaks. It offers no blocking reader, so hashing goes through ``read`` (counted)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.bucket = inner.bucket

    async def head(self, key: str, version_id: str | None = None):
        return await self.inner.head(key, version_id)

    def list(self):
        return self.inner.list()

    async def read(self, info, start: int, length: int) -> bytes:
        return await self.inner.read(info, start, length)

    def stream(self, info, start: int, length: int, chunk: int = 262144):
        return self.inner.stream(info, start, length, chunk)

    def origin_url(self, key: str) -> str | None:
        return self.inner.origin_url(key)

    def presigned_url(self, key: str, expires: int, version_id: str | None = None) -> str | None:
        return self.inner.presigned_url(key, expires, version_id)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Recorder:
    """A TorrentService listener recording what it was told; ``wait_until`` waits on it."""

    def __init__(self) -> None:
        self.added: list = []
        self.removed: list = []
        self.changed = trio.Event()

    def torrent_added(self, entry) -> None:
        self.added.append(entry)
        self.changed.set()

    def torrent_removed(self, entry) -> None:
        self.removed.append(entry)
        self.changed.set()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        with trio.fail_after(30):
            while not predicate():
                self.changed = trio.Event()
                await self.changed.wait()


async def read_all(stream: trio.SocketStream, deadline: float = 5.0) -> bytes:
    """Everything the peer sends until it closes (raises trio.TooSlowError past ``deadline``)."""
    out = bytearray()
    with trio.fail_after(deadline):
        while chunk := await stream.receive_some(65536):
            out += chunk
    return bytes(out)


async def exchange(host: str, port: int, raw: bytes) -> bytes:
    """Send ``raw`` on a new TCP connection and read until the server closes it."""
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(raw)
    return await read_all(stream)
