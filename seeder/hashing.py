"""Hash an object into torrent pieces: ranged store reads, hashing in worker threads.

The pipeline for one object:

- The object is read in *chunks* of whole pieces (one piece, or as many as make ~8 MiB when
  pieces are smaller, so a thread hop and a ranged GET carry enough bytes to be worth it).
- Up to ``read_ahead`` chunks are in flight at once: being read, hashed, or waiting their
  turn. That bounds memory to about ``max(read_ahead, threads + 1)`` chunks, never the object.
- ``threads`` hashing threads (started with ``trio.to_thread.run_sync`` under their own
  CapacityLimiter, alive for the whole object) take chunks from a queue as soon as they are
  read; hashlib releases the GIL on large buffers, so they hash in parallel.
  The same thread computes the chunk's v1 SHA-1 piece hashes and, for hybrid, the BEP 52
  SHA-256 block hashes folded into one piece-layer node per piece (``seeder.merkle``).
- Results are put back in object order; ``on_chunk(offset, data)`` and
  ``on_progress(bytes_done)`` are called from the trio thread strictly in offset order.

A read that comes back short (the object shrank) raises ``ObjectChanged``; store errors pass
through unchanged. On any error or cancellation every read and hash in flight is stopped
before :func:`hash_object` returns or raises; nothing is left running.
"""

from __future__ import annotations

import functools
import hashlib
import queue
import threading
from collections.abc import Callable

import trio

from seeder import merkle, metainfo
from seeder.metainfo import PieceHashes
from seeder.store import ObjectChanged, ObjectInfo, Store

__all__ = ["CHUNK_TARGET", "hash_chunk", "hash_object"]

# Bytes per read and per thread hop when pieces are small: large enough that per-call costs
# (a thread hand-off, an HTTP request) are noise next to hashing, small enough for memory.
CHUNK_TARGET = 8 * 1024 * 1024


def hash_chunk(data: bytes | memoryview, piece_length: int, v2_width: int | None) -> tuple[
    bytes, bytes
]:
    """Hash whole pieces (the last may be short): ``(SHA-1 per piece, v2 node per piece)``.

    ``v2_width`` is the number of 16 KiB leaves each piece's subtree is padded to (``None``:
    v1 only, the second item is ``b""``). Pure and thread-safe; meant for worker threads.
    """
    view = memoryview(data)
    sha1s = []
    roots = []
    for start in range(0, len(view), piece_length):
        piece = view[start : start + piece_length]
        sha1s.append(hashlib.sha1(piece).digest())
        if v2_width is not None:
            roots.append(merkle.piece_root(piece, v2_width))
    return b"".join(sha1s), b"".join(roots)


class _HashPool:
    """Long-lived hashing threads fed through a queue.

    Why not one ``to_thread.run_sync`` per chunk: then a hasher that finishes waits for the
    trio thread to hand it the next chunk, and on busy cores that hand-off is late. Here a
    hasher takes the next chunk itself; the trio thread is told the result without blocking
    the hasher (``run_sync_soon``).
    """

    def __init__(self, piece_length: int, v2_width: int | None, token: trio.lowlevel.TrioToken
                 ) -> None:
        self._piece_length = piece_length
        self._v2_width = v2_width
        self._token = token
        self._jobs: queue.SimpleQueue[tuple[bytes, Callable[..., None]] | None] = (
            queue.SimpleQueue()
        )
        self._stop = threading.Event()

    def submit(self, data: bytes, deliver: Callable[[tuple[bytes, bytes] | Exception], None]
               ) -> None:
        """Queue ``data``; ``deliver(result or exception)`` will run on the trio thread."""
        self._jobs.put((data, deliver))

    def work(self) -> None:
        """A worker thread's loop: until :meth:`close`. Never raises for a bad chunk."""
        while True:  # bounded by close(): one sentinel per worker
            job = self._jobs.get()
            if job is None or self._stop.is_set():
                return
            data, deliver = job
            outcome: tuple[bytes, bytes] | Exception
            try:
                outcome = hash_chunk(data, self._piece_length, self._v2_width)
            except Exception as exc:
                outcome = exc
            del data, job  # the trio side holds the bytes as long as it needs them
            self._token.run_sync_soon(deliver, outcome)

    def close(self, workers: int) -> None:
        """Make every worker return after the chunk it is hashing; queued chunks are dropped."""
        self._stop.set()
        for _ in range(workers):
            self._jobs.put(None)


