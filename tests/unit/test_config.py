"""seeder.config: TOML + SEEDER_* env -> dataclasses, and the exact problem line for each
bad input. Also guards that docs/config.md and config/seeder.toml name every field."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from seeder.config import (
    SAMPLE_BODY,
    BucketConfig,
    Config,
    ConfigError,
    CredentialConfig,
    GenerationConfig,
    HostPort,
    LogConfig,
    MetricsConfig,
    ScannerConfig,
    SeedingConfig,
    ServerConfig,
    StateConfig,
    TrackerConfig,
    check,
    ensure_default_bucket,
    load,
    parse_host_port,
    parse_size,
)
from seeder.config.rules import CHECKS
from seeder.config.schema import ARRAYS, SECTIONS
from seeder.config.values import KINDS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "config.md"
EXAMPLE = ROOT / "config" / "seeder.toml"

# A valid base every bad case adds to: one local bucket in ./data next to the file.
BASE = """
[[buckets]]
name = "data"
path = "data"
"""


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with ./data, so the file's label is just "seeder.toml"."""
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(here: Path, text: str, name: str = "seeder.toml") -> str:
    (here / name).write_text(text)
    return name


# --- parsing helpers ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("127.0.0.1:8000", HostPort("127.0.0.1", 8000)),
        ("0.0.0.0:0", HostPort("0.0.0.0", 0)),
        ("[::1]:6969", HostPort("::1", 6969)),
        ("[::]:65535", HostPort("::", 65535)),
        ("localhost:80", HostPort("localhost", 80)),
        ("seeder.example.com:443", HostPort("seeder.example.com", 443)),
    ],
)
def test_parse_host_port(text: str, want: HostPort) -> None:
    got = parse_host_port(text)
    assert got == want
    assert str(got) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("8000", "bad address '8000': expected \"host:port\" or \"[ipv6]:port\""),
        (":8000", "bad address ':8000': expected \"host:port\" or \"[ipv6]:port\""),
        ("host:", "bad address 'host:': the port must be a number 0-65535"),
        ("host:65536", "bad address 'host:65536': the port must be a number 0-65535"),
        ("host:-1", "bad address 'host:-1': the port must be a number 0-65535"),
        ("host:８０", "bad address 'host:８０': the port must be a number 0-65535"),
        ("::1:80", "bad address '::1:80': an IPv6 address needs brackets: \"[::1]:80\""),
        ("[::1]80", "bad address '[::1]80': expected \"host:port\" or \"[ipv6]:port\""),
        ("[1.2.3.4]:80", "bad address '[1.2.3.4]:80': '1.2.3.4' is not an IPv6 address"),
        ("bad_host:80", "bad address 'bad_host:80': 'bad_host' is not an IP address or host name"),
        ("a b:80", "bad address 'a b:80': 'a b' is not an IP address or host name"),
    ],
)
def test_parse_host_port_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_host_port(text)
    assert str(e.value) == message


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (0, 0),
        (1234, 1234),
        ("1234", 1234),
        ("16KiB", 16384),
        ("16 kib", 16384),
        ("1.5GiB", 1610612736),
        ("10GB", 10_000_000_000),
        ("1MB", 1_000_000),
        ("7B", 7),
        ("2TiB", 2 * 1024**4),
    ],
)
def test_parse_size(value: int | str, want: int) -> None:
    assert parse_size(value) == want


