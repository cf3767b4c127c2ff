"""seeder.torrent.magnet: magnet URIs and GetObjectTorrent URLs (pure), read back by
urllib's query parser and by libtorrent's own magnet parser (no I/O in either)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import libtorrent as lt
import pytest

from seeder.torrent.entry import Entry
from seeder.torrent.magnet import magnet_link, torrent_url
from seeder.torrent.metainfo import Links

V1 = bytes(range(20))
V2 = bytes(range(100, 132))
ANNOUNCE = "http://127.0.0.1:6969/announce"
UDP = "udp://127.0.0.1:6969"
WEBSEED = "http://s3.example/b/dir/a%20b.bin?versionId=v%2B1&x-amz-request-payer=requester"


def entry(key: str = "dir/a b.bin", *, hybrid: bool = False, bucket: str = "bk",
          v1: bytes | None = V1) -> Entry:
    return Entry(
        bucket=bucket, key=key, etag="e", version_id=None, size=12345, last_modified=0.0,
        torrent=b"", info_hash_v1=v1, info_hash_v2=V2 if hybrid else None,
        piece_length=262144, format="hybrid" if hybrid else "v1", created_at=0.0,
    )


def params(uri: str) -> list[tuple[str, str]]:
    parts = urlsplit(uri)
    assert parts.scheme == "magnet" and parts.path == ""
    return parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)


def test_v1_link_has_every_part_in_order():
    links = Links.of(ANNOUNCE, [[UDP], [ANNOUNCE]], [WEBSEED])
    uri = magnet_link(entry(), links, "http://127.0.0.1:8000/bk/dir/a%20b.bin?torrent")
    assert uri.startswith(f"magnet:?xt=urn:btih:{V1.hex()}&dn=")
    assert params(uri) == [
        ("xt", f"urn:btih:{V1.hex()}"),
        ("dn", "a b.bin"),
        ("xl", "12345"),
        ("tr", ANNOUNCE),  # announce first, then the tiers, each URL once
        ("tr", UDP),
        ("ws", WEBSEED),
        ("xs", "http://127.0.0.1:8000/bk/dir/a%20b.bin?torrent"),
    ]
    # The web seed's own query cannot leak into the magnet's parameters.
    assert "&x-amz-request-payer" not in uri and "?versionId" not in uri


def test_hybrid_link_has_the_v2_multihash():
    uri = magnet_link(entry(hybrid=True), Links.of(ANNOUNCE, [[ANNOUNCE]], []))
    assert params(uri)[:2] == [("xt", f"urn:btih:{V1.hex()}"),
                               ("xt", f"urn:btmh:1220{V2.hex()}")]
    assert not any(k in ("ws", "xs") for k, _ in params(uri))


def test_libtorrent_reads_the_link_back():
    links = Links.of(ANNOUNCE, [[UDP], [ANNOUNCE]], [WEBSEED])
    p = lt.parse_magnet_uri(magnet_link(entry(hybrid=True), links, None))
    assert p.name == "a b.bin"
    assert str(p.info_hashes.v1) == V1.hex()
    assert str(p.info_hashes.v2) == V2.hex()
    assert list(p.trackers) == [ANNOUNCE, UDP]
    assert list(p.url_seeds) == [WEBSEED]


@pytest.mark.parametrize(("key", "name"), [
    ("<script>alert(1)</script>.txt", "script>.txt"),  # "/" splits it too
    ("<b>&quot;.txt", "<b>&quot;.txt"),
    ("a/b&c=d#e?f", "b&c=d#e?f"),
    ("dir/", "dir"),
    ("x/..", "bk"),
    ("ünï cødé/日本.bin", "日本.bin"),
    ("bad\udcff.bin", "bad\udcff.bin"),  # a local file name that is not UTF-8
])
def test_names_survive_percent_encoding(key, name):
    uri = magnet_link(entry(key), Links())
    assert all(c not in uri for c in " <>\"#") and uri.isascii()
    got = dict(parse_qsl(urlsplit(uri).query, encoding="utf-8", errors="surrogateescape"))
    assert got["dn"] == name


def test_no_trackers_no_webseed_no_source():
    assert magnet_link(entry(), Links()) == f"magnet:?xt=urn:btih:{V1.hex()}&dn=a%20b.bin&xl=12345"


def test_an_entry_without_v1_is_refused():
    with pytest.raises(ValueError, match="no v1 info-hash"):
        magnet_link(entry(v1=None, hybrid=True), Links())


def test_torrent_url():
    assert (torrent_url("http://h:8000/", "bk", "a b/c?.txt")
            == "http://h:8000/bk/a%20b/c%3F.txt?torrent")
    assert (torrent_url("https://h", "bk", "k", "v/1+2")
            == "https://h/bk/k?torrent&versionId=v%2F1%2B2")
