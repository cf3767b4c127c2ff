"""Seed cache: LRU/budget/pin arithmetic (pure), then the file side on a temp directory."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from seeder.seed.cache import CacheError, LruIndex, SeedCache, check_name, normalize_key

H1, H2, H3, H4 = (hashlib.sha1(bytes([i])).hexdigest() for i in range(4))
H256 = hashlib.sha256(b"v2").hexdigest()


# -- LruIndex: pure ----------------------------------------------------------------------


def test_admit_within_budget_evicts_nothing() -> None:
    idx = LruIndex(100)
    assert idx.admit("a", 40) == []
    assert idx.admit("b", 60) == []
    assert idx.total == 100
    assert list(idx) == ["a", "b"]


def test_admit_evicts_oldest_first_until_it_fits() -> None:
    idx = LruIndex(100)
    for k in "abc":
        idx.admit(k, 30)
    assert idx.admit("d", 50) == ["a", "b"]
    assert list(idx) == ["c", "d"]
    assert idx.total == 80


def test_touch_changes_the_victim() -> None:
    idx = LruIndex(100)
    for k in "abc":
        idx.admit(k, 30)
    assert idx.touch("a")
    assert idx.admit("d", 30) == ["b"]
    assert not idx.touch("zz")


def test_pinned_entries_are_skipped() -> None:
    idx = LruIndex(100)
    for k in "abc":
        idx.admit(k, 30)
    idx.pin("a")
    assert idx.admit("d", 30) == ["b"]
    assert "a" in idx


def test_too_big_or_blocked_by_pins_changes_nothing() -> None:
    idx = LruIndex(100)
    idx.admit("a", 50, pin=True)
    idx.admit("b", 40)
    assert idx.admit("big", 101) is None
    assert idx.admit("c", 60) is None  # would need "a", which is pinned
    assert list(idx) == ["a", "b"] and idx.total == 90


def test_exactly_the_budget_fits() -> None:
    idx = LruIndex(100)
    idx.admit("a", 10)
    assert idx.admit("b", 100) == ["a"]
    assert idx.total == 100


def test_readmit_replaces_size_and_keeps_pins() -> None:
    idx = LruIndex(100)
    idx.admit("a", 50, pin=True)
    idx.admit("b", 50)
    assert idx.admit("a", 60) == ["b"]  # a's own 50 bytes are given back first
    assert idx.total == 60 and idx.is_pinned("a")


def test_pins_are_counted() -> None:
    idx = LruIndex(10)
    idx.admit("a", 10)
    idx.pin("a")
    idx.pin("a")
    idx.unpin("a")
    assert idx.is_pinned("a")
    idx.unpin("a")
    assert not idx.is_pinned("a")
    idx.unpin("a")  # extra unpin: no-op
    with pytest.raises(KeyError):
        idx.pin("absent")


def test_shrink_after_unpin_over_budget() -> None:
    idx = LruIndex(100)
    idx.admit("a", 60, pin=True)
    idx.admit("b", 40)
    idx.max_bytes = 50  # e.g. a smaller budget at the next start
    assert idx.shrink() == ["b"]  # a is pinned: over budget until unpinned
    idx.unpin("a")
    assert idx.shrink() == ["a"]
    assert idx.total == 0 and len(idx) == 0


def test_discard_forgets_size_and_pins() -> None:
    idx = LruIndex(100)
    idx.admit("a", 30, pin=True)
    assert idx.discard("a") == 30
    assert idx.discard("a") is None
    assert idx.total == 0 and not idx.is_pinned("a")


@pytest.mark.parametrize("size", [-1])
def test_negative_size_is_refused(size: int) -> None:
    with pytest.raises(ValueError):
        LruIndex(10).admit("a", size)


# -- names and keys: table-driven --------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["", "xyz", H1[:-1], H1 + "0", "g" * 40, H1.replace(H1[0], " ", 1), "0x" + H1[2:]]
)
def test_bad_info_hash_keys(bad: str) -> None:
    with pytest.raises(CacheError):
        normalize_key(bad)


def test_keys_are_lower_cased() -> None:
    assert normalize_key(H1.upper()) == H1
    assert normalize_key(H256) == H256


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a\\b", "a\0b", "x" * 256])
def test_bad_names(bad: str) -> None:
    with pytest.raises(CacheError):
        check_name(bad)


# -- SeedCache: files --------------------------------------------------------------------


def put(cache: SeedCache, key: str, data: bytes, name: str = "obj.bin") -> object:
    w = cache.begin(name, len(data))
    w.write(0, data)
    return w.commit(key)


def test_commit_places_the_file_for_libtorrent(tmp_path) -> None:
    cache = SeedCache(tmp_path / "seeds", 1000)
    data = os.urandom(300)
    w = cache.begin("my file.bin", len(data))
    # out of order, as the hashing pipeline may deliver
    w.write(200, data[200:])
    w.write(0, data[:100])
    w.write(100, data[100:200])
    path = w.commit(H1.upper())
    assert path == tmp_path / "seeds" / H1
    assert (path / "my file.bin").read_bytes() == data
    assert cache.lookup(H1) == path
    assert cache.size_bytes == 300
    assert not (tmp_path / "seeds" / ".tmp").exists() or not any(
        (tmp_path / "seeds" / ".tmp").iterdir()
    )


def test_writes_from_threads(tmp_path) -> None:
    cache = SeedCache(tmp_path, 1 << 20)
    data = os.urandom(64 * 1024)
    w = cache.begin("o", len(data))
    chunks = [(i, data[i : i + 4096]) for i in range(0, len(data), 4096)]
    threads = [threading.Thread(target=w.write, args=c) for c in reversed(chunks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (w.commit(H1) / "o").read_bytes() == data


def test_abort_leaves_nothing(tmp_path) -> None:
    cache = SeedCache(tmp_path, 1000)
    w = cache.begin("o", 10)
    w.write(0, b"0123456789")
    w.abort()
    w.abort()  # idempotent
    assert cache.lookup(H1) is None and cache.size_bytes == 0
    assert [p.name for p in tmp_path.iterdir() if p.name != ".tmp"] == []
    assert not any((tmp_path / ".tmp").iterdir())


def test_commit_of_incomplete_writer_raises_and_aborts(tmp_path) -> None:
    cache = SeedCache(tmp_path, 1000)
    w = cache.begin("o", 10)
    w.write(0, b"01234")
    with pytest.raises(CacheError):
        w.commit(H1)
    assert cache.lookup(H1) is None
    assert not any((tmp_path / ".tmp").iterdir())


@pytest.mark.parametrize(("offset", "data"), [(-1, b"a"), (9, b"ab"), (10, b"a")])
def test_writes_outside_the_object_are_refused(tmp_path, offset: int, data: bytes) -> None:
    w = SeedCache(tmp_path, 1000).begin("o", 10)
    with pytest.raises(CacheError):
        w.write(offset, data)
    w.abort()


def test_object_bigger_than_budget_is_never_written(tmp_path) -> None:
    cache = SeedCache(tmp_path, 100)
    w = cache.begin("o", 101)
    assert w.discarding
    w.write(0, b"x" * 101)
    assert w.commit(H1) is None
    assert cache.lookup(H1) is None and cache.size_bytes == 0


def test_commit_evicts_lru_and_calls_listeners_first(tmp_path) -> None:
    cache = SeedCache(tmp_path, 250)
    seen: list[tuple[str, bool]] = []
    cache.add_evict_listener(lambda h: seen.append((h, (tmp_path / h).exists())))
    put(cache, H1, b"a" * 100)
    put(cache, H2, b"b" * 100)
    cache.touch(H1)
    put(cache, H3, b"c" * 100)
    assert seen == [(H2, True)]  # told while the files were still there
    assert cache.lookup(H2) is None and not (tmp_path / H2).exists()
    assert cache.lookup(H1) and cache.lookup(H3)
    assert cache.evictions == 1 and cache.size_bytes == 200


def test_pinned_entry_survives_and_blocks(tmp_path) -> None:
    cache = SeedCache(tmp_path, 200)
    put(cache, H1, b"a" * 100)
    put(cache, H2, b"b" * 100)
    cache.pin(H1)
    cache.pin(H2)
    assert put(cache, H3, b"c" * 100) is None  # nothing evictable
    assert cache.size_bytes == 200 and cache.evictions == 0
    cache.unpin(H1)
    assert put(cache, H3, b"c" * 100) == tmp_path / H3
    assert cache.lookup(H1) is None and cache.lookup(H2) is not None


def test_pin_of_absent_entry_raises(tmp_path) -> None:
    with pytest.raises(CacheError):
        SeedCache(tmp_path, 10).pin(H1)


def test_commit_of_known_hash_keeps_existing(tmp_path) -> None:
    cache = SeedCache(tmp_path, 1000)
    put(cache, H1, b"first")
    assert put(cache, H1, b"again") == tmp_path / H1
    assert (tmp_path / H1 / "obj.bin").read_bytes() == b"first"
    assert cache.size_bytes == 5


def test_reserve_pins_an_empty_entry_for_a_download(tmp_path) -> None:
    cache = SeedCache(tmp_path, 300)
    put(cache, H1, b"a" * 100)
    put(cache, H2, b"b" * 100)
    path = cache.reserve(H3, 150)
    assert path == tmp_path / H3 and path.is_dir()
    assert cache.is_pinned(H3) and cache.lookup(H1) is None  # H1 made room
    assert cache.reserve(H4, 200) is None  # only H2 (100) is evictable
    cache.unpin(H3)
    assert not cache.is_pinned(H3)


def test_remove(tmp_path) -> None:
    cache = SeedCache(tmp_path, 1000)
    put(cache, H1, b"abc")
    cache.pin(H1)
    assert cache.remove(H1)
    assert not cache.remove(H1)
    assert cache.lookup(H1) is None and not (tmp_path / H1).exists()
    assert cache.size_bytes == 0


def test_restart_rebuilds_index_and_lru_order(tmp_path) -> None:
    cache = SeedCache(tmp_path, 300)
    put(cache, H1, b"a" * 100)
    put(cache, H2, b"b" * 100)
    put(cache, H3, b"c" * 100)
    # make the order explicit: H2 oldest, then H3, then H1
    for i, h in enumerate([H2, H3, H1]):
        os.utime(tmp_path / h, (1_000_000 + i, 1_000_000 + i))
    w = cache.begin("half", 10)  # a crash mid-write leaves a .tmp dir
    w.write(0, b"x")
    (tmp_path / "not-a-hash").mkdir()

    again = SeedCache(tmp_path, 300)
    assert again.hashes() == [H2, H3, H1]
    assert again.size_bytes == 300
    assert not (tmp_path / ".tmp").exists()
    put(again, H4, b"d" * 100)
    assert again.lookup(H2) is None and again.lookup(H1) is not None


def test_restart_with_smaller_budget_keeps_newest(tmp_path) -> None:
    cache = SeedCache(tmp_path, 300)
    for i, h in enumerate([H1, H2, H3]):
        put(cache, h, bytes([i]) * 100)
        os.utime(tmp_path / h, (1_000_000 + i, 1_000_000 + i))
    smaller = SeedCache(tmp_path, 150)
    assert smaller.hashes() == [H3]
    assert smaller.evictions == 2
    assert not (tmp_path / H1).exists() and not (tmp_path / H2).exists()


def test_reserved_download_is_partial_until_complete_even_across_restart(tmp_path) -> None:
    cache = SeedCache(tmp_path, 1000)
    path = cache.reserve(H1, 100)
    assert path is not None
    (path / "o").write_bytes(b"half")
    assert cache.lookup(H1) == path and not cache.is_complete(H1)

    again = SeedCache(tmp_path, 1000)  # crash mid-download, restart
    assert again.lookup(H1) == path and not again.is_complete(H1)
    assert not again.is_pinned(H1)  # pins are not persisted
    assert again.reserve(H1, 100) == path and again.is_pinned(H1)
    again.complete(H1)
    assert again.is_complete(H1) and not again.is_pinned(H1)
    assert SeedCache(tmp_path, 1000).is_complete(H1)


def test_complete_of_a_committed_entry_only_unpins(tmp_path) -> None:
    cache = SeedCache(tmp_path, 1000)
    put(cache, H1, b"abc")
    assert cache.reserve(H1, 3) == tmp_path / H1  # existing complete entry: just pinned
    assert cache.is_complete(H1) and cache.is_pinned(H1)
    cache.complete(H1)
    assert not cache.is_pinned(H1)
    cache.complete(H2)  # absent: no-op


def test_eviction_and_remove_drop_the_partial_marker(tmp_path) -> None:
    cache = SeedCache(tmp_path, 100)
    cache.reserve(H1, 100)
    cache.remove(H1)
    assert not (tmp_path / f"{H1}.partial").exists()
    cache.reserve(H2, 100)
    cache.complete(H2)
    cache.reserve(H3, 100)  # evicts H2
    cache.complete(H3)
    put(cache, H4, b"x" * 100)  # evicts H3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".tmp") == [H4]
