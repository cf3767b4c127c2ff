"""Which listed small objects are made together (``seeder.torrent.batch``). Pure.

A batch is read, hashed and encoded in one worker-thread hop, then recorded by the trio
thread in one go. Large enough that the hop (and the trio thread's wake-up) is noise next to
the reads; small enough that the trio thread gets its turns often (a GetObjectTorrent is
answered between two batches) and that a batch's bytes stay small in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from seeder.store import ObjectInfo

__all__ = ["BATCHES_IN_FLIGHT", "BATCH_BYTES", "BATCH_OBJECTS", "batches"]

BATCH_OBJECTS = 64  # objects per batch (docs/benchmarks.md, issue 19, third round)
BATCH_BYTES = 4 * 1024 * 1024  # listed bytes per batch (a small object is <= 256 KiB)
# Batches being made at once: one read in a worker thread while the trio thread records
# another's entries.
BATCHES_IN_FLIGHT = 2


def batches(infos: Iterable[ObjectInfo], max_objects: int = BATCH_OBJECTS,
            max_bytes: int = BATCH_BYTES) -> Iterator[list[ObjectInfo]]:
    """``infos`` in their order, cut into consecutive batches of at most ``max_objects``
    objects and at most ``max_bytes`` listed bytes (an object larger than that alone is a
    batch of one). Every object is in exactly one batch; no batch is empty. ValueError if
    ``max_objects`` < 1."""
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, not {max_objects}")
    batch: list[ObjectInfo] = []
    size = 0
    for info in infos:
        if batch and (len(batch) >= max_objects or size + info.size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(info)
        size += info.size
    if batch:
        yield batch
