"""The trio loop that samples the daemon's byte totals into a :class:`RateHistory`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NoReturn

import trio

from seeder.status.history import RateHistory
from seeder.status.sources import Totals

__all__ = ["run_sampler"]

log = logging.getLogger(__name__)


async def run_sampler(history: RateHistory, totals: Callable[[], Totals], *,
                      task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
    """Add ``totals()`` to ``history`` now and every ``history.every`` seconds, until
    cancelled (``trio.current_time()`` as the clock). A failing ``totals`` is logged and
    skipped (never kills the daemon)."""
    task_status.started()
    while True:
        try:
            t = totals()
            history.add(trio.current_time(), t.uploaded, t.origin)
        except Exception:
            log.exception("status page: sampling the byte totals failed")
        await trio.sleep(history.every)
