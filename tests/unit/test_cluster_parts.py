"""seeder.cluster's pure parts: record codecs, key names, rendezvous hashing, the [cluster]
config rules, and the swarm sync's coalescing of announces (no Redis)."""

from __future__ import annotations

import collections
import random
from pathlib import Path

import pytest

from seeder.cluster import records
from seeder.cluster.keys import Keys, catalog_name, redact
from seeder.cluster.rendezvous import owners
from seeder.cluster.swarm_sync import Changes, SwarmSync, log_id
from seeder.config import ConfigError, load
from seeder.torrent.entry import Entry
from tracker.core import TrackerCore
from tracker.peerchanges import PeerChanges, sent_id
from tracker.peermerge import merge_peer, merge_upserts

IH = b"\x01" * 20
A4 = bytes([10, 0, 0, 1, 0x1A, 0xE1])
A6 = b"\x20\x01" + bytes(13) + b"\x01\x1a\xe1"
P1, P2 = b"-AA0001-" + b"1" * 12, b"-AA0001-" + b"2" * 12


def test_peer_changes_round_trip() -> None:
    blob = b"".join([
        records.encode_upsert(IH, A4, P1, True, 1234.7, None),
        records.encode_upsert(IH, A6, P2, False, 5, P1),
        records.encode_upsert(IH, A4, P1, False, -3, P1),  # same id: no replacement
        records.encode_stopped(IH, A6, P2),
        records.encode_downloads(IH, 3),
    ])
    got = list(records.decode_changes(blob))
    assert got == [
        records.Change(records.UPSERT, IH, A4, P1, True, 1234, 0),
        records.Change(records.UPSERT, IH, A6, P2, False, 5, 0),
        records.Change(records.UPSERT, IH, A4, P1, False, 0, 0),
        records.Change(records.STOPPED, IH, A6, P2, False, 0, 0),
        records.Change(records.DOWNLOADS, IH, b"", b"", False, 0, 3),
    ]
    assert len(records.encode_upsert(IH, A4, P1, True, 1, None)) == 51


@pytest.mark.parametrize("blob", [
    records.encode_upsert(IH, A4, P1, True, 1, None)[:-1],
    records.encode_downloads(IH, 1)[:-2],
    bytes([3]) + IH,
])
def test_bad_peer_changes_are_refused(blob: bytes) -> None:
    with pytest.raises(records.RecordError):
        list(records.decode_changes(blob))


def _entry(**kw: object) -> Entry:
    base = dict(bucket="b", key="k/ü.bin", etag='"e"', version_id=None, size=10,
                last_modified=1.5, torrent=b"d4:infod...ee", info_hash_v1=b"\x02" * 20,
                info_hash_v2=None, piece_length=16384, format="v1", created_at=2.0)
    base.update(kw)
    return Entry(**base)  # type: ignore[arg-type]


def test_catalog_entries_round_trip() -> None:
    for e in (_entry(), _entry(version_id="v1", info_hash_v2=b"\x03" * 32, format="hybrid")):
        assert records.decode_entry(records.encode_entry(e)) == e


@pytest.mark.parametrize("value", [b"", b"\x00\x00\x00\x05{}", b"\x00\x00\x00\x02[]xx"])
def test_bad_catalog_records_are_refused(value: bytes) -> None:
    with pytest.raises(records.RecordError):
        records.decode_entry(value)


def test_keys_and_redaction() -> None:
    k = Keys(b"x:")
    assert k.swarm(IH) == b"x:swarm:" + IH and k.nodes == b"x:nodes"
    assert catalog_name("b", "a/b", None) == b"b\0a/b\0"
    assert catalog_name("b", "a", "v9") == b"b\0a\0v9"
    assert redact("rediss://u:secret@h:6380/2") == "rediss://u:***@h:6380/2"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"


def test_rendezvous_is_stable_balanced_and_moves_little() -> None:
    nodes = ["a", "b", "c"]
    items = [f"bucket\0key{i}".encode() for i in range(3000)]
    before = {i: owners(i, nodes, 2) for i in items}
    assert all(len(set(o)) == 2 for o in before.values())
    assert owners(items[0], reversed(nodes), 2) == before[items[0]]  # order-free
    load_ = collections.Counter(n for o in before.values() for n in o)
    assert all(1800 < load_[n] < 2200 for n in nodes)  # ~2/3 of the items each
    # "c" dies: only items it held move, each to "a" and "b".
    after = {i: owners(i, ["a", "b"], 2) for i in items}
    assert all(set(after[i]) == {"a", "b"} for i in items)
    # A fourth node takes about a quarter of the seats, from everyone.
    four = {i: owners(i, [*nodes, "d"], 2) for i in items}
    moved = sum(len(set(before[i]) - set(four[i])) for i in items)
    assert 0.2 < moved / (2 * len(items)) < 0.3
    assert owners(b"x", ["a"], 2) == ["a"] and owners(b"x", [], 2) == []


