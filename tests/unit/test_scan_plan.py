"""seeder.ops.scanner.plan and the qualification / progress / web seed policy of
seeder.torrent.policy, links and progress: pure functions, no trio, no store."""

from __future__ import annotations

import pytest

from seeder.config import BucketConfig, Config, ServerConfig, TrackerConfig
from seeder.ops.scanner import plan
from seeder.store import ObjectInfo
from seeder.torrent.links import presigns_webseed, torrent_links, webseed_url
from seeder.torrent.metainfo import Links
from seeder.torrent.policy import MAX_TORRENT_SIZE, NotQualified, check_qualifies, object_version
from seeder.torrent.progress import ProgressLog

MiB = 1024 * 1024


def obj(key: str, etag: str = "e1", size: int = 100, sse_c: bool = False) -> ObjectInfo:
    return ObjectInfo(bucket="bk", key=key, size=size, etag=etag, last_modified=1.0, sse_c=sse_c)


# -- plan -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listing", "cached", "gen", "drop", "skipped"),
    [
        pytest.param([], {}, [], [], 0, id="empty"),
        pytest.param([obj("a")], {}, ["a"], [], 0, id="new"),
        pytest.param([obj("a")], {"a": "e1"}, [], [], 0, id="unchanged"),
        pytest.param([obj("a", "e2")], {"a": "e1"}, ["a"], [], 0, id="changed etag"),
        pytest.param([], {"a": "e1", "b": "e1"}, [], ["a", "b"], 0, id="deleted"),
        pytest.param([obj("big", size=MAX_TORRENT_SIZE)], {}, [], [], 1, id="too big, new"),
        pytest.param([obj("big", size=MAX_TORRENT_SIZE - 1)], {}, ["big"], [], 0,
                     id="just under the limit"),
        pytest.param([obj("z", size=0)], {}, [], [], 1, id="empty object"),
        pytest.param([obj("c", sse_c=True)], {}, [], [], 1, id="sse-c"),
        pytest.param([obj("a", "e2", size=MAX_TORRENT_SIZE)], {"a": "e1"}, [], ["a"], 1,
                     id="grew too big: old torrent dropped"),
        pytest.param([obj("a", "e1", size=MAX_TORRENT_SIZE)], {"a": "e1"}, [], [], 1,
                     id="unqualified but same etag: left alone"),
        pytest.param([obj("a"), obj("a", "e2")], {}, ["a"], [], 0, id="repeated key: first wins"),
        pytest.param(
            [obj("n"), obj("same"), obj("chg", "e9")],
            {"same": "e1", "chg": "e1", "gone": "e1"},
            ["n", "chg"], ["gone"], 0, id="mixed, listing order kept",
        ),
    ],
)
def test_plan(listing, cached, gen, drop, skipped):
    p = plan(listing, cached)
    assert [i.key for i in p.to_generate] == gen
    assert list(p.to_drop) == drop
    assert p.skipped == skipped


def test_plan_returns_the_listed_infos():
    a = obj("a", "e7", size=12345)
    assert plan([a], {}).to_generate == (a,)


# -- qualification ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 262144, MAX_TORRENT_SIZE - 1])
def test_qualifies(size):
    check_qualifies(size)  # no exception


@pytest.mark.parametrize(
    ("size", "sse_c", "message"),
    [
        (MAX_TORRENT_SIZE, False,
         "Torrent creation is not supported for objects larger than 5368709120"),
        (MAX_TORRENT_SIZE + 1, False,
         "Torrent creation is not supported for objects larger than 5368709120"),
        (100, True, "SSE-C"),
        (MAX_TORRENT_SIZE, True, "SSE-C"),
        (0, False, "empty"),
    ],
)
def test_not_qualified(size, sse_c, message):
    with pytest.raises(NotQualified) as info:
        check_qualifies(size, sse_c)
    assert message in info.value.message
    assert str(info.value) == info.value.message


