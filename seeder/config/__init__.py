"""Daemon configuration: frozen dataclasses loaded from a TOML file plus
``SEEDER_<SECTION>_<KEY>`` environment overrides, validated with one line per problem.

The key names are a user contract (see config/seeder.toml and docs/config.md, which a unit
test keeps in step with the dataclasses). Import from the package: ``from seeder.config
import Config, load``. The modules, from the bottom up:

- ``schema``: the frozen section dataclasses, ``Config``, ``HostPort``, the choice tuples
  (``BACKENDS``, ``LOG_LEVELS`` ...) and the tables saying how a field is read (``SECTIONS``,
  ``ARRAYS``, ``SIZE_KEYS``, ``PATH_KEYS``, ``SECRET_KEYS``).
- ``values``: raw values with their origin, converted by the field's type; ``parse_size``,
  ``parse_host_port``.
- ``rules``: per-key checks on converted values (``CHECKS``).
- ``defaults``: the embedded default configuration and ``ensure_default_bucket``.
- ``checks``: cross-key and cross-section rules (``cross_check``).
- ``load``: file + environment -> ``Config`` (``load``, ``check``, ``ConfigError``).

Adding a section, say ``[cluster]``:

1. ``schema.py``: a ``@dataclass(frozen=True, slots=True) class ClusterConfig`` whose every
   field has a default (the type picks the conversion: bool, int, float, str, ``str | None``,
   ``HostPort``, ``HostPort | None``, ``tuple[str, ...]``); the field
   ``cluster: ClusterConfig = field(default_factory=ClusterConfig)`` in ``Config``; the entry
   ``"cluster": ClusterConfig`` in ``SECTIONS``. An int that also takes "10GiB" goes in
   ``SIZE_KEYS``, a directory in ``PATH_KEYS``, a secret in ``SECRET_KEYS``.
2. ``rules.py``: a ``CHECKS`` entry for each key that needs more than its type, e.g.
   ``("cluster", "interval"): _at_least(1)``.
3. ``checks.py``: rules between keys or sections in ``cross_check`` (a section that failed to
   build is None in ``parts`` and skipped).
4. Re-export ``ClusterConfig`` here; document every key in docs/config.md and
   config/seeder.toml (tests/unit/test_config.py checks both). ``SEEDER_CLUSTER_<KEY>``
   environment overrides then work without more code.
"""

from seeder.config.defaults import SAMPLE_BODY, ensure_default_bucket
from seeder.config.load import ConfigError, check, env_token, load
from seeder.config.schema import (
    ADDRESSING_STYLES,
    BACKENDS,
    LOG_FORMATS,
    LOG_LEVELS,
    TORRENT_FORMATS,
    WEBSEEDS,
    BucketConfig,
    ClusterConfig,
    Config,
    CredentialConfig,
    EventsConfig,
    GenerationConfig,
    HostPort,
    LogConfig,
    MetricsConfig,
    ScannerConfig,
    SeedingConfig,
    ServerConfig,
    StateConfig,
    TrackerConfig,
)
from seeder.config.values import parse_host_port, parse_size

__all__ = [
    "ADDRESSING_STYLES",
    "BACKENDS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "SAMPLE_BODY",
    "TORRENT_FORMATS",
    "WEBSEEDS",
    "BucketConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
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
    "check",
    "ensure_default_bucket",
    "env_token",
    "load",
    "parse_host_port",
    "parse_size",
]
