"""Captured-shape event deliveries (tests/fixtures/events/*.json), rewritten for a test's
bucket and key: what MinIO, Ceph RGW and Amazon S3 through SNS POST, and their headers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

FIXTURES = Path(__file__).parent / "fixtures" / "events"

# sender -> (created fixture, removed fixture, headers)
SENDERS: dict[str, tuple[str, str, dict[str, str]]] = {
    "minio": ("minio_put.json", "minio_delete.json", {"content-type": "application/json"}),
    "ceph": ("ceph_put.json", "ceph_delete.json", {"content-type": "application/json"}),
    "sns": ("sns_put.json", "sns_delete.json", {
        "content-type": "text/plain; charset=UTF-8",
        "x-amz-sns-message-type": "Notification",
    }),
}
SNS_HEADERS = SENDERS["sns"][2]


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def encode_key(sender: str, key: str) -> str:
    """The key as the sender writes it: a URL form value (MinIO escapes '/' too)."""
    if sender == "minio":
        return quote_plus(key, safe="")
    return quote_plus(key, safe="/")


def shaped(sender: str, kind: str, bucket: str, key: str, *, sequencer: str | None = None,
           etag: str | None = None, size: int | None = None) -> bytes:
    """The body ``sender`` POSTs for ``kind`` ("created" / "removed") of bucket/key."""
    created, removed, _ = SENDERS[sender]
    doc = load(created if kind == "created" else removed)
    if sender == "sns":
        inner = json.loads(doc["Message"])
        _rewrite(inner["Records"][0], sender, bucket, key, sequencer, etag, size)
        doc["Message"] = json.dumps(inner)
    else:
        _rewrite(doc["Records"][0], sender, bucket, key, sequencer, etag, size)
        if "Key" in doc:
            doc["Key"] = f"{bucket}/{key}"
    return json.dumps(doc).encode()


def _rewrite(record: dict[str, Any], sender: str, bucket: str, key: str,
             sequencer: str | None, etag: str | None, size: int | None) -> None:
    s3 = record["s3"]
    s3["bucket"]["name"] = bucket
    s3["bucket"]["arn"] = f"arn:aws:s3:::{quote(bucket)}"
    obj = s3["object"]
    obj["key"] = encode_key(sender, key)
    obj.pop("versionId", None)
    if sequencer is not None:
        obj["sequencer"] = sequencer
    if etag is not None:
        obj["eTag"] = etag
    if size is not None:
        obj["size"] = size


def headers(sender: str) -> dict[str, str]:
    return dict(SENDERS[sender][2])
