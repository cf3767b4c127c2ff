"""sd_notify's pure parts: socket address, datagram text, watchdog period."""

from __future__ import annotations

import pytest

from seeder.ops.sdnotify import Notifier, parse_address, render_message, watchdog_interval


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@/org/freedesktop/systemd1/notify/1", b"\0/org/freedesktop/systemd1/notify/1"),
        ("@x", b"\0x"),
        (None, None),
        ("", None),
        ("@", None),
        ("relative/path", None),
        ("vsock:2:1234", None),
    ],
)
def test_parse_address(value: str | None, expected: str | bytes | None) -> None:
    assert parse_address(value) == expected


def test_render_message_lines_in_order() -> None:
    assert render_message({"READY": "1", "STATUS": "serving 3 buckets"}) == (
        b"READY=1\nSTATUS=serving 3 buckets\n"
    )


def test_render_message_newlines_in_value_cannot_inject_keys() -> None:
    assert render_message({"STATUS": "a\nREADY=1\r"}) == b"STATUS=a READY=1 \n"


@pytest.mark.parametrize("key", ["", "ready", "READY=1", "A B", "É"])
def test_render_message_refuses_bad_keys(key: str) -> None:
    with pytest.raises(ValueError, match="bad sd_notify key"):
        render_message({key: "1"})


@pytest.mark.parametrize(
    ("env", "pid", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 7, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 7, 15.0),
        ({"WATCHDOG_USEC": "1000"}, 7, 0.0005),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, 7, None),  # leaked to a child
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, 7, None),
        ({"WATCHDOG_USEC": "0"}, 7, None),
        ({"WATCHDOG_USEC": "-5"}, 7, None),
        ({"WATCHDOG_USEC": "soon"}, 7, None),
        ({"WATCHDOG_USEC": ""}, 7, None),
        ({"WATCHDOG_PID": "7"}, 7, None),
        ({}, 7, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], pid: int, expected: float | None) -> None:
    assert watchdog_interval(env, pid) == expected


def test_from_env_reads_socket_and_watchdog() -> None:
    n = Notifier.from_env(
        {"NOTIFY_SOCKET": "@sock", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "42"}, pid=42
    )
    assert n.address == b"\0sock"
    assert n.watchdog_seconds == 2.0
    assert n.enabled


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    n = Notifier.from_env({"WATCHDOG_USEC": "4000000"}, pid=1)
    assert not n.enabled
    assert [n.ready(), n.status("x"), n.watchdog(), n.stopping(), n.reloading()] == [False] * 5
