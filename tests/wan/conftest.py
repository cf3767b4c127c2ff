"""The WAN lab's tests need root, network namespaces, tc's tbf and the real clients: without
them every test here is skipped, with the reason."""

from __future__ import annotations

import shutil

import pytest

from tests.wan.lab import unavailable

CLIENT_TOOLS = ("aria2c", "transmission-cli", "qbittorrent-nox", "ping", "curl")

_why: list[str | None] = []


def lab_unavailable() -> str | None:
    """Why the lab cannot run here (asked once per session), None when it can."""
    if not _why:
        missing = [t for t in CLIENT_TOOLS if shutil.which(t) is None]
        _why.append(
            f"WAN lab: missing {', '.join(missing)} (scripts/test.sh installs them)"
            if missing else unavailable()
        )
    return _why[0]


@pytest.fixture
def lab_ok() -> None:
    why = lab_unavailable()
    if why is not None:
        pytest.skip(why)
