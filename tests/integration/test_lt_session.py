"""SeedSession against real libtorrent peers (tests/peers/lt_peer.py processes on 127.0.0.x)
and a real moto S3 server as the BEP 19 web seed."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import libtorrent as lt
import pytest
import trio
from prometheus_client import CollectorRegistry

from seeder.config import SeedingConfig
from seeder.metrics import SeederMetrics
from seeder.seed import settings as lt_settings
from seeder.seed.cache import SeedCache
from seeder.seed.session import SeedError, SeedSession, parse_torrent, torrent_key
from tests.helpers import lt_peer, resume_keys

DEADLINE = 60.0  # seconds for any one wait: 2 busy CI cores
PIECE = 256 * 1024
SIZE = 3 * 1024 * 1024 + 12345  # a short last piece


def make_torrent(path: Path, *, url_seed: str | None = None) -> bytes:
    """A v1 torrent for the file at ``path`` (no tracker), optionally with a url-list."""
    ct = lt.create_torrent(lt.list_files(str(path)), PIECE, lt.create_torrent.v1_only)
    if url_seed is not None:
        ct.add_url_seed(url_seed)
    lt.set_piece_hashes(ct, str(path.parent))
    return lt.bencode(ct.generate())


def write_object(tmp_path: Path, name: str = "object.bin") -> tuple[Path, bytes]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    data = os.urandom(SIZE)
    (src / name).write_bytes(data)
    return src / name, data


def config() -> SeedingConfig:
    return SeedingConfig(listen_interfaces="127.0.0.1:0")


async def download(
    tmp_path: Path, torrent: bytes, bind: str, port: int, tag: str = ""
) -> dict[str, Any]:
    """Run one downloader on ``bind`` against 127.0.0.1:``port``; its finished event."""
    tpath = tmp_path / f"dl{tag}-{bind}.torrent"
    tpath.write_bytes(torrent)
    save = tmp_path / f"dl{tag}-{bind}"
    async with lt_peer(
        "--torrent", str(tpath), "--save-dir", str(save), "--bind", bind,
        "--peer", f"127.0.0.1:{port}", "--timeout", str(DEADLINE),
    ) as peer:  # fmt: skip
        return await peer.until("finished")


def strip_url_list(torrent: bytes) -> bytes:
    """The same torrent (same info-hash) without web seeds: a peer can only use peers."""
    d = lt.bdecode(torrent)
    d.pop(b"url-list", None)
    return lt.bencode(d)


@asynccontextmanager
async def running(session: SeedSession) -> AsyncIterator[int]:
    """Run ``session`` in a nursery; its listen port. Cancelled (shutdown) on exit."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(session.run)
        try:
            yield port
        finally:
            nursery.cancel_scope.cancel()


def put_in_cache(cache: SeedCache, key: str, name: str, data: bytes) -> Path:
    w = cache.begin(name, len(data))
    step = 100_000
    for off in reversed(range(0, len(data), step)):  # out of order, as hashing may deliver
        w.write(off, data[off : off + step])
    path = w.commit(key)
    assert path is not None
    return path


async def test_seeds_cached_object_to_several_peers(tmp_path: Path) -> None:
    obj, data = write_object(tmp_path)
    torrent = make_torrent(obj)
    key = torrent_key(parse_torrent(torrent))
    cache = SeedCache(tmp_path / "seeds", 64 * 1024 * 1024)
    put_in_cache(cache, key, obj.name, data)
    session = SeedSession(config(), tmp_path / "state", cache)

    with trio.fail_after(DEADLINE):
        async with running(session) as port:
            assert port > 0
            assert session.add(torrent, seed_from_cache=True) == key
            assert session.add(torrent, seed_from_cache=True) == key  # idempotent
            st = await session.wait_complete(key)
            assert st.from_cache and st.progress == 1.0

            results: list[dict[str, Any]] = []

            async def one(bind: str) -> None:
                results.append(await download(tmp_path, torrent, bind, port))

            async with trio.open_nursery() as nursery:
                for bind in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
                    nursery.start_soon(one, bind)

            want = hashlib.sha1(data).hexdigest()
            assert [r["sha1"] for r in results] == [want] * 3
            assert all(r["bytes"] == SIZE for r in results)
            assert all(r["web_seed_bytes"] == 0 and r["peer_bytes"] == SIZE for r in results)
            st = session.status(key)
            assert st is not None
            assert st.uploaded >= SIZE  # every piece left the seeder at least once
            assert st.downloaded == 0  # seed_mode: nothing fetched


