"""Daemon configuration: a TOML file plus ``SEEDER_<SECTION>_<KEY>`` environment overrides,
validated into frozen dataclasses.

The key names are a user contract (see config/seeder.toml and docs/config.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    cache_max_bytes: int = 10 * 1024**3
    upload_rate_limit: int = 0
    connections_limit: int = 500
    dht: bool = False
    lsd: bool = False
    upnp: bool = False
    natpmp: bool = False
    ssrf_mitigation: bool = True


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
