"""tracker.core: HTTP and UDP requests end to end without sockets; policy and metrics."""

from __future__ import annotations

import random
import struct
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tracker import bencode
from tracker.core import TrackerCore, pack_ip
from tracker.metrics import TrackerMetrics
from tracker.udp_protocol import PROTOCOL_ID

IH = bytes(range(200, 220))
IH2 = bytes(range(100, 120))


def pid(n: int) -> bytes:
    return b"-lt2010-" + n.to_bytes(12, "big")


def query(ih: bytes = IH, peer: int = 1, port: int = 6881, **extra: str | int) -> bytes:
    params = {"info_hash": ih, "peer_id": pid(peer), "port": str(port), **extra}
    return b"&".join(
        k.encode() + b"=" + quote_from_bytes(v if isinstance(v, bytes) else str(v).encode(),
                                             safe="").encode()
        for k, v in params.items()
    )  # fmt: skip


def core(**kw) -> TrackerCore:
    kw.setdefault("rng", random.Random(5))
    kw.setdefault("secret", b"s" * 32)
    return TrackerCore(interval=600, min_interval=60, **kw)


def http(c: TrackerCore, target: bytes, host: str = "127.0.0.2", headers=(), now=0.0) -> dict:
    status, hdrs, body = c.http(target, headers, (host, 40000), now)
    assert status == 200 and (b"content-type", b"text/plain") in hdrs
    return bencode.decode(body)


def compact(host: str, port: int) -> bytes:
    return pack_ip(host) + port.to_bytes(2, "big")


def test_announce_response_shape_and_peers():
    c = core(open=True)
    first = http(c, b"/announce?" + query(peer=1, left=100, event="started"), "127.0.0.2")
    assert first == {b"complete": 0, b"incomplete": 1, b"interval": 600, b"min interval": 60,
                     b"peers": b""}  # fmt: skip
    second = http(c, b"/announce?" + query(peer=2, port=7000, left=0), "127.0.0.3")
    assert second[b"peers"] == compact("127.0.0.2", 6881)
    assert (second[b"complete"], second[b"incomplete"]) == (1, 1)
    again = http(c, b"/announce?" + query(peer=1, left=100), "127.0.0.2")
    assert again[b"peers"] == compact("127.0.0.3", 7000)  # never its own address


def test_non_compact_peer_dicts_and_no_peer_id():
    c = core(open=True)
    http(c, b"/announce?" + query(peer=1), "127.0.0.2")
    http(c, b"/announce?" + query(peer=3, port=9), "::1")
    got = http(c, b"/announce?" + query(peer=2, compact=0), "127.0.0.3")
    assert sorted(got[b"peers"], key=lambda d: d[b"port"]) == [
        {b"ip": b"::1", b"peer id": pid(3), b"port": 9},
        {b"ip": b"127.0.0.2", b"peer id": pid(1), b"port": 6881},
    ]
    got = http(c, b"/announce?" + query(peer=2, compact=0, no_peer_id=1), "127.0.0.3")
    assert all(b"peer id" not in d for d in got[b"peers"])


def test_ipv6_peers_go_to_peers6_and_tracker_id_is_echoed():
    c = core(open=True)
    http(c, b"/announce?" + query(peer=1), "2001:db8::1")
    http(c, b"/announce?" + query(peer=2), "::ffff:10.0.0.9")  # v4-mapped counts as IPv4
    got = http(c, b"/announce?" + query(peer=3, trackerid="t-1"), "10.0.0.1")
    assert got[b"peers"] == compact("10.0.0.9", 6881)
    assert got[b"peers6"] == compact("2001:db8::1", 6881)
    assert got[b"tracker id"] == b"t-1"


FAILURES = [
    ("missing info_hash", b"/announce?peer_id=" + pid(1) + b"&port=1", "missing info_hash"),
    ("short info_hash", b"/announce?" + query(ih=IH[:10]), "info_hash must be 20 bytes, got 10"),
    ("bad port", b"/announce?" + query(port=70000), "invalid port"),
    ("non-numeric counter", b"/announce?" + query(uploaded="x"), "uploaded is not a number"),
    ("bad event", b"/announce?" + query(event="begun"), "invalid event"),
    ("unregistered", b"/announce?" + query(ih=IH2), "unregistered torrent"),
    ("empty query", b"/announce", "missing info_hash"),
    ("scrape without hash", b"/scrape", "missing info_hash (full scrape is not supported)"),
]


@pytest.mark.parametrize(("name", "target", "reason"), FAILURES, ids=[f[0] for f in FAILURES])
def test_failures_are_200_with_a_reason(name, target, reason):
    c = core()
    c.register([IH])
    assert http(c, target) == {b"failure reason": reason.encode()}


def test_unknown_path_is_404():
    assert core().http(b"/announce/x?y", (), ("127.0.0.1", 1), 0.0)[0] == 404


