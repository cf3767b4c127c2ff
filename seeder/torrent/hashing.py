"""Hash an object into torrent pieces: ranged store reads, hashing in worker threads.

Objects up to ``SMALL_OBJECT`` (256 KiB) are read whole with one ``store.read`` and hashed on
the trio thread: for a 1 KiB object the pipelines' thread hops and nursery cost far more than
the hashing. Larger objects take one of two pipelines, which give the same result. When the
store can hand out a blocking reader (``SupportsBlockingRead``: LocalStore, S3Store) the
*reader pipeline* runs:

- Chunks are the reader's ``read_size`` rounded to whole pieces (2 MiB for local files, which
  keeps the buffers in the CPU caches; 8 MiB for S3, per ranged GET).
- ``read_ahead`` page-aligned buffers of one chunk each are allocated once and reused for the
  whole object (a fresh 8 MiB ``bytes`` per chunk costs page faults and zeroing, and the
  kernel copies into a misaligned one several times slower: see ``_page_aligned_buffer``).
- Worker threads take ``(chunk index, buffer)`` jobs from a queue, read the chunk into the
  buffer themselves (``BlockingReader.read_into``: pread for files, the HTTP body read into
  the buffer for S3) and hash it straight from the buffer: no trio hop between reading and
  hashing. There are ``threads`` workers, or more (up to ``read_ahead``) when the reader
  says reads wait on the network (``parallelism``): then that many ranged GETs are in flight.
- With ``on_chunk``: results reach the trio thread through ``run_sync_soon``; it calls
  ``on_chunk`` and ``on_progress`` in offset order, then gives the buffer back with the next
  chunk's index.
- Without ``on_chunk`` (nobody needs the bytes): each worker keeps one buffer and takes the
  next chunk index itself; the trio thread hears only of progress (every ``PROGRESS_STEP``
  bytes of the in-order prefix, and the end) and of errors. Waking it per chunk cost more
  CPU than anything else left between us and mktorrent (``_OwnBufferWorkers``).

Otherwise (a store with only ``read``) the *read pipeline* below runs:

- The object is read in *chunks* of whole pieces (one piece, or as many as make ~8 MiB when
  pieces are smaller, so a thread hop and a ranged GET carry enough bytes to be worth it).
- Up to ``read_ahead`` chunks are in flight at once: being read, hashed, or waiting their
  turn. That bounds memory to about ``max(read_ahead, threads + 1)`` chunks, never the object.
- ``threads`` hashing threads (started with ``trio.to_thread.run_sync`` under their own
  CapacityLimiter, alive for the whole object) take chunks from a queue as soon as they are
  read; hashlib releases the GIL on large buffers, so they hash in parallel.
  The same thread computes the chunk's v1 SHA-1 piece hashes and, for hybrid, the BEP 52
  SHA-256 block hashes folded into one piece-layer node per piece (``seeder.torrent.merkle``).
- Results are put back in object order; ``on_chunk(offset, data)`` and
  ``on_progress(bytes_done)`` are called from the trio thread strictly in offset order.

In both, a read that comes back short (the object shrank) raises ``ObjectChanged``; store
errors pass through unchanged. On any error or cancellation every read and hash in flight is
stopped before :func:`hash_object` returns or raises; nothing is left running.
"""

from __future__ import annotations

import functools
import hashlib
import mmap
import queue
import threading
from collections import deque
from collections.abc import Callable

import trio

from seeder.store import (
    BlockingReader,
    ObjectChanged,
    ObjectInfo,
    Store,
    SupportsBlockingRead,
)
from seeder.torrent import merkle, metainfo
from seeder.torrent.metainfo import PieceHashes

__all__ = [
    "CHUNK_TARGET", "OnChunk", "chunk_length", "hash_chunk", "hash_object", "hash_whole",
]

# Bytes per read and per thread hop when pieces are small: large enough that per-call costs
# (a thread hand-off, an HTTP request) are noise next to hashing, small enough for memory.
CHUNK_TARGET = 8 * 1024 * 1024

# Without on_chunk, the trio thread hears of progress this often (bytes), not every chunk.
PROGRESS_STEP = 64 * 1024 * 1024

