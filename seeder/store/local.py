"""A local directory as a bucket: keys are '/'-joined paths below a root, never outside it.

Key rules (:func:`key_parts`): a key is refused with InvalidKey if it is empty, holds a NUL
byte, starts with '/', ends with '/', has an empty, '.' or '..' segment, or is not valid
UTF-8. After that check the path is resolved (symlinks followed) and must still lie below
the root: a symlink that leaves the root is InvalidKey too.

Change detection: S3 ETags are content hashes, far too dear to compute for every head. The
local ETag is a fingerprint of (inode, size, mtime_ns): 32 hex digits of BLAKE2b over those
three numbers. It is deterministic (same file, same stat, same ETag, across restarts) and
changes on every overwrite that moves the size or mtime, and on an atomic replace (new
inode). A write that keeps size and mtime_ns exactly (a deliberate ``touch -d``) is not
seen; nothing cheaper can see it. Every read re-stats the open file before and after
reading and raises ObjectChanged if the fingerprint moved.

Blocking calls (stat, open, pread, scandir) run in trio worker threads behind one
CapacityLimiter per store. :meth:`LocalStore.open_reader` gives a :class:`LocalReader` instead:
one open file whose ``read_into`` preads straight into the caller's buffer in the caller's
thread (the hashing threads), checking the fingerprint around every read the same way.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from itertools import islice
from typing import Any, TypeVar

import trio

from seeder.store import (
    DEFAULT_STREAM_CHUNK,
    BackendAccessDenied,
    InvalidKey,
    NoSuchBucket,
    NoSuchKey,
    ObjectChanged,
    ObjectInfo,
    StoreError,
    StoreUnavailable,
)
from seeder.store.localwalk import SortedDirs, regular_info, walk_from
from seeder.store.paging import ListPage, group

LIST_BATCH = 500  # entries walked per worker-thread hop while listing
MAX_KEY_BYTES = 1024  # S3's own limit on a key's UTF-8 length

T = TypeVar("T")


def key_parts(key: str) -> tuple[str, ...]:
    """The path segments of ``key``, or InvalidKey saying why it cannot name a file.

    Pure: no file system access (the symlink check happens at resolution).
    """
    if not key:
        raise InvalidKey("empty key")
    if "\x00" in key:
        raise InvalidKey("key contains a NUL byte")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey("key is not valid UTF-8") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidKey(f"key longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/"):
        raise InvalidKey("key starts with '/'")
    if key.endswith("/"):
        raise InvalidKey("key ends with '/' (a directory)")
    parts = tuple(key.split("/"))
    for part in parts:
        if part == "":
            raise InvalidKey("key has an empty segment ('//')")
        if part in (".", ".."):
            raise InvalidKey(f"key has a {part!r} segment")
    return parts


def fingerprint(st: os.stat_result) -> str:
    """The local ETag of a file: BLAKE2b-128 hex of (inode, size, mtime_ns)."""
    data = f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _sorted_entries(dirpath: str) -> list[tuple[str, os.DirEntry[str], bool]]:
    """(sort name, entry, is real directory) of ``dirpath``, sorted as S3 orders keys:
    a directory sorts as its name plus '/'. Unreadable directory: empty."""
    entries: list[tuple[str, os.DirEntry[str], bool]] = []
    try:
        with os.scandir(dirpath) as it:
            for entry in it:
                try:
                    entry.name.encode("utf-8")
                    is_dir = entry.is_dir(follow_symlinks=False)
                except (UnicodeEncodeError, OSError):
                    continue
                entries.append((entry.name + "/" if is_dir else entry.name, entry, is_dir))
    except OSError:
        return []
    entries.sort(key=lambda e: e[0])
    return entries


def _within(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _os_error(e: OSError, what: str) -> StoreError:
    """Translate an OSError met while working on ``what`` (one place, like httpcore)."""
    if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
        return NoSuchKey(f"{what}: no such file")
    if e.errno in (errno.EACCES, errno.EPERM):
        return BackendAccessDenied(f"{what}: permission denied")
    if e.errno in (errno.ENAMETOOLONG, errno.ELOOP):
        return InvalidKey(f"{what}: {os.strerror(e.errno)}")
    return StoreUnavailable(f"{what}: {e.strerror or e}")


class LocalReader:
    """A :class:`~seeder.store.BlockingReader` over one open file (see the module docstring).

    ``read_into`` is ``preadv`` into the caller's buffer, then an ``fstat`` that must still
    match the ETag the reader was opened for. Thread-safe (pread has no shared offset).
    """

    parallelism = 1  # a read is a page-cache copy: CPU, not waiting
    # 2 MiB: read_ahead buffers of it fit the L3 cache with room to spare; with 8 MiB ones
    # (32 MiB in all) the kernel's copy and the hashing both ran measurably slower here.
    read_size = 2 * 1024 * 1024

    def __init__(self, fd: int, info: ObjectInfo, what: str) -> None:
        self._fd: int | None = fd
        self._info = info
        self._what = what

    def read_into(self, start: int, buf: memoryview) -> int:
        """Fill ``buf`` from ``start`` (short only at ``info.size``); ObjectChanged if the
        file's fingerprint moved or it ended early; StoreError for other OS errors."""
        if start < 0:
            raise ValueError(f"bad range start={start}")
        fd = self._fd
        if fd is None:
            raise StoreError(f"{self._what}: reader is closed")
        want = max(0, min(len(buf), self._info.size - start))
        view = buf[:want]
        pos = 0
        try:
            while pos < want:  # bounded: each pass advances pos or breaks
                n = os.preadv(fd, [view[pos:]], start + pos)
                if n <= 0:
                    break
                pos += n
            if pos != want or fingerprint(os.fstat(fd)) != self._info.etag:
                raise ObjectChanged(f"{self._what}: changed while being read")
        except OSError as e:
            raise _os_error(e, self._what) from None
        return want

    def close(self) -> None:
        """Close the file. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class LocalStore:
    """The files below ``root`` as bucket ``bucket``. See the module docstring for rules."""

    # A listing entry is the file's stat, all a HEAD gives (TorrentService.get_torrent).
    listing_is_head = True

    def __init__(self, bucket: str, root: str, *, threads: int = 4) -> None:
        self.bucket = bucket
        self.root = os.path.realpath(root)
        self._limiter = trio.CapacityLimiter(max(1, threads))
        self._dirs = SortedDirs()

    def __repr__(self) -> str:
        return f"LocalStore({self.bucket!r}, {self.root!r})"

    async def _run(self, fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn, limiter=self._limiter)

    # -- resolution (sync, runs in worker threads) ---------------------------------------

    def _check_root(self) -> None:
        if not os.path.isdir(self.root):
            raise NoSuchBucket(f"bucket {self.bucket!r}: {self.root} is not a directory")

    def _resolve(self, key: str) -> str:
        """The real path of ``key`` below the root, or InvalidKey/NoSuchBucket."""
        parts = key_parts(key)
        self._check_root()
        real = self._plain_path(parts)
        if real is None:
            real = os.path.realpath(os.path.join(self.root, *parts))
        if not _within(self.root, real) or real == self.root:
            raise InvalidKey("key resolves outside the bucket root")
        return real

    def _plain_path(self, parts: tuple[str, ...]) -> str | None:
        """The root joined with ``parts`` when every one of them exists and none is a
        symlink: then that is what ``realpath`` gives (the root is real, ``key_parts``
        allows no ``.``, ``..`` or empty part), at an ``lstat`` per part instead of
        ``realpath``'s walk of the whole path in Python (~20 us, the largest item of a
        scan of small objects). None otherwise: the caller asks ``realpath``."""
        path = self.root.rstrip(os.sep)
        for part in parts:
            path = path + os.sep + part
            try:
                if stat.S_ISLNK(os.lstat(path).st_mode):
                    return None
            except OSError:
                return None
        return path

    def _stat_key(self, key: str) -> os.stat_result:
        path = self._resolve(key)
        try:
            st = os.stat(path)
        except OSError as e:
            raise _os_error(e, f"{self.bucket}/{key}") from None
        if not stat.S_ISREG(st.st_mode):
            raise NoSuchKey(f"{self.bucket}/{key}: not a regular file")
        return st

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(
            bucket=self.bucket,
            key=key,
            size=st.st_size,
            etag=fingerprint(st),
            last_modified=st.st_mtime_ns / 1e9,
        )

    def _open_pinned(self, info: ObjectInfo) -> tuple[int, os.stat_result]:
        """An fd of ``info.key`` whose fingerprint is still ``info.etag`` (else ObjectChanged)."""
        what = f"{self.bucket}/{info.key}"
        path = self._resolve(info.key)
        try:
            # O_NOFOLLOW: the resolved path has no symlinks left; if one appears now, refuse.
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as e:
            raise _os_error(e, what) from None
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode) or fingerprint(before) != info.etag:
                raise ObjectChanged(f"{what}: changed since it was listed")
        except BaseException as e:
            os.close(fd)
            if isinstance(e, OSError):
                raise _os_error(e, what) from None
            raise
        return fd, before

    def _open_reader_sync(self, info: ObjectInfo) -> LocalReader:
        fd, _ = self._open_pinned(info)
        if hasattr(os, "posix_fadvise"):
            try:  # a bigger kernel read-ahead when the file is not in the page cache
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            except OSError:
                pass  # advice only
        return LocalReader(fd, info, f"{self.bucket}/{info.key}")

    def _read_sync(self, info: ObjectInfo, start: int, length: int) -> bytes:
        what = f"{self.bucket}/{info.key}"
        fd, before = self._open_pinned(info)
        try:
            end = min(start + length, before.st_size)
            chunks: list[bytes] = []
            pos = start
            while pos < end:  # bounded: each pass advances pos or breaks
                data = os.pread(fd, end - pos, pos)
                if not data:
                    break
                chunks.append(data)
                pos += len(data)
            if fingerprint(os.fstat(fd)) != info.etag or pos != end:
                raise ObjectChanged(f"{what}: changed while being read")
            return b"".join(chunks)
        except OSError as e:
            raise _os_error(e, what) from None
        finally:
            os.close(fd)

    def _walk(self) -> Iterator[ObjectInfo]:
        """Regular files below the root in S3 key order (UTF-8 byte order of the full key).

        Sorting each directory's names with '/' appended to subdirectories gives the global
        order while holding one sorted directory per level, not the tree. Skipped: symlinks
        that leave the root, symlinked directories (loops, duplicates), non-regular files,
        names that are not UTF-8, and directories that cannot be read.
        """
        self._check_root()
        # A stack of (key prefix, remaining sorted entries) per open directory level.
        stack: list[tuple[str, Iterator[tuple[str, os.DirEntry[str], bool]]]] = [
            ("", iter(_sorted_entries(self.root)))
        ]
        while stack:  # bounded by the tree: every pass consumes one entry or pops a level
            prefix, entries = stack[-1]
            item = next(entries, None)
            if item is None:
                stack.pop()
                continue
            _, entry, is_dir = item
            if is_dir:
                sub = prefix + entry.name + "/"
                stack.append((sub, iter(_sorted_entries(entry.path))))
                continue
            info = self._entry_info(entry, prefix)
            if info is not None:
                yield info

    def _entry_info(self, entry: os.DirEntry[str], prefix: str) -> ObjectInfo | None:
        key = prefix + entry.name
        try:
            if entry.is_symlink():
                real = os.path.realpath(entry.path)
                if not _within(self.root, real):
                    return None
            st = entry.stat(follow_symlinks=True)
        except OSError:
            return None  # vanished or dangling: not an object
        if not stat.S_ISREG(st.st_mode):
            return None
        return self._info(key, st)

    # -- Store interface ---------------------------------------------------------------

    async def head(self, key: str, version_id: str | None = None) -> ObjectInfo:
        """Stat ``key``. Local files have no versions: any ``version_id`` is NoSuchKey."""
        if version_id is not None:
            key_parts(key)
            raise NoSuchKey(f"{self.bucket}/{key}: local buckets have no versions")
        st = await self._run(lambda: self._stat_key(key))
        return self._info(key, st)

    async def list(self) -> AsyncIterator[ObjectInfo]:
        """Every regular file below the root, in key order, walked a batch per thread hop."""
        walker = self._walk()
        try:
            while True:  # bounded by the tree: each pass consumes up to LIST_BATCH entries
                batch = await self._run(lambda: list(islice(walker, LIST_BATCH)))
                for info in batch:
                    yield info
                if len(batch) < LIST_BATCH:
                    return
        finally:
            walker.close()

    async def list_page(self, prefix: str, delimiter: str, after: str,
                        limit: int) -> ListPage:
        """One ListObjects page (``seeder.store.paging``), walked from ``after`` in one
        worker-thread hop: a sorted directory per level and a stat per key returned."""
        def page() -> ListPage:
            self._check_root()
            walk = walk_from(self.root, prefix, delimiter, after, self._dirs,
                             regular_info(self.root, self._info))
            return group(walk, prefix, delimiter, after, limit)

        return await self._run(page)

    async def read(self, info: ObjectInfo, start: int, length: int) -> bytes:
        """Exactly ``length`` bytes from ``start`` (short only at EOF). ValueError if
        ``start`` or ``length`` is negative (a caller bug, not bad input)."""
        if start < 0 or length < 0:
            raise ValueError(f"bad range start={start} length={length}")
        if length == 0 or start >= info.size:
            return b""
        return await self._run(lambda: self._read_sync(info, start, length))

    async def read_many(self, infos: Sequence[ObjectInfo],
                        then: Callable[[ObjectInfo, bytes], Any]) -> list[Any]:
        """``then(info, data)`` of each whole object in one worker-thread hop
        (``seeder.store.SupportsReadMany``): each read as :meth:`read` (pinned to its ETag);
        in its place, the Exception its read or ``then`` raised."""
        def run() -> list[Any]:
            out: list[Any] = []
            for info in infos:
                try:
                    out.append(then(info, self._read_sync(info, 0, info.size)))
                except Exception as exc:  # one object's failure is its own
                    out.append(exc)
            return out

        return await self._run(run)

    async def stream(
        self, info: ObjectInfo, start: int, length: int, chunk: int = DEFAULT_STREAM_CHUNK
    ) -> AsyncIterator[bytes]:
        """``read`` in pieces of ``chunk`` bytes; every piece re-checks the fingerprint."""
        if chunk <= 0:
            raise ValueError("chunk must be positive")
        end = min(start + length, info.size)
        pos = start
        while pos < end:  # bounded: pos advances by >= 1 each pass or we return
            data = await self.read(info, pos, min(chunk, end - pos))
            if not data:
                return
            yield data
            pos += len(data)

    async def open_reader(self, info: ObjectInfo) -> LocalReader:
        """A :class:`LocalReader` of ``info`` (one open file; the caller closes it).
        ObjectChanged if the file already moved; NoSuchKey, InvalidKey as :meth:`read`."""
        return await self._run(lambda: self._open_reader_sync(info))

    def file_of(self, key: str) -> str:
        """The real path of ``key``'s file (symlinks resolved, below the root); InvalidKey or
        NoSuchBucket as a read would raise. Sync and cheap (no open): for seeding in place."""
        return self._resolve(key)

    def origin_url(self, key: str) -> str | None:
        """None: a local directory has no URL of its own (the web seed is ``proxy``)."""
        return None

    def presigned_url(
        self, key: str, expires: int, version_id: str | None = None
    ) -> str | None:
        """None: nothing to presign."""
        return None

    async def aclose(self) -> None:
        """Nothing to release (files are opened per read)."""
