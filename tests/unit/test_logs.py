"""Log line formats (human, journald priorities, JSON) and how setup_logging picks one."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from seeder.ops.logs import choose_format, parse_level, setup_logging

OURS = "_seeder_logs_handler"
NOISY = ("botocore", "boto3", "s3transfer", "urllib3")


@pytest.fixture(autouse=True)
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    noisy = {name: logging.getLogger(name).level for name in NOISY}
    try:
        yield
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)
        for name, lvl in noisy.items():
            logging.getLogger(name).setLevel(lvl)
        logging.captureWarnings(False)


def emit(fmt: str, level: str = "debug", **kwargs: object) -> list[str]:
    """Log one record per level through setup_logging(fmt) and return the output lines."""
    out = io.StringIO()
    setup_logging(level, fmt, stream=out, environ={})
    log = logging.getLogger("seeder.test")
    log.debug("d %s", 1)
    log.info("i", extra={"request_id": "R1"})
    log.warning("w")
    log.error("e")
    log.critical("c")
    return out.getvalue().splitlines()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("debug", logging.DEBUG),
        ("INFO", logging.INFO),
        (" Warning ", logging.WARNING),
        ("warn", logging.WARNING),
        ("error", logging.ERROR),
        ("critical", logging.CRITICAL),
        (15, 15),
    ],
)
def test_parse_level(text: str | int, expected: int) -> None:
    assert parse_level(text) == expected


@pytest.mark.parametrize("text", ["", "verbose", "10", "trace", "infoo"])
def test_parse_level_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        parse_level(text)


@pytest.mark.parametrize(
    ("fmt", "journal_stream", "stream_id", "expected"),
    [
        ("human", "8:9", (8, 9), "human"),
        ("json", None, None, "json"),
        ("journal", None, None, "journal"),
        ("auto", "8:9", (8, 9), "journal"),
        ("auto", "8:9", (8, 10), "human"),  # inherited variable, our stderr is elsewhere
        ("auto", "8:9", None, "human"),
        ("auto", None, (8, 9), "human"),
        ("auto", "", (8, 9), "human"),
        ("auto", "garbage", (8, 9), "human"),
        ("auto", "8:x", (8, 9), "human"),
    ],
)
def test_choose_format(
    fmt: str, journal_stream: str | None, stream_id: tuple[int, int] | None, expected: str
) -> None:
    assert choose_format(fmt, journal_stream, stream_id) == expected


@pytest.mark.parametrize("fmt", ["", "text", "JSON", "syslog"])
def test_unknown_format_refused_before_changing_anything(fmt: str) -> None:
    before = list(logging.getLogger().handlers)
    with pytest.raises(ValueError, match="unknown log format"):
        setup_logging("info", fmt, stream=io.StringIO(), environ={})
    assert logging.getLogger().handlers == before


def test_human_lines() -> None:
    lines = emit("human")
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    expected = [
        "DEBUG seeder.test: d 1",
        "INFO seeder.test: i request_id=R1",
        "WARNING seeder.test: w",
        "ERROR seeder.test: e",
        "CRITICAL seeder.test: c",
    ]
    assert len(lines) == len(expected)
    for line, tail in zip(lines, expected, strict=True):
        assert re.fullmatch(stamp + " " + re.escape(tail), line), line


def test_journal_lines_carry_priorities_and_no_timestamp() -> None:
    assert emit("journal") == [
        "<7>seeder.test: d 1",
        "<6>seeder.test: i request_id=R1",
        "<4>seeder.test: w",
        "<3>seeder.test: e",
        "<2>seeder.test: c",
    ]


def test_level_filters() -> None:
    assert [line[:3] for line in emit("journal", level="warning")] == ["<4>", "<3>", "<2>"]


def test_json_lines() -> None:
    records = [json.loads(line) for line in emit("json")]
    assert [(r["level"], r["logger"], r["msg"]) for r in records] == [
        ("debug", "seeder.test", "d 1"),
        ("info", "seeder.test", "i"),
        ("warning", "seeder.test", "w"),
        ("error", "seeder.test", "e"),
        ("critical", "seeder.test", "c"),
    ]
    assert records[1]["request_id"] == "R1"
    assert "request_id" not in records[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", records[0]["ts"])
    assert set(records[0]) == {"ts", "level", "logger", "msg"}


def log_exception(fmt: str) -> str:
    out = io.StringIO()
    setup_logging("info", fmt, stream=out, environ={})
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        logging.getLogger("seeder.test").exception("generation failed", extra={"bucket": "b1"})
    return out.getvalue()


def test_json_exception_is_one_record() -> None:
    lines = log_exception("json").splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["msg"] == "generation failed"
    assert record["level"] == "error"
    assert record["bucket"] == "b1"
    assert record["exc"].startswith("Traceback (most recent call last):")
    assert record["exc"].rstrip().endswith("ZeroDivisionError: division by zero")


def test_journal_exception_keeps_priority_on_every_line() -> None:
    lines = log_exception("journal").splitlines()
    assert lines[0] == "<3>seeder.test: generation failed bucket=b1"
    assert len(lines) > 3
    assert all(line.startswith("<3>  ") for line in lines[1:]), lines
    assert lines[1] == "<3>  Traceback (most recent call last):"
    assert lines[-1] == "<3>  ZeroDivisionError: division by zero"


def test_json_extra_values_that_json_cannot_carry_become_strings() -> None:
    out = io.StringIO()
    setup_logging("info", "json", stream=out, environ={})
    logging.getLogger("x").info("m", extra={"path": Path("/a/b"), "n": 3, "raw": b"\xff"})
    record = json.loads(out.getvalue())
    assert (record["path"], record["n"], record["raw"]) == ("/a/b", 3, "b'\\xff'")


def test_auto_picks_journal_when_stderr_is_the_journal_stream(tmp_path: Path) -> None:
    path = tmp_path / "journal-stream"
    with path.open("w") as f:
        st = os.fstat(f.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert setup_logging("info", "auto", stream=f, environ=env) == "journal"
        logging.getLogger("seeder.test").warning("hello")
    assert path.read_text() == "<4>seeder.test: hello\n"


def test_auto_is_human_when_journal_stream_names_another_file(tmp_path: Path) -> None:
    with (tmp_path / "out").open("w") as f:
        env = {"JOURNAL_STREAM": "1:2"}
        assert setup_logging("info", "auto", stream=f, environ=env) == "human"
    assert setup_logging("info", "auto", stream=io.StringIO(), environ={}) == "human"


def test_setup_twice_replaces_its_own_handler_only() -> None:
    root = logging.getLogger()
    first, second = io.StringIO(), io.StringIO()
    setup_logging("info", "journal", stream=first, environ={})
    setup_logging("debug", "json", stream=second, environ={})
    assert sum(bool(getattr(h, OURS, False)) for h in root.handlers) == 1
    assert root.level == logging.DEBUG
    logging.getLogger("seeder.test").debug("after")
    assert first.getvalue() == ""
    assert json.loads(second.getvalue())["msg"] == "after"


def test_noisy_libraries_held_at_info() -> None:
    setup_logging("debug", "human", stream=io.StringIO(), environ={})
    assert logging.getLogger("botocore").level == logging.INFO
    setup_logging("error", "human", stream=io.StringIO(), environ={})
    assert logging.getLogger("botocore").level == logging.ERROR
