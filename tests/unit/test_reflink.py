"""seeder.seed.reflink's decision (pure), and the seed cache's copy where the filesystem has
no reflinks (tmp_path: ext4 or tmpfs here; the real clone is tests/integration/test_reflink_xfs.py
on a loop-mounted XFS)."""

from __future__ import annotations

import errno
import hashlib
import os

import pytest

from seeder.seed import reflink
from seeder.seed.cache import SeedCache

H1 = hashlib.sha1(b"1").hexdigest()


@pytest.mark.parametrize("err", [errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EINVAL,
                                 errno.ENOTTY, errno.ENOSYS])
def test_no_reflink_here_means_copy_instead(err: int) -> None:
    assert reflink.copy_instead(err)


@pytest.mark.parametrize("err", [errno.EBADF, errno.EIO, errno.ENOSPC, errno.EPERM,
                                 errno.EACCES, errno.ETXTBSY])
def test_real_errors_are_not_hidden_by_a_copy(err: int) -> None:
    assert not reflink.copy_instead(err)


def test_ficlone_is_the_linux_ioctl_number() -> None:
    # _IOW(0x94, 9, int): direction write (1 << 30), size 4 (<< 16), type 0x94 (<< 8), nr 9.
    assert reflink.FICLONE == (1 << 30) | (4 << 16) | (0x94 << 8) | 9


def _fs_has_no_reflink(path) -> bool:
    src = os.open(path / "probe-src", os.O_RDWR | os.O_CREAT, 0o644)
    dst = os.open(path / "probe-dst", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(src, b"x" * 4096)
        return not reflink.clone(src, dst)
    finally:
        os.close(src)
        os.close(dst)


def test_without_reflinks_the_cache_writes_the_bytes_it_is_given(tmp_path) -> None:
    if not _fs_has_no_reflink(tmp_path):
        pytest.skip("tmp_path's filesystem has reflinks: tests/integration/test_reflink_xfs.py")
    data = os.urandom(100_000)
    (tmp_path / "bucket-file").write_bytes(data)
    cache = SeedCache(tmp_path / "seeds", 10**6)
    fd = os.open(tmp_path / "bucket-file", os.O_RDONLY)
    try:
        w = cache.begin("obj.bin", len(data), source_fd=fd)
    finally:
        os.close(fd)
    assert not w.cloned
    w.write(0, data[:60_000])
    w.write(60_000, memoryview(data)[60_000:])
    assert w.commit(H1) == tmp_path / "seeds" / H1
    assert (tmp_path / "seeds" / H1 / "obj.bin").read_bytes() == data


def test_a_source_of_another_length_is_not_trusted(tmp_path) -> None:
    # Whatever the filesystem: a source whose length is not the object's is never kept.
    (tmp_path / "short").write_bytes(b"abc")
    cache = SeedCache(tmp_path / "seeds", 10**6)
    fd = os.open(tmp_path / "short", os.O_RDONLY)
    try:
        w = cache.begin("obj.bin", 5, source_fd=fd)
    finally:
        os.close(fd)
    assert not w.cloned
    w.write(0, b"hello")
    assert w.commit(H1) is not None
    assert (tmp_path / "seeds" / H1 / "obj.bin").read_bytes() == b"hello"
