"""When a connection has taken too long: pure functions of times and byte counts.

Three rules, as nginx has them (``client_header_timeout``, ``keepalive_timeout``,
``send_timeout``), but each counted in total rather than restarted by every byte, so
that a client trickling one byte at a time cannot hold a slot forever:

- **head**: a request head must be complete within ``header`` seconds of the moment
  the connection opened (the first request) or its first byte arrived (a later one).
- **idle**: a keep-alive connection with no request under way closes after ``idle``
  seconds.
- **transfer**: a request body being read, or a response being written, must move at
  least ``min_rate`` bytes per second on average after a ``grace`` of ``idle`` seconds:
  its deadline is ``start + idle + done / min_rate``. A stalled reader of a big web seed
  response is cut off once it falls that far behind; a slow but moving one is not. The
  shells also close a connection whose peer takes no byte at all for ``idle`` seconds
  (the kernel's buffers count as "done" and would otherwise give it minutes of credit).

Times are seconds on any monotonic clock (the shells pass ``trio.current_time()``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Timeouts"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """The limits of one listener (see the module docstring). ``header`` and ``idle`` are
    seconds > 0; ``min_rate`` bytes per second > 0."""

    header: float = 10.0
    idle: float = 30.0
    min_rate: float = 1024.0

    def __post_init__(self) -> None:
        if not (self.header > 0 and self.idle > 0 and self.min_rate > 0):
            raise ValueError("header, idle and min_rate must be > 0")

    def head_deadline(self, started: float) -> float:
        """When a head begun (connection opened, or first byte of it) at ``started``
        must be complete."""
        return started + self.header

    def idle_deadline(self, since: float) -> float:
        """When a keep-alive connection idle since ``since`` closes."""
        return since + self.idle

    def transfer_deadline(self, started: float, done: int) -> float:
        """When a body or response begun at ``started`` with ``done`` bytes moved so far
        is too slow (the next byte must move before then)."""
        return started + self.idle + done / self.min_rate
