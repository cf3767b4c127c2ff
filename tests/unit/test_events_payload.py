"""seeder.events.payload: each sender's captured shape, then one field broken at a time."""

from __future__ import annotations

import json

import pytest

from seeder.events.payload import (
    MAX_BODY_BYTES,
    Delivery,
    EventError,
    ObjectEvent,
    SubscriptionConfirmation,
    event_kind,
    parse_delivery,
)
from tests.event_shapes import FIXTURES, SNS_HEADERS, load

JSON = b"application/json"
SNS_CT = SNS_HEADERS["content-type"].encode()
KEY = "dir/hello world.txt"  # every fixture's key ("dir%2Fhello+world.txt" / "dir/hello+world.txt")


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parse(doc: object, content_type: bytes | None = JSON, sns: bytes | None = None) -> Delivery:
    return parse_delivery(json.dumps(doc).encode(), content_type, sns)


def refused(body: bytes, content_type: bytes | None = JSON, sns: bytes | None = None,
            status: int = 400) -> str:
    with pytest.raises(EventError) as info:
        parse_delivery(body, content_type, sns)
    assert info.value.status == status
    assert "\n" not in info.value.message
    return info.value.message


def test_minio_put() -> None:
    d = parse_delivery(raw("minio_put.json"), JSON)
    assert d == Delivery("minio", (ObjectEvent(
        "photos", KEY, "created", sequencer="187E5C5B8A7D1E40",
        etag="b6d81b360a5672d80c27430f39153e2c", size=1048576, name="s3:ObjectCreated:Put"),))


def test_minio_delete() -> None:
    d = parse_delivery(raw("minio_delete.json"), JSON)
    assert d.sender == "minio"
    assert d.events == (ObjectEvent("photos", KEY, "removed", sequencer="187E5C674F4C8A02",
                                    name="s3:ObjectRemoved:Delete"),)


def test_ceph_put_and_delete() -> None:
    put = parse_delivery(raw("ceph_put.json"), JSON)
    assert put.sender == "ceph"
    (e,) = put.events
    assert (e.bucket, e.key, e.kind, e.sequencer, e.version, e.size) == (
        "photos", KEY, "created", "F7E6D75DC742D108", None, 1048576)
    (d,) = parse_delivery(raw("ceph_delete.json"), None).events  # older Ceph: no content type
    assert (d.kind, d.etag, d.size, d.name) == ("removed", None, 0, "ObjectRemoved:Delete")


def test_ceph_size_as_string_before_2_2() -> None:
    doc = load("ceph_put.json")
    doc["Records"][0]["s3"]["object"]["size"] = "1024"
    assert parse(doc).events[0].size == 1024


def test_sns_notification_put_and_delete() -> None:
    put = parse_delivery(raw("sns_put.json"), SNS_CT, b"Notification")
    (e,) = put.events
    assert put.sender == "sns"
    assert (e.bucket, e.key, e.kind, e.version, e.sequencer) == (
        "photos", KEY, "created", "096fKKXTRTtl3on89fVO.nfljtsv6qko", "0055AED6DCD90281E5")
    (d,) = parse_delivery(raw("sns_delete.json"), SNS_CT, b"Notification").events
    assert (d.kind, d.sequencer, d.etag, d.size) == ("removed", "0055AED6DCD90281F7", None, None)


def test_sns_raw_message_delivery() -> None:
    inner = json.loads(load("sns_put.json")["Message"])
    assert parse(inner, SNS_CT, b"Notification").events[0].key == KEY


def test_sns_test_event_is_ignored() -> None:
    d = parse_delivery(raw("sns_test_event.json"), SNS_CT, b"Notification")
    assert d == Delivery("sns", ignored=1)


def test_sns_subscription_confirmation() -> None:
    doc = load("sns_subscription_confirmation.json")
    d = parse_delivery(raw("sns_subscription_confirmation.json"), SNS_CT,
                       b"SubscriptionConfirmation")
    assert d.confirmation == SubscriptionConfirmation(doc["TopicArn"], doc["SubscribeURL"])
    assert d.events == ()


def test_unsubscribe_confirmation_is_ignored() -> None:
    doc = load("sns_subscription_confirmation.json") | {"Type": "UnsubscribeConfirmation"}
    assert parse(doc, SNS_CT, b"UnsubscribeConfirmation").ignored == 1


def test_key_is_a_form_value() -> None:
    doc = load("ceph_put.json")
    doc["Records"][0]["s3"]["object"]["key"] = "a+b%2Fc.txt"
    assert parse(doc).events[0].key == "a b/c.txt"
    doc["Records"][0]["s3"]["object"]["key"] = "caf%C3%A9%2B1"
    assert parse(doc).events[0].key == "café+1"


def test_other_event_types_are_ignored() -> None:
    doc = load("minio_put.json")
    doc["Records"][0]["eventName"] = "s3:ObjectAccessed:Get"
    d = parse(doc)
    assert (d.events, d.ignored) == ((), 1)


@pytest.mark.parametrize(("name", "kind"), [
    ("s3:ObjectCreated:Put", "created"), ("ObjectCreated:CompleteMultipartUpload", "created"),
    ("ObjectCreated:Copy", "created"), ("s3:ObjectRemoved:Delete", "removed"),
    ("ObjectRemoved:DeleteMarkerCreated", "removed"), ("LifecycleExpiration:Delete", "removed"),
    ("ObjectLifecycle:Expiration:Current", "removed"), ("ObjectSynced:Create", "created"),
    ("s3:ObjectAccessed:Head", None), ("ObjectRestore:Completed", None), ("s3:TestEvent", None),
    ("ObjectTagging:Put", None), ("", None),
])
def test_event_kind(name: str, kind: str | None) -> None:
    assert event_kind(name) == kind


