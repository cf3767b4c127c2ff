"""contrib/grafana/s3torrent.json against a running daemon: every metric its PromQL names
exists in the daemon's /metrics (histograms through _bucket/_sum/_count), every query parses
(promtool check rules), the data source is a template variable, and the panels cover what the
dashboard promises."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import trio

from seeder.ops.daemon import Daemon, serve
from tests.integration.test_status_page import config, get

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "contrib" / "grafana" / "s3torrent.json"
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                "group_left", "group_right", "inf", "nan"}


def panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def exprs(dash: dict) -> list[str]:
    return [t["expr"] for p in panels(dash) for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (bare names and ``__name__=~"a|b"``)."""
    names = {n for m in re.finditer(r'__name__=~?"([^"]*)"', expr) for n in m[1].split("|")}
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    for m in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        if e[m.end():].lstrip().startswith("(") or m[0].lower() in PROMQL_WORDS:
            continue  # a function or a keyword
        names.add(m[0])
    return names


def exposed(text: str) -> set[str]:
    """Every sample name /metrics can show, from its TYPE lines (a labelled metric has no
    sample before its first event) and its samples."""
    out: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            out |= {name + s for s in ("_bucket", "_sum", "_count")} if kind == "histogram" \
                else {name}
        elif line and not line.startswith("#"):
            out.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return out


def test_metric_name_extraction():
    assert metric_names(
        'histogram_quantile(0.99, sum by (le, op) (rate(a_bucket{x=~"b|c", y="{}"}[$__rate_'
        'interval]))) / on (instance) group_left sum(b_total offset 5m) + time()'
        ' - sum(rate({__name__=~"c_total|d_total", i=~"$i"}[5m]))'
    ) == {"a_bucket", "b_total", "c_total", "d_total"}


def test_dashboard_shape():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["schemaVersion"] >= 39 and dash["uid"] and dash["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["includeAll"] and variables["instance"]["multi"]
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids))
    for p in panels(dash):
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert all('instance=~"$instance"' in t["expr"] for t in p["targets"]), p["title"]
    names = set().union(*map(metric_names, exprs(dash)))
    for needed in ("seeder_api_requests_total", "seeder_generations_total",
                   "seeder_generation_queue_depth", "tracker_announces_total", "tracker_peers",
                   "seeder_session_uploaded_bytes_total", "seeder_backend_read_bytes_total",
                   "seeder_seed_cache_bytes"):
        assert needed in names, needed
    assert sum("by (instance)" in e for e in exprs(dash)) >= 5  # per-node panels


async def test_every_metric_of_the_dashboard_is_in_a_running_daemons_metrics(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    for d in ("pub", "priv"):
        (tmp_path / d).mkdir()
    daemon: Daemon = await nursery.start(
        lambda task_status: serve(config(tmp_path), task_status=task_status))
    host, port = daemon.bound.metrics
    with trio.fail_after(30):
        text = (await get(f"http://{host}:{port}/metrics")).body.decode()
    dash = json.loads(DASHBOARD.read_text())
    names = set().union(*map(metric_names, exprs(dash)))
    assert len(names) >= 20
    assert names <= exposed(text), sorted(names - exposed(text))


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (scripts/test.sh installs Debian's prometheus)")
async def test_every_query_parses(tmp_path: Path) -> None:
    dash = json.loads(DASHBOARD.read_text())
    rules = [{"record": f"dashboard:query{i}",
              "expr": e.replace("$__rate_interval", "5m").replace("$instance", ".*")}
             for i, e in enumerate(exprs(dash))]
    path = tmp_path / "rules.json"  # YAML is a superset of JSON
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    with trio.fail_after(30):
        done = await trio.run_process(["promtool", "check", "rules", str(path)],
                                      capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
