"""Which objects get a torrent, and when a cached torrent still describes its object (pure).

As Amazon S3: objects up to 5 GiB - 1 byte, not SSE-C encrypted, not empty. A cached entry
is current while the object's ETag and size and the bucket's torrent format and fixed piece
length are what it was made with. `object_version` names the bytes a torrent's web seed URL
asks for.
"""

from __future__ import annotations

from seeder.config import BucketConfig
from seeder.store import ObjectInfo
from seeder.torrent import metainfo
from seeder.torrent.entry import Entry

__all__ = [
    "EMPTY_MESSAGE",
    "MAX_TORRENT_SIZE",
    "SSE_C_MESSAGE",
    "TOO_LARGE_MESSAGE",
    "NotQualified",
    "check_qualifies",
    "is_current",
    "object_version",
    "wanted_piece_length",
]

# Amazon S3 refused torrents for objects of 5 GiB and more (field notes): same limit, same words.
MAX_TORRENT_SIZE = 5368709120
TOO_LARGE_MESSAGE = f"Torrent creation is not supported for objects larger than {MAX_TORRENT_SIZE}"
SSE_C_MESSAGE = (
    "Torrent creation is not supported for objects encrypted with customer-provided keys (SSE-C)"
)
EMPTY_MESSAGE = metainfo.EMPTY_MESSAGE


class NotQualified(Exception):
    """S3 would not make a torrent for this object; ``message`` is the S3 error message.

    The HTTP layer answers 400 InvalidRequest with it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_qualifies(size: int, sse_c: bool = False) -> None:
    """Raise NotQualified unless a torrent can be made for an object of ``size`` bytes.

    As Amazon S3: sizes up to 5368709119 bytes, not SSE-C encrypted (the daemon holds no
    customer keys). Empty objects are refused too: a torrent needs at least one piece.
    """
    if sse_c:
        raise NotQualified(SSE_C_MESSAGE)
    if size >= MAX_TORRENT_SIZE:
        raise NotQualified(TOO_LARGE_MESSAGE)
    if size <= 0:
        raise NotQualified(EMPTY_MESSAGE)


def object_version(info: ObjectInfo, version_id: str | None = None) -> str | None:
    """The version the web seed URL of a torrent of ``info`` asks for: the pin
    (``version_id``, as the client named it) or else the version HeadObject reported, None
    when there is none.

    HeadObject's ``"null"`` version (an object written while versioning was off or
    suspended) is None too: the next such write replaces it under the same id, so asking
    for it would not keep the bytes, and the plain URL serves them as well.
    """
    if version_id:
        return version_id
    version = info.version_id
    return None if version in (None, "", "null") else version


def wanted_piece_length(bucket: BucketConfig, size: int) -> int:
    """The bucket's fixed piece length, or the automatic one for ``size``."""
    return bucket.piece_length or metainfo.piece_length_for(size)


def is_current(entry: Entry, info: ObjectInfo, bucket: BucketConfig) -> bool:
    """Whether a cached entry still describes ``info`` as ``bucket`` wants torrents made.

    A changed ETag, or a changed ``torrent_format`` / fixed ``piece_length`` in the config,
    makes it stale.
    """
    if entry.etag != info.etag or entry.size != info.size:
        return False
    if entry.format != bucket.torrent_format:
        return False
    return not (bucket.piece_length and entry.piece_length != bucket.piece_length)
