"""seeder.torrent.hashing over the real local store, judged by libtorrent's own create_torrent.

For each file, libtorrent hashes the same bytes with the same piece length (v1 and hybrid);
our pipeline's pieces, pieces root and piece layer must equal its, and libtorrent must load
the torrent we build with the same info-hashes we compute. Both pipelines run: the reader
pipeline (LocalStore hands out a blocking reader) and the read pipeline (a store with only
``read``: CountingStore). The reader pipeline also runs over S3Store against moto.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import threading
from pathlib import Path
from typing import Any

import libtorrent as lt
import pytest
import trio

from seeder.store import (
    BlockingReader,
    ObjectChanged,
    ObjectInfo,
    StoreUnavailable,
    SupportsBlockingRead,
)
from seeder.store.local import LocalReader, LocalStore
from seeder.store.s3 import S3Store
from seeder.torrent import hashing, metainfo, validation
from seeder.torrent.metainfo import MetainfoError, PieceHashes
from tests.conftest import MotoServer

KiB = 1024
MiB = 1024 * KiB
BUCKET = "bkt"
HANG_GUARD = 60  # seconds: only stops a hung test, never asserts speed


def write(tmp_path: Path, name: str, size: int) -> bytes:
    data = random.Random(size).randbytes(size)
    (tmp_path / name).write_bytes(data)
    return data


def libtorrent_dict(path: Path, piece_length: int, hybrid: bool) -> dict[bytes, Any]:
    flags = 0 if hybrid else lt.create_torrent.v1_only  # 0 is hybrid (field notes)
    ct = lt.create_torrent(lt.list_files(str(path)), piece_length, flags)
    lt.set_piece_hashes(ct, str(path.parent))
    return ct.generate()


def build(info: ObjectInfo, hashes: PieceHashes) -> bytes:
    return metainfo.build_torrent(
        bucket=info.bucket, key=info.key, size=info.size, hashes=hashes,
        announce="http://127.0.0.1:1/announce", announce_list=[["http://127.0.0.1:1/announce"]],
        url_list=[], created_by="s3torrent/test",
    )


CASES = {
    "1 byte": (1, 16 * KiB),
    "exactly 3 pieces": (3 * 64 * KiB, 64 * KiB),
    "3 pieces + 1": (3 * 64 * KiB + 1, 64 * KiB),
    "one piece, short": (100_000, 256 * KiB),
    "many chunks of small pieces": (2 * hashing.CHUNK_TARGET + 3 * 16 * KiB + 5, 16 * KiB),
    "pieces larger than a chunk": (2 * 8 * MiB + 12345, 8 * MiB),
}


# reader: blocking reader, buffers passed through on_chunk; own buffers: blocking reader and
# no on_chunk (workers keep their buffers); reads: a store with only read().
PIPELINES = ["reader", "own buffers", "reads"]


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("hybrid", [False, True], ids=["v1", "hybrid"])
@pytest.mark.parametrize(("size", "piece_length"), CASES.values(), ids=CASES.keys())
async def test_pipeline_matches_libtorrent(
    tmp_path: Path, size: int, piece_length: int, hybrid: bool, pipeline: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hashing, "PROGRESS_STEP", 1)  # own buffers: report every chunk too
    data = write(tmp_path, "obj.bin", size)
    local = LocalStore(BUCKET, str(tmp_path))
    store = CountingStore(local) if pipeline == "reads" else local
    assert isinstance(store, SupportsBlockingRead) == (pipeline != "reads")
    info = await store.head("obj.bin")
    chunks: list[tuple[int, bytes]] = []
    progress: list[int] = []

    def on_chunk(offset: int, view: bytes | memoryview) -> None:
        # data may be a view of a reused buffer: copy it during the call (the contract)
        chunks.append((offset, bytes(view)))

    hashes = await hashing.hash_object(
        store, info, piece_length, hybrid=hybrid, threads=2, read_ahead=2,
        on_chunk=None if pipeline == "own buffers" else on_chunk, on_progress=progress.append,
    )

    theirs = libtorrent_dict(tmp_path / "obj.bin", piece_length, hybrid)
    their_info = theirs[b"info"]
    assert hashes.piece_length == their_info[b"piece length"] == piece_length
    assert hashes.pieces == their_info[b"pieces"]
    if hybrid:
        entry = their_info[b"file tree"][b"obj.bin"][b""]
        assert hashes.pieces_root == entry[b"pieces root"]
        assert hashes.piece_layer == theirs.get(b"piece layers", {}).get(entry[b"pieces root"])
        assert b"files" not in their_info  # single file: no pad file, same as ours
    else:
        assert hashes.pieces_root is None and hashes.piece_layer is None

    # on_chunk got every byte once, in offset order; progress climbed to the size.
    if pipeline != "own buffers":
        assert [off for off, _ in chunks] == sorted(off for off, _ in chunks)
        assert b"".join(b for _, b in chunks) == data
    assert progress == sorted(set(progress)) and progress[-1] == size

    torrent = build(info, hashes)
    validation.validate(torrent)
    ti = lt.torrent_info(torrent)
    ours = metainfo.info_hashes(torrent)
    assert str(ti.info_hashes().v1) == ours.v1.hex()
    if hybrid:
        assert str(ti.info_hashes().v2) == ours.v2.hex()
    for i in (0, ti.num_pieces() - 1):
        assert ti.hash_for_piece(i) == hashlib.sha1(
            data[i * piece_length : (i + 1) * piece_length]
        ).digest()


async def test_same_object_same_torrent(tmp_path: Path) -> None:
    write(tmp_path, "k", 300 * KiB + 1)
    store = LocalStore(BUCKET, str(tmp_path))
    info = await store.head("k")
    torrents = {
        build(info, await hashing.hash_object(store, info, 64 * KiB, hybrid=True, threads=t,
                                              read_ahead=r))
        for t, r in [(1, 1), (2, 4), (4, 2)]
    }
    assert len(torrents) == 1


async def test_empty_object_reads_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    store = CountingStore(LocalStore(BUCKET, str(tmp_path)))
    info = await store.head("empty")
    hashes = await hashing.hash_object(store, info, 16 * KiB, hybrid=True)
    assert hashes == PieceHashes(16 * KiB, b"")
    assert store.reads == 0
    with pytest.raises(metainfo.EmptyObjectError):
        build(info, hashes)


@pytest.mark.parametrize("bad", [0, 1000, 8 * KiB, 48 * KiB])
async def test_bad_piece_length_is_refused_before_reading(tmp_path: Path, bad: int) -> None:
    write(tmp_path, "k", 10)
    store = CountingStore(LocalStore(BUCKET, str(tmp_path)))
    with pytest.raises(MetainfoError, match="must be a power of two"):
        await hashing.hash_object(store, await store.head("k"), bad)
    assert store.reads == 0


class CountingStore:
    """The real local store, counting reads and how many run at once; can inject a fault."""

    def __init__(self, inner: LocalStore, *, fail_at: int | None = None,
                 fault: Exception | None = None, short_at: int | None = None) -> None:
        self.inner = inner
        self.bucket = inner.bucket
        self.reads = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail_at = fail_at
        self.fault = fault
        self.short_at = short_at
        self.offsets: list[int] = []

    async def head(self, key: str) -> ObjectInfo:
        return await self.inner.head(key)

    async def read(self, info: ObjectInfo, start: int, length: int) -> bytes:
        self.reads += 1
        self.offsets.append(start)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if start == self.fail_at and self.fault is not None:
                raise self.fault
            data = await self.inner.read(info, start, length)
            return data[:-1] if start == self.short_at else data
        finally:
            self.in_flight -= 1


async def test_read_ahead_bounds_chunks_held(tmp_path: Path) -> None:
    """Chunks read but not yet handed to on_chunk (memory held) never exceed read_ahead."""
    size = 6 * 8 * MiB + 1  # 8 MiB pieces: one piece per chunk, 7 chunks
    write(tmp_path, "k", size)
    for read_ahead in (1, 3):
        store = CountingStore(LocalStore(BUCKET, str(tmp_path)))
        info = await store.head("k")
        handed: list[int] = []
        held: list[int] = []

        def on_chunk(offset: int, data: bytes, handed: list[int] = handed,
                     store: CountingStore = store, held: list[int] = held) -> None:
            handed.append(offset)
            held.append(store.reads - (len(handed) - 1))

        await hashing.hash_object(store, info, 8 * MiB, threads=2, read_ahead=read_ahead,
                                  on_chunk=on_chunk)
        assert handed == [i * 8 * MiB for i in range(7)]
        assert store.reads == 7
        assert store.max_in_flight <= read_ahead
        assert max(held) <= read_ahead
        if read_ahead == 1:
            assert max(held) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"fail_at": 2 * 8 * MiB, "fault": StoreUnavailable("backend down")}, StoreUnavailable,
         "backend down"),
        ({"short_at": 3 * 8 * MiB}, ObjectChanged, "the object changed while hashing"),
    ],
)
async def test_store_errors_come_out_as_they_are(
    tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    write(tmp_path, "k", 6 * 8 * MiB + 1)
    store = CountingStore(LocalStore(BUCKET, str(tmp_path)), **kwargs)
    handed: list[int] = []
    with pytest.raises(error, match=message):  # not an ExceptionGroup
        await hashing.hash_object(store, await store.head("k"), 8 * MiB, read_ahead=2,
                                  on_chunk=lambda off, _: handed.append(off))
    bad = kwargs.get("fail_at", kwargs.get("short_at"))
    assert all(off < bad for off in handed)
    assert store.in_flight == 0  # nothing left running


async def test_file_changed_after_head_is_object_changed(tmp_path: Path) -> None:
    write(tmp_path, "k", 200 * KiB)
    store = LocalStore(BUCKET, str(tmp_path))
    info = await store.head("k")
    with open(tmp_path / "k", "ab") as f:
        f.write(b"more")
    with pytest.raises(ObjectChanged):
        await hashing.hash_object(store, info, 16 * KiB)


async def test_callback_error_stops_the_pipeline(tmp_path: Path) -> None:
    write(tmp_path, "k", 6 * 8 * MiB + 1)
    store = CountingStore(LocalStore(BUCKET, str(tmp_path)))

    def on_chunk(offset: int, data: bytes) -> None:
        if offset:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        await hashing.hash_object(store, await store.head("k"), 8 * MiB, read_ahead=2,
                                  on_chunk=on_chunk)
    assert store.reads < 7  # stopped early, did not read the rest
    assert store.in_flight == 0


async def test_cancellation_stops_reading(tmp_path: Path) -> None:
    write(tmp_path, "k", 6 * 8 * MiB + 1)
    store = CountingStore(LocalStore(BUCKET, str(tmp_path)))
    info = await store.head("k")
    with trio.CancelScope() as scope:
        await hashing.hash_object(store, info, 8 * MiB, read_ahead=2,
                                  on_chunk=lambda off, _: scope.cancel())
    assert scope.cancelled_caught
    assert store.reads < 7
    assert store.in_flight == 0


# -- the reader pipeline: buffer reuse, changes, errors, cleanup ----------------------------


def fds_open() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_reused_buffers_hand_on_every_byte_in_order(tmp_path: Path) -> None:
    """More chunks than buffers: each buffer is reused; copies taken in on_chunk are right,
    and a view kept past the call (breaking the contract) sees a later chunk's bytes."""
    chunk = hashing.chunk_length(MiB, LocalReader.read_size)
    data = write(tmp_path, "k", 5 * chunk + 77)  # 6 chunks, 2 buffers
    store = LocalStore(BUCKET, str(tmp_path))
    copies: list[tuple[int, bytes]] = []
    kept: list[memoryview] = []

    def on_chunk(offset: int, view: bytes | memoryview) -> None:
        copies.append((offset, bytes(view)))
        kept.append(memoryview(view))

    hashes = await hashing.hash_object(store, await store.head("k"), 1 * MiB, threads=2,
                                       read_ahead=2, on_chunk=on_chunk)
    assert [off for off, _ in copies] == [i * chunk for i in range(6)]
    assert b"".join(b for _, b in copies) == data
    assert bytes(kept[0]) != copies[0][1]  # overwritten by chunk 2, 4 (same buffer)
    assert hashes.pieces == b"".join(
        hashlib.sha1(data[i : i + MiB]).digest() for i in range(0, len(data), MiB)
    )


