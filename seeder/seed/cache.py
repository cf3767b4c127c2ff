"""On-disk seed cache: object bytes kept for libtorrent to seed, under a byte budget, LRU.

Layout (libtorrent seeds straight from it)::

    <root>/<info-hash hex>/<torrent name>     the object's bytes; save_path = <root>/<hex>
    <root>/.tmp/<random>/<torrent name>       being written (while the generator hashes)

An entry is keyed by the lower-case hex of an info-hash (40 digits v1, 64 digits v2). The
LRU order and the sizes live in memory (`LruIndex`, pure) and are rebuilt from the directory
at startup: size = the files' sizes, order = the entry directory's mtime, which `touch` bumps.
Leftover ``.tmp`` directories are deleted at startup.

A download by libtorrent into the cache (`reserve`) makes a *partial* entry, pinned, marked
by an empty file ``<root>/<hex>.partial`` until `complete` (so that after a crash its bytes
are never trusted for seed_mode). Pinned entries are never evicted.
Entries libtorrent is only seeding may be: evict listeners (`add_evict_listener`) are called
with the info-hash before its files go, so the session can drop the torrent first.

Budget: entries in the index never exceed ``max_bytes``. Writers in flight are not counted
(disk use can exceed the budget by the objects being hashed); an object larger than the whole
budget is never written at all.

Thread safety: `CacheWriter.write` may be called from worker threads, concurrently and out of
order; `SeedCache` methods take a lock, so `commit` can run in a worker thread (it fsyncs)
while the trio thread calls `lookup`/`touch`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

from seeder.seed import reflink

log = logging.getLogger(__name__)

TMP_DIR = ".tmp"
_HEX_KEY = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class CacheError(Exception):
    """Misuse of the cache: a bad info-hash or name, an incomplete writer committed."""


def normalize_key(info_hash_hex: str) -> str:
    """Lower-case hex info-hash (40 or 64 digits) -> itself lower-cased; CacheError otherwise."""
    key = info_hash_hex.lower()
    if not _HEX_KEY.fullmatch(key):
        raise CacheError(f"not a hex info-hash: {info_hash_hex!r}")
    return key


def check_name(name: str) -> str:
    """A torrent name usable as one file name in an entry directory; CacheError otherwise."""
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or len(name.encode("utf-8", "surrogateescape")) > 255
    ):
        raise CacheError(f"torrent name unusable as a file name: {name!r}")
    return name


class LruIndex:
    """Sizes and LRU order of cache entries under a byte budget, with pins. No I/O.

    Keys are opaque strings. Oldest first; `touch` and `admit` make a key the newest.
    Pins are counted: n `pin` calls need n `unpin` calls.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self._pins: dict[str, int] = {}
        self.total = 0

    def __contains__(self, key: object) -> bool:
        return key in self._sizes

    def __len__(self) -> int:
        return len(self._sizes)

    def __iter__(self) -> Iterator[str]:
        """Keys, least recently used first."""
        return iter(list(self._sizes))

    def size(self, key: str) -> int | None:
        return self._sizes.get(key)

    def is_pinned(self, key: str) -> bool:
        return self._pins.get(key, 0) > 0

    def victims_for(self, size: int, *, replacing: str | None = None) -> list[str] | None:
        """Keys to evict, oldest first, so that `size` more bytes fit; None if they cannot.

        ``replacing``: a key whose current size is given back first (and never a victim).
        """
        if size < 0:
            raise ValueError("size must be >= 0")
        if size > self.max_bytes:
            return None
        freed = self._sizes.get(replacing, 0) if replacing is not None else 0
        need = self.total - freed + size - self.max_bytes
        victims: list[str] = []
        for key, sz in self._sizes.items():
            if need <= 0:
                break
            if key == replacing or self.is_pinned(key):
                continue
            victims.append(key)
            need -= sz
        return victims if need <= 0 else None

    def admit(self, key: str, size: int, *, pin: bool = False) -> list[str] | None:
        """Record `key` with `size` bytes as the newest entry, evicting what must go.

        Returns the evicted keys (the caller deletes their data), or None when the entry
        cannot fit even after evicting every unpinned entry; then nothing changes. A key
        already present has its size replaced. ``pin`` pins it in the same step.
        """
        victims = self.victims_for(size, replacing=key)
        if victims is None:
            return None
        for v in victims:
            self.discard(v)
        self.total += size - self._sizes.get(key, 0)
        self._sizes[key] = size
        self._sizes.move_to_end(key)
        if pin:
            self.pin(key)
        return victims

    def touch(self, key: str) -> bool:
        """Make `key` the most recently used; False if absent."""
        if key not in self._sizes:
            return False
        self._sizes.move_to_end(key)
        return True

    def discard(self, key: str) -> int | None:
        """Forget `key` (pins too); its size, or None if absent."""
        self._pins.pop(key, None)
        size = self._sizes.pop(key, None)
        if size is not None:
            self.total -= size
        return size

    def pin(self, key: str) -> None:
        """Protect a present `key` from eviction (counted); KeyError if absent."""
        if key not in self._sizes:
            raise KeyError(key)
        self._pins[key] = self._pins.get(key, 0) + 1

    def unpin(self, key: str) -> None:
        """Undo one `pin`; no-op when not pinned."""
        n = self._pins.get(key, 0)
        if n <= 1:
            self._pins.pop(key, None)
        else:
            self._pins[key] = n - 1

    def shrink(self) -> list[str]:
        """Evict the oldest unpinned entries while the total exceeds the budget; their keys.

        Best effort: pinned entries can keep the total over budget until unpinned.
        """
        victims: list[str] = []
        for key in list(self._sizes):
            if self.total <= self.max_bytes:
                break
            if not self.is_pinned(key):
                self.discard(key)
                victims.append(key)
        return victims


