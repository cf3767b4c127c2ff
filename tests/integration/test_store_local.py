"""LocalStore against a real temporary directory: key rules, symlinks, listing, change
detection and exact reads."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import trio

from seeder.config import BucketConfig
from seeder.store import (
    BlockingReader,
    InvalidKey,
    NoSuchBucket,
    NoSuchKey,
    ObjectChanged,
    ObjectInfo,
    Store,
    StoreError,
    SupportsBlockingRead,
    make_store,
)
from seeder.store import local as local_mod
from seeder.store.local import LocalStore

SIZE = 100_003  # odd, so chunk and range edges do not line up by accident


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path, bytes]:
    """(root, outside dir, payload of root/data.bin)."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    payload = random.Random(7).randbytes(SIZE)
    (root / "data.bin").write_bytes(payload)
    (outside / "secret").write_bytes(b"do not serve")
    return root, outside, payload


def store_for(root: Path) -> LocalStore:
    return LocalStore("files", str(root), threads=2)


BAD_KEYS = [
    ("", "empty"),
    ("/etc/passwd", "absolute"),
    ("../outside/secret", "parent"),
    ("a/../../outside/secret", "parent deeper"),
    ("a/../data.bin", "parent even when it stays inside"),
    ("./data.bin", "dot segment"),
    ("a/./b", "inner dot segment"),
    (".", "dot"),
    ("..", "dotdot"),
    ("a//b", "empty segment"),
    ("dir/", "trailing slash"),
    ("/", "slash only"),
    ("data.bin\x00.txt", "NUL"),
    ("\x00", "NUL only"),
    ("bad\udcff", "lone surrogate: not UTF-8"),
    ("x" * 1025, "longer than S3 allows"),
]


@pytest.mark.parametrize(("key", "why"), BAD_KEYS, ids=[w for _, w in BAD_KEYS])
async def test_bad_keys_are_refused(tree: tuple[Path, Path, bytes], key: str, why: str) -> None:
    root, _, _ = tree
    store = store_for(root)
    with pytest.raises(InvalidKey):
        await store.head(key)
    fake = ObjectInfo("files", key, 10, "0" * 32, 0.0)
    with pytest.raises(InvalidKey):
        await store.read(fake, 0, 10)


async def test_symlinks_leaving_the_root_are_refused_and_not_listed(
    tree: tuple[Path, Path, bytes],
) -> None:
    root, outside, payload = tree
    (root / "escape").symlink_to(outside / "secret")
    (root / "escape-dir").symlink_to(outside, target_is_directory=True)
    (root / "inside-link").symlink_to(root / "data.bin")
    store = store_for(root)
    with pytest.raises(InvalidKey):
        await store.head("escape")
    with pytest.raises(InvalidKey):
        await store.head("escape-dir/secret")
    # A read built by hand for an escaping key is refused too, not just head.
    with pytest.raises(InvalidKey):
        await store.read(ObjectInfo("files", "escape", 12, "0" * 32, 0.0), 0, 12)
    linked = await store.head("inside-link")
    assert await store.read(linked, 0, 16) == payload[:16]
    keys = [i.key async for i in store.list()]
    assert keys == ["data.bin", "inside-link"]


def test_resolution_is_realpath_with_or_without_symlinks(
    tree: tuple[Path, Path, bytes],
) -> None:
    """The lstat-per-part fast path gives what realpath gives, and every key with a
    symlink (inside or leaving the root) or a missing part takes realpath's answer."""
    root, outside, _ = tree
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "e" / "f.bin").write_bytes(b"x")
    (root / "link-d").symlink_to(root / "d", target_is_directory=True)
    (root / "escape-dir").symlink_to(outside, target_is_directory=True)
    store = store_for(root)
    real_root = os.path.realpath(root)
    for key in ("data.bin", "d/e/f.bin", "link-d/e/f.bin", "d/missing/x", "nope"):
        want = os.path.realpath(os.path.join(real_root, *key.split("/")))
        assert store._resolve(key) == want, key
    assert store._plain_path(("d", "e", "f.bin")) == os.path.join(real_root, "d", "e", "f.bin")
    assert store._plain_path(("link-d", "e", "f.bin")) is None
    assert store._plain_path(("nope",)) is None
    with pytest.raises(InvalidKey):
        store._resolve("escape-dir/secret")


async def test_listing_is_in_s3_key_order_and_skips_non_files(tmp_path: Path) -> None:
    root = tmp_path / "r"
    files = ["a.txt", "a/b", "a/c/d", "a-b", "b", "A", "sp ace", "ä/ö", "z+=&"]
    for name in files:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(name.encode())
    (root / "empty-dir").mkdir()
    os.mkfifo(root / "fifo")
    (root / "dangling").symlink_to(root / "nowhere")
    (root / "loop").symlink_to(root, target_is_directory=True)
    store = store_for(root)
    infos = [i async for i in store.list()]
    keys = [i.key for i in infos]
    # S3 lists keys in UTF-8 byte order of the whole key: "a.txt" < "a/b" since '.' < '/'.
    assert keys == sorted(files, key=lambda k: k.encode())
    for info in infos:
        assert info.size == len(info.key.encode())
        assert info == await store.head(info.key)


