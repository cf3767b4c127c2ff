"""The names of everything the cluster keeps in Redis (pure).

One prefix (``s3t:``) for all, so a Redis shared with other applications stays tidy;
separate clusters on one Redis use separate databases (``redis://host:6379/N``).

- ``s3t:swarm:<info-hash>`` (sorted set): one swarm. Member: compact address + peer id;
  score: -(deadline (ms, Redis clock) * 2 + seeder), negative so that the latest word
  sorts first: Redis keeps a swarm of up to 128 peers as a listpack, and a re-announce
  (the swarm's latest deadline) is then inserted at its head, not after a walk through it
  (a third of Redis's CPU per announce at 100 peers per swarm). TTL: a peer timeout and a
  minute.
- ``s3t:dl`` (hash): info-hash -> completed downloads.
- ``s3t:log`` (stream): every node's announce batches (``n`` node id, ``d`` records),
  kept 30 s.
- ``s3t:pushed`` (hash): node id -> the number and log id of its last batch applied (a
  resend after a lost reply is answered, not applied again).
- ``s3t:cat:<bucket>\\0<key>\\0<version>`` (string): a torrent some node made
  (``records.encode_entry``).
- ``s3t:catlog`` (stream): catalog changes (``n`` node, ``o`` put/del, ``k`` the name).
- ``s3t:lease:<name>`` (string): who hashes that object now (PX lease, renewed).
- ``s3t:nodes`` (sorted set): node id -> last heartbeat (ms, Redis clock).
- ``s3t:udpkey`` (string): the UDP connection-id key, set once by the first node.

Info-hashes appear as raw bytes in key names (Redis keys are binary safe).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

__all__ = ["DEFAULT_KEYS", "PREFIX", "Keys", "catalog_name", "redact"]

PREFIX = b"s3t:"


def catalog_name(bucket: str, key: str, version_id: str | None) -> bytes:
    """The catalog record name of one object slot (its latest version, or one version)."""
    return b"\0".join(s.encode() for s in (bucket, key, version_id or ""))


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under ``prefix``."""

    prefix: bytes = PREFIX

    @property
    def swarm_prefix(self) -> bytes:
        return self.prefix + b"swarm:"

    def swarm(self, info_hash: bytes) -> bytes:
        return self.prefix + b"swarm:" + info_hash

    @property
    def downloads(self) -> bytes:
        return self.prefix + b"dl"

    @property
    def log(self) -> bytes:
        return self.prefix + b"log"

    @property
    def pushed(self) -> bytes:
        return self.prefix + b"pushed"

    def catalog(self, name: bytes) -> bytes:
        return self.prefix + b"cat:" + name

    @property
    def catalog_log(self) -> bytes:
        return self.prefix + b"catlog"

    def lease(self, name: bytes) -> bytes:
        return self.prefix + b"lease:" + name

    @property
    def nodes(self) -> bytes:
        return self.prefix + b"nodes"

    @property
    def udp_key(self) -> bytes:
        return self.prefix + b"udpkey"


DEFAULT_KEYS = Keys()


def redact(url: str) -> str:
    """``url`` without its password, for logs (``redis://user:***@host:6379/0``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
