"""`seeder serve` as systemd runs it: a real process, NOTIFY_SOCKET, SIGHUP and SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_until
from tracker import bencode

DEADLINE = 60.0


class Notifications:
    """A NOTIFY_SOCKET receiver: collects sd_notify datagrams."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def wait_for(self, field: str) -> None:
        wait_until(
            lambda: any(field in m.split("\n") for m in self.drain()), DEADLINE, what=field
        )

    def close(self) -> None:
        self.sock.close()


def write_config(path: Path, port: int, data: Path, state: Path, extra: str = "") -> None:
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[tracker]
enabled = false
[metrics]
listen = "127.0.0.1:0"
[state]
dir = "{state}"
[seeding]
enabled = false
[scanner]
enabled = false
[[buckets]]
name = "data"
backend = "local"
path = "{data}"
{extra}
"""
    )


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Notifications, Path, int]]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_bytes(b"A" * 1000)
    other = tmp_path / "other"
    other.mkdir()
    (other / "b.txt").write_bytes(b"B" * 1000)
    port = free_port()
    conf = tmp_path / "seeder.toml"
    write_config(conf, port, data, tmp_path / "state")
    notes = Notifications(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notes.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "seeder", "serve", "--config", str(conf)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc, notes, conf, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
        notes.close()


def test_ready_reload_and_stop(service, tmp_path: Path) -> None:
    proc, notes, conf, port = service
    notes.wait_for("READY=1")
    base = f"http://127.0.0.1:{port}"
    status, body = get(f"{base}/data/a.txt?torrent")
    assert status == 200 and bencode.decode(body)[b"info"][b"length"] == 1000
    assert get(f"{base}/other/b.txt?torrent")[0] == 404

    # SIGHUP with a new bucket: it is served, the old one still is, no restart.
    write_config(conf, port, tmp_path / "data", tmp_path / "state",
                 f'[[buckets]]\nname = "other"\nbackend = "local"\npath = "{tmp_path / "other"}"')
    before = len(notes.drain())
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: get(f"{base}/other/b.txt?torrent")[0] == 200, DEADLINE, what="reload")
    assert any("RELOADING=1" in m for m in notes.drain()[before:])

    # SIGHUP with a broken config: refused, the running config stays.
    conf.write_text("[server]\nlisten = 12\nnonsense = true\n")
    proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: sum(m.startswith("READY=1") for m in notes.drain()) >= 3, DEADLINE, what="refusal"
    )
    assert get(f"{base}/other/b.txt?torrent")[0] == 200
    assert proc.poll() is None

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=DEADLINE) == 0
    assert any("STOPPING=1" in m.split("\n") for m in notes.drain())
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert "Traceback" not in err
    assert "reload refused" in err


@pytest.mark.parametrize("which", ["server", "tracker", "metrics"])
def test_port_in_use_is_one_line_and_nonzero(tmp_path: Path, which: str) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    data = tmp_path / "data"
    data.mkdir()
    conf = tmp_path / "seeder.toml"
    if which == "server":
        write_config(conf, port, data, tmp_path / "state")
    else:
        write_config(conf, free_port(), data, tmp_path / "state")
        text = conf.read_text()
        if which == "tracker":
            tracker = f'[tracker]\nlisten = "127.0.0.1:{port}"'
            text = text.replace("[tracker]\nenabled = false", tracker)
        else:
            text = text.replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"')
        conf.write_text(text)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "seeder", "serve", "--config", str(conf)],
            capture_output=True,
            timeout=DEADLINE,
            stdin=subprocess.DEVNULL,
        )
    finally:
        blocker.close()
    assert proc.returncode != 0
    err = proc.stderr.decode()
    assert "Traceback" not in err
    assert "cannot listen" in err
    assert len(err.strip().splitlines()) == 1, err


def test_unusable_state_dir_is_one_line_and_nonzero(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "file").write_text("not a directory")
    conf = tmp_path / "seeder.toml"
    write_config(conf, free_port(), data, tmp_path / "file" / "state")
    proc = subprocess.run(
        [sys.executable, "-m", "seeder", "serve", "--config", str(conf)],
        capture_output=True,
        timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
    )
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert "Traceback" not in err and "ExceptionGroup" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert "state" in err