def test_sequencer_not_hex_is_unordered() -> None:
    doc = load("ceph_put.json")
    doc["Records"][0]["s3"]["object"]["sequencer"] = "not-hex"
    assert parse(doc).events[0].sequencer is None


def test_version_null_is_none_and_etag_unquoted() -> None:
    doc = load("sns_put.json")
    inner = json.loads(doc["Message"])
    inner["Records"][0]["s3"]["object"] |= {"versionId": "null", "eTag": '"abc-2"'}
    doc["Message"] = json.dumps(inner)
    (e,) = parse(doc, SNS_CT, b"Notification").events
    assert (e.version, e.etag) == (None, "abc-2")


# -- bad input: a clear one-line 400 (413), never another exception ----------------------------


def test_malformed_json() -> None:
    assert "not valid JSON" in refused(b'{"Records": [')
    assert "not valid JSON" in refused(b"\xff\xfe\x00garbage")
    assert "not a JSON object" in refused(b"[1, 2]")
    assert "not valid JSON" in refused(b"[" * 100000)


def test_body_too_large() -> None:
    body = b'{"Records": [], "pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    refused(body, status=413)


@pytest.mark.parametrize("content_type", [b"text/plain", b"application/x-www-form-urlencoded",
                                          b"application/xml", b"text/html; charset=utf-8"])
def test_non_json_content_type(content_type: bytes) -> None:
    assert "not JSON" in refused(raw("minio_put.json"), content_type)


def test_json_content_types_accepted() -> None:
    for ct in (b"application/json; charset=utf-8", b"Application/JSON",
               b"application/cloudevents+json", None):
        assert parse_delivery(raw("ceph_put.json"), ct).events


def test_unknown_sns_type() -> None:
    assert "x-amz-sns-message-type" in refused(raw("sns_put.json"), SNS_CT, b"Bogus")


@pytest.mark.parametrize(("path", "value", "words"), [
    (("Records",), None, "'Records' has the wrong type"),
    (("Records",), {"a": 1}, "wrong type"),
    (("Records", 0), "x", "Records[0] is not a JSON object"),
    (("Records", 0, "eventName"), 7, "'eventName' has the wrong type"),
    (("Records", 0, "s3"), [], "'s3' has the wrong type"),
    (("Records", 0, "s3", "bucket", "name"), 1, "'name' has the wrong type"),
    (("Records", 0, "s3", "bucket", "name"), "", "empty bucket name"),
    (("Records", 0, "s3", "object", "key"), None, "'key' has the wrong type"),
    (("Records", 0, "s3", "object", "key"), "", "empty object key"),
    (("Records", 0, "s3", "object", "key"), "%FF%FE", "not URL-encoded UTF-8"),
    (("Records", 0, "s3", "object", "key"), "k" * 1025, "longer than 1024"),
    (("Records", 0, "s3", "object", "size"), "12x", "'size' has the wrong type"),
    (("Records", 0, "s3", "object", "size"), True, "'size' has the wrong type"),
    (("Records", 0, "s3", "object", "size"), -1, "negative"),
    (("Records", 0, "s3", "object", "sequencer"), 12, "'sequencer' has the wrong type"),
    (("Records", 0, "s3", "object", "eTag"), ["x"], "'eTag' has the wrong type"),
    (("EventName",), 3, "'EventName' has the wrong type"),
    (("Key",), {}, "'Key' has the wrong type"),
])
def test_one_field_broken(path: tuple, value: object, words: str) -> None:
    doc = load("minio_put.json")
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    assert words in refused(json.dumps(doc).encode())


@pytest.mark.parametrize("missing", [("Records",), ("Records", 0, "eventName"),
                                     ("Records", 0, "s3"), ("Records", 0, "s3", "bucket"),
                                     ("Records", 0, "s3", "object", "key")])
def test_missing_field(missing: tuple) -> None:
    doc = load("ceph_put.json")
    target = doc
    for step in missing[:-1]:
        target = target[step]
    del target[missing[-1]]
    assert "missing" in refused(json.dumps(doc).encode())


def test_one_bad_record_refuses_the_delivery() -> None:
    doc = load("ceph_put.json")
    bad = json.loads(json.dumps(doc["Records"][0]))
    del bad["s3"]["object"]["key"]
    doc["Records"].append(bad)
    assert "Records[1]" in refused(json.dumps(doc).encode())


def test_sns_message_not_json() -> None:
    doc = load("sns_put.json") | {"Message": "{not json"}
    assert "SNS Message is not valid JSON" in refused(json.dumps(doc).encode(), SNS_CT,
                                                      b"Notification")
    doc = load("sns_put.json")
    del doc["Message"]
    assert "missing 'Message'" in refused(json.dumps(doc).encode(), SNS_CT, b"Notification")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://sns/x", "not a url", ""])
def test_subscribe_url_must_be_http(url: str) -> None:
    doc = load("sns_subscription_confirmation.json") | {"SubscribeURL": url}
    assert "SubscribeURL" in refused(json.dumps(doc).encode(), SNS_CT,
                                     b"SubscriptionConfirmation")


def test_garbage_gives_only_event_error() -> None:
    """Fuzz-ish: every prefix of every fixture parses or raises EventError, nothing else."""
    for path in sorted(FIXTURES.glob("*.json")):
        body = path.read_bytes()
        for end in range(0, len(body), 97):
            for sns in (None, b"Notification", b"SubscriptionConfirmation"):
                try:
                    parse_delivery(body[:end], JSON, sns)
                except EventError:
                    pass
