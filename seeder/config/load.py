"""Daemon configuration: a TOML file plus ``SEEDER_<SECTION>_<KEY>`` environment overrides,
validated into frozen dataclasses.

The key names are a user contract (see config/seeder.toml and docs/config.md, which a unit
test keeps in step with the dataclasses below).

Loading goes in three passes, each collecting problems instead of stopping at the first:
the file (unknown sections and keys) and the environment (unknown variables) become raw
values that remember their origin; each value is converted by its field's type and
checked on its own (``CHECKS``); then cross-key rules run (duplicates, directories,
credentials naming buckets, listeners colliding). Every problem is one line,
``ORIGIN: KEY: MESSAGE``, so ``seeder check-config`` can list them all at once.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import tomllib
import typing
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

__all__ = [
    "BucketConfig",
    "Config",
    "ConfigError",
    "CredentialConfig",
    "GenerationConfig",
    "HostPort",
    "LogConfig",
    "MetricsConfig",
    "ScannerConfig",
    "SeedingConfig",
    "ServerConfig",
    "StateConfig",
    "TrackerConfig",
    "check",
    "ensure_default_bucket",
    "env_token",
    "load",
    "parse_host_port",
    "parse_size",
]

@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: HostPort = HostPort("127.0.0.1", 8000)
    public_url: str = "http://127.0.0.1:8000"
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    enabled: bool = True
    listen: HostPort | None = HostPort("127.0.0.1", 6969)
    udp_listen: HostPort | None = None
    public_url: str = "http://127.0.0.1:6969/announce"
    # The UDP tracker's announce URL (BEP 15), written as the first announce-list tier
    # (torrents.torrent_links); "" = none. Only with udp_listen set and the tracker enabled.
    udp_public_url: str = ""
    interval: int = 1800
    min_interval: int = 300
    peer_timeout_factor: float = 2.0
    max_swarms: int = 100_000
    max_peers_per_swarm: int = 50_000
    max_numwant: int = 200
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen: HostPort | None = HostPort("127.0.0.1", 9100)


@dataclass(frozen=True, slots=True)
class StateConfig:
    dir: str = "./state"


@dataclass(frozen=True, slots=True)
class GenerationConfig:
    threads: int = 2
    concurrency: int = 2
    read_ahead: int = 4


@dataclass(frozen=True, slots=True)
class ScannerConfig:
    enabled: bool = True
    interval: float = 300.0


@dataclass(frozen=True, slots=True)
class SeedingConfig:
    enabled: bool = True
    listen_interfaces: str = "0.0.0.0:6881"
    cache_dir: str | None = None  # None: <state.dir>/seeds
    cache_max_bytes: int = 10 * 1024**3
    upload_rate_limit: int = 0
    connections_limit: int = 500
    dht: bool = False
    lsd: bool = False
    upnp: bool = False
    natpmp: bool = False
    ssrf_mitigation: bool = True
    swarm_budget: float = 2.0  # copies of an object sent into a swarm before backing off; 0 = off
    swarm_trickle_rate: int = 64 * 1024  # bytes/s per torrent: budget spent, peers hold all
    peer_request_queue: int = 64  # 16 KiB block requests one peer may queue at the session


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    format: str = "auto"  # auto | human | journal | json


@dataclass(frozen=True, slots=True)
class BucketConfig:
    name: str
    backend: str = "local"  # local | s3
    path: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: str = "path"  # path | virtual
    access_key: str | None = None
    secret_key: str | None = None
    public: bool = True
    requester_pays: bool = False
    expected_owner: str | None = None
    torrent_format: str = "v1"  # v1 | hybrid
    webseed: str = "origin"  # origin | proxy
    piece_length: int = 0  # 0 = auto (metainfo.piece_length_for)
    presign_webseed: int = 0  # private origin buckets: presigned web seed lifetime, s; 0 = none


@dataclass(frozen=True, slots=True)
class CredentialConfig:
    access_key: str
    secret_key: str
    buckets: tuple[str, ...] = ("*",)

    def can_read(self, bucket: str) -> bool:
        return "*" in self.buckets or bucket in self.buckets


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    state: StateConfig = field(default_factory=StateConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    scanner: ScannerConfig = field(default_factory=ScannerConfig)
    seeding: SeedingConfig = field(default_factory=SeedingConfig)
    log: LogConfig = field(default_factory=LogConfig)
    buckets: tuple[BucketConfig, ...] = ()
    credentials: tuple[CredentialConfig, ...] = ()

    def bucket(self, name: str) -> BucketConfig | None:
        for b in self.buckets:
            if b.name == name:
                return b
        return None


# ---------------------------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------------------------

ENV_PREFIX = "SEEDER_"
DEFAULTS_LABEL = "(defaults)"  # the origin named in problems about the embedded default config
DEFAULT_BUCKET_NAME = "data"
DEFAULT_BUCKET_PATH = "./data"
SAMPLE_OBJECT = "hello.txt"
SAMPLE_BODY = (
    b"Hello from s3torrent.\n"
    b"This file was created because the default bucket directory was empty.\n"
    b"Fetch its torrent: curl -o hello.torrent 'http://127.0.0.1:8000/data/hello.txt?torrent'\n"
)

MIN_PIECE_LENGTH = 16 * 1024  # BEP 52: v2 pieces are at least 16 KiB; v1 clients agree
BACKENDS = ("local", "s3")
ADDRESSING_STYLES = ("path", "virtual")
TORRENT_FORMATS = ("v1", "hybrid")
WEBSEEDS = ("origin", "proxy")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("auto", "human", "journal", "json")

SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "tracker": TrackerConfig,
    "metrics": MetricsConfig,
    "state": StateConfig,
    "generation": GenerationConfig,
    "scanner": ScannerConfig,
    "seeding": SeedingConfig,
    "log": LogConfig,
}
ARRAYS: dict[str, type] = {"buckets": BucketConfig, "credentials": CredentialConfig}

# Integer fields that also take a size string ("10GiB").
SIZE_KEYS = frozenset(
    {
        ("seeding", "cache_max_bytes"),
        ("seeding", "upload_rate_limit"),
        ("seeding", "swarm_trickle_rate"),
        ("buckets", "piece_length"),
    }
)
# Directory fields: relative values are resolved against the file's directory (or the CWD).
PATH_KEYS = frozenset({("state", "dir"), ("seeding", "cache_dir"), ("buckets", "path")})
# Never echoed back in a problem line.
SECRET_KEYS = frozenset({("buckets", "secret_key"), ("credentials", "secret_key")})
# Keys of a local bucket that only mean something for s3.
S3_ONLY_KEYS = ("endpoint_url", "region", "addressing_style", "access_key", "secret_key")

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")
_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
# Legacy S3 bucket names (us-east-1 allowed upper case and '_'); the name is a URL path segment.
_BUCKET_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_REGION_RE = re.compile(r"[a-z0-9][a-z0-9-]*")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` holds one line per problem, each
    ``ORIGIN: KEY: MESSAGE`` (ORIGIN is the file path, ``env NAME`` or ``(defaults)``)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def parse_host_port(text: str) -> HostPort:
    """``"host:port"`` or ``"[ipv6]:port"`` -> HostPort (brackets dropped). The host is an
    IPv4 address, a bracketed IPv6 address or a host name; the port 0..65535 (0: any free
    port). Raises ValueError with a one-line message."""
    bad = f"bad address {text!r}"
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f'{bad}: expected "host:port" or "[ipv6]:port"')
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{bad}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f'{bad}: expected "host:port" or "[ipv6]:port"')
        if ":" in host:
            raise ValueError(f'{bad}: an IPv6 address needs brackets: "[{host}]:{port}"')
        if not _HOSTNAME_RE.fullmatch(host):
            raise ValueError(f"{bad}: {host!r} is not an IP address or host name")
    if not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{bad}: the port must be a number 0-65535")
    return HostPort(host, int(port))


def parse_size(value: int | str) -> int:
    """A byte count from an int or a string: ``"1048576"``, ``"512KiB"``, ``"1.5 GiB"``,
    ``"10GB"``. Units (any case): B; KB MB GB TB (powers of 1000); KiB MiB GiB TiB (powers
    of 1024). Raises ValueError for a negative, fractional or malformed size."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"bad size {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"bad size {value}: must not be negative")
        return value
    m = _SIZE_RE.fullmatch(value)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _SIZE_UNITS:
        raise ValueError(
            f"bad size {value!r}: expected bytes or a number with a unit "
            "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"
        )
    n = Fraction(m.group(1)) * _SIZE_UNITS[unit]
    if n.denominator != 1:
        raise ValueError(f"bad size {value!r}: not a whole number of bytes")
    return int(n)