async def test_file_changed_mid_hash_is_object_changed(tmp_path: Path) -> None:
    write(tmp_path, "k", 6 * 8 * MiB + 1)
    store = LocalStore(BUCKET, str(tmp_path))
    info = await store.head("k")
    handed: list[int] = []
    before = fds_open()

    def on_chunk(offset: int, data: bytes | memoryview) -> None:
        handed.append(offset)
        if offset == 0:
            with open(tmp_path / "k", "ab") as f:
                f.write(b"more")

    with pytest.raises(ObjectChanged):  # not an ExceptionGroup
        await hashing.hash_object(store, info, 8 * MiB, read_ahead=2, on_chunk=on_chunk)
    assert len(handed) < 7
    assert fds_open() == before  # the reader's file was closed


async def test_reader_pipeline_cancellation_and_callback_errors_clean_up(tmp_path: Path
                                                                         ) -> None:
    write(tmp_path, "k", 6 * 8 * MiB + 1)
    store = LocalStore(BUCKET, str(tmp_path))
    info = await store.head("k")
    before = fds_open()
    with trio.CancelScope() as scope:
        await hashing.hash_object(store, info, 8 * MiB, read_ahead=2,
                                  on_chunk=lambda off, _: scope.cancel())
    assert scope.cancelled_caught
    assert fds_open() == before

    def full(offset: int, data: bytes | memoryview) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        await hashing.hash_object(store, info, 8 * MiB, on_chunk=full)
    assert fds_open() == before