class CacheWriter:
    """Bytes of one object being streamed into the cache before its info-hash is known.

    Made by `SeedCache.begin`. `write` any number of times (any order, any thread), then
    exactly one of `commit` or `abort`. A writer for an object larger than the budget
    writes nothing and its `commit` returns None.

    A writer whose file was cloned from the object's source file (`cloned`: a reflink,
    `SeedCache.begin(source_fd=)`) writes nothing either: `write` compares the bytes given
    with the clone's (CacheError at the first difference), so an entry holds exactly the
    bytes that were hashed, whatever happened to the source file meanwhile.
    """

    def __init__(self, cache: SeedCache, name: str, size: int, tmp_dir: Path | None) -> None:
        self._cache = cache
        self.name = name
        self.size = size
        self._tmp_dir = tmp_dir
        self._lock = threading.Lock()
        self._written = 0
        self._done = False
        self._fd: int | None = None
        self.cloned = False
        if tmp_dir is not None:
            tmp_dir.mkdir(parents=True)
            self._fd = os.open(tmp_dir / name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            os.ftruncate(self._fd, size)

    def _clone(self, source_fd: int) -> None:
        """Share ``source_fd``'s bytes (a reflink) where the filesystem can; else nothing
        (the bytes are written as they come). Not thread-safe: before any `write`."""
        fd = self._fd
        if fd is None or not reflink.clone(source_fd, fd):
            return
        if os.fstat(fd).st_size != self.size:  # the source is not the object's length
            os.ftruncate(fd, 0)
            os.ftruncate(fd, self.size)
            return
        self.cloned = True

    @property
    def discarding(self) -> bool:
        """True when this writer keeps nothing (object larger than the budget, or finished)."""
        return self._fd is None

    def write(self, offset: int, data: bytes | memoryview) -> None:
        """Store `data` at `offset` of the object. Thread-safe; a no-op when discarding.

        Raises CacheError for a write outside ``[0, size)``; OSError from the disk.
        """
        if offset < 0 or offset + len(data) > self.size:
            raise CacheError(f"write [{offset}, {offset + len(data)}) outside size {self.size}")
        fd = self._fd
        if fd is None:
            return
        view = memoryview(data)
        if self.cloned:
            if os.pread(fd, len(view), offset) != view:
                raise CacheError(f"the cloned file differs from the bytes hashed at [{offset},"
                                 f" {offset + len(view)})")
        else:
            pos = 0
            while pos < len(view):  # pwrite may write less than asked (disk full: OSError)
                pos += os.pwrite(fd, view[pos:], offset + pos)
        with self._lock:
            self._written += len(view)

    def commit(self, info_hash_hex: str) -> Path | None:
        """Move the bytes into place as entry `info_hash_hex`; its save_path, or None.

        None when the object does not fit the budget even after evicting every unpinned
        entry (the bytes are dropped). An entry already cached under that hash is kept
        (touched) and these bytes dropped. Evicts least recently used entries as needed.
        Blocking (fsync, deletes): run it in a worker thread for big objects.
        Raises CacheError if fewer than `size` bytes were written (the writer is aborted).
        """
        key = normalize_key(info_hash_hex)
        with self._lock:
            if self._done:
                raise CacheError("writer already committed or aborted")
            written = self._written
        if self._fd is None:
            self.abort()
            return None
        if written < self.size:
            self.abort()
            raise CacheError(f"commit after {written} of {self.size} bytes")
        os.fsync(self._fd)  # seed_mode trusts these bytes without a re-hash
        self._close()
        return self._cache._install(self, key)

    def abort(self) -> None:
        """Drop the bytes written so far. Idempotent."""
        self._close()
        self._remove_tmp()

    def _close(self) -> None:
        with self._lock:
            self._done = True
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _remove_tmp(self) -> None:
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        """Abort unless committed."""
        self.abort()


class SeedCache:
    """The seed cache directory plus its `LruIndex`. See the module docstring."""

    def __init__(self, root: Path | str, max_bytes: int) -> None:
        """Open (create) the cache at `root`, rebuild the index, evict down to `max_bytes`."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._index = LruIndex(max_bytes)
        self._listeners: list[Callable[[str], None]] = []
        self._partial: set[str] = set()
        self.evictions = 0
        shutil.rmtree(self.root / TMP_DIR, ignore_errors=True)
        self._rebuild()

    # -- reading -----------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        """Bytes held by entries (pinned ones included; writers in flight excluded)."""
        return self._index.total

    @property
    def max_bytes(self) -> int:
        return self._index.max_bytes

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, info_hash_hex: object) -> bool:
        return isinstance(info_hash_hex, str) and info_hash_hex.lower() in self._index

    def hashes(self) -> list[str]:
        """Entry keys, least recently used first."""
        with self._lock:
            return list(self._index)

    def lookup(self, info_hash_hex: str) -> Path | None:
        """The entry's save_path (``<root>/<hex>``) if cached, else None. Does not touch."""
        key = normalize_key(info_hash_hex)
        with self._lock:
            return self.root / key if key in self._index else None

    def is_complete(self, info_hash_hex: str) -> bool:
        """True when the entry is cached and not a partial download (safe for seed_mode)."""
        key = normalize_key(info_hash_hex)
        with self._lock:
            return key in self._index and key not in self._partial

    def is_pinned(self, info_hash_hex: str) -> bool:
        with self._lock:
            return self._index.is_pinned(normalize_key(info_hash_hex))

    # -- writing -----------------------------------------------------------------------

    def add_evict_listener(self, fn: Callable[[str], None]) -> None:
        """Call ``fn(info_hash_hex)`` before an evicted entry's files are deleted.

        Called with the cache lock held, in whatever thread evicts: keep it short, and do
        not call back into the cache's mutating methods from it.
        """
        self._listeners.append(fn)

    def begin(self, name: str, size: int, *, source_fd: int | None = None) -> CacheWriter:
        """A writer for an object called `name` (the torrent name) of `size` bytes.

        ``source_fd``: an open file holding the object (a local bucket's): its bytes are
        reflinked into the entry where the filesystem can (`CacheWriter.cloned`; the
        writes then only check them), else written as they come. The caller closes it.
        Raises CacheError for a name that is not a plain file name; OSError from the disk.
        """
        check_name(name)
        if size < 0:
            raise CacheError("size must be >= 0")
        if size > self.max_bytes:
            return CacheWriter(self, name, size, None)
        writer = CacheWriter(self, name, size, self.root / TMP_DIR / uuid.uuid4().hex)
        if source_fd is not None:
            try:
                writer._clone(source_fd)
            except BaseException:
                writer.abort()
                raise
        return writer

    def reserve(self, info_hash_hex: str, size: int) -> Path | None:
        """Make room for a download by libtorrent into entry `info_hash_hex`, pinned.

        Returns the save_path (created), or None when `size` cannot fit. An existing entry
        (partial or complete) is pinned and its path returned. Call `complete` when the
        download finishes (it becomes a regular entry), or `remove` it when abandoned.
        """
        key = normalize_key(info_hash_hex)
        with self._lock:
            if key in self._index:
                self._index.pin(key)
                self._index.touch(key)
                return self.root / key
            victims = self._index.admit(key, size, pin=True)
            if victims is None:
                return None
            self._evicted(victims)
            self._marker(key).touch()
            self._partial.add(key)
            path = self.root / key
            path.mkdir(exist_ok=True)
            return path

    def complete(self, info_hash_hex: str) -> None:
        """A reserved download finished: drop the partial mark and one pin. No-op if absent."""
        key = normalize_key(info_hash_hex)
        with self._lock:
            if key not in self._index:
                return
            if key in self._partial:
                self._marker(key).unlink(missing_ok=True)
                self._partial.discard(key)
            self._index.unpin(key)
            self._evicted(self._index.shrink())

    def touch(self, info_hash_hex: str) -> None:
        """Mark the entry used now (LRU); no-op if absent."""
        key = normalize_key(info_hash_hex)
        with self._lock:
            if self._index.touch(key):
                with contextlib.suppress(OSError):
                    os.utime(self.root / key)

    def pin(self, info_hash_hex: str) -> None:
        """Protect a cached entry from eviction (counted); CacheError if absent."""
        key = normalize_key(info_hash_hex)
        with self._lock:
            try:
                self._index.pin(key)
            except KeyError:
                raise CacheError(f"not cached: {key}") from None

    def unpin(self, info_hash_hex: str) -> None:
        """Undo one `pin`; no-op if not pinned. Evicts if the cache is over budget."""
        key = normalize_key(info_hash_hex)
        with self._lock:
            self._index.unpin(key)
            self._evicted(self._index.shrink())

    def remove(self, info_hash_hex: str) -> bool:
        """Delete an entry and its files (even if pinned); False if it was not cached.

        Evict listeners are not called: the caller is the one removing it.
        """
        key = normalize_key(info_hash_hex)
        with self._lock:
            if self._index.discard(key) is None:
                return False
            self._delete(key)
            return True

    # -- internals ---------------------------------------------------------------------

    def _marker(self, key: str) -> Path:
        return self.root / f"{key}.partial"

    def _delete(self, key: str) -> None:
        shutil.rmtree(self.root / key, ignore_errors=True)
        self._marker(key).unlink(missing_ok=True)
        self._partial.discard(key)

    def _install(self, writer: CacheWriter, key: str) -> Path | None:
        with self._lock:
            dest = self.root / key
            if key in self._index:
                writer._remove_tmp()
                self.touch(key)
                return dest
            victims = self._index.admit(key, writer.size)
            if victims is None:
                writer._remove_tmp()
                return None
            self._evicted(victims)
            self._delete(key)  # a stray dir not in the index
            assert writer._tmp_dir is not None
            os.rename(writer._tmp_dir, dest)
            writer._tmp_dir = None
            os.utime(dest)  # the LRU order rebuilt at startup comes from this mtime
            return dest

    def _evicted(self, keys: list[str]) -> None:
        for key in keys:
            self.evictions += 1
            for fn in self._listeners:
                try:
                    fn(key)
                except Exception:
                    log.exception("seed cache evict listener failed for %s", key)
            self._delete(key)
            log.info("seed cache: evicted %s", key)

    def _rebuild(self) -> None:
        found: list[tuple[float, str, int]] = []
        markers: set[str] = set()
        for entry in os.scandir(self.root):
            name = entry.name
            if name.endswith(".partial") and _HEX_KEY.fullmatch(name.removesuffix(".partial")):
                markers.add(name.removesuffix(".partial"))
            if not entry.is_dir(follow_symlinks=False) or not _HEX_KEY.fullmatch(name):
                continue
            found.append((entry.stat().st_mtime, name, _tree_size(Path(entry.path))))
        present = {key for _, key, _ in found}
        self._partial = markers & present
        for stray in markers - present:
            self._marker(stray).unlink(missing_ok=True)
        # Load everything past the budget, oldest first, then shrink: the newest survive.
        budget = self._index.max_bytes
        self._index.max_bytes = sum(size for _, _, size in found) + budget
        for _mtime, key, size in sorted(found):
            self._index.admit(key, size)
        self._index.max_bytes = budget
        self._evicted(self._index.shrink())


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total
