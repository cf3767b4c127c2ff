"""seeder.events auth, ordering and pending: the endpoint's pure bookkeeping."""

from __future__ import annotations

import base64

import pytest

from seeder.events.auth import check_auth
from seeder.events.ordering import Sequencers, sequencer_key
from seeder.events.payload import ObjectEvent
from seeder.events.pending import Pending

TOKEN = "s3cr3t-T0ken"


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


# -- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("authorization", "query"), [
    (b"Bearer " + TOKEN.encode(), b""),
    (b"bearer  " + TOKEN.encode() + b" ", b""),
    (basic("sns", TOKEN), b""),
    (basic("", TOKEN), b""),
    (None, b"token=" + TOKEN.encode()),
    (None, b"a=1&token=s3cr3t%2DT0ken"),
    (b"Bearer wrong", b"token=" + TOKEN.encode()),  # any one candidate right is enough
])
def test_auth_ok(authorization: bytes | None, query: bytes) -> None:
    assert check_auth(TOKEN, authorization, query).ok


def test_auth_missing_is_401() -> None:
    assert check_auth(TOKEN, None, b"").status == 401
    assert check_auth(TOKEN, None, b"a=1&tokens=x").status == 401


@pytest.mark.parametrize(("authorization", "query"), [
    (b"Bearer wrong", b""),
    (b"Bearer ", b""),
    (b"Bearer " + TOKEN.encode() + b"x", b""),
    (basic(TOKEN, "nope"), b""),  # the token as user name is not the password
    (b"Basic !!!notbase64", b""),
    (b"Digest username=x", b""),
    (b"AWS4-HMAC-SHA256 Credential=x", b""),
    (None, b"token="),
    (None, b"token=" + TOKEN.upper().encode()),
    (None, b"token=%ZZ"),
])
def test_auth_wrong_is_403(authorization: bytes | None, query: bytes) -> None:
    result = check_auth(TOKEN, authorization, query)
    assert (result.status, result.reason) == (403, "wrong token")


def test_auth_non_ascii_token() -> None:
    token = "jeton-é"
    assert check_auth(token, None, b"token=jeton-%C3%A9").ok
    assert check_auth(token, b"Bearer " + token.encode(), b"").ok


# -- ordering ----------------------------------------------------------------------------------


def test_sequencer_compares_after_left_padding() -> None:
    assert sequencer_key("0055AED6DCD90281E5") < sequencer_key("0055AED6DCD90281F7")
    assert sequencer_key("FF") < sequencer_key("0100")
    assert sequencer_key("00ff") == sequencer_key("FF")
    assert sequencer_key("A") > sequencer_key("009")


def test_sequencers_admit_newer_only() -> None:
    seqs = Sequencers()
    assert seqs.admit("b", "k", "0055AED6DCD90281E5")
    assert not seqs.admit("b", "k", "0055AED6DCD90281E5")  # a retry
    assert not seqs.admit("b", "k", "55AED6DCD90281E4")  # older, arrived late
    assert seqs.admit("b", "k", "55AED6DCD90281F7")
    assert seqs.admit("b", "other", "01")  # per key
    assert seqs.admit("c", "k", "01")  # per bucket
    assert seqs.admit("b", "k", None) and seqs.admit("b", "k", None)  # unordered
    assert not seqs.newer("b", "k", "55AED6DCD90281F7")
    assert seqs.newer("b", "k", "55AED6DCD90281F8")


def test_sequencers_memory_is_bounded() -> None:
    seqs = Sequencers(capacity=3)
    for i in range(10):
        assert seqs.admit("b", f"k{i}", "10")
    assert len(seqs) == 3
    assert seqs.admit("b", "k0", "01")  # forgotten: admitted again
    assert not seqs.admit("b", "k9", "01")  # remembered
    with pytest.raises(ValueError):
        Sequencers(0)


# -- pending -----------------------------------------------------------------------------------


def ev(key: str, kind: str = "created", seq: str | None = None) -> ObjectEvent:
    return ObjectEvent("b", key, kind, sequencer=seq)  # type: ignore[arg-type]


def test_pending_coalesces_per_key_keeping_its_place() -> None:
    p = Pending(capacity=2)
    assert p.add(ev("a", seq="01")) and p.add(ev("b"))
    assert p.add(ev("a", "removed", "02"))  # coalesced: no new slot needed
    assert not p.add(ev("c"))  # full
    assert len(p) == 2
    first = p.pop()
    assert first == ev("a", "removed", "02")
    assert p.pop() == ev("b")
    assert p.pop() is None


def test_pending_room_for_is_all_or_nothing() -> None:
    p = Pending(capacity=3)
    p.add(ev("a"))
    assert p.room_for([ev("a"), ev("b"), ev("c")])
    assert not p.room_for([ev("b"), ev("c"), ev("d")])
    assert p.room_for([ev("b"), ev("b"), ev("c")])


def test_pending_busy_key_waits_for_done() -> None:
    p = Pending()
    p.add(ev("a"))
    held = p.pop()
    assert held is not None and p.busy == 1
    p.add(ev("a", "removed"))  # while a worker holds "a"
    p.add(ev("b"))
    assert p.pop() == ev("b")  # "a" is skipped while held
    assert not p.ready()
    p.done(held)
    assert p.ready() and p.pop() == ev("a", "removed")