# -- web seed URL -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("webseed", "public_url", "origin", "key", "version", "want"),
    [
        ("origin", "http://d:8000", "https://s3.example/bk/a%20b", "a b", None,
         "https://s3.example/bk/a%20b"),
        ("proxy", "http://d:8000", "https://s3.example/bk/a", "a", None, "http://d:8000/bk/a"),
        ("origin", "http://d:8000/", None, "dir/ü x+y#?.bin", None,
         "http://d:8000/bk/dir/%C3%BC%20x%2By%23%3F.bin"),
        ("proxy", "https://t.example/base/", None, "k", None, "https://t.example/base/bk/k"),
        ("proxy", "http://d", None, "k", "v 1", "http://d/bk/k?versionId=v%201"),
        ("origin", "http://d", "https://s3/bk/k?x=1", "k", "v1", "https://s3/bk/k?x=1&versionId=v1"),
    ],
)
def test_webseed_url(webseed, public_url, origin, key, version, want):
    b = BucketConfig(name="bk", webseed=webseed)
    assert webseed_url(b, key, public_url, origin, version) == want


@pytest.mark.parametrize(
    ("bucket", "origin", "version", "want"),
    [
        # Non-public: clients send no credentials (a presigned URL is added per request).
        (BucketConfig(name="bk", public=False), "https://s3/bk/k", "v1", ""),
        (BucketConfig(name="bk", public=False, webseed="proxy"), None, None, ""),
        # Requester pays: S3 refuses anonymous requests, so no plain origin URL...
        (BucketConfig(name="bk", requester_pays=True), "https://s3/bk/k", None, ""),
        # ...and this daemon's URL says the requester pays (clients cannot send the header).
        (BucketConfig(name="bk", requester_pays=True, webseed="proxy"), "https://s3/bk/k", None,
         "http://d/bk/k?x-amz-request-payer=requester"),
        (BucketConfig(name="bk", requester_pays=True), None, "v/1",
         "http://d/bk/k?versionId=v%2F1&x-amz-request-payer=requester"),
    ],
)
def test_webseed_url_private_and_requester_pays(bucket, origin, version, want):
    assert webseed_url(bucket, "k", "http://d", origin, version) == want


@pytest.mark.parametrize(
    ("kwargs", "want"),
    [
        ({"public": False, "presign_webseed": 60}, True),
        ({"requester_pays": True, "presign_webseed": 60}, True),
        ({"public": False, "requester_pays": True, "presign_webseed": 60}, True),
        ({"presign_webseed": 60}, False),  # public: the plain origin URL does
        ({"public": False}, False),  # not asked for
        ({"public": False, "presign_webseed": 60, "webseed": "proxy"}, False),
    ],
)
def test_presigns_webseed(kwargs, want):
    assert presigns_webseed(BucketConfig(name="bk", backend="s3", **kwargs)) is want
    assert presigns_webseed(BucketConfig(name="bk", backend="local", **kwargs)) is False


