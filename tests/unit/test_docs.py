"""The user documentation against the code: README's metrics table equals the registries,
the set-up commands CI relies on are still there, and relative links point at files.

The metrics side is read from the code itself: ``SeederMetrics`` and ``TrackerMetrics`` on a
fresh ``CollectorRegistry``, names and types from ``registry.collect()``, label names
checked through the public ``labels()`` call (wrong names raise ValueError) and the samples it
produces. A metric added to the code without a README row fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from seeder.cluster.link import ClusterMetrics
from seeder.metrics import SeederMetrics
from tracker.metrics import TrackerMetrics

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = [README, ROOT / "docs" / "operations.md"]

# What the exposition format calls a family, by its type (counters gain _total, info _info).
_SUFFIX = {"counter": "_total", "info": "_info"}
# Labels the client library adds to samples, not ones the code declares.
_SAMPLE_ONLY_LABELS = {"le", "quantile"}
_ROW = re.compile(r"^\| `(?P<name>[a-z_:][a-z0-9_:]*)` \| (?P<type>[a-z]+) \| (?P<labels>[^|]*) \|")


def readme_section(title: str) -> str:
    """The text of the README's ``## title`` section, up to the next ``## ``."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def parse_metrics_table(section: str) -> dict[str, tuple[str, frozenset[str]]]:
    """Rows ``| `name` | type | `label`, `label` | meaning |`` -> {name: (type, labels)}."""
    rows: dict[str, tuple[str, frozenset[str]]] = {}
    for line in section.splitlines():
        m = _ROW.match(line)
        if m is None:
            continue
        assert m["name"] not in rows, f"{m['name']} is listed twice in the README"
        labels = frozenset(re.findall(r"`([a-zA-Z_][a-zA-Z0-9_]*)`", m["labels"]))
        rows[m["name"]] = (m["type"], labels)
    return rows


def exposed_name(family_name: str, family_type: str) -> str:
    return family_name + _SUFFIX.get(family_type, "")


Documented = dict[str, tuple[str, frozenset[str]]]
Found = dict[str, tuple[str, frozenset[str] | None]]


def code_metrics(doc_labels: dict[str, frozenset[str]]) -> tuple[Found, list[str]]:
    """{exposed name: (type, label names)} of a fresh daemon registry, and the problems
    met giving children the README's label names.

    A labelled metric has no samples until a child exists, so each one is given a child
    with the label names the README claims; ``labels()`` refuses names the code did not
    declare. A metric whose labels the README leaves out then shows no samples at all: its
    label names are reported as None.
    """
    registry = CollectorRegistry()
    seeder, tracker = SeederMetrics(registry), TrackerMetrics(registry)
    cluster = ClusterMetrics(registry)
    problems: list[str] = []
    for obj in [*vars(seeder).values(), *vars(tracker).values(), *vars(cluster).values()]:
        if not (hasattr(obj, "labels") and hasattr(obj, "describe")):
            continue  # the registry itself, ProcessCollector, private state
        (family,) = obj.describe()
        name = exposed_name(family.name, family.type)
        wanted = doc_labels.get(name, frozenset())
        if family.type == "info" or not wanted:
            continue  # info's "labels" are its values; unlabelled metrics sample as they are
        try:
            obj.labels(**dict.fromkeys(wanted, "x"))
        except ValueError as exc:
            problems.append(f"{name}: README labels {sorted(wanted)}: {exc}")

    found: dict[str, tuple[str, frozenset[str] | None]] = {}
    for family in registry.collect():
        labels: set[str] = set()
        for sample in family.samples:
            labels.update(sample.labels)
        # No samples: the code declares labels and the README names none.
        found[exposed_name(family.name, family.type)] = (
            family.type,
            frozenset(labels - _SAMPLE_ONLY_LABELS) if family.samples else None,
        )
    return found, problems


@pytest.fixture(scope="module")
def documented() -> Documented:
    return parse_metrics_table(readme_section("Metrics"))