def test_scrape_counts_and_hybrid_aliases():
    c = core()
    c.register([IH, IH2])
    for h in (IH, IH2):  # a hybrid torrent announces each event under both hashes
        http(c, b"/announce?" + query(ih=h, peer=1, left=0, event="completed"), "127.0.0.2")
        http(c, b"/announce?" + query(ih=h, peer=2, left=5, event="started"), "127.0.0.3")
    unknown = b"\x00" * 20
    got = http(c, b"/scrape?" + query(ih=IH) + b"&" + query(ih=IH2) + b"&" + query(ih=unknown))
    entry = {b"complete": 1, b"downloaded": 1, b"incomplete": 1}
    assert got == {b"files": {IH: entry, IH2: entry}}
    c.unregister([IH])
    assert http(c, b"/scrape?" + query(ih=IH2)) == {b"files": {}}
    assert http(c, b"/announce?" + query(ih=IH2))[b"failure reason"] == b"unregistered torrent"


PROXY_CASES = [
    # (socket host, headers, expected peer host)
    ("10.9.9.9", [(b"x-forwarded-for", b"198.51.100.7")], "10.9.9.9"),  # not a trusted proxy
    ("10.0.0.1", [(b"x-forwarded-for", b"198.51.100.7")], "198.51.100.7"),
    ("10.0.0.1", [(b"x-forwarded-for", b"203.0.113.5, 198.51.100.7, 10.0.0.2")], "198.51.100.7"),
    ("10.0.0.1", [(b"x-forwarded-for", b"garbage, 198.51.100.7")], "198.51.100.7"),
    ("10.0.0.1", [(b"x-forwarded-for", b"198.51.100.7, garbage")], "10.0.0.1"),
    ("10.0.0.1", [(b"x-real-ip", b"2001:db8::5")], "2001:db8::5"),
    ("10.0.0.1", [(b"x-real-ip", b"not an ip")], "10.0.0.1"),
    ("192.0.2.1", [(b"x-real-ip", b"198.51.100.8")], "198.51.100.8"),
]


@pytest.mark.parametrize(("sock", "headers", "expected"), PROXY_CASES)
def test_trusted_proxies(sock, headers, expected):
    c = core(open=True, trusted_proxies=["10.0.0.0/24", "192.0.2.1"])
    http(c, b"/announce?" + query(peer=1), sock, headers)
    got = http(c, b"/announce?" + query(peer=2), "172.16.0.1")
    assert got[b"peers"] + got.get(b"peers6", b"") == compact(expected, 6881)


def test_ip_param_only_when_configured():
    for accept, expected in ((False, "127.0.0.2"), (True, "192.0.2.44")):
        c = core(open=True, accept_ip_param=accept)
        http(c, b"/announce?" + query(peer=1, ip="192.0.2.44"), "127.0.0.2")
        got = http(c, b"/announce?" + query(peer=2), "127.0.0.3")
        assert got[b"peers"] == compact(expected, 6881)


def test_numwant_capped_by_config():
    c = core(open=True, max_numwant=3)
    for n in range(10):
        http(c, b"/announce?" + query(peer=n), f"10.1.0.{n + 1}")
    assert len(http(c, b"/announce?" + query(peer=99, numwant=100), "10.2.0.1")[b"peers"]) == 18


def test_peers_expire_after_timeout_factor():
    c = core(open=True, peer_timeout_factor=2.0)
    http(c, b"/announce?" + query(peer=1), "127.0.0.2", now=0.0)
    assert c.clean(1199.0) == 0
    assert c.clean(600 * 2 * 9 / 8 + 1) == 1
    assert c.swarms.swarm_count == 0


def udp_connect(c: TrackerCore, client, now=0.0) -> int:
    reply = c.udp(struct.pack(">QII", PROTOCOL_ID, 0, 1), client, now)
    action, tid, cid = struct.unpack(">IIQ", reply)
    assert (action, tid) == (0, 1)
    return cid


def udp_announce(cid, ih=IH, port=6881, left=0, event=2, numwant=-1) -> bytes:
    return struct.pack(">QII20s20sQQQIIIiH", cid, 1, 7, ih, pid(port), 0, left, 0, event, 0, 0,
                       numwant, port)  # fmt: skip


def test_udp_announce_scrape_ipv4_and_ipv6():
    c = core()
    c.register([IH])
    a, b, six = ("127.0.0.2", 5000), ("127.0.0.3", 5001), ("::1", 5002)
    reply = c.udp(udp_announce(udp_connect(c, a), left=0), a, 1.0)
    assert struct.unpack(">IIIII", reply) == (1, 7, 600, 0, 1)
    reply = c.udp(udp_announce(udp_connect(c, six), port=7000, left=9), six, 1.0)
    assert struct.unpack(">IIIII", reply[:20]) == (1, 7, 600, 1, 1)
    assert reply[20:] == b""  # an IPv6 asker gets IPv6 peers only: none yet
    reply = c.udp(udp_announce(udp_connect(c, b), port=7001, left=9), b, 1.0)
    assert reply[20:] == compact("127.0.0.2", 6881)  # seeder only: the v6 leecher is not v4
    reply = c.udp(udp_announce(udp_connect(c, six), port=7000, left=9), six, 2.0)
    assert reply[20:] == b""
    c.udp(udp_announce(udp_connect(c, six), port=7002, left=0), ("::1", 5003), 2.0)
    scrape = struct.pack(">QII", udp_connect(c, a), 2, 9) + IH + IH2
    assert struct.unpack(">II6I", c.udp(scrape, a, 3.0)) == (2, 9, 1, 0, 2, 0, 0, 0)


