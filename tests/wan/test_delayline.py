"""The lab's delay line and shapers: two hosts see the configured round trip (ping), and a
shaped link has its tbf (the kernel has no netem: the delay is tests/wan/delayline.c, or
delayline.py where no compiler builds it). The relay alone (both builds): every frame leaves
in order, never before its delay; the C one coalesces its wake-ups."""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.wan.lab import (
    DELAYLINE,
    Lab,
    Shape,
    _batch,
    _run,
    _sysctl,
    call_in,
    relay_command,
    stop,
)

pytestmark = pytest.mark.wan

RTT = 0.040
SO_TIMESTAMPNS = 35  # = SCM_TIMESTAMPNS; not in Python's socket module
SLACK = 0.015  # s: the relay wakes on a 1 ms epoll tick, 4 hops, 2 busy cores


def test_default_shape_ideal_is_the_issue_s_48_s() -> None:
    assert Shape().ideal() == pytest.approx(47.72, abs=0.01)
    assert Shape(clients=("aria2",)).ideal() == pytest.approx(21.47, abs=0.01)


def test_every_pair_of_hosts_sees_the_round_trip(lab_ok: None, tmp_path: Path) -> None:
    shape = Shape(size=0, clients=("aria2", "libtorrent"), rtt=RTT, congestion="reno")
    with Lab(shape, tmp_path) as lab:
        assert {lab.congestion(h) for h in lab.hosts} == {"reno"}
        lab.wait_reachable()  # ARP done: the pings below are one round trip each
        for src, dst in (("c0", "c1"), ("c1", "srv"), ("srv", "s3")):
            out = lab.run(src, ["ping", "-c", "5", "-i", "0.2", "-W", "5",
                                lab.hosts[dst].addr], timeout=30)
            rtts = [float(m) / 1000 for m in re.findall(r"time=([\d.]+) ms", out)]
            assert len(rtts) == 5, out
            assert min(rtts) >= RTT, (src, dst, rtts)
            assert statistics.median(rtts) <= RTT + SLACK, (src, dst, rtts)
        qdisc = lab.run("c0", ["tc", "qdisc", "show", "dev", "eth0"])
        assert "tbf" in qdisc and "rate 20Mbit" in qdisc


# -- the relay alone: two veth pairs in one namespace, the relay between their inner ends ------

DELAY = 0.020  # s, the relay's one-way delay in these tests
ETHERTYPE = 0x88B5  # IEEE local experimental: nothing else in the namespace sends it
TRAIN = 200  # frames
SPACING_NS = 100_000  # between frames of the train: 0.1 ms, a fifth of the C relay's slack
READY_DEADLINE = 10.0  # s for the relay to pass a probe frame


@pytest.fixture
def relay_ns(lab_ok: None) -> Iterator[str]:
    """A namespace with veth pairs a0-a1 and b0-b1 (IPv6 off: nothing else on the wire)."""
    ns = f"s3tdl{os.getpid() % 100000}"
    _run(["ip", "netns", "add", ns])
    try:
        _sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
        _sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")
        _batch(ns, ["link add a0 type veth peer name a1", "link add b0 type veth peer name b1",
                    "link set a0 up", "link set b0 up", "link set a1 up promisc on",
                    "link set b1 up promisc on"])  # fmt: skip
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _relays(tmp: Path) -> dict[str, list[str]]:
    return {"c": relay_command(tmp), "python": [sys.executable, str(DELAYLINE)]}


def _frame(seq: int, sent_ns: int) -> bytes:
    return b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!HiQ", ETHERTYPE, seq,
                                                                    sent_ns) + bytes(46)


def _train(frames: int) -> list[tuple[int, int, int]]:
    """In the relay's namespace: probe until the relay passes a frame, then send ``frames``
    frames SPACING_NS apart on a0; every frame of the train read on b0 as (seq, sent ns, kernel
    arrival ns), in the order read."""
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
    try:
        tx.bind(("a0", ETHERTYPE))
        rx.bind(("b0", ETHERTYPE))
        rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        rx.settimeout(0.1)
        end = time.monotonic() + READY_DEADLINE
        while not _read(rx):  # probes (seq -1) until one comes through
            assert time.monotonic() < end, "the relay passed no probe frame"
            tx.send(_frame(-1, time.time_ns()))
        while _read(rx):  # the other probes in flight
            pass
        start = time.monotonic_ns()
        for seq in range(frames):
            while time.monotonic_ns() < start + seq * SPACING_NS:  # pacing, bounded by seq
                pass
            tx.send(_frame(seq, time.time_ns()))
        got: list[tuple[int, int, int]] = []
        rx.settimeout(1.0 + DELAY)
        while len(got) < frames and (frame := _read(rx)):
            got.append(frame)
        return [f for f in got if f[0] >= 0]
    finally:
        tx.close()
        rx.close()


def _read(rx: socket.socket) -> tuple[int, int, int] | None:
    try:
        data, anc, _, _ = rx.recvmsg(2048, socket.CMSG_SPACE(16))
    except TimeoutError:
        return None
    _, seq, sent = struct.unpack("!HiQ", data[12:26])
    stamps = [struct.unpack("qq", d[:16]) for lvl, kind, d in anc
              if lvl == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS]
    assert stamps, "no kernel arrival time on b0"
    return seq, sent, stamps[0][0] * 1_000_000_000 + stamps[0][1]