def env_token(bucket_name: str) -> str:
    """The NAME part of ``SEEDER_BUCKETS_<NAME>_<KEY>`` for a bucket: upper case, with
    ``-`` and ``.`` as ``_``."""
    return bucket_name.upper().replace("-", "_").replace(".", "_")


@dataclass(slots=True)
class _Val:
    """One raw value and where it came from."""

    value: object
    origin: str  # "path/to/seeder.toml", "env SEEDER_X" or DEFAULTS_LABEL
    base: Path  # what a relative path in it is relative to
    from_env: bool = False


_Item = dict[str, _Val]


class _Bad(Exception):
    """A value does not convert; the message is the problem text after ``KEY: ``."""


def _tname(v: object) -> str:
    if isinstance(v, bool):
        return "boolean"
    return {int: "integer", float: "float", str: "string", list: "array", dict: "table"}.get(
        type(v), type(v).__name__
    )


def _got(v: object, secret: bool = False) -> str:
    if secret:
        return _tname(v)
    text = repr(v)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{_tname(v)} {text}"


def _field_types(cls: type) -> dict[str, object]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _kind(section: str, key: str, tp: object) -> str:
    args = set(typing.get_args(tp))
    if tp is bool:
        return "bool"
    if tp is int:
        return "size" if (section, key) in SIZE_KEYS else "int"
    if tp is float:
        return "float"
    if tp is str:
        return "str"
    if tp is HostPort:
        return "hostport"
    if args == {str, type(None)}:
        return "optstr"
    if args == {HostPort, type(None)}:
        return "opthostport"
    if typing.get_origin(tp) is tuple:
        return "strlist"
    raise TypeError(f"no converter for {section}.{key}: {tp!r}")  # a new field needs one