UDP_BAD = [
    ("expired connection id", lambda cid: udp_announce(cid), 300.0, b"invalid connection id"),
    ("forged connection id", lambda cid: udp_announce(cid ^ 0xFF), 0.0, b"invalid connection id"),
    ("unregistered", lambda cid: udp_announce(cid, ih=IH2), 0.0, b"unregistered torrent"),
    ("truncated", lambda cid: udp_announce(cid)[:60], 0.0, b"truncated announce"),
]


@pytest.mark.parametrize(("name", "make", "now", "message"), UDP_BAD, ids=[u[0] for u in UDP_BAD])
def test_udp_errors(name, make, now, message):
    c = core()
    c.register([IH])
    client = ("127.0.0.2", 5000)
    reply = c.udp(make(udp_connect(c, client)), client, now)
    assert reply[:4] == b"\x00\x00\x00\x03" and reply[8:] == message


def test_udp_garbage_is_dropped():
    c = core(open=True)
    for junk in (b"", b"\x00", b"GET / HTTP/1.1\r\n\r\n"[:15], struct.pack(">QII", 5, 0, 1)):
        assert c.udp(junk, ("127.0.0.2", 1), 0.0) is None
    assert c.udp(struct.pack(">QII", PROTOCOL_ID, 0, 1), ("bogus", 1), 0.0) is None


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_metrics():
    registry = CollectorRegistry()
    c = core(metrics=TrackerMetrics(registry))
    c.register([IH, IH2])
    http(c, b"/announce?" + query(peer=1, left=0, event="started"), "127.0.0.2")
    http(c, b"/announce?" + query(peer=2, left=9), "127.0.0.3")
    http(c, b"/announce?" + query(ih=b"\x07" * 20))
    http(c, b"/announce?" + query(port=0))
    http(c, b"/scrape?" + query())
    client = ("127.0.0.4", 1)
    c.udp(udp_announce(udp_connect(c, client), event=3), client, 0.0)
    assert sample(registry, "tracker_announces_total", event="started", transport="http") == 1
    assert sample(registry, "tracker_announces_total", event="none", transport="http") == 1
    assert sample(registry, "tracker_announces_total", event="stopped", transport="udp") == 1
    assert sample(registry, "tracker_scrapes_total", transport="http") == 1
    assert sample(registry, "tracker_failures_total", reason="unregistered") == 1
    assert sample(registry, "tracker_failures_total", reason="port") == 1
    assert sample(registry, "tracker_swarms") == 1
    assert sample(registry, "tracker_peers", role="seeder") == 1
    assert sample(registry, "tracker_peers", role="leecher") == 1


def test_bad_config_is_refused():
    with pytest.raises(ValueError):
        core(trusted_proxies=["not-a-network"])
    with pytest.raises(ValueError):
        TrackerCore(interval=0)


@given(st.binary(max_size=120), st.binary(max_size=300))
def test_fuzz_core_never_raises(datagram, query):
    c = core(open=True, max_swarms=50)
    reply = c.udp(datagram, ("127.0.0.2", 1), 0.0)
    assert reply is None or reply[:4] in (b"\x00\x00\x00\x00", b"\x00\x00\x00\x03")
    for path in (b"/announce?", b"/scrape?"):
        status, _, body = c.http(path + query, (), ("127.0.0.2", 1), 0.0)
        assert status == 200 and isinstance(bencode.decode(body), dict)


def test_core_modules_do_not_import_trio():
    code = (
        "import sys, tracker.core, tracker.announce, tracker.swarm, tracker.responses, "
        "tracker.udp_protocol, tracker.metrics; "
        "bad = {'trio', 'libtorrent', 'boto3', 'seeder'} & {m.split('.')[0] for m in sys.modules}; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_on_announce_gets_the_canonical_hash_of_registered_swarms_only():
    seen: list[bytes] = []
    v2_20 = bytes(range(50, 70))
    c = core(on_announce=seen.append)
    c.register([IH, v2_20])  # a hybrid torrent: v1 first
    http(c, b"/announce?" + query(ih=v2_20, peer=1, left=5), "127.0.0.2")
    a = ("127.0.0.3", 5000)
    c.udp(udp_announce(udp_connect(c, a), left=9), a, 1.0)
    http(c, b"/announce?" + query(ih=IH2, peer=2), "127.0.0.2")  # unregistered: refused
    c.udp(udp_announce(udp_connect(c, a), ih=IH2), a, 1.0)
    http(c, b"/announce?" + query(peer=3, port=0), "127.0.0.2")  # bad port: refused
    assert seen == [IH, IH]
    opened: list[bytes] = []
    o = core(open=True, on_announce=opened.append)
    http(o, b"/announce?" + query(ih=IH2, peer=1), "127.0.0.2")  # an open swarm: not ours
    assert opened == []
