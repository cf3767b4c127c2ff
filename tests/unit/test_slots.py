"""httpshell.slots and httpshell.deadlines: pure slot accounting and deadlines."""

from __future__ import annotations

import pytest

from httpshell.deadlines import Timeouts
from httpshell.slots import Admission, Slots


def test_admits_until_the_global_cap_then_evicts_the_oldest_waiting() -> None:
    slots = Slots(3, 0)
    for conn in (1, 2, 3):
        assert slots.open(conn, "a") == Admission(True, None)
    slots.busy(1)  # being answered: never evicted
    assert slots.open(4, "b") == Admission(True, 2)
    assert slots.total == 3
    assert slots.open(5, "b") == Admission(True, 3)
    assert slots.open(6, "c") == Admission(True, 4)


def test_refuses_when_every_slot_is_busy() -> None:
    slots = Slots(2, 0)
    slots.open(1, "a")
    slots.open(2, "a")
    slots.busy(1)
    slots.busy(2)
    assert slots.open(3, "b") == Admission(False, None)
    assert slots.total == 2
    slots.close(1, "a")
    assert slots.open(3, "b").admitted


def test_a_client_at_its_cap_evicts_its_own_oldest_waiting_connection() -> None:
    slots = Slots(100, 2)
    slots.open(1, "slow")
    slots.open(2, "slow")
    assert slots.open(3, "other") == Admission(True, None)
    assert slots.open(4, "slow") == Admission(True, 1)
    assert slots.count("slow") == 2
    assert slots.count("other") == 1
    slots.busy(2)
    slots.busy(4)
    assert slots.open(5, "slow") == Admission(False, None)
    assert slots.count("slow") == 2


def test_slowloris_from_one_address_never_takes_another_clients_slot() -> None:
    slots = Slots(1024, 64)
    evicted = []
    for conn in range(1100):
        admission = slots.open(("slow", conn), "127.0.0.2")
        assert admission.admitted
        if admission.evict is not None:
            evicted.append(admission.evict)
    assert slots.count("127.0.0.2") == 64
    assert len(evicted) == 1100 - 64
    assert evicted[0] == ("slow", 0)  # the oldest first
    assert slots.open("normal", "127.0.0.3") == Admission(True, None)


def test_keep_alive_connections_wait_again_as_the_newest() -> None:
    slots = Slots(2, 0)
    slots.open(1, "a")
    slots.open(2, "a")
    slots.busy(1)
    slots.idle(1, "a")  # answered, waits for its next head after 2
    assert slots.open(3, "a") == Admission(True, 2)
    assert slots.waiting == 2


def test_uncounted_clients_and_rekey() -> None:
    slots = Slots(10, 1)
    slots.open(1, None)  # a trusted proxy: not counted per client
    slots.open(2, None)
    assert slots.total == 2
    slots.busy(1)
    slots.busy(2)
    assert slots.rekey(1, None, "x")
    assert not slots.rekey(2, None, "x")  # x is at its cap
    assert slots.count("x") == 1
    slots.close(2, None)
    slots.close(1, "x")
    assert slots.total == 0
    assert slots.count("x") == 0


def test_close_of_a_waiting_connection_frees_everything() -> None:
    slots = Slots(1, 1)
    slots.open(1, "a")
    slots.close(1, "a")
    assert (slots.total, slots.waiting, slots.count("a")) == (0, 0, 0)
    assert slots.open(2, "a") == Admission(True, None)


def test_bad_limits() -> None:
    with pytest.raises(ValueError):
        Slots(0)
    with pytest.raises(ValueError):
        Timeouts(header=0)


def test_deadlines_count_in_total() -> None:
    t = Timeouts(header=10, idle=30, min_rate=1000)
    assert t.head_deadline(100.0) == 110.0
    assert t.idle_deadline(100.0) == 130.0
    # A reader that took 5000 bytes may go on until 30 s grace + 5 s of credit.
    assert t.transfer_deadline(100.0, 5000) == 135.0
    assert t.transfer_deadline(100.0, 0) == 130.0
