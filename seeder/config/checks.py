"""Cross-key and cross-section rules, run once every section has been built: interval
order, listeners colliding, directories existing, duplicate bucket names and access keys,
credentials naming buckets, keys that only mean something for the other backend.
"""

from __future__ import annotations

import os
from pathlib import Path

from seeder.config.defaults import DEFAULTS_LABEL
from seeder.config.schema import (
    S3_ONLY_KEYS,
    BucketConfig,
    CredentialConfig,
    EventsConfig,
    HostPort,
    MetricsConfig,
    ServerConfig,
    StateConfig,
    TrackerConfig,
)
from seeder.config.values import Item, Raw, origin_of

__all__ = ["cross_check"]


def cross_check(
    parts: dict[str, object | None],
    buckets: list[BucketConfig | None],
    creds: list[CredentialConfig | None],
    raw: Raw,
    label: str,
) -> list[str]:
    """Cross-key problems. Parts that failed to build are None and skipped, so every problem
    is reported in one pass without echoes of an earlier one."""
    problems: list[str] = []

    def at(item: Item, key: str, path: str, message: str) -> None:
        problems.append(f"{origin_of(item, key, label)}: {path}: {message}")

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
    ev = parts["events"]
    if isinstance(ev, EventsConfig) and ev.enabled and not ev.token:
        at(sect["events"], "enabled", "events.token",
           "missing: required when events.enabled is true (or set SEEDER_EVENTS_TOKEN)")
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
