"""Which signature a request carries, verified: SigV4 always, SigV2 when enabled. Pure.

``authenticate`` is the one call the handlers make: it hands SigV2 requests (``sigv2.applies``)
to ``sigv2.verify`` when ``[server] sigv2`` is on, and everything else (SigV4, anonymous, a
request mixing mechanisms, and SigV2 when it is off: InvalidRequest "Please use
AWS4-HMAC-SHA256") to ``sigv4.verify``.
"""

from __future__ import annotations

from datetime import datetime

from seeder.s3api import sigv2, sigv4
from seeder.s3api.sigv4 import Secrets, SignedRequest

__all__ = ["authenticate"]


def authenticate(signed: SignedRequest, secrets: Secrets, now: datetime | float, *,
                 allow_sigv2: bool, virtual_bucket: str | None = None) -> str | None:
    """The verified access key id, or None for an anonymous request; S3Error otherwise.

    ``virtual_bucket``: the bucket a virtual-hosted request named in its Host (SigV2 signs
    ``/bucket/key`` whatever the addressing)."""
    if allow_sigv2 and sigv2.applies(signed):
        return sigv2.verify(signed, secrets, now, virtual_bucket)
    return sigv4.verify(signed, secrets, now)
