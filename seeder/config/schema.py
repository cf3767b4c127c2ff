"""The configuration's shape: one frozen dataclass per section, ``Config`` holding them, and
the tables that say how a field is read (which sections and arrays exist, which integers take
a size, which strings are directories, which values are secret).

Every field has its default here, in one place; a field's Python type decides how its raw
value is converted (``values.convert``), so a new field needs no code beyond its rules.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

__all__ = [
    "ADDRESSING_STYLES",
    "ARRAYS",
    "BACKENDS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MIN_PIECE_LENGTH",
    "PATH_KEYS",
    "S3_ONLY_KEYS",
    "SECRET_KEYS",
    "SECTIONS",
    "SIZE_KEYS",
    "TORRENT_FORMATS",
    "WEBSEEDS",
    "BucketConfig",
    "ClusterConfig",
    "Config",
    "CredentialConfig",
    "EventsConfig",
    "GenerationConfig",
    "HostPort",
    "LogConfig",
    "MetricsConfig",
    "ScannerConfig",
    "SeedingConfig",
    "ServerConfig",
    "StateConfig",
    "TrackerConfig",
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
    sigv2: bool = True  # accept AWS Signature Version 2 (header and presigned query)
    header_timeout: float = 10.0  # seconds to a complete request head, in total
    max_connections_per_ip: int = 64  # per client address (after trusted proxies); 0 = no cap


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
    header_timeout: float = 10.0
    max_connections_per_ip: int = 64


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
class EventsConfig:
    """``POST /-/events`` (seeder/events): S3 event notifications instead of polling."""

    enabled: bool = False
    token: str = field(default="", repr=False)  # required when enabled; SEEDER_EVENTS_TOKEN
    sns_topic_arns: tuple[str, ...] = ()  # SNS topics whose subscriptions are confirmed


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
    swarm_budget: float = 2.9  # copies of an object sent into a swarm before backing off; 0 = off
    swarm_trickle_rate: int = 64 * 1024  # bytes/s per torrent: budget spent, peers hold all
    peer_request_queue: int = 64  # 16 KiB block requests one peer may queue at the session
    max_active_torrents: int = 2000  # torrents in the libtorrent session at once (on demand)
    local_no_copy: bool = True  # local buckets: seed from the bucket's own files, not a copy


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
    connect_timeout: float = 3.0  # s per connection attempt to the backend (s3)
    read_timeout: float = 5.0  # s of silence on a backend socket (s3)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    # Redis shared by the daemons of one cluster (redis:// or rediss://); "" = standalone.
    redis_url: str = ""
    node_id: str = ""  # unique per node; "" = the host name
    seed_replicas: int = 2  # nodes seeding each torrent (rendezvous hashing on live nodes)

    def node(self) -> str:
        """This node's id: ``node_id``, else the host name."""
        return self.node_id or socket.gethostname()


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
    events: EventsConfig = field(default_factory=EventsConfig)
    seeding: SeedingConfig = field(default_factory=SeedingConfig)
    log: LogConfig = field(default_factory=LogConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    buckets: tuple[BucketConfig, ...] = ()
    credentials: tuple[CredentialConfig, ...] = ()

    def bucket(self, name: str) -> BucketConfig | None:
        for b in self.buckets:
            if b.name == name:
                return b
        return None


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
    "events": EventsConfig,
    "seeding": SeedingConfig,
    "log": LogConfig,
    "cluster": ClusterConfig,
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
SECRET_KEYS = frozenset(
    {("buckets", "secret_key"), ("credentials", "secret_key"), ("events", "token")}
)
# Keys of a local bucket that only mean something for s3.
S3_ONLY_KEYS = ("endpoint_url", "region", "addressing_style", "access_key", "secret_key")
