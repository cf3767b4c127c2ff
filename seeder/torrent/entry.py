"""The catalog record every layer passes around (`Entry`) and the seed key of a torrent.

Pure: no I/O, no third-party imports. The catalog stores entries, the torrent service makes
them, the seeding policy, the S3 handlers and the daemon read them.

The *seed key* names a torrent in the seed cache (its directory) and in the libtorrent
session: the v1 info-hash in hex (40 characters) when the torrent has a v1 part, else the
full v2 info-hash in hex (64 characters). `seed_key` is its one definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Entry", "TorrentFormat", "seed_key"]

TorrentFormat = Literal["v1", "hybrid"]


def seed_key(info_hash_v1: bytes | None, info_hash_v2: bytes | None) -> str:
    """The seed cache / libtorrent session key of a torrent with these info-hashes.

    v1 hex when ``info_hash_v1`` is given (v1 and hybrid torrents), else the full v2 hex
    (v2-only: never the 20-byte truncation trackers see). Raises ValueError when both are
    None.
    """
    if info_hash_v1 is not None:
        return info_hash_v1.hex()
    if info_hash_v2 is not None:
        return info_hash_v2.hex()
    raise ValueError("a torrent has a v1 or a v2 info-hash")


@dataclass(frozen=True, slots=True)
class Entry:
    """One generated torrent and the object state it was generated from.

    ``version_id`` is the pin (None: the current object at ``key``); ``object_version`` the
    S3 version id of the bytes hashed (defaults to the pin for a pinned entry; ValueError
    when it contradicts the pin).
    """

    bucket: str
    key: str
    etag: str
    version_id: str | None  # the pinned version; None = the current object at `key`
    size: int
    last_modified: float
    torrent: bytes
    info_hash_v1: bytes | None  # 20 bytes
    info_hash_v2: bytes | None  # 32 bytes (hybrid)
    piece_length: int
    format: TorrentFormat
    created_at: float
    # The S3 version id of the bytes hashed (the web seed URL asks for it); None: unversioned
    # bucket, local directory, or not recorded (a row from schema 1). A pinned entry's is its pin.
    object_version: str | None = None

    def __post_init__(self) -> None:
        if self.version_id is not None:
            if self.object_version is None:
                object.__setattr__(self, "object_version", self.version_id)
            elif self.object_version != self.version_id:
                raise ValueError(f"entry pinned to {self.version_id!r} records object version"
                                 f" {self.object_version!r}")

    @property
    def tracker_hashes(self) -> tuple[bytes, ...]:
        """The 20-byte hashes this torrent announces under: v1 and/or v2 truncated."""
        out = []
        if self.info_hash_v1 is not None:
            out.append(self.info_hash_v1)
        if self.info_hash_v2 is not None:
            out.append(self.info_hash_v2[:20])
        return tuple(out)

    @property
    def seed_key(self) -> str:
        """This torrent's key in the seed cache and the libtorrent session (`seed_key`)."""
        return seed_key(self.info_hash_v1, self.info_hash_v2)