def s3_store(moto: MotoServer, bucket: str) -> S3Store:
    return S3Store(bucket, endpoint_url=moto.endpoint_url, region="us-east-1",
                   access_key="testing", secret_key="testing", threads=3)


@pytest.mark.parametrize("hybrid", [False, True], ids=["v1", "hybrid"])
async def test_s3_pipeline_equals_local(
    tmp_path: Path, moto_server: MotoServer, s3_bucket: str, hybrid: bool
) -> None:
    size = 2 * hashing.CHUNK_TARGET + 3 * 16 * KiB + 5  # 3 chunks of 256 KiB pieces
    data = write(tmp_path, "obj.bin", size)
    moto_server.client().put_object(Bucket=s3_bucket, Key="obj.bin", Body=data)
    store = s3_store(moto_server, s3_bucket)
    info = await store.head("obj.bin")
    chunks: list[bytes] = []
    ours = await hashing.hash_object(store, info, 256 * KiB, hybrid=hybrid, read_ahead=2,
                                     on_chunk=lambda off, b: chunks.append(bytes(b)))
    local = LocalStore(BUCKET, str(tmp_path))
    assert ours == await hashing.hash_object(local, await local.head("obj.bin"), 256 * KiB,
                                             hybrid=hybrid)
    assert b"".join(chunks) == data
    await store.aclose()