@pytest.fixture(scope="module")
def measured(documented: Documented) -> tuple[Found, list[str]]:
    return code_metrics({name: labels for name, (_, labels) in documented.items()})


@pytest.fixture(scope="module")
def actual(measured: tuple[Found, list[str]]) -> Found:
    return measured[0]


def test_every_metric_of_the_code_is_in_the_readme(documented: Documented, actual: Found) -> None:
    missing = sorted(set(actual) - set(documented))
    assert not missing, f"metrics missing from README.md's Metrics table: {missing}"


def test_the_readme_lists_no_metric_the_code_lacks(documented: Documented, actual: Found) -> None:
    stale = sorted(set(documented) - set(actual))
    if not Path("/proc/self/stat").exists():  # ProcessCollector reports nothing off Linux
        stale = [n for n in stale if not n.startswith("process_")]
    assert not stale, f"README.md lists metrics the code does not define: {stale}"


def test_types_match(documented: Documented, actual: Found) -> None:
    wrong = {
        name: (doc_type, actual[name][0])
        for name, (doc_type, _) in documented.items()
        if name in actual and actual[name][0] != doc_type
    }
    assert not wrong, f"README type vs code type: {wrong}"


def test_labels_match(
    documented: Documented, actual: Found, measured: tuple[Found, list[str]]
) -> None:
    problems = measured[1]
    assert not problems, "\n".join(problems)
    wrong = {
        name: (sorted(doc_labels), "labels not in the README" if got is None else sorted(got))
        for name, (_, doc_labels) in documented.items()
        if name in actual and (got := actual[name][1]) != doc_labels
    }
    assert not wrong, f"README labels vs labels in the samples: {wrong}"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("| `a_total` | counter | `x`, `y` | m |", {"a_total": ("counter", {"x", "y"})}),
        ("| `g` | gauge | — | m |", {"g": ("gauge", set())}),
        ("| metric | type | labels | meaning |", {}),
        ("|---|---|---|---|", {}),
        ("| `not a metric` | gauge | — | m |", {}),
    ],
)
def test_table_parser(row: str, expected: dict[str, tuple[str, set[str]]]) -> None:
    assert parse_metrics_table(row) == {k: (t, frozenset(ls)) for k, (t, ls) in expected.items()}


def test_label_check_sees_labels_the_readme_leaves_out() -> None:
    assert code_metrics({})[0]["tracker_peers"] == ("gauge", None)
    assert code_metrics({"tracker_peers": frozenset({"role"})})[0]["tracker_peers"] == (
        "gauge",
        frozenset({"role"}),
    )


@pytest.mark.parametrize(
    ("doc_labels", "complaint"),
    [
        ({"tracker_peers": frozenset({"kind"})}, "tracker_peers: README labels ['kind']"),
        ({"tracker_peers": frozenset({"role", "x"})}, "tracker_peers: README labels ['role', 'x']"),
        ({"seeder_hashed_bytes_total": frozenset({"bucket"})}, "seeder_hashed_bytes_total"),
    ],
)
def test_label_check_refuses_wrong_labels(
    doc_labels: dict[str, frozenset[str]], complaint: str
) -> None:
    (problem,) = code_metrics(doc_labels)[1]
    assert problem.startswith(complaint)


def test_set_up_commands_are_unchanged() -> None:
    # CI runs the second; the first is the promise of the project's first paragraph.
    section = readme_section("Set up")
    assert "pip install . && seeder serve" in section
    assert "bash scripts/test.sh" in section


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        if not (doc.parent / target).exists():
            broken.append(target)
    assert not broken, f"{doc.name}: links to missing files: {broken}"


def test_readme_anchors_exist() -> None:
    text = README.read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")
        for title in re.findall(r"^#+ (.+)$", text, re.M)
    }
    wanted = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert wanted <= anchors, f"README links to missing sections: {sorted(wanted - anchors)}"
