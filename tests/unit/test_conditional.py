"""seeder/conditional.py: preconditions and If-Range with S3's (RFC 9110's) precedence."""

from __future__ import annotations

import pytest

from seeder.s3api.conditional import (
    Outcome,
    Validators,
    evaluate,
    http_date,
    parse_http_date,
    range_applies,
)

ETAG = "9b2cf535f27731c974343645a3985328"
T = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
V = Validators(ETAG, T + 0.75)  # fractions are dropped: HTTP-dates have none
AT = b"Sun, 06 Nov 1994 08:49:37 GMT"
BEFORE = b"Sun, 06 Nov 1994 08:49:36 GMT"
AFTER = b"Sun, 06 Nov 1994 08:49:38 GMT"
Q = b'"' + ETAG.encode() + b'"'

OK, NM = Outcome.PROCEED, Outcome.NOT_MODIFIED
IM, IUS = Outcome.IF_MATCH_FAILED, Outcome.IF_UNMODIFIED_SINCE_FAILED

CASES = [
    ("no conditions", [], OK),
    # If-Match: strong comparison, lists, *, S3's unquoted leniency
    ("If-Match equal", [(b"if-match", Q)], OK),
    ("If-Match unquoted", [(b"if-match", ETAG.encode())], OK),
    ("If-Match other", [(b"if-match", b'"other"')], IM),
    ("If-Match list", [(b"if-match", b'"a", ' + Q)], OK),
    ("If-Match star", [(b"if-match", b"*")], OK),
    ("If-Match weak never matches", [(b"if-match", b"W/" + Q)], IM),
    ("If-Match garbage", [(b"if-match", b'"unterminated')], IM),
    ("If-Match empty", [(b"if-match", b"")], IM),
    # If-Unmodified-Since
    ("IUS at Last-Modified", [(b"if-unmodified-since", AT)], OK),
    ("IUS after", [(b"if-unmodified-since", AFTER)], OK),
    ("IUS before", [(b"if-unmodified-since", BEFORE)], IUS),
    ("IUS not a date: ignored", [(b"if-unmodified-since", b"yesterday")], OK),
    ("S3: If-Match true wins over IUS false",
     [(b"if-match", Q), (b"if-unmodified-since", BEFORE)], OK),
    ("If-Match false, IUS true", [(b"if-match", b'"x"'), (b"if-unmodified-since", AFTER)], IM),
    # If-None-Match: weak comparison
    ("If-None-Match equal", [(b"if-none-match", Q)], NM),
    ("If-None-Match weak equal", [(b"if-none-match", b"W/" + Q)], NM),
    ("If-None-Match unquoted", [(b"if-none-match", ETAG.encode())], NM),
    ("If-None-Match other", [(b"if-none-match", b'"other"')], OK),
    ("If-None-Match star", [(b"if-none-match", b"*")], NM),
    ("If-None-Match list", [(b"if-none-match", b'"a" ,W/"b",' + Q)], NM),
    # If-Modified-Since
    ("IMS at Last-Modified", [(b"if-modified-since", AT)], NM),
    ("IMS after", [(b"if-modified-since", AFTER)], NM),
    ("IMS before", [(b"if-modified-since", BEFORE)], OK),
    ("IMS RFC 850", [(b"if-modified-since", b"Sunday, 06-Nov-94 08:49:37 GMT")], NM),
    ("IMS asctime", [(b"if-modified-since", b"Sun Nov  6 08:49:37 1994")], NM),
    ("IMS garbage: ignored", [(b"if-modified-since", b"\xff\xfe")], OK),
    ("S3: If-None-Match false wins over IMS true",
     [(b"if-none-match", Q), (b"if-modified-since", BEFORE)], NM),
    ("If-None-Match true: IMS not evaluated",
     [(b"if-none-match", b'"other"'), (b"if-modified-since", AFTER)], OK),
    # 412 before 304
    ("If-Match fails before If-None-Match", [(b"if-match", b'"x"'), (b"if-none-match", Q)], IM),
    ("IUS fails before IMS", [(b"if-unmodified-since", BEFORE), (b"if-modified-since", AT)], IUS),
    ("both pass", [(b"if-match", Q), (b"if-none-match", b'"old"')], OK),
    ("a huge header is garbage", [(b"if-match", b'"' + b"a" * 9000 + b'"')], IM),
]


@pytest.mark.parametrize(("what", "headers", "expected"), CASES, ids=[c[0] for c in CASES])
def test_evaluate(what: str, headers: list, expected: Outcome) -> None:
    kwargs = {name.decode().replace("-", "_"): value for name, value in headers}
    assert evaluate(V, **kwargs) is expected
    # The same as text (s3request hands the handler latin-1 strings).
    assert evaluate(V, **{k: v.decode("latin-1") for k, v in kwargs.items()}) is expected


def test_failed_condition_names_the_header() -> None:
    assert Outcome.IF_MATCH_FAILED.failed_condition == "If-Match"
    assert Outcome.IF_UNMODIFIED_SINCE_FAILED.failed_condition == "If-Unmodified-Since"
    assert Outcome.PROCEED.failed_condition is None
    assert Outcome.NOT_MODIFIED.failed_condition is None


IF_RANGE = [
    (None, True),
    (Q, True),
    (ETAG.encode(), True),
    (b" " + Q + b" ", True),
    (b'"other"', False),
    (b"W/" + Q, False),  # weak: never for a range
    (b"*", False),
    (b'"a", ' + Q, False),  # a list is not a validator
    (AT, True),
    (BEFORE, False),
    (AFTER, False),  # only the exact date
    (b"", False),
    (b'"unterminated', False),
]


@pytest.mark.parametrize(("value", "expected"), IF_RANGE)
def test_range_applies(value: bytes | None, expected: bool) -> None:
    assert range_applies(value, V) is expected


def test_http_date_round_trip() -> None:
    assert http_date(T + 0.9) == AT
    assert parse_http_date(AT) == T
    assert parse_http_date(http_date(1_700_000_000)) == 1_700_000_000
    assert parse_http_date(b"Sun, 06 Nov 1994 10:49:37 +0200") == T


@pytest.mark.parametrize("junk", [None, b"", b"nope", b"\x00" * 20, b"Sun, 99 Zzz 99999999999",
                                  "Mon, 32 Dec 2020 00:00:00 GMT", b"1" * 10_000])
def test_parse_http_date_junk_is_none(junk) -> None:
    assert parse_http_date(junk) is None
