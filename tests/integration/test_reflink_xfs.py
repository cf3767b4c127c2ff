"""Reflinked seed-cache copies on a real XFS with reflinks (a loop-mounted image made here).

Needs root, mkfs.xfs (xfsprogs, installed by scripts/test.sh) and loop devices; skipped
otherwise. The filesystem of the state dir on this machine (ext4) has no reflinks: its copy
path is tests/unit/test_reflink.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from seeder.config import BucketConfig, Config, GenerationConfig
from seeder.seed.cache import CacheError, SeedCache
from seeder.seed.policy import Seeding
from seeder.store import make_store
from seeder.store.local import LocalStore
from seeder.torrent.catalog import Catalog
from seeder.torrent.entry import seed_key
from seeder.torrent.service import TorrentService

MiB = 1 << 20


@pytest.fixture
def xfs(tmp_path: Path):
    """A mounted XFS with reflinks; unmounted (and its loop device freed) afterwards."""
    if os.geteuid() != 0 or shutil.which("mkfs.xfs") is None:
        pytest.skip("needs root and mkfs.xfs (xfsprogs)")
    image, mnt = tmp_path / "xfs.img", tmp_path / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(320 * MiB)  # sparse; mkfs.xfs wants at least 300 MB
    made = subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)],
                          capture_output=True, text=True, timeout=60)
    if made.returncode != 0:
        pytest.skip(f"mkfs.xfs failed: {made.stderr.strip()}")
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)],
                             capture_output=True, text=True, timeout=60)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a loop device here: {mounted.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True, timeout=60)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize


def test_a_cloned_entry_shares_the_bytes_and_keeps_them_after_an_overwrite(xfs: Path) -> None:
    data = os.urandom(8 * MiB)
    (xfs / "bucket").mkdir()
    source = xfs / "bucket" / "obj.bin"
    source.write_bytes(data)
    os.sync()
    cache = SeedCache(xfs / "seeds", 64 * MiB)
    before = free_bytes(xfs)
    fd = os.open(source, os.O_RDONLY)
    try:
        w = cache.begin("obj.bin", len(data), source_fd=fd)
    finally:
        os.close(fd)
    assert w.cloned
    # The source overwritten in place after the clone: the entry keeps the cloned bytes.
    with open(source, "r+b") as f:
        f.write(b"\0" * MiB)
    for off in range(0, len(data), MiB):  # what the generator hashed, handed on
        w.write(off, data[off:off + MiB])
    path = w.commit("ab" * 20)
    assert path is not None
    assert (path / "obj.bin").read_bytes() == data
    os.sync()
    # 8 MiB shared, then 1 MiB unshared by the overwrite: far less than a second copy.
    assert before - free_bytes(xfs) < 4 * MiB


def test_a_clone_that_differs_from_the_hashed_bytes_is_never_committed(xfs: Path) -> None:
    (xfs / "src").write_bytes(b"new bytes!")
    cache = SeedCache(xfs / "seeds", MiB)
    fd = os.open(xfs / "src", os.O_RDONLY)
    try:
        w = cache.begin("src", 10, source_fd=fd)
    finally:
        os.close(fd)
    assert w.cloned
    with pytest.raises(CacheError, match="differs from the bytes hashed"):
        w.write(0, b"old bytes!")  # hashed before the file changed
    w.abort()
    assert len(cache) == 0 and not any((xfs / "seeds" / ".tmp").iterdir())


async def test_generation_reflinks_a_local_object_that_is_not_seeded_in_place(
        xfs: Path) -> None:
    # local_no_copy = false: the object goes into the seed cache, as a reflink here.
    root = xfs / "bucket"
    (root / "d").mkdir(parents=True)
    data = os.urandom(3 * MiB + 123)
    (root / "d" / "obj.bin").write_bytes(data)
    config = Config(generation=GenerationConfig(threads=2, concurrency=2),
                    buckets=(BucketConfig(name="bk", backend="local", path=str(root)),))
    store = make_store(config.buckets[0])
    assert isinstance(store, LocalStore)
    cache = SeedCache(xfs / "state" / "seeds", 64 * MiB)
    seeding = Seeding(None, cache, clock=lambda: 0.0,  # type: ignore[arg-type]
                      local_stores={"bk": store}, in_place=False)
    made: list[object] = []

    def factory(info):
        writer = seeding.chunk_sink(info)
        made.append(writer)
        return writer

    catalog = Catalog.open(xfs / "state" / "catalog.sqlite3")
    service = TorrentService(catalog, {"bk": store}, config, chunk_sink_factory=factory)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            entry = await service.get_torrent("bk", "d/obj.bin")
            nursery.cancel_scope.cancel()
    finally:
        catalog.close()
    assert [getattr(w, "cloned", None) for w in made] == [True]
    key = seed_key(entry.info_hash_v1, entry.info_hash_v2)
    assert cache.is_complete(key)
    assert (cache.lookup(key) / "obj.bin").read_bytes() == data
    # In place (the default): nothing is copied at all.
    seeding.in_place = True
    info = await store.head("d/obj.bin")
    assert seeding.chunk_sink(info) is None
