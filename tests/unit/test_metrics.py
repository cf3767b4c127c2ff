"""The metric set itself: names by the Prometheus conventions, session total deltas."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from seeder.metrics import SeederMetrics, counter_delta


def metric_attrs(m: SeederMetrics) -> dict[str, object]:
    return {k: v for k, v in vars(m).items() if isinstance(v, Counter | Gauge | Histogram | Info)}


@pytest.mark.parametrize(
    ("last", "now", "expected"),
    [(0, 0, 0), (0, 10, 10), (10, 25, 15), (25, 25, 0), (25, 7, 7), (2**40, 2**40 + 1, 1)],
)
def test_counter_delta(last: int, now: int, expected: int) -> None:
    assert counter_delta(last, now) == expected


def test_session_totals_feed_counters_by_difference() -> None:
    m = SeederMetrics(CollectorRegistry())
    m.add_session_totals(100, 10)
    m.add_session_totals(250, 10)
    m.add_session_totals(40, 5)  # session restarted: its totals start again from zero
    assert m.registry.get_sample_value("seeder_session_uploaded_bytes_total") == 290
    assert m.registry.get_sample_value("seeder_session_downloaded_bytes_total") == 15


def test_names_follow_prometheus_conventions() -> None:
    m = SeederMetrics(CollectorRegistry())
    attrs = metric_attrs(m)
    assert len(attrs) >= 17
    for attr, metric in attrs.items():
        name = metric._name  # family name; counters without their _total
        assert name.startswith("seeder_"), name
        if isinstance(metric, Counter):
            assert attr == name.removeprefix("seeder_") + "_total", attr
        elif isinstance(metric, Info):
            assert attr == name.removeprefix("seeder_") + "_info", attr
        else:
            assert attr == name.removeprefix("seeder_"), attr
        for bad in ("milliseconds", "kilobytes", "megabytes", "_kb", "_mb", "_ms"):
            assert bad not in name, name
        if "bytes" in name:
            assert name.endswith("bytes"), f"{name}: the unit goes last"
        if isinstance(metric, Histogram):
            assert name.endswith("_seconds"), name


def test_generation_buckets_reach_an_hour() -> None:
    m = SeederMetrics(CollectorRegistry())
    m.generation_duration_seconds.observe(3000)
    assert (
        m.registry.get_sample_value("seeder_generation_duration_seconds_bucket", {"le": "3600.0"})
        == 1
    )
    assert (
        m.registry.get_sample_value("seeder_generation_duration_seconds_bucket", {"le": "1800.0"})
        == 0
    )


def test_build_info_carries_the_version() -> None:
    from seeder import __version__

    text = generate_latest(SeederMetrics(CollectorRegistry()).registry).decode()
    assert f'seeder_build_info{{version="{__version__}"}} 1.0' in text


def test_one_registry_per_instance() -> None:
    registry = CollectorRegistry()
    SeederMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        SeederMetrics(registry)
