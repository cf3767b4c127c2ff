"""``python -m seeder`` as a user runs it: exit codes, one-line errors, never a traceback.

Every test runs the real command in a subprocess, in a temporary working directory, with
no SEEDER_* variables from the outer environment.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from seeder import __version__
from seeder.config import SAMPLE_BODY
from tests.helpers import free_port, wait_until
from tracker import bencode

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 60.0  # seconds per command: generous for 2 busy CI cores
START_DEADLINE = 30.0


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("JOURNAL_STREAM", None)
    env.update(extra)
    return env


def seeder(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seeder", *args],
        cwd=cwd, env=clean_env(**env), capture_output=True, text=True,
        timeout=RUN_TIMEOUT, check=False, stdin=subprocess.DEVNULL,
    )


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (asserting there is exactly one)."""
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


# --- --version, --help, usage errors -----------------------------------------------------------

def test_version(tmp_path: Path) -> None:
    r = seeder(tmp_path, "--version")
    # Which build of the tracker's hot modules runs: plain here (the suite runs the tree).
    assert (r.returncode, r.stdout, r.stderr) == (
        0, f"seeder {__version__} (tracker: plain Python)\n", "")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((), ["serve", "check-config", "make-torrent", "magnet", "--version"]),
        (("magnet",), ["BUCKET/KEY", "--config", "--version-id"]),
        (("serve",), ["--config", "--log-format", "--log-level", "journal", "json"]),
        (("check-config",), ["PATH"]),
        (("make-torrent",), ["SOURCE", "-o", "--hybrid", "--piece-size", "--announce",
                             "--web-seed", "--endpoint-url"]),
    ],
)
def test_help(tmp_path: Path, args: tuple[str, ...], words: list[str]) -> None:
    r = seeder(tmp_path, *args, "--help")
    assert r.returncode == 0
    assert r.stdout.startswith(f"usage: seeder {' '.join(args)}".rstrip() + " ")
    for word in words:
        assert word in r.stdout
    assert r.stderr == ""


@pytest.mark.parametrize(
    ("args", "line"),
    [
        ((), "seeder: error: the following arguments are required: COMMAND (see seeder --help)"),
        (("bogus",), "seeder: error: argument COMMAND: invalid choice: 'bogus' "
                     "(choose from 'serve', 'check-config', 'make-torrent', 'magnet') "
                     "(see seeder --help)"),
        (("check-config",), "seeder check-config: error: the following arguments are required: "
                            "PATH (see seeder check-config --help)"),
        (("serve", "--log-level", "loud"), "seeder serve: error: argument --log-level: invalid "
         "choice: 'loud' (choose from 'debug', 'info', 'warning', 'error', 'critical') "
         "(see seeder serve --help)"),
        (("make-torrent", "x", "--piece-size", "1000"), "seeder make-torrent: error: argument "
         "--piece-size: '1000': must be 0 (automatic) or a power of two of at least 16KiB "
         "(see seeder make-torrent --help)"),
        (("make-torrent", "x", "--piece-size", "lots"), "seeder make-torrent: error: argument "
         "--piece-size: bad size 'lots': expected bytes or a number with a unit "
         "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB (see seeder make-torrent --help)"),
    ],
)
def test_usage_errors_are_one_line_exit_2(tmp_path: Path, args: tuple[str, ...], line: str):
    r = seeder(tmp_path, *args)
    assert r.returncode == 2
    assert one_line_error(r) == line
    assert r.stdout == ""


# --- check-config ------------------------------------------------------------------------------

GOOD = '[server]\nlisten = "127.0.0.1:8000"\n[[buckets]]\nname = "data"\npath = "data"\n'


def test_check_config_ok(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "seeder.toml").write_text(GOOD)
    r = seeder(tmp_path, "check-config", "seeder.toml")
    assert (r.returncode, r.stdout, r.stderr) == (0, "seeder.toml: ok\n", "")


def test_check_config_lists_every_problem(tmp_path: Path) -> None:
    (tmp_path / "seeder.toml").write_text(
        GOOD + '[[buckets]]\nname = "data"\nbackend = "s3"\ntorrent_format = "v3"\n'
        '[[credentials]]\naccess_key = "a"\nsecret_key = "b"\nbuckets = ["nope"]\n'
    )
    r = seeder(tmp_path, "check-config", "seeder.toml", SEEDER_LOG_LEVEL="loud")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    assert r.stderr.splitlines() == [
        "env SEEDER_LOG_LEVEL: log.level: must be one of debug, info, warning, error, critical,"
        " got 'loud'",
        "seeder.toml: buckets[1].torrent_format: must be one of v1, hybrid, got 'v3'",
        "seeder.toml: buckets[1].name: duplicate bucket name 'data' (also buckets[0])",
        f"seeder.toml: buckets[0].path: directory {tmp_path / 'data'} does not exist",
        "seeder.toml: credentials[0].buckets: unknown bucket 'nope'",
    ]


