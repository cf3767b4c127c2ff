"""Resume data in one SQLite file: ``<state>/resume.sqlite3``, a row per torrent in the session.

A row is ``lt.write_resume_data_buf`` with the info dict inside, keyed by the seed key. The
session writes one after each add, when a download finishes, and for every torrent at
shutdown, and deletes it when the torrent leaves the session: the table holds the session's
torrents (at most ``[seeding] max_active_torrents``), not the catalog. At startup they are
re-added so a restart seeds again without reading the origin.

One file instead of a file per torrent (the ``resume/`` directory of earlier versions): a
directory of 20,000 files took seconds to read at every start. An old ``resume/`` directory
is imported once, then removed.

Trackers and web seeds follow the catalog, not the resume data: the resume data keeps the
links the torrent had when it was saved, and the config may have moved the tracker or the
web seed since (the catalog was relinked at startup). `apply_links` gives a resumed torrent
its current links.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import libtorrent as lt

from seeder.seed.settings import tracker_tiers
from seeder.torrent.metainfo import Links

__all__ = ["RESUME_SAVE_DEADLINE", "RESUME_SUFFIX", "ResumeStore", "apply_links"]

log = logging.getLogger("seeder.seed.session")  # the session's lines, whichever module

RESUME_SAVE_DEADLINE = 10.0  # seconds to collect resume data at shutdown
RESUME_SUFFIX = ".resume"  # the files of the old resume/ directory
PAGE = 500  # rows read at once at startup


class ResumeStore:
    """The resume table: list, write and delete a torrent's resume data.

    Errors writing or deleting (disk full, a broken file) are logged, never raised: resume
    data saves a re-check, nothing more. An unreadable file is moved aside and a new one
    started.
    """

    def __init__(self, path: Path, legacy_dir: Path | None = None) -> None:
        self.path = path
        self.legacy_dir = legacy_dir
        self._conn: sqlite3.Connection | None = None

    def create(self) -> None:
        """Open (create) the file and import an old ``resume/`` directory once. Raises
        OSError when the file cannot be created at all."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = _connect(self.path)
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.broken-{int(time.time())}")
            log.warning("resume data %s unusable (%s): moved to %s", self.path, exc, aside)
            os.replace(self.path, aside)
            self._conn = _connect(self.path)
        if self.legacy_dir is not None and self.legacy_dir.is_dir():
            self._import(self.legacy_dir)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def saved(self) -> Iterator[tuple[str, bytes]]:
        """(seed key, resume data) of every row, in key order, read a page at a time."""
        after = ""
        while self._conn is not None:  # bounded: `after` grows every page
            try:
                rows = self._conn.execute(
                    "SELECT key, data FROM resume WHERE key > ? ORDER BY key LIMIT ?",
                    (after, PAGE)).fetchall()
            except sqlite3.Error as exc:
                log.warning("cannot read resume data %s: %s", self.path, exc)
                return
            if not rows:
                return
            for key, data in rows:
                yield key, bytes(data)
            after = rows[-1][0]

    def count(self) -> int:
        if self._conn is None:
            return 0
        return int(self._conn.execute("SELECT count(*) FROM resume").fetchone()[0])

    def write(self, key: str, params: lt.add_torrent_params) -> None:
        """Store torrent ``key``'s resume data."""
        self.put(key, lt.write_resume_data_buf(params))

    def put(self, key: str, data: bytes) -> None:
        self._run("INSERT OR REPLACE INTO resume (key, data) VALUES (?, ?)", (key, data))

    def delete(self, key: str) -> None:
        """Delete torrent ``key``'s resume data if there is any."""
        self._run("DELETE FROM resume WHERE key = ?", (key,))

    def _run(self, sql: str, args: tuple[object, ...]) -> None:
        if self._conn is None:
            return
        try:
            with self._conn:
                self._conn.execute(sql, args)
        except sqlite3.Error as exc:
            log.warning("resume data %s: %s", self.path, exc)

    def _import(self, directory: Path) -> None:
        """Move the files of an old ``resume/`` directory into the table, then remove it."""
        assert self._conn is not None
        imported = 0
        batch: list[tuple[str, bytes]] = []
        for path in sorted(directory.glob("*" + RESUME_SUFFIX)):
            try:
                batch.append((path.name[: -len(RESUME_SUFFIX)], path.read_bytes()))
            except OSError as exc:
                log.warning("resume data %s unreadable (%s): skipped", path, exc)
            if len(batch) >= PAGE:
                imported += self._insert(batch)
        imported += self._insert(batch)
        shutil.rmtree(directory, ignore_errors=True)
        log.info("resume data: imported %d files of %s into %s", imported, directory, self.path)

    def _insert(self, batch: list[tuple[str, bytes]]) -> int:
        assert self._conn is not None
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO resume (key, data) VALUES (?, ?)",
                                   batch)
        n = len(batch)
        batch.clear()
        return n


def apply_links(
    key: str, params: lt.add_torrent_params, links_of: Callable[[str], Links | None] | None
) -> None:
    """Give a resumed torrent the links ``links_of`` has for it, in place of the resume
    data's (which are what the torrent had when it was saved). No callable, None from it, or
    an exception in it (logged): the resume data's links stay."""
    if links_of is None:
        return
    try:
        links = links_of(key)
    except Exception:  # the catalog failing costs the new links, not the torrent
        log.exception("%s: cannot look up its current links", key)
        return
    if links is None:
        return
    tiers = tracker_tiers(links)
    if ([(u, t) for u, t in zip(params.trackers, params.tracker_tiers, strict=False)] != tiers
            or list(params.url_seeds) != list(links.url_list)):
        log.info("%s: resumed with the catalog's tracker and web seed URLs", key)
    params.trackers = [url for url, _ in tiers]
    params.tracker_tiers = [tier for _, tier in tiers]
    params.url_seeds = list(links.url_list)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS resume (key TEXT PRIMARY KEY, data BLOB NOT NULL)"
                     " WITHOUT ROWID")
        conn.commit()
    except sqlite3.DatabaseError:
        conn.close()
        raise
    return conn