async def test_downloads_from_web_seed_then_seeds(tmp_path: Path, moto_server: Any) -> None:
    bucket = moto_server.create_bucket()
    obj, data = write_object(tmp_path, "photo.jpg")
    moto_server.client().put_object(
        Bucket=bucket, Key="dir/photo.jpg", Body=data, ACL="public-read"
    )  # moto answers 403 to anonymous GETs of private objects
    url = f"{moto_server.endpoint_url}/{bucket}/dir/photo.jpg"
    torrent = make_torrent(obj, url_seed=url)
    key = torrent_key(parse_torrent(torrent))
    cache = SeedCache(tmp_path / "seeds", 64 * 1024 * 1024)
    session = SeedSession(config(), tmp_path / "state", cache)

    with trio.fail_after(DEADLINE):
        async with running(session) as port:
            session.add(torrent, seed_from_cache=True)
            assert cache.is_pinned(key) and not cache.is_complete(key)
            st = await session.wait_complete(key)
            assert not st.from_cache
            assert st.downloaded >= SIZE  # all of it came from the web seed
            assert cache.is_complete(key) and not cache.is_pinned(key)
            assert (cache.lookup(key) / "photo.jpg").read_bytes() == data

            # A peer without the web seed can only get it from the session.
            done = await download(tmp_path, strip_url_list(torrent), "127.0.0.2", port)
            assert done["sha1"] == hashlib.sha1(data).hexdigest()
            assert (done["web_seed_bytes"], done["peer_bytes"]) == (0, SIZE)


