"""The status page and /torrents.json on a running daemon's metrics listener, read with
urllib (a real HTTP client) and parsed with html.parser: 5000 torrents in the catalog
(paged by 1000), a key that is an HTML injection attempt, bad pages, unknown paths, gzip,
the CSP, and the origin bytes of a torrent the daemon really generated."""

from __future__ import annotations

import gzip
import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
import trio

from seeder.config import (
    BucketConfig,
    Config,
    HostPort,
    MetricsConfig,
    ScannerConfig,
    SeedingConfig,
    ServerConfig,
    StateConfig,
    TrackerConfig,
)
from seeder.ops.daemon import Daemon, serve
from seeder.torrent.catalog import Catalog
from seeder.torrent.links import webseed_url
from tests.helpers import made_up_entry

DEADLINE = 60.0
TORRENTS = 5000
EVIL = "<script>alert(1)</script>.txt"
PUBLIC_URL = "http://127.0.0.1:1"  # only written into links; nothing fetches it
ANNOUNCE = "http://127.0.0.1:2/announce"


@dataclass
class Site:
    daemon: Daemon
    base: str  # http://host:port of the metrics listener
    data: Path  # the "pub" bucket's directory


@dataclass
class Got:
    status: int
    headers: dict[str, str]
    body: bytes


