"""Which listed small objects are made together (seeder.torrent.batchplan): pure."""

from __future__ import annotations

import pytest

from seeder.store import ObjectInfo
from seeder.torrent.batchplan import BATCH_OBJECTS, batches


def infos(*sizes: int) -> list[ObjectInfo]:
    return [ObjectInfo(bucket="b", key=f"k{i:03d}", size=s, etag=f"e{i}", last_modified=0.0)
            for i, s in enumerate(sizes)]


def keys(groups: list[list[ObjectInfo]]) -> list[list[str]]:
    return [[i.key for i in g] for g in groups]


def test_cut_by_count_keeping_order_and_every_object_once():
    objs = infos(*([1] * 10))
    got = list(batches(objs, max_objects=4, max_bytes=1000))
    assert [len(g) for g in got] == [4, 4, 2]
    assert [i for g in got for i in g] == objs


def test_cut_by_bytes_and_an_oversized_object_is_a_batch_of_its_own():
    got = list(batches(infos(40, 50, 20, 200, 5, 5), max_objects=10, max_bytes=100))
    assert keys(got) == [["k000", "k001"], ["k002"], ["k003"], ["k004", "k005"]]


def test_exactly_the_limits_fit():
    got = list(batches(infos(50, 50, 1), max_objects=2, max_bytes=100))
    assert keys(got) == [["k000", "k001"], ["k002"]]


def test_nothing_in_nothing_out_and_a_generator_is_consumed_once():
    assert list(batches([])) == []
    got = list(batches(iter(infos(*([1] * (BATCH_OBJECTS + 1))))))
    assert [len(g) for g in got] == [BATCH_OBJECTS, 1]


def test_a_bad_count_is_refused():
    with pytest.raises(ValueError, match="max_objects"):
        list(batches(infos(1), max_objects=0))
