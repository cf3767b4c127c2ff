"""seeder.status's pure parts: the SVG chart, the rate history, ?page= parsing, the pager's
numbers and the ring of logged warnings (no sockets, no trio)."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import pytest

from seeder.status.chart import human_bytes, nice_ceiling, render_chart
from seeder.status.errors import MAX_MESSAGE, ErrorRing
from seeder.status.history import RateHistory, RatePoint
from seeder.status.paging import PER_PAGE, PageError, parse_page

SVG = "{http://www.w3.org/2000/svg}"


def test_history_rates_window_and_bound():
    h = RateHistory(window=60, every=10, smooth=0)
    h.add(100.0, 0, 0)
    assert h.points(100.0) == [] and h.latest() is None  # the first sample is the baseline
    h.add(110.0, 10_000, 500)
    h.add(110.0, 99_999, 99_999)  # a clock that did not move: ignored
    h.add(120.0, 30_000, 500)
    assert h.points(120.0) == [RatePoint(110.0, 1000.0, 50.0), RatePoint(120.0, 2000.0, 0.0)]
    h.add(130.0, 5_000, 600)  # the upload total went down: a new session, all of it is new
    assert h.latest() == RatePoint(130.0, 500.0, 10.0)
    for i in range(1000):
        h.add(140.0 + 10 * i, 0, 0)
    assert len(h._samples) <= 60 // 10 + 3  # bounded whatever the uptime
    assert all(p.t >= 10130.0 - 60 for p in h.points(10130.0))
    with pytest.raises(ValueError):
        RateHistory(window=0)


def test_history_smooths_steps():
    """Totals that move in steps every 20 s, sampled every 10 s: over 20 s the rate is flat
    where adjacent samples alone would alternate between 0 and twice the rate."""
    h = RateHistory(window=3600, every=10, smooth=20)
    for i in range(12):
        h.add(10.0 * i, 2000 * (i // 2), 0)
    rates = [p.upload for p in h.points(110.0)]
    assert rates[0] == 0.0 and rates[2:] == [100.0] * 9
    assert h.latest() == RatePoint(110.0, 100.0, 0.0)


def test_chart_is_well_formed_svg_with_two_series():
    points = [RatePoint(3000.0 + 10 * i, 1e6 * (i % 7), 2e5 * (i % 3)) for i in range(60)]
    svg = render_chart(points, now=3600.0)
    root = ET.fromstring(svg)
    assert root.tag == SVG + "svg" and root.get("role") == "img"
    lines = root.findall(SVG + "polyline")
    assert sorted(line.get("class") for line in lines) == ["origin", "up"]
    for line in lines:
        coords = [tuple(map(float, p.split(","))) for p in line.get("points").split()]
        assert len(coords) == 60
        assert all(72 <= x <= 708 and 28 <= y <= 188 for x, y in coords)  # inside the plot
    labels = [t.text for t in root.iter(SVG + "text")]
    assert "now" in labels and "-60 min" in labels and "10 MiB/s" in labels
    assert root.find(SVG + "title").text.startswith("Upload and origin")
    assert "script" not in svg and "style=" not in svg and "href" not in svg


def test_chart_without_samples():
    root = ET.fromstring(render_chart([], now=0.0))
    assert root.findall(SVG + "polyline") == []
    assert "No samples yet." in root.find(SVG + "desc").text


@pytest.mark.parametrize(("value", "ceiling"), [
    (0, 1024), (1000, 1024), (1500, 2048), (3000, 5120), (6000, 10240),
    (1024 * 1024 * 3, 1024 * 1024 * 5), (1024**3 * 1.1, 1024**3 * 2),
    (763 * 1024, 1024 * 1024), (1010 * 1024, 1024 * 1024), (1024**2, 1024**2),
])
def test_nice_ceiling(value, ceiling):
    assert nice_ceiling(value) == ceiling


def test_human_bytes():
    assert [human_bytes(n) for n in (0, 1023, 1024, 1536, 300_000, 5 * 1024**3)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "293 KiB", "5.0 GiB"]


def test_parse_page():
    assert parse_page(b"", 0).pages == 1  # an empty catalog has one empty page
    p = parse_page(b"page=3&x=1", 2500)
    assert (p.number, p.pages, p.offset, p.first, p.last) == (3, 3, 2000, 2001, 2500)
    assert parse_page(b"", 1000).pages == 1 and parse_page(b"", 1001).pages == 2
    assert PER_PAGE == 1000
    for bad in (b"page=4", b"page=0", b"page=-1", b"page=x", b"page=", b"page=1&page=1",
                b"page=%EF%BC%91", b"page=1e3", b"page=+1", b"page=" + b"9" * 30):
        with pytest.raises(PageError):
            parse_page(bad, 2500)


def test_pager_numbers():
    from seeder.status.page import page_numbers

    assert page_numbers(1, 1) == [1]
    assert page_numbers(1, 5) == [1, 2, 3, 4, 5]
    assert page_numbers(10, 20) == [1, None, 8, 9, 10, 11, 12, None, 20]
    assert page_numbers(20, 20) == [1, None, 18, 19, 20]
    assert page_numbers(1, 7) == [1, 2, 3, None, 7]
    assert page_numbers(5, 9) == [1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_error_ring_keeps_the_last_lines():
    ring = ErrorRing(size=3)
    log = logging.getLogger("test.status.ring")
    log.addHandler(ring)
    log.propagate = False
    try:
        log.info("not kept")
        for i in range(5):
            log.warning("problem %d\nsecond line", i)
        try:
            raise OSError("disk on fire")
        except OSError:
            log.exception("x" * 1000)
    finally:
        log.removeHandler(ring)
        log.propagate = True
    recent = ring.recent()
    assert ring.seen == 6 and len(recent) == 3
    assert recent[0].level == "ERROR" and len(recent[0].message) == MAX_MESSAGE
    assert [e.message for e in recent[1:]] == ["problem 4 second line", "problem 3 second line"]
    assert recent[1].logger == "test.status.ring"


def test_templates_are_package_data():
    """`pip install .` ships every file the page loads (pyproject's package-data globs)."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["seeder.status"]
    files = [p.relative_to(root / "seeder" / "status").as_posix()
             for p in (root / "seeder" / "status" / "templates").iterdir()]
    assert {"templates/status.html", "templates/status.css"} <= set(files)
    for f in files:
        assert any(fnmatch.fnmatch(f, g) for g in globs), f
