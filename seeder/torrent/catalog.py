"""The torrent catalog: one SQLite file under ``state.dir`` mapping an object to its torrent.

A row is keyed by ``(bucket, key, slot)``. ``slot`` is ``""`` for "the current object at this
key" (what a plain ``?torrent`` request and the scanner deal with) or a version id for a torrent
pinned to one object version (``?torrent&versionId=``). ``Entry.version_id`` is that pin
(``None`` for the current-object slot), so one (bucket, key) can hold one current torrent plus
any number of pinned ones. Versions are immutable, so a pinned row never goes stale; the
current row is stale when the object's ETag differs from the one recorded.

``Entry.object_version`` is the S3 version id of the bytes that were hashed (column
``object_version``): the pin for a pinned row, what HeadObject said for a current row in a
versioned bucket, None for unversioned buckets and local directories. The web seed URL of a
current-object torrent asks for that version, so the torrent keeps describing its web seed's
bytes after the key is overwritten.

The catalog is a cache: everything in it can be regenerated from the store. That is why an
unreadable or foreign database file is moved aside and a fresh one started instead of stopping
the daemon. Schema 1 (before ``object_version``) is migrated in place: the column is added,
NULL in the old rows ("not recorded", the same as no version: the torrent service fills it in,
and relinks the web seed URL, the next time the object is asked for). Anything older is dropped
and recreated.

Synchronous on purpose: every statement is a primary-key or index lookup on a small table and
takes microseconds, less than a thread hop would. The connection is opened with
``check_same_thread=False`` (so it may be opened before ``trio.run`` and used inside it) and
every call holds a lock, so a stray call from a worker thread cannot interleave statements.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from seeder.torrent.entry import Entry

__all__ = ["SCHEMA_VERSION", "Catalog", "CatalogError", "bucket_totals", "open_readonly", "page"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2

# The tracker sees v1 info-hashes and BEP 52 v2 hashes truncated to 20 bytes (a hybrid torrent
# announces under both), so v2 gets a second, truncated column with its own index.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS torrents (
    bucket          TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    slot            TEXT    NOT NULL,
    etag            TEXT    NOT NULL,
    size            INTEGER NOT NULL,
    last_modified   REAL    NOT NULL,
    torrent         BLOB    NOT NULL,
    info_hash_v1    BLOB,
    info_hash_v2    BLOB,
    info_hash_v2_20 BLOB,
    piece_length    INTEGER NOT NULL,
    format          TEXT    NOT NULL,
    created_at      REAL    NOT NULL,
    object_version  TEXT,
    PRIMARY KEY (bucket, key, slot)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS torrents_v1 ON torrents (info_hash_v1);
CREATE INDEX IF NOT EXISTS torrents_v2_20 ON torrents (info_hash_v2_20);
CREATE INDEX IF NOT EXISTS torrents_v2 ON torrents (info_hash_v2);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS torrents_bucket_size ON torrents (bucket, size);
"""

_COLUMNS = (
    "bucket, key, slot, etag, size, last_modified, torrent, info_hash_v1, info_hash_v2,"
    " piece_length, format, created_at, object_version"
)


class CatalogError(Exception):
    """The catalog file cannot be opened or used (permissions, disk full, closed catalog)."""


