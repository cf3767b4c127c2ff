"""A local bucket's keys in S3 order, from any position: the walk behind ``list_page``.

A listing page must not cost a walk of the whole tree. The walk starts in the deepest
directory the prefix names, and in each directory it bisects the sorted names to the first
entry after the page's ``after`` position, so a page costs one sorted directory per level
plus a ``stat`` per key returned. With ``/`` as the delimiter, a subdirectory that is a
whole common prefix is yielded as that prefix (a ``str``) without descending into it (once
a file below it is found, so empty directories are not prefixes).

Sorted names (not ``DirEntry`` objects, whose cached stat would go stale) are kept per
directory, keyed by the directory's (inode, mtime_ns): a directory that gains or loses an
entry gets a new mtime, so the next page sorts it again. Sorting is unavoidable (a file
system has no key order), but it is paid once per change instead of once per page; the few
most recent directories are kept (:data:`DIR_CACHE`).

Rules as ``LocalStore``'s walk: symlinks that leave the root, symlinked directories,
non-regular files, names that are not UTF-8 and unreadable directories are not listed.
"""

from __future__ import annotations

import bisect
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator

from seeder.store import ObjectInfo
from seeder.store.paging import skips_under

__all__ = ["DIR_CACHE", "SortedDirs", "regular_info", "walk_from"]

DIR_CACHE = 8  # sorted directories kept (a 100k-name directory is ~10 MB of names)

# (sort name: the name, plus "/" for a directory), name, is a directory
Names = tuple[tuple[str, ...], tuple[str, ...], tuple[bool, ...]]


class SortedDirs:
    """Sorted directory listings, remembered per (path, inode, mtime_ns). Thread-safe."""

    def __init__(self, keep: int = DIR_CACHE) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[tuple[int, int], Names]] = OrderedDict()

    def names(self, dirpath: str) -> Names:
        """(sort names, names, is-dir flags) of ``dirpath`` sorted in key order; empty when
        it cannot be read."""
        try:
            st = os.stat(dirpath)
        except OSError:
            return (), (), ()
        stamp = (st.st_ino, st.st_mtime_ns)
        with self._lock:
            hit = self._cache.get(dirpath)
            if hit is not None and hit[0] == stamp:
                self._cache.move_to_end(dirpath)
                return hit[1]
        found = _read_sorted(dirpath)
        with self._lock:
            self._cache[dirpath] = (stamp, found)
            while len(self._cache) > self._keep:
                self._cache.popitem(last=False)
        return found


def _read_sorted(dirpath: str) -> Names:
    entries: list[tuple[str, str, bool]] = []
    try:
        with os.scandir(dirpath) as it:
            for entry in it:
                try:
                    entry.name.encode("utf-8")
                    is_dir = entry.is_dir(follow_symlinks=False)
                except (UnicodeEncodeError, OSError):
                    continue
                entries.append((entry.name + "/" if is_dir else entry.name, entry.name, is_dir))
    except OSError:
        return (), (), ()
    entries.sort()
    return (tuple(e[0] for e in entries), tuple(e[1] for e in entries),
            tuple(e[2] for e in entries))


def walk_from(root: str, prefix: str, delimiter: str, after: str, dirs: SortedDirs,
              info: Callable[[str, str], ObjectInfo | None]) -> Iterator[ObjectInfo | str]:
    """Objects (and, for delimiter ``/``, whole-directory common prefixes) of the tree at
    ``root`` whose keys start with ``prefix``, in key order, from the first one after
    ``after`` on (see ``paging``). ``info(path, key)`` stats one file (None: not an object).
    Entries before ``after`` may still appear near the start; ``paging.group`` drops them."""
    base, _, _ = prefix.rpartition("/")
    start_dir = os.path.join(root, *base.split("/")) if base else root
    key_base = base + "/" if base else ""
    if base and (not _plain_dir(start_dir, root)):
        return
    skip = skips_under(after, prefix, delimiter)
    roll_dirs = delimiter == "/"
    # A stack of (directory, its key prefix, sorted names, next index) per open level.
    stack: list[tuple[str, str, Names, int]] = []

    def push(dirpath: str, key_prefix: str) -> None:
        names = dirs.names(dirpath)
        i = 0
        rel_prefix = prefix[len(key_prefix):] if prefix.startswith(key_prefix) else ""
        if rel_prefix:
            i = bisect.bisect_left(names[0], rel_prefix)
        if after.startswith(key_prefix):
            # the first entry whose subtree may hold keys after ``after``
            j = bisect.bisect_right(names[0], after[len(key_prefix):])
            if j > 0 and names[2][j - 1] and after.startswith(key_prefix + names[0][j - 1]):
                j -= 1  # ``after`` lies inside that directory
            i = max(i, j)
        elif after > key_prefix:
            i = len(names[0])  # the whole directory sorts before ``after``
        stack.append((dirpath, key_prefix, names, i))

    push(start_dir, key_base)
    while stack:  # bounded by the tree: every pass consumes one entry or pops a level
        dirpath, key_prefix, names, i = stack.pop()
        if i >= len(names[0]):
            continue
        stack.append((dirpath, key_prefix, names, i + 1))
        sort_name, name, is_dir = names[0][i], names[1][i], names[2][i]
        full = key_prefix + sort_name
        if not (full.startswith(prefix) or (is_dir and prefix.startswith(full))):
            if full > prefix:
                stack.pop()  # sorted: nothing further in this directory matches
            continue
        path = os.path.join(dirpath, name)
        if not is_dir:
            found = info(path, full)
            if found is not None:
                yield found
            continue
        if skip and full.startswith(after):
            continue
        cp = roll_dirs and full.startswith(prefix) and "/" not in full[len(prefix):-1]
        if cp and not after.startswith(full):
            if _has_object(path, full, dirs, info):
                yield full
            continue
        push(path, full)


def _plain_dir(path: str, root: str) -> bool:
    """A real directory below ``root`` (no symlink on the way out of it)."""
    real = os.path.realpath(path)
    return real.startswith(root.rstrip(os.sep) + os.sep) and os.path.isdir(real) and \
        not os.path.islink(path)


def _has_object(dirpath: str, key_prefix: str, dirs: SortedDirs,
                info: Callable[[str, str], ObjectInfo | None]) -> bool:
    walk = walk_from(dirpath, "", "", "", dirs, lambda p, k: info(p, key_prefix + k))
    return next(walk, None) is not None


def regular_info(root: str, make: Callable[[str, os.stat_result], ObjectInfo]
                 ) -> Callable[[str, str], ObjectInfo | None]:
    """The ``info`` callback of :func:`walk_from` for a LocalStore: stat (following a
    symlink only if it stays below ``root``), regular files only."""
    inside = root.rstrip(os.sep) + os.sep

    def one(path: str, key: str) -> ObjectInfo | None:
        try:
            if os.path.islink(path) and not os.path.realpath(path).startswith(inside):
                return None
            st = os.stat(path)
        except OSError:
            return None
        return make(key, st) if stat.S_ISREG(st.st_mode) else None

    return one