def _config(here: Path, text: str, env: dict[str, str] | None = None) -> object:
    (here / "data").mkdir(exist_ok=True)
    path = here / "seeder.toml"
    path.write_text(text + '\n[[buckets]]\nname = "data"\npath = "data"\n')
    return load(path, env or {})


def test_cluster_config(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "")
    assert (cfg.cluster.redis_url, cfg.cluster.seed_replicas) == ("", 2)  # type: ignore[attr-defined]
    assert cfg.cluster.node()  # type: ignore[attr-defined]  # the host name
    cfg = _config(tmp_path, '[cluster]\nredis_url = "rediss://u:p@r:6380/3"\nnode_id = "n-1"\n',
                  {"SEEDER_CLUSTER_NODE_ID": "n2", "SEEDER_CLUSTER_SEED_REPLICAS": "3"})
    c = cfg.cluster  # type: ignore[attr-defined]
    assert (c.redis_url, c.node(), c.seed_replicas) == ("rediss://u:p@r:6380/3", "n2", 3)
    cfg = _config(tmp_path, "", {"SEEDER_CLUSTER_REDIS_URL": "redis://10.0.0.5:6379/0"})
    assert cfg.cluster.redis_url == "redis://10.0.0.5:6379/0"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("text", "problem"), [
    ('redis_url = "http://r:6379"', "cluster.redis_url: bad URL 'http://r:6379': expected "
     "redis:// or rediss://"),
    ('redis_url = "redis://:hunter2@"', "cluster.redis_url: bad URL 'redis://:***@': no host"),
    ('redis_url = "redis://r:6379/zero"', "cluster.redis_url: bad URL 'redis://r:6379/zero': "
     "the path is a database number (redis://host:6379/0)"),
    ('redis_url = "redis://r:99999"', "cluster.redis_url: bad URL: Port out of range 0-65535"),
    ('node_id = "a b"', "cluster.node_id: bad node id 'a b'"),
    ("seed_replicas = 0", "cluster.seed_replicas: must be at least 1, got 0"),
])
def test_bad_cluster_config_is_one_line(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, f"[cluster]\n{text}\n")
    (line,) = info.value.problems
    assert problem in line and "hunter2" not in line


class _NoLink:
    epoch = 0


def _announced_here(now: float) -> tuple[TrackerCore, SwarmSync]:
    """A node (no link) whose clock reads ``now``, peer ``P1`` at ``A4`` announced to it
    as a leecher at 1.0 s: its change pending."""
    core = TrackerCore(interval=100, min_interval=1, rng=random.Random(1))
    core.register([IH])
    sync = SwarmSync(_NoLink(), core, "n", clock=lambda: now)  # type: ignore[arg-type]
    core.peer_log = sync
    q = b"info_hash=" + b"%01" * 20 + b"&port=6881&compact=1&peer_id=" + P1 + b"&left=5"
    core.http_announce(q, [], "10.0.0.1", 1.0)
    return core, sync


def test_swarm_sync_coalesces_announces() -> None:
    core = TrackerCore(interval=100, min_interval=1, rng=random.Random(1))
    core.register([IH])
    sync = SwarmSync(_NoLink(), core, "n", clock=lambda: 0.0)  # type: ignore[arg-type]
    core.peer_log = sync
    swarm = core.swarms.get(IH)
    assert swarm is not None

    def q(peer_id: bytes, rest: bytes = b"&left=5") -> bytes:
        return b"info_hash=" + b"%01" * 20 + b"&port=6881&compact=1&peer_id=" + peer_id + rest

    core.http_announce(q(P1), [], "10.0.0.1", 1.0)
    core.http_announce(q(P2), [], "10.0.0.1", 2.0)  # same address, new peer id
    core.http_announce(q(P2, b"&event=completed&left=0"), [], "10.0.0.2", 3.0)
    # peers stored here: kept as they are until the flush packs them
    assert len(sync.peers) == 2 and not sync.pending
    since, downloads = sync.since, sync.downloads
    blob = sync._encode(Changes(*sync.take(100), downloads, since), 10.0)
    # The first change of 10.0.0.1 added it (nothing in Redis to replace: P2 plain) ...
    assert blob == b"".join([
        records.encode_upsert(IH, A4, P2, False, 192_000, None),  # timeout 200 s, heard at 2
        records.encode_upsert(IH, bytes([10, 0, 0, 2, 0x1A, 0xE1]), P2, True, 193_000, None),
        records.encode_downloads(IH, 1),
    ])
    # ... a stopped one removes what Redis has: the id stored before.
    core.http_announce(q(P1, b"&event=stopped&left=5"), [], "10.0.0.1", 4.0)
    assert sent_id(sync.pending[IH + A4]) == P2 and not sync.peers
    (stop,) = records.decode_changes(sync._encode(Changes(*sync.take(100), {}, sync.since), 5.0))
    assert (stop.kind, stop.peer_id) == (records.STOPPED, P2)


