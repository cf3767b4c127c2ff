"""Seeding a local bucket's objects from the bucket's own files, without a second copy.

A local object's ETag is the fingerprint of its file's (inode, size, mtime_ns)
(seeder.store.local). A torrent made from it describes those bytes; while the file still has
that fingerprint, libtorrent may read it in place: no copy into the seed cache, no second
read at generation. `LocalSource` is that promise, re-checked:

- when the torrent is added to the session (`SeedSession.add(source=...)`): a file changed
  since hashing is not seeded at all (its torrent is stale; the next GetObjectTorrent or scan
  makes the new one);
- every second while it is in the session (`SeedSession.recheck_sources`): a file
  overwritten in place (new size or mtime) or replaced by a rename (new inode) takes the
  torrent out of the session at once. libtorrent adds these torrents in seed mode, which
  checks each piece against its hash the first time a peer asks for it, so a change before
  that is never sent; after it, the re-check bounds the window to about a second, and the
  peers' own piece checks reject what would slip through. A rename is safe either way:
  libtorrent keeps reading the old inode it opened, whose bytes are the torrent's.
- The torrent's file name must be the file's own name (libtorrent reads
  ``save_path/name``): a key reached through a symlink with another name falls back to the
  seed cache (downloaded through this daemon's web seed, as for any object not cached).

`SeedSession.remove` never deletes such a torrent's files: they are the bucket's; and they
are added in upload mode too: libtorrent never writes to them (a piece that failed its check
is not fetched again from peers, whose old bytes would overwrite the new file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from seeder.store import StoreError
from seeder.store.local import LocalStore, fingerprint

__all__ = ["LocalSource", "local_source", "open_unchanged"]


@dataclass(frozen=True, slots=True)
class LocalSource:
    """The bucket file ``path`` a torrent of ETag ``etag`` is seeded from."""

    path: str
    etag: str

    @property
    def directory(self) -> str:
        return os.path.dirname(self.path)

    def unchanged(self) -> bool:
        """True while the file has the fingerprint it had when it was hashed."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return False
        return fingerprint(st) == self.etag


def local_source(store: LocalStore, key: str, etag: str, name: str) -> LocalSource | None:
    """Where a torrent named ``name`` of ``store``'s ``key`` at ``etag`` is seeded from in
    place, or None (the key does not resolve, or its file's name is not ``name``: the seed
    cache then). A file changed since it was hashed gives a source all the same, which the
    session refuses (the torrent is stale: it must not be downloaded into the cache either)."""
    try:
        path = store.file_of(key)
    except StoreError:
        return None
    if os.path.basename(path) != name:
        return None
    return LocalSource(path, etag)


def open_unchanged(store: LocalStore, key: str, etag: str) -> int | None:
    """A read-only fd of ``key``'s file while it still has the fingerprint ``etag`` (the
    seed cache's reflink source, `SeedCache.begin(source_fd=)`), or None. The caller
    closes it."""
    try:
        fd = os.open(store.file_of(key), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except (StoreError, OSError):
        return None
    try:
        if fingerprint(os.fstat(fd)) == etag:
            return fd
    except OSError:
        pass
    os.close(fd)
    return None