def _run_relay(ns: str, argv: list[str], frames: int) -> tuple[list[tuple[int, int, int]],
                                                                 dict[str, float]]:
    relay = subprocess.Popen(["ip", "netns", "exec", ns, *argv, "a1", "b1", repr(DELAY)],
                             stdout=subprocess.PIPE, text=True)
    try:
        got = call_in(ns, _train, frames)
    finally:
        stop(relay)
    out = relay.stdout.read() if relay.stdout else ""
    return got, json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["c", "python"])
def test_every_frame_leaves_in_order_and_never_early(relay_ns: str, tmp_path: Path,
                                                     kind: str) -> None:
    argv = _relays(tmp_path)[kind]
    if kind == "c" and argv[0] == sys.executable:
        pytest.fail("the C delay line did not build here")
    got, stats = _run_relay(relay_ns, argv, TRAIN)
    assert [seq for seq, _, _ in got] == list(range(TRAIN)), stats
    held = [(arrived - sent) / 1e9 for _, sent, arrived in got]
    assert min(held) >= DELAY, (min(held), stats)
    assert stats["dropped"] == 0, stats


def test_the_c_relay_sends_what_is_due_within_its_slack_in_one_wakeup(
    relay_ns: str, tmp_path: Path
) -> None:
    """A frame every 0.1 ms: the Python relay wakes for each arrival (200+ wake-ups); the C
    relay reads arrivals when it wakes to send and sends ~5 due frames per wake-up."""
    argv = relay_command(tmp_path)
    assert argv[0] != sys.executable, "the C delay line did not build here"
    got, stats = _run_relay(relay_ns, argv, TRAIN)
    assert len(got) == TRAIN, stats
    assert stats["wakeups"] < TRAIN / 2, stats
    assert stats["unstamped"] == 0, stats


PAIR_BYTES = 4 * 1024 * 1024  # sent c0 -> c1 in the per-destination test
COUNT_DEADLINE = 10.0  # s for the relay's counters to show a transfer the receiver has read


def test_each_host_s_bytes_are_counted_by_destination(lab_ok: None, tmp_path: Path) -> None:
    """c0 sends 4 MiB to c1 over TCP: its delay line counts them (and their headers) to
    c1, not to anyone else; c1's counts to c0 are the ACKs only."""
    shape = Shape(size=0, clients=("aria2", "libtorrent"), rtt=RTT)
    with Lab(shape, tmp_path) as lab:
        lab.wait_reachable()
        before = lab.pair_bytes()
        listener = lab.call("c1", _listen, lab.hosts["c1"].addr)
        got: list[int] = []
        reader = threading.Thread(target=lambda: got.append(_read_all(listener)))
        reader.start()
        try:
            lab.call("c0", _send, lab.hosts["c1"].addr, listener.getsockname()[1])
        finally:
            reader.join(COUNT_DEADLINE + 30)
            listener.close()
        assert got == [PAIR_BYTES]
        end = time.monotonic() + COUNT_DEADLINE
        while True:  # the counter is added right after the frame is sent: poll briefly
            after = lab.pair_bytes()
            sent = {s: {d: n - before[s][d] for d, n in to.items()} for s, to in after.items()}
            if sent["c0"]["c1"] >= PAIR_BYTES or time.monotonic() > end:
                break
            time.sleep(0.05)  # polling the relay's counters on a deadline
    assert set(sent) == {"srv", "s3", "c0", "c1"}, sent
    assert PAIR_BYTES <= sent["c0"]["c1"] <= PAIR_BYTES * 1.1, sent
    assert sent["c1"]["c0"] < PAIR_BYTES * 0.05, sent
    assert sent["c0"]["srv"] < PAIR_BYTES * 0.01 and sent["c0"]["s3"] < PAIR_BYTES * 0.01, sent


def _listen(addr: str) -> socket.socket:
    sock = socket.create_server((addr, 0))  # made in the host's namespace, stays there
    sock.settimeout(COUNT_DEADLINE + 20)
    return sock


def _read_all(listener: socket.socket) -> int:
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(COUNT_DEADLINE + 20)
        n = 0
        while chunk := conn.recv(1 << 16):
            n += len(chunk)
        return n


def _send(addr: str, port: int) -> None:
    with socket.create_connection((addr, port), timeout=COUNT_DEADLINE + 20) as conn:
        conn.sendall(bytes(PAIR_BYTES))


def test_a_congestion_control_not_allowed_in_a_namespace_is_a_clear_error(
    lab_ok: None, tmp_path: Path
) -> None:
    allowed = Path("/proc/sys/net/ipv4/tcp_allowed_congestion_control").read_text().split()
    if "cubic" in allowed:
        pytest.skip("cubic is allowed in namespaces on this machine")
    shape = Shape(size=0, clients=("aria2",), congestion="cubic")
    with pytest.raises(RuntimeError, match="tcp_allowed_congestion_control"):
        with Lab(shape, tmp_path):
            pass
