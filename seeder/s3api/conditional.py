"""Conditional GET/HEAD of the web seed (RFC 9110 §13, as Amazon S3's GetObject does): pure.

A download manager resuming a file (If-Range), or ``curl -z`` / ``curl --etag-compare``,
sends validators it got earlier; answering them right is what keeps a resumed download from
mixing two versions of an object. The validators of a web seed response are the torrent's:
``ETag`` (the object's ETag when the torrent was made, which the body is pinned to) and
``Last-Modified``.

:func:`evaluate` applies the preconditions in RFC 9110 §13.2.2 order, which is also S3's
documented precedence:

1. ``If-Match`` present: no member matches (strong comparison; ``*`` matches) -> 412
   ``PreconditionFailed`` (Condition ``If-Match``). When it is present,
   ``If-Unmodified-Since`` is not evaluated (S3: If-Match true + If-Unmodified-Since false
   -> 200).
2. else ``If-Unmodified-Since`` (a valid HTTP-date): modified after it -> 412 (Condition
   ``If-Unmodified-Since``).
3. ``If-None-Match`` present: a member matches (weak comparison; ``*`` matches) -> 304.
   When it is present, ``If-Modified-Since`` is not evaluated (S3: If-None-Match false +
   If-Modified-Since true -> 304).
4. else ``If-Modified-Since`` (a valid HTTP-date): not modified after it -> 304.

Then :func:`range_applies` decides ``If-Range`` (§13.1.5): a ``Range`` is honoured only when the
validator matches the current representation (an entity-tag by strong comparison, an HTTP-date
by exact equality with Last-Modified); otherwise the whole object is sent with 200.

Leniency, as S3: an entity-tag may come without its quotes (``If-Match: abc`` is ``"abc"``;
the same in If-Range). A date that does not parse is ignored (§13.1.3/§13.1.4); an If-Range
that is neither a date nor one entity-tag (a list, ``*``, garbage) does not match. Times are
whole seconds (HTTP-dates have no fractions).
"""

from __future__ import annotations

import datetime
import email.utils
import enum
from dataclasses import dataclass

__all__ = ["Outcome", "Validators", "evaluate", "http_date", "parse_http_date", "range_applies"]

_MAX_HEADER = 8192  # bytes of one validator header we look at; longer is garbage


@dataclass(frozen=True, slots=True)
class Validators:
    """What the response's ``ETag`` (``etag``, without quotes) and ``Last-Modified``
    (``last_modified``, unix seconds) say about the representation."""

    etag: str
    last_modified: float

    @property
    def modified(self) -> int:
        """Last-Modified in whole seconds, as it is sent."""
        return int(self.last_modified)


class Outcome(enum.Enum):
    """The answer to a conditional request, before any Range is looked at."""

    PROCEED = "proceed"  # serve the request (200/206)
    NOT_MODIFIED = "not modified"  # 304, no body
    IF_MATCH_FAILED = "If-Match"  # 412, Condition If-Match
    IF_UNMODIFIED_SINCE_FAILED = "If-Unmodified-Since"  # 412, Condition If-Unmodified-Since

    @property
    def failed_condition(self) -> str | None:
        """The header named in a 412's ``<Condition>``; None unless a precondition failed."""
        if self in (Outcome.IF_MATCH_FAILED, Outcome.IF_UNMODIFIED_SINCE_FAILED):
            return self.value
        return None


def http_date(seconds: float) -> bytes:
    """IMF-fixdate (RFC 9110 §5.6.7), e.g. ``b"Sun, 06 Nov 1994 08:49:37 GMT"``."""
    return email.utils.formatdate(int(seconds), usegmt=True).encode("ascii")


def parse_http_date(value: bytes | str | None) -> int | None:
    """An HTTP-date (IMF-fixdate, RFC 850 or asctime; a numeric zone is honoured) -> unix
    seconds, or None when it is not one. Never raises."""
    if value is None:
        return None
    if isinstance(value, bytes):
        if len(value) > _MAX_HEADER:
            return None
        value = value.decode("latin-1")
    try:
        parsed = email.utils.parsedate_tz(value.strip())
        if parsed is None:
            return None
        # parsedate_tz lets "32 Dec" through (timegm would roll it over): check the fields.
        datetime.datetime(*parsed[:6])
        return int(email.utils.mktime_tz(parsed))
    except (ValueError, TypeError, OverflowError, IndexError):
        return None


def _text(value: bytes | str | None) -> str | None:
    if value is None or len(value) > _MAX_HEADER:
        return None
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _tags(text: str) -> list[tuple[bool, str]] | None:
    """The members of an entity-tag list, as (weak, opaque-tag); ``*`` is (False, "*").
    None when the list is garbage (then the header is taken as matching nothing)."""
    out: list[tuple[bool, str]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] in " \t,":
            i += 1
            continue
        weak = text.startswith("W/", i)
        if weak:
            i += 2
        if i < n and text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                return None
            out.append((weak, text[i + 1 : end]))
            i = end + 1
        else:
            # Unquoted (S3 accepts a bare ETag): up to the next comma.
            end = text.find(",", i)
            end = n if end < 0 else end
            token = text[i:end].strip(" \t")
            if not token or '"' in token:
                return None
            out.append((weak, token))
            i = end
    return out


def _match(value: str | None, etag: str, *, weak_ok: bool) -> bool:
    tags = None if value is None else _tags(value)
    if not tags:
        return False
    for weak, tag in tags:
        if tag == "*" and not weak:
            return True
        if tag == etag and (weak_ok or not weak):
            return True
    return False


def evaluate(
    v: Validators,
    *,
    if_match: bytes | str | None = None,
    if_none_match: bytes | str | None = None,
    if_modified_since: bytes | str | None = None,
    if_unmodified_since: bytes | str | None = None,
) -> Outcome:
    """The outcome of a GET/HEAD's preconditions (raw header values, None when absent; a
    repeated If-Match/If-None-Match joined with commas) against ``v``, in the order of the
    module docstring. A value longer than 8 KiB is garbage. Never raises."""
    if if_match is not None:
        if not _match(_text(if_match), v.etag, weak_ok=False):
            return Outcome.IF_MATCH_FAILED
    else:
        since = parse_http_date(if_unmodified_since)
        if since is not None and v.modified > since:
            return Outcome.IF_UNMODIFIED_SINCE_FAILED
    if if_none_match is not None:
        if _match(_text(if_none_match), v.etag, weak_ok=True):
            return Outcome.NOT_MODIFIED
    else:
        since = parse_http_date(if_modified_since)
        if since is not None and v.modified <= since:
            return Outcome.NOT_MODIFIED
    return Outcome.PROCEED


def range_applies(if_range: bytes | str | None, v: Validators) -> bool:
    """Whether a ``Range`` may be honoured given the request's ``If-Range`` value (None: no
    If-Range, it may). An HTTP-date matches only Last-Modified exactly; an entity-tag only
    ``v.etag`` by strong comparison (a weak tag never matches). Never raises."""
    if if_range is None:
        return True
    text = _text(if_range)
    if text is None:
        return False
    text = text.strip(" \t")
    if not text.startswith(('"', "W/")):
        date = parse_http_date(text)
        if date is not None:
            return date == v.modified
    tags = _tags(text)
    if tags is None or len(tags) != 1:
        return False
    weak, tag = tags[0]
    return not weak and tag != "*" and tag == v.etag
