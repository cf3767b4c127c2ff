"""S3 event notifications: event -> servable torrent, and events/s accepted, side by side.

Starts ``python -m moto.server`` and ``python -m seeder serve`` (events on, scanner and
seeding off, a moto bucket) as processes on loopback, both stopped by PID at the end. Then:

1. Latency, per round, alternating which goes first:
   - event: upload a new 1 MiB object, POST its MinIO-shaped ``s3:ObjectCreated:Put`` event,
     and poll the daemon's catalog (SQLite, read-only, every 2 ms) until the torrent is
     there: from the POST being sent to a torrent GetObjectTorrent serves without hashing.
   - request: upload another new 1 MiB object and GET ``?torrent`` (the daemon HEADs and
     hashes it while the client waits): what a client pays without events.
   Prints each round, the medians, and event / request (goal: the event path under 1 s).
2. Throughput: ``--keys`` objects uploaded, made current by one event each, then
   ``--events`` single-record POSTs for those keys (ETag and size as the catalog has them,
   a new sequencer each, so every one is admitted and queued; the workers find them current
   without a HEAD), pipelined over ``--connections`` keep-alive connections, 32 requests in
   flight on each. Side by side, the same number of GetObjectTorrent requests for the same
   keys (cached torrents) through the same client. Prints events/s (goal >= 2000/s) and the
   ratio to GetObjectTorrent/s.

    python benchmarks/bench_events.py [--rounds 5] [--keys 200] [--events 20000]
                                      [--connections 4]

A script, not a test: numbers depend on the machine and on what else runs on it (client,
daemon and moto share the cores).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from procs import answers, free_port, stop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MiB = 1024 * 1024
BUCKET = "bench-events"
TOKEN = "bench-token"
DEADLINE = 60.0  # seconds for anything to happen
PIPELINE = 32  # requests in flight per connection
CREDS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}
FIXTURE = json.loads((ROOT / "tests" / "fixtures" / "events" / "minio_put.json").read_text())


def wait_for(predicate: Any, what: str, interval: float = 0.002) -> None:
    end = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(interval)


def start(args: list[str], url: str, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    wait_for(lambda: proc.poll() is not None or answers(url), url, 0.05)
    if proc.poll() is not None:
        raise SystemExit(f"{args[2]} exited ({proc.returncode}); see {log}")
    return proc


def event_body(key: str, etag: str, size: int, sequencer: int) -> bytes:
    doc = json.loads(json.dumps(FIXTURE))
    doc["Key"] = f"{BUCKET}/{key}"
    obj = doc["Records"][0]["s3"]["object"]
    obj.update(key=urllib.parse.quote_plus(key, safe=""), eTag=etag, size=size,
               sequencer=f"{sequencer:016X}")
    doc["Records"][0]["s3"]["bucket"]["name"] = BUCKET
    return json.dumps(doc).encode()


def post_event(port: int, body: bytes) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    conn.request("POST", "/-/events", body, {"content-type": "application/json",
                                              "authorization": f"Bearer {TOKEN}"})
    r = conn.getresponse()
    r.read()
    conn.close()
    if r.status != 200:
        raise SystemExit(f"event refused: {r.status}")


def get_torrent(port: int, key: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    conn.request("GET", f"/{BUCKET}/{urllib.parse.quote(key)}?torrent")
    r = conn.getresponse()
    r.read()
    conn.close()
    if r.status != 200:
        raise SystemExit(f"GetObjectTorrent: {r.status}")


def in_catalog(db: sqlite3.Connection, key: str) -> bool:
    try:
        row = db.execute("SELECT 1 FROM torrents WHERE bucket = ? AND key = ?",
                         (BUCKET, key)).fetchone()
    except sqlite3.OperationalError:  # locked for a moment by the daemon's write
        return False
    return row is not None


def pipelined(port: int, requests: list[bytes], connections: int) -> tuple[float, dict[int, int]]:
    """Send ``requests`` over ``connections`` keep-alive sockets, PIPELINE in flight on
    each (in one thread, non-blocking sockets); (seconds, {status: answers})."""
    import selectors

    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    queues = [requests[i::connections] for i in range(connections)]
    state: list[dict[str, Any]] = [{"next": 0, "done": 0, "buf": b""} for _ in socks]
    statuses: dict[int, int] = {}
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    t0 = time.perf_counter()

    def refill(i: int) -> None:
        st, q = state[i], queues[i]
        upto = min(len(q), st["done"] + PIPELINE)
        if st["next"] < upto:
            socks[i].setblocking(True)
            socks[i].sendall(b"".join(q[st["next"]:upto]))
            socks[i].setblocking(False)
            st["next"] = upto

    for i in range(connections):
        refill(i)
    remaining = sum(len(q) for q in queues)
    end = time.monotonic() + DEADLINE * 5
    while remaining and time.monotonic() < end:
        for key, _ in sel.select(timeout=1.0):
            i = key.data
            st = state[i]
            data = socks[i].recv(1 << 20)
            if not data:
                raise SystemExit("the daemon closed a connection")
            st["buf"] += data
            while True:
                head_end = st["buf"].find(b"\r\n\r\n")
                if head_end < 0:
                    break
                head = st["buf"][:head_end].lower()
                at = head.find(b"content-length:")
                length = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
                total = head_end + 4 + length
                if len(st["buf"]) < total:
                    break
                status = int(head[9:12])
                statuses[status] = statuses.get(status, 0) + 1
                st["buf"] = st["buf"][total:]
                st["done"] += 1
                remaining -= 1
            refill(i)
    seconds = time.perf_counter() - t0
    for s in socks:
        s.close()
    return seconds, statuses


def metric(port: int, name: str) -> float:
    """One sample of the daemon's /metrics (``name`` with its labels, as printed)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=DEADLINE) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--keys", type=int, default=200)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--connections", type=int, default=4)
    args = ap.parse_args()

    import boto3
    from botocore.config import Config as BotoConfig

    tmp = Path(tempfile.mkdtemp(prefix="bench-events-"))
    env = {**os.environ, **CREDS, "PYTHONPATH": str(ROOT)}
    moto_port, s3_port, metrics_port = free_port(), free_port(), free_port()
    moto = start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                 f"http://127.0.0.1:{moto_port}/moto-api/data.json", tmp / "moto.log", env)
    daemon = None
    try:
        endpoint = f"http://127.0.0.1:{moto_port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing",
                          config=BotoConfig(s3={"addressing_style": "path"}))
        s3.create_bucket(Bucket=BUCKET)
        config = tmp / "seeder.toml"
        config.write_text(f"""
[server]
listen = "127.0.0.1:{s3_port}"
public_url = "http://127.0.0.1:{s3_port}"
[tracker]
enabled = false
[metrics]
listen = "127.0.0.1:{metrics_port}"
[state]
dir = "{tmp / 'state'}"
[scanner]
enabled = false
[seeding]
enabled = false
[events]
enabled = true
[log]
level = "warning"
[[buckets]]
name = "{BUCKET}"
backend = "s3"
endpoint_url = "{endpoint}"
region = "us-east-1"
access_key = "testing"
secret_key = "testing"
""")
        daemon = start([sys.executable, "-m", "seeder", "serve", "--config", str(config)],
                       f"http://127.0.0.1:{s3_port}/", tmp / "seeder.log",
                       {**env, "SEEDER_EVENTS_TOKEN": TOKEN})
        db = sqlite3.connect(f"file:{tmp / 'state' / 'catalog.sqlite3'}?mode=ro", uri=True,
                             isolation_level=None)

        print(f"latency: {args.rounds} rounds, 1 MiB objects, moto at {endpoint}")
        body = os.urandom(MiB)
        via_event: list[float] = []
        via_request: list[float] = []
        seq = 1
        for how in ("event", "request"):  # warm-up: the first HEAD builds the boto3 client
            key = f"warm/{how}.bin"
            etag = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')
            if how == "event":
                post_event(s3_port, event_body(key, etag, MiB, seq))
                seq += 1
                wait_for(lambda k=key: in_catalog(db, k), key)
            else:
                get_torrent(s3_port, key)
        for r in range(args.rounds):
            order = ("event", "request") if r % 2 == 0 else ("request", "event")
            for how in order:
                key = f"lat/{how}-{r}.bin"
                etag = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')
                if how == "event":
                    t0 = time.perf_counter()
                    post_event(s3_port, event_body(key, etag, MiB, seq))
                    seq += 1
                    wait_for(lambda k=key: in_catalog(db, k), key)
                    via_event.append(time.perf_counter() - t0)
                else:
                    t0 = time.perf_counter()
                    get_torrent(s3_port, key)
                    via_request.append(time.perf_counter() - t0)
            print(f"  round {r + 1}: event -> servable {via_event[-1] * 1000:.0f} ms, "
                  f"GetObjectTorrent generating {via_request[-1] * 1000:.0f} ms")
        me, mr = statistics.median(via_event), statistics.median(via_request)
        print(f"  median: event {me * 1000:.0f} ms (goal < 1000), request {mr * 1000:.0f} ms, "
              f"event / request {me / mr:.2f}")

        print(f"throughput: {args.keys} current keys, {args.events} single-event POSTs, "
              f"{args.connections} connections x {PIPELINE} in flight")
        keys = [f"cur/{i:05d}.bin" for i in range(args.keys)]
        etags: dict[str, str] = {}
        sizes: dict[str, int] = {}
        for i, key in enumerate(keys):
            data = b"%d" % i * 100
            etags[key] = s3.put_object(Bucket=BUCKET, Key=key, Body=data)["ETag"].strip('"')
            sizes[key] = len(data)
            post_event(s3_port, event_body(key, etags[key], sizes[key], seq))
            seq += 1
        wait_for(lambda: all(in_catalog(db, k) for k in keys), "current keys", 0.05)
        head = (b"POST /-/events HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                b"authorization: Bearer " + TOKEN.encode() + b"\r\ncontent-length: %d\r\n\r\n")
        posts = []
        for n in range(args.events):
            key = keys[n % len(keys)]
            b = event_body(key, etags[key], sizes[key], seq)
            seq += 1
            posts.append(head % len(b) + b)
        # The baseline: the same POSTs without the token (401 after the shell parsed the
        # request and its body): what the HTTP shell costs; events add parsing and queueing.
        anon = [p.replace(b"authorization: Bearer " + TOKEN.encode() + b"\r\n", b"")
                for p in posts]
        results: dict[str, list[float]] = {}
        for what, reqs, want in (("events", posts, 200), ("no token (401)", anon, 401),
                                 ("events", posts[::-1], 200)):
            seconds, statuses = pipelined(s3_port, reqs, args.connections)
            if statuses != {want: len(reqs)}:
                raise SystemExit(f"{what}: answers {statuses}")
            results.setdefault(what, []).append(len(reqs) / seconds)
            print(f"  {what}: {len(reqs) / seconds:,.0f}/s ({seconds:.2f} s)")
        t0 = time.perf_counter()
        wait_for(lambda: metric(metrics_port, "seeder_events_queued") == 0, "queue drained")
        drain = time.perf_counter() - t0
        ev = statistics.median(results["events"])
        base = results["no token (401)"][0]
        accepted = metric(metrics_port, 'seeder_events_total{result="accepted"}')
        print(f"  events/s {ev:,.0f} (goal >= 2000), 401/s {base:,.0f}, events / 401 "
              f"{ev / base:.2f}; {accepted:.0f} events accepted in all, queue empty "
              f"{drain * 1000:.0f} ms after the last answer")
        made = db.execute("SELECT count(*) FROM torrents").fetchone()[0]
        print(f"  catalog: {made} torrents (no new generation from the flood: "
              f"{made == args.keys + 2 * args.rounds + 2})")
        db.close()
    finally:
        if daemon is not None:
            stop(daemon)
        stop(moto)


if __name__ == "__main__":
    main()
