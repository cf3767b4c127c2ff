"""The ``seeder`` command: ``serve``, ``check-config``, ``make-torrent``, ``magnet``,
``--version``.

Every failure is one line on stderr (``seeder: error: ...``, or one line per config
problem) and a non-zero exit status, never a traceback: 1 for errors, 2 for usage errors,
130 for Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from seeder import __version__
from seeder.config import (
    LOG_FORMATS,
    LOG_LEVELS,
    Config,
    ConfigError,
    check,
    ensure_default_bucket,
    load,
    parse_size,
)
from tracker.build import describe as tracker_build

__all__ = ["build_parser", "main"]

PROG = "seeder"
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (the default prints the usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fail(message: str) -> int:
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)
    return EXIT_ERROR


def _piece_size(text: str) -> int:
    try:
        n = parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if n != 0 and (n < 16 * 1024 or n & (n - 1)):
        raise argparse.ArgumentTypeError(
            f"{text!r}: must be 0 (automatic) or a power of two of at least 16KiB"
        )
    return n


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    p = _Parser(
        prog=PROG,
        description="s3torrent: GetObjectTorrent for S3 buckets and local directories, "
        "with a tracker and a libtorrent seeder.",
    )
    p.add_argument("--version", action="version",
                   version=f"{PROG} {__version__} (tracker: {tracker_build()})")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    serve = sub.add_parser(
        "serve",
        help="run the daemon",
        description="Run the daemon in the foreground. Without --config: one public local "
        "bucket 'data' at ./data (created, with hello.txt, if empty) and state in ./state. "
        "SEEDER_<SECTION>_<KEY> environment variables override the file (docs/config.md).",
    )
    serve.add_argument("--config", metavar="PATH", help="TOML configuration file")
    serve.add_argument("--log-format", choices=list(LOG_FORMATS),
                       help="override [log] format")
    serve.add_argument("--log-level", choices=list(LOG_LEVELS), help="override [log] level")

    chk = sub.add_parser(
        "check-config",
        help="validate a configuration file",
        description="Load PATH with the current SEEDER_* environment, as serve would. Prints "
        "'PATH: ok' and exits 0, or one line per problem on stderr and exits 1.",
    )
    chk.add_argument("path", metavar="PATH", help="TOML configuration file")

    mk = sub.add_parser(
        "make-torrent",
        help="write the .torrent for a local file or an S3 object",
        description="Hash a local file or s3://BUCKET/KEY and write its .torrent, exactly as "
        "the daemon would generate it. S3 credentials come from the usual AWS chain.",
    )
    mk.add_argument("source", metavar="SOURCE", help="a local file path or s3://BUCKET/KEY")
    mk.add_argument("-o", "--output", metavar="FILE",
                    help="where to write (default: NAME.torrent here; '-' for stdout)")
    mk.add_argument("--hybrid", action="store_true", help="a v1+v2 hybrid torrent (BEP 52)")
    mk.add_argument("--piece-size", type=_piece_size, default=0, metavar="N",
                    help="piece length in bytes or with a unit (256KiB); default: automatic")
    mk.add_argument("--announce", metavar="URL", help="tracker announce URL")
    mk.add_argument("--web-seed", metavar="URL",
                    help="BEP 19 web seed URL (default for s3:// sources: the object's URL, "
                         "with versionId= of the version hashed in a versioned bucket)")
    mk.add_argument("--endpoint-url", metavar="URL", help="S3 endpoint for s3:// sources")

    mag = sub.add_parser(
        "magnet",
        help="print the magnet link of an object's torrent",
        description="Print the magnet link of BUCKET/KEY's torrent from the catalog in the "
        "state dir of --config (the daemon may be running; the catalog is only read). An "
        "object without a torrent in the catalog is an error.",
    )
    mag.add_argument("object", metavar="BUCKET/KEY", help="the object, e.g. data/hello.txt")
    mag.add_argument("--config", metavar="PATH", help="TOML configuration file (its [state] dir)")
    mag.add_argument("--version-id", metavar="ID",
                     help="the torrent pinned to this object version (?torrent&versionId=)")
    return p


def _serve(args: argparse.Namespace) -> int:
    config: Config = load(args.config, os.environ)
    log = config.log
    if args.log_format or args.log_level:
        log = dataclasses.replace(
            log, format=args.log_format or log.format, level=args.log_level or log.level
        )
        config = dataclasses.replace(config, log=log)
    from seeder.ops.logs import setup_logging

    setup_logging(log.level, log.format)
    if args.config is None:
        sample = ensure_default_bucket(config)
        if sample is not None:
            import logging

            logging.getLogger("seeder.ops.cli").info("created a sample object %s", sample)
    from seeder.ops import daemon

    # An absolute path: SIGHUP re-reads the file whatever the working directory is by then.
    config_path = os.path.abspath(args.config) if args.config is not None else None
    try:
        return int(daemon.run(config, config_path=config_path) or 0)
    except daemon.DaemonError as e:  # already worded for the operator
        return _fail(str(e))


def _check_config(args: argparse.Namespace) -> int:
    problems = check(args.path, os.environ)
    for line in problems:
        print(_one_line(line), file=sys.stderr)
    if problems:
        return EXIT_ERROR
    print(f"{args.path}: ok")
    return 0


def _output_name(source: str) -> str:
    name = source.rstrip("/").rsplit("/", 1)[-1]
    return f"{name or 'torrent'}.torrent"


def _make_torrent(args: argparse.Namespace) -> int:
    from seeder.torrent.maketorrent import make_torrent

    data = make_torrent(
        args.source,
        hybrid=args.hybrid,
        piece_length=args.piece_size,
        announce=args.announce,
        web_seed=args.web_seed,
        endpoint_url=args.endpoint_url,
        progress=sys.stderr.isatty(),
    )
    if args.output == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return 0
    out = Path(args.output or _output_name(args.source))
    # Write beside, then rename: a failed run never leaves half a torrent under the name.
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    except OSError as e:  # name the file the user asked for, not the temporary one
        raise OSError(e.errno, e.strerror, str(out)) from None
    finally:
        tmp.unlink(missing_ok=True)
    print(out, file=sys.stderr)
    return 0


def _magnet(args: argparse.Namespace) -> int:
    from seeder.torrent.catalog import CatalogError, open_readonly
    from seeder.torrent.magnet import entry_magnet

    bucket, sep, key = args.object.partition("/")
    if not bucket or not sep or not key:
        return _fail(f"{args.object!r}: expected BUCKET/KEY")
    config: Config = load(args.config, os.environ)
    path = Path(config.state.dir) / "catalog.sqlite3"
    try:
        with open_readonly(path) as catalog:
            entry = catalog.get(bucket, key, args.version_id)
    except CatalogError as e:
        return _fail(str(e))
    if entry is None:
        pinned = f" version {args.version_id}" if args.version_id else ""
        return _fail(f"no torrent for {bucket}/{key}{pinned} in {path} (torrents are made by "
                     "the scanner or on the first GetObjectTorrent request)")
    print(entry_magnet(config, entry))
    return 0


_COMMANDS = {"serve": _serve, "check-config": _check_config, "make-torrent": _make_torrent,
             "magnet": _magnet}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Never raises except SystemExit from argparse (usage errors: 2; --help/--version: 0).
    """
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except ConfigError as e:
        for line in e.problems:
            print(_one_line(line), file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        return _fail(f"{where}{e.strerror or e}")
    except Exception as e:  # the last line of defence: one line, no traceback
        return _fail(f"{e}" if isinstance(e, ValueError) else f"{type(e).__name__}: {e}")
