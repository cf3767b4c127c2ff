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


LIMIT = 2 * 1024 * 1024  # bytes/s: a tenth of the daemon host's 200 Mbit/s
LIMITED = Shape(
    size=8 * 1024 * 1024,
    clients=("aria2", "libtorrent"),  # both pull from the web seed as well as the session
    upload_rate_limit=LIMIT,
    deadline=75.0,
)
# What a one-second window of the daemon's link may carry above the limit. By design: the web
# seed's bucket (256 KiB) and one 256 KiB body chunk sent on credit (seeder/seed/upload_share.py),
# and 5% of TCP/IP headers over the payload the limit counts. Measured besides (issue 16): in
# about a run in three one second carries up to ~0.9 MB more (23-25 Mbit/s against 16.8):
# libtorrent's limiter hands out quota in 500-ms steps and keeps up to 3 s of it unused
# (docs/seeding.md). The bound is that plus half a MiB of margin: it still fails a limit not
# applied (96 Mbit/s before issue 16) or applied to one of the two only.
BURST_ALLOWANCE = 3 * 512 * 1024
WIRE_OVERHEAD = 1.05


def test_upload_rate_limit_covers_the_web_seed_and_private_peers(
    lab_ok: None, tmp_path: Path
) -> None:
    """Every peer is on a private address (libtorrent's local class by default) and both
    clients pull from the web seed: the daemon's link stays under [seeding]
    upload_rate_limit, BitTorrent and web seed together, in every 1-s window."""
    with Lab(LIMITED, tmp_path) as lab:
        lab.wait_reachable()
        services = Services(lab)
        try:
            services.start()
            result = run_swarm(services, tmp_path / "swarm")
        finally:
            services.close()
    summary = {**result.summary(), "rates": [round(r) for r in result.rates]}
    assert all(c.verified for c in result.clients), summary
    assert result.rates, summary
    assert result.peak_rate <= LIMIT * WIRE_OVERHEAD + BURST_ALLOWANCE, summary
