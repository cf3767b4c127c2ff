"""S3's XML answers to the read-only bucket calls: pure rendering, bytes out.

ListBuckets (``ListAllMyBucketsResult``), ListObjects and ListObjectsV2
(``ListBucketResult``) and GetBucketLocation (``LocationConstraint``), in S3's namespace
``http://s3.amazonaws.com/doc/2006-03-01/`` and S3's element order, so SDKs that read the
XML with a schema and the ones that read it by position both get what S3 gives them.

With ``encoding-type=url`` the names S3 encodes (``Key``, ``Prefix``, ``Delimiter``,
``StartAfter``, ``Marker``, ``NextMarker``) are percent-encoded with ``+`` for a space, as
S3 does and as botocore decodes them; ``EncodingType`` says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote_plus

from seeder.s3api.errors import xml_text
from seeder.s3api.listing import ListRequest, encode_token
from seeder.store import ObjectInfo
from seeder.store.paging import ListPage

__all__ = ["NAMESPACE", "Owner", "list_buckets", "list_objects", "location", "timestamp"]

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


@dataclass(frozen=True, slots=True)
class Owner:
    id: str
    display_name: str

    def xml(self) -> str:
        return (f"<Owner><ID>{xml_text(self.id)}</ID>"
                f"<DisplayName>{xml_text(self.display_name)}</DisplayName></Owner>")


def timestamp(unix: float) -> str:
    """S3's ``LastModified`` / ``CreationDate`` form: ``2009-10-12T17:50:30.000Z``."""
    dt = datetime.fromtimestamp(max(unix, 0.0), UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def list_buckets(owner: Owner, buckets: Sequence[tuple[str, float]]) -> bytes:
    """``buckets``: (name, creation time in unix seconds), listed in name order."""
    parts = [_HEAD, f'<ListAllMyBucketsResult xmlns="{NAMESPACE}">', owner.xml(), "<Buckets>"]
    for name, created in sorted(buckets):
        parts.append(f"<Bucket><Name>{xml_text(name)}</Name>"
                     f"<CreationDate>{timestamp(created)}</CreationDate></Bucket>")
    parts.append("</Buckets></ListAllMyBucketsResult>")
    return "".join(parts).encode("utf-8")


def location(region: str) -> bytes:
    """GetBucketLocation: empty for us-east-1, as S3 answers."""
    value = "" if region in ("", "us-east-1") else xml_text(region)
    return (f'{_HEAD}<LocationConstraint xmlns="{NAMESPACE}">{value}</LocationConstraint>'
            ).encode()


def list_objects(bucket: str, req: ListRequest, page: ListPage, owner: Owner) -> bytes:
    """A ListObjects (``req.v2`` False) or ListObjectsV2 answer for one page."""
    def enc(value: str) -> str:
        return xml_text(quote_plus(value, safe="") if req.url_encoding else value)

    def el(name: str, value: str) -> str:
        return f"<{name}>{value}</{name}>"

    parts = [_HEAD, f'<ListBucketResult xmlns="{NAMESPACE}">', el("Name", xml_text(bucket)),
             el("Prefix", enc(req.prefix))]
    next_at = page.last if page.truncated else None
    if req.v2:
        if req.continuation_token is not None:
            parts.append(el("ContinuationToken", xml_text(req.continuation_token)))
        if next_at is not None:
            parts.append(el("NextContinuationToken", encode_token(next_at)))
        parts.append(el("KeyCount", str(len(page.objects) + len(page.prefixes))))
        parts.append(el("MaxKeys", str(req.max_keys)))
        if req.delimiter:
            parts.append(el("Delimiter", enc(req.delimiter)))
        if req.url_encoding:
            parts.append(el("EncodingType", "url"))
        parts.append(el("IsTruncated", "true" if page.truncated else "false"))
        if req.start_after:
            parts.append(el("StartAfter", enc(req.start_after)))
    else:
        parts.append(el("Marker", enc(req.start_after)))
        if next_at is not None and req.delimiter:
            parts.append(el("NextMarker", enc(next_at)))
        parts.append(el("MaxKeys", str(req.max_keys)))
        if req.delimiter:
            parts.append(el("Delimiter", enc(req.delimiter)))
        if req.url_encoding:
            parts.append(el("EncodingType", "url"))
        parts.append(el("IsTruncated", "true" if page.truncated else "false"))
    with_owner = req.fetch_owner or not req.v2
    parts += [_contents(o, enc, owner if with_owner else None) for o in page.objects]
    parts += [f"<CommonPrefixes>{el('Prefix', enc(p))}</CommonPrefixes>"
              for p in page.prefixes]
    parts.append("</ListBucketResult>")
    return "".join(parts).encode("utf-8")


def _contents(obj: ObjectInfo, enc: Callable[[str], str], owner: Owner | None) -> str:
    return (f"<Contents><Key>{enc(obj.key)}</Key>"
            f"<LastModified>{timestamp(obj.last_modified)}</LastModified>"
            f"<ETag>{xml_text(chr(34) + obj.etag + chr(34))}</ETag>"
            f"<Size>{obj.size}</Size>"
            + (owner.xml() if owner is not None else "")
            + "<StorageClass>STANDARD</StorageClass></Contents>")