KINDS: dict[tuple[str, str], str] = {
    (section, key): _kind(section, key, tp)
    for section, cls in {**SECTIONS, **ARRAYS}.items()
    for key, tp in _field_types(cls).items()
}


def _convert(kind: str, v: object, from_env: bool, secret: bool) -> object:
    """A raw TOML or environment value -> the field's Python value, or _Bad."""
    got = _got(v, secret)
    if kind == "bool":
        if isinstance(v, bool):
            return v
        if from_env and isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
            return v.strip().lower() in _TRUE
        raise _Bad(f"expected a boolean (true or false), got {got}")
    if kind in ("int", "size"):
        if from_env and isinstance(v, str) and kind == "int":
            try:
                return int(v.strip())
            except ValueError:
                raise _Bad(f"expected an integer, got {got}") from None
        if kind == "int" and isinstance(v, int) and not isinstance(v, bool):
            return v
        if kind == "size" and isinstance(v, int | str) and not isinstance(v, bool):
            try:
                return parse_size(v)
            except ValueError as e:
                raise _Bad(str(e)) from None
        if kind == "size":
            raise _Bad(f'expected a size (bytes, or a string like "10GiB"), got {got}')
        raise _Bad(f"expected an integer, got {got}")
    if kind == "float":
        if from_env and isinstance(v, str):
            try:
                v = float(v.strip())
            except ValueError:
                raise _Bad(f"expected a number, got {got}") from None
        if isinstance(v, int | float) and not isinstance(v, bool):
            if not math.isfinite(v):
                raise _Bad(f"expected a finite number, got {got}")
            return float(v)
        raise _Bad(f"expected a number, got {got}")
    if kind in ("str", "optstr"):
        if isinstance(v, str):
            return None if kind == "optstr" and v == "" else v
        raise _Bad(f"expected a string, got {got}")
    if kind in ("hostport", "opthostport"):
        if not isinstance(v, str):
            raise _Bad(f'expected a string "host:port", got {got}')
        if kind == "opthostport" and v.strip() == "":
            return None
        try:
            return parse_host_port(v.strip())
        except ValueError as e:
            raise _Bad(str(e)) from None
    if kind == "strlist":
        if from_env and isinstance(v, str):
            return tuple(s.strip() for s in v.split(",") if s.strip())
        if isinstance(v, list) and all(isinstance(s, str) for s in v):
            return tuple(v)
        raise _Bad(f"expected an array of strings, got {got}")
    raise AssertionError(kind)