async def hash_object(
    store: Store,
    info: ObjectInfo,
    piece_length: int,
    *,
    hybrid: bool = False,
    threads: int = 2,
    read_ahead: int = 4,
    on_chunk: Callable[[int, bytes], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> PieceHashes:
    """Read the object ``info`` describes from ``store`` and hash it into pieces.

    Args:
      piece_length: a power of two >= 16 KiB (MetainfoError otherwise).
      hybrid: also compute the BEP 52 ``pieces_root`` and ``piece_layer``.
      threads: hashing threads at once (>= 1).
      read_ahead: chunks in flight (reading, hashing or waiting to be handed on), >= 1.
      on_chunk: called as ``on_chunk(offset, data)`` for every chunk, in offset order, after
        it was hashed (the seed cache writes the bytes there). Sync, on the trio thread.
      on_progress: called with the number of bytes hashed so far, after each chunk.

    Returns the PieceHashes (for an empty object: no pieces, no root; build_torrent refuses it).
    Raises the store's StoreError subclasses, ObjectChanged for a short read, whatever a
    callback raises, MetainfoError for a bad piece length. Cancellation stops everything.
    """
    metainfo.check_piece_length(piece_length)
    size = info.size
    if size <= 0:
        return PieceHashes(piece_length, b"")
    pieces_per_chunk = max(1, CHUNK_TARGET // piece_length)
    chunk = piece_length * pieces_per_chunk
    count = -(-size // chunk)
    v2_width: int | None = None
    if hybrid:
        blocks_per_piece = piece_length // merkle.BLOCK_SIZE
        # A file of one piece or less: its root pads its blocks to a power of two only.
        one_piece_blocks = merkle.next_pow2(-(-size // merkle.BLOCK_SIZE))
        v2_width = one_piece_blocks if size <= piece_length else blocks_per_piece

    workers = max(1, threads)
    pool = _HashPool(piece_length, v2_width, trio.lowlevel.current_trio_token())
    limiter = trio.CapacityLimiter(workers)
    slots = trio.Semaphore(max(1, read_ahead))
    turns = [trio.Event() for _ in range(count + 1)]
    turns[0].set()
    hashed: list[trio.Event] = [trio.Event() for _ in range(count)]
    outcomes: list[tuple[bytes, bytes] | Exception] = [ValueError("not hashed")] * count
    sha1s: list[bytes] = [b""] * count
    nodes: list[bytes] = [b""] * count
    failure: list[Exception] = []
    done = 0

    async def one(index: int, cancel_scope: trio.CancelScope) -> None:
        nonlocal done
        try:
            offset = index * chunk
            want = min(chunk, size - offset)
            data = await store.read(info, offset, want)
            if len(data) != want:
                raise ObjectChanged(
                    f"{info.bucket}/{info.key}: {len(data)} bytes at offset {offset} where "
                    f"{want} were expected; the object changed while hashing"
                )

            def deliver(outcome: tuple[bytes, bytes] | Exception) -> None:
                outcomes[index] = outcome
                hashed[index].set()

            pool.submit(data, deliver)
            await hashed[index].wait()
            outcome = outcomes[index]
            if isinstance(outcome, Exception):
                raise outcome
            sha1s[index], nodes[index] = outcome
            await turns[index].wait()
            if on_chunk is not None:
                on_chunk(offset, data)
            done += want
            if on_progress is not None:
                on_progress(done)
            turns[index + 1].set()
        except Exception as exc:
            # Keep the first error as it is (no ExceptionGroup for callers to unwrap).
            if not failure:
                failure.append(exc)
            cancel_scope.cancel()
        finally:
            slots.release()

    async with trio.open_nursery() as threads_nursery:
        for _ in range(workers):
            threads_nursery.start_soon(
                functools.partial(trio.to_thread.run_sync, pool.work, limiter=limiter)
            )
        try:
            async with trio.open_nursery() as readers:
                for index in range(count):
                    await slots.acquire()
                    readers.start_soon(one, index, readers.cancel_scope)
        finally:
            # Each worker finishes at most the chunk in its hands, then returns.
            pool.close(workers)
    if failure:
        raise failure[0]

    if not hybrid:
        return PieceHashes(piece_length, b"".join(sha1s))
    layer = b"".join(nodes)
    if size <= piece_length:
        return PieceHashes(piece_length, b"".join(sha1s), pieces_root=layer, piece_layer=None)
    hashes = [layer[i : i + merkle.HASH_SIZE] for i in range(0, len(layer), merkle.HASH_SIZE)]
    root = merkle.root_from_layer(hashes, piece_length)
    return PieceHashes(piece_length, b"".join(sha1s), pieces_root=root, piece_layer=layer)