async def test_s3_object_overwritten_mid_hash_is_object_changed(
    moto_server: MotoServer, s3_bucket: str
) -> None:
    size = 3 * hashing.CHUNK_TARGET
    c = moto_server.client()
    c.put_object(Bucket=s3_bucket, Key="obj", Body=random.Random(1).randbytes(size))
    store = s3_store(moto_server, s3_bucket)
    info = await store.head("obj")
    handed: list[int] = []

    def on_chunk(offset: int, data: bytes | memoryview) -> None:
        handed.append(offset)
        if offset == 0:
            c.put_object(Bucket=s3_bucket, Key="obj", Body=random.Random(2).randbytes(size))

    # read_ahead=1: chunk 1 is requested only after on_chunk(0) replaced the object.
    with pytest.raises(ObjectChanged):
        await hashing.hash_object(store, info, 8 * MiB, read_ahead=1, on_chunk=on_chunk)
    assert handed == [0]
    await store.aclose()


async def test_own_buffers_progress_is_stepped(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Without on_chunk the trio thread hears of progress every PROGRESS_STEP bytes of the
    in-order prefix and at the end, not every chunk."""
    chunk = hashing.chunk_length(256 * KiB, LocalReader.read_size)
    monkeypatch.setattr(hashing, "PROGRESS_STEP", 3 * chunk)
    write(tmp_path, "k", 10 * chunk + 5)  # 11 chunks
    store = LocalStore(BUCKET, str(tmp_path))
    progress: list[int] = []
    await hashing.hash_object(store, await store.head("k"), 256 * KiB, threads=2,
                              read_ahead=4, on_progress=progress.append)
    assert progress == sorted(set(progress))
    assert progress[-1] == 10 * chunk + 5
    assert 1 <= len(progress) <= 4  # 11 chunks in steps of >= 3, plus the end
    reports = [0, *progress]  # every report but the last is a full step past the one before
    assert all(b - a >= 3 * chunk for a, b in itertools.pairwise(reports[:-1]))


class GatedStore:
    """The real local store whose reader holds every read past the first chunk until
    ``gate`` is set: the test acts at the first progress report while chunks are pending."""

    def __init__(self, inner: LocalStore) -> None:
        self.inner = inner
        self.bucket = inner.bucket
        self.gate = threading.Event()

    async def head(self, key: str) -> ObjectInfo:
        return await self.inner.head(key)

    async def read(self, info: ObjectInfo, start: int, length: int) -> bytes:
        raise AssertionError("the reader pipeline never calls read()")

    async def open_reader(self, info: ObjectInfo) -> BlockingReader:
        return GatedReader(await self.inner.open_reader(info), self.gate)


class GatedReader:
    def __init__(self, inner: BlockingReader, gate: threading.Event) -> None:
        self.inner = inner
        self.gate = gate
        self.parallelism = inner.parallelism
        self.read_size = inner.read_size

    def read_into(self, start: int, buf: memoryview) -> int:
        if start > 0 and not self.gate.wait(HANG_GUARD):
            raise AssertionError("gate never opened")
        return self.inner.read_into(start, buf)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("event", ["truncate", "cancel", "raise"])
async def test_own_buffers_stop_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        event: str) -> None:
    monkeypatch.setattr(hashing, "PROGRESS_STEP", 1)
    chunk = hashing.chunk_length(MiB, LocalReader.read_size)
    write(tmp_path, "k", 12 * chunk)
    store = GatedStore(LocalStore(BUCKET, str(tmp_path)))
    info = await store.head("k")
    before = fds_open()
    seen: list[int] = []
    with trio.CancelScope() as scope:

        def on_progress(done: int) -> None:
            seen.append(done)
            try:
                if event == "truncate":
                    os.truncate(tmp_path / "k", chunk)
                elif event == "cancel":
                    scope.cancel()
                else:
                    raise OSError(28, "No space left on device")
            finally:
                store.gate.set()  # let the held reads go on (and fail, or be dropped)

        expected = {"truncate": ObjectChanged, "raise": OSError}.get(event)
        if expected is None:
            await hashing.hash_object(store, info, MiB, read_ahead=2, on_progress=on_progress)
        else:
            with pytest.raises(expected):  # as it is, not in an ExceptionGroup
                await hashing.hash_object(store, info, MiB, read_ahead=2,
                                          on_progress=on_progress)
    assert scope.cancelled_caught == (event == "cancel")
    assert seen == [chunk]  # stopped at the first report
    assert fds_open() == before  # the reader's file was closed