# --- per-key checks on converted values: a message, or None -----------------------------------


def _at_least(n: float) -> Callable[[object], str | None]:
    def check(v: object) -> str | None:
        return None if v >= n else f"must be at least {n}, got {v}"  # type: ignore[operator]

    return check


def _above(n: float) -> Callable[[object], str | None]:
    def check(v: object) -> str | None:
        return None if v > n else f"must be more than {n}, got {v}"  # type: ignore[operator]

    return check


def _between(lo: int, hi: int) -> Callable[[object], str | None]:
    def check(v: object) -> str | None:
        ok = lo <= v <= hi  # type: ignore[operator]
        return None if ok else f"must be from {lo} to {hi}, got {v}"

    return check


def _one_of(choices: tuple[str, ...]) -> Callable[[object], str | None]:
    def check(v: object) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}, got {v!r}"

    return check


def _url(schemes: tuple[str, ...], *, empty_ok: bool = False) -> Callable[[object], str | None]:
    def check(v: object) -> str | None:
        assert isinstance(v, str)
        if v == "" and empty_ok:
            return None
        want = " or ".join(f"{s}://" for s in schemes)
        bad = f"bad URL {v!r}"
        if any(c.isspace() for c in v):
            return f"{bad}: contains white space"
        try:
            parts = urllib.parse.urlsplit(v)
            parts.port  # noqa: B018 -- raises ValueError for a bad port
        except ValueError as e:
            return f"{bad}: {e}"
        if parts.scheme not in schemes:
            return f"{bad}: expected {want}"
        if not parts.hostname:
            return f"{bad}: no host"
        if parts.query or parts.fragment:
            return f"{bad}: no query or fragment allowed"
        return None

    return check


def _udp_url(v: object) -> str | None:
    """A ``udp://host:port[/path]`` URL or ``""``. The port is required: UDP trackers have no
    default port. The path is BEP 41 "URL data" that
    the UDP tracker ignores, so any path (usually ``/announce``) is accepted."""
    problem = _url(("udp",), empty_ok=True)(v)
    if problem is None and v and not urllib.parse.urlsplit(v).port:  # type: ignore[arg-type]
        problem = f"bad URL {v!r}: needs a port 1-65535 (udp://host:port/announce)"
    return problem


def _networks(v: object) -> str | None:
    for item in v:  # type: ignore[attr-defined]
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            return f"bad address or network {item!r}: expected e.g. 10.0.0.1 or 10.0.0.0/8"
    return None


def _listen_interfaces(v: object) -> str | None:
    # libtorrent's listen_interfaces: "ADDRESS:PORT[s|l],..." where ADDRESS may also be a
    # device name (eth0) or [ipv6].
    assert isinstance(v, str)
    if not v.strip():
        return "must name at least one address:port"
    for item in v.split(","):
        item = item.strip()
        host, sep, port = item.rpartition(":")
        port = port.rstrip("sl")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            return f'bad interface {item!r}: expected "address:port", e.g. 0.0.0.0:6881'
    return None


def _piece_length(v: object) -> str | None:
    assert isinstance(v, int)
    if v == 0 or (v >= MIN_PIECE_LENGTH and v & (v - 1) == 0):
        return None
    return f"must be 0 (automatic) or a power of two of at least 16 KiB (16384), got {v}"