async def test_restart_seeds_from_resume_data_without_downloading(
    tmp_path: Path, moto_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client gets a copy without the web seed: a super-seeding daemon would make it
    # wait on piece announcements this test is not about.
    monkeypatch.setattr(lt_settings, "SUPER_SEEDING", False)
    bucket = moto_server.create_bucket()
    obj, data = write_object(tmp_path)
    s3 = moto_server.client()
    s3.put_object(Bucket=bucket, Key="o.bin", Body=data, ACL="public-read")
    torrent = make_torrent(obj, url_seed=f"{moto_server.endpoint_url}/{bucket}/o.bin")
    key = torrent_key(parse_torrent(torrent))
    state, seeds = tmp_path / "state", tmp_path / "seeds"

    with trio.fail_after(DEADLINE):
        first = SeedSession(config(), state, SeedCache(seeds, 64 * 1024 * 1024))
        async with running(first):
            first.add(torrent, seed_from_cache=True)
            await first.wait_complete(key)
        assert resume_keys(state) == {key}

        # The origin is gone: a re-download could not succeed.
        s3.delete_object(Bucket=bucket, Key="o.bin")
        cache = SeedCache(seeds, 64 * 1024 * 1024)
        second = SeedSession(config(), state, cache)
        async with running(second) as port:
            assert second.has(key)  # re-added from resume data, no add() call
            st = await second.wait_complete(key)
            # Complete at once (from the cache), but libtorrent may still be checking the
            # resume data on a loaded machine: poll (bounded by fail_after above).
            while st.state.startswith("checking"):
                await trio.sleep(0.05)
                st = second.status(key) or st
            assert st.progress == 1.0 and st.downloaded == 0
            done = await download(tmp_path, strip_url_list(torrent), "127.0.0.2", port)
            assert done["sha1"] == hashlib.sha1(data).hexdigest()
            st = second.status(key)
            assert st is not None and st.downloaded == 0 and st.state == "seeding"


async def test_resume_file_without_cache_entry_is_dropped(tmp_path: Path) -> None:
    obj, data = write_object(tmp_path)
    torrent = make_torrent(obj)
    key = torrent_key(parse_torrent(torrent))
    state, seeds = tmp_path / "state", tmp_path / "seeds"
    cache = SeedCache(seeds, 64 * 1024 * 1024)
    put_in_cache(cache, key, obj.name, data)
    with trio.fail_after(DEADLINE):
        first = SeedSession(config(), state, cache)
        async with running(first):
            first.add(torrent)
        cache.remove(key)
        # A resume file of an older version (one file per torrent) is imported once.
        (state / "resume").mkdir()
        (state / "resume" / "junk.resume").write_bytes(b"not bencode")
        second = SeedSession(config(), state, SeedCache(seeds, 64 * 1024 * 1024))
        async with running(second):
            assert not second.has(key)
        assert resume_keys(state) == set() and not (state / "resume").exists()


async def test_eviction_takes_the_torrent_out_of_the_session(tmp_path: Path) -> None:
    obj, data = write_object(tmp_path)
    torrent = make_torrent(obj)
    key = torrent_key(parse_torrent(torrent))
    cache = SeedCache(tmp_path / "seeds", SIZE + 10)
    put_in_cache(cache, key, obj.name, data)
    session = SeedSession(config(), tmp_path / "state", cache)
    with trio.fail_after(DEADLINE):
        async with running(session):
            session.add(torrent)
            assert session.has(key)
            other = "ab" * 20
            put_in_cache(cache, other, "other", b"x" * SIZE)  # evicts key
            assert not session.has(key) and cache.lookup(key) is None
            assert key not in resume_keys(tmp_path / "state")


@pytest.mark.parametrize("bad", [b"", b"garbage", b"d4:infod4:name1:xee", b"le"])
async def test_bad_torrents_are_refused(tmp_path: Path, bad: bytes) -> None:
    session = SeedSession(config(), tmp_path / "state", SeedCache(tmp_path / "seeds", 1 << 20))
    with trio.fail_after(DEADLINE):
        async with running(session):
            with pytest.raises(SeedError):
                session.add(bad)
            assert not session.ensure_seeding(bad)
            assert session.torrents() == []


async def test_no_room_in_the_cache(tmp_path: Path) -> None:
    obj, _ = write_object(tmp_path)
    torrent = make_torrent(obj, url_seed="http://127.0.0.1:9/b/k")
    session = SeedSession(config(), tmp_path / "state", SeedCache(tmp_path / "seeds", SIZE - 1))
    with trio.fail_after(DEADLINE):
        async with running(session):
            with pytest.raises(SeedError, match="do not fit"):
                session.add(torrent)
            assert not session.has(torrent_key(parse_torrent(torrent)))


async def test_session_wide_unchoke_slots_are_set_while_running(tmp_path: Path) -> None:
    cache = SeedCache(tmp_path / "seeds", 64 * 1024 * 1024)
    session = SeedSession(config(), tmp_path / "state", cache)
    assert not session.set_limits(unchoke_slots=5)  # not running: nothing to set
    with trio.fail_after(DEADLINE):
        async with running(session):
            assert session.set_limits(unchoke_slots=9)
            assert session._session().get_settings()["unchoke_slots_limit"] == 9
            assert session.set_limits(unchoke_slots=0)
            assert session._session().get_settings()["unchoke_slots_limit"] == 1


async def test_stats_and_remove(tmp_path: Path) -> None:
    obj, data = write_object(tmp_path)
    torrent = make_torrent(obj)
    key = torrent_key(parse_torrent(torrent))
    cache = SeedCache(tmp_path / "seeds", 64 * 1024 * 1024)
    put_in_cache(cache, key, obj.name, data)
    registry = CollectorRegistry()
    metrics = SeederMetrics(registry)
    session = SeedSession(config(), tmp_path / "state", cache, metrics, stats_interval=0.05)
    with trio.fail_after(DEADLINE):
        async with running(session) as port:
            session.add(torrent)
            await session.wait_complete(key)
            while session.stats().seeding < 1:  # bounded by fail_after
                await trio.sleep(0.05)
            stats = session.stats()
            assert stats.torrents == 1 and stats.listen_port == port
            assert stats.cache_bytes == SIZE
            assert "seeding 1/1" in stats.status_line()
            assert registry.get_sample_value("seeder_torrents_seeding") == 1
            assert registry.get_sample_value("seeder_seed_cache_bytes") == SIZE
            assert session.remove(key, delete_files=True)
            assert not session.remove(key)
            assert session.status(key) is None and cache.lookup(key) is None


async def test_lt_peer_reports_web_seed_bytes(tmp_path: Path, moto_server: Any) -> None:
    """The test peer itself: with only a web seed, every byte is counted as web seed bytes."""
    bucket = moto_server.create_bucket()
    obj, data = write_object(tmp_path)
    moto_server.client().put_object(Bucket=bucket, Key="w.bin", Body=data, ACL="public-read")
    torrent = make_torrent(obj, url_seed=f"{moto_server.endpoint_url}/{bucket}/w.bin")
    tpath = tmp_path / "w.torrent"
    tpath.write_bytes(torrent)
    with trio.fail_after(DEADLINE):
        async with lt_peer(
            "--torrent", str(tpath), "--save-dir", str(tmp_path / "w"), "--bind", "127.0.0.5",
            "--timeout", str(DEADLINE),
        ) as peer:  # fmt: skip
            assert (await peer.until("listening"))["port"] > 0
            done = await peer.until("finished")
            assert done["sha1"] == hashlib.sha1(data).hexdigest()
            assert (done["web_seed_bytes"], done["peer_bytes"]) == (SIZE, 0)
            assert await peer.proc.wait() == 0


async def test_lt_peer_seed_mode_serves_another_peer_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The test peer itself: --seed on existing data, a downloader via --peer, SIGTERM."""
    obj, data = write_object(tmp_path)
    torrent = make_torrent(obj)
    tpath = tmp_path / "s.torrent"
    tpath.write_bytes(torrent)
    with trio.fail_after(DEADLINE):
        async with lt_peer(
            "--torrent", str(tpath), "--save-dir", str(obj.parent), "--bind", "127.0.0.2",
            "--seed", "--timeout", str(DEADLINE),
        ) as seeder:  # fmt: skip
            port = (await seeder.until("listening"))["port"]
            ready = await seeder.until("finished")
            assert ready["sha1"] == hashlib.sha1(data).hexdigest()
            assert ready["web_seed_bytes"] + ready["peer_bytes"] == 0  # had it all
            tdl = tmp_path / "d.torrent"
            tdl.write_bytes(torrent)
            async with lt_peer(
                "--torrent", str(tdl), "--save-dir", str(tmp_path / "d"), "--bind", "127.0.0.3",
                "--peer", f"127.0.0.2:{port}", "--timeout", str(DEADLINE),
            ) as leech:  # fmt: skip
                done = await leech.until("finished")
                assert done["sha1"] == ready["sha1"] and done["peer_bytes"] == SIZE
            seeder.proc.terminate()
            stopped = await seeder.until("stopped")
            assert stopped["uploaded"] >= SIZE
            assert await seeder.proc.wait() == 0


async def test_ensure_seeding_before_start_is_queued_and_after_stop_refused(
    tmp_path: Path,
) -> None:
    obj, data = write_object(tmp_path)
    torrent = make_torrent(obj)
    key = torrent_key(parse_torrent(torrent))
    cache = SeedCache(tmp_path / "seeds", 64 * 1024 * 1024)
    put_in_cache(cache, key, obj.name, data)
    session = SeedSession(config(), tmp_path / "state", cache)
    assert session.ensure_seeding(torrent)  # not running yet: queued
    assert not session.has(key)
    with trio.fail_after(DEADLINE):
        async with running(session):
            assert session.has(key)
            assert (await session.wait_complete(key)).from_cache
    assert not session.ensure_seeding(torrent)
    assert not session.has(key) and session.status(key) is None


async def test_resume_files_of_an_older_version_are_imported_once(tmp_path: Path) -> None:
    """state/resume/<key>.resume (one file per torrent, before resume.sqlite3): moved into
    the table at the first start, the directory removed, the torrent resumed."""
    obj, data = write_object(tmp_path)
    torrent = make_torrent(obj)
    key = torrent_key(parse_torrent(torrent))
    state, seeds = tmp_path / "state", tmp_path / "seeds"
    cache = SeedCache(seeds, 64 * 1024 * 1024)
    put_in_cache(cache, key, obj.name, data)
    with trio.fail_after(DEADLINE):
        first = SeedSession(config(), state, cache)
        async with running(first):
            first.add(torrent)
        conn = sqlite3.connect(state / "resume.sqlite3")
        (blob,) = conn.execute("SELECT data FROM resume WHERE key=?", (key,)).fetchone()
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            (state / f"resume.sqlite3{suffix}").unlink(missing_ok=True)
        (state / "resume").mkdir()
        (state / "resume" / f"{key}.resume").write_bytes(blob)
        second = SeedSession(config(), state, SeedCache(seeds, 64 * 1024 * 1024))
        async with running(second):
            assert second.has(key)
        assert resume_keys(state) == {key} and not (state / "resume").exists()
