"""Per-key event order: S3's ``sequencer``.

Delivery is at least once and unordered. For one key, a later event has a greater
``sequencer``: hex strings of varying length, compared after left-padding the shorter with
zeros (Amazon's documented rule). :class:`Sequencers` remembers the greatest sequencer
admitted per (bucket, key) and refuses an event that is not newer: an older one arrived
late, an equal one is a retry of an event already taken. Events without a sequencer are
always admitted (and change nothing here).

Memory is bounded: past ``capacity`` keys the least recently admitted are forgotten. A
forgotten key admits its next event whatever its sequencer, which is harmless here: the
worker reconciles a key with the store (HEAD), it does not replay the event.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["DEFAULT_CAPACITY", "Sequencers", "sequencer_key"]

DEFAULT_CAPACITY = 65536  # keys; ~200 bytes each


def sequencer_key(sequencer: str) -> tuple[int, str]:
    """A sort key ordering hex sequencers as Amazon says: left-pad to equal length, then
    compare. (Leading zeros stripped and the length compared first is the same order
    without knowing the other string.) ``sequencer`` must be hex; case does not matter."""
    digits = sequencer.lstrip("0").upper()
    return (len(digits), digits)


class Sequencers:
    """The last admitted sequencer per (bucket, key), for at most ``capacity`` keys. Pure."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._last: OrderedDict[tuple[str, str], tuple[int, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._last)

    def admit(self, bucket: str, key: str, sequencer: str | None) -> bool:
        """Whether an event for (bucket, key) with ``sequencer`` is newer than every one
        admitted before (then it is remembered); True when ``sequencer`` is None."""
        if sequencer is None:
            return True
        name = (bucket, key)
        new = sequencer_key(sequencer)
        last = self._last.get(name)
        if last is not None and new <= last:
            return False
        self._last[name] = new
        self._last.move_to_end(name)
        if len(self._last) > self.capacity:
            self._last.popitem(last=False)
        return True

    def newer(self, bucket: str, key: str, sequencer: str | None) -> bool:
        """Whether :meth:`admit` would admit it, without remembering anything."""
        if sequencer is None:
            return True
        last = self._last.get((bucket, key))
        return last is None or sequencer_key(sequencer) > last
