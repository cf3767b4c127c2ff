"""A bucket of many small objects on one node (issue 19): the daemon's costs against N.

For each N (default 10k and 100k; ``--sizes 10000,100000,1000000``) it writes N files of
``--object-size`` bytes (default 1 KiB) into a local bucket (1000 per directory) and runs
``python -m seeder serve`` as a process of its own with a fresh state dir, default settings
otherwise (seeding on, on-demand cap 2000), and measures:

- first scan: the scanner's first pass (its "scan: ..." log line), objects per second;
- rescan: its second pass over the unchanged bucket (nothing hashed, nothing read; the
  scanner runs every second for this part only);
- restart: SIGTERM, start again, time until the S3 API (GetObjectTorrent of a cached
  torrent), the web seed (GET of the object) and the tracker (an announce) all answered;
- RSS at idle with 0 active torrents after the restart, then with 1000 active (one
  GetObjectTorrent each);
- state dir bytes per catalog entry (the catalog, resume data, seed cache);
- idle CPU: the process's CPU seconds over ``--idle-seconds`` with 1000 active torrents,
  once the restarted daemon's first scanner pass is over (scanner interval 3600 s);
- alerts_dropped warnings in the log.

Prints a markdown table row per N. A script, not a test: the numbers depend on the machine.

    python benchmarks/bench_scale.py [--sizes 10000,100000] [--keep DIR] [--idle-seconds 10]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from procs import free_port

ROOT = Path(__file__).resolve().parent.parent
PER_DIR = 1000
SCAN_DEADLINE = 3600.0
START_DEADLINE = 600.0


def key_of(i: int) -> str:
    return f"d{i // PER_DIR:04d}/o{i:07d}"


OBJECT_SIZE = 1024


def make_bucket(root: Path, n: int, size: int | None = None) -> None:
    size = OBJECT_SIZE if size is None else size
    for i in range(n):
        if i % PER_DIR == 0:
            (root / f"d{i // PER_DIR:04d}").mkdir(parents=True, exist_ok=True)
        with open(root / key_of(i), "wb") as f:
            f.write(i.to_bytes(8, "big") * (size // 8) + bytes([i % 251 + 1]) * (size % 8))


def write_config(work: Path, bucket: Path, ports: dict[str, int] | None = None,
                 scan_interval: int = 1) -> tuple[Path, dict[str, int]]:
    ports = ports or {name: free_port() for name in ("s3", "tracker", "metrics", "bt")}
    cfg = work / f"seeder-{scan_interval}.toml"
    cfg.write_text(f"""