# -- a torrent's links ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tracker", "public_url", "bucket", "origin", "want"),
    [
        (TrackerConfig(public_url="http://t:6969/announce"), "http://d",
         BucketConfig(name="bk"), "https://s3/bk/k",
         Links("http://t:6969/announce", (("http://t:6969/announce",),), ("https://s3/bk/k",))),
        # Behind a domain name, proxy mode: the daemon's new URL.
        (TrackerConfig(public_url="https://torrents.example.com/announce"),
         "https://torrents.example.com", BucketConfig(name="bk", webseed="proxy"),
         "https://s3/bk/k",
         Links("https://torrents.example.com/announce",
               (("https://torrents.example.com/announce",),),
               ("https://torrents.example.com/bk/k?versionId=v1",))),
        # Tracker off: no announce at all.
        (TrackerConfig(enabled=False, public_url="http://t/announce"), "http://d",
         BucketConfig(name="bk"), "https://s3/bk/k", Links(url_list=("https://s3/bk/k",))),
        # No web seed (non-public bucket): no url-list.
        (TrackerConfig(public_url=""), "http://d", BucketConfig(name="bk", public=False),
         "https://s3/bk/k", Links()),
        # A UDP tracker URL: its tier first, the HTTP one as the fallback tier; announce
        # (for clients without announce-list, often without UDP too) stays HTTP.
        (TrackerConfig(public_url="http://t:6969/announce", udp_public_url="udp://t:6969"),
         "http://d", BucketConfig(name="bk"), "https://s3/bk/k",
         Links("http://t:6969/announce", (("udp://t:6969",), ("http://t:6969/announce",)),
               ("https://s3/bk/k",))),
        # UDP only (no HTTP announce URL): announce is the UDP URL, one tier.
        (TrackerConfig(public_url="", udp_public_url="udp://t:6969/announce"), "http://d",
         BucketConfig(name="bk", public=False), "https://s3/bk/k",
         Links("udp://t:6969/announce", (("udp://t:6969/announce",),))),
        # The same URL twice (public_url may be udp:// too): one tier.
        (TrackerConfig(public_url="udp://t:6969", udp_public_url="udp://t:6969"), "http://d",
         BucketConfig(name="bk", public=False), "https://s3/bk/k",
         Links("udp://t:6969", (("udp://t:6969",),))),
        # Tracker off: no trackers at all, the UDP one neither.
        (TrackerConfig(enabled=False, udp_public_url="udp://t:6969"), "http://d",
         BucketConfig(name="bk", public=False), "https://s3/bk/k", Links()),
    ],
)
def test_torrent_links(tracker, public_url, bucket, origin, want):
    config = Config(server=ServerConfig(public_url=public_url), tracker=tracker,
                    buckets=(bucket,))
    version = "v1" if bucket.webseed == "proxy" else None
    assert torrent_links(config, bucket, "k", origin, version) == want


# -- progress lines ---------------------------------------------------------------------------


def test_progress_every_ten_percent_or_ten_seconds():
    size = 1000 * MiB
    p = ProgressLog("bk/k", size, started=100.0)
    assert p.update(50 * MiB, 101.0) is None  # 5 %, 1 s
    assert p.update(100 * MiB, 104.0) is None  # 10 %, but a quick job stays quiet
    line = p.update(110 * MiB, 105.0)  # 5 s in: the 10 % step is due
    assert line is not None and "11%" in line and "bk/k" in line and "MB/s" in line
    assert p.update(150 * MiB, 106.0) is None  # 15 %, 1 s after the last line
    assert p.update(160 * MiB, 115.5) is not None  # 10 s since the last line
    assert p.update(199 * MiB, 116.0) is None
    assert p.update(450 * MiB, 117.0) is not None  # jumped several steps: one line
    assert p.update(460 * MiB, 118.0) is None
    assert p.update(500 * MiB, 118.5) is not None  # 50 %
    assert p.update(size, 200.0) is None  # done: the "generated" line says it


def test_progress_silent_for_quick_jobs():
    p = ProgressLog("bk/k", 10 * MiB, started=0.0)
    assert all(p.update(n * MiB, n * 0.4) is None for n in range(11))


@pytest.mark.parametrize(
    ("head_version", "pin", "want"),
    [
        (None, None, None),  # unversioned bucket, local directory
        ("null", None, None),  # written while versioning was off: the next write reuses "null"
        ("", None, None),
        ("3HL4kqtJ", None, "3HL4kqtJ"),  # the current object of a versioned bucket
        ("3HL4kqtJ", "3HL4kqtJ", "3HL4kqtJ"),  # ?torrent&versionId=
        (None, "v/1 +", "v/1 +"),
        ("null", "null", "null"),  # a pin is kept as asked (an Entry's pin is its version)
    ],
)
def test_object_version(head_version, pin, want):
    info = ObjectInfo(bucket="bk", key="k", size=1, etag="e", last_modified=1.0,
                      version_id=head_version)
    assert object_version(info, pin) == want
