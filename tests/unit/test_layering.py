"""The import layering of the tree (docs/design.md, "Layers"), checked from the source.

Each room (a top package, or a folder of ``seeder/``) may import only the rooms its row
names: imports point down, never up, never in a circle. The pure core modules import no I/O
library at all. A new room gets a row here when it is added; a row that has to grow an
upward arrow means a definition sits in the wrong room.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("httpshell", "tracker", "seeder")

# room -> the rooms it may import (besides itself). "seeder" is the package's own
# __init__ (the version string), which every room may read.
ALLOWED: dict[str, frozenset[str]] = {
    "httpshell": frozenset(),
    "tracker": frozenset({"httpshell"}),
    "seeder": frozenset(),
    "seeder.config": frozenset({"seeder"}),
    "seeder.metrics": frozenset({"seeder", "httpshell"}),
    "seeder.store": frozenset({"seeder", "seeder.config", "seeder.metrics"}),
    "seeder.torrent": frozenset(
        {"seeder", "seeder.config", "seeder.metrics", "seeder.store", "tracker", "httpshell"}
    ),
    "seeder.demand": frozenset({"seeder"}),
    "seeder.seed": frozenset(
        {"seeder", "seeder.config", "seeder.metrics", "seeder.store", "seeder.torrent",
         "seeder.demand", "tracker", "httpshell"}
    ),
    "seeder.s3api": frozenset(
        {"seeder", "seeder.config", "seeder.metrics", "seeder.store", "seeder.torrent",
         "seeder.seed", "tracker", "httpshell"}
    ),
    "seeder.events": frozenset(
        {"seeder", "seeder.config", "seeder.metrics", "seeder.store", "seeder.torrent",
         "httpshell"}
    ),
    "seeder.cluster": frozenset(
        {"seeder", "seeder.config", "seeder.metrics", "seeder.store", "seeder.torrent",
         "seeder.seed", "tracker", "httpshell"}
    ),
    # The status page reads the catalog and the config; the daemon wires the rest
    # (tracker, session, cluster) in through seeder.status.sources.
    "seeder.status": frozenset(
        {"seeder", "seeder.config", "seeder.metrics", "seeder.torrent", "httpshell"}
    ),
    "seeder.ops": frozenset(
        {"seeder", "seeder.config", "seeder.metrics", "seeder.store", "seeder.torrent",
         "seeder.seed", "seeder.s3api", "seeder.events", "seeder.cluster", "seeder.demand",
         "seeder.status", "tracker", "httpshell"}
    ),
    "seeder.__main__": frozenset({"seeder.ops"}),
}

# Sans-I/O modules: bytes and dataclasses in, bytes and dataclasses out.
PURE = (
    "tracker.bencode",
    "tracker.announce",
    "tracker.responses",
    "tracker.udp_protocol",
    "tracker.swarm",
    "tracker.peerchanges",
    "tracker.peermerge",
    "tracker.peerwindow",
    "tracker.clientaddr",
    "seeder.torrent.entry",
    "seeder.torrent.metainfo",
    "seeder.torrent.validation",
    "seeder.torrent.merkle",
    "seeder.torrent.links",
    "seeder.torrent.policy",
    "seeder.store.s3_urls",
    "seeder.torrent.magnet",
    "seeder.torrent.batchplan",
    "seeder.status.chart",
    "seeder.status.history",
    "seeder.status.paging",
    "seeder.s3api.sigv4",
    "seeder.s3api.sigv2",
    "seeder.s3api.capability",
    "seeder.s3api.auth",
    "seeder.s3api.listing",
    "seeder.s3api.results",
    "seeder.store.paging",
    "seeder.s3api.errors",
    "seeder.s3api.ranges",
    "seeder.s3api.conditional",
    "seeder.s3api.request",
    "seeder.demand.activation",
    "seeder.seed.swarm_budget",
    "seeder.seed.webseed_gate",
    "seeder.seed.upload_share",
    "seeder.seed.upload_slots",
    "seeder.events.payload",
    "seeder.events.auth",
    "seeder.events.ordering",
    "seeder.events.pending",
    "seeder.cluster.keys",
    "seeder.cluster.records",
    "seeder.cluster.scripts",
    "seeder.cluster.rendezvous",
    "seeder.store.breaker",
)
IO_LIBRARIES = ("trio", "boto3", "botocore", "libtorrent", "prometheus_client", "sqlite3",
                "coredis", "redis")


def room_of(module: str) -> str:
    """The room a dotted module name belongs to: ``httpshell.x`` -> ``httpshell``,
    ``seeder.s3api.sigv4`` -> ``seeder.s3api``, ``seeder.metrics`` -> ``seeder.metrics``."""
    parts = module.split(".")
    if parts[0] != "seeder" or len(parts) == 1:
        return parts[0]
    return f"seeder.{parts[1]}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module of ours that ``path`` imports (absolute imports; the tree uses no
    relative ones, which this test also refuses)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (use the absolute name)"
            if node.module and node.module.split(".")[0] in OURS:
                out.add(node.module)
                # "from seeder import config" names a room, not just the package
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    if (ROOT / sub.replace(".", "/")).is_dir() or (
                        ROOT / (sub.replace(".", "/") + ".py")
                    ).is_file():
                        out.add(sub)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] in OURS)
    return out


def source_files() -> list[Path]:
    return sorted(p for top in OURS for p in (ROOT / top).rglob("*.py"))


def arrows() -> dict[tuple[str, str], list[str]]:
    """(from room, to room) -> the modules that make the arrow."""
    out: dict[tuple[str, str], list[str]] = {}
    for path in source_files():
        mod = module_name(path)
        src = room_of(mod)
        for target in imports_of(path):
            dst = room_of(target)
            if dst != src:
                out.setdefault((src, dst), []).append(f"{mod} imports {target}")
    return out


def test_every_room_has_a_row():
    rooms = {room_of(module_name(p)) for p in source_files()}
    missing = sorted(rooms - ALLOWED.keys())
    assert not missing, f"rooms without a row in ALLOWED: {missing}"


def test_imports_point_down():
    bad = [
        why
        for (src, dst), whys in sorted(arrows().items())
        if dst not in ALLOWED.get(src, frozenset())
        for why in whys
    ]
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_table_has_no_circle():
    # Depth-first search over ALLOWED: a grey node met again is a circle.
    state: dict[str, str] = {}

    def visit(room: str, path: list[str]) -> None:
        state[room] = "grey"
        for nxt in sorted(ALLOWED.get(room, ())):
            if state.get(nxt) == "grey":
                raise AssertionError("circle: " + " -> ".join([*path, room, nxt]))
            if nxt not in state:
                visit(nxt, [*path, room])
        state[room] = "black"

    for room in sorted(ALLOWED):
        if room not in state:
            visit(room, [])


def test_tracker_and_httpshell_never_import_seeder():
    for (src, dst), whys in arrows().items():
        if src in ("tracker", "httpshell"):
            assert not dst.startswith("seeder"), whys


def test_room_of():
    assert room_of("httpshell.parser") == "httpshell"
    assert room_of("seeder.s3api.sigv4") == "seeder.s3api"
    assert room_of("seeder.metrics") == "seeder.metrics"
    assert room_of("seeder") == "seeder"


def test_a_violation_is_seen(tmp_path, monkeypatch):
    # The check itself can fail: an upward import in a scratch tree is reported.
    fake = tmp_path / "httpshell"
    fake.mkdir()
    (fake / "__init__.py").write_text("from seeder.ops import daemon\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(AssertionError, match=r"httpshell imports seeder\.ops"):
        test_imports_point_down()


@pytest.mark.parametrize("module", PURE)
def test_pure_core_imports_no_io_library(module):
    code = (
        f"import sys, {module}\n"
        f"bad = sorted(set({IO_LIBRARIES!r}) & set(sys.modules))\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
