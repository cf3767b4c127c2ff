"""The /metrics endpoint over a real loopback socket: scraped with urllib (a real HTTP
client), parsed with prometheus_client's parser and linted by promtool."""

from __future__ import annotations

import gzip
import shutil
import urllib.error
import urllib.request

import pytest
import trio
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from seeder.metrics import SeederMetrics, serve_metrics

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian package 'prometheus'; scripts/test.sh installs it)",
)

EXPECTED = {
    "seeder_build_info",
    "seeder_api_requests",
    "seeder_api_request_duration_seconds",
    "seeder_generations",
    "seeder_generation_duration_seconds",
    "seeder_hashed_bytes",
    "seeder_generation_queue_depth",
    "seeder_catalog_torrents",
    "seeder_backend_errors",
    "seeder_backend_read_bytes",
    "seeder_webseed_served_bytes",
    "seeder_session_uploaded_bytes",
    "seeder_session_downloaded_bytes",
    "seeder_peers_connected",
    "seeder_torrents_seeding",
    "seeder_seed_cache_bytes",
    "seeder_seed_cache_evictions",
    "process_resident_memory_bytes",
    "process_open_fds",
}


def exercise(m: SeederMetrics) -> None:
    """Touch every metric (and every labelled one) so each family has samples."""
    m.api_requests_total.labels(operation="GetObjectTorrent", code="200").inc(2)
    m.api_requests_total.labels(operation="GetObjectTorrent", code="403").inc()
    m.api_request_duration_seconds.labels(operation="GetObjectTorrent").observe(0.004)
    m.generations_total.labels(result="ok").inc()
    m.generation_duration_seconds.observe(12.5)
    m.hashed_bytes_total.inc(1 << 20)
    m.generation_queue_depth.set(3)
    m.catalog_torrents.set(42)
    m.backend_errors_total.labels(bucket="b1", kind="unavailable").inc()
    m.backend_read_bytes_total.labels(bucket="b1").inc(1 << 20)
    m.webseed_served_bytes_total.labels(bucket="b1").inc(16384)
    m.add_session_totals(1000, 200)
    m.peers_connected.set(5)
    m.torrents_seeding.set(2)
    m.seed_cache_bytes.set(1 << 30)
    m.seed_cache_evictions_total.inc()


class Scraped:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


async def fetch(url: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> Scraped:
    def go() -> Scraped:
        req = urllib.request.Request(url, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return Scraped(
                    resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
                )
        except urllib.error.HTTPError as err:
            return Scraped(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())

    return await trio.to_thread.run_sync(go)


async def start(nursery: trio.Nursery) -> tuple[str, SeederMetrics]:
    registry = CollectorRegistry()
    m = SeederMetrics(registry)
    exercise(m)
    bound = await nursery.start(serve_metrics, registry, "127.0.0.1", 0)
    host, port = bound[0]
    return f"http://{host}:{port}", m


async def promtool_check(text: bytes) -> tuple[int, str]:
    assert PROMTOOL is not None
    with trio.fail_after(30):
        result = await trio.run_process(
            [PROMTOOL, "check", "metrics"],
            stdin=text,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return result.returncode, (result.stdout + result.stderr).decode()


async def test_scrape_parses_with_every_metric(nursery: trio.Nursery) -> None:
    base, _ = await start(nursery)
    got = await fetch(base + "/metrics")
    assert got.status == 200
    assert got.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(got.body.decode())}
    assert EXPECTED <= set(families), EXPECTED - set(families)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    key = (("code", "200"), ("operation", "GetObjectTorrent"))
    assert samples[("seeder_api_requests_total", key)] == 2
    assert samples[("seeder_session_uploaded_bytes_total", ())] == 1000
    assert samples[("seeder_catalog_torrents", ())] == 42
    assert families["seeder_generation_duration_seconds"].type == "histogram"
    assert families["seeder_api_requests"].type == "counter"


async def test_metrics_follow_live_values(nursery: trio.Nursery) -> None:
    base, m = await start(nursery)
    m.catalog_torrents.set(7)
    body = (await fetch(base + "/metrics")).body.decode()
    assert "seeder_catalog_torrents 7.0" in body.splitlines()


@needs_promtool
async def test_promtool_accepts_the_scrape(nursery: trio.Nursery) -> None:
    base, _ = await start(nursery)
    text = (await fetch(base + "/metrics")).body
    code, output = await promtool_check(text)
    print(output)
    assert code == 0, output
    assert output.strip() == "", output  # lint findings are printed even when harmless


@needs_promtool
async def test_promtool_check_is_live() -> None:
    """The lint step can fail: a counter without _total is reported."""
    bad = b"# HELP seeder_things Things.\n# TYPE seeder_things counter\nseeder_things 1\n"
    code, output = await promtool_check(bad)
    assert code != 0
    assert "_total" in output


async def test_openmetrics_on_request(nursery: trio.Nursery) -> None:
    base, _ = await start(nursery)
    got = await fetch(
        base + "/metrics",
        headers={"Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"},
    )
    assert got.status == 200
    assert got.headers["content-type"].startswith("application/openmetrics-text")
    assert got.body.endswith(b"# EOF\n")
    assert b"seeder_api_requests_total{" in got.body


async def test_gzip_when_accepted(nursery: trio.Nursery) -> None:
    base, _ = await start(nursery)
    got = await fetch(base + "/metrics", headers={"Accept-Encoding": "gzip"})
    assert got.headers.get("content-encoding") == "gzip"
    assert b"seeder_catalog_torrents 42.0" in gzip.decompress(got.body)
    plain = await fetch(base + "/metrics", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in plain.headers
    assert b"seeder_catalog_torrents 42.0" in plain.body


async def test_head_has_no_body(nursery: trio.Nursery) -> None:
    base, _ = await start(nursery)
    got = await fetch(base + "/metrics", method="HEAD")
    assert got.status == 200
    assert got.body == b""
    assert int(got.headers["content-length"]) > 0


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 404),
        ("GET", "/metricsx", 404),
        ("GET", "/metrics/", 404),
        ("GET", "/b/k?torrent", 404),
        ("GET", "/metrics?name[]=x", 200),
        ("POST", "/metrics", 405),
        ("DELETE", "/metrics", 405),
    ],
)
async def test_other_paths_and_methods(
    nursery: trio.Nursery, method: str, path: str, status: int
) -> None:
    base, _ = await start(nursery)
    got = await fetch(base + path, method=method)
    assert got.status == status
    if status == 405:
        assert got.headers["allow"] == "GET, HEAD"
    if status != 200:
        assert b"seeder_" not in got.body