def _bucket_name(v: object) -> str | None:
    assert isinstance(v, str)
    if _BUCKET_NAME_RE.fullmatch(v):
        return None
    return f"bad bucket name {v!r}: letters, digits, '.', '-', '_', starting with a letter or digit"


def _region(v: object) -> str | None:
    return None if _REGION_RE.fullmatch(v) else f"bad region {v!r}"  # type: ignore[arg-type]


def _not_empty(v: object) -> str | None:
    return "must not be empty" if not v else None


def _credential_buckets(v: object) -> str | None:
    return 'must name at least one bucket, or "*" for all' if not v else None


CHECKS: dict[tuple[str, str], Callable[[object], str | None]] = {
    ("server", "public_url"): _url(("http", "https")),
    ("server", "trusted_proxies"): _networks,
    ("tracker", "public_url"): _url(("http", "https", "udp"), empty_ok=True),
    ("tracker", "udp_public_url"): _udp_url,
    ("tracker", "interval"): _at_least(1),
    ("tracker", "min_interval"): _at_least(1),
    ("tracker", "peer_timeout_factor"): _at_least(1.0),
    ("tracker", "max_swarms"): _at_least(1),
    ("tracker", "max_peers_per_swarm"): _at_least(1),
    ("tracker", "max_numwant"): _at_least(1),
    ("tracker", "trusted_proxies"): _networks,
    ("generation", "threads"): _at_least(1),
    ("generation", "concurrency"): _at_least(1),
    ("generation", "read_ahead"): _at_least(1),
    ("scanner", "interval"): _above(0),
    ("seeding", "listen_interfaces"): _listen_interfaces,
    ("seeding", "connections_limit"): _at_least(1),
    ("seeding", "swarm_budget"): _at_least(0.0),
    ("seeding", "swarm_trickle_rate"): _at_least(1),
    ("seeding", "peer_request_queue"): _between(2, 2000),
    ("log", "level"): _one_of(LOG_LEVELS),
    ("log", "format"): _one_of(LOG_FORMATS),
    ("buckets", "name"): _bucket_name,
    ("buckets", "backend"): _one_of(BACKENDS),
    ("buckets", "endpoint_url"): _url(("http", "https")),
    ("buckets", "region"): _region,
    ("buckets", "addressing_style"): _one_of(ADDRESSING_STYLES),
    ("buckets", "access_key"): _not_empty,
    ("buckets", "secret_key"): _not_empty,
    ("buckets", "torrent_format"): _one_of(TORRENT_FORMATS),
    ("buckets", "webseed"): _one_of(WEBSEEDS),
    ("buckets", "piece_length"): _piece_length,
    # SigV4 presigned URLs live at most 7 days.
    ("buckets", "presign_webseed"): _between(0, 604800),
    ("credentials", "access_key"): _not_empty,
    ("credentials", "secret_key"): _not_empty,
    ("credentials", "buckets"): _credential_buckets,
}


# --- the raw layer: TOML file + environment, with origins --------------------------------------


@dataclass(slots=True)
class _Raw:
    sections: dict[str, _Item]
    buckets: list[_Item]
    credentials: list[_Item]
    problems: list[str]


def _read_toml(path: Path, label: str) -> dict[str, object]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError([f"{label}: cannot read: {e.strerror or e}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{label}: invalid TOML: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{label}: invalid TOML: {e}"]) from None


def _from_file(data: dict[str, object], label: str, base: Path) -> _Raw:
    raw = _Raw({s: {} for s in SECTIONS}, [], [], [])

    def item(table: dict[str, object], section: str, where: str) -> _Item:
        known = KINDS.keys()
        out: _Item = {}
        for key, value in table.items():
            if (section, key) in known:
                out[key] = _Val(value, label, base)
            else:
                raw.problems.append(f"{label}: {where}{key}: unknown key")
        return out

    for top, value in data.items():
        if top in SECTIONS:
            if not isinstance(value, dict):
                raw.problems.append(f"{label}: {top}: expected a table [{top}], got {_got(value)}")
                continue
            raw.sections[top] = item(value, top, f"{top}.")
        elif top in ARRAYS:
            if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
                raw.problems.append(
                    f"{label}: {top}: expected an array of tables [[{top}]], got {_got(value)}"
                )
                continue
            items = [item(t, top, f"{top}[{i}].") for i, t in enumerate(value)]
            getattr(raw, top).extend(items)
        else:
            what = "section" if isinstance(value, dict) else "key"
            raw.problems.append(f"{label}: {top}: unknown {what}")
    return raw


