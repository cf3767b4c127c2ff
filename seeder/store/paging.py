"""One page of a bucket listing, as S3's ListObjects computes it: pure, no I/O.

A page request is (``prefix``, ``delimiter``, ``after``, ``limit``): the keys that start with
``prefix`` and sort after ``after`` (S3's key order: UTF-8 bytes, which is Python's code
point order for ``str``), keys that hold ``delimiter`` past the prefix rolled up into one
common prefix each, at most ``limit`` entries (keys plus common prefixes) in key order.

``after`` is where the previous page stopped (a continuation token, ``marker`` or
``start-after``). When it is itself a common prefix (it starts with ``prefix`` and its first
``delimiter`` past the prefix is at its end), everything under it was already returned as
that prefix and is skipped, as S3 does with the ``NextMarker`` it gave.

:func:`group` builds a page from any key-ordered stream of objects, consuming only as much
of it as the page needs (plus what it takes to know whether more follows). Stores that can
seek (``LocalStore``, ``S3Store``) hand it a stream that starts near ``after``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from seeder.store import ObjectInfo

__all__ = ["MAX_PAGE", "ListPage", "group", "skips_under", "wanted"]

MAX_PAGE = 1000  # S3 returns at most 1000 entries per ListObjects page


@dataclass(frozen=True, slots=True)
class ListPage:
    """``objects`` and ``prefixes`` each in key order; ``truncated``: more entries follow
    (``last`` is then where the next page starts)."""

    objects: tuple[ObjectInfo, ...] = ()
    prefixes: tuple[str, ...] = ()
    truncated: bool = False

    @property
    def last(self) -> str | None:
        """The greatest key or common prefix of the page (the next page's ``after``)."""
        candidates = []
        if self.objects:
            candidates.append(self.objects[-1].key)
        if self.prefixes:
            candidates.append(self.prefixes[-1])
        return max(candidates) if candidates else None


def skips_under(after: str, prefix: str, delimiter: str) -> bool:
    """Is ``after`` a common prefix of this listing (so its whole subtree is skipped)?"""
    if not delimiter or not after.startswith(prefix) or len(after) <= len(prefix):
        return False
    rest = after[len(prefix):]
    return rest.find(delimiter) == len(rest) - len(delimiter)


def common_prefix(key: str, prefix: str, delimiter: str) -> str | None:
    """The common prefix ``key`` rolls up into, or None when it is listed as itself."""
    if not delimiter:
        return None
    i = key.find(delimiter, len(prefix))
    return None if i < 0 else key[: i + len(delimiter)]


def wanted(key: str, prefix: str, after: str, skip: bool) -> bool:
    """Does ``key`` belong to a listing of ``prefix`` after ``after``? (``skip``:
    ``skips_under(after, ...)``.)"""
    return key.startswith(prefix) and key > after and not (skip and key.startswith(after))


def group(items: Iterable[ObjectInfo | str], prefix: str, delimiter: str, after: str,
          limit: int) -> ListPage:
    """One page from ``items``, in key order: objects, or ``str`` common prefixes a store
    already rolled up (a directory). Items that are not ``wanted`` are passed over, so any
    key-ordered stream of the bucket works; ``limit`` is capped at MAX_PAGE."""
    limit = max(0, min(limit, MAX_PAGE))
    skip = skips_under(after, prefix, delimiter)
    objects: list[ObjectInfo] = []
    prefixes: list[str] = []
    last_prefix: str | None = None
    for item in items:  # bounded by the stream, which a store bounds by the bucket
        if isinstance(item, str):
            cp: str | None = item
            if not cp.startswith(prefix) or cp <= after:
                continue
        else:
            if not wanted(item.key, prefix, after, skip):
                continue
            cp = common_prefix(item.key, prefix, delimiter)
        if cp is not None and (cp == last_prefix or (skip and cp == after)):
            continue
        if len(objects) + len(prefixes) >= limit:
            return ListPage(tuple(objects), tuple(prefixes), True)
        if cp is None:
            assert not isinstance(item, str)
            objects.append(item)
        else:
            prefixes.append(cp)
            last_prefix = cp
    return ListPage(tuple(objects), tuple(prefixes), False)
