"""tracker.secret (the UDP connection-id key on disk) and tracker.clock, for real."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from tracker.clock import MonotonicClock
from tracker.secret import KEY_BYTES, load_or_create


def test_created_owner_only_then_read_back(tmp_path: Path) -> None:
    path = tmp_path / "tracker.key"
    key = load_or_create(path)
    assert len(key) == KEY_BYTES and path.read_bytes() == key
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create(path) == key
    assert [p.name for p in tmp_path.iterdir()] == ["tracker.key"]  # no temporary left


@pytest.mark.parametrize("content", [b"", b"short", b"x" * (KEY_BYTES + 1)])
def test_a_malformed_key_is_replaced(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "tracker.key"
    path.write_bytes(content)
    key = load_or_create(path)
    assert len(key) == KEY_BYTES and path.read_bytes() == key != content


def test_no_directory_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        load_or_create(tmp_path / "missing" / "tracker.key")


def test_monotonic_clock_is_the_systems() -> None:
    async def main() -> tuple[float, float, float]:
        before = time.monotonic()
        now = trio.current_time()
        await trio.sleep(0.01)
        return before, now, trio.current_time()

    before, now, later = trio.run(main, clock=MonotonicClock())
    assert before <= now <= time.monotonic() and later >= now + 0.01
