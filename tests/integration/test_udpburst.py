"""tracker.udpburst over real sockets: bursts, malformed and oversized datagrams, an ICMP
error, a failing handler, IPv6 and a dual-stack socket's IPv4 clients (both builds:
test_compiled_build runs this against the compiled loop, which calls recvfrom(2) and
sendto(2) itself)."""

from __future__ import annotations

import logging
import select
import socket
import struct
from collections.abc import Iterator

import pytest

from tracker import udpburst
from tracker.core import TrackerCore
from tracker.udp_protocol import PROTOCOL_ID

IH = bytes(range(1, 21))
NOW = 1000.0
DEADLINE_MS = 5000
IP_RECVERR = 11  # <linux/in.h>; not in Python's socket module


def connect_packet(tid: int) -> bytes:
    return struct.pack(">QII", PROTOCOL_ID, 0, tid)


def announce_packet(cid: int, tid: int, port: int, *, seeder: bool = False) -> bytes:
    return struct.pack(">QII20s20sQQQIIIiH", cid, 1, tid, IH, b"-XX0001-" + bytes(12), 0,
                       0 if seeder else 100, 0, 2, 0, 0, 50, port)  # fmt: skip


def udp_socket(family: int = socket.AF_INET, host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


@pytest.fixture
def server() -> Iterator[socket.socket]:
    with udp_socket() as sock:
        sock.setblocking(False)
        yield sock


def replies(client: socket.socket, count: int) -> list[bytes]:
    """``count`` datagrams that are already on their way to ``client`` (loopback)."""
    client.settimeout(DEADLINE_MS / 1000)
    return [client.recv(4096) for _ in range(count)]


def nothing_waiting(sock: socket.socket) -> bool:
    return not select.select([sock], [], [], 0)[0]


def test_a_burst_serves_up_to_its_limit_then_empties_the_socket(server):
    core = TrackerCore(open=True)
    with udp_socket() as client:
        for tid in range(100):
            client.sendto(connect_packet(tid), server.getsockname())
        assert udpburst.serve_burst(core, server, NOW, 64) is True  # more may wait
        assert udpburst.serve_burst(core, server, NOW, 64) is False  # 36 more, then none
        assert udpburst.serve_burst(core, server, NOW, 64) is False
        got = replies(client, 100)
        assert [struct.unpack(">II", r[:8]) for r in got] == [(0, tid) for tid in range(100)]
        assert nothing_waiting(client)


def test_malformed_and_oversized_datagrams_get_what_the_core_gives(server):
    """Each datagram is answered as ``TrackerCore.udp`` answers its first MAX_DATAGRAM
    bytes (an error packet or nothing), and the burst goes on."""
    junk = [
        b"", b"\x00", b"x" * 15, b"\xff" * 98, struct.pack(">QII", PROTOCOL_ID, 7, 1),
        struct.pack(">QII", 1, 1, 1) + b"\x00" * 82,
        connect_packet(5) + b"z" * 3000,  # cut at MAX_DATAGRAM, a connect all the same
        struct.pack(">QII", 1, 2, 77) + b"\x00" * 3000,  # a scrape on a bad connection id
    ]  # fmt: skip
    core = TrackerCore(open=True)
    reference = TrackerCore(open=True, secret=b"k" * 32)
    core.connection_ids = reference.connection_ids  # the same ids in both
    with udp_socket() as client:
        expected = []
        for packet in junk:
            client.sendto(packet, server.getsockname())
            answer = reference.udp(packet[: udpburst.MAX_DATAGRAM], client.getsockname(), NOW)
            if answer is not None:
                expected.append(answer)
        client.sendto(connect_packet(9), server.getsockname())
        assert udpburst.serve_burst(core, server, NOW, 64) is False
        assert len(expected) >= 3  # errors and the cut connect: the test sends real answers
        got = replies(client, len(expected) + 1)
        assert got[:-1] == expected
        assert struct.unpack(">II", got[-1][:8]) == (0, 9)
        assert nothing_waiting(client)


def test_an_icmp_error_about_an_earlier_reply_is_passed_over(server, caplog):
    """Linux reports the ICMP "port unreachable" a reply drew at the socket's next receive
    (here always: IP_RECVERR); the burst ignores it and serves the next datagram."""
    server.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    core = TrackerCore(open=True)
    gone = udp_socket()
    gone.sendto(connect_packet(1), server.getsockname())
    gone.close()  # its reply will draw an ICMP port unreachable
    assert udpburst.serve_burst(core, server, NOW, 64) is False
    poller = select.poll()
    poller.register(server, select.POLLERR)
    assert poller.poll(DEADLINE_MS), "no ICMP error reached the socket"
    with udp_socket() as client, caplog.at_level(logging.DEBUG, "tracker.udpburst"):
        client.sendto(connect_packet(2), server.getsockname())
        assert udpburst.serve_burst(core, server, NOW, 64) is False
        assert struct.unpack(">II", replies(client, 1)[0][:8]) == (0, 2)
    # The error was read by the burst (Linux also keeps it in the error queue: POLLERR stays).
    assert server.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    assert not caplog.records  # an ICMP error is no news


class FailingCore(TrackerCore):
    """A core with a bug: every announce raises."""

    def udp_from(self, data, source, port, now):
        if len(data) > 16:
            raise RuntimeError("boom")
        return super().udp_from(data, source, port, now)


def test_a_handler_bug_is_logged_and_the_burst_goes_on(server, caplog):
    core = FailingCore(open=True)
    with udp_socket() as client, caplog.at_level(logging.ERROR, "tracker.udpburst"):
        host = client.getsockname()[0]
        client.sendto(announce_packet(0, 1, 7000), server.getsockname())
        client.sendto(connect_packet(3), server.getsockname())
        assert udpburst.serve_burst(core, server, NOW, 64) is False
        assert struct.unpack(">II", replies(client, 1)[0][:8]) == (0, 3)
        assert nothing_waiting(client)
    [record] = caplog.records
    assert record.getMessage() == f"udp request from {host} failed"
    assert record.exc_info[0] is RuntimeError


def _connect(core: TrackerCore, server: socket.socket, client: socket.socket, to) -> int:
    client.sendto(connect_packet(0), to)
    assert udpburst.serve_burst(core, server, NOW, 64) is False
    return struct.unpack(">IIQ", replies(client, 1)[0])[2]


def _announce(core: TrackerCore, server: socket.socket, client: socket.socket, to,
              port: int) -> bytes:
    """The compact peers of an announce from ``client`` (port ``port``) through ``server``."""
    cid = _connect(core, server, client, to)
    client.sendto(announce_packet(cid, 4, port), to)
    assert udpburst.serve_burst(core, server, NOW, 64) is False
    reply = replies(client, 1)[0]
    assert struct.unpack(">II", reply[:8]) == (1, 4)
    return reply[20:]


def test_ipv6_clients_are_stored_and_answered_with_their_address():
    core = TrackerCore(open=True)
    with udp_socket(socket.AF_INET6, "::1") as server:
        server.setblocking(False)
        to = server.getsockname()
        with udp_socket(socket.AF_INET6, "::1") as a, udp_socket(socket.AF_INET6, "::1") as b:
            assert _announce(core, server, a, to, 6881) == b""
            assert _announce(core, server, b, to, 6882) == socket.inet_pton(
                socket.AF_INET6, "::1") + (6881).to_bytes(2, "big")


def test_a_dual_stack_sockets_ipv4_clients_are_stored_as_ipv4():
    """An IPv4 client of a dual-stack socket arrives as ::ffff:a.b.c.d; it is stored as
    the IPv4 address (as pack_ip makes it) and answered at its mapped address."""
    core = TrackerCore(open=True)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as server:
        server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        server.bind(("::", 0))
        server.setblocking(False)
        to = ("127.0.0.1", server.getsockname()[1])
        with udp_socket(host="127.0.0.2") as a, udp_socket(host="127.0.0.3") as b:
            assert _announce(core, server, a, to, 6881) == b""
            assert _announce(core, server, b, to, 6882) == bytes([127, 0, 0, 2, 0x1a, 0xe1])
            [swarm] = {id(s): s for s in core.swarms.by_hash.values()}.values()
            assert sorted(swarm.peers) == [bytes([127, 0, 0, 2, 0x1a, 0xe1]),
                                           bytes([127, 0, 0, 3, 0x1a, 0xe2])]


@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"),
                                          (socket.AF_INET6, "::1")])
def test_address_reads_a_c_socket_address_as_recvfrom_gives_it(family, host):
    with udp_socket(family, host) as sock:
        name = sock.getsockname()
    port = name[1].to_bytes(2, "big")
    ip = socket.inet_pton(family, host)
    if family == socket.AF_INET:
        raw = family.to_bytes(2, "little") + port + ip + bytes(8)  # struct sockaddr_in
    else:
        raw = (family.to_bytes(2, "little") + port + (5).to_bytes(4, "big") + ip
               + (3).to_bytes(4, "little"))  # struct sockaddr_in6: flowinfo 5, scope id 3
        name = (*name[:2], 5, 3)
    assert udpburst._address(raw) == name
