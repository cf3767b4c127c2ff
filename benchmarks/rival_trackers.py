"""The trackers the tracker benchmarks compare ours with, each started pinned to one core:
opentracker (Debian's build is whitelist-only: it is given the benchmark's info-hashes)
and webtorrent's bittorrent-tracker (npm-installed into a temporary directory, with an
``overrides`` stub for its WebRTC dependency, which downloads a binary at install and
which the server never uses). Used by bench_tracker, ab_tracker and bench_udp.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from procs import Proc

__all__ = ["BT_TRACKER_VERSION", "install_bittorrent_tracker", "start_bittorrent_tracker",
           "start_opentracker"]  # fmt: skip

BT_TRACKER_VERSION = "11.2.3"


def start_opentracker(cpu: int, work: Path, host: str, port: int,
                      hashes: Iterable[bytes]) -> Proc:  # fmt: skip
    """opentracker on ``host:port`` (HTTP and UDP), serving only ``hashes``; it runs in
    ``work/opentracker``."""
    # It chroots here and drops to "nobody" before reading the whitelist: world-readable.
    root = work / "opentracker"
    root.mkdir(exist_ok=True)
    root.chmod(0o755)
    whitelist = root / "whitelist.txt"
    whitelist.write_text("".join(h.hex() + "\n" for h in hashes))
    whitelist.chmod(0o644)
    cmd = ["taskset", "-c", str(cpu), "opentracker", "-i", host,
           "-p", str(port), "-P", str(port), "-w", whitelist.name, "-d", str(root)]  # fmt: skip
    return Proc("opentracker", cmd, root)


_BT_STUB = """\
// The tracker server never uses WebRTC: stand-ins for the names simple-peer imports.
export class RTCPeerConnection {}
export class RTCSessionDescription {}
export class RTCIceCandidate {}
export default { RTCPeerConnection, RTCSessionDescription, RTCIceCandidate }
"""

_BT_LAUNCHER_TEMPLATE = """\
import { Server } from 'bittorrent-tracker'
const port = Number(process.argv[2])
const server = new Server({ http: true, udp: true, ws: false, stats: false,
                            interval: 1800000 })
server.on('error', (err) => console.error('error', err.message))
server.on('warning', () => {})
server.listen(port, { http: 'HOST', udp: 'HOST', udp6: '::1' },
              () => console.log('listening', port))
"""


def install_bittorrent_tracker(work: Path, host: str) -> Path:
    """npm-install bittorrent-tracker into ``work/bt`` (node_modules never in the repo),
    with a launcher listening on ``host``."""
    bt = work / "bt"
    (bt / "webrtc-stub").mkdir(parents=True)
    (bt / "webrtc-stub" / "package.json").write_text(json.dumps({
        "name": "webrtc-polyfill", "version": "1.1.10", "type": "module",
        "main": "index.js", "exports": "./index.js",
    }))  # fmt: skip
    (bt / "webrtc-stub" / "index.js").write_text(_BT_STUB)
    (bt / "package.json").write_text(json.dumps({
        "name": "bench-bittorrent-tracker", "version": "0.0.0", "private": True,
        "type": "module",
        "dependencies": {"bittorrent-tracker": BT_TRACKER_VERSION},
        "overrides": {"webrtc-polyfill": "file:./webrtc-stub"},
    }))  # fmt: skip
    (bt / "launch.js").write_text(_BT_LAUNCHER_TEMPLATE.replace("HOST", host))
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
        cwd=bt, check=True, timeout=600, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return bt


def start_bittorrent_tracker(cpu: int, work: Path, port: int) -> Proc:
    """bittorrent-tracker (installed in ``work/bt``) on ``port``, HTTP and UDP."""
    bt = work / "bt"
    cmd = ["taskset", "-c", str(cpu), "node", "launch.js", str(port)]
    return Proc("bittorrent-tracker", cmd, bt, dict(os.environ, NODE_ENV="production"))
