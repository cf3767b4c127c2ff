"""HTTP ``Range`` requests (RFC 9110 §14) against a representation of known size: pure.

``parse_range(header, size)`` gives one of three answers, and the caller maps them:

- ``None``: serve the whole object with 200. That is the answer for no header, a unit other
  than ``bytes`` (§14.2: MUST ignore), a syntactically invalid header (§14.2: MAY ignore; we
  do, as S3 does), too many ranges (§14.2 lets a server ignore abusive range sets), and a
  suffix range on an empty object (satisfiable per §14.1.3, but there is no byte to send, so
  the 200 with an empty body is the honest reply).
- a non-empty list of ``ByteRange`` (inclusive bounds, clamped to the size, in request order,
  the unsatisfiable members dropped): serve 206. One range: a plain 206 with
  ``Content-Range: <ByteRange.content_range(size)>``. Several: the caller may answer
  ``multipart/byteranges``, or do what S3 does and serve the whole object with 200. BitTorrent
  web seed clients (libtorrent, aria2, Transmission) only ever send one range.
  ``coalesce`` merges overlapping/adjacent ranges when that helps.
- ``RangeNotSatisfiable``: every range starts at or past the end: 416 with
  ``Content-Range: bytes */size`` (``RangeNotSatisfiable.content_range``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_RANGES", "ByteRange", "RangeNotSatisfiable", "coalesce", "parse_range"]

MAX_RANGES = 64
_MAX_DIGITS = 19  # > 2**63: any position that long is past the end of any object
_DIGITS = frozenset("0123456789")
_OWS = " \t"


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``start``..``end`` inclusive (``end < size`` always holds after parsing)."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> bytes:
        """The ``Content-Range`` value of a 206 for this range, e.g. ``b"bytes 0-9/100"``."""
        return b"bytes %d-%d/%d" % (self.start, self.end, size)


class RangeNotSatisfiable(ValueError):
    """No requested range overlaps the representation: answer 416."""

    def __init__(self, size: int, header: str) -> None:
        super().__init__(f"range {header!r} not satisfiable for size {size}")
        self.size = size
        self.header = header

    @property
    def content_range(self) -> bytes:
        """``b"bytes */<size>"``, the Content-Range value a 416 must carry."""
        return b"bytes */%d" % self.size


def _number(s: str) -> int | None:
    if not s or not set(s) <= _DIGITS:
        return None
    # str.isdigit would accept other scripts' digits; length-capped so int() is cheap.
    return int(s) if len(s) <= _MAX_DIGITS else 10**_MAX_DIGITS


def parse_range(header: bytes | str | None, size: int) -> list[ByteRange] | None:
    """Parse a Range header value against ``size`` bytes (see the module docstring).

    Returns None (ignore the header, send 200) or the satisfiable ranges; raises
    RangeNotSatisfiable when there are ranges and none is satisfiable. Never raises anything
    else.
    """
    if header is None:
        return None
    if isinstance(header, bytes):
        try:
            header = header.decode("ascii")
        except UnicodeDecodeError:
            return None
    unit, eq, spec = header.partition("=")
    if not eq or unit.strip(_OWS).lower() != "bytes":
        return None
    parsed: list[tuple[int | None, int | None]] = []
    for item in spec.split(","):
        item = item.strip(_OWS)
        if not item:
            continue  # RFC 9110 §5.6.1: empty list elements are allowed and ignored
        first_s, dash, last_s = item.partition("-")
        if not dash:
            return None
        first = _number(first_s) if first_s else None
        last = _number(last_s) if last_s else None
        if (first_s and first is None) or (last_s and last is None):
            return None
        if first is None:
            if last is None:
                return None  # "-" alone
        elif last is not None and last < first:
            return None  # §14.1.1: invalid
        parsed.append((first, last))
        if len(parsed) > MAX_RANGES:
            return None
    if not parsed:
        return None

    out: list[ByteRange] = []
    for first, last in parsed:
        if first is None:
            assert last is not None
            if last == 0:
                continue  # suffix of zero bytes: unsatisfiable
            if size == 0:
                return None
            out.append(ByteRange(max(0, size - last), size - 1))
        elif first < size:
            out.append(ByteRange(first, size - 1 if last is None else min(last, size - 1)))
    if not out:
        raise RangeNotSatisfiable(size, header)
    return out


def coalesce(ranges: list[ByteRange]) -> list[ByteRange]:
    """Merge overlapping or adjacent ranges; the result is sorted by start."""
    merged: list[ByteRange] = []
    for r in sorted(ranges, key=lambda r: r.start):
        if merged and r.start <= merged[-1].end + 1:
            if r.end > merged[-1].end:
                merged[-1] = ByteRange(merged[-1].start, r.end)
        else:
            merged.append(r)
    return merged