class Catalog:
    """The SQLite-backed catalog. Create with :meth:`open`; :meth:`close` when done."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.path = path
        # The row count, kept up to date by put/delete once counted: count(*) reads the whole
        # table (tens of ms at a million rows), and the gauge wants it after every change.
        self._count: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Catalog:
        """Open (creating it and its directory if needed) the catalog at ``path``.

        A file that is not a usable catalog (corrupt, not SQLite, newer schema) is renamed to
        ``<path>.broken-<unix time>`` with a warning and a fresh catalog is created: the contents
        are a cache. Raises CatalogError when the file cannot be created at all.
        """
        path = os.fspath(path)
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CatalogError(f"cannot create the directory for {path}: {exc}") from None
        try:
            return cls(_connect(path), path)
        except _Unusable as exc:
            aside = f"{path}.broken-{int(time.time())}"
            log.warning("catalog %s is unusable (%s); moving it to %s and starting empty",
                        path, exc, aside)
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.replace(path + suffix, aside + suffix)
                except FileNotFoundError:
                    pass
                except OSError as move_exc:
                    raise CatalogError(f"cannot move aside {path}{suffix}: {move_exc}") from None
            try:
                return cls(_connect(path), path)
            except _Unusable as exc2:
                raise CatalogError(f"cannot create catalog {path}: {exc2}") from None

    def close(self) -> None:
        """Commit what ``put_newest(commit=False)`` left pending, close the connection.
        Idempotent."""
        with self._lock:
            try:
                if self._conn.in_transaction:
                    self._conn.commit()
            except sqlite3.ProgrammingError:
                pass  # closed already
            except sqlite3.Error as exc:
                log.warning("catalog %s: the last rows were not committed: %s", self.path, exc)
            self._conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries -----------------------------------------------------------------------------

    def get(self, bucket: str, key: str, version_id: str | None = None) -> Entry | None:
        """The entry for the current object at (bucket, key), or for the pinned ``version_id``."""
        row = self._one(
            f"SELECT {_COLUMNS} FROM torrents WHERE bucket=? AND key=? AND slot=?",
            (bucket, key, version_id or ""),
        )
        return None if row is None else _entry(row)

    def put(self, entry: Entry) -> Entry | None:
        """Insert or replace the row for (entry.bucket, entry.key, entry.version_id).

        Returns the entry it replaced, if any (so the caller can retire its info-hashes).
        """
        return self.put_newest(entry, keep_newer=False)[1]

    def put_newest(self, entry: Entry, *, keep_newer: bool = True,
                   commit: bool = True) -> tuple[bool, Entry | None]:
        """As :meth:`put`, in one transaction with the check: when ``keep_newer`` and the row
        holds another ETag of a newer object (jobs for two ETags of one key finished out of
        order), nothing is written. Returns (written, the row found).

        ``commit=False`` (many small writes, the scanner's): the row is written into the
        open transaction: every reader of this Catalog sees it at once, other connections
        (a read-only command) and the disk at the next commit: of any change made with
        ``commit=True``, or :meth:`flush`. A failed statement rolls back every row not yet
        committed (the catalog is a cache: the scanner makes them again)."""
        slot = entry.version_id or ""
        v2 = entry.info_hash_v2
        with self._guard(), (self._conn if commit else _in_transaction(self._conn)):
            old = self._conn.execute(
                f"SELECT {_COLUMNS} FROM torrents WHERE bucket=? AND key=? AND slot=?",
                (entry.bucket, entry.key, slot),
            ).fetchone()
            found = None if old is None else _entry(old)
            if (keep_newer and found is not None and found.etag != entry.etag
                    and found.last_modified > entry.last_modified):
                return False, found
            self._conn.execute(
                "INSERT OR REPLACE INTO torrents (bucket, key, slot, etag, size, last_modified,"
                " torrent, info_hash_v1, info_hash_v2, info_hash_v2_20, piece_length, format,"
                " created_at, object_version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (entry.bucket, entry.key, slot, entry.etag, entry.size, entry.last_modified,
                 entry.torrent, entry.info_hash_v1, v2, None if v2 is None else v2[:20],
                 entry.piece_length, entry.format, entry.created_at, entry.object_version),
            )
            if old is None and self._count is not None:
                self._count += 1
        return True, found

    def put_many(self, entries: list[Entry]) -> None:
        """Insert or replace the rows of ``entries`` in one transaction (one commit for all:
        relinking a whole catalog at startup). Nothing is returned of the rows replaced."""
        rows = [
            (e.bucket, e.key, e.version_id or "", e.etag, e.size, e.last_modified, e.torrent,
             e.info_hash_v1, e.info_hash_v2,
             None if e.info_hash_v2 is None else e.info_hash_v2[:20],
             e.piece_length, e.format, e.created_at, e.object_version)
            for e in entries
        ]
        with self._guard(), self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO torrents (bucket, key, slot, etag, size, last_modified,"
                " torrent, info_hash_v1, info_hash_v2, info_hash_v2_20, piece_length, format,"
                " created_at, object_version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            self._count = None  # some rows were new, some replaced: counted again when asked

    def flush(self) -> None:
        """Commit the rows written with ``put_newest(commit=False)`` (if any)."""
        with self._guard():
            if self._conn.in_transaction:
                self._conn.commit()

    def delete(self, bucket: str, key: str, version_id: str | None = None) -> Entry | None:
        """Remove the current-object row (or the pinned ``version_id`` row); return what it held."""
        slot = version_id or ""
        with self._guard(), self._conn:
            old = self._conn.execute(
                f"SELECT {_COLUMNS} FROM torrents WHERE bucket=? AND key=? AND slot=?",
                (bucket, key, slot),
            ).fetchone()
            if old is not None:
                self._conn.execute(
                    "DELETE FROM torrents WHERE bucket=? AND key=? AND slot=?", (bucket, key, slot)
                )
                if self._count is not None:
                    self._count -= 1
        return None if old is None else _entry(old)

    def keys(self, bucket: str) -> set[str]:
        """Keys in ``bucket`` that have a current-object torrent (pinned versions excluded)."""
        rows = self._all("SELECT key FROM torrents WHERE bucket=? AND slot=''", (bucket,))
        return {r[0] for r in rows}

    def etag_page(self, bucket: str, after: str | None, upto: str | None,
                  limit: int = 1000) -> list[tuple[str, str]]:
        """Up to ``limit`` (key, ETag) of ``bucket``'s current-object rows with ``after`` <
        key <= ``upto`` (None: unbounded), in key order (UTF-8 byte order, as S3 lists).

        The scanner's merge with a listing page: a primary-key range scan, so a bucket of any
        size is walked a page at a time in constant memory.
        """
        sql = "SELECT key, etag FROM torrents WHERE bucket=? AND slot=''"
        args: list[object] = [bucket]
        if after is not None:
            sql += " AND key>?"
            args.append(after)
        if upto is not None:
            sql += " AND key<=?"
            args.append(upto)
        sql += " ORDER BY key LIMIT ?"
        args.append(limit)
        return [(k, e) for k, e in self._all(sql, tuple(args))]

    def entry_page(self, bucket: str, after: tuple[str, str] | None,
                   limit: int = 1000) -> list[Entry]:
        """Up to ``limit`` entries of ``bucket`` past (key, slot) ``after`` (None: from the
        start), in (key, slot) order: the whole bucket a page at a time."""
        if after is None:
            rows = self._all(f"SELECT {_COLUMNS} FROM torrents WHERE bucket=?"
                             " ORDER BY key, slot LIMIT ?", (bucket, limit))
        else:
            rows = self._all(f"SELECT {_COLUMNS} FROM torrents WHERE bucket=?"
                             " AND (key, slot) > (?, ?) ORDER BY key, slot LIMIT ?",
                             (bucket, after[0], after[1], limit))
        return [_entry(r) for r in rows]

    def get_meta(self, name: str) -> str | None:
        """A value the daemon keeps beside the torrents (None: never set)."""
        row = self._one("SELECT value FROM meta WHERE name=?", (name,))
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        with self._guard(), self._conn:
            self._conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                               (name, value))

    def slot_page(self, bucket: str, limit: int = 1000) -> list[tuple[str, str | None]]:
        """Up to ``limit`` (key, pinned version or None) of ``bucket``'s rows, in key order
        (dropping a bucket that is no longer configured, a page at a time)."""
        rows = self._all("SELECT key, slot FROM torrents WHERE bucket=? ORDER BY key, slot"
                         " LIMIT ?", (bucket, limit))
        return [(k, slot or None) for k, slot in rows]

    def buckets(self) -> set[str]:
        """Buckets that have at least one entry."""
        return {r[0] for r in self._all("SELECT DISTINCT bucket FROM torrents", ())}

    def entries(self, bucket: str | None = None) -> Iterator[Entry]:
        """Every entry (of one bucket, if given), current and pinned, in (bucket, key) order.

        The rows are read up front, so the catalog may be modified while iterating.
        """
        if bucket is None:
            rows = self._all(f"SELECT {_COLUMNS} FROM torrents ORDER BY bucket, key, slot", ())
        else:
            rows = self._all(
                f"SELECT {_COLUMNS} FROM torrents WHERE bucket=? ORDER BY key, slot", (bucket,)
            )
        return iter([_entry(r) for r in rows])

    def by_info_hash(self, info_hash: bytes) -> Entry | None:
        """The entry announcing under ``info_hash``.

        20 bytes: a v1 info-hash or a v2 one truncated (as trackers and BEP 52 peers use it);
        32 bytes: a full v2 info-hash. Anything else finds nothing.
        """
        if len(info_hash) == 20:
            row = self._one(
                f"SELECT {_COLUMNS} FROM torrents WHERE info_hash_v1=? LIMIT 1", (info_hash,)
            ) or self._one(
                f"SELECT {_COLUMNS} FROM torrents WHERE info_hash_v2_20=? LIMIT 1", (info_hash,)
            )
        elif len(info_hash) == 32:
            row = self._one(
                f"SELECT {_COLUMNS} FROM torrents WHERE info_hash_v2=? LIMIT 1", (info_hash,)
            )
        else:
            return None
        return None if row is None else _entry(row)

    def tracker_hashes(self, info_hash: bytes) -> tuple[bytes, ...] | None:
        """The 20-byte hashes a torrent announces under (v1, v2 truncated), found by one of
        them; None when no torrent has it. Two index lookups, no torrent bytes read (the
        tracker's registration on first use, ``Swarms.resolve``)."""
        if len(info_hash) != 20:
            return None
        row = self._one(
            "SELECT info_hash_v1, info_hash_v2_20 FROM torrents WHERE info_hash_v1=? LIMIT 1",
            (info_hash,),
        ) or self._one(
            "SELECT info_hash_v1, info_hash_v2_20 FROM torrents WHERE info_hash_v2_20=? LIMIT 1",
            (info_hash,),
        )
        if row is None:
            return None
        return tuple(bytes(h) for h in row if h is not None)

    def count(self) -> int:
        """Number of rows (current and pinned). Counted once, then kept by every change."""
        if self._count is None:
            row = self._one("SELECT count(*) FROM torrents", ())
            assert row is not None
            self._count = int(row[0])
        return self._count

    # -- plumbing ----------------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        # One statement sequence at a time; sqlite3's errors (closed, disk full, I/O) leave as
        # CatalogError so callers handle one type.
        with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                self._count = None  # a failed change may have been counted: count again
                raise CatalogError(f"catalog {self.path}: {exc}") from None

    def _one(self, sql: str, args: tuple[object, ...]) -> tuple | None:
        with self._guard():
            return self._conn.execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple[object, ...]) -> list[tuple]:
        with self._guard():
            return self._conn.execute(sql, args).fetchall()


@contextmanager
def _in_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """Statements left in the connection's open transaction (no commit); rolled back, with
    everything else uncommitted, if one fails."""
    try:
        yield
    except BaseException:
        conn.rollback()
        raise


def open_readonly(path: str | os.PathLike[str]) -> Catalog:
    """Open an existing catalog for reading only (a command beside a running daemon):
    nothing is created, migrated or moved aside. Raises CatalogError when the file is
    missing, unreadable, not a catalog or of another schema version."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CatalogError(f"no catalog at {path} (has the daemon run with this state dir?)")
    try:
        conn = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True,
                               check_same_thread=False)
    except sqlite3.Error as exc:
        raise CatalogError(f"cannot open catalog {path}: {exc}") from None
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        version = _schema_version(conn)
    except (sqlite3.Error, _Unusable) as exc:
        conn.close()
        raise CatalogError(f"cannot read catalog {path}: {exc}") from None
    if version != SCHEMA_VERSION:
        conn.close()
        raise CatalogError(f"catalog {path} has schema {version}, not {SCHEMA_VERSION}"
                           " (start the daemon once to upgrade it)")
    return Catalog(conn, path)


def page(catalog: Catalog, offset: int, limit: int) -> list[Entry]:
    """At most ``limit`` entries of ``catalog`` from position ``offset`` of the (bucket, key,
    slot) order: one page of a listing, read through the primary key without loading the
    rest of the catalog."""
    rows = catalog._all(
        f"SELECT {_COLUMNS} FROM torrents ORDER BY bucket, key, slot LIMIT ? OFFSET ?",
        (max(0, limit), max(0, offset)),
    )
    return [_entry(r) for r in rows]


def bucket_totals(catalog: Catalog) -> dict[str, tuple[int, int]]:
    """bucket -> (entries, sum of their object sizes in bytes), from the
    ``torrents_bucket_size`` index (the torrent bytes are not read)."""
    rows = catalog._all(
        "SELECT bucket, count(*), coalesce(sum(size), 0) FROM torrents"
        " GROUP BY bucket ORDER BY bucket", ())
    return {b: (int(n), int(total)) for b, n, total in rows}


class _Unusable(Exception):
    pass


def _connect(path: str) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED")
    except sqlite3.Error as exc:
        raise CatalogError(f"cannot open catalog {path}: {exc}") from None
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a power cut may lose the last commits, never corrupt the file; the lost
        # rows are regenerated on demand.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        version = _schema_version(conn)
        if version == 1:
            _migrate_1_to_2(conn, path)
            version = SCHEMA_VERSION
        if version is not None and version != SCHEMA_VERSION:
            if version > SCHEMA_VERSION:
                raise _Unusable(f"schema version {version} is newer than {SCHEMA_VERSION}")
            log.info("catalog %s: schema %d -> %d, dropping cached torrents (regenerated on "
                     "demand)", path, version, SCHEMA_VERSION)
            with conn:
                conn.execute("DROP TABLE IF EXISTS torrents")
                conn.execute("DELETE FROM schema_version")
        with conn:
            conn.executescript("BEGIN;" + _SCHEMA + "COMMIT;")
        with conn:
            if _schema_version(conn) is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise _Unusable(str(exc)) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate_1_to_2(conn: sqlite3.Connection, path: str) -> None:
    """Add ``object_version`` (NULL: not recorded) and keep every row: no torrent is hashed
    again for the upgrade. One transaction: an interrupted migration leaves schema 1."""
    log.info("catalog %s: schema 1 -> 2 (object_version column added)", path)
    # executescript: sqlite3 would run the ALTER outside the transaction a `with conn` opens.
    conn.executescript("BEGIN; ALTER TABLE torrents ADD COLUMN object_version TEXT;"
                       " UPDATE schema_version SET version = 2; COMMIT;")


def _schema_version(conn: sqlite3.Connection) -> int | None:
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'"
    ).fetchone()
    if not has_table:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='torrents'"
                        ).fetchone():
            raise _Unusable("a torrents table without a schema version")
        return None
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _entry(row: tuple) -> Entry:
    (bucket, key, slot, etag, size, last_modified, torrent, v1, v2, piece_length, fmt,
     created_at, object_version) = row
    return Entry(
        bucket=bucket, key=key, etag=etag, version_id=slot or None, size=size,
        last_modified=last_modified, torrent=bytes(torrent),
        info_hash_v1=None if v1 is None else bytes(v1),
        info_hash_v2=None if v2 is None else bytes(v2),
        piece_length=piece_length, format=fmt, created_at=created_at,
        object_version=object_version or None,
    )