def _apply_env(raw: _Raw, env: Mapping[str, str], cwd: Path) -> None:
    """Overlay ``SEEDER_*`` variables on ``raw`` (sorted by name, so the result is stable)."""
    bucket_keys = sorted((k for s, k in KINDS if s == "buckets"), key=len, reverse=True)
    cred_keys = {k for s, k in KINDS if s == "credentials"}
    new_buckets: dict[str, _Item] = {}
    new_creds: dict[int, _Item] = {}
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX):]
        val = _Val(env[name], f"env {name}", cwd, from_env=True)
        head, _, tail = rest.partition("_")
        section = head.lower()
        if section in SECTIONS and (section, tail.lower()) in KINDS:
            raw.sections[section][tail.lower()] = val
        elif section == "buckets":
            key = next((k for k in bucket_keys if tail.endswith("_" + k.upper())), None)
            token = tail[: -len(key) - 1] if key else ""
            if not key or not token:
                raw.problems.append(
                    f"env {name}: unknown variable (expected SEEDER_BUCKETS_<NAME>_<KEY>)"
                )
                continue
            matches = [b for b in raw.buckets if env_token(str(b["name"].value)) == token
                       if "name" in b and isinstance(b["name"].value, str)]
            if len(matches) > 1:
                names = ", ".join(repr(b["name"].value) for b in matches)
                raw.problems.append(f"env {name}: matches more than one bucket ({names})")
                continue
            target = matches[0] if matches else new_buckets.setdefault(token, {})
            target[key] = val
        elif section == "credentials":
            index, _, key = tail.partition("_")
            key = key.lower()
            if not index.isdigit() or key not in cred_keys:
                raw.problems.append(
                    f"env {name}: unknown variable (expected SEEDER_CREDENTIALS_<N>_<KEY>)"
                )
                continue
            n = int(index)
            target = raw.credentials[n] if n < len(raw.credentials) else new_creds.setdefault(n, {})
            target[key] = val
        else:
            raw.problems.append(f"env {name}: unknown variable")
    for token, item in new_buckets.items():
        if "name" not in item:
            first = next(iter(item.values()))
            item["name"] = _Val(token.lower(), first.origin, cwd, from_env=True)
        raw.buckets.append(item)
    raw.credentials.extend(new_creds[n] for n in sorted(new_creds))


# --- raw -> dataclasses ------------------------------------------------------------------------


def _resolve(value: str, base: Path) -> str:
    return os.path.normpath(base / Path(value).expanduser())


def _build(
    cls: type, section: str, item: _Item, where: str, default: _Val, problems: list[str]
) -> object | None:
    """One dataclass from raw values; None (and problems) if any value is bad or missing."""
    kwargs: dict[str, object] = {}
    ok = True
    for f in dataclasses.fields(cls):
        key = f.name
        path = f"{where}{key}"
        v = item.get(key)
        if v is None:
            has_default = (
                f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            )
            if not has_default:
                problems.append(f"{default.origin}: {path}: missing (required)")
                ok = False
            elif (section, key) in PATH_KEYS and isinstance(f.default, str):
                kwargs[key] = _resolve(f.default, default.base)
            continue
        try:
            value = _convert(KINDS[section, key], v.value, v.from_env,
                             (section, key) in SECRET_KEYS)
            check = CHECKS.get((section, key))
            message = check(value) if check is not None and value is not None else None
            if message:
                raise _Bad(message)
        except _Bad as e:
            problems.append(f"{v.origin}: {path}: {e}")
            ok = False
            continue
        if (section, key) in PATH_KEYS and isinstance(value, str):
            value = _resolve(value, v.base)
        kwargs[key] = value
    return cls(**kwargs) if ok else None