def test_another_nodes_word_read_before_the_flush_does_not_change_a_pending_announce() -> None:
    """A peer announced here is held by its Peer until the flush packs it: an earlier word
    of another node about that address (read in the round trip, before this node's push
    goes out) changes neither the peer nor what goes out, in the usual batch (merged in
    one call) or any other (decoded), while its neighbours are merged."""
    core, sync = _announced_here(0.0)
    swarm = core.swarms.get(IH)
    assert swarm is not None
    peer = swarm.peers[A4]
    a4b = bytes([10, 0, 0, 2, 0x1A, 0xE1])
    plain = (records.encode_upsert(IH, A4, P2, True, 300_000, None)
             + records.encode_upsert(IH, a4b, P2, True, 300_000, None))
    other = records.encode_stopped(IH, A4, P1) + records.encode_downloads(IH, 1)
    sync._apply([b"5-0", plain, b"6-0", other], 10_000, 1.5)
    assert swarm.peers[A4] is peer and (peer.peer_id, peer.slot) == (P1, 1)
    assert swarm.peers[a4b].peer_id == P2 and swarm.downloaded == 1
    assert sync.take(10)[0] == records.encode_upsert(IH, A4, P1, False, 0, P1)


def test_the_view_a_node_pushes_when_catching_up_leaves_out_its_pending_changes() -> None:
    _, sync = _announced_here(1.0)
    assert sync._view([IH + A4]).pending == {}  # newer, and goes out with the changes
    sync.take(10)
    assert list(sync._view([IH + A4]).pending) == [IH + A4]


class _ResyncLink:
    """Answers RESYNC as Redis would for one swarm: no peers, ``downloads`` counted, the log
    ending at ``last``."""

    epoch = 1

    def __init__(self, last: bytes, downloads: bytes, members: list[bytes] | None = None) -> None:
        self.last, self.downloads, self.members = last, downloads, members or []

    async def script(self, source: str, keys: list[bytes], args: list[object]) -> list[object]:
        return [b"200", self.last, [self.members, self.downloads]]


def test_a_download_read_by_a_resync_is_not_added_again_from_the_log() -> None:
    """A swarm registered late is read from Redis (its download count holds the log up to
    the read) while the node has read the log less far: the entries it reads next carry
    downloads already counted. Counting them again left one node's scrape a download ahead
    of the others' for good (the cluster one-swarm test, under load)."""
    import trio

    core = TrackerCore(interval=100, min_interval=1, rng=random.Random(1))
    core.register([IH])
    sync = SwarmSync(_ResyncLink(b"100-3", b"2"), core, "n",  # type: ignore[arg-type]
                     clock=lambda: 0.0)
    sync._last_id = b"90-0"
    trio.run(sync.resync, [IH])
    swarm = core.swarms.get(IH)
    assert swarm is not None and swarm.downloaded == 2
    one = records.encode_downloads(IH, 1)
    # 95-0 and 100-3 are in the count read; 100-4 came after the read.
    sync._apply([b"95-0", one, b"100-3", one, b"100-4", one], 200, 0.0)
    assert swarm.downloaded == 3
    sync._read_through(b"100-4")
    assert sync._counted == {}
    sync._apply([b"101-0", one], 200, 0.0)
    assert swarm.downloaded == 4


def test_log_ids_order_as_the_stream() -> None:
    assert log_id(b"0-0") < log_id(b"99-7") < log_id("100-0") < log_id(b"100-10")


