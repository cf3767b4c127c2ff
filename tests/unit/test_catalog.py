"""seeder.torrent.catalog against a real SQLite file in tmp_path (a restart is a reopen)."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest

from seeder.torrent.catalog import (
    SCHEMA_VERSION,
    Catalog,
    CatalogError,
    bucket_totals,
    open_readonly,
    page,
)
from seeder.torrent.entry import Entry
from tests.helpers import write_schema_1_catalog


def entry(key: str = "a/b.bin", *, bucket: str = "bk", etag: str = "e1",
          version_id: str | None = None, seed: int = 1, hybrid: bool = False) -> Entry:
    return Entry(
        bucket=bucket, key=key, etag=etag, version_id=version_id, size=1000 + seed,
        last_modified=1_700_000_000.5, torrent=b"d4:infod" + bytes([seed]) * 40 + b"ee\x00\xff",
        info_hash_v1=bytes([seed]) * 20,
        info_hash_v2=bytes([seed, 0xAA]) * 16 if hybrid else None,
        piece_length=262144, format="hybrid" if hybrid else "v1", created_at=1_700_000_100.0,
    )


@pytest.fixture
def path(tmp_path):
    return tmp_path / "state" / "catalog.sqlite3"


def test_round_trip_survives_reopen(path):
    e = entry(hybrid=True)
    with Catalog.open(path) as cat:
        assert cat.get("bk", "a/b.bin") is None
        assert cat.put(e) is None
        assert cat.get("bk", "a/b.bin") == e
    with Catalog.open(path) as cat:  # restart
        got = cat.get("bk", "a/b.bin")
        assert got == e
        assert isinstance(got.torrent, bytes)
        assert cat.count() == 1


def test_wal_mode_and_schema_version(path):
    Catalog.open(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        conn.close()


def test_put_replaces_and_returns_old(path):
    with Catalog.open(path) as cat:
        old = entry(etag="e1", seed=1)
        new = entry(etag="e2", seed=2)
        cat.put(old)
        assert cat.put(new) == old
        assert cat.get("bk", "a/b.bin") == new
        assert cat.count() == 1
        assert cat.by_info_hash(old.info_hash_v1) is None
        assert cat.by_info_hash(new.info_hash_v1) == new


def test_put_many_inserts_and_replaces_in_one_go(path):
    with Catalog.open(path) as cat:
        old = entry("a", seed=1, hybrid=True)
        cat.put(old)
        new = dataclasses.replace(old, torrent=b"d4:infodee", object_version="v9")
        pinned = entry("a", version_id="v1", seed=3)
        cat.put_many([new, pinned, entry("b", seed=2)])
        cat.put_many([])
    with Catalog.open(path) as cat:
        assert cat.get("bk", "a") == new
        assert cat.get("bk", "a", "v1") == pinned
        assert cat.by_info_hash(new.info_hash_v2[:20]) == new
        assert cat.count() == 3


def test_pinned_versions_live_beside_the_current_row(path):
    with Catalog.open(path) as cat:
        cur = entry(etag="e2", seed=2)
        pinned = entry(etag="e1", version_id="v1", seed=1)
        cat.put(cur)
        cat.put(pinned)
        assert cat.get("bk", "a/b.bin") == cur
        assert cat.get("bk", "a/b.bin", "v1") == pinned
        assert cat.get("bk", "a/b.bin", "v9") is None
        assert cat.keys("bk") == {"a/b.bin"}
        assert cat.etag_page("bk", None, None) == [("a/b.bin", "e2")]
        assert cat.count() == 2
        assert cat.delete("bk", "a/b.bin") == cur
        assert cat.get("bk", "a/b.bin", "v1") == pinned
        assert cat.keys("bk") == set()


def test_delete_missing_is_none(path):
    with Catalog.open(path) as cat:
        assert cat.delete("bk", "nope") is None


def test_keys_entries_by_bucket(path):
    with Catalog.open(path) as cat:
        for i, (b, k) in enumerate([("x", "2"), ("x", "1"), ("y", "1"), ("x", "ü €/ä")]):
            cat.put(entry(k, bucket=b, seed=i))
        assert cat.keys("x") == {"1", "2", "ü €/ä"}
        assert cat.keys("y") == {"1"}
        assert cat.keys("z") == set()
        assert cat.buckets() == {"x", "y"}
        assert [(e.bucket, e.key) for e in cat.entries()] == [
            ("x", "1"), ("x", "2"), ("x", "ü €/ä"), ("y", "1")]
        assert [e.key for e in cat.entries("y")] == ["1"]
        # entries() is a snapshot: deleting while iterating is fine
        for e in cat.entries():
            cat.delete(e.bucket, e.key)
        assert cat.count() == 0


def test_by_info_hash_v1_v2_and_truncated_v2(path):
    with Catalog.open(path) as cat:
        h = entry("h", seed=7, hybrid=True)
        v1only = entry("v", seed=8)
        cat.put(h)
        cat.put(v1only)
        assert cat.by_info_hash(h.info_hash_v1) == h
        assert cat.by_info_hash(h.info_hash_v2) == h
        assert cat.by_info_hash(h.info_hash_v2[:20]) == h
        assert cat.by_info_hash(v1only.info_hash_v1) == v1only
        assert h.tracker_hashes == (h.info_hash_v1, h.info_hash_v2[:20])
        assert v1only.tracker_hashes == (v1only.info_hash_v1,)


@pytest.mark.parametrize("bad", [b"", b"\x07" * 19, b"\x07" * 21, b"\x07" * 31, b"\x07" * 33,
                                 b"\x09" * 20, b"\x09" * 32])
def test_by_info_hash_unknown_or_malformed_is_none(path, bad):
    with Catalog.open(path) as cat:
        cat.put(entry(seed=7, hybrid=True))
        assert cat.by_info_hash(bad) is None


@pytest.mark.parametrize("content", [
    b"this is not a database at all, just some bytes" * 100,
    b"SQLite format 3\x00" + b"\xff" * 4000,
])
def test_garbage_file_is_moved_aside(path, content):
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with Catalog.open(path) as cat:
        assert cat.count() == 0
        cat.put(entry())
    aside = [p for p in path.parent.iterdir() if ".broken-" in p.name]
    assert len(aside) == 1
    assert aside[0].read_bytes() == content


def test_newer_schema_is_moved_aside(path):
    Catalog.open(path).close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    with Catalog.open(path) as cat:
        assert cat.count() == 0
    assert any(".broken-" in p.name for p in path.parent.iterdir())


def test_older_schema_drops_rows(path):
    with Catalog.open(path) as cat:
        cat.put(entry())
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE schema_version SET version = 0")
    conn.close()
    with Catalog.open(path) as cat:
        assert cat.count() == 0
        cat.put(entry())
        assert cat.count() == 1


def test_closed_catalog_raises_catalog_error(path):
    cat = Catalog.open(path)
    cat.close()
    cat.close()  # idempotent
    for call in (lambda: cat.get("bk", "k"), lambda: cat.put(entry()),
                 lambda: cat.delete("bk", "k"), cat.count, lambda: cat.keys("bk")):
        with pytest.raises(CatalogError):
            call()


def test_unwritable_location_raises_catalog_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    with pytest.raises(CatalogError):
        Catalog.open(blocker / "sub" / "catalog.sqlite3")


def test_entry_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry().etag = "x"  # type: ignore[misc]


def test_the_object_version_is_recorded(path):
    cur = dataclasses.replace(entry(etag="e2", seed=2), object_version="v2")
    with Catalog.open(path) as cat:
        cat.put(cur)
        cat.put(entry(key="plain", seed=3))
    with Catalog.open(path) as cat:
        assert cat.get("bk", "a/b.bin").object_version == "v2"
        assert cat.get("bk", "plain").object_version is None


def test_a_pinned_entry_records_its_pin_as_the_object_version():
    assert entry(version_id="v1").object_version == "v1"
    assert dataclasses.replace(entry(version_id="v1"), object_version="v1").object_version == "v1"
    with pytest.raises(ValueError, match="pinned"):
        dataclasses.replace(entry(version_id="v1"), object_version="v2")


def test_a_schema_1_catalog_is_migrated_keeping_its_rows(path):
    cur, pinned = entry(etag="e2", seed=2, hybrid=True), entry(version_id="v1", seed=1)
    write_schema_1_catalog(path, [cur, pinned])
    with Catalog.open(path) as cat:
        assert cat.count() == 2
        got = cat.get("bk", "a/b.bin")
        assert got == cur and got.object_version is None  # not recorded
        assert cat.get("bk", "a/b.bin", "v1") == pinned  # the pin is its version
        assert cat.by_info_hash(cur.info_hash_v2[:20]) == cur
        later = dataclasses.replace(cur, object_version="v2")
        assert cat.put(later) == cur
    assert not any(".broken-" in p.name for p in path.parent.iterdir())
    with Catalog.open(path) as cat:  # reopened at schema 2: nothing migrates twice
        assert cat.get("bk", "a/b.bin") == later
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        conn.close()


def test_page_walks_the_catalog_in_order(path):
    with Catalog.open(path) as cat:
        keys = [f"k{i:03d}" for i in range(25)]
        cat.put_many([entry(k, bucket=b, seed=i % 200 + 1)
                      for i, k in enumerate(keys) for b in ("b2", "b1")])
        cat.put(entry("k000", bucket="b1", version_id="v1", seed=9))
        got = [(e.bucket, e.key, e.version_id) for o in range(0, 60, 10)
               for e in page(cat, o, 10)]
        assert got == sorted(got, key=lambda t: (t[0], t[1], t[2] or ""))
        assert len(got) == 51 and len(set(got)) == 51
        assert got[:2] == [("b1", "k000", None), ("b1", "k000", "v1")]
        assert page(cat, 51, 10) == [] and page(cat, 0, 0) == []


def test_bucket_totals(path):
    with Catalog.open(path) as cat:
        assert bucket_totals(cat) == {}
        cat.put(entry("a", bucket="x", seed=1))  # size 1001
        cat.put(entry("b", bucket="x", seed=2))  # 1002
        cat.put(entry("a", bucket="y", seed=3))  # 1003
        assert bucket_totals(cat) == {"x": (2, 2003), "y": (1, 1003)}


def test_open_readonly_reads_beside_a_writer_and_refuses_the_rest(path, tmp_path):
    with pytest.raises(CatalogError, match="no catalog at"):
        open_readonly(path)
    with Catalog.open(path) as writer:
        writer.put(entry("a"))
        with open_readonly(path) as reader:
            assert reader.get("bk", "a") == entry("a")
            writer.put(entry("b"))
            assert reader.count() == 2
            with pytest.raises(CatalogError):
                reader.put(entry("c"))
    old = tmp_path / "old.sqlite3"
    write_schema_1_catalog(old, [entry("a")])
    with pytest.raises(CatalogError, match="schema 1, not 2"):
        open_readonly(old)
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(CatalogError, match="cannot read catalog"):
        open_readonly(junk)
    assert junk.read_bytes() == b"not a database" * 100  # never moved aside or rewritten


def test_put_without_commit_is_seen_here_at_once_and_elsewhere_after_flush(path):
    with Catalog.open(path) as writer, open_readonly(path) as reader:
        writer.put(entry("a"))
        assert writer.put_newest(entry("b", seed=2), commit=False) == (True, None)
        assert writer.get("bk", "b") == entry("b", seed=2)  # this connection: at once
        assert writer.by_info_hash(bytes([2]) * 20) == entry("b", seed=2)
        assert writer.count() == 2
        assert reader.get("bk", "b") is None  # another connection: not yet
        writer.flush()
        assert reader.get("bk", "b") == entry("b", seed=2)
        writer.flush()  # nothing pending: nothing to do
        writer.put_newest(entry("c", seed=3), commit=False)
        writer.delete("bk", "a")  # any committed change commits the pending rows too
        assert reader.get("bk", "c") == entry("c", seed=3)
        writer.put_newest(entry("d", seed=4), commit=False)
    with Catalog.open(path) as cat:  # close commits what was pending
        assert [k for k, _ in cat.etag_page("bk", None, None)] == ["b", "c", "d"]


def test_a_failed_uncommitted_put_rolls_back_the_pending_rows(path):
    with Catalog.open(path) as cat:
        cat.put(entry("a"))
        cat.put_newest(entry("b", seed=2), commit=False)
        cat._conn.execute("CREATE TEMP TRIGGER no_c BEFORE INSERT ON torrents"
                          " WHEN NEW.key = 'c' BEGIN SELECT RAISE(ABORT, 'refused'); END")
        with pytest.raises(CatalogError, match="refused"):
            cat.put_newest(entry("c", seed=3), commit=False)
        assert cat.get("bk", "b") is None
        assert cat.count() == 1
        cat.put_newest(entry("d", seed=4), commit=False)
        cat.flush()
    with Catalog.open(path) as cat:
        assert [k for k, _ in cat.etag_page("bk", None, None)] == ["a", "d"]