UNITS = "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "bad size -1: must not be negative"),
        ("-1", f"bad size '-1': expected bytes or a number with a unit {UNITS}"),
        ("10 GiBs", f"bad size '10 GiBs': expected bytes or a number with a unit {UNITS}"),
        ("1M", f"bad size '1M': expected bytes or a number with a unit {UNITS}"),
        ("", f"bad size '': expected bytes or a number with a unit {UNITS}"),
        ("0.5B", "bad size '0.5B': not a whole number of bytes"),
        (True, "bad size True"),
    ],
)
def test_parse_size_rejects(value: int | str, message: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_size(value)
    assert str(e.value) == message


# --- defaults ----------------------------------------------------------------------------------

def test_no_file_gives_the_embedded_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load(None, {})
    # Everything but the paths is the dataclass default; paths are absolute under the CWD.
    assert cfg == Config(
        state=StateConfig(dir=str(tmp_path / "state")),
        buckets=(BucketConfig(name="data", path=str(tmp_path / "data")),),
    )
    assert not (tmp_path / "data").exists()  # load never creates anything


def test_empty_file_gives_dataclass_defaults_and_no_buckets(here: Path) -> None:
    cfg = load(write(here, ""), {})
    assert cfg == Config(state=StateConfig(dir=str(here / "state")))


def test_ensure_default_bucket_creates_sample_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load(None, {})
    sample = ensure_default_bucket(cfg)
    assert sample == tmp_path / "data" / "hello.txt"
    assert sample.read_bytes() == SAMPLE_BODY
    sample.write_bytes(b"edited")
    assert ensure_default_bucket(cfg) is None  # not empty: left alone
    assert sample.read_bytes() == b"edited"
    assert load(None, {}) == cfg  # and now the directory exists, still valid


def test_ensure_default_bucket_leaves_a_nonempty_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.bin").write_bytes(b"x")
    assert ensure_default_bucket(load(None, {})) is None
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["mine.bin"]


def test_ensure_default_bucket_ignores_configs_without_it(here: Path) -> None:
    cfg = load(write(here, BASE.replace('"data"\npath', '"other"\npath')), {})
    assert ensure_default_bucket(cfg) is None


# --- a full file -------------------------------------------------------------------------------

FULL = """
[server]
listen = "[::1]:8080"
public_url = "https://torrents.example.com/"
trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]

[tracker]
enabled = true
listen = ""
udp_listen = "0.0.0.0:6969"
public_url = "udp://tracker.example.com:6969/announce"
udp_public_url = "udp://tracker.example.com:6969"
interval = 600
min_interval = 60
peer_timeout_factor = 3
max_swarms = 10
max_peers_per_swarm = 20
max_numwant = 30
trusted_proxies = []

[metrics]
listen = ""

[state]
dir = "var/state"

[generation]
threads = 4
concurrency = 3
read_ahead = 8

[scanner]
enabled = false
interval = 2.5

[seeding]
enabled = false
listen_interfaces = "0.0.0.0:6881,[::]:6881"
cache_max_bytes = "1GiB"
upload_rate_limit = 1000000
connections_limit = 50
dht = true
lsd = true
upnp = true
natpmp = true
ssrf_mitigation = false

[log]
level = "debug"
format = "json"

[[buckets]]
name = "data"
path = "data"
public = false
torrent_format = "hybrid"
webseed = "proxy"
piece_length = "256KiB"
requester_pays = true
expected_owner = "111122223333"

[[buckets]]
name = "my.bucket-2"
backend = "s3"
endpoint_url = "http://127.0.0.1:9000"
region = "eu-west-1"
addressing_style = "virtual"
access_key = "AK"
secret_key = "SK"

[[credentials]]
access_key = "reader"
secret_key = "s3cret"
buckets = ["data", "my.bucket-2"]

[[credentials]]
access_key = "admin"
secret_key = "x"
"""


def test_full_file(here: Path) -> None:
    cfg = load(write(here, FULL), {})
    assert cfg == Config(
        server=ServerConfig(
            listen=HostPort("::1", 8080),
            public_url="https://torrents.example.com/",
            trusted_proxies=("127.0.0.1", "10.0.0.0/8"),
        ),
        tracker=TrackerConfig(
            enabled=True, listen=None, udp_listen=HostPort("0.0.0.0", 6969),
            public_url="udp://tracker.example.com:6969/announce",
            udp_public_url="udp://tracker.example.com:6969", interval=600,
            min_interval=60, peer_timeout_factor=3.0, max_swarms=10, max_peers_per_swarm=20,
            max_numwant=30, trusted_proxies=(),
        ),
        metrics=MetricsConfig(listen=None),
        state=StateConfig(dir=str(here / "var" / "state")),
        generation=GenerationConfig(threads=4, concurrency=3, read_ahead=8),
        scanner=ScannerConfig(enabled=False, interval=2.5),
        seeding=SeedingConfig(
            enabled=False, listen_interfaces="0.0.0.0:6881,[::]:6881",
            cache_max_bytes=1024**3, upload_rate_limit=1_000_000, connections_limit=50,
            dht=True, lsd=True, upnp=True, natpmp=True, ssrf_mitigation=False,
        ),
        log=LogConfig(level="debug", format="json"),
        buckets=(
            BucketConfig(name="data", path=str(here / "data"), public=False,
                         torrent_format="hybrid", webseed="proxy", piece_length=256 * 1024,
                         requester_pays=True, expected_owner="111122223333"),
            BucketConfig(name="my.bucket-2", backend="s3", endpoint_url="http://127.0.0.1:9000",
                         region="eu-west-1", addressing_style="virtual", access_key="AK",
                         secret_key="SK"),
        ),
        credentials=(
            CredentialConfig("reader", "s3cret", ("data", "my.bucket-2")),
            CredentialConfig("admin", "x", ("*",)),
        ),
    )
    assert cfg.bucket("my.bucket-2") is cfg.buckets[1]
    assert check(write(here, FULL), {}) == []


def test_relative_paths_follow_the_file_not_the_cwd(tmp_path: Path, monkeypatch) -> None:
    etc = tmp_path / "etc"
    (etc / "objects").mkdir(parents=True)
    (etc / "seeder.toml").write_text(
        '[state]\ndir = "st"\n[[buckets]]\nname = "b"\npath = "objects"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load("../etc/seeder.toml", {})
    assert cfg.buckets[0].path == str(etc / "objects")
    assert cfg.state.dir == str(etc / "st")
    # Env values are relative to the CWD, like any command-line path.
    (elsewhere / "mine").mkdir()
    cfg = load("../etc/seeder.toml", {"SEEDER_BUCKETS_B_PATH": "mine", "SEEDER_STATE_DIR": "s"})
    assert cfg.buckets[0].path == str(elsewhere / "mine")
    assert cfg.state.dir == str(elsewhere / "s")
    # A state.dir left at its default lives beside the file too.
    (etc / "seeder.toml").write_text('[[buckets]]\nname = "b"\npath = "objects"\n')
    assert load(etc / "seeder.toml", {}).state.dir == str(etc / "state")


def test_absolute_and_home_paths(here: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(here))
    text = f'[state]\ndir = "{here}/abs"\n[[buckets]]\nname = "data"\npath = "~/data"\n'
    cfg = load(write(here, text), {})
    assert cfg.state.dir == str(here / "abs")
    assert cfg.buckets[0].path == str(here / "data")


# --- environment overrides ---------------------------------------------------------------------

def test_env_overrides_every_kind(here: Path) -> None:
    (here / "other").mkdir()
    env = {
        "SEEDER_SERVER_LISTEN": "0.0.0.0:80",
        "SEEDER_SERVER_TRUSTED_PROXIES": " 10.0.0.1 , 10.0.0.0/8,",
        "SEEDER_TRACKER_ENABLED": "off",
        "SEEDER_TRACKER_UDP_LISTEN": "[::]:6969",
        "SEEDER_TRACKER_PEER_TIMEOUT_FACTOR": "1.5",
        "SEEDER_TRACKER_INTERVAL": " 60 ",
        "SEEDER_TRACKER_MIN_INTERVAL": "60",
        "SEEDER_METRICS_LISTEN": "",
        "SEEDER_STATE_DIR": "/var/lib/x",
        "SEEDER_SEEDING_DHT": "YES",
        "SEEDER_SEEDING_CACHE_MAX_BYTES": "2GiB",
        "SEEDER_BUCKETS_DATA_PATH": "other",
        "SEEDER_BUCKETS_DATA_PIECE_LENGTH": "1048576",
        "SEEDER_BUCKETS_DATA_PUBLIC": "0",
        "SEEDER_CREDENTIALS_0_ACCESS_KEY": "ak",
        "SEEDER_CREDENTIALS_0_SECRET_KEY": "sk",
        "SEEDER_CREDENTIALS_0_BUCKETS": "data",
        "HOME": "/ignored", "SEEDERX": "ignored", "seeder_log_level": "ignored",
    }
    cfg = load(write(here, BASE), env)
    assert cfg.server.listen == HostPort("0.0.0.0", 80)
    assert cfg.server.trusted_proxies == ("10.0.0.1", "10.0.0.0/8")
    assert cfg.tracker.enabled is False
    assert cfg.tracker.udp_listen == HostPort("::", 6969)
    assert cfg.tracker.peer_timeout_factor == 1.5
    assert cfg.tracker.interval == 60
    assert cfg.metrics.listen is None
    assert cfg.state.dir == "/var/lib/x"
    assert cfg.seeding.dht is True
    assert cfg.seeding.cache_max_bytes == 2 * 1024**3
    assert cfg.buckets == (
        BucketConfig(name="data", path=str(here / "other"), piece_length=1 << 20, public=False),
    )
    assert cfg.credentials == (CredentialConfig("ak", "sk", ("data",)),)


def test_env_sets_the_udp_announce_url(here: Path) -> None:
    cfg = load(write(here, BASE), {"SEEDER_TRACKER_UDP_LISTEN": "0.0.0.0:6969",
                                   "SEEDER_TRACKER_UDP_PUBLIC_URL": "udp://t.example:6969/announce"})
    assert cfg.tracker.udp_public_url == "udp://t.example:6969/announce"
    assert cfg.tracker.public_url == TrackerConfig().public_url  # the HTTP one stays


def test_env_wins_over_file(here: Path) -> None:
    text = '[log]\nlevel = "debug"\n' + BASE
    assert load(write(here, text), {"SEEDER_LOG_LEVEL": "error"}).log.level == "error"
    assert load(write(here, text), {}).log.level == "debug"


def test_env_bucket_name_mapping(here: Path) -> None:
    text = """
[[buckets]]
name = "my-bucket.eu"
backend = "s3"
"""
    cfg = load(write(here, text), {"SEEDER_BUCKETS_MY_BUCKET_EU_SECRET_KEY": "sk",
                                   "SEEDER_BUCKETS_MY_BUCKET_EU_ACCESS_KEY": "ak"})
    assert cfg.buckets == (
        BucketConfig(name="my-bucket.eu", backend="s3", access_key="ak", secret_key="sk"),
    )


def test_env_adds_buckets_and_credentials(here: Path) -> None:
    env = {
        "SEEDER_BUCKETS_ZED_BACKEND": "s3",  # name from the token, lower-cased
        "SEEDER_BUCKETS_X_NAME": "Real.Name",  # name given explicitly
        "SEEDER_BUCKETS_X_BACKEND": "s3",
        "SEEDER_CREDENTIALS_5_ACCESS_KEY": "b",
        "SEEDER_CREDENTIALS_5_SECRET_KEY": "b2",
        "SEEDER_CREDENTIALS_2_ACCESS_KEY": "a",
        "SEEDER_CREDENTIALS_2_SECRET_KEY": "a2",
        "SEEDER_CREDENTIALS_2_BUCKETS": "zed,Real.Name,data",
    }
    cfg = load(write(here, BASE), env)
    assert [b.name for b in cfg.buckets] == ["data", "Real.Name", "zed"]
    assert cfg.buckets[1].backend == cfg.buckets[2].backend == "s3"
    assert cfg.credentials == (
        CredentialConfig("a", "a2", ("zed", "Real.Name", "data")),
        CredentialConfig("b", "b2"),
    )


def test_env_overrides_the_embedded_default_bucket(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "srv").mkdir()
    cfg = load(None, {"SEEDER_BUCKETS_DATA_PATH": "srv", "SEEDER_BUCKETS_DATA_PUBLIC": "false"})
    assert cfg.buckets == (BucketConfig(name="data", path=str(tmp_path / "srv"), public=False),)
    # Moved elsewhere, the directory must exist like any other bucket's.
    assert check(None, {"SEEDER_BUCKETS_DATA_PATH": "nope"}) == [
        f"env SEEDER_BUCKETS_DATA_PATH: buckets[0].path: directory {tmp_path / 'nope'} "
        "does not exist"
    ]


# --- every bad input, its exact line -----------------------------------------------------------

S3 = '[[buckets]]\nname = "s3b"\nbackend = "s3"\n'
POW2 = "must be 0 (automatic) or a power of two of at least 16 KiB (16384)"
HOSTPORT = 'expected "host:port" or "[ipv6]:port"'
UDP_LISTEN = '[tracker]\nudp_listen = "0.0.0.0:6969"\n'

BAD_FILES: list[tuple[str, str, list[str]]] = [
    # (id, file text appended to BASE, expected problems; "F" stands for "seeder.toml")
    ("unknown section", "[serverr]\nlisten = 1\n", ["F: serverr: unknown section"]),
    ("unknown key", '[server]\nlisten_addr = "x"\n', ["F: server.listen_addr: unknown key"]),
    ("unknown bucket key", S3 + "bucket = 1\n", ["F: buckets[1].bucket: unknown key"]),
    ("int as string", '[tracker]\ninterval = "30"\n',
     ["F: tracker.interval: expected an integer, got string '30'"]),
    ("bool as int", "[scanner]\nenabled = 1\n",
     ["F: scanner.enabled: expected a boolean (true or false), got integer 1"]),
    ("int as bool", "[generation]\nthreads = true\n",
     ["F: generation.threads: expected an integer, got boolean True"]),
    ("float as string", '[scanner]\ninterval = "5"\n',
     ["F: scanner.interval: expected a number, got string '5'"]),
    ("nan", "[scanner]\ninterval = nan\n",
     ["F: scanner.interval: expected a finite number, got float nan"]),
    ("string as int", "[log]\nlevel = 10\n", ["F: log.level: expected a string, got integer 10"]),
    ("listen as int", "[server]\nlisten = 8000\n",
     ['F: server.listen: expected a string "host:port", got integer 8000']),
    ("bad listen", '[server]\nlisten = "localhost"\n',
     [f"F: server.listen: bad address 'localhost': {HOSTPORT}"]),
    ("bad udp listen", '[tracker]\nudp_listen = "1.2.3.4:99999"\n',
     ["F: tracker.udp_listen: bad address '1.2.3.4:99999': the port must be a number 0-65535"]),
    ("server listen not optional", '[server]\nlisten = ""\n',
     [f"F: server.listen: bad address '': {HOSTPORT}"]),
    ("list as string", '[server]\ntrusted_proxies = "10.0.0.1"\n',
     ["F: server.trusted_proxies: expected an array of strings, got string '10.0.0.1'"]),
    ("bad proxy", '[tracker]\ntrusted_proxies = ["10.0.0.1", "nope"]\n',
     ["F: tracker.trusted_proxies: bad address or network 'nope': "
      "expected e.g. 10.0.0.1 or 10.0.0.0/8"]),
    ("bad url scheme", '[server]\npublic_url = "ftp://x"\n',
     ["F: server.public_url: bad URL 'ftp://x': expected http:// or https://"]),
    ("url without host", '[server]\npublic_url = "http://"\n',
     ["F: server.public_url: bad URL 'http://': no host"]),
    ("url with query", '[server]\npublic_url = "http://h/?a=1"\n',
     ["F: server.public_url: bad URL 'http://h/?a=1': no query or fragment allowed"]),
    ("url bad port", '[server]\npublic_url = "http://h:99999"\n',
     ["F: server.public_url: bad URL 'http://h:99999': Port out of range 0-65535"]),
    ("url with space", '[server]\npublic_url = "http://h /"\n',
     ["F: server.public_url: bad URL 'http://h /': contains white space"]),
    ("relative url", '[server]\npublic_url = "/x"\n',
     ["F: server.public_url: bad URL '/x': expected http:// or https://"]),
    ("tracker url", '[tracker]\npublic_url = "wss://t/announce"\n',
     ["F: tracker.public_url: bad URL 'wss://t/announce': expected http:// or https:// or udp://"]),
    ("endpoint url", S3 + 'endpoint_url = "localhost:9000"\n',
     ["F: buckets[1].endpoint_url: bad URL 'localhost:9000': expected http:// or https://"]),
    ("interval 0", "[tracker]\ninterval = 0\n",
     ["F: tracker.interval: must be at least 1, got 0"]),
    ("min above interval", "[tracker]\ninterval = 60\nmin_interval = 61\n",
     ["F: tracker.min_interval: must not exceed tracker.interval (60), got 61"]),
    ("timeout factor", "[tracker]\npeer_timeout_factor = 0.5\n",
     ["F: tracker.peer_timeout_factor: must be at least 1.0, got 0.5"]),
    ("numwant", "[tracker]\nmax_numwant = 0\n",
     ["F: tracker.max_numwant: must be at least 1, got 0"]),
    ("udp url scheme", UDP_LISTEN + 'udp_public_url = "http://t:6969/announce"\n',
     ["F: tracker.udp_public_url: bad URL 'http://t:6969/announce': expected udp://"]),
    ("udp url without port", UDP_LISTEN + 'udp_public_url = "udp://t/announce"\n',
     ["F: tracker.udp_public_url: bad URL 'udp://t/announce': "
      "needs a port 1-65535 (udp://host:port/announce)"]),
    ("udp url port 0", UDP_LISTEN + 'udp_public_url = "udp://t:0"\n',
     ["F: tracker.udp_public_url: bad URL 'udp://t:0': "
      "needs a port 1-65535 (udp://host:port/announce)"]),
    ("udp url without udp listener", '[tracker]\nudp_public_url = "udp://t:6969/announce"\n',
     ["F: tracker.udp_public_url: set, but tracker.udp_listen is not: "
      "clients would announce to nothing"]),
    ("udp url, tracker disabled",
     UDP_LISTEN + 'enabled = false\nudp_public_url = "udp://t:6969/announce"\n',
     ["F: tracker.udp_public_url: set, but the tracker is disabled (enabled = false)"]),
    ("tracker without listeners", '[tracker]\nlisten = ""\n',
     ["F: tracker.listen: the tracker is enabled but neither listen nor udp_listen is set"]),
    ("same listen twice", '[metrics]\nlisten = "127.0.0.1:8000"\n',
     ["F: metrics.listen: 127.0.0.1:8000 is also server.listen"]),
    ("same listen, blame the set one", '[server]\nlisten = "127.0.0.1:6969"\n',
     ["F: server.listen: 127.0.0.1:6969 is also tracker.listen"]),
    ("threads", "[generation]\nthreads = 0\n",
     ["F: generation.threads: must be at least 1, got 0"]),
    ("scan interval", "[scanner]\ninterval = 0\n",
     ["F: scanner.interval: must be more than 0, got 0.0"]),
    ("cache size", '[seeding]\ncache_max_bytes = "lots"\n',
     ["F: seeding.cache_max_bytes: bad size 'lots': expected bytes or a number with a unit "
      + UNITS]),
    ("negative size", "[seeding]\nupload_rate_limit = -5\n",
     ["F: seeding.upload_rate_limit: bad size -5: must not be negative"]),
    ("size as float", "[seeding]\ncache_max_bytes = 1.5\n",
     ["F: seeding.cache_max_bytes: expected a size (bytes, or a string like \"10GiB\"), "
      "got float 1.5"]),
    ("listen interfaces", '[seeding]\nlisten_interfaces = "eth0"\n',
     ["F: seeding.listen_interfaces: bad interface 'eth0': expected \"address:port\", "
      "e.g. 0.0.0.0:6881"]),
    ("empty listen interfaces", '[seeding]\nlisten_interfaces = ""\n',
     ["F: seeding.listen_interfaces: must name at least one address:port"]),
    ("log level", '[log]\nlevel = "loud"\n',
     ["F: log.level: must be one of debug, info, warning, error, critical, got 'loud'"]),
    ("log format", '[log]\nformat = "xml"\n',
     ["F: log.format: must be one of auto, human, journal, json, got 'xml'"]),
    ("state is a file", '[state]\ndir = "f"\n', ["F: state.dir: {here}/f is not a directory"]),
    ("bucket without name", '[[buckets]]\nbackend = "s3"\n',
     ["F: buckets[1].name: missing (required)"]),
    ("bad bucket name", '[[buckets]]\nname = "a/b"\nbackend = "s3"\n',
     ["F: buckets[1].name: bad bucket name 'a/b': letters, digits, '.', '-', '_', "
      "starting with a letter or digit"]),
    ("duplicate bucket", '[[buckets]]\nname = "data"\nbackend = "s3"\n',
     ["F: buckets[1].name: duplicate bucket name 'data' (also buckets[0])"]),
    ("bad backend", '[[buckets]]\nname = "x"\nbackend = "gcs"\n',
     ["F: buckets[1].backend: must be one of local, s3, got 'gcs'"]),
    ("local without path", '[[buckets]]\nname = "x"\n',
     ["F: buckets[1].path: missing: a local bucket needs a directory"]),
    ("local with empty path", '[[buckets]]\nname = "x"\npath = ""\n',
     ["F: buckets[1].path: missing: a local bucket needs a directory"]),
    ("missing directory", '[[buckets]]\nname = "x"\npath = "/nonexistent/x"\n',
     ["F: buckets[1].path: directory /nonexistent/x does not exist"]),
    ("path is a file", '[[buckets]]\nname = "x"\npath = "f"\n',
     ["F: buckets[1].path: {here}/f is not a directory"]),
    ("local with s3 keys", '[[buckets]]\nname = "x"\npath = "data"\nregion = "us-east-1"\n'
     'access_key = "a"\n',
     ["F: buckets[1].region: only for s3 buckets (this bucket is local)",
      "F: buckets[1].access_key: only for s3 buckets (this bucket is local)"]),
    ("s3 with path", S3 + 'path = "data"\n',
     ["F: buckets[1].path: only for local buckets (this bucket is s3)"]),
    ("access key alone", S3 + 'access_key = "a"\n',
     ["F: buckets[1].secret_key: missing: access_key is set"]),
    ("secret key alone", S3 + 'secret_key = "hunter2"\n',
     ["F: buckets[1].access_key: missing: secret_key is set"]),
    ("secret never echoed", S3 + "secret_key = 12345\n",
     ["F: buckets[1].secret_key: expected a string, got integer"]),
    ("bad region", S3 + 'region = "EU West"\n', ["F: buckets[1].region: bad region 'EU West'"]),
    ("addressing", S3 + 'addressing_style = "auto"\n',
     ["F: buckets[1].addressing_style: must be one of path, virtual, got 'auto'"]),
    ("torrent format", S3 + 'torrent_format = "v2"\n',
     ["F: buckets[1].torrent_format: must be one of v1, hybrid, got 'v2'"]),
    ("webseed", S3 + 'webseed = "cdn"\n',
     ["F: buckets[1].webseed: must be one of origin, proxy, got 'cdn'"]),
    ("piece not power of two", S3 + "piece_length = 100000\n",
     [f"F: buckets[1].piece_length: {POW2}, got 100000"]),
    ("piece too small", S3 + 'piece_length = "8KiB"\n',
     [f"F: buckets[1].piece_length: {POW2}, got 8192"]),
    ("credential missing keys", "[[credentials]]\nbuckets = []\n",
     ["F: credentials[0].access_key: missing (required)",
      "F: credentials[0].secret_key: missing (required)",
      'F: credentials[0].buckets: must name at least one bucket, or "*" for all']),
    ("credential unknown bucket", '[[credentials]]\naccess_key = "a"\nsecret_key = "b"\n'
     'buckets = ["data", "typo", "*"]\n',
     ["F: credentials[0].buckets: unknown bucket 'typo'"]),
    ("credential duplicate key", '[[credentials]]\naccess_key = "a"\nsecret_key = "b"\n'
     '[[credentials]]\naccess_key = "a"\nsecret_key = "c"\n',
     ["F: credentials[1].access_key: duplicate access key 'a' (also credentials[0])"]),
    ("credential empty secret", '[[credentials]]\naccess_key = "a"\nsecret_key = ""\n',
     ["F: credentials[0].secret_key: must not be empty"]),
    ("several problems at once", '[server]\nlisten = "x"\n[log]\nlevel = "loud"\nformat = 1\n'
     '[[credentials]]\naccess_key = "a"\nsecret_key = "b"\nbuckets = ["nope"]\n',
     [f"F: server.listen: bad address 'x': {HOSTPORT}",
      "F: log.level: must be one of debug, info, warning, error, critical, got 'loud'",
      "F: log.format: expected a string, got integer 1",
      "F: credentials[0].buckets: unknown bucket 'nope'"]),
]


@pytest.mark.parametrize(("text", "want"), [c[1:] for c in BAD_FILES],
                         ids=[c[0] for c in BAD_FILES])
def test_bad_file(here: Path, text: str, want: list[str]) -> None:
    (here / "f").write_text("a file, not a directory")
    name = write(here, BASE + text)
    want = [w.replace("F:", f"{name}:", 1).replace("{here}", str(here)) for w in want]
    assert check(name, {}) == want
    with pytest.raises(ConfigError) as e:
        load(name, {})
    assert e.value.problems == want
    assert str(e.value) == "\n".join(want)


# Top-level keys must come before any table, so these go in front of BASE.
BAD_TOP: list[tuple[str, str, list[str]]] = [
    ("unknown top key", "debug = true\n", ["seeder.toml: debug: unknown key"]),
    ("section not a table", "log = 3\n",
     ["seeder.toml: log: expected a table [log], got integer 3"]),
    ("array not tables", "credentials = [1]\n",
     ["seeder.toml: credentials: expected an array of tables [[credentials]], got array [1]"]),
    ("state not a table", 'state = "data"\n',
     ["seeder.toml: state: expected a table [state], got string 'data'"]),
]


@pytest.mark.parametrize(("text", "want"), [c[1:] for c in BAD_TOP],
                         ids=[c[0] for c in BAD_TOP])
def test_bad_top_level(here: Path, text: str, want: list[str]) -> None:
    assert check(write(here, text + BASE), {}) == want


BAD_ENV: list[tuple[str, dict[str, str], list[str]]] = [
    ("unknown variable", {"SEEDER_SERVER_PORT": "1"}, ["env SEEDER_SERVER_PORT: unknown variable"]),
    ("unknown section", {"SEEDER_FOO": "1"}, ["env SEEDER_FOO: unknown variable"]),
    ("bucket without key", {"SEEDER_BUCKETS_DATA": "x"},
     ["env SEEDER_BUCKETS_DATA: unknown variable (expected SEEDER_BUCKETS_<NAME>_<KEY>)"]),
    ("bucket unknown key", {"SEEDER_BUCKETS_DATA_COLOUR": "red"},
     ["env SEEDER_BUCKETS_DATA_COLOUR: unknown variable (expected SEEDER_BUCKETS_<NAME>_<KEY>)"]),
    ("bucket key without name", {"SEEDER_BUCKETS_PATH": "/x"},
     ["env SEEDER_BUCKETS_PATH: unknown variable (expected SEEDER_BUCKETS_<NAME>_<KEY>)"]),
    ("credential without index", {"SEEDER_CREDENTIALS_ACCESS_KEY": "a"},
     ["env SEEDER_CREDENTIALS_ACCESS_KEY: unknown variable "
      "(expected SEEDER_CREDENTIALS_<N>_<KEY>)"]),
    ("bad bool", {"SEEDER_SEEDING_DHT": "maybe"},
     ["env SEEDER_SEEDING_DHT: seeding.dht: expected a boolean (true or false), "
      "got string 'maybe'"]),
    ("bad int", {"SEEDER_TRACKER_INTERVAL": "1h"},
     ["env SEEDER_TRACKER_INTERVAL: tracker.interval: expected an integer, got string '1h'"]),
    ("bad float", {"SEEDER_SCANNER_INTERVAL": "soon"},
     ["env SEEDER_SCANNER_INTERVAL: scanner.interval: expected a number, got string 'soon'"]),
    ("inf", {"SEEDER_SCANNER_INTERVAL": "inf"},
     ["env SEEDER_SCANNER_INTERVAL: scanner.interval: expected a finite number, got string 'inf'"]),
    ("bad size", {"SEEDER_BUCKETS_DATA_PIECE_LENGTH": "1000"},
     [f"env SEEDER_BUCKETS_DATA_PIECE_LENGTH: buckets[0].piece_length: {POW2}, got 1000"]),
    ("bad listen", {"SEEDER_METRICS_LISTEN": "9100"},
     [f"env SEEDER_METRICS_LISTEN: metrics.listen: bad address '9100': {HOSTPORT}"]),
    ("missing dir", {"SEEDER_BUCKETS_DATA_PATH": "/nonexistent"},
     ["env SEEDER_BUCKETS_DATA_PATH: buckets[0].path: directory /nonexistent does not exist"]),
    ("new local bucket without path", {"SEEDER_BUCKETS_NEW_PUBLIC": "true"},
     ["env SEEDER_BUCKETS_NEW_PUBLIC: buckets[1].path: missing: a local bucket needs a directory"]),
    ("new credential without secret", {"SEEDER_CREDENTIALS_0_ACCESS_KEY": "a"},
     ["env SEEDER_CREDENTIALS_0_ACCESS_KEY: credentials[0].secret_key: missing (required)"]),
    ("credential unknown bucket", {"SEEDER_CREDENTIALS_0_ACCESS_KEY": "a",
                                   "SEEDER_CREDENTIALS_0_SECRET_KEY": "b",
                                   "SEEDER_CREDENTIALS_0_BUCKETS": "data,nope"},
     ["env SEEDER_CREDENTIALS_0_BUCKETS: credentials[0].buckets: unknown bucket 'nope'"]),
    ("secret never echoed", {"SEEDER_CREDENTIALS_0_ACCESS_KEY": "a",
                             "SEEDER_CREDENTIALS_0_SECRET_KEY": ""},
     ["env SEEDER_CREDENTIALS_0_SECRET_KEY: credentials[0].secret_key: must not be empty"]),
    ("udp url without udp listener", {"SEEDER_TRACKER_UDP_PUBLIC_URL": "udp://t:6969"},
     ["env SEEDER_TRACKER_UDP_PUBLIC_URL: tracker.udp_public_url: set, but "
      "tracker.udp_listen is not: clients would announce to nothing"]),
]


@pytest.mark.parametrize(("env", "want"), [c[1:] for c in BAD_ENV],
                         ids=[c[0] for c in BAD_ENV])
def test_bad_env(here: Path, env: dict[str, str], want: list[str]) -> None:
    assert check(write(here, BASE), env) == want


def test_env_name_matching_two_buckets(here: Path) -> None:
    text = '[[buckets]]\nname = "a-b"\nbackend = "s3"\n[[buckets]]\nname = "a.b"\nbackend = "s3"\n'
    assert check(write(here, text), {"SEEDER_BUCKETS_A_B_REGION": "x"}) == [
        "env SEEDER_BUCKETS_A_B_REGION: matches more than one bucket ('a-b', 'a.b')"
    ]


@pytest.mark.parametrize(
    ("content", "want"),
    [
        (b"[server\n", "seeder.toml: invalid TOML: Expected ']' at the end of a table declaration "
                       "(at line 1, column 8)"),
        (b"a = 1\na = 2\n", "seeder.toml: invalid TOML: Cannot overwrite a value "
                            "(at line 2, column 6)"),
        (b"\xff\xfe", "seeder.toml: invalid TOML: not UTF-8 text"),
    ],
)
def test_unreadable_files(here: Path, content: bytes, want: str) -> None:
    (here / "seeder.toml").write_bytes(content)
    assert check("seeder.toml", {}) == [want]


def test_missing_file(here: Path) -> None:
    assert check("absent.toml", {}) == ["absent.toml: cannot read: No such file or directory"]
    assert check(here, {}) == [f"{here}: cannot read: Is a directory"]


# --- docs and example cannot drift from the dataclasses ----------------------------------------

def _toml_literal(value: object) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | HostPort):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return repr(value)


def _all_fields() -> list[tuple[str, str, dataclasses.Field]]:
    return [
        (section, f.name, f)
        for section, cls in {**SECTIONS, **ARRAYS}.items()
        for f in dataclasses.fields(cls)
    ]


def _doc_sections() -> dict[str, str]:
    """docs/config.md split at its "## `[section]`" / "## `[[array]]`" headings."""
    parts = re.split(r"^## `\[{1,2}(\w+)\]{1,2}`.*$", DOCS.read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_docs_have_every_section_and_nothing_else() -> None:
    assert sorted(_doc_sections()) == sorted({**SECTIONS, **ARRAYS})


@pytest.mark.parametrize(("section", "key", "f"), _all_fields(),
                         ids=[f"{s}.{k}" for s, k, _ in _all_fields()])
def test_docs_row_for_every_field(section: str, key: str, f: dataclasses.Field) -> None:
    rows = [line for line in _doc_sections()[section].splitlines()
            if line.startswith(f"| `{key}` |")]
    assert len(rows) == 1, f"docs/config.md: no single row for {section}.{key}"
    row = rows[0]
    if section == "buckets":
        env = f"`SEEDER_BUCKETS_<NAME>_{key.upper()}`"
    elif section == "credentials":
        env = f"`SEEDER_CREDENTIALS_<N>_{key.upper()}`"
    else:
        env = f"`SEEDER_{section.upper()}_{key.upper()}`"
    assert env in row
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        assert "| required |" in row
    else:
        assert f"| `{_toml_literal(f.default)}`" in row


def _example_tables() -> dict[str, str]:
    """config/seeder.toml's text per table header (arrays' tables joined)."""
    out: dict[str, str] = {}
    current = ""
    for line in EXAMPLE.read_text().splitlines():
        m = re.fullmatch(r"\[{1,2}(\w+)\]{1,2}", line.strip())
        if m:
            current = m.group(1)
        out[current] = out.get(current, "") + line + "\n"
    return out


@pytest.mark.parametrize(("section", "key"), [(s, k) for s, k, _ in _all_fields()],
                         ids=[f"{s}.{k}" for s, k, _ in _all_fields()])
def test_example_has_every_field(section: str, key: str) -> None:
    text = _example_tables().get(section, "")
    # Set, or shown commented out ("# key = ...").
    assert re.search(rf"^(# )?{key} = ", text, flags=re.M), f"config/seeder.toml: {section}.{key}"


def test_example_loads(tmp_path: Path) -> None:
    """The example is valid as written, once its directories point somewhere real."""
    (tmp_path / "pub").mkdir()
    env = {"SEEDER_STATE_DIR": str(tmp_path / "state"),
           "SEEDER_BUCKETS_PUBLIC_DATA_PATH": str(tmp_path / "pub")}
    cfg = load(EXAMPLE, env)
    assert [b.name for b in cfg.buckets] == ["public-data", "my-bucket"]
    # Its only problem as shipped is the deployment directory.
    assert check(EXAMPLE, {"SEEDER_STATE_DIR": str(tmp_path / "state")}) == [
        f"{EXAMPLE}: buckets[0].path: directory /srv/seeder/public-data does not exist"
    ]


def test_every_field_has_a_converter_and_known_kind() -> None:
    assert set(KINDS) == {(s, k) for s, k, _ in _all_fields()}
    assert set(KINDS.values()) <= {"bool", "int", "size", "float", "str", "optstr",
                                     "hostport", "opthostport", "strlist"}
    assert set(CHECKS) <= set(KINDS)
