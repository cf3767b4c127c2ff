"""Event deliveries: a POST body (and two headers) -> a :class:`Delivery`, or EventError.

Three senders, one record shape (the S3 event message, ``Records[]``):

- MinIO's webhook target: ``{"EventName": "s3:ObjectCreated:Put", "Key": "bucket/key",
  "Records": [...]}``, ``eventName`` with the ``s3:`` prefix.
- Ceph RGW's HTTP push endpoint: ``{"Records": [...]}``, ``eventName`` without the prefix,
  ``eventVersion`` "2.2", the size a number (older releases: a string of digits).
- Amazon S3 through SNS (header ``x-amz-sns-message-type``, body ``text/plain``):
  ``Notification`` whose ``Message`` is a JSON *string* holding the S3 event (or, with raw
  message delivery on, the S3 event itself); ``SubscriptionConfirmation`` with a
  ``SubscribeURL``; ``UnsubscribeConfirmation``. The first S3 message on a new
  configuration is ``{"Event": "s3:TestEvent", ...}``: accepted and ignored.

Object keys arrive URL-encoded as form values (``a+b%2Fc.txt`` is ``a b/c.txt``). Records
of other event types (``ObjectAccessed:*``, ``ObjectRestore:*``, tagging, ACLs ...) are
counted as ignored. The whole body is checked before anything is returned, so one bad
record refuses the delivery (400) and nothing of it is applied.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_plus, urlsplit

__all__ = [
    "CREATED",
    "MAX_BODY_BYTES",
    "MAX_KEY_BYTES",
    "REMOVED",
    "Delivery",
    "EventError",
    "Kind",
    "ObjectEvent",
    "SubscriptionConfirmation",
    "event_kind",
    "parse_delivery",
]

MAX_BODY_BYTES = 1 << 20  # the cap: a bigger body is a 413
MAX_KEY_BYTES = 1024  # S3's limit on a key (UTF-8 bytes)

Kind = Literal["created", "removed"]
CREATED: Kind = "created"
REMOVED: Kind = "removed"

# eventName (without "s3:") prefixes -> what they mean for a torrent. Amazon's lifecycle
# expirations and Ceph's lifecycle / multisite sync events change objects as well.
_KIND_PREFIXES: tuple[tuple[str, Kind], ...] = (
    ("ObjectCreated:", CREATED),
    ("ObjectRemoved:", REMOVED),
    ("LifecycleExpiration:", REMOVED),
    ("ObjectLifecycle:Expiration:", REMOVED),
    ("ObjectSynced:Create", CREATED),
    ("ObjectSynced:Delete", REMOVED),
)
_HEX = frozenset("0123456789abcdefABCDEF")
_SNS_TYPES = (b"Notification", b"SubscriptionConfirmation", b"UnsubscribeConfirmation")


class EventError(ValueError):
    """The sender sent something this endpoint refuses; ``status`` is the HTTP answer
    (400, or 413 for a body over :data:`MAX_BODY_BYTES`), ``message`` one line saying why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """One object change. ``key`` is decoded; ``sequencer`` is upper-case hex or None (not
    sent, or not hex: then not ordered); ``version`` the S3 version id (None for none or
    ``"null"``); ``etag`` (unquoted) and ``size`` when the sender told them (created)."""

    bucket: str
    key: str
    kind: Kind
    sequencer: str | None = None
    version: str | None = None
    etag: str | None = None
    size: int | None = None
    name: str = ""  # the eventName as sent, for logs

    def __post_init__(self) -> None:
        if not self.bucket:
            raise EventError("empty bucket name")
        if not self.key:
            raise EventError("empty object key")
        if len(self.key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise EventError(f"object key longer than {MAX_KEY_BYTES} bytes")
        if self.kind not in (CREATED, REMOVED):
            raise EventError(f"unknown event kind {self.kind!r}")
        if self.size is not None and self.size < 0:
            raise EventError("negative object size")


@dataclass(frozen=True, slots=True)
class SubscriptionConfirmation:
    """An SNS subscription waiting to be confirmed by a GET of ``subscribe_url``."""

    topic_arn: str
    subscribe_url: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one POST carried: object events in order, an SNS confirmation, or neither;
    ``ignored`` counts messages and records that mean nothing here (test events, other
    event types, unsubscribe confirmations). ``sender`` names the shape, for logs."""

    sender: str
    events: tuple[ObjectEvent, ...] = ()
    confirmation: SubscriptionConfirmation | None = None
    ignored: int = 0


def event_kind(event_name: str) -> Kind | None:
    """``created`` / ``removed`` for an S3 event name with or without the ``s3:`` prefix;
    None for the event types that do not change an object's bytes."""
    name = event_name[3:] if event_name.startswith("s3:") else event_name
    for prefix, kind in _KIND_PREFIXES:
        if name.startswith(prefix):
            return kind
    return None


def parse_delivery(body: bytes, content_type: bytes | None = None,
                   sns_message_type: bytes | None = None) -> Delivery:
    """Parse one POST to ``/-/events``: its body, ``Content-Type`` and
    ``x-amz-sns-message-type`` headers. Raises EventError: 413 over :data:`MAX_BODY_BYTES`;
    400 for a content type other than JSON (``text/plain`` is allowed with the SNS header,
    as SNS sends it; none at all is allowed, as older Ceph releases send none), malformed
    JSON, a missing field, a value of the wrong type, an undecodable key."""
    if len(body) > MAX_BODY_BYTES:
        raise EventError(f"body larger than {MAX_BODY_BYTES} bytes", 413)
    _check_content_type(content_type, sns_message_type is not None)
    doc = _json_object(body, "body")
    if sns_message_type is None:
        return _records_delivery(doc)
    if sns_message_type not in _SNS_TYPES:
        raise EventError(f"unknown x-amz-sns-message-type {_show(sns_message_type)}")
    if sns_message_type == b"SubscriptionConfirmation":
        return Delivery("sns", confirmation=_confirmation(doc))
    if sns_message_type == b"UnsubscribeConfirmation":
        return Delivery("sns", ignored=1)
    if "Records" in doc and "Message" not in doc:  # raw message delivery
        return _records_delivery(doc, "sns")
    message = _field(doc, "Message", str, "SNS notification")
    inner = _json_object(message.encode("utf-8", "surrogatepass"), "SNS Message")
    if inner.get("Event") == "s3:TestEvent":
        return Delivery("sns", ignored=1)
    return _records_delivery(inner, "sns")


# -- pieces ----------------------------------------------------------------------------------


def _check_content_type(content_type: bytes | None, sns: bool) -> None:
    if content_type is None:
        return
    media = content_type.split(b";", 1)[0].strip().lower()
    if media in (b"", b"application/json") or media.endswith(b"+json"):
        return
    if sns and media == b"text/plain":
        return
    raise EventError(f"content type {_show(media)} is not JSON (send application/json)")


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, huge ints
        raise EventError(f"{what} is not valid JSON: {_one_line(exc)}") from None
    if not isinstance(doc, dict):
        raise EventError(f"{what} is not a JSON object")
    return doc


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in obj:
        raise EventError(f"{where}: missing {name!r}")
    value = obj[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise EventError(f"{where}: {name!r} has the wrong type ({type(value).__name__})")
    return value


def _optional(obj: dict[str, Any], name: str, kind: type, where: str) -> Any:
    if obj.get(name) is None:
        return None
    return _field(obj, name, kind, where)


def _records_delivery(doc: dict[str, Any], sender: str | None = None) -> Delivery:
    if "EventName" in doc or "Key" in doc:  # MinIO's top-level summary of Records[0]
        for name in ("EventName", "Key"):
            if name in doc and not isinstance(doc[name], str):
                raise EventError(f"{name!r} has the wrong type ({type(doc[name]).__name__})")
    records = _field(doc, "Records", list, "event")
    events: list[ObjectEvent] = []
    ignored = 0
    sources: set[str] = set()
    for i, record in enumerate(records):
        where = f"Records[{i}]"
        if not isinstance(record, dict):
            raise EventError(f"{where} is not a JSON object")
        name = _field(record, "eventName", str, where)
        source = record.get("eventSource")
        if isinstance(source, str):
            sources.add(source)
        kind = event_kind(name)
        if kind is None:
            ignored += 1
            continue
        events.append(_record(record, name, kind, where))
    return Delivery(sender or _sender(sources, doc), tuple(events), ignored=ignored)


def _record(record: dict[str, Any], name: str, kind: Kind, where: str) -> ObjectEvent:
    s3 = _field(record, "s3", dict, where)
    bucket = _field(_field(s3, "bucket", dict, f"{where}.s3"), "name", str, f"{where}.s3.bucket")
    obj = _field(s3, "object", dict, f"{where}.s3")
    at = f"{where}.s3.object"
    raw_key = _field(obj, "key", str, at)
    try:
        key = unquote_plus(raw_key, errors="strict")
    except UnicodeDecodeError:
        raise EventError(f"{at}.key is not URL-encoded UTF-8: {raw_key[:200]!r}") from None
    sequencer = _optional(obj, "sequencer", str, at)
    if sequencer is not None:
        sequencer = sequencer.upper() if sequencer and _HEX.issuperset(sequencer) else None
    version = _optional(obj, "versionId", str, at)
    etag = _optional(obj, "eTag", str, at)
    size = obj.get("size")
    if isinstance(size, str) and size.isdigit() and size.isascii():
        size = int(size)  # Ceph before eventVersion 2.2
    elif size is not None:
        size = _field(obj, "size", int, at)
    return ObjectEvent(
        bucket=bucket, key=key, kind=kind, sequencer=sequencer,
        version=None if version in (None, "", "null") else version,
        etag=etag.strip('"') or None if etag is not None else None,
        size=size, name=name,
    )


def _confirmation(doc: dict[str, Any]) -> SubscriptionConfirmation:
    where = "SNS SubscriptionConfirmation"
    topic = _field(doc, "TopicArn", str, where)
    url = _field(doc, "SubscribeURL", str, where)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EventError(f"{where}: SubscribeURL is not an http(s) URL")
    return SubscriptionConfirmation(topic, url)


def _sender(sources: set[str], doc: dict[str, Any]) -> str:
    if "EventName" in doc or "minio:s3" in sources:
        return "minio"
    if "ceph:s3" in sources:
        return "ceph"
    if "aws:s3" in sources:
        return "s3"
    return "unknown"


def _show(value: bytes) -> str:
    return repr(value[:100].decode("latin-1"))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