def fetch(url: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> Got:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return Got(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Got(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


class Dom(HTMLParser):
    """Every start tag (name, attrs) and the text, as a browser's tokenizer sees them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str, cls: str | None = None) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags
                if t == tag and (cls is None or cls in (a.get("class") or "").split())]


def config(tmp: Path) -> Config:
    return Config(
        server=ServerConfig(listen=HostPort("127.0.0.1", 0), public_url=PUBLIC_URL),
        tracker=TrackerConfig(listen=HostPort("127.0.0.1", 0), udp_listen=None,
                              public_url=ANNOUNCE),
        metrics=MetricsConfig(listen=HostPort("127.0.0.1", 0)),
        state=StateConfig(dir=str(tmp / "state")),
        scanner=ScannerConfig(enabled=False),
        seeding=SeedingConfig(enabled=False),
        buckets=(BucketConfig(name="pub", path=str(tmp / "pub")),
                 BucketConfig(name="priv", path=str(tmp / "priv"), public=False)),
    )


def fill_catalog(cfg: Config, n: int) -> None:
    """``n`` torrents whose links equal what ``cfg`` gives (so no relink at start)."""
    buckets = {b.name: b for b in cfg.buckets}

    def entry(bucket: str, key: str, size: int, hybrid: bool = False):
        ws = webseed_url(buckets[bucket], key, PUBLIC_URL, None) or None
        return made_up_entry(bucket, key, size, hybrid=hybrid, announce=ANNOUNCE, webseed=ws)

    rows = [entry("pub", EVIL, 1234, hybrid=True), entry("priv", "secret & co.bin", 99)]
    rows += [entry("pub", f"dir/{i:05d}.bin", 1000 + i) for i in range(n - len(rows))]
    with Catalog.open(Path(cfg.state.dir) / "catalog.sqlite3") as cat:
        cat.put_many(rows)


@pytest.fixture
async def site(tmp_path: Path, nursery: trio.Nursery) -> Site:
    for d in ("pub", "priv"):
        (tmp_path / d).mkdir()
    cfg = config(tmp_path)
    fill_catalog(cfg, TORRENTS)
    daemon: Daemon = await nursery.start(lambda task_status: serve(cfg, task_status=task_status))
    host, port = daemon.bound.metrics
    return Site(daemon, f"http://{host}:{port}", tmp_path / "pub")


async def get(url: str, **kw) -> Got:
    return await trio.to_thread.run_sync(lambda: fetch(url, **kw))


async def test_page_with_5000_torrents_is_paged_escaped_and_locked_down(site: Site) -> None:
    with trio.fail_after(DEADLINE):
        started = time.perf_counter()
        got = await get(site.base + "/")
        elapsed = time.perf_counter() - started
    logging.getLogger(__name__).info("status page, %d torrents: %.3f s", TORRENTS, elapsed)
    assert got.status == 200
    assert got.headers["content-type"] == "text/html; charset=utf-8"
    csp = got.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "unsafe" not in csp
    html = got.body.decode()
    dom = Dom(html)
    assert [t for t, _ in dom.tags if t == "script"] == []  # the evil key injected nothing
    assert EVIL in "".join(dom.text)  # ... and reads as itself
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.txt" in html
    assert dom.all("html")[0]["lang"] == "en"
    assert "".join(dom.text).count("s3torrent seeder") >= 2  # <title> and <h1>
    assert any(a.get("name") == "viewport" for a in dom.all("meta"))
    assert len(dom.all("tr", "torrent")) == 1000
    assert len(dom.all("svg")) == 1
    links = [a["href"] for a in dom.all("a") if a.get("href")]
    assert f"{PUBLIC_URL}/pub/%3Cscript%3Ealert%281%29%3C/script%3E.txt?torrent" in links
    magnets = [h for h in links if h.startswith("magnet:?xt=urn:btih:")]
    assert len(magnets) == 1000
    assert any("&xt=urn:btmh:1220" in m for m in magnets)  # the hybrid one
    assert "?page=5" in links and "?page=2" in links  # the pager
    # No external resource anywhere: every src/href is a magnet, a page, this server or data:.
    for _, attrs in dom.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            assert value is None or value.startswith(
                ("magnet:", "?page=", "/", "data:", PUBLIC_URL)), value

    last = Dom((await get(site.base + "/?page=5")).body.decode())
    assert len(last.all("tr", "torrent")) == TORRENTS - 4000

    # /torrents.json, paged the same way


BAD_PAGES = ("?page=6", "?page=0", "?page=-1", "?page=abc", "?page=", "?page=1&page=2",
             "?page=99999999999999999999", "?page=%EF%BC%91")  # the last: a fullwidth 1


async def test_bad_pages_400_unknown_paths_404_other_methods_405(site: Site) -> None:
    with trio.fail_after(DEADLINE):
        for query in BAD_PAGES:
            for path in ("/", "/torrents.json"):
                got = await get(site.base + path + query)
                assert got.status == 400, (path, query)
                assert got.body.startswith(b"bad request: page")
                assert got.body.count(b"\n") == 1
        for path in ("/index.html", "/torrents", "/torrents.json/x", "//", "/favicon.ico"):
            assert (await get(site.base + path)).status == 404, path
        got = await get(site.base + "/", method="POST")
        assert got.status == 405 and got.headers["allow"] == "GET, HEAD"
        head = await get(site.base + "/torrents.json", method="HEAD")
        assert head.status == 200 and head.body == b""
        metrics = await get(site.base + "/metrics")
        assert metrics.status == 200 and b"seeder_catalog_torrents" in metrics.body


    with trio.fail_after(DEADLINE):
        got = await get(site.base + "/torrents.json", headers={"Accept-Encoding": "gzip"})
        assert got.status == 200 and got.headers["content-encoding"] == "gzip"
        assert got.headers["content-type"] == "application/json"
        doc = json.loads(gzip.decompress(got.body))
        assert (doc["page"], doc["pages"], doc["per_page"], doc["total"]) == (1, 5, 1000, 5000)
        assert len(doc["torrents"]) == 1000
        by_key = {t["key"]: t for t in doc["torrents"]}
        secret = by_key["secret & co.bin"]  # "priv" sorts first
        assert set(secret) >= {"bucket", "key", "size", "info_hash", "info_hash_v2", "magnet",
                               "torrent_url"}
        assert secret["bucket"] == "priv" and secret["size"] == 99
        assert secret["info_hash_v2"] is None and len(secret["info_hash"]) == 40
        assert "xs=" not in secret["magnet"]  # private: no exact source
        assert secret["torrent_url"] == f"{PUBLIC_URL}/priv/secret%20%26%20co.bin?torrent"
        evil = by_key[EVIL]
        assert len(evil["info_hash_v2"]) == 64 and "&xs=" in evil["magnet"]
        last = json.loads((await get(site.base + "/torrents.json?page=5")).body)
        assert len(last["torrents"]) == 1000 and last["torrents"][-1]["key"] == "dir/04997.bin"


async def test_a_generated_torrent_shows_its_origin_bytes_and_a_logged_warning(
    site: Site,
) -> None:
    (site.data / "fresh.bin").write_bytes(b"x" * 300_000)
    daemon = site.daemon
    with trio.fail_after(DEADLINE):
        await daemon.torrents.get_torrent("pub", "fresh.bin")
        logging.getLogger("seeder.test").warning("odd object <img src=x onerror=alert(1)>")
        doc = json.loads((await get(site.base + "/torrents.json?page=6")).body)
        assert doc["torrents"][-1]["key"] == "fresh.bin"  # "pub" sorts last, "f" after "d"
        html = (await get(site.base + "/?page=6")).body.decode()
    dom = Dom(html)
    assert not dom.all("img")
    assert "odd object &lt;img src=x onerror=alert(1)&gt;" in html
    row = html[html.index(">fresh.bin<"):]
    row = row[: row.index("</tr>")]
    assert "293 KiB" in row  # 300000 bytes read from the origin while hashing
