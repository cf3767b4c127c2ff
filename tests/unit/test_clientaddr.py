"""tracker/clientaddr.py: whose address a request is, behind trusted reverse proxies."""

from __future__ import annotations

import pytest

from tracker.clientaddr import client_host, client_ip, pack_ip, parse_proxies

PROXIES = parse_proxies(["10.0.0.0/24", "192.0.2.1", "2001:db8:ffff::/48"])
XFF = b"x-forwarded-for"
XRI = b"x-real-ip"

CASES = [
    # (what, socket host, headers, expected client)
    ("no headers", "198.51.100.7", [], "198.51.100.7"),
    ("untrusted peer: XFF ignored", "10.9.9.9", [(XFF, b"198.51.100.7")], "10.9.9.9"),
    ("untrusted peer: X-Real-IP ignored", "203.0.113.9", [(XRI, b"198.51.100.7")], "203.0.113.9"),
    ("trusted proxy, one hop", "10.0.0.1", [(XFF, b"198.51.100.7")], "198.51.100.7"),
    ("trusted single address", "192.0.2.1", [(XFF, b"198.51.100.7")], "198.51.100.7"),
    ("trusted, no header", "10.0.0.1", [], "10.0.0.1"),
    ("chain: right-most untrusted wins over a spoofed left part", "10.0.0.1",
     [(XFF, b"203.0.113.5, 198.51.100.7, 10.0.0.2")], "198.51.100.7"),
    ("chain: spaces and tabs around hops", "10.0.0.1",
     [(XFF, b" 203.0.113.5 ,\t198.51.100.7 ")], "198.51.100.7"),
    ("chain: every hop trusted -> the left-most", "10.0.0.1",
     [(XFF, b"10.0.0.3, 10.0.0.2")], "10.0.0.3"),
    ("garbage left of the client: never reached", "10.0.0.1",
     [(XFF, b"garbage, 198.51.100.7")], "198.51.100.7"),
    ("garbage right of the client: socket", "10.0.0.1",
     [(XFF, b"198.51.100.7, garbage")], "10.0.0.1"),
    ("empty XFF: socket", "10.0.0.1", [(XFF, b"")], "10.0.0.1"),
    ("empty hop: socket", "10.0.0.1", [(XFF, b"198.51.100.7,,")], "10.0.0.1"),
    ("non-ASCII bytes: socket", "10.0.0.1", [(XFF, b"\xff\xfe1.2.3.4")], "10.0.0.1"),
    ("host:port is not an address: socket", "10.0.0.1", [(XFF, b"198.51.100.7:5555")],
     "10.0.0.1"),
    ("first XFF header counts", "10.0.0.1",
     [(XFF, b"198.51.100.7"), (XFF, b"198.51.100.8")], "198.51.100.7"),
    ("XFF wins over X-Real-IP", "10.0.0.1",
     [(XRI, b"198.51.100.9"), (XFF, b"198.51.100.7")], "198.51.100.7"),
    ("X-Real-IP", "10.0.0.1", [(XRI, b" 198.51.100.8 ")], "198.51.100.8"),
    ("X-Real-IP garbage: socket", "10.0.0.1", [(XRI, b"not an ip")], "10.0.0.1"),
    ("IPv6 client via X-Real-IP", "10.0.0.1", [(XRI, b"2001:db8::5")], "2001:db8::5"),
    ("IPv6 proxy, IPv6 client", "2001:db8:ffff::1", [(XFF, b"2001:db8:1::7")], "2001:db8:1::7"),
    ("IPv6 chain with a trusted IPv6 hop", "2001:db8:ffff::1",
     [(XFF, b"198.51.100.7, 2001:db8:ffff::2")], "198.51.100.7"),
    ("IPv4-mapped socket address is IPv4", "::ffff:10.0.0.1", [(XFF, b"198.51.100.7")],
     "198.51.100.7"),
    ("IPv4-mapped client", "10.0.0.1", [(XFF, b"::ffff:198.51.100.7")], "198.51.100.7"),
    ("scoped IPv6 socket address", "fe80::1%eth0", [(XFF, b"198.51.100.7")], "fe80::1"),
    ("other header names are not read", "10.0.0.1", [(b"forwarded", b"for=198.51.100.7")],
     "10.0.0.1"),
]


@pytest.mark.parametrize(("what", "host", "headers", "expected"), CASES, ids=[c[0] for c in CASES])
def test_client(what: str, host: str, headers: list, expected: str) -> None:
    assert client_ip(host, headers, PROXIES) == pack_ip(expected)
    got = client_host(host, headers, PROXIES)
    assert pack_ip(got) == pack_ip(expected)
    # Text: a header's address formatted canonically, the socket's as the socket gave it.
    assert got == (host if pack_ip(expected) == pack_ip(host) else expected)


def test_no_proxies_configured_means_the_socket_always() -> None:
    assert client_host("10.0.0.1", [(XFF, b"198.51.100.7")], ()) == "10.0.0.1"
    assert client_host("::ffff:10.0.0.1", [], ()) == "::ffff:10.0.0.1"  # as the socket said


def test_a_header_address_is_formatted_canonically() -> None:
    headers = [(XFF, b"2001:DB8:0:0::7"), (XRI, b"1.2.3.4")]
    assert client_host("10.0.0.1", headers, PROXIES) == "2001:db8::7"


def test_a_socket_host_that_is_not_an_address_stays_as_it_is() -> None:
    assert client_ip("localhost", [(XFF, b"198.51.100.7")], PROXIES) is None
    assert client_host("localhost", [(XFF, b"198.51.100.7")], PROXIES) == "localhost"


def test_pack_ip() -> None:
    assert pack_ip("1.2.3.4") == b"\x01\x02\x03\x04"
    assert pack_ip("::ffff:1.2.3.4") == b"\x01\x02\x03\x04"
    assert pack_ip("::1") == b"\x00" * 15 + b"\x01"
    for bad in ("", "1.2.3", "1.2.3.4.5", "::g", "1.2.3.4\x00", "é"):
        assert pack_ip(bad) is None


def test_parse_proxies_allows_host_bits_and_refuses_garbage() -> None:
    assert [str(n) for n in parse_proxies(["10.0.0.7/24", "::1"])] == ["10.0.0.0/24", "::1/128"]
    with pytest.raises(ValueError):
        parse_proxies(["not-a-network"])
