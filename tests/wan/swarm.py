"""One swarm over the WAN lab: the object store, the daemon, the clients, and what they did.

`Services` starts, in the lab's namespaces: moto (host ``s3``, loopback) behind
tests/wan/countproxy.py (the store's bytes out, on its link), and the daemon (host ``srv``:
``seeder serve`` with a config written from the `Shape`: web seed in proxy mode, tracker,
metrics, seeding). `run_swarm` puts the object, gets its torrent, starts every client of the
shape at once and waits (polled, bounded by ``shape.deadline``); `run_plain_http` has the
same client hosts fetch the same object by plain HTTP from the daemon's host, at once, for
the baseline. Bytes are counted, never inferred from times: S3 by the proxy, the daemon by
its metrics (BitTorrent payload + web seed body) and by its link counter (wire bytes).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.wan import clients as lab_clients
from tests.wan.lab import Lab, Shape

COUNTPROXY = Path(__file__).resolve().parent / "countproxy.py"
REPO = Path(__file__).resolve().parents[2]
BUCKET = "lab"
KEY = "object.bin"
MOTO_PORT = 5000  # in the s3 host's own namespace: fixed ports cannot collide
PROXY_PORT = 9000
API_PORT, TRACKER_PORT, METRICS_PORT, PLAIN_PORT = 8000, 6969, 9100, 8001
POLL = 0.25  # s between completion polls
START_DEADLINE = 120.0  # s for a service to answer
SAMPLE_EVERY = 1.0  # s between link counter samples (the daemon's peak rate)


@dataclass
class ClientResult:
    kind: str
    host: str
    seconds: float | None  # None: did not complete
    verified: bool  # its file's sha1 is the object's
    error: str | None = None


@dataclass
class SwarmResult:
    shape: Shape
    clients: list[ClientResult]
    s3_bytes: int  # the store's bytes out, generation included
    daemon_payload: int  # BitTorrent payload + web seed body bytes
    webseed_bytes: int
    daemon_wire: int  # bytes out of the daemon host's link during the swarm
    peak_rate: float  # highest daemon link rate over one SAMPLE_EVERY window, bytes/s
    rates: list[float] = field(default_factory=list)  # every window's rate, bytes/s
    # Each host's link per SAMPLE_EVERY window: (seconds since the start, host -> (bytes
    # sent, bytes received) since the start); who served whom when, for the logs.
    timeline: list[tuple[float, dict[str, tuple[int, int]]]] = field(default_factory=list)
    # At each timeline entry, each host's bytes sent to each other host since the start
    # (`Lab.pair_bytes`; empty with the Python delay line): who served whom.
    pairs: list[dict[str, dict[str, int]]] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        times = [c.seconds for c in self.clients if c.seconds is not None]
        return statistics.median(times) if len(times) == len(self.clients) else None

    def copies(self, n: int) -> float:
        return n / self.shape.size

    def summary(self) -> dict[str, Any]:
        return {
            "s3_copies": round(self.copies(self.s3_bytes), 3),
            "daemon_copies": round(self.copies(self.daemon_payload), 3),
            "webseed_copies": round(self.copies(self.webseed_bytes), 3),
            "daemon_wire_copies": round(self.copies(self.daemon_wire), 3),
            "daemon_peak_mbit": round(self.peak_rate * 8 / 1e6, 1),
            "median_s": None if self.median is None else round(self.median, 1),
            "ideal_s": round(self.shape.ideal(), 1),
            "clients": [
                {"kind": c.kind, "host": c.host, "s": None if c.seconds is None
                 else round(c.seconds, 1), "verified": c.verified, "error": c.error}
                for c in self.clients
            ],
            "timeline": timeline_mib(self.timeline, self.pairs),
        }


def timeline_mib(timeline: list[tuple[float, dict[str, tuple[int, int]]]],
                 pairs: list[dict[str, dict[str, int]]] | None = None) -> dict[str, Any]:
    """The timeline as {"t": [s...], host: {"up": [MiB...], "down": [MiB...]}} (cumulative),
    with ``pairs`` (one per entry) as "sent_to": {host: {other host: [MiB...]}}."""
    out: dict[str, Any] = {"t": [round(t, 1) for t, _ in timeline]}
    for _, hosts in timeline[:1]:
        for host in hosts:
            out[host] = {
                way: [round(h[host][i] / 2**20, 1) for _, h in timeline]
                for i, way in enumerate(("up", "down"))
            }
    if pairs and len(pairs) == len(timeline):
        out["sent_to"] = {
            src: {dst: [round(p.get(src, {}).get(dst, 0) / 2**20, 1) for p in pairs]
                  for dst in dsts}
            for src, dsts in pairs[0].items()
        }
    return out


class Services:
    """The store and the daemon of one lab (see the module doc); `close` stops them."""

    def __init__(self, lab: Lab, seeder_toml_extra: str = "", daemon_tree: Path = REPO) -> None:
        """``daemon_tree``: the checkout whose ``seeder`` runs (another build, for A/B)."""
        self.lab = lab
        self.daemon_tree = daemon_tree
        self.shape = lab.shape
        self.dir = lab.workdir
        self.extra = seeder_toml_extra
        self.count_file = self.dir / "s3-bytes"
        self.object = self.dir / "object" / KEY
        self.sha1 = ""
        self.procs: list[subprocess.Popen[Any]] = []

    def start(self) -> None:
        self._make_object()
        s3 = self.lab.hosts["s3"].addr
        self._log_popen("s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                               "-p", str(MOTO_PORT)], "moto.log")
        self._log_popen("s3", [sys.executable, str(COUNTPROXY), s3, str(PROXY_PORT),
                               "127.0.0.1", str(MOTO_PORT), str(self.count_file)], "proxy.log")
        _wait(lambda: self.lab.call("s3", _get, f"http://127.0.0.1:{MOTO_PORT}/", 5),
              "moto in the s3 host")
        self.lab.call("s3", _put_object, f"http://127.0.0.1:{MOTO_PORT}", self.object)
        config = self.dir / "seeder.toml"
        config.write_text(self._config())
        self._log_popen("srv", [sys.executable, "-m", "seeder", "serve", "--config",
                                str(config)], "seeder.log", self.daemon_tree)
        _wait(lambda: self.metrics(), "the daemon's metrics")

    def close(self) -> None:
        for proc in reversed(self.procs):
            lab_stop(proc)
        self.procs.clear()

    def metrics(self) -> dict[str, float]:
        """The daemon's metrics (name{labels} -> value) read from its host."""
        srv = self.lab.hosts["srv"].addr
        text = self.lab.call("srv", _get, f"http://{srv}:{METRICS_PORT}/metrics", 10).decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def daemon_bytes(self) -> tuple[int, int]:
        """(BitTorrent payload + web seed body bytes, web seed body bytes) the daemon sent."""
        m = self.metrics()
        up = sum(v for k, v in m.items() if k.startswith("seeder_session_uploaded_bytes_total"))
        web = sum(v for k, v in m.items() if k.startswith("seeder_webseed_served_bytes_total"))
        return int(up + web), int(web)

    def s3_bytes(self) -> int:
        return int(self.count_file.read_text().strip() or 0)

    def torrent(self, host: str = "c0") -> bytes:
        """GetObjectTorrent from ``host`` (the daemon reads and hashes the object once)."""
        srv = self.lab.hosts["srv"].addr
        url = f"http://{srv}:{API_PORT}/{BUCKET}/{KEY}?torrent"
        return self.lab.call(host, _get, url, 600)

    def _make_object(self) -> None:
        self.object.parent.mkdir(parents=True, exist_ok=True)
        rng = random.Random(16)  # randbytes of more than 256 MiB at once overflows
        data = b"".join(rng.randbytes(min(1 << 20, self.shape.size - at))
                        for at in range(0, self.shape.size, 1 << 20))
        self.object.write_bytes(data)
        self.sha1 = hashlib.sha1(data).hexdigest()

    def _log_popen(self, host: str, argv: list[str], log: str,
                   tree: Path = REPO) -> subprocess.Popen[Any]:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        with (self.dir / log).open("wb") as f:
            proc = self.lab.popen(host, argv, stdout=f, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, cwd=tree, env=env)
        self.procs.append(proc)
        return proc

    def _config(self) -> str:
        srv, s3 = self.lab.hosts["srv"].addr, self.lab.hosts["s3"].addr
        shape = self.shape
        return f"""\
[server]
listen = "{srv}:{API_PORT}"
public_url = "http://{srv}:{API_PORT}"

[tracker]
listen = "{srv}:{TRACKER_PORT}"
public_url = "http://{srv}:{TRACKER_PORT}/announce"
min_interval = 5

[metrics]
listen = "{srv}:{METRICS_PORT}"

[state]
dir = "{self.dir / 'state'}"

[scanner]
enabled = false

[seeding]
listen_interfaces = "{srv}:6881"
{"" if shape.swarm_budget is None else f"swarm_budget = {shape.swarm_budget}"}
upload_rate_limit = {shape.upload_rate_limit}
{self.extra}
[[buckets]]
name = "{BUCKET}"
backend = "s3"
endpoint_url = "http://{s3}:{PROXY_PORT}"
region = "us-east-1"
access_key = "testing"
secret_key = "testing"
webseed = "proxy"
"""