def test_a_resync_does_not_undo_an_announce_heard_since_the_last_push() -> None:
    """A leecher that finished announced here while this node read its swarm back from Redis
    (which still says leecher): the read must not turn it back into a leecher here, while
    the pending seeder word goes to every other node (one node's scrape a seeder short)."""
    import trio

    core = TrackerCore(interval=100, min_interval=1, rng=random.Random(1))
    core.register([IH])
    as_leecher = [A4 + P1, b"%d" % -(400_000 * 2)]  # expires at 400 s (Redis clock), leecher
    sync = SwarmSync(_ResyncLink(b"100-0", b"", as_leecher), core, "n",  # type: ignore[arg-type]
                     clock=lambda: 0.0)
    core.peer_log = sync
    q = b"info_hash=" + b"%01" * 20 + b"&port=6881&compact=1&peer_id=" + P1 + b"&left=0"
    core.http_announce(q, [], "10.0.0.1", 1.0)  # a seeder now, not pushed yet
    trio.run(sync.resync, [IH])
    assert core.swarms.scrape(IH) == (1, 0, 0)
    sync.take(10)  # pushed: Redis's word counts again
    trio.run(sync.resync, [IH])
    assert core.swarms.scrape(IH) == (0, 0, 1)


def test_a_batch_is_the_records_of_its_changes_and_the_usual_one_merges_at_once() -> None:
    """encode_batch (a node's pending changes, keyed by info-hash + address) writes the
    bytes the record functions write; a batch of plain IPv4 upserts merges in one call."""
    a4b = bytes([10, 0, 0, 2, 0x1A, 0xE1])
    core = TrackerCore(interval=60)
    for ih in (IH, b"\x02" * 20, b"\x03" * 20):
        core.register([ih])
    get = core.swarms.get
    changes = PeerChanges(10)
    changes.record(get(IH), A4, None, P1, None, True, False, 0, 5.0)  # plain, seeder
    changes.record(get(IH), a4b, None, P2, P2, False, False, 2, 9.5)  # same id: plain
    changes.record(get(b"\x02" * 20), A4, None, P2, P1, False, False, 0, 9.0)  # replaces P1
    changes.record(get(IH), A6, None, P1, None, False, False, 0, 10.0)  # IPv6
    changes.record(get(b"\x03" * 20), A4, None, P1, P2, False, True, 0, 3.0)  # stopped
    blob = records.encode_batch(changes.take(10)[0], changes.downloads, changes.since, 10.0,
                                100.0)
    assert blob == b"".join([
        records.encode_upsert(IH, A4, P1, True, 95_000, None),
        records.encode_upsert(IH, a4b, P2, False, 99_500, P2),
        records.encode_upsert(b"\x02" * 20, A4, P2, False, 99_000, P1),
        records.encode_upsert(IH, A6, P1, False, 100_000, None),
        records.encode_stopped(b"\x03" * 20, A4, P2),
        records.encode_downloads(IH, 2),
    ])
    # The usual batch, plain IPv4 upserts, merges in one call into the tracker
    # (tracker.peermerge.merge_upserts) as the decoder's records would one by one; any
    # other batch is left to the decoder.
    plain = b"".join(records.encode_upsert(IH, bytes([10, 0, 0, i, 0, 1]), P1, i % 2 == 0,
                                           1000 * i, None) for i in range(40))
    fast, slow = TrackerCore(interval=60), TrackerCore(interval=60)
    for core in (fast, slow):
        core.register([IH])
    assert merge_upserts(fast.swarms, plain, 5.0, (), (), b"", set())
    for c in records.decode_changes(plain):
        merge_peer(slow.swarms, c.info_hash, c.addr, c.peer_id, c.seeder, 5.0 + c.ttl_ms / 1000)
    assert {a: (p.slot, p.expires) for a, p in fast.swarms.get(IH).peers.items()} == {
        a: (p.slot, p.expires) for a, p in slow.swarms.get(IH).peers.items()}
    for other in (records.encode_upsert(IH, A6, P1, False, 1, None),
                  records.encode_upsert(IH, A4, P1, False, 1, P2),
                  records.encode_stopped(IH, A4, P1), records.encode_downloads(IH, 1)):
        for batch in (plain + other, other + plain, plain[:51] + other + plain[51:]):
            assert not merge_upserts(fast.swarms, batch, 5.0, (), (), b"", set())
    assert not merge_upserts(fast.swarms, plain[:-1], 5.0, (), (), b"", set())
