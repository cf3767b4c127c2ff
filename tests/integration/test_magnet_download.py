"""A magnet link alone is enough: aria2 and a libtorrent peer start from the daemon's magnet
of an object (no .torrent file) and download it; the metadata comes from the daemon's
libtorrent seed, which they find through the tracker named in the link (BEP 9)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import trio

from seeder.ops.statuspage import make_status_page
from seeder.status.paging import parse_page
from seeder.status.view import torrent_rows
from seeder.torrent.magnet import entry_magnet
from tests.helpers import lt_peer
from tests.integration.test_seeding import (
    CLIENTS,
    DEADLINE,
    KEY,
    SIZE,
    Env,
    _aria2,
    _complete_in_session,
    start_daemon,
)


async def test_aria2_and_libtorrent_download_from_the_magnet_alone(
    tmp_path: Path, moto_server: Any, nursery: trio.Nursery
) -> None:
    env: Env = await start_daemon(tmp_path, moto_server, nursery, seeding=True)
    data = os.urandom(SIZE)
    with trio.fail_after(DEADLINE):
        entry, _, _ = await _complete_in_session(env, data)
        magnet = entry_magnet(env.daemon.config, entry)
        assert f"tr={env.tracker.replace(':', '%3A').replace('/', '%2F')}" in magnet
        results: dict[str, Any] = {}

        async def with_aria2() -> None:
            results["aria2"] = (await _aria2(env, magnet, "magnet", CLIENTS[0])).read_bytes()

        async def with_libtorrent() -> None:
            async with lt_peer(
                "--magnet", magnet, "--save-dir", str(env.tmp / "lt-magnet"),
                "--bind", CLIENTS[1], "--timeout", str(DEADLINE), "--no-ssrf",
            ) as peer:  # fmt: skip
                meta = await peer.until("metadata")
                assert (meta["name"], meta["size"]) == (KEY.rsplit("/", 1)[-1], SIZE)
                results["libtorrent"] = await peer.until("finished")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(with_aria2)
            nursery.start_soon(with_libtorrent)
    assert results["aria2"] == data
    assert results["libtorrent"]["sha1"] == hashlib.sha1(data).hexdigest()
    assert results["libtorrent"]["bytes"] == SIZE
    # The status page's row of the object: the daemon as a seeder at its tracker, and what it
    # uploaded (its libtorrent seed and its web seed: every byte came from one or the other).
    page = make_status_page(env.daemon)
    row = next(r for r in torrent_rows(page.sources, parse_page(b"", 1))
               if r.key == KEY and r.bucket == env.bucket)
    assert row.seeders is not None and row.seeders >= 1
    assert row.uploaded is not None and row.uploaded >= SIZE
    assert row.magnet == magnet