async def test_listing_crosses_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_mod, "LIST_BATCH", 3)
    root = tmp_path / "r"
    keys = [f"d{i % 3}/f{i:02d}" for i in range(10)] + ["top"]
    for k in keys:
        (root / k).parent.mkdir(parents=True, exist_ok=True)
        (root / k).write_bytes(b"x")
    assert [i.key async for i in store_for(root).list()] == sorted(keys)


async def test_empty_bucket_lists_nothing(tmp_path: Path) -> None:
    assert [i async for i in store_for(tmp_path).list()] == []


async def test_missing_root_is_no_such_bucket(tmp_path: Path) -> None:
    store = store_for(tmp_path / "gone")
    with pytest.raises(NoSuchBucket):
        await store.head("x")
    with pytest.raises(NoSuchBucket):
        [i async for i in store.list()]


async def test_missing_keys_and_directories(tree: tuple[Path, Path, bytes]) -> None:
    root, _, _ = tree
    (root / "dir").mkdir()
    store = store_for(root)
    for key in ("nope", "dir", "data.bin/inner", "nope/deeper"):
        with pytest.raises(NoSuchKey):
            await store.head(key)
    with pytest.raises(NoSuchKey):
        await store.head("data.bin", version_id="v1")


@pytest.mark.parametrize(
    ("start", "length", "want"),
    [
        (0, 0, (0, 0)),
        (0, SIZE, (0, SIZE)),
        (0, 1, (0, 1)),
        (SIZE - 1, 1, (SIZE - 1, SIZE)),
        (SIZE - 1, 10, (SIZE - 1, SIZE)),  # runs past the end: short
        (SIZE, 5, (SIZE, SIZE)),
        (SIZE + 10, 5, (SIZE, SIZE)),
        (12_345, 67_890, (12_345, 12_345 + 67_890)),
    ],
)
async def test_read_is_exact(
    tree: tuple[Path, Path, bytes], start: int, length: int, want: tuple[int, int]
) -> None:
    root, _, payload = tree
    store = store_for(root)
    info = await store.head("data.bin")
    assert info.size == SIZE
    assert await store.read(info, start, length) == payload[want[0] : want[1]]
    streamed = [c async for c in store.stream(info, start, length, chunk=4096)]
    assert all(0 < len(c) <= 4096 for c in streamed)
    assert b"".join(streamed) == payload[want[0] : want[1]]


async def test_negative_range_is_a_caller_bug(tree: tuple[Path, Path, bytes]) -> None:
    root, _, _ = tree
    store = store_for(root)
    info = await store.head("data.bin")
    for start, length in ((-1, 5), (0, -1)):
        with pytest.raises(ValueError):
            await store.read(info, start, length)


async def test_etag_is_deterministic_across_stores(tree: tuple[Path, Path, bytes]) -> None:
    root, _, _ = tree
    a = await store_for(root).head("data.bin")
    b = await LocalStore("files", str(root)).head("data.bin")
    assert a == b
    assert len(a.etag) == 32 and int(a.etag, 16) >= 0
    assert a.last_modified == os.stat(root / "data.bin").st_mtime_ns / 1e9


def overwrite_same_size(path: Path) -> None:
    st = path.stat()
    with open(path, "r+b") as f:
        f.write(b"\xff" * 16)
    # mtime granularity can hide a write made in the same tick; move it as any later write would.
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def append(path: Path) -> None:
    with open(path, "ab") as f:
        f.write(b"more")


def replace_atomically(path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(path.read_bytes())
    os.utime(tmp, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))  # same size and mtime
    os.replace(tmp, path)  # only the inode differs


@pytest.mark.parametrize("change", [overwrite_same_size, append, replace_atomically])
async def test_change_between_head_and_read(tree: tuple[Path, Path, bytes], change) -> None:
    root, _, _ = tree
    store = store_for(root)
    info = await store.head("data.bin")
    change(root / "data.bin")
    with pytest.raises(ObjectChanged):
        await store.read(info, 0, 100)
    with pytest.raises(ObjectChanged):
        [c async for c in store.stream(info, 0, 100)]
    fresh = await store.head("data.bin")
    assert fresh.etag != info.etag
    assert len(await store.read(fresh, 0, 100)) == 100


async def test_deleted_between_head_and_read(tree: tuple[Path, Path, bytes]) -> None:
    root, _, _ = tree
    store = store_for(root)
    info = await store.head("data.bin")
    (root / "data.bin").unlink()
    with pytest.raises(NoSuchKey):
        await store.read(info, 0, 10)


