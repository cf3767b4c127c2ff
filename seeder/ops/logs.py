"""Logging setup: one handler on the root logger, in one of three line formats.

- ``human``: ``2024-05-01 12:00:00,123 INFO seeder.torrent.service: message key=value``
- ``journal``: ``<6>seeder.torrent.service: message key=value`` -- no timestamp (journald adds
  one) and an sd-daemon(3) priority prefix so ``journalctl -p`` filters by level.
  journald turns every stream line into its own entry, so a traceback's lines all carry
  the record's priority and are indented under the first line.
- ``json``: one object per line: ``ts``, ``level``, ``logger``, ``msg``, ``exc`` (the whole
  traceback, one string), and every ``extra=`` field (``request_id``, ``bucket``, ...).
- ``auto``: ``journal`` when stderr is the stream systemd named in ``$JOURNAL_STREAM``
  (systemd.exec(5): compare device and inode, the variable leaks into children),
  else ``human``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

__all__ = [
    "FORMATS",
    "HumanFormatter",
    "JournalFormatter",
    "JsonFormatter",
    "choose_format",
    "parse_level",
    "setup_logging",
]

FORMATS = ("auto", "human", "journal", "json")

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# Libraries that are chatty at DEBUG (every HTTP header): held at INFO unless asked for.
_NOISY = ("botocore", "boto3", "s3transfer", "urllib3")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


def parse_level(level: str | int) -> int:
    """A logging level from a config name (``debug`` .. ``critical``, any case) or an int.
    Raises ValueError for anything else."""
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r}: expected one of {', '.join(_LEVELS)}"
        ) from None


def choose_format(fmt: str, journal_stream: str | None, stream_id: tuple[int, int] | None) -> str:
    """The concrete format for ``fmt``: ``auto`` becomes ``journal`` when ``journal_stream``
    (the ``$JOURNAL_STREAM`` value, ``"<dev>:<ino>"``) names ``stream_id`` (the output's
    ``(st_dev, st_ino)``), else ``human``. Raises ValueError for an unknown format."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    if journal_stream and stream_id is not None:
        dev, _, ino = journal_stream.partition(":")
        try:
            if (int(dev), int(ino)) == stream_id:
                return "journal"
        except ValueError:
            pass
    return "human"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS and not k.startswith("_")
    }


def _kv(extras: Mapping[str, Any]) -> str:
    return "".join(f" {k}={v}" for k, v in extras.items())


class HumanFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger>: <message> key=value...`` plus the traceback, if any."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record) + _kv(_extras(record))


class JournalFormatter(logging.Formatter):
    """``<N>logger: message key=value``; every following line (traceback) gets the same
    ``<N>`` and a two-space indent, so no part of an error is logged at info priority."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record) + _kv(_extras(record))

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prefix = f"<{_priority(record.levelno)}>"
        first, *rest = text.split("\n")
        return "\n".join([prefix + first, *(f"{prefix}  {line}" for line in rest)])


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line. Values that JSON cannot carry are
    ``str()``-ed; a traceback is one string under ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            obj["exc"] = record.exc_text
        if record.stack_info:
            obj["stack"] = self.formatStack(record.stack_info)
        for key, value in _extras(record).items():
            obj.setdefault(key, value)
        return json.dumps(obj, default=str, ensure_ascii=False)


def _priority(levelno: int) -> int:
    """sd-daemon(3) / syslog(3) priority for a logging level."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


_OURS = "_seeder_logs_handler"  # marks the handler setup_logging installed

_FORMATTERS: dict[str, type[logging.Formatter]] = {
    "human": HumanFormatter,
    "journal": JournalFormatter,
    "json": JsonFormatter,
}


def _stream_id(stream: IO[str]) -> tuple[int, int] | None:
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def setup_logging(
    level: str | int = "info",
    fmt: str = "auto",
    *,
    stream: IO[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Send all logging to ``stream`` (stderr by default) in format ``fmt`` at ``level``.

    Replaces the handler an earlier call installed (a reload switches cleanly) and
    leaves other handlers alone (pytest's capture, for one). Returns the concrete format
    chosen (``auto`` resolved against ``environ``, ``os.environ`` by default).
    Raises ValueError for an unknown level or format, before changing anything.
    """
    levelno = parse_level(level)
    out = sys.stderr if stream is None else stream
    env = os.environ if environ is None else environ
    chosen = choose_format(fmt, env.get("JOURNAL_STREAM"), _stream_id(out))
    handler = logging.StreamHandler(out)
    handler.setFormatter(_FORMATTERS[chosen]())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _OURS, False):
            root.removeHandler(old)
    setattr(handler, _OURS, True)
    root.addHandler(handler)
    root.setLevel(levelno)
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(levelno, logging.INFO))
    logging.captureWarnings(True)
    return chosen
