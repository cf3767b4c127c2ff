"""``seeder magnet BUCKET/KEY``: the magnet of a catalog torrent, read from the state dir of
``--config`` (the real command in a subprocess); one-line errors and exit 1 otherwise."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from seeder.torrent.catalog import Catalog
from tests.helpers import made_up_entry
from tests.integration.test_cli import one_line_error, seeder

CONFIG = """
[server]
public_url = "http://files.example:8000"
[state]
dir = "state"
[[buckets]]
name = "pub"
path = "pub"
[[buckets]]
name = "priv"
path = "priv"
public = false
"""


def setup(tmp_path: Path) -> Path:
    for d in ("pub", "priv"):
        (tmp_path / d).mkdir()
    cfg = tmp_path / "seeder.toml"
    cfg.write_text(CONFIG)
    with Catalog.open(tmp_path / "state" / "catalog.sqlite3") as cat:
        cat.put(made_up_entry("pub", "dir/a b&c.iso", 5000, hybrid=True,
                              webseed="http://files.example:8000/pub/dir/a%20b%26c.iso"))
        cat.put(made_up_entry("priv", "secret.bin", 10))
    return cfg


def test_magnet_of_a_public_and_a_private_object(tmp_path: Path) -> None:
    cfg = setup(tmp_path)
    with Catalog.open(tmp_path / "state" / "catalog.sqlite3") as cat:
        pub = cat.get("pub", "dir/a b&c.iso")
    assert pub is not None and pub.info_hash_v1 and pub.info_hash_v2
    r = seeder(tmp_path, "magnet", "--config", str(cfg), "pub/dir/a b&c.iso")
    assert (r.returncode, r.stderr) == (0, "")
    uri = r.stdout.strip()
    assert r.stdout.count("\n") == 1
    assert parse_qsl(urlsplit(uri).query) == [
        ("xt", f"urn:btih:{pub.info_hash_v1.hex()}"),
        ("xt", f"urn:btmh:1220{pub.info_hash_v2.hex()}"),
        ("dn", "a b&c.iso"),
        ("xl", "5000"),
        ("tr", "http://127.0.0.1:6969/announce"),
        ("ws", "http://files.example:8000/pub/dir/a%20b%26c.iso"),
        ("xs", "http://files.example:8000/pub/dir/a%20b%26c.iso?torrent"),
    ]
    # A private bucket's torrent cannot be fetched unsigned: no xs.
    r = seeder(tmp_path, "magnet", "--config", str(cfg), "priv/secret.bin")
    assert r.returncode == 0, r.stderr
    assert "xs=" not in r.stdout and "dn=secret.bin&xl=10&tr=" in r.stdout


def test_magnet_errors_are_one_line(tmp_path: Path) -> None:
    cfg = setup(tmp_path)
    r = seeder(tmp_path, "magnet", "--config", str(cfg), "pub/nope.txt")
    assert r.returncode == 1
    assert one_line_error(r).startswith("seeder: error: no torrent for pub/nope.txt in ")
    r = seeder(tmp_path, "magnet", "--config", str(cfg), "pub/dir/a b&c.iso", "--version-id", "v")
    assert r.returncode == 1 and "pub/dir/a b&c.iso version v" in one_line_error(r)
    r = seeder(tmp_path, "magnet", "--config", str(cfg), "just-a-bucket")
    assert r.returncode == 1
    assert one_line_error(r) == "seeder: error: 'just-a-bucket': expected BUCKET/KEY"
    r = seeder(tmp_path / "pub", "magnet", "data/hello.txt")  # no --config: ./state, no catalog
    assert r.returncode == 1
    line = one_line_error(r)
    assert line.startswith("seeder: error: no catalog at /")
    assert "/pub/state/catalog.sqlite3 (has the daemon run" in line
    r = seeder(tmp_path, "magnet", "--config", str(tmp_path / "missing.toml"), "a/b")
    assert r.returncode == 1 and "missing.toml" in one_line_error(r)
