"""``?page=N`` of the status page and ``/torrents.json`` (pure).

Pages are 1-based and hold ``PER_PAGE`` torrents in catalog order (bucket, key, version).
An empty catalog has one (empty) page. A ``page`` that is not a decimal integer in
``1..pages``, or given twice, is a :class:`PageError` (the handler answers 400); other
query parameters are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

__all__ = ["PER_PAGE", "Page", "PageError", "parse_page"]

PER_PAGE = 1000
_MAX_DIGITS = 9  # no page number worth parsing is longer


class PageError(ValueError):
    """A bad ``page`` parameter; the message says why (one line, for a 400 body)."""


@dataclass(frozen=True, slots=True)
class Page:
    number: int  # 1-based
    pages: int  # at least 1
    total: int  # torrents in the catalog
    per_page: int = PER_PAGE

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.per_page

    @property
    def first(self) -> int:
        """1-based position of the page's first torrent (0 on an empty catalog)."""
        return min(self.offset + 1, self.total)

    @property
    def last(self) -> int:
        return min(self.offset + self.per_page, self.total)


def parse_page(query: bytes, total: int, per_page: int = PER_PAGE) -> Page:
    """The page asked for by the raw query string ``query`` of a catalog of ``total``
    torrents (page 1 without a ``page`` parameter). Raises PageError."""
    pages = max(1, -(-total // per_page))
    values = parse_qs(query.decode("latin-1"), keep_blank_values=True).get("page")
    if values is None:
        return Page(1, pages, total, per_page)
    if len(values) != 1:
        raise PageError("page is given more than once")
    raw = values[0]
    if not raw.isascii() or not raw.isdigit() or len(raw) > _MAX_DIGITS:
        raise PageError(f"page must be a whole number from 1 to {pages}")
    number = int(raw)
    if not 1 <= number <= pages:
        raise PageError(f"page {number} does not exist: pages are 1 to {pages}")
    return Page(number, pages, total, per_page)
