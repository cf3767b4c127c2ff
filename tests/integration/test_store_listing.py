"""ListObjects pages of a local directory (``localwalk`` + ``paging``) against a brute-force
reference over the same keys, and whole listings paged through every way S3 clients do."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from seeder.store import ObjectInfo
from seeder.store.localwalk import SortedDirs, regular_info, walk_from
from seeder.store.paging import ListPage, common_prefix, group, skips_under

KEYS = sorted({
    "a.txt", "a/b/c", "a/b/d.txt", "a/b0", "a0", "a-b/x", "b/x/y/z", "b/x/y2",
    "b/x0", "é/ü.txt", "z z/+plus", "z z/%20", "~tilde", "dir/sub/only/deep.bin",
    "m/1", "m/2", "m/3", "m/4", "m/5", "m/6",
})


def reference(keys: list[str], prefix: str, delimiter: str, after: str,
              limit: int) -> tuple[list[str], list[str], bool]:
    skip = skips_under(after, prefix, delimiter)
    entries: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for k in sorted(keys):
        if not k.startswith(prefix) or k <= after or (skip and k.startswith(after)):
            continue
        cp = common_prefix(k, prefix, delimiter)
        if cp is None:
            entries.append((k, False))
        elif cp not in seen and not (skip and cp == after):
            seen.add(cp)
            entries.append((cp, True))
    page = entries[:limit]
    return ([k for k, p in page if not p], [k for k, p in page if p], len(entries) > limit)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bucket")
    for key in KEYS:
        path = root.joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.encode())
    (root / "emptydir" / "deeper").mkdir(parents=True)  # no object: never a prefix
    (root / "outside").symlink_to("/etc/hostname")  # leaves the root: not an object
    return root


def local_page(root: Path, prefix: str, delimiter: str, after: str, limit: int) -> ListPage:
    real = os.path.realpath(root)

    def make(key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo("b", key, st.st_size, "e", st.st_mtime)

    walk = walk_from(real, prefix, delimiter, after, SortedDirs(), regular_info(real, make))
    return group(walk, prefix, delimiter, after, limit)


def test_keys_on_disk(tree: Path):
    page = local_page(tree, "", "", "", 1000)
    on_disk = [o.key for o in page.objects]
    assert on_disk == sorted(on_disk)
    assert "outside" not in on_disk and "é/ü.txt" in on_disk


def test_against_reference(tree: Path):
    keys = [o.key for o in local_page(tree, "", "", "", 1000).objects]
    rng = random.Random(7)
    prefixes = ["", "a", "a/", "a/b", "b/x", "m/", "z", "é/", "nothing", "a/b/", "dir/s"]
    afters = ["", "a", "a/", "a/b", "a/b/", "b/", "b/x/", "m/3", "zz", "dir/sub/"]
    for _ in range(600):
        prefix, after = rng.choice(prefixes), rng.choice(afters)
        delimiter = rng.choice(["", "/", "/", "b", "x/"])
        limit = rng.choice([0, 1, 2, 3, 1000])
        page = local_page(tree, prefix, delimiter, after, limit)
        want = reference(keys, prefix, delimiter, after, limit)
        got = ([o.key for o in page.objects], list(page.prefixes), page.truncated)
        assert got == want, (prefix, delimiter, after, limit)


@pytest.mark.parametrize("delimiter", ["", "/"])
@pytest.mark.parametrize("size", [1, 2, 5])
def test_paging_through(tree: Path, delimiter: str, size: int):
    keys = [o.key for o in local_page(tree, "", "", "", 1000).objects]
    whole = reference(keys, "", delimiter, "", 1000)
    objects: list[str] = []
    prefixes: list[str] = []
    after = ""
    for _ in range(100):
        page = local_page(tree, "", delimiter, after, size)
        objects += [o.key for o in page.objects]
        prefixes += page.prefixes
        if not page.truncated:
            break
        assert page.last is not None
        after = page.last
    assert (objects, prefixes) == (whole[0], whole[1])
