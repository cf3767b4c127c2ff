"""contrib/grafana/s3torrent.json against a running daemon: every metric its PromQL names
exists in the daemon's /metrics (histograms through _bucket/_sum/_count), every query parses
(promtool check rules), the data source is a template variable, and the panels cover what the
dashboard promises."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.helpers import free_port, wait_until
from tests.integration.test_cli import clean_env
from tests.integration.test_status_page import fetch
from tests.redis_server import RedisServer

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
    assert sum("by (instance" in e for e in exprs(dash)) >= 5  # per-node panels
    assert "seeder_cluster_nodes" in names and "seeder_cluster_degraded" in names


def test_every_metric_of_the_dashboard_is_in_a_running_daemons_metrics(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """``seeder serve`` in cluster mode (a node of one), so that the cluster panels' metrics
    exist too; stopped by PID."""
    (tmp_path / "pub").mkdir()
    ports = [free_port() for _ in range(3)]
    (tmp_path / "seeder.toml").write_text(f"""
[server]
listen = "127.0.0.1:{ports[0]}"
[tracker]
listen = "127.0.0.1:{ports[1]}"
[metrics]
listen = "127.0.0.1:{ports[2]}"
[state]
dir = "state"
[scanner]
enabled = false
[seeding]
enabled = false
[cluster]
redis_url = "{redis_server.url(5)}"
node_id = "grafana"
[[buckets]]
name = "pub"
path = "pub"
""")
    url = f"http://127.0.0.1:{ports[2]}/metrics"
    proc = subprocess.Popen([sys.executable, "-m", "seeder", "serve", "--config", "seeder.toml"],
                            cwd=tmp_path, env=clean_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def up() -> bool:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                return fetch(url).status == 200
            except OSError:
                return False

        wait_until(up, 30.0, interval=0.05, what="the daemon's /metrics answers")
        text = fetch(url).body.decode()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()
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
