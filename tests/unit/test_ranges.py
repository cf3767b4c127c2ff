"""seeder.s3api.ranges: RFC 9110 Range parsing against a known size."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seeder.s3api.ranges import MAX_RANGES, ByteRange, RangeNotSatisfiable, coalesce, parse_range


@pytest.mark.parametrize(("header", "size", "expected"), [
    ("bytes=0-9", 100, [(0, 9)]),
    (b"bytes=0-9", 100, [(0, 9)]),
    ("bytes=0-0", 1, [(0, 0)]),
    ("bytes=10-", 100, [(10, 99)]),
    ("bytes=-10", 100, [(90, 99)]),
    ("bytes=-1000", 100, [(0, 99)]),  # suffix longer than the object: the whole object
    ("bytes=90-1000", 100, [(90, 99)]),  # last-pos clamped
    ("bytes=99-99", 100, [(99, 99)]),
    ("Bytes = 0-1", 100, [(0, 1)]),  # unit is case-insensitive; OWS around "=" tolerated
    ("bytes=0-1, 5-6,\t-2", 100, [(0, 1), (5, 6), (98, 99)]),
    ("bytes=0-1,,5-6,", 100, [(0, 1), (5, 6)]),  # empty list elements ignored
    ("bytes=200-300, 0-1", 100, [(0, 1)]),  # unsatisfiable members dropped
    ("bytes=5-9, 0-3", 100, [(5, 9), (0, 3)]),  # request order kept
    ("bytes=0-99999999999999999999999999", 10, [(0, 9)]),  # huge last-pos
    ("bytes=16777216-33554431", 40_000_000, [(16777216, 33554431)]),  # libtorrent's 16 MiB
    ("bytes=1000-", 2**40, [(1000, 2**40 - 1)]),  # aria2 style
])
def test_satisfiable(header, size, expected):
    assert parse_range(header, size) == [ByteRange(a, b) for a, b in expected]


@pytest.mark.parametrize("header", [
    None, "", "bytes", "bytes=", "bytes=,", "bytes=-", "bytes=abc", "bytes=1", "bytes=5-4",
    "bytes=--5", "bytes=1-2-3", "bytes=+1-2", "bytes=0x10-20", "bytes= 1 - 2", "bytes=1.5-2",
    "bytes=١-٢",  # non-ASCII digits
    b"bytes=\xff-1", "items=0-9", "0-9", "bytes=0-1;x", "bytes=0-1,abc",
    "bytes=" + ",".join(["0-0"] * (MAX_RANGES + 1)),
])
def test_ignored_means_whole_object(header):
    assert parse_range(header, 100) is None


@pytest.mark.parametrize(("header", "size"), [
    ("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=-0", 100), ("bytes=0-", 0),
    ("bytes=0-0", 0), ("bytes=200-300, 100-", 100), ("bytes=99999999999999999999999-", 10),
])
def test_unsatisfiable(header, size):
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, size)
    assert info.value.content_range == b"bytes */%d" % size
    assert info.value.size == size


def test_suffix_on_empty_object_is_served_whole():
    assert parse_range("bytes=-5", 0) is None


def test_content_range_and_length():
    r = ByteRange(10, 19)
    assert r.length == 10
    assert r.content_range(100) == b"bytes 10-19/100"


def test_coalesce():
    rs = [ByteRange(10, 19), ByteRange(0, 4), ByteRange(5, 6), ByteRange(15, 30),
          ByteRange(40, 41)]
    assert coalesce(rs) == [ByteRange(0, 6), ByteRange(10, 30), ByteRange(40, 41)]
    assert coalesce([]) == []
    assert coalesce([ByteRange(0, 9), ByteRange(2, 3)]) == [ByteRange(0, 9)]


@given(st.text(max_size=40), st.integers(min_value=0, max_value=2**64))
def test_any_text_gives_none_list_or_416(header, size):
    try:
        result = parse_range("bytes=" + header, size)
    except RangeNotSatisfiable:
        return
    if result is not None:
        assert result
        for r in result:
            assert 0 <= r.start <= r.end < size


@given(st.binary(max_size=40), st.integers(min_value=0, max_value=1000))
def test_any_bytes_never_raise_other_errors(header, size):
    try:
        parse_range(header, size)
    except RangeNotSatisfiable:
        pass
