"""systemd/seeder.service checked by systemd itself: `systemd-analyze verify` (syntax,
settings, ExecStart executable) and `systemd-analyze security --offline=yes` (exposure),
plus the one sandbox setting that can break a Python daemon at run time,
MemoryDenyWriteExecute, tried for real with PR_SET_MDWE.

No running systemd is needed. `verify` insists that ExecStart's binary exists, so it
checks a copy of the unit whose ExecStart runs the `seeder` script installed here (or
this Python with `-m seeder` when the script is not installed); every other line is the
shipped unit's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "seeder.service"
ANALYZE = shutil.which("systemd-analyze")
MAX_EXPOSURE = 2.0

pytestmark = pytest.mark.skipif(
    ANALYZE is None,
    reason="systemd-analyze not installed (Debian package 'systemd'; scripts/test.sh installs it)",
)

SHIPPED_EXEC = "ExecStart=/usr/local/bin/seeder "


def unit_text() -> str:
    return UNIT.read_text()


def local_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit as seeder.service in tmp_path, ExecStart pointing at something that exists."""
    text = unit_text() if text is None else text
    assert text.count(SHIPPED_EXEC) == 1
    script = shutil.which("seeder")
    command = script if script else f"{sys.executable} -m seeder"
    path = tmp_path / "seeder.service"
    path.write_text(text.replace(SHIPPED_EXEC, f"ExecStart={command} "))
    return path


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False)


def settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def complaints(result: subprocess.CompletedProcess[str]) -> list[str]:
    # verify also reports on units it pulls in from the host; only ours count.
    return [
        line for line in (result.stdout + result.stderr).splitlines() if "seeder.service" in line
    ]


def test_verify_passes(tmp_path: Path) -> None:
    result = analyze("verify", str(local_copy(tmp_path)))
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stderr
    assert complaints(result) == []


@pytest.mark.parametrize(
    ("change", "expect_failure"),
    [
        (("ProtectSystem=strict", "ProtectSystm=strict"), False),  # warns, still exits 0
        (("Type=notify", "Type=notyfy"), False),
        (("WatchdogSec=30", "WatchdogSec=thirty"), False),
    ],
)
def test_verify_reports_mistakes(
    tmp_path: Path, change: tuple[str, str], expect_failure: bool
) -> None:
    """The verify check is live: a typo in the unit is reported on our unit's lines."""
    old, new = change
    text = unit_text()
    assert old in text
    result = analyze("verify", str(local_copy(tmp_path, text.replace(old, new, 1))))
    assert complaints(result), result.stderr
    assert (result.returncode != 0) == expect_failure


def test_verify_fails_when_the_binary_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "seeder.service"
    path.write_text(unit_text().replace(SHIPPED_EXEC, "ExecStart=/nonexistent/seeder "))
    result = analyze("verify", str(path))
    assert result.returncode != 0
    assert "not executable" in result.stderr


def exposure(path: Path, *, show: bool = True) -> float:
    result = analyze("security", "--offline=yes", str(path))
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout
    if show:  # the open findings and the score, for the test log
        for line in result.stdout.splitlines():
            if line.startswith("✗"):
                print(line.rstrip())
        print(match.group(0))
    return float(match.group(1))


def test_security_exposure_is_low(tmp_path: Path) -> None:
    score = exposure(local_copy(tmp_path))
    assert score <= MAX_EXPOSURE
    # systemd-analyze's own threshold (tenths) agrees with the parsed score.
    result = analyze("security", "--offline=yes", "--threshold=20", str(local_copy(tmp_path)))
    assert result.returncode == 0


def test_security_score_reacts_to_the_sandbox(tmp_path: Path) -> None:
    """Without the sandbox the same unit rates far worse: the score is measured, not stuck."""
    bare = "\n".join(
        line
        for line in unit_text().splitlines()
        if line.startswith(("[", "Type=", "ExecStart=", "Description="))
    )
    assert exposure(local_copy(tmp_path, bare + "\n"), show=False) > 5.0


def test_contract_settings() -> None:
    """The settings other parts of the project rely on."""
    s = settings(unit_text())
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "WatchdogSec": ["30"],
        "TimeoutStopSec": ["30"],
        "Restart": ["on-failure"],
        "StateDirectory": ["seeder"],
        "CacheDirectory": ["seeder"],
        "ConfigurationDirectory": ["seeder"],
        "DynamicUser": ["yes"],
        "CapabilityBoundingSet": [""],
        "MemoryDenyWriteExecute": ["yes"],
        "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX AF_NETLINK"],
    }
    for key, value in expected.items():
        assert s.get(key) == value, key
    assert "SEEDER_STATE_DIR=/var/lib/seeder" in s["Environment"]
    assert s["ExecStart"] == ["/usr/local/bin/seeder serve --config /etc/seeder/seeder.toml"]


MDWE_PROBE = textwrap.dedent(
    """
    import ctypes, mmap, os, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        print("no PR_SET_MDWE", ctypes.get_errno()); sys.exit(77)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    wx = libc.mmap(None, 4096, mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC,
                   mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    assert wx in (None, ctypes.c_void_p(-1).value), "MDWE is not enforced"

    import hashlib, sqlite3, ssl
    import libtorrent as lt
    import trio
    async def main():
        await trio.sleep(0)
    trio.run(main)
    ssl.create_default_context()
    sqlite3.connect(":memory:").execute("select 1")
    hashlib.sha1(b"x").digest()

    # A real transfer: hashing, mmap disk I/O, peer wire, between two sessions.
    root = sys.argv[1]
    src, dst = os.path.join(root, "seed"), os.path.join(root, "leech")
    os.makedirs(src); os.makedirs(dst)
    with open(os.path.join(src, "f.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))
    ct = lt.create_torrent(lt.list_files(os.path.join(src, "f.bin")), 65536, 0)
    lt.set_piece_hashes(ct, src)
    ti = lt.torrent_info(lt.bencode(ct.generate()))
    base = {"enable_dht": False, "enable_lsd": False, "enable_upnp": False,
            "enable_natpmp": False}
    seed = lt.session({**base, "listen_interfaces": "127.0.0.1:0"})
    leech = lt.session({**base, "listen_interfaces": "127.0.0.2:0"})
    p = lt.add_torrent_params(); p.ti = ti; p.save_path = src
    seed.add_torrent(p)
    p = lt.add_torrent_params(); p.ti = lt.torrent_info(ti); p.save_path = dst
    handle = leech.add_torrent(p)
    deadline = time.monotonic() + 30
    while not handle.status().is_seeding and time.monotonic() < deadline:
        if seed.listen_port():
            handle.connect_peer(("127.0.0.1", seed.listen_port()))
        leech.wait_for_alert(200)
        seed.pop_alerts(); leech.pop_alerts()
    print("ok" if handle.status().is_seeding else "transfer did not finish")
    """
)


def test_runtime_survives_memory_deny_write_execute(tmp_path: Path) -> None:
    """MemoryDenyWriteExecute=yes is the setting that breaks JITs and some FFI; the
    kernel's PR_SET_MDWE (Linux 6.3+) applies the same rule, so try the daemon's
    runtime (CPython, trio, OpenSSL, SQLite, a libtorrent transfer) under it."""
    result = subprocess.run(
        [sys.executable, "-c", MDWE_PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode == 77:
        pytest.skip(f"kernel without PR_SET_MDWE: {result.stdout.strip()}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok", result.stdout + result.stderr