async def test_make_store_local(tree: tuple[Path, Path, bytes]) -> None:
    root, _, payload = tree
    store = make_store(BucketConfig(name="files", backend="local", path=str(root)))
    assert isinstance(store, Store)
    assert store.bucket == "files"
    info = await store.head("data.bin")
    assert await store.read(info, 1, 3) == payload[1:4]
    assert store.origin_url("data.bin") is None
    assert store.presigned_url("data.bin", 60) is None
    await store.aclose()


@pytest.mark.parametrize(
    "cfg",
    [
        BucketConfig(name="x", backend="local", path=None),
        BucketConfig(name="x", backend="ftp", path="/tmp"),
    ],
)
def test_make_store_refuses_bad_config(cfg: BucketConfig) -> None:
    with pytest.raises(StoreError):
        make_store(cfg)


# -- the blocking reader (hashing reads through it) ------------------------------------


def fds_open() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize(
    ("start", "buf_len", "want"),
    [
        (0, SIZE, (0, SIZE)),
        (0, 1, (0, 1)),
        (12_345, 67_890, (12_345, 12_345 + 67_890)),
        (SIZE - 1, 10, (SIZE - 1, SIZE)),  # runs past the end: short
        (SIZE, 5, (SIZE, SIZE)),  # at the end: nothing
        (SIZE + 10, 5, (SIZE, SIZE)),
        (5, 0, (5, 5)),
    ],
)
async def test_reader_fills_the_buffer_exactly(
    tree: tuple[Path, Path, bytes], start: int, buf_len: int, want: tuple[int, int]
) -> None:
    root, _, payload = tree
    store = store_for(root)
    assert isinstance(store, SupportsBlockingRead)
    info = await store.head("data.bin")
    reader = await store.open_reader(info)
    assert isinstance(reader, BlockingReader) and reader.parallelism == 1
    buf = bytearray(b"\xee" * (buf_len + 3))  # the tail past buf_len must stay untouched
    n = await trio.to_thread.run_sync(reader.read_into, start, memoryview(buf)[:buf_len])
    assert n == want[1] - want[0]
    assert bytes(buf[:n]) == payload[want[0] : want[1]]
    assert buf[n:] == b"\xee" * (len(buf) - n)
    reader.close()


async def test_reader_closes_its_file_and_refuses_reads_after(
    tree: tuple[Path, Path, bytes]
) -> None:
    root, _, _ = tree
    store = store_for(root)
    info = await store.head("data.bin")
    before = fds_open()
    reader = await store.open_reader(info)
    assert fds_open() == before + 1
    reader.close()
    reader.close()  # idempotent
    assert fds_open() == before
    with pytest.raises(StoreError, match="closed"):
        reader.read_into(0, memoryview(bytearray(10)))
    reader = await store.open_reader(info)
    with pytest.raises(ValueError):
        reader.read_into(-1, memoryview(bytearray(10)))
    reader.close()


@pytest.mark.parametrize("change", [overwrite_same_size, append, replace_atomically])
async def test_reader_sees_changes(tree: tuple[Path, Path, bytes], change) -> None:
    root, _, _ = tree
    store = store_for(root)
    info = await store.head("data.bin")
    reader = await store.open_reader(info)
    buf = memoryview(bytearray(100))
    assert reader.read_into(0, buf) == 100
    change(root / "data.bin")
    if change is replace_atomically:
        # The open file is the old inode, unchanged: its bytes are still the pinned ones.
        assert reader.read_into(0, buf) == 100
    else:
        with pytest.raises(ObjectChanged):
            reader.read_into(0, buf)
    reader.close()
    with pytest.raises(ObjectChanged):  # opened after the change: refused at once
        await store.open_reader(info)


async def test_reader_of_truncated_file_is_object_changed(
    tree: tuple[Path, Path, bytes]
) -> None:
    root, _, _ = tree
    store = store_for(root)
    info = await store.head("data.bin")
    reader = await store.open_reader(info)
    os.truncate(root / "data.bin", 10)
    with pytest.raises(ObjectChanged):
        reader.read_into(0, memoryview(bytearray(1000)))
    reader.close()


async def test_open_reader_errors(tree: tuple[Path, Path, bytes]) -> None:
    root, _, _ = tree
    store = store_for(root)
    info = await store.head("data.bin")
    before = fds_open()
    for bad, error in [
        (ObjectInfo("files", "nope.bin", 1, info.etag, 0.0), NoSuchKey),
        (ObjectInfo("files", "../outside/secret", 1, info.etag, 0.0), InvalidKey),
        (ObjectInfo("files", "data.bin", SIZE, "0" * 32, 0.0), ObjectChanged),
    ]:
        with pytest.raises(error):
            await store.open_reader(bad)
    assert fds_open() == before  # nothing leaked on the error paths