def run_swarm(services: Services, workdir: Path) -> SwarmResult:
    """Get the torrent, run every client of the shape at once until all are done or the
    deadline passes; what they and the daemon did."""
    lab, shape = services.lab, services.shape
    tpath = workdir / "object.torrent"
    workdir.mkdir(parents=True, exist_ok=True)
    tpath.write_bytes(services.torrent())
    _wait(lambda: services.metrics().get("seeder_torrents_seeding", 0) >= 1 or None,
          "the daemon's session seeding the object")
    payload0, web0 = services.daemon_bytes()
    wire0 = lab.tx_bytes("srv")
    started: list[lab_clients.Client] = []
    try:
        for i, kind in enumerate(shape.clients):
            started.append(lab_clients.start(lab, kind, f"c{i}", tpath, workdir / f"c{i}-{kind}",
                                             KEY, shape.deadline))
        rates, timeline, pairs = _wait_clients(lab, started, shape.deadline)
    finally:
        for c in started:
            c.stop()
    payload, web = services.daemon_bytes()
    results = [
        ClientResult(c.kind, c.host, c.seconds,
                     c.seconds is not None and _sha1(c.file) == services.sha1, c.error)
        for c in started
    ]
    return SwarmResult(
        shape=shape, clients=results, s3_bytes=services.s3_bytes(),
        daemon_payload=payload - payload0, webseed_bytes=web - web0,
        daemon_wire=lab.tx_bytes("srv") - wire0, peak_rate=max(rates, default=0.0),
        rates=rates, timeline=timeline, pairs=pairs,
    )


