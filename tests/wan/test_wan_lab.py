"""A small swarm over the WAN lab: the real clients (aria2, Transmission, qBittorrent,
libtorrent), one per host, 40 ms between every pair of hosts, home links; every client's
bytes verify and the object store sent about one copy. Counts, not times: the speed goals
are benchmarks/bench_wan.py's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.wan.lab import Lab, Shape
from tests.wan.swarm import Services, run_swarm

pytestmark = pytest.mark.wan

SHAPE = Shape(
    size=16 * 1024 * 1024,
    clients=("aria2", "transmission", "qbittorrent", "libtorrent"),
    deadline=75.0,
)


def test_four_kinds_of_clients_over_a_wan(lab_ok: None, tmp_path: Path) -> None:
    with Lab(SHAPE, tmp_path) as lab:
        lab.wait_reachable()
        services = Services(lab)
        try:
            services.start()
            result = run_swarm(services, tmp_path / "swarm")
        finally:
            services.close()
    summary = result.summary()
    assert all(c.seconds is not None for c in result.clients), summary
    assert all(c.verified for c in result.clients), summary
    assert result.s3_bytes <= 1.05 * SHAPE.size, summary
    assert result.daemon_payload > 0, summary
