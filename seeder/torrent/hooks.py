"""The interfaces the torrent service calls out through: seed cache writers, the
cluster's shared store and catalog listeners. Protocols only; the daemon wires the
implementations in (seeder.seed.cache, seeder.cluster.shared_catalog, the tracker and the
seeding policy), so nothing here imports upward."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from seeder.store import ObjectInfo
from seeder.torrent.entry import Entry

__all__ = ["ChunkSink", "ChunkSinkFactory", "Listener", "SharedStore"]


class ChunkSink(Protocol):
    """A seed-cache writer for one object (seeder/seedcache.py ``cache.begin(name, size)``)."""

    def write(self, offset: int, data: bytes | memoryview) -> None: ...
    def commit(self, info_hash_hex: str) -> None: ...
    def abort(self) -> None: ...


class SharedStore(Protocol):
    """Torrents shared with other daemons (cluster mode: seeder.cluster.shared_catalog)."""

    async def generate_once(self, bucket: str, key: str, version_id: str | None,
                            accept: Callable[[Entry], bool],
                            generate: Callable[[], Awaitable[Entry]]) -> tuple[Entry, bool]:
        """A shared entry ``accept`` takes, else ``generate()`` run once in the cluster
        (and shared); the bool says whether it was made here."""
        ...

    def forgotten(self, entry: Entry) -> None:
        """This daemon dropped ``entry`` (object gone)."""


class Listener(Protocol):
    """Told about catalog changes, after they happened. Called from the trio thread; sync."""

    def torrent_added(self, entry: Entry) -> None: ...
    def torrent_removed(self, entry: Entry) -> None: ...
    def torrent_relinked(self, entry: Entry) -> None:
        """Same info-hashes, other trackers or web seeds (``entry.torrent`` has them)."""


ChunkSinkFactory = Callable[[ObjectInfo], ChunkSink | None]