def run_plain_http(services: Services) -> list[float | None]:
    """Every client host fetches the object by plain HTTP from the daemon's host at once
    (curl; a static file server): the seconds each took (None: failed or wrong size)."""
    lab, shape = services.lab, services.shape
    srv = lab.hosts["srv"].addr
    server = lab.popen("srv", [sys.executable, "-m", "http.server", str(PLAIN_PORT), "--bind",
                               srv, "--directory", str(services.object.parent)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: lab.call("srv", _get, f"http://{srv}:{PLAIN_PORT}/", 5),
              "the plain HTTP server")
        url = f"http://{srv}:{PLAIN_PORT}/{KEY}"
        procs = [
            lab.popen(f"c{i}", ["curl", "-s", "-o", "/dev/null", "-m", str(int(shape.deadline)),
                                "-w", "%{time_total} %{size_download}", url],
                      stdout=subprocess.PIPE, text=True)
            for i in range(len(shape.clients))
        ]
        times: list[float | None] = []
        for proc in procs:
            out, _ = proc.communicate(timeout=shape.deadline + 30)
            seconds, got = out.split() if out.strip() else ("0", "0")
            ok = proc.returncode == 0 and int(float(got)) == shape.size
            times.append(float(seconds) if ok else None)
        return times
    finally:
        lab_stop(server)


def lab_stop(proc: subprocess.Popen[Any]) -> None:
    from tests.wan.lab import stop

    stop(proc)


def _wait_clients(
    lab: Lab, started: list[lab_clients.Client], deadline: float
) -> tuple[list[float], list[tuple[float, dict[str, tuple[int, int]]]],
           list[dict[str, dict[str, int]]]]:
    """Poll the clients until all are done (bounded by ``deadline``); the daemon link's
    rate per SAMPLE_EVERY window meanwhile, every host's link bytes and its bytes to each
    other host (`SwarmResult`)."""
    end = time.monotonic() + deadline
    rates: list[float] = []
    # Each counter is read, then its time taken: starting `ip netns exec` under load takes
    # 10-100s of ms, which a time taken before the read would count out of the window.
    last_b = lab.tx_bytes("srv")
    t0 = last_t = time.monotonic()
    base = lab.link_bytes()
    base_pairs = lab.pair_bytes()
    timeline: list[tuple[float, dict[str, tuple[int, int]]]] = []
    pairs: list[dict[str, dict[str, int]]] = []
    while time.monotonic() < end:
        if all([c.poll() for c in started]):
            break
        time.sleep(POLL)  # polling real processes on a deadline
        if time.monotonic() - last_t >= SAMPLE_EVERY:
            b = lab.tx_bytes("srv")
            now = time.monotonic()
            rates.append((b - last_b) / (now - last_t))
            last_t, last_b = now, b
            links, sent = lab.link_bytes(), lab.pair_bytes()
            timeline.append((now - t0, {
                h: (up - base[h][0], down - base[h][1]) for h, (up, down) in links.items()
                if h in base
            }))
            pairs.append({
                src: {dst: n - base_pairs[src].get(dst, 0) for dst, n in to.items()}
                for src, to in sent.items() if src in base_pairs
            })
    return rates, timeline, pairs


def _wait(probe: Any, what: str, deadline: float = START_DEADLINE) -> None:
    end = time.monotonic() + deadline
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            if probe():
                return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.2)  # polling a starting process
    raise RuntimeError(f"timed out waiting for {what}: {last}")


def _get(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def _put_object(endpoint: str, path: Path) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=BUCKET)
    with path.open("rb") as f:
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=f, ACL="public-read")


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError:
        return ""
    return h.hexdigest()


def dump(result: SwarmResult) -> str:
    return json.dumps(result.summary())