def _origin(item: _Item, key: str, fallback: str) -> str:
    v = item.get(key)
    return v.origin if v is not None else fallback


def _check_config(
    parts: dict[str, object | None],
    buckets: list[BucketConfig | None],
    creds: list[CredentialConfig | None],
    raw: _Raw,
    label: str,
) -> list[str]:
    """Cross-key problems. Parts that failed to build are None and skipped, so every problem
    is reported in one pass without echoes of an earlier one."""
    problems: list[str] = []

    def at(item: _Item, key: str, path: str, message: str) -> None:
        problems.append(f"{_origin(item, key, label)}: {path}: {message}")

    sect = raw.sections
    t = parts["tracker"]
    if isinstance(t, TrackerConfig):
        if t.min_interval > t.interval:
            at(sect["tracker"], "min_interval", "tracker.min_interval",
               f"must not exceed tracker.interval ({t.interval}), got {t.min_interval}")
        if t.enabled and t.listen is None and t.udp_listen is None:
            at(sect["tracker"], "listen", "tracker.listen",
               "the tracker is enabled but neither listen nor udp_listen is set")
        if t.udp_public_url and not t.enabled:
            at(sect["tracker"], "udp_public_url", "tracker.udp_public_url",
               "set, but the tracker is disabled (enabled = false)")
        elif t.udp_public_url and t.udp_listen is None:
            at(sect["tracker"], "udp_public_url", "tracker.udp_public_url",
               "set, but tracker.udp_listen is not: clients would announce to nothing")
    listeners: list[tuple[str, HostPort | None]] = []
    if isinstance(srv := parts["server"], ServerConfig):
        listeners.append(("server", srv.listen))
    if isinstance(t, TrackerConfig) and t.enabled:
        listeners.append(("tracker", t.listen))
    if isinstance(met := parts["metrics"], MetricsConfig):
        listeners.append(("metrics", met.listen))
    seen: dict[tuple[str, int], str] = {}
    for section, hp in listeners:
        if hp is None or hp.port == 0:
            continue
        other = seen.setdefault((hp.host, hp.port), section)
        if other != section:
            # Blame the one the user set, not the default it collides with.
            blamed, also = (other, section) if "listen" in sect[other] else (section, other)
            at(sect[blamed], "listen", f"{blamed}.listen", f"{hp} is also {also}.listen")
    if isinstance(st := parts["state"], StateConfig):
        state = Path(st.dir)
        if state.exists() and not state.is_dir():
            at(sect["state"], "dir", "state.dir", f"{state} is not a directory")

    names: dict[str, int] = {}  # bucket name -> first index, from raw so bad buckets count
    for i, item in enumerate(raw.buckets):
        name = item["name"].value if "name" in item else None
        if not isinstance(name, str):
            continue
        if name in names:
            at(item, "name", f"buckets[{i}].name",
               f"duplicate bucket name {name!r} (also buckets[{names[name]}])")
        else:
            names[name] = i
    for i, (b, item) in enumerate(zip(buckets, raw.buckets, strict=True)):
        if b is None:
            continue
        w = f"buckets[{i}]."
        if b.backend == "local":
            path_val = item.get("path")
            if b.path is None:
                at(item, "name", w + "path", "missing: a local bucket needs a directory")
            elif path_val is not None and path_val.origin == DEFAULTS_LABEL:
                pass  # the embedded default: ensure_default_bucket() creates it
            elif not os.path.exists(b.path):
                at(item, "path", w + "path", f"directory {b.path} does not exist")
            elif not os.path.isdir(b.path):
                at(item, "path", w + "path", f"{b.path} is not a directory")
            for key in S3_ONLY_KEYS:
                if key in item:
                    at(item, key, w + key, "only for s3 buckets (this bucket is local)")
        else:
            if "path" in item:
                at(item, "path", w + "path", "only for local buckets (this bucket is s3)")
            if (b.access_key is None) != (b.secret_key is None):
                missing = "secret_key" if b.secret_key is None else "access_key"
                other = "access_key" if missing == "secret_key" else "secret_key"
                at(item, other, w + missing, f"missing: {other} is set")

    first_key: dict[str, int] = {}
    for i, (c, item) in enumerate(zip(creds, raw.credentials, strict=True)):
        if c is None:
            continue
        w = f"credentials[{i}]."
        if c.access_key in first_key:
            at(item, "access_key", w + "access_key",
               f"duplicate access key {c.access_key!r} "
               f"(also credentials[{first_key[c.access_key]}])")
        else:
            first_key[c.access_key] = i
        for name in c.buckets:
            if name != "*" and name not in names:
                at(item, "buckets", w + "buckets", f"unknown bucket {name!r}")
    return problems


