"""The bounded, coalescing queue between the events endpoint and its workers.

One slot per (bucket, key): a newer event for a key already waiting takes its slot's
place (the worker reconciles the key with the store, so only the latest word counts), so
a burst of events for one key costs one slot and one HEAD. At most ``capacity`` keys
wait; a delivery that would need more is refused whole (the endpoint answers 503 with
Retry-After and the sender retries later). A key a worker is busy with is not handed to a
second worker: a new event for it waits until the first is :meth:`Pending.done`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from seeder.events.payload import ObjectEvent

__all__ = ["DEFAULT_CAPACITY", "Pending"]

DEFAULT_CAPACITY = 10000  # keys waiting


class Pending:
    """FIFO of keys with their latest event. Pure (the shell wakes its workers)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._waiting: OrderedDict[tuple[str, str], ObjectEvent] = OrderedDict()
        self._busy: set[tuple[str, str]] = set()

    def __len__(self) -> int:
        """Keys waiting (not counting those a worker holds)."""
        return len(self._waiting)

    @property
    def busy(self) -> int:
        return len(self._busy)

    def room_for(self, events: Iterable[ObjectEvent]) -> bool:
        """Whether every one of ``events`` fits: the new keys among them within capacity."""
        new = {(e.bucket, e.key) for e in events} - self._waiting.keys()
        return len(self._waiting) + len(new) <= self.capacity

    def add(self, event: ObjectEvent) -> bool:
        """Queue ``event`` (replacing a waiting event for its key, keeping the key's place);
        False, nothing changed, when it needs a new slot and there is none."""
        name = (event.bucket, event.key)
        if name not in self._waiting and len(self._waiting) >= self.capacity:
            return False
        self._waiting[name] = event
        return True

    def pop(self) -> ObjectEvent | None:
        """The oldest waiting event whose key no worker holds, now held; None if none."""
        for name in self._waiting:
            if name not in self._busy:
                self._busy.add(name)
                return self._waiting.pop(name)
        return None

    def done(self, event: ObjectEvent) -> None:
        """The worker holding ``event``'s key is finished with it."""
        self._busy.discard((event.bucket, event.key))

    def ready(self) -> bool:
        """Whether :meth:`pop` would return an event."""
        return any(name not in self._busy for name in self._waiting)