[server]
listen = "127.0.0.1:{ports['s3']}"
public_url = "http://127.0.0.1:{ports['s3']}"
[tracker]
listen = "127.0.0.1:{ports['tracker']}"
public_url = "http://127.0.0.1:{ports['tracker']}/announce"
[metrics]
listen = "127.0.0.1:{ports['metrics']}"
[state]
dir = "{work / 'state'}"
[scanner]
interval = {scan_interval}
[seeding]
listen_interfaces = "127.0.0.1:{ports['bt']}"
ssrf_mitigation = false
[log]
format = "human"
[[buckets]]
name = "data"
backend = "local"
path = "{bucket}"
webseed = "proxy"
""")
    return cfg, ports


class Daemon:
    def __init__(self, cfg: Path, log: Path) -> None:
        self.log_path = log
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.started = time.monotonic()
        self.log = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "seeder", "serve", "--config",
                                      str(cfg)], stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, cwd=ROOT)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.close()


def scan_seconds(text: str) -> list[float]:
    return [float(m) for m in re.findall(r"scan: .* ([0-9.]+) s$", text, flags=re.M)]


def wait_for(predicate, deadline: float, what: str):
    end = time.monotonic() + deadline
    while True:  # bounded by the deadline
        got = predicate()
        if got:
            return got
        if time.monotonic() > end:
            raise TimeoutError(what)
        time.sleep(0.02)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            r.read()
            return r.status in (200, 206)
    except OSError:
        return False


def announce_url(ports: dict[str, int], info_hash: bytes) -> str:
    q = urllib.parse.urlencode({"info_hash": info_hash, "peer_id": b"-BS0001-" + b"b" * 12,
                                "port": 6881, "uploaded": 0, "downloaded": 0, "left": 1,
                                "compact": 1})
    return f"http://127.0.0.1:{ports['tracker']}/announce?{q}"


def info_hash_of(torrent: bytes) -> bytes:
    sys.path.insert(0, str(ROOT))
    from seeder.torrent import metainfo

    ih = metainfo.info_hashes(torrent)
    return ih.v1 or ih.v2[:20]


def dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def run_one(n: int, work: Path, idle_seconds: float) -> dict[str, object]:
    bucket = work / "bucket"
    t0 = time.monotonic()
    make_bucket(bucket, n)
    print(f"[{n}] bucket written in {time.monotonic() - t0:.0f} s", flush=True)
    cfg, ports = write_config(work, bucket)
    log = work / "seeder.log"
    d = Daemon(cfg, log)
    wait_for(lambda: len(scan_seconds(d.text())) >= 2, SCAN_DEADLINE, "two scan passes")
    first, rescan = scan_seconds(d.text())[:2]
    print(f"[{n}] first scan {first:.2f} s, rescan {rescan:.2f} s", flush=True)
    d.stop()

    # Restart (the scanner back at a normal interval: its pass at start-up is the only one
    # during the measurements): the time until the three front doors answered.
    cfg, ports = write_config(work, bucket, ports, scan_interval=3600)
    passes = len(scan_seconds(d.text()))
    d = Daemon(cfg, log)
    return measure_restarted(d, n, work, ports, idle_seconds, first, rescan, passes=passes)


def measure_restarted(d: Daemon, n: int, work: Path, ports: dict[str, int],
                      idle_seconds: float, first: float, rescan: float,
                      passes: int | None = None,
                      restart_scan: float | None = None) -> dict[str, object]:
    s3 = f"http://127.0.0.1:{ports['s3']}"
    probe = key_of(min(n // 2, 500))  # a file in both modes (synthetic: the first 1000)
    torrent_url = f"{s3}/data/{probe}?torrent"

    def torrent_bytes() -> bytes | None:
        try:
            with urllib.request.urlopen(torrent_url, timeout=5) as r:
                return r.read()
        except OSError:
            return None

    torrent = wait_for(torrent_bytes, START_DEADLINE, "GetObjectTorrent after restart")
    t_s3 = time.monotonic() - d.started
    wait_for(lambda: http_ok(f"{s3}/data/{probe}"), START_DEADLINE, "web seed")
    t_ws = time.monotonic() - d.started
    wait_for(lambda: http_ok(announce_url(ports, info_hash_of(torrent))), START_DEADLINE,
             "announce")
    t_tr = time.monotonic() - d.started
    print(f"[{n}] restart: S3 {t_s3:.2f} s, web seed {t_ws:.2f} s, tracker {t_tr:.2f} s",
          flush=True)
    if passes is not None:
        wait_for(lambda: len(scan_seconds(d.text())) > passes, SCAN_DEADLINE,
                 "start-up scan")
        restart_scan = scan_seconds(d.text())[passes]
    time.sleep(5)
    rss0 = d.rss_mb()

    # 1000 active torrents: a GetObjectTorrent each.
    active = min(1000, n)
    with ThreadPoolExecutor(8) as pool:
        ok = sum(pool.map(lambda i: http_ok(f"{s3}/data/{key_of(i)}?torrent"), range(active)))
    time.sleep(5)
    rss1 = d.rss_mb()
    c0 = d.cpu_seconds()
    time.sleep(idle_seconds)
    idle_cpu = (d.cpu_seconds() - c0) / idle_seconds
    text = d.text()
    dropped = text.count("alerts_dropped") + text.count("alerts dropped")
    with urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics']}/metrics") as r:
        metrics = r.read().decode()
    m = re.search(r"^seeder_active_torrents (\S+)$", metrics, flags=re.M)
    d.stop()
    state = dir_bytes(work / "state")
    row = {
        "n": n, "first_scan_s": first, "objects_per_s": n / first if first else 0,
        "rescan_s": rescan, "restart_scan_s": restart_scan, "restart_s3_s": t_s3,
        "restart_webseed_s": t_ws,
        "restart_tracker_s": t_tr, "rss_idle_0_mb": rss0, "rss_idle_1000_mb": rss1,
        "active": float(m.group(1)) if m else -1, "ok": ok,
        "state_bytes_per_entry": state / n, "idle_cpu": idle_cpu, "alerts_dropped": dropped,
    }
    print(row, flush=True)
    return row


def fill_catalog(work: Path, cfg: Path, n: int) -> None:
    """A catalog of ``n`` rows for keys key_of(0..n-1) (what a scan of the bucket leaves),
    recorded as relinked under ``cfg`` (so start-up has nothing to walk)."""
    sys.path.insert(0, str(ROOT))
    import hashlib as _hashlib

    from seeder.config import load
    from seeder.torrent import metainfo
    from seeder.torrent.catalog import Catalog
    from seeder.torrent.entry import Entry
    from seeder.torrent.linkstate import LINKS_META, links_fingerprint

    config = load(str(cfg), {})
    with Catalog.open(work / "state" / "catalog.sqlite3") as cat:
        for start in range(0, n, 10_000):
            batch = []
            for i in range(start, min(n, start + 10_000)):
                key = key_of(i)
                hashes = metainfo.PieceHashes(262144, _hashlib.sha1(bytes([i % 251 + 1])).digest())
                torrent = metainfo.build_torrent(
                    bucket="data", key=key, size=1, hashes=hashes, announce=None,
                    announce_list=None, url_list=None, created_by="s3torrent/0.1.0")
                ih = metainfo.info_hashes(torrent)
                batch.append(Entry(bucket="data", key=key, etag=f"{i:032x}", version_id=None,
                                   size=1, last_modified=1.7e9, torrent=torrent,
                                   info_hash_v1=ih.v1, info_hash_v2=None, piece_length=262144,
                                   format="v1", created_at=1.7e9))
            cat.put_many(batch)
        cat.set_meta(LINKS_META, links_fingerprint(config))


def run_synthetic(n: int, work: Path, idle_seconds: float) -> dict[str, object]:
    """Start-up, memory and idle CPU against a catalog of ``n`` rows written directly (no
    scan: for sizes whose first scan takes too long here); only the first 1000 objects exist
    as files, and the scanner is off (it would drop the others)."""
    bucket = work / "bucket"
    make_bucket(bucket, min(n, 1000), size=1)
    cfg, ports = write_config(work, bucket, scan_interval=3600)
    cfg.write_text(cfg.read_text().replace("[scanner]\n", "[scanner]\nenabled = false\n"))
    t0 = time.monotonic()
    fill_catalog(work, cfg, n)
    print(f"[{n}] catalog written in {time.monotonic() - t0:.0f} s", flush=True)
    d = Daemon(cfg, work / "seeder.log")
    return measure_restarted(d, n, work, ports, idle_seconds, first=0.0, rescan=0.0,
                             restart_scan=0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--keep", help="work in this directory and keep it")
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--object-size", type=int, default=1024,
                    help="bytes per object (scanned sizes; --synthetic rows are 1 byte)")
    ap.add_argument("--synthetic", default="",
                    help="sizes measured on a catalog written directly (no scan)")
    args = ap.parse_args()
    global OBJECT_SIZE
    OBJECT_SIZE = args.object_size
    rows = []
    sizes = [(int(x), False) for x in args.sizes.split(",") if x]
    sizes += [(int(x), True) for x in args.synthetic.split(",") if x]
    for n, synthetic in sizes:
        work = Path(args.keep or tempfile.mkdtemp(prefix="bench-scale-")) / f"n{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            run = run_synthetic if synthetic else run_one
            rows.append(run(n, work, args.idle_seconds))
        finally:
            if not args.keep:
                shutil.rmtree(work.parent, ignore_errors=True)
    print()
    print("| objects | first scan (objects/s) | rescan | restart: S3 / web seed / tracker "
          "| RSS idle, 0 active | RSS idle, 1000 active | state per entry | idle CPU "
          "| alerts_dropped |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        scans = (f"{r['first_scan_s']:.2f} s ({r['objects_per_s']:.0f}/s) | {r['rescan_s']:.1f} s"
                 if r["first_scan_s"] else "(catalog written directly) | —")
        print(f"| {r['n']:,} | {scans} | {r['restart_s3_s']:.2f} / {r['restart_webseed_s']:.2f}"
              f" / {r['restart_tracker_s']:.2f} s | {r['rss_idle_0_mb']:.0f} MB "
              f"| {r['rss_idle_1000_mb']:.0f} MB ({r['active']:.0f} active) "
              f"| {r['state_bytes_per_entry']:.0f} B | {100 * r['idle_cpu']:.1f} % "
              f"| {r['alerts_dropped']} |")


if __name__ == "__main__":
    main()
