"""tracker.bencode: our encoder gives bencodepy's bytes and refuses what BEP 3 cannot hold."""

from __future__ import annotations

import bencodepy
import pytest

from tracker import bencode

VALUES = [
    0, -7, 2**70, b"", b"\xff\x00", "é", [], {}, (1, b"x"), [[b"a"], {b"k": []}],
    {b"b": 1, "a": 2, b"info": {b"pieces": bytes(range(256)), b"length": 5}},
]


@pytest.mark.parametrize("value", VALUES)
def test_encode_matches_bencodepy_and_round_trips(value) -> None:
    data = bencode.encode(value)
    assert data == bencodepy.encode(value)
    bencode.decode(data)


def test_keys_sorted_as_bytes() -> None:
    assert bencode.encode({b"b": 1, b"a": 2, b"B": 3}) == b"d1:Bi3e1:ai2e1:bi1ee"


@pytest.mark.parametrize("bad", [None, 1.5, True, {1: 2}, {b"a": None}, [object()],
                                 {"a": 1, b"a": 2}])
def test_encode_refuses(bad) -> None:
    with pytest.raises(bencode.BencodeError):
        bencode.encode(bad)