def _load(path: str | Path | None, env: Mapping[str, str]) -> tuple[Config | None, list[str]]:
    cwd = Path.cwd()
    if path is None:
        label, base = DEFAULTS_LABEL, cwd
        raw = _Raw({s: {} for s in SECTIONS}, [], [], [])
        raw.buckets.append({
            "name": _Val(DEFAULT_BUCKET_NAME, DEFAULTS_LABEL, cwd),
            "path": _Val(DEFAULT_BUCKET_PATH, DEFAULTS_LABEL, cwd),
        })
    else:
        label = str(path)
        base = Path(os.path.abspath(path)).parent
        try:
            raw = _from_file(_read_toml(Path(path), label), label, base)
        except ConfigError as e:
            return None, e.problems
    _apply_env(raw, env, cwd)
    problems = raw.problems
    default = _Val(None, label, base)

    parts = {
        section: _build(cls, section, raw.sections[section], f"{section}.", default, problems)
        for section, cls in SECTIONS.items()
    }
    buckets = [
        _build(BucketConfig, "buckets", item, f"buckets[{i}].",
               _Val(None, _origin(item, "name", label), base), problems)
        for i, item in enumerate(raw.buckets)
    ]
    creds = [
        _build(CredentialConfig, "credentials", item, f"credentials[{i}].",
               _Val(None, next(iter(item.values())).origin if item else label, base), problems)
        for i, item in enumerate(raw.credentials)
    ]
    problems += _check_config(parts, buckets, creds, raw, label)  # type: ignore[arg-type]
    if problems:
        return None, problems
    cfg = Config(**parts, buckets=tuple(buckets), credentials=tuple(creds))  # type: ignore[arg-type]
    return cfg, []


def load(path: str | Path | None, env: Mapping[str, str]) -> Config:
    """The daemon's configuration: the TOML file at ``path`` (None: the embedded default, one
    public local bucket ``data`` at ``./data``), then ``SEEDER_*`` overrides from ``env``.

    Relative paths in the file are relative to the file's directory; relative paths from
    ``env``, and those of the embedded default, to the current directory. Paths in the
    result are absolute. Raises ConfigError listing every problem found (unknown keys and
    variables, wrong types, bad values, missing directories, cross-key conflicts).
    Reads the file and looks at the file system; nothing else.
    """
    cfg, problems = _load(path, env)
    if cfg is None:
        raise ConfigError(problems)
    return cfg


def check(path: str | Path | None, env: Mapping[str, str]) -> list[str]:
    """The problems ``load(path, env)`` would raise, one line each; [] when it loads."""
    return _load(path, env)[1]


def ensure_default_bucket(config: Config) -> Path | None:
    """Create the embedded default bucket's directory, and in it ``hello.txt`` when it is
    empty, so a fresh ``seeder serve`` has something to serve. Returns the sample file's
    path when it was written, else None. Only for a local bucket named ``data``; raises
    OSError if the directory cannot be made."""
    bucket = config.bucket(DEFAULT_BUCKET_NAME)
    if bucket is None or bucket.backend != "local" or bucket.path is None:
        return None
    root = Path(bucket.path)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        return None
    sample = root / SAMPLE_OBJECT
    sample.write_bytes(SAMPLE_BODY)
    return sample