@pytest.mark.parametrize(
    ("setup", "line"),
    [
        ("missing", "absent.toml: cannot read: No such file or directory"),
        ("directory", "absent.toml: cannot read: Is a directory"),
        ("garbage", "absent.toml: invalid TOML: Invalid statement (at line 1, column 1)"),
        ("unreadable", "absent.toml: cannot read: Permission denied"),
    ],
)
def test_check_config_bad_files(tmp_path: Path, setup: str, line: str) -> None:
    path = tmp_path / "absent.toml"
    if setup == "directory":
        path.mkdir()
    elif setup == "garbage":
        path.write_bytes(b"\x00\x01 not toml")
    elif setup == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads any file")
        path.write_text(GOOD)
        path.chmod(0)
    r = seeder(tmp_path, "check-config", "absent.toml")
    assert r.returncode == 1
    assert one_line_error(r) == line


def test_check_config_of_the_shipped_example(tmp_path: Path) -> None:
    (tmp_path / "pub").mkdir()
    r = seeder(tmp_path, "check-config", str(ROOT / "config" / "seeder.toml"),
               SEEDER_BUCKETS_PUBLIC_DATA_PATH=str(tmp_path / "pub"),
               SEEDER_STATE_DIR=str(tmp_path / "state"))
    assert (r.returncode, r.stderr) == (0, "")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_check_config_interrupted_exits_130(tmp_path: Path) -> None:
    """Ctrl-C while reading a config that never arrives (a FIFO nobody writes)."""
    fifo = tmp_path / "seeder.toml"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "seeder", "check-config", str(fifo)],
        cwd=tmp_path, env=clean_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A suite started in the background by a non-interactive shell (`cmd &`) inherits
        # SIGINT ignored, and Python then installs no KeyboardInterrupt handler: the child
        # would wait for the FIFO forever. Ctrl-C reaches a command run by hand.
        preexec_fn=_default_sigint,
    )
    writer = -1
    try:
        def reader_opened() -> bool:
            nonlocal writer
            assert proc.poll() is None, proc.communicate()
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: nobody has it open for reading yet
                return False
            return True

        def blocked_reading() -> bool:
            # read(2) of the FIFO, asleep: a SIGINT that lands between the open and the read
            # only sets Python's flag, which it checks after the read returns (never, here)
            assert proc.poll() is None, proc.communicate()
            try:
                call = Path(f"/proc/{proc.pid}/syscall").read_text().split()
                return call[0] == "0" and Path(
                    f"/proc/{proc.pid}/fd/{int(call[1], 16)}").resolve() == fifo.resolve()
            except (OSError, IndexError, ValueError):  # running, or the fd went meanwhile
                return False

        wait_until(reader_opened, START_DEADLINE, what="check-config opens the FIFO")
        wait_until(blocked_reading, START_DEADLINE, what="check-config blocks reading the FIFO")
        # It is inside main() now, blocked reading: the interrupt lands in the command.
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if writer >= 0:
            os.close(writer)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert (out, err) == ("", "")
    assert stat.S_ISFIFO(fifo.stat().st_mode)


# --- serve -------------------------------------------------------------------------------------

def test_serve_refuses_a_bad_config_with_its_problems(tmp_path: Path) -> None:
    (tmp_path / "seeder.toml").write_text('[server]\nlisten = "nowhere"\n')
    r = seeder(tmp_path, "serve", "--config", "seeder.toml")
    assert r.returncode == 1
    assert one_line_error(r) == (
        "seeder.toml: server.listen: bad address 'nowhere': "
        'expected "host:port" or "[ipv6]:port"'
    )


def test_serve_refuses_bad_env_without_a_file(tmp_path: Path) -> None:
    r = seeder(tmp_path, "serve", SEEDER_SEEDING_DHT="perhaps")
    assert r.returncode == 1
    assert one_line_error(r) == (
        "env SEEDER_SEEDING_DHT: seeding.dht: expected a boolean (true or false), "
        "got string 'perhaps'"
    )
    assert not (tmp_path / "data").exists()  # nothing created for a refused config


def test_serve_missing_config_file(tmp_path: Path) -> None:
    r = seeder(tmp_path, "serve", "--config", "nope.toml")
    assert r.returncode == 1
    assert one_line_error(r) == "nope.toml: cannot read: No such file or directory"