# Objects up to this size (one piece of the smallest automatic piece length) take the small
# path: one ``store.read`` (one thread hop, one ranged GET) and hashing on the trio thread
# (SHA-1 of 256 KiB is ~0.2 ms here): no reader, no worker threads, no nursery.
SMALL_OBJECT = 256 * 1024

#: ``on_chunk(offset, data)``: ``data`` is ``bytes`` or a ``memoryview`` of a buffer that is
#: reused once the call returns. Use (copy, write) it during the call; never keep it.
OnChunk = Callable[[int, "bytes | memoryview"], None]
Outcome = tuple[bytes, bytes] | Exception


def chunk_length(piece_length: int, target: int = CHUNK_TARGET) -> int:
    """Bytes per chunk: as many whole pieces as fit ``target``, at least one piece."""
    return piece_length * max(1, target // piece_length)


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

    def submit(self, data: bytes, deliver: Callable[[Outcome], None]
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


def _page_aligned_buffer(size: int) -> memoryview:
    """A writable buffer starting on a page boundary (an anonymous mapping).

    Why not ``bytearray``: malloc puts big blocks 16 bytes past a page boundary, and the
    kernel's copy from the page-aligned page cache into such a buffer is several times
    slower (docs/benchmarks.md, "Hashing"). Freed when the last view of it goes away.
    """
    return memoryview(mmap.mmap(-1, size))


class _Inbox:
    """Results handed from worker threads to the trio thread (all methods: trio thread)."""

    def __init__(self) -> None:
        self._items: deque[tuple[int, Outcome]] = deque()
        self._event = trio.Event()

    def put(self, index: int, outcome: Outcome) -> None:
        self._items.append((index, outcome))
        self._event.set()

    async def get(self) -> tuple[int, Outcome]:
        while not self._items:  # bounded: put() sets the event, so one wait per item
            await self._event.wait()
            self._event = trio.Event()
        return self._items.popleft()


def _read_and_hash(reader: BlockingReader, info: ObjectInfo, chunk: int, piece_length: int,
                   v2_width: int | None, index: int, buf: memoryview) -> tuple[bytes, bytes]:
    """Read chunk ``index`` into ``buf`` and hash it (worker threads)."""
    offset = index * chunk
    want = min(chunk, info.size - offset)
    view = buf[:want]
    got = reader.read_into(offset, view)
    if got != want:
        raise ObjectChanged(
            f"{info.bucket}/{info.key}: {got} bytes at offset {offset} where "
            f"{want} were expected; the object changed while hashing"
        )
    return hash_chunk(view, piece_length, v2_width)


class _OwnBufferWorkers:
    """Reader pipeline without ``on_chunk``: nobody needs the bytes, so each worker reuses
    its own buffer and takes the next chunk index itself, and the trio thread hears only of
    progress (every PROGRESS_STEP bytes of the in-order prefix, and the end) and errors.

    Why: waking the trio thread for every chunk costs it CPU per chunk, most of what
    separated us from mktorrent (docs/benchmarks.md, "Hashing").
    """

    def __init__(self, reader: BlockingReader, info: ObjectInfo, chunk: int, piece_length: int,
                 v2_width: int | None, inbox: _Inbox, token: trio.lowlevel.TrioToken) -> None:
        self._reader = reader
        self._info = info
        self._chunk = chunk
        self._piece_length = piece_length
        self._v2_width = v2_width
        self._inbox = inbox
        self._token = token
        self._count = -(-info.size // chunk)
        self.sha1s: list[bytes] = [b""] * self._count
        self.nodes: list[bytes] = [b""] * self._count
        self._lock = threading.Lock()
        self._next = 0  # next chunk index to take
        self._finished = [False] * self._count
        self._prefix = 0  # chunks 0.._prefix-1 are all hashed
        self._reported = 0  # bytes last reported
        self._stop = False

    def work(self) -> None:
        """A worker thread: take chunks until none is left, an error, or :meth:`close`."""
        buf = _page_aligned_buffer(min(self._chunk, self._info.size))
        while True:  # bounded: every pass takes a new index (count in all) or returns
            with self._lock:
                if self._stop or self._next >= self._count:
                    return
                index = self._next
                self._next += 1
            try:
                sha1, node = _read_and_hash(self._reader, self._info, self._chunk,
                                            self._piece_length, self._v2_width, index, buf)
            except Exception as exc:
                self.close()
                self._token.run_sync_soon(self._inbox.put, index, exc)
                return
            with self._lock:
                self.sha1s[index], self.nodes[index] = sha1, node
                self._finished[index] = True
                while self._prefix < self._count and self._finished[self._prefix]:
                    self._prefix += 1  # bounded by count
                done = min(self._prefix * self._chunk, self._info.size)
                if done > self._reported and (
                    done == self._info.size or done - self._reported >= PROGRESS_STEP
                ):
                    self._reported = done
                    # Under the lock, so reports reach the trio thread in increasing order.
                    self._token.run_sync_soon(self._inbox.put, done, (b"", b""))

    def close(self) -> None:
        """Workers return after the chunk in their hands."""
        with self._lock:
            self._stop = True


class _ReaderPool:
    """Worker threads that read chunks into reused buffers and hash them (reader pipeline)."""

    def __init__(self, reader: BlockingReader, info: ObjectInfo, chunk: int, piece_length: int,
                 v2_width: int | None, inbox: _Inbox, token: trio.lowlevel.TrioToken) -> None:
        self._reader = reader
        self._info = info
        self._chunk = chunk
        self._piece_length = piece_length
        self._v2_width = v2_width
        self._inbox = inbox
        self._token = token
        self._jobs: queue.SimpleQueue[tuple[int, memoryview] | None] = queue.SimpleQueue()
        self._stop = threading.Event()

    def submit(self, index: int, buf: memoryview) -> None:
        """Read and hash chunk ``index`` into ``buf`` (which the caller must not touch until
        the result for ``index`` arrived in the inbox)."""
        self._jobs.put((index, buf))

    def _one(self, index: int, buf: memoryview) -> Outcome:
        return _read_and_hash(self._reader, self._info, self._chunk, self._piece_length,
                              self._v2_width, index, buf)

    def work(self) -> None:
        """A worker thread's loop: until :meth:`close`. Never raises for a bad chunk."""
        while True:  # bounded by close(): one sentinel per worker
            job = self._jobs.get()
            if job is None or self._stop.is_set():
                return
            index, buf = job
            outcome: Outcome
            try:
                outcome = self._one(index, buf)
            except Exception as exc:
                outcome = exc
            del buf, job
            self._token.run_sync_soon(self._inbox.put, index, outcome)

    def close(self, workers: int) -> None:
        """Make every worker return after the chunk in its hands; queued jobs are dropped."""
        self._stop.set()
        for _ in range(workers):
            self._jobs.put(None)


async def _hash_with_reader(
    reader: BlockingReader, info: ObjectInfo, piece_length: int, chunk: int,
    v2_width: int | None, threads: int, read_ahead: int, on_chunk: OnChunk | None,
    on_progress: Callable[[int], None] | None,
) -> tuple[list[bytes], list[bytes]]:
    """The reader pipeline (module docstring): ``(v1 hashes per chunk, v2 nodes per chunk)``."""
    size = info.size
    count = -(-size // chunk)
    buffers = min(max(1, read_ahead), count)
    workers = min(buffers, max(1, threads, reader.parallelism))
    if on_chunk is None:
        return await _hash_with_own_buffers(reader, info, piece_length, chunk, v2_width,
                                            workers, on_progress)
    inbox = _Inbox()
    pool = _ReaderPool(reader, info, chunk, piece_length, v2_width, inbox,
                       trio.lowlevel.current_trio_token())
    limiter = trio.CapacityLimiter(workers)
    sha1s: list[bytes] = [b""] * count
    nodes: list[bytes] = [b""] * count
    failure: list[Exception] = []

    async def consume() -> None:
        held: dict[int, memoryview] = {}
        for index in range(buffers):
            held[index] = _page_aligned_buffer(min(chunk, size))
            pool.submit(index, held[index])
        ready: dict[int, tuple[bytes, bytes]] = {}
        next_submit = buffers
        done = 0
        for index in range(count):
            while index not in ready:  # bounded: each pass takes one result (count in all)
                got, outcome = await inbox.get()
                if isinstance(outcome, Exception):
                    raise outcome
                ready[got] = outcome
            sha1s[index], nodes[index] = ready.pop(index)
            offset = index * chunk
            want = min(chunk, size - offset)
            buf = held.pop(index)
            if on_chunk is not None:
                on_chunk(offset, buf[:want])
            done += want
            if on_progress is not None:
                on_progress(done)
            if next_submit < count:
                held[next_submit] = buf
                pool.submit(next_submit, buf)
                next_submit += 1

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(functools.partial(trio.to_thread.run_sync, pool.work,
                                                 limiter=limiter))
        try:
            await consume()
        except Exception as exc:
            failure.append(exc)  # raised as it is below, not inside an ExceptionGroup
        finally:
            # Each worker finishes at most the chunk in its hands, then returns; the
            # nursery waits for them, so no thread touches a buffer or the reader after.
            pool.close(workers)
    if failure:
        raise failure[0]
    return sha1s, nodes


async def _hash_with_own_buffers(
    reader: BlockingReader, info: ObjectInfo, piece_length: int, chunk: int,
    v2_width: int | None, workers: int, on_progress: Callable[[int], None] | None,
) -> tuple[list[bytes], list[bytes]]:
    """The reader pipeline without on_chunk (see _OwnBufferWorkers)."""
    inbox = _Inbox()
    pool = _OwnBufferWorkers(reader, info, chunk, piece_length, v2_width, inbox,
                             trio.lowlevel.current_trio_token())
    limiter = trio.CapacityLimiter(workers)
    failure: list[Exception] = []

    async def consume() -> None:
        done = 0
        while done < info.size:  # bounded: every report is a larger count, the last is size
            done, outcome = await inbox.get()
            if isinstance(outcome, Exception):
                raise outcome
            if on_progress is not None:
                on_progress(done)

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(functools.partial(trio.to_thread.run_sync, pool.work,
                                                 limiter=limiter))
        try:
            await consume()
        except Exception as exc:
            failure.append(exc)  # raised as it is below, not inside an ExceptionGroup
        finally:
            pool.close()
    if failure:
        raise failure[0]
    return pool.sha1s, pool.nodes


async def _hash_with_reads(
    store: Store, info: ObjectInfo, piece_length: int, chunk: int, v2_width: int | None,
    threads: int, read_ahead: int, on_chunk: OnChunk | None,
    on_progress: Callable[[int], None] | None,
) -> tuple[list[bytes], list[bytes]]:
    """The read pipeline (module docstring): ``(v1 hashes per chunk, v2 nodes per chunk)``."""
    size = info.size
    count = -(-size // chunk)
    workers = max(1, threads)
    pool = _HashPool(piece_length, v2_width, trio.lowlevel.current_trio_token())
    limiter = trio.CapacityLimiter(workers)
    slots = trio.Semaphore(max(1, read_ahead))
    turns = [trio.Event() for _ in range(count + 1)]
    turns[0].set()
    hashed: list[trio.Event] = [trio.Event() for _ in range(count)]
    outcomes: list[Outcome] = [ValueError("not hashed")] * count
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

            def deliver(outcome: Outcome) -> None:
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
    return sha1s, nodes


def hash_whole(info: ObjectInfo, data: bytes, piece_length: int, *,
               hybrid: bool = False) -> PieceHashes:
    """What :func:`hash_object` gives for ``info`` when its bytes are ``data`` (an object
    read whole: small ones, in the worker thread that read it). Sync, thread-safe.
    ObjectChanged if ``data`` is not ``info.size`` bytes, MetainfoError for a bad piece
    length."""
    metainfo.check_piece_length(piece_length)
    if len(data) != info.size:
        raise ObjectChanged(
            f"{info.bucket}/{info.key}: {len(data)} bytes where {info.size} were expected;"
            " the object changed while hashing"
        )
    if info.size <= 0:
        return PieceHashes(piece_length, b"")
    sha1s, nodes = hash_chunk(data, piece_length, _v2_width(info.size, piece_length, hybrid))
    return _piece_hashes(info.size, piece_length, hybrid, [sha1s], [nodes])


def _v2_width(size: int, piece_length: int, hybrid: bool) -> int | None:
    """Leaves per piece subtree for hash_chunk (None: v1 only)."""
    if not hybrid:
        return None
    # A file of one piece or less: its root pads its blocks to a power of two only.
    if size <= piece_length:
        return merkle.next_pow2(-(-size // merkle.BLOCK_SIZE))
    return piece_length // merkle.BLOCK_SIZE


def _piece_hashes(size: int, piece_length: int, hybrid: bool, sha1s: list[bytes],
                  nodes: list[bytes]) -> PieceHashes:
    """The PieceHashes of an object from its chunks' hashes, in offset order."""
    if not hybrid:
        return PieceHashes(piece_length, b"".join(sha1s))
    layer = b"".join(nodes)
    if size <= piece_length:
        return PieceHashes(piece_length, b"".join(sha1s), pieces_root=layer, piece_layer=None)
    hashes = [layer[i : i + merkle.HASH_SIZE] for i in range(0, len(layer), merkle.HASH_SIZE)]
    root = merkle.root_from_layer(hashes, piece_length)
    return PieceHashes(piece_length, b"".join(sha1s), pieces_root=root, piece_layer=layer)


async def hash_object(
    store: Store,
    info: ObjectInfo,
    piece_length: int,
    *,
    hybrid: bool = False,
    threads: int = 2,
    read_ahead: int = 4,
    on_chunk: OnChunk | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> PieceHashes:
    """Read the object ``info`` describes from ``store`` and hash it into pieces.

    Args:
      piece_length: a power of two >= 16 KiB (MetainfoError otherwise).
      hybrid: also compute the BEP 52 ``pieces_root`` and ``piece_layer``.
      threads: hashing threads at once (>= 1). With a network reader (S3) up to
        ``read_ahead`` threads run, each with one ranged read in flight.
      read_ahead: chunks in flight (reading, hashing or waiting to be handed on), >= 1;
        memory is about ``read_ahead`` chunks (8 MiB, or one piece if pieces are larger).
      on_chunk: called as ``on_chunk(offset, data)`` for every chunk, in offset order, after
        it was hashed (the seed cache writes the bytes there). Sync, on the trio thread.
        ``data`` is ``bytes`` or a ``memoryview`` of a reused buffer: valid only during the
        call (write or copy it then; keeping a reference sees it overwritten).
      on_progress: called with the number of bytes hashed so far, after each chunk.

    Returns the PieceHashes (for an empty object: no pieces, no root; build_torrent refuses it).
    Raises the store's StoreError subclasses, ObjectChanged for a short read, whatever a
    callback raises, MetainfoError for a bad piece length. Cancellation stops everything.
    """
    metainfo.check_piece_length(piece_length)
    size = info.size
    if size <= 0:
        return PieceHashes(piece_length, b"")
    if size <= SMALL_OBJECT:  # one read, hashed here (see SMALL_OBJECT)
        data = await store.read(info, 0, size)
        hashes = hash_whole(info, data, piece_length, hybrid=hybrid)
        if on_chunk is not None:
            on_chunk(0, data)
        if on_progress is not None:
            on_progress(size)
        return hashes
    v2_width = _v2_width(size, piece_length, hybrid)
    if isinstance(store, SupportsBlockingRead):
        reader = await store.open_reader(info)
        chunk = chunk_length(piece_length, getattr(reader, "read_size", CHUNK_TARGET))
        try:
            sha1s, nodes = await _hash_with_reader(
                reader, info, piece_length, chunk, v2_width, threads, read_ahead, on_chunk,
                on_progress,
            )
        finally:
            reader.close()
    else:
        chunk = chunk_length(piece_length)
        sha1s, nodes = await _hash_with_reads(
            store, info, piece_length, chunk, v2_width, threads, read_ahead, on_chunk,
            on_progress,
        )

    return _piece_hashes(size, piece_length, hybrid, sha1s, nodes)
