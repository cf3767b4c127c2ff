"""The tracker without I/O: a request's bytes and the client's address in, reply bytes out.

:class:`TrackerCore` glues the parsers (``announce``, ``udp_protocol``), the swarm table
(``swarm``) and the renderers (``responses``), and applies the policy: which info-hashes
are served, caps, numwant limits, whose address counts (trusted proxies), metrics.
The trio shell (``service``) only moves bytes and passes ``now``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from operator import attrgetter
from typing import TYPE_CHECKING

from tracker import responses, udp_protocol
from tracker.announce import (
    DEFAULT_NUMWANT,
    EVENT_STOPPED,
    AnnounceError,
    parse_announce,
    parse_scrape,
)
from tracker.clientaddr import client_ip, pack_ip, parse_proxies
from tracker.peerchanges import PeerChanges
from tracker.swarm import FAMILY_ANY, FAMILY_V4, FAMILY_V6, SwarmError, Swarms
from tracker.udp_protocol import (
    UdpError,
    parse_fields,
    render_announce,
    render_connect,
    render_error,
)

if TYPE_CHECKING:  # prometheus_client is ~3 MB of RSS that `python -m tracker` never uses
    from tracker.metrics import TrackerMetrics

__all__ = ["TrackerCore", "pack_ip"]

# A tuple: httpshell.render memoises the lines of headers given as one.
_TEXT = ((b"content-type", b"text/plain"), (b"cache-control", b"no-store"))
_IP_MEMO_MAX = 4096  # client host string -> packed IP; cleared when full
_ZERO_ENTRY = responses.scrape_entry(0, 0, 0)


class _NoSwarm:
    """What a scrape reads for a hash without a swarm: no HTTP entry (b"": left out or
    zeros, ``_http_entries`` decides), zeros over UDP."""

    scrape_http = b""
    scrape_udp = udp_protocol.scrape_record(0, 0, 0)


_NONE = _NoSwarm()
_HTTP_ENTRY = attrgetter("scrape_http")
_UDP_RECORD = attrgetter("scrape_udp")


class TrackerCore:
    """One tracker's state and policy. Not thread-safe; one trio task at a time.

    ``interval``/``min_interval``: seconds told to clients. Peers silent for
    ``interval * peer_timeout_factor`` seconds are dropped by ``clean``. ``open``: serve
    any info-hash (else only registered ones; the rest get "unregistered torrent").
    ``trusted_proxies``: IPs/CIDRs whose ``X-Forwarded-For`` / ``X-Real-IP`` name the client.
    ``accept_ip_param``: honour the announce ``ip`` parameter (off: the socket address
    is the peer's). ``secret``: key of the UDP connection ids (random by default).
    ``peer_log``: told about every accepted announce (a cluster shares them; None: an island):
    a :class:`~tracker.peerchanges.PeerChanges` (the cluster's sync extends it), whose
    ``record`` the compiled build calls as a C method (it takes no other ``PeerLog``).
    ``on_announce``: called with the swarm's canonical info-hash (its first registered
    hash) after every accepted announce (HTTP or UDP) into a registered swarm, except a
    ``stopped`` one and those of peer ids starting with ``own_peer_prefix`` (when not empty:
    the daemon's own seed, whose announces are not demand); it must be cheap and must not
    raise. ``resolve(info_hash)``: the hashes of a torrent this tracker serves without
    having registered it (None: unknown); its swarm is made at its first announce and
    dropped when it empties, so memory follows the swarms, not the catalog. Raises
    ValueError for a bad proxy entry or non-positive interval.
    """

    def __init__(
        self,
        *,
        interval: int = 1800,
        min_interval: int = 300,
        peer_timeout_factor: float = 2.0,
        max_swarms: int = 100_000,
        max_peers_per_swarm: int = 50_000,
        max_numwant: int = 200,
        open: bool = False,
        trusted_proxies: Iterable[str] = (),
        accept_ip_param: bool = False,
        max_peers: int = 2_000_000,
        metrics: TrackerMetrics | None = None,
        rng: random.Random | None = None,
        secret: bytes | None = None,
        on_announce: Callable[[bytes], None] | None = None,
        peer_log: PeerChanges | None = None,
        own_peer_prefix: bytes = b"",
        resolve: Callable[[bytes], Sequence[bytes] | None] | None = None,
    ) -> None:
        if interval <= 0 or min_interval < 0 or peer_timeout_factor <= 0:
            raise ValueError("interval and peer_timeout_factor must be positive")
        self.interval = int(interval)
        self.min_interval = int(min_interval)
        self.max_numwant = max(0, int(max_numwant))
        self.accept_ip_param = accept_ip_param
        self.swarms = Swarms(
            peer_timeout=interval * peer_timeout_factor,
            max_swarms=max_swarms,
            max_peers_per_swarm=max_peers_per_swarm,
            max_peers=max_peers,
            open=open,
            rng=rng,
        )
        self.proxies = parse_proxies(trusted_proxies)
        self.connection_ids = udp_protocol.ConnectionIds(secret or os.urandom(32))
        self._ips: dict[str, bytes] = {}
        self._sources: dict[tuple[str, int], bytes] = {}
        self.on_announce = on_announce
        self.peer_log = peer_log
        self.own_peer_prefix = own_peer_prefix
        self.swarms.resolve = resolve
        self.metrics = metrics
        if metrics is not None:
            s = self.swarms
            metrics.watch(lambda: s.swarm_count, lambda: s.seeders, lambda: s.leechers)

    def _is_demand(self, peer_id: bytes, event: int) -> bool:
        own = self.own_peer_prefix
        return event != EVENT_STOPPED and not (own and peer_id.startswith(own))

    # -- torrents ---------------------------------------------------------------------

    def register(self, hashes: Sequence[bytes]) -> None:
        """Serve the torrent with these info-hashes (v1 and/or v2; a 32-byte v2 hash is
        truncated to 20 bytes); they share one swarm. Idempotent. Raises ValueError for
        a hash that is not 20 or 32 bytes."""
        self.swarms.register(hashes)

    def unregister(self, hashes: Sequence[bytes]) -> None:
        """Stop serving the torrent and forget its swarm (all aliases, all peers)."""
        self.swarms.unregister(hashes)

    def clean(self, now: float, limit: int | None = None) -> int:
        """Drop peers that stopped announcing; returns how many. Call every
        ``sweep_every`` seconds (cost: the due expiry entries, not the table); with
        ``limit``, one slice of at most ``limit`` entries, repeat while ``clean_due``."""
        return self.swarms.clean(now, limit)

    def clean_due(self, now: float) -> bool:
        """Whether expiry entries are left for ``clean(now)``."""
        return self.swarms.clean_due(now)

    @property
    def sweep_every(self) -> float:
        return self.swarms.sweep_every

    # -- HTTP -------------------------------------------------------------------------

    def http(
        self,
        target: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        client: tuple[str, int],
        now: float,
    ) -> tuple[int, Sequence[tuple[bytes, bytes]], bytes]:
        """Answer ``GET target`` from ``client`` (socket address; ``headers`` lower-case
        names). ``/announce`` and ``/scrape`` always answer 200 (refusals are bencoded
        failure reasons); any other path is a 404. Returns (status, headers, body)."""
        path, _, query = target.partition(b"?")
        if path == b"/announce":
            return 200, _TEXT, self.http_announce(query, headers, client[0], now)
        if path == b"/scrape":
            return 200, _TEXT, self.http_scrape(query)
        return 404, _TEXT, b"not found\n"

    def _fail(self, exc: AnnounceError | SwarmError) -> bytes:
        if self.metrics is not None:
            self.metrics.failure(exc.code)
        return responses.render_failure(str(exc))

    def http_announce(
        self, query: bytes, headers: Sequence[tuple[bytes, bytes]], host: str, now: float
    ) -> bytes:
        """The body answering ``/announce?query`` from socket address ``host``."""
        try:
            req = parse_announce(query)
            swarm = self.swarms.get_or_create(req.info_hash)
            ip = self._client_ip(host, headers)
            if req.ip is not None and self.accept_ip_param:
                ip = pack_ip(req.ip.decode("ascii", "replace")) or ip
            if ip is None:
                raise AnnounceError("no usable client address", "address")
        except (AnnounceError, SwarmError) as exc:
            return self._fail(exc)
        addr = ip + req.port.to_bytes(2, "big")
        numwant = req.numwant if req.numwant < self.max_numwant else self.max_numwant
        peer_log = self.peer_log
        prev = swarm.peers.get(addr)  # looked up once, for the swarm table and the peer log
        if peer_log is not None:
            prev_id = None if prev is None else prev.peer_id  # the announce may change it
            downloaded = swarm._downloaded  # the field: no property call
        peers, peers6 = self.swarms.announce_peer(
            swarm, prev, addr, req.peer_id, req.left == 0, req.event, numwant, FAMILY_ANY, now
        )
        if peer_log is not None:
            peer_log.record(swarm, addr, prev, req.peer_id, prev_id, req.left == 0,
                            req.event == EVENT_STOPPED, swarm._downloaded - downloaded, now)
        if self.on_announce is not None and swarm.registered and self._is_demand(
                req.peer_id, req.event):
            self.on_announce(swarm.hashes[0])
        if self.metrics is not None:
            self.metrics.announce("http", req.event)
        if req.compact:
            return responses.render_announce(
                interval=self.interval,
                min_interval=self.min_interval,
                complete=swarm.complete,
                incomplete=swarm.incomplete,
                peers=peers,
                peers6=peers6,
                tracker_id=req.trackerid,
            )
        addrs = [peers[i : i + 6] for i in range(0, len(peers), 6)]
        addrs += [peers6[i : i + 18] for i in range(0, len(peers6), 18)]
        ids = None
        if not req.no_peer_id:
            ids = {a: p.peer_id for a in addrs if (p := swarm.peers.get(a)) is not None}
        return responses.render_announce(
            interval=self.interval,
            min_interval=self.min_interval,
            complete=swarm.complete,
            incomplete=swarm.incomplete,
            peers=responses.peer_dicts(addrs, ids),
            tracker_id=req.trackerid,
        )

    def http_scrape(self, query: bytes) -> bytes:
        """The body answering ``/scrape?query`` (BEP 48). Unknown hashes are left out
        (open mode: reported as zeros, the swarm just has nobody yet)."""
        try:
            req = parse_scrape(query)
        except AnnounceError as exc:
            return self._fail(exc)
        hashes = sorted(set(req.info_hashes))  # each once, sorted as bencoded keys must be
        # Each swarm's entry as it was last made (no Python step per hash); made again
        # below where its counts changed since (None) or the hash has no swarm (b"").
        entries = list(map(_HTTP_ENTRY, map(self.swarms.by_hash.get, hashes, repeat(_NONE))))
        if not all(entries):
            hashes, entries = self._http_entries(hashes)
        if self.metrics is not None:
            self.metrics.scrape("http")
        return responses.render_scrape(hashes, entries)

    def _http_entries(self, hashes: list[bytes]) -> tuple[list[bytes], list[bytes]]:
        """The scrape entries of ``hashes`` (made where not kept), without the unknown
        hashes: known is a swarm, or a torrent nobody announced lately (``resolve``);
        open mode knows every hash (zeros, the swarm just has nobody yet)."""
        swarms = self.swarms
        known, entries = [], []
        for h in hashes:
            swarm = swarms.by_hash.get(h)
            if swarm is not None:
                entry = swarm.scrape_http
                if entry is None:
                    entry = swarm.scrape_http = responses.scrape_entry(
                        swarm.complete, swarm.downloaded, swarm.incomplete)
            elif swarms.open or (swarms.resolve is not None and swarms.resolve(h)):
                entry = _ZERO_ENTRY
            else:
                continue
            known.append(h)
            entries.append(entry)
        return known, entries

    def _packed(self, host: str) -> bytes | None:
        """``pack_ip(host)``, memoised (bounded): clients come back from few addresses."""
        ip = self._ips.get(host)
        if ip is None:
            ip = pack_ip(host)
            if ip is None:
                return None
            if len(self._ips) >= _IP_MEMO_MAX:
                self._ips.clear()
            self._ips[host] = ip
        return ip

    def _client_ip(self, host: str, headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
        if not self.proxies:
            return self._packed(host)  # the common case, memoised, without the extra call
        return client_ip(host, headers, self.proxies)

    def _source(self, client: tuple[str, int]) -> bytes | None:
        """The compact address of a UDP client (None: not an IP), memoised (bounded): a
        client's announce follows its connect from the same socket address."""
        ip = self._packed(client[0])
        if ip is None:
            return None
        if len(self._sources) >= _IP_MEMO_MAX:
            self._sources.clear()
        source = self._sources[client] = ip + client[1].to_bytes(2, "big")
        return source

    # -- UDP --------------------------------------------------------------------------

    def udp(self, data: bytes, client: tuple[str, int], now: float) -> bytes | None:
        """Answer one BEP 15 datagram from ``client`` (host, port); None = no reply."""
        source = self._sources.get(client)
        if source is None:
            source = self._source(client)
            if source is None:
                return None
        return self.udp_from(data, source, client[1], now)

    def udp_from(self, data: bytes, source: bytes, port: int, now: float) -> bytes | None:
        """``udp`` for the client at compact address ``source`` (4- or 16-byte IP, an
        IPv4-mapped IPv6 address as its IPv4 one, and the port: what ``pack_ip`` and the
        port make of a client's socket address), whose port is ``port``."""
        metrics = self.metrics
        tid = None
        try:
            # The fields of ConnectRequest, UdpScrape or UdpAnnounce, in a plain tuple.
            req = parse_fields(data)
            if len(req) == 1:  # a connect: the transaction id
                return render_connect(req[0], self.connection_ids.issue(source, now))
            tid = req[1]
            if not self.connection_ids.valid(req[0], source, now):  # the connection id
                raise UdpError("invalid connection id", "udp_connection_id", tid)
            if len(req) == 3:  # a scrape: its info-hashes
                return self._udp_scrape(tid, req[2])
            _, _, info_hash, peer_id, _, left, _, event, ip, _, numwant, asked_port = req
            swarm = self.swarms.get_or_create(info_hash)
        except UdpError as exc:
            if metrics is not None:
                metrics.failure(exc.code)
            if exc.transaction_id is None:
                return None
            return render_error(exc.transaction_id, str(exc))
        except SwarmError as exc:
            if metrics is not None:
                metrics.failure(exc.code)
            return render_error(tid, str(exc))
        if self.accept_ip_param and ip and len(source) == 6:
            source = ip.to_bytes(4, "big") + source[4:]
        if asked_port != port:
            source = source[:-2] + asked_port.to_bytes(2, "big")
        if numwant < 0:
            numwant = DEFAULT_NUMWANT
        if numwant > self.max_numwant:
            numwant = self.max_numwant
        seeder = left == 0
        peer_log = self.peer_log
        prev = swarm.peers.get(source)  # looked up once, for the swarm table and the peer log
        if peer_log is not None:
            prev_id = None if prev is None else prev.peer_id  # the announce may change it
            downloaded = swarm._downloaded  # the field: no property call
        peers, peers6 = self.swarms.announce_peer(
            swarm,
            prev,
            source,
            peer_id,
            seeder,
            event,
            numwant,
            FAMILY_V4 if len(source) == 6 else FAMILY_V6,
            now,
        )
        if peer_log is not None:
            peer_log.record(swarm, source, prev, peer_id, prev_id, seeder,
                            event == EVENT_STOPPED, swarm._downloaded - downloaded, now)
        if self.on_announce is not None and swarm.registered and self._is_demand(
                peer_id, event):
            self.on_announce(swarm.hashes[0])
        if metrics is not None:
            metrics.announce("udp", event)
        return render_announce(
            tid, self.interval, swarm.incomplete, swarm.complete,
            peers if len(source) == 6 else peers6,
        )

    def _udp_scrape(self, tid: int, hashes: tuple[bytes, ...]) -> bytes:
        # Each swarm's record as it was last made, zeros for a hash without a swarm (no
        # Python step per hash); made again where a swarm's counts changed since (None).
        records = list(map(_UDP_RECORD, map(self.swarms.by_hash.get, hashes, repeat(_NONE))))
        if not all(records):
            records = [r or self._udp_record(h) for r, h in zip(records, hashes, strict=True)]
        if self.metrics is not None:
            self.metrics.scrape("udp")
        return udp_protocol.render_scrape(tid, records)

    def _udp_record(self, info_hash: bytes) -> bytes:
        """The scrape record of the swarm of ``info_hash``, made and kept."""
        swarm = self.swarms.by_hash[info_hash]
        record = swarm.scrape_udp = udp_protocol.scrape_record(
            swarm.complete, swarm.downloaded, swarm.incomplete)
        return record
