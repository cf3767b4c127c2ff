"""Response bodies of the web seed: async byte streams from a file or the store, metered,
cut short on demand, released however the response ends (trio)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio

__all__ = ["STREAM_CHUNK", "file_chunks", "metered", "nothing", "paced", "prepend", "while_"]

STREAM_CHUNK = 256 * 1024


async def nothing() -> AsyncIterator[bytes]:
    return
    yield b""


async def prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        # Release the backend connection now, also when the client hung up mid-body.
        aclose = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()


async def metered(
    body: AsyncIterator[bytes],
    on_bytes: Callable[[int], None] | None,
    on_end: Callable[[int], None] | None,
) -> AsyncIterator[bytes]:
    """``body`` unchanged; ``on_bytes(n)`` after each chunk the consumer took (for a
    response body: handed to the socket), ``on_end(total)`` once it ends, however it ends."""
    sent = 0
    try:
        async for chunk in body:
            yield chunk
            sent += len(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    finally:
        if on_end is not None:
            on_end(sent)
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()


async def while_(
    body: AsyncIterator[bytes], go_on: Callable[[int], bool]
) -> AsyncIterator[bytes]:
    """``body``'s chunks while ``go_on(sent)`` says so before each (``sent``: the bytes the
    consumer took before asking for this chunk, i.e. for a response body, handed to the
    socket); then it ends early (the shell closes a response shorter than its
    Content-Length)."""
    sent = 0
    try:
        async for chunk in body:
            if not go_on(sent):
                return
            yield chunk
            sent += len(chunk)
    finally:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()


async def paced(
    body: AsyncIterator[bytes], wait_for: Callable[[int], float]
) -> AsyncIterator[bytes]:
    """``body``'s chunks, each after sleeping ``wait_for(len(chunk))`` seconds (an upload
    limit's wait; 0: at once)."""
    try:
        async for chunk in body:
            wait = wait_for(len(chunk))
            if wait > 0:
                await trio.sleep(wait)
            yield chunk
    finally:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()


async def file_chunks(path: Path, start: int, length: int) -> AsyncIterator[bytes]:
    def _open() -> int:
        return os.open(path, os.O_RDONLY)

    fd = await trio.to_thread.run_sync(_open)
    try:
        pos, end = start, start + length
        while pos < end:
            n = min(STREAM_CHUNK, end - pos)
            data = await trio.to_thread.run_sync(os.pread, fd, n, pos)
            if not data:
                return  # truncated on disk: the shell closes rather than pad
            pos += len(data)
            yield data
    finally:
        os.close(fd)
