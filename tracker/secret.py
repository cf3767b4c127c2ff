"""The key of the UDP connection ids, kept in a file so that ids outlive a restart.

A client holds its BEP 15 connection id for up to two minutes; with a new random key
after every restart, each client that connected shortly before it fails one announce
("invalid connection id") and backs off. ``load_or_create`` reads the key, or writes a new
random one (owner-only, written to a temporary file and renamed, so a crash never leaves
half a key). The key is a cache: an unreadable or malformed file is replaced, with a log
line, rather than stopping the tracker.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

__all__ = ["KEY_BYTES", "load_or_create"]

log = logging.getLogger(__name__)

KEY_BYTES = 32


def load_or_create(path: str | os.PathLike[str]) -> bytes:
    """The 32-byte key in ``path``, created (mode 0600) if missing or malformed.

    Raises OSError only when a new key cannot be written (directory missing or read-only).
    """
    path = Path(path)
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = None
    except OSError as exc:
        log.warning("key file %s unreadable (%s): writing a new one", path, exc.strerror)
        key = None
    if key is not None:
        if len(key) == KEY_BYTES:
            return key
        log.warning("key file %s is %d bytes, not %d: writing a new one",
                    path, len(key), KEY_BYTES)  # fmt: skip
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return key
