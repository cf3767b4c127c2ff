"""The pure parts of the libtorrent session (seeder/seed/settings.py, stats.py): settings from
config, keys, the STATUS= line."""

from __future__ import annotations

import libtorrent as lt
import pytest

from seeder.config import SeedingConfig
from seeder.seed.session import (
    SeedError,
    SeedStats,
    parse_torrent,
    session_settings,
    torrent_key,
)
from seeder.seed.settings import UNCHOKE_INTERVAL
from seeder.torrent.entry import seed_key
from seeder.torrent.metainfo import info_hashes


def test_settings_follow_the_config() -> None:
    cfg = SeedingConfig(
        listen_interfaces="0.0.0.0:6999,[::]:6999",
        upload_rate_limit=1000,
        connections_limit=42,
        dht=True,
        lsd=False,
        upnp=True,
        natpmp=False,
        ssrf_mitigation=False,
    )
    s = session_settings(cfg)
    assert s["listen_interfaces"] == "0.0.0.0:6999,[::]:6999"
    assert (s["upload_rate_limit"], s["connections_limit"]) == (1000, 42)
    assert (s["enable_dht"], s["enable_lsd"], s["enable_upnp"], s["enable_natpmp"]) == (
        True,
        False,
        True,
        False,
    )
    assert s["ssrf_mitigation"] is False
    assert s["allow_multiple_connections_per_ip"] is True
    # The choker runs often enough to give a handed-on slot (seed/upload_slots.py) soon.
    assert s["unchoke_interval"] == UNCHOKE_INTERVAL
    # One optimistic unchoke on top of the torrents' slots (upload_slots.session_slots), not
    # libtorrent's automatic fifth of the session-wide limit.
    assert s["num_optimistic_unchoke_slots"] == 1


def test_defaults_keep_discovery_off_and_ssrf_on() -> None:
    s = session_settings(SeedingConfig())
    assert not (s["enable_dht"] or s["enable_lsd"] or s["enable_upnp"] or s["enable_natpmp"])
    assert s["ssrf_mitigation"] is True


def test_libtorrent_accepts_the_settings() -> None:
    ses = lt.session(session_settings(SeedingConfig(listen_interfaces="127.0.0.1:0")))
    applied = ses.get_settings()
    assert applied["connections_limit"] == SeedingConfig().connections_limit
    assert applied["enable_dht"] is False
    # The swarm budget relies on it (issue 4): few requests queued per peer by default.
    assert applied["max_allowed_in_request_queue"] == SeedingConfig().peer_request_queue < 2000
    wide = lt.session(
        session_settings(SeedingConfig(listen_interfaces="127.0.0.1:0", peer_request_queue=500))
    )
    assert wide.get_settings()["max_allowed_in_request_queue"] == 500


def _torrent(tmp_path, flags: int) -> bytes:
    (tmp_path / "f").write_bytes(b"x" * 100_000)
    ct = lt.create_torrent(lt.list_files(str(tmp_path / "f")), 16384, flags)
    lt.set_piece_hashes(ct, str(tmp_path))
    return lt.bencode(ct.generate())


def test_key_is_v1_hex_or_v2_hex_for_v2_only(tmp_path) -> None:
    v1 = parse_torrent(_torrent(tmp_path, lt.create_torrent.v1_only))
    assert torrent_key(v1) == str(v1.info_hashes().v1) and len(torrent_key(v1)) == 40
    hybrid = parse_torrent(_torrent(tmp_path, 0))
    assert torrent_key(hybrid) == str(hybrid.info_hashes().v1)
    v2 = parse_torrent(_torrent(tmp_path, lt.create_torrent.v2_only))
    assert len(torrent_key(v2)) == 64


@pytest.mark.parametrize(
    "flags", [lt.create_torrent.v1_only, 0, lt.create_torrent.v2_only], ids=["v1", "hybrid", "v2"]
)
def test_session_key_is_the_seed_key(tmp_path, flags: int) -> None:
    """The session and the catalog name a torrent alike (one seed_key), v2-only included."""
    torrent = _torrent(tmp_path, flags)
    ih = info_hashes(torrent)
    assert torrent_key(parse_torrent(torrent)) == seed_key(ih.v1, ih.v2)


@pytest.mark.parametrize(
    "bad", [b"", b"garbage", b"le", b"d4:infod4:name1:xee", b"d4:infoi3ee", b"\xff" * 10]
)
def test_bad_metainfo_is_a_seed_error(bad: bytes) -> None:
    with pytest.raises(SeedError):
        parse_torrent(bad)


def test_status_line() -> None:
    line = SeedStats(
        torrents=12, seeding=10, downloading=2, peers=5, upload_rate=1536.0, cache_bytes=3 << 30
    ).status_line()
    assert line == "seeding 10/12 torrents, 2 downloading, 5 peers, up 1.5 KiB/s, cache 3.0 GiB"


def test_every_address_is_in_the_global_peer_class() -> None:
    """Private and loopback peers too: the session's upload_rate_limit covers them."""
    from seeder.seed.settings import peer_class_filter

    ses = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False})
    one = peer_class_filter(ses.global_peer_class_id)
    every = 1 << ses.global_peer_class_id
    for addr in ("10.99.0.10", "192.168.1.2", "127.0.0.2", "8.8.8.8", "::1", "fd00::1"):
        assert one.access(addr) == every, addr
    assert one.export_filter() == ([("0.0.0.0", "255.255.255.255")],
                                   [("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")])
    ses.set_peer_class_filter(one)