def test_serve_without_config_serves_the_sample_and_stops_on_sigint(tmp_path: Path) -> None:
    """The zero-config start: ./data/hello.txt appears and its torrent is served at once;
    SIGINT stops the daemon cleanly."""
    port = free_port()
    env = clean_env(
        SEEDER_SERVER_LISTEN=f"127.0.0.1:{port}",
        SEEDER_SERVER_PUBLIC_URL=f"http://127.0.0.1:{port}",
        SEEDER_TRACKER_LISTEN="127.0.0.1:0",
        SEEDER_METRICS_LISTEN="",
        SEEDER_SEEDING_ENABLED="false",
        SEEDER_SCANNER_ENABLED="false",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "seeder", "serve", "--log-format", "json"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}/data/hello.txt?torrent"
    got: list[bytes] = []

    def served() -> bool:
        assert proc.poll() is None, proc.communicate()
        try:
            with urllib.request.urlopen(url, timeout=5.0) as r:
                got.append(r.read())
        except OSError:  # not listening yet
            return False
        return True

    try:
        wait_until(served, START_DEADLINE, interval=0.05, what="serve answers ?torrent")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (tmp_path / "data" / "hello.txt").read_bytes() == SAMPLE_BODY
    info = bencode.decode(got[0])[b"info"]
    assert (info[b"name"], info[b"length"]) == (b"hello.txt", len(SAMPLE_BODY))
    assert (tmp_path / "state").is_dir()
    assert "Traceback" not in err
    assert proc.returncode == 0, err


# --- make-torrent ------------------------------------------------------------------------------

def test_make_torrent_local_file(tmp_path: Path) -> None:
    data = bytes(range(256)) * 300  # 76800 bytes
    (tmp_path / "blob.bin").write_bytes(data)
    r = seeder(tmp_path, "make-torrent", "blob.bin", "--piece-size", "16KiB",
               "--announce", "http://t.example/announce")
    assert r.returncode == 0, r.stderr
    meta = bencode.decode((tmp_path / "blob.bin.torrent").read_bytes())
    assert meta[b"announce"] == b"http://t.example/announce"
    info = meta[b"info"]
    assert (info[b"name"], info[b"length"], info[b"piece length"]) == (b"blob.bin", 76800, 16384)
    assert len(info[b"pieces"]) == 20 * 5
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left

    # "-o -": the same bytes on stdout.
    r2 = subprocess.run(
        [sys.executable, "-m", "seeder", "make-torrent", "blob.bin", "--piece-size", "16KiB",
         "--announce", "http://t.example/announce", "-o", "-"],
        cwd=tmp_path, env=clean_env(), capture_output=True, timeout=RUN_TIMEOUT, check=False,
    )
    assert r2.returncode == 0
    assert r2.stdout == (tmp_path / "blob.bin.torrent").read_bytes()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("nothere.bin",), "seeder: error: nothere.bin: not a regular file"),
        (("blob.bin", "-o", "no/such/dir/x.torrent"),
         "seeder: error: no/such/dir/x.torrent: No such file or directory"),
        (("s3://bucket-only",), "seeder: error: s3://bucket-only: expected s3://BUCKET/KEY"),
    ],
)
def test_make_torrent_errors(tmp_path: Path, args: tuple[str, ...], line: str) -> None:
    (tmp_path / "blob.bin").write_bytes(b"x" * 1000)
    r = seeder(tmp_path, "make-torrent", *args)
    assert r.returncode == 1
    assert one_line_error(r) == line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob.bin"]


def test_make_torrent_of_a_versioned_object_asks_for_its_version(
        tmp_path: Path, moto_server, s3_versioned_bucket: str) -> None:
    bucket = s3_versioned_bucket
    put = moto_server.client().put_object(Bucket=bucket, Key="v.bin", Body=b"v" * 20_000)
    r = seeder(tmp_path, "make-torrent", f"s3://{bucket}/v.bin",
               "--endpoint-url", moto_server.endpoint_url)
    assert r.returncode == 0, r.stderr
    meta = bencode.decode((tmp_path / "v.bin.torrent").read_bytes())
    assert meta[b"url-list"] == [
        f"{moto_server.endpoint_url}/{bucket}/v.bin?versionId={put['VersionId']}".encode()]


def test_make_torrent_s3_object(tmp_path: Path, moto_server, s3_bucket: str) -> None:
    data = b"s3 bytes " * 5000
    moto_server.client().put_object(Bucket=s3_bucket, Key="dir/obj.bin", Body=data)
    r = seeder(tmp_path, "make-torrent", f"s3://{s3_bucket}/dir/obj.bin", "--hybrid",
               "--endpoint-url", moto_server.endpoint_url)
    assert r.returncode == 0, r.stderr
    info = bencode.decode((tmp_path / "obj.bin.torrent").read_bytes())[b"info"]
    assert (info[b"name"], info[b"length"]) == (b"obj.bin", len(data))
    assert info[b"meta version"] == 2  # --hybrid reached the generator

    assert bencode.decode((tmp_path / "obj.bin.torrent").read_bytes())[b"url-list"] == [
        f"{moto_server.endpoint_url}/{s3_bucket}/dir/obj.bin".encode()]

    r = seeder(tmp_path, "make-torrent", f"s3://{s3_bucket}/absent",
               "--endpoint-url", moto_server.endpoint_url)
    assert r.returncode == 1
    assert one_line_error(r).startswith("seeder: error: ")
    assert not (tmp_path / "absent.torrent").exists()
