"""Plain (unsigned) S3 object URLs: AWS's regional endpoints, key quoting, path and
virtual-host addressing (pure)."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

__all__ = ["default_endpoint", "object_url", "quote_key"]


def default_endpoint(region: str | None) -> str:
    """AWS's regional S3 endpoint (``us-east-1`` when no region is given)."""
    region = region or "us-east-1"
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://s3.{region}.{suffix}"


def quote_key(key: str) -> str:
    """``key`` percent-encoded as S3 expects in a path: UTF-8, every byte but the RFC 3986
    unreserved set and '/' escaped ('+' as %2B, space as %20)."""
    return quote(key, safe="/~")


def object_url(
    endpoint_url: str | None,
    region: str | None,
    bucket: str,
    key: str,
    addressing_style: str = "path",
) -> str:
    """The plain (unsigned) URL of ``bucket``/``key``.

    ``path``: ``{endpoint}/{bucket}/{key}``; ``virtual``: ``{scheme}://{bucket}.{host}/{key}``.
    A path prefix on the endpoint is kept. Keys with '.' or '..' segments give URLs that
    HTTP clients may normalise away; S3 keys like that are rare and not served well by any
    web seed.
    """
    parts = urlsplit(endpoint_url or default_endpoint(region))
    base_path = parts.path.rstrip("/")
    netloc = parts.netloc
    if addressing_style == "virtual":
        netloc = f"{bucket}.{netloc}"
        path = f"{base_path}/{quote_key(key)}"
    else:
        path = f"{base_path}/{quote(bucket, safe='')}/{quote_key(key)}"
    return f"{parts.scheme}://{netloc}{path}"
