"""seeder.demand.Activation: demand, idle, the cap (least recently demanded leave first) and
cluster eligibility; pure, time passed in."""

from __future__ import annotations

import pytest

from seeder.demand import Activation, Change


def test_demand_adds_once_and_idle_torrents_leave() -> None:
    a = Activation(cap=5, idle_after=10)
    assert a.demand("x", 0) == Change(add=("x",))
    assert not a.demand("x", 5)  # active already: only its time moves
    assert a.demand("y", 6) == Change(add=("y",))
    assert not a.sweep(14.9)
    assert a.sweep(15) == Change(remove=("x",))
    assert a.active() == ["y"]
    assert a.sweep(16) == Change(remove=("y",))
    assert len(a) == 0
    assert a.demand("x", 17) == Change(add=("x",))  # back on the next demand


def test_cap_evicts_the_least_recently_demanded() -> None:
    a = Activation(cap=3, idle_after=100)
    for t, k in enumerate("abc"):
        a.demand(k, t)
    a.demand("a", 3)  # a is now the most recent
    assert a.demand("d", 4) == Change(add=("d",), remove=("b",))
    assert a.active() == ["c", "a", "d"]
    a.keep(["c", "zz"], 5)  # peers on c; zz is not active: ignored, not added
    assert a.demand("e", 6) == Change(add=("e",), remove=("a",))
    assert "zz" not in a and len(a) == 3


def test_keep_holds_a_torrent_with_peers() -> None:
    a = Activation(cap=2, idle_after=10)
    a.demand("x", 0)
    for t in range(5, 50, 5):
        a.keep(["x"], t)
        assert not a.sweep(t)
    assert a.sweep(60) == Change(remove=("x",))


def test_eligibility_gates_demand_and_sweep() -> None:
    mine = {"a", "b"}
    a = Activation(cap=10, idle_after=100, eligible=lambda k: k in mine)
    assert a.demand("a", 0) == Change(add=("a",))
    assert not a.demand("z", 0)  # another node's replica
    a.demand("b", 1)
    mine.discard("a")  # the cluster moved "a" away
    assert a.sweep(2) == Change(remove=("a",))
    assert a.active() == ["b"]


def test_forget_and_bad_arguments() -> None:
    a = Activation(cap=1, idle_after=1)
    a.demand("x", 0)
    assert a.forget("x") and not a.forget("x")
    assert a.demand("y", 0) == Change(add=("y",))  # nothing evicted: x was forgotten
    with pytest.raises(ValueError):
        Activation(cap=0, idle_after=1)
    with pytest.raises(ValueError):
        Activation(cap=1, idle_after=0)


def test_many_demands_stay_bounded() -> None:
    a = Activation(cap=5, idle_after=1e9)
    removed = 0
    for i in range(300):
        change = a.demand(f"k{i}", i)
        removed += len(change.remove)
    assert len(a) == 5 and removed == 295
    assert a.active() == [f"k{i}" for i in range(295, 300)]
