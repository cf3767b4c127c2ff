"""Fair connection slots for the HTTP shells: pure bookkeeping, no I/O, no clock.

A server holds at most ``max_connections`` connections, and at most ``max_per_client``
of them from one client address (0: no per-client cap). A connection is *waiting* while
it has not sent a complete request head: a new connection, or a keep-alive connection
between two requests. Waiting connections cost a slot and do nothing, which is what a
slowloris client holds, so they are the ones given up under pressure (as nginx closes
idle keep-alive connections first when it runs out of worker connections):

- a client at its own cap: its oldest waiting connection is evicted for the new one;
  none waiting (all busy): the new connection is refused;
- all slots taken: the oldest waiting connection of anyone is evicted; none: refused.

A connection that is being answered (handler running, response being written) is never
evicted. Connections are any hashable the shell chooses (a file descriptor, an object);
the shell closes what :meth:`Slots.open` names as evicted. A ``client`` of None is not
counted per client (a trusted proxy: its connections carry many clients; the shell may
:meth:`Slots.rekey` it to the forwarded client once the head is read).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import NamedTuple

__all__ = ["Admission", "Slots"]


class Admission(NamedTuple):
    """What :meth:`Slots.open` decided: ``admitted``; ``evict``: a connection the shell
    must close now to make room (None when nothing is evicted)."""

    admitted: bool
    evict: Hashable | None


_REFUSED = Admission(False, None)
_ADMITTED = Admission(True, None)


class Slots:
    """Slot accounting for one listener group (see the module docstring).

    Every method is O(1) except eviction, which takes the first entry of an
    insertion-ordered dict. Not thread-safe: one trio task (or one loop) owns it.
    """

    __slots__ = ("_clients", "_max", "_per_client", "_total", "_waiting", "_waiting_by")

    def __init__(self, max_connections: int, max_per_client: int = 0) -> None:
        if max_connections < 1 or max_per_client < 0:
            raise ValueError("max_connections must be >= 1 and max_per_client >= 0")
        self._max = max_connections
        self._per_client = max_per_client
        self._total = 0
        self._clients: dict[Hashable, int] = {}  # open connections per counted client
        self._waiting: dict[Hashable, Hashable | None] = {}  # conn -> client, oldest first
        self._waiting_by: dict[Hashable, dict[Hashable, None]] = {}  # client -> its waiting

    # -- queries ------------------------------------------------------------------------

    @property
    def total(self) -> int:
        """Open (admitted, not yet closed) connections."""
        return self._total

    def count(self, client: Hashable) -> int:
        """Open connections counted for ``client``."""
        return self._clients.get(client, 0)

    @property
    def waiting(self) -> int:
        """Connections waiting for a request head."""
        return len(self._waiting)

    def free(self, client: Hashable) -> bool:
        """Whether :meth:`open` would admit a connection from ``client`` without
        evicting anyone (a shell may then serve a connection that ends at once without
        counting it)."""
        if self._total >= self._max:
            return False
        return not self._per_client or self._clients.get(client, 0) < self._per_client

    # -- changes ------------------------------------------------------------------------

    def open(self, conn: Hashable, client: Hashable | None) -> Admission:
        """Admit ``conn`` from ``client`` (waiting for its head), evicting a waiting one
        if that makes room, or refuse it. An evicted connection is forgotten here: the
        shell must close it and not call :meth:`close` for it."""
        evict = None
        clients = self._clients
        count = clients.get(client, 0) if client is not None else 0
        per = self._per_client
        if per and count >= per:  # (count > 0: a counted client)
            own = self._waiting_by.get(client)
            if not own:
                return _REFUSED
            evict = next(iter(own))
            self.close(evict, client)
            count -= 1
        elif self._total >= self._max:
            if not self._waiting:
                return _REFUSED
            evict = next(iter(self._waiting))
            self.close(evict, self._waiting[evict])
            count = clients.get(client, 0) if client is not None else 0
        self._total += 1
        # Inline (not _wait): this runs once per connection, on the tracker once per announce.
        self._waiting[conn] = client
        if client is not None:
            clients[client] = count + 1
            own = self._waiting_by.get(client)
            if own is None:
                self._waiting_by[client] = {conn: None}
            else:
                own[conn] = None
        return _ADMITTED if evict is None else Admission(True, evict)

    def busy(self, conn: Hashable) -> None:
        """``conn`` sent a complete head: it is being answered, not evictable."""
        client = self._waiting.pop(conn, _ABSENT)
        if client is _ABSENT:
            return
        if client is not None:
            own = self._waiting_by[client]
            del own[conn]
            if not own:
                del self._waiting_by[client]

    def idle(self, conn: Hashable, client: Hashable | None) -> None:
        """``conn`` was answered and waits for its next head (keep-alive): evictable
        again, as the newest waiter."""
        if conn not in self._waiting:
            self._wait(conn, client)

    def close(self, conn: Hashable, client: Hashable | None) -> None:
        """``conn`` (counted for ``client``) is gone."""
        waited_for = self._waiting.pop(conn, _ABSENT)  # as busy(), inline
        if waited_for is not _ABSENT and waited_for is not None:
            own = self._waiting_by[waited_for]
            del own[conn]
            if not own:
                del self._waiting_by[waited_for]
        self._total -= 1
        if client is not None:
            left = self._clients[client] - 1
            if left:
                self._clients[client] = left
            else:
                del self._clients[client]

    def rekey(self, conn: Hashable, old: Hashable | None, new: Hashable | None) -> bool:
        """Count busy ``conn`` for ``new`` instead of ``old`` (the client a trusted
        proxy names). False, and nothing changed, when ``new`` is at its cap: the shell
        answers 503 and closes (then :meth:`close` with ``old``)."""
        if new == old:
            return True
        per = self._per_client
        if new is not None and per and self._clients.get(new, 0) >= per:
            return False
        if old is not None:
            left = self._clients[old] - 1
            if left:
                self._clients[old] = left
            else:
                del self._clients[old]
        if new is not None:
            self._clients[new] = self._clients.get(new, 0) + 1
        return True

    def _wait(self, conn: Hashable, client: Hashable | None) -> None:
        self._waiting[conn] = client
        if client is not None:
            own = self._waiting_by.get(client)
            if own is None:
                own = self._waiting_by[client] = {}
            own[conn] = None


_ABSENT = object()
