"""Resume data on disk: ``<state>/resume/<seed key>.resume``, one file per torrent.

The files are ``lt.write_resume_data_buf`` with the info dict inside, written by rename (a
crash leaves the old file or the new one). The session writes one after each add, when a
download finishes, and for every torrent at shutdown; at startup it re-adds them so a restart
seeds again without reading the origin.

Trackers and web seeds follow the catalog, not the resume data: the resume data keeps the
links the torrent had when it was saved, and the config may have moved the tracker or the
web seed since (the catalog was relinked at startup). `apply_links` gives a resumed torrent
its current links.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import libtorrent as lt

from seeder.seed.settings import tracker_tiers
from seeder.torrent.metainfo import Links

__all__ = ["RESUME_SAVE_DEADLINE", "RESUME_SUFFIX", "ResumeFiles", "apply_links"]

log = logging.getLogger("seeder.seed.session")  # the session's lines, whichever module

RESUME_SAVE_DEADLINE = 10.0  # seconds to collect resume data at shutdown
RESUME_SUFFIX = ".resume"


class ResumeFiles:
    """The resume directory: list, write and delete a torrent's resume file."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def create(self) -> None:
        """Make the directory (and its parents) if missing. Raises OSError."""
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.dir / (key + RESUME_SUFFIX)

    def saved(self) -> Iterator[Path]:
        """The resume files there now, in name order."""
        return iter(sorted(self.dir.glob("*" + RESUME_SUFFIX)))

    def write(self, key: str, params: lt.add_torrent_params) -> None:
        """Write torrent ``key``'s resume data; an OSError is logged, not raised."""
        data = lt.write_resume_data_buf(params)
        path = self.path(key)
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as e:
            log.warning("cannot write resume data %s: %s", path, e)

    def delete(self, key: str) -> None:
        """Delete torrent ``key``'s resume file if there is one. Raises other OSErrors."""
        self.path(key).unlink(missing_ok=True)


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
