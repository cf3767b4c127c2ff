"""Real libtorrent peers (separate processes, tests/peers/lt_peer.py) find each other
through the tracker over HTTP and UDP and complete a transfer; scrapes agree."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
import trio

from tests.helpers import lt_peer
from tracker import bencode
from tracker.core import TrackerCore
from tracker.service import serve_tracker

lt = pytest.importorskip("libtorrent")

DEADLINE = 60  # seconds for one whole test
SIZE = 3 * 1024 * 1024 + 12345  # a few pieces, not a whole number of them


def make_torrent(tmp: Path, announce: str, *, hybrid: bool) -> tuple[bytes, Path, bytes]:
    """(torrent bytes, seed dir, sha1 of the data); the data file lives in the seed dir."""
    seed_dir = tmp / "seed"
    seed_dir.mkdir()
    data = os.urandom(SIZE)
    (seed_dir / "object.bin").write_bytes(data)
    flags = 0 if hybrid else lt.create_torrent.v1_only
    ct = lt.create_torrent(lt.list_files(str(seed_dir / "object.bin")), 256 * 1024, flags)
    ct.add_tracker(announce)
    lt.set_piece_hashes(ct, str(seed_dir))
    return lt.bencode(ct.generate()), seed_dir, hashlib.sha1(data).digest()


def info_hashes(torrent: bytes) -> list[bytes]:
    """The 20-byte hashes a client announces: v1 and/or the v2 hash truncated."""
    ih = lt.torrent_info(torrent).info_hashes()
    out = []
    if ih.has_v1():
        out.append(ih.v1.to_bytes())
    if ih.has_v2():
        out.append(ih.v2.to_bytes()[:20])
    return out


async def wait_for(predicate, what: str) -> None:
    """Poll ``predicate`` until true; the test's fail_after bounds the loop."""
    while not predicate():  # the state lives in the tracker: no event to wait on
        await trio.sleep(0.05)
    assert predicate(), what


async def http_scrape(addr: tuple[str, int], hashes: list[bytes]) -> dict:
    query = b"&".join(b"info_hash=" + quote_from_bytes(h, safe="").encode() for h in hashes)
    stream = await trio.open_tcp_stream(*addr)
    async with stream:
        await stream.send_all(b"GET /scrape?" + query + b" HTTP/1.1\r\nHost: t\r\n"
                              b"Connection: close\r\n\r\n")  # fmt: skip
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return bencode.decode(data.partition(b"\r\n\r\n")[2])[b"files"]


@pytest.mark.parametrize(
    ("transport", "hybrid", "open_mode"),
    [("http", True, False), ("udp", False, True)],
    ids=["http-hybrid-registered", "udp-v1-open"],
)
async def test_two_libtorrent_peers_meet_through_the_tracker(tmp_path, transport, hybrid,
                                                             open_mode):  # fmt: skip
    core = TrackerCore(interval=60, min_interval=5, open=open_mode)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery, contextlib.AsyncExitStack() as peers:
            bound = await nursery.start(serve_tracker, core, ("127.0.0.1", 0), ("127.0.0.1", 0))
            host, port = bound.http if transport == "http" else bound.udp
            url = f"{transport}://{host}:{port}/announce"
            torrent, seed_dir, sha1 = make_torrent(tmp_path, url, hybrid=hybrid)
            hashes = info_hashes(torrent)
            assert len(hashes) == (2 if hybrid else 1)
            if not open_mode:
                core.register(hashes)
            (tmp_path / "t.torrent").write_bytes(torrent)
            common = ["--torrent", str(tmp_path / "t.torrent"), "--timeout", "50"]
            seeder = await peers.enter_async_context(lt_peer(
                *common, "--save-dir", str(seed_dir), "--bind", "127.0.0.2", "--seed",
            ))  # fmt: skip
            await seeder.until("finished")  # data checked, seeding
            counts = lambda: core.swarms.scrape(hashes[0])  # noqa: E731
            await wait_for(lambda: counts() is not None and counts()[0] == 1, "seeder seen")
            leecher = await peers.enter_async_context(lt_peer(
                *common, "--save-dir", str(tmp_path / "leech"), "--bind", "127.0.0.3",
                "--stay",
            ))  # fmt: skip
            done = await leecher.until("finished")
            # no web seed and no --peer: the seeder was found through the tracker
            assert done["sha1"] == sha1.hex() and done["web_seed_bytes"] == 0
            # completed counted once even though a hybrid announces it twice
            await wait_for(lambda: counts() == (2, 1, 0), "leecher completed")
            files = await http_scrape(bound.http, hashes)
            entry = {b"complete": 2, b"downloaded": 1, b"incomplete": 0}
            assert files == {h: entry for h in hashes}
            for p in (seeder, leecher):
                assert await p.stop() == 0
            if transport == "http":
                # Both sent "stopped" on the way out. (Over UDP, libtorrent 2.1.1 sends
                # no stopped announce when its session closes: nothing to check.)
                await wait_for(lambda: counts() == (0, 1, 0), "peers stopped")
            nursery.cancel_scope.cancel()
