"""The real BitTorrent clients of the WAN lab, each in its own host namespace.

One `Client` per download: started with `start`, polled with `Client.poll` (True once
complete; the time is taken then), stopped with `Client.stop` (by PID). Every client keeps
seeding after it completes, as each does by default (aria2 to a ratio of 1.0), until the
run stops it. Settings common to all: no DHT, no LSD, no UPnP/NAT-PMP (nothing to find
outside the lab), TCP only (uTP is user-space congestion control: on 2 shared cores it
measures the CPU, not the link), no upload limits.

- ``aria2``: ``aria2c`` with ``--on-bt-download-complete`` touching a marker.
- ``transmission``: ``transmission-cli`` with a finish script that touches a marker.
- ``qbittorrent``: ``qbittorrent-nox`` with a profile of its own; its WebUI API (loopback
  of its namespace, no login from localhost) says when the torrent is complete.
- ``libtorrent``: tests/peers/lt_peer.py ``--stay`` (python3-libtorrent): its ``complete``
  event (every piece there, as libtorrent reports it: not its later ``finished``, printed
  after it flushed and read the whole file back for its sha1, which the other kinds' done
  signals do not wait for; the lab checks every client's file itself).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.wan.lab import Lab, stop

KINDS = ("aria2", "transmission", "qbittorrent", "libtorrent")
LT_PEER = Path(__file__).resolve().parents[1] / "peers" / "lt_peer.py"
PEER_PORT = 6881  # every client host is its own namespace: a fixed port cannot collide
QBT_WEBUI_PORT = 8080


@dataclass
class Client:
    kind: str
    host: str
    out: Path  # the directory the file lands in
    name: str  # the torrent's name (the file)
    proc: subprocess.Popen[Any]
    started: float
    lab: Lab
    marker: Path | None = None
    finished: float | None = None
    error: str | None = None
    log: Path | None = None
    _extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float | None:
        return None if self.finished is None else self.finished - self.started

    @property
    def file(self) -> Path:
        return self.out / self.name

    def poll(self) -> bool:
        """True once the download is complete (or failed: ``error`` says why)."""
        if self.finished is not None or self.error is not None:
            return True
        if self.kind in ("aria2", "transmission"):
            assert self.marker is not None
            done = self.marker.exists()
        elif self.kind == "libtorrent":
            assert self.log is not None
            done = b'"event": "complete"' in self.log.read_bytes()
        else:
            done = self._qbt_complete()
        if done:
            self.finished = time.monotonic()
            return True
        code = self.proc.poll()
        if code is not None:
            self.error = f"{self.kind} exited {code} before completing"
            return True
        return False

    def stop(self) -> None:
        stop(self.proc)

    def _qbt_complete(self) -> bool:
        url = f"http://127.0.0.1:{QBT_WEBUI_PORT}/api/v2/torrents/info"

        def ask() -> list[dict[str, Any]]:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())

        try:
            torrents = self.lab.call(self.host, ask)
        except OSError:
            return False  # the WebUI is not up yet
        return bool(torrents) and all(t.get("progress", 0) >= 1.0 for t in torrents)


def start(lab: Lab, kind: str, host: str, torrent: Path, workdir: Path, name: str,
          timeout: float) -> Client:
    """Start a ``kind`` client on ``host`` downloading ``torrent`` (whose file is ``name``)
    under ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "data"
    out.mkdir(exist_ok=True)
    addr = lab.hosts[host].addr
    log = workdir / "client.log"
    marker: Path | None = None
    if kind in ("aria2", "transmission"):
        marker = workdir / "done"
        script = workdir / "finish.sh"
        script.write_text(f"#!/bin/sh\ntouch {marker}\n")
        script.chmod(0o755)
    if kind == "aria2":
        argv = [
            "aria2c", "--dir", str(out), "--enable-dht=false", "--enable-dht6=false",
            "--bt-enable-lpd=false", "--listen-port", str(PEER_PORT),
            "--file-allocation=none", "--summary-interval=0", "--console-log-level=warn",
            f"--bt-stop-timeout={int(timeout)}", f"--on-bt-download-complete={script}",
            str(torrent),
        ]  # fmt: skip
    elif kind == "transmission":
        conf = workdir / "conf"
        conf.mkdir(exist_ok=True)
        (conf / "settings.json").write_text(json.dumps({
            "dht-enabled": False, "lpd-enabled": False, "pex-enabled": True,
            "port-forwarding-enabled": False, "rpc-enabled": False, "utp-enabled": False,
            "bind-address-ipv4": addr, "peer-port": PEER_PORT, "message-level": 1,
            "ratio-limit-enabled": False, "speed-limit-up-enabled": False,
            "speed-limit-down-enabled": False,
        }))  # fmt: skip
        argv = ["transmission-cli", "-g", str(conf), "-w", str(out), "-f", str(script),
                str(torrent)]
    elif kind == "qbittorrent":
        profile = workdir / "profile"
        conf = profile / "qBittorrent" / "config"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "qBittorrent.conf").write_text(_QBT_CONF.format(
            port=PEER_PORT, save=out, webui=QBT_WEBUI_PORT, addr=addr))
        argv = ["qbittorrent-nox", f"--profile={profile}", f"--webui-port={QBT_WEBUI_PORT}",
                f"--save-path={out}", "--skip-dialog=true", str(torrent)]
    elif kind == "libtorrent":
        argv = [sys.executable, str(LT_PEER), "--torrent", str(torrent), "--save-dir",
                str(out), "--bind", addr, "--timeout", str(timeout), "--stay"]
    else:
        raise ValueError(f"unknown client kind {kind!r} (one of {', '.join(KINDS)})")
    started = time.monotonic()
    with log.open("wb") as f:
        proc = lab.popen(host, argv, stdout=f, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL)
    return Client(kind, host, out, name, proc, started, lab, marker=marker, log=log)


_QBT_CONF = """\
[LegalNotice]
Accepted=true

[BitTorrent]
Session\\BTProtocol=TCP
Session\\DHTEnabled=false
Session\\LSDEnabled=false
Session\\PeXEnabled=true
Session\\Port={port}
Session\\DefaultSavePath={save}
Session\\QueueingSystemEnabled=false
Session\\AddTorrentPaused=false
Session\\GlobalMaxRatio=-1

[Preferences]
Connection\\UPnP=false
WebUI\\Port={webui}
WebUI\\Address=127.0.0.1
WebUI\\LocalHostAuth=false
WebUI\\HostHeaderValidation=false
WebUI\\CSRFProtection=false
General\\Locale=en
"""
