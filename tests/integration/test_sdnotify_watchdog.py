"""sd_notify over real AF_UNIX datagram sockets (a path and an abstract name), and the
watchdog task's cadence under trio's autojump MockClock (virtual time, no real sleeps)."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.socket
import trio.testing

from seeder.ops.sdnotify import Notifier, run_watchdog


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket standing in for systemd, and its NOTIFY_SOCKET value."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        yield sock, str(path)
    finally:
        sock.close()


def test_messages_reach_a_path_socket(receiver: tuple[socket.socket, str]) -> None:
    sock, env_value = receiver
    n = Notifier.from_env({"NOTIFY_SOCKET": env_value}, pid=1)
    n = Notifier(n.address, clock_usec=lambda: 123456789)
    assert n.ready("serving 2 buckets")
    assert n.status("generating 3 torrents")
    assert n.watchdog()
    assert n.reloading()
    assert n.stopping()
    assert n.extend_timeout(2.5)
    got = [sock.recv(4096) for _ in range(6)]
    assert got == [
        b"READY=1\nSTATUS=serving 2 buckets\n",
        b"STATUS=generating 3 torrents\n",
        b"WATCHDOG=1\n",
        b"RELOADING=1\nMONOTONIC_USEC=123456789\n",
        b"STOPPING=1\n",
        b"EXTEND_TIMEOUT_USEC=2500000\n",
    ]


def test_messages_reach_an_abstract_socket() -> None:
    name = f"s3torrent-test-{os.getpid()}-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        n = Notifier.from_env({"NOTIFY_SOCKET": "@" + name}, pid=1)
        assert n.ready()
        assert sock.recv(4096) == b"READY=1\n"


def test_reloading_uses_the_monotonic_clock(receiver: tuple[socket.socket, str]) -> None:
    sock, env_value = receiver
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier.from_env({"NOTIFY_SOCKET": env_value}).reloading()
    fields = dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())
    assert fields["RELOADING"] == "1"
    assert int(fields["MONOTONIC_USEC"]) >= before


def test_a_missing_socket_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.WARNING, logger="seeder.ops.sdnotify"):
        assert n.ready() is False
    assert "sd_notify" in caplog.text


async def test_watchdog_pings_at_half_the_timeout(
    receiver: tuple[socket.socket, str], autojump_clock: trio.testing.MockClock
) -> None:
    raw, env_value = receiver
    raw.setblocking(False)
    sock = trio.socket.from_stdlib_socket(raw)
    n = Notifier.from_env(
        {"NOTIFY_SOCKET": env_value, "WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}
    )
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        period = await nursery.start(run_watchdog, n)
        assert period == 10.0
        times = []
        for _ in range(4):
            assert await sock.recv(4096) == b"WATCHDOG=1\n"
            times.append(round(trio.current_time() - start, 6))
        nursery.cancel_scope.cancel()
    assert times == [0.0, 10.0, 20.0, 30.0]


async def test_watchdog_off_sends_nothing(
    receiver: tuple[socket.socket, str], autojump_clock: trio.testing.MockClock
) -> None:
    raw, env_value = receiver
    raw.setblocking(False)
    # WATCHDOG_PID names another process: the variables leaked to us, not ours to honour.
    n = Notifier.from_env(
        {"NOTIFY_SOCKET": env_value, "WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, pid=2
    )
    async with trio.open_nursery() as nursery:
        assert await nursery.start(run_watchdog, n) is None
        await trio.sleep(3600)  # virtual: an hour of would-be pings
        nursery.cancel_scope.cancel()
    with pytest.raises(BlockingIOError):
        raw.recv(4096)
