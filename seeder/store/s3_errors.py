"""botocore / urllib3 / OS exceptions as the store's errors (`seeder.store.StoreError` and
its kinds). botocore is imported inside the functions: the store package loads without it."""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from typing import Any

from seeder.store import (
    BackendAccessDenied,
    NoSuchBucket,
    NoSuchKey,
    ObjectChanged,
    StoreError,
    StoreUnavailable,
)

__all__ = [
    "ACCESS_DENIED_CODES",
    "NO_SUCH_KEY_CODES",
    "UNAVAILABLE_CODES",
    "error_fields",
    "is_sse_c_head_error",
    "translate_error",
]

# S3 error codes that mean "try again later" whatever their status (400 RequestTimeout...).
UNAVAILABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "ServiceUnavailable",
        "InternalError",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)
NO_SUCH_KEY_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "NotFound", "404"})
ACCESS_DENIED_CODES = frozenset(
    {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)


def error_fields(exc: Exception) -> tuple[str, int]:
    """The S3 error code and HTTP status of a botocore ClientError ('', 0 when absent)."""
    response: Mapping[str, Any] = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def translate_error(exc: Exception, what: str) -> StoreError:
    """The StoreError for a botocore/urllib3/OS exception met while doing ``what``.

    Only the error code and status go into the message: never credentials or signatures.
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        HTTPClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, ClientError):
        code, status = error_fields(exc)
        label = f"{what}: {code or status}"
        if code == "NoSuchBucket":
            return NoSuchBucket(label)
        if code in NO_SUCH_KEY_CODES or status == 404:
            return NoSuchKey(label)
        if code == "PreconditionFailed" or status == 412:
            return ObjectChanged(label)
        if code in ACCESS_DENIED_CODES or status == 403:
            return BackendAccessDenied(label)
        if code in UNAVAILABLE_CODES or status >= 500 or status == 429:
            return StoreUnavailable(label)
        return StoreError(label)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return BackendAccessDenied(f"{what}: {type(exc).__name__}")
    if isinstance(exc, ConnectionError | HTTPClientError):
        return StoreUnavailable(f"{what}: {type(exc).__name__}")
    if isinstance(exc, BotoCoreError):
        # ResponseStreamingError, IncompleteReadError, ... : the transfer broke.
        return StoreUnavailable(f"{what}: {type(exc).__name__}")
    if isinstance(exc, OSError):
        return StoreUnavailable(f"{what}: {exc.strerror or type(exc).__name__}")
    if isinstance(exc, http.client.HTTPException):
        # IncompleteRead, ...: a body read straight from http.client (read_body_into) broke.
        return StoreUnavailable(f"{what}: {type(exc).__name__}")
    return StoreError(f"{what}: {type(exc).__name__}")


def is_sse_c_head_error(exc: Exception) -> bool:
    """A HEAD answered 400 with no body: what S3 says for an SSE-C object asked without its
    key (HEAD has no body to carry a better code, so botocore reports code "400")."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    code, status = error_fields(exc)
    return status == 400 and code in ("400", "BadRequest", "InvalidRequest", "InvalidArgument")
