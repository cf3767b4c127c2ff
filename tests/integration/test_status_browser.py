"""The status page in a real browser: headless Chromium (Debian package ``chromium``,
installed by scripts/test.sh) loads it from a running daemon. Its DOM (``--dump-dom``, after
parsing, under the page's CSP) holds the torrent rows and the chart's <svg> and no script; a
screenshot at 1280x900 and one at phone width are written under the test's temp dir."""

from __future__ import annotations

import re
import shutil
import struct
from pathlib import Path

import pytest
import trio

from seeder.ops.daemon import Daemon, serve
from tests.integration.test_status_page import EVIL, config, fill_catalog

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (scripts/test.sh installs Debian's chromium)"
)
DEADLINE = 90.0  # s per browser run: Chromium starts slowly on 2 busy cores
TORRENTS = 1200  # two pages


def browser(profile: Path, *args: str) -> list[str]:
    assert CHROMIUM is not None
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", *args]


async def run(cmd: list[str]) -> bytes:
    with trio.fail_after(DEADLINE):
        done = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True,
                                      check=False, stdin=b"")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


async def test_chromium_renders_the_page(tmp_path: Path, nursery: trio.Nursery) -> None:
    for d in ("pub", "priv"):
        (tmp_path / d).mkdir()
    cfg = config(tmp_path)
    fill_catalog(cfg, TORRENTS)
    daemon: Daemon = await nursery.start(lambda task_status: serve(cfg, task_status=task_status))
    host, port = daemon.bound.metrics
    url = f"http://{host}:{port}/"
    profile = tmp_path / "chromium-profile"

    dom = (await run(browser(profile, "--dump-dom", url))).decode()
    assert "<title>s3torrent seeder" in dom
    assert len(re.findall(r'<tr class="torrent">', dom)) == 1000
    assert re.search(r'<svg class="chart"[^>]*>', dom) and "<polyline" not in dom.split(
        "<svg", 1)[0]
    assert "<script" not in dom  # the key below stayed text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.txt" in dom and EVIL not in dom
    assert 'href="?page=2"' in dom

    shot = tmp_path / "status.png"
    await run(browser(profile, f"--screenshot={shot}", "--window-size=1280,900",
                      "--hide-scrollbars", url))
    assert png_size(shot) == (1280, 900)
    assert shot.stat().st_size > 20_000  # text, tables and a chart, not a blank page

    phone = tmp_path / "status-phone.png"
    await run(browser(profile, f"--screenshot={phone}", "--window-size=390,844",
                      "--hide-scrollbars", url))
    assert png_size(phone)[0] == 390 and phone.stat().st_size > 10_000
