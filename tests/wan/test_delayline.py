"""The lab's delay line and shapers: two hosts see the configured round trip (ping), and a
shaped link has its tbf (the kernel has no netem: the delay is tests/wan/delayline.py)."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import pytest

from tests.wan.lab import Lab, Shape

pytestmark = pytest.mark.wan

RTT = 0.040
SLACK = 0.015  # s: the relay wakes on a 1 ms epoll tick, 4 hops, 2 busy cores


def test_default_shape_ideal_is_the_issue_s_48_s() -> None:
    assert Shape().ideal() == pytest.approx(47.72, abs=0.01)
    assert Shape(clients=("aria2",)).ideal() == pytest.approx(21.47, abs=0.01)


def test_every_pair_of_hosts_sees_the_round_trip(lab_ok: None, tmp_path: Path) -> None:
    shape = Shape(size=0, clients=("aria2", "libtorrent"), rtt=RTT)
    with Lab(shape, tmp_path) as lab:
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
