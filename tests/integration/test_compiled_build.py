"""The optional compiled build (setup.py, tracker/build.py): ``pip install .`` of a copy of
this tree compiles the hot modules with Cython, and the tracker's unit and conformance tests
pass against them; without a C compiler the same install gives the plain modules.

Real pip, real Cython and gcc (``CFLAGS=-O0``: these tests check behaviour, not speed), into
temporary directories: nothing lands in the source tree. ~30-40 s in all (most of it pip
setting up its build environment and gcc).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "httpshell", "seeder", "tracker")
# The tracker's tests over the compiled modules: parsers, swarm (and the cluster's merge of
# other nodes' batches), core, renderers, the HTTP shell's whole-request path, and the
# conformance tests over real sockets (HTTP and UDP), and the UDP burst's C socket calls.
TESTS = (
    "tests/unit/test_tracker_announce.py",
    "tests/unit/test_tracker_core.py",
    "tests/unit/test_tracker_peerwindow.py",
    "tests/unit/test_tracker_responses.py",
    "tests/unit/test_tracker_swarm.py",
    "tests/unit/test_tracker_merge.py",
    "tests/unit/test_tracker_peerchanges.py",
    "tests/unit/test_cluster_parts.py",
    "tests/unit/test_tracker_udp.py",
    "tests/unit/test_http_whole.py",
    "tests/integration/test_tracker_service.py",
    "tests/integration/test_udpburst.py",
    "tests/integration/test_httploop.py",
)
# pip's own failures to fetch the build requirements (setuptools, Cython): no registry.
_OFFLINE = ("No matching distribution found", "Could not find a version that satisfies")


def _pip_install(tmp: Path, site: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``pip install --target site`` of a copy of this tree's package sources."""
    src = tmp / "src"
    if not src.exists():
        src.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.c")
        for name in SOURCES:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, src / name, ignore=ignore)
            else:
                shutil.copy2(ROOT / name, src / name)
    env = {**os.environ, "CFLAGS": "-O0", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **env}
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-v", "--no-deps", "--target", str(site),
         str(src)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp,
    )  # fmt: skip
    if r.returncode != 0 and any(s in r.stdout + r.stderr for s in _OFFLINE):
        pytest.skip("pip cannot fetch the build requirements (setuptools, Cython): no registry")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _build(site: Path) -> str:
    """``tracker.build.describe()`` as the installed copy answers it (run outside the tree,
    so the source's plain modules are not on the path)."""
    r = subprocess.run(
        [sys.executable, "-c", "from tracker.build import describe; print(describe())"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(site)},
        cwd=site, timeout=60, check=True,
    )  # fmt: skip
    return r.stdout.strip()


def _compiler() -> str | None:
    """Why the compiled build cannot be made here, or None."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc})"
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        return "no Python.h (python3-dev)"
    return None


def test_compiled_build_passes_the_tracker_tests(tmp_path: Path) -> None:
    if (why := _compiler()) is not None:
        pytest.skip(f"compiled build not testable: {why}")
    site = tmp_path / "site"
    _pip_install(tmp_path, site, S3TORRENT_COMPILE="1")
    src = tmp_path / "src"
    assert not [*(src / "tracker").rglob("*.so"), *(src / "httpshell").rglob("*.so")]
    from tracker.build import HOT

    assert _build(site) == f"compiled ({len(HOT)} of {len(HOT)} hot modules)"
    # The installed copy first on the path (the tests import `tests.helpers` from ROOT),
    # and the check that the compiled modules are the ones the tests import, with their
    # typed classes (tracker/*.pxd): extension types (static, where a class statement
    # makes a heap type) whose fields are C-typed (a str is no Py_ssize_t).
    check = (
        "import sys, importlib, pytest\n"
        "from tracker.build import HOT, TYPED\n"
        "for name in HOT:\n"
        "    f = importlib.import_module(name).__file__\n"
        "    assert f.startswith(sys.argv[1]) and f.endswith('.so'), f\n"
        "for path in TYPED:\n"
        "    module, _, name = path.rpartition('.')\n"
        "    cls = getattr(importlib.import_module(module), name)\n"
        "    assert not cls.__flags__ & (1 << 9), path  # Py_TPFLAGS_HEAPTYPE\n"
        "from tracker.swarm import Peer\n"
        "try:\n"
        "    Peer(b'p' * 20, None, 0, 0).slot = 'x'\n"
        "    sys.exit('Peer.slot took a str: not the typed build')\n"
        "except TypeError:\n"
        "    pass\n"
        "sys.exit(pytest.main(sys.argv[2:]))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", check, str(site), "-q", "-p", "no:cacheprovider",
         "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT),
         *(str(ROOT / t) for t in TESTS)],
        capture_output=True, text=True, cwd=site, timeout=300,
        env={**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"},
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and " failed" not in r.stdout


def test_without_a_compiler_the_plain_modules_install(tmp_path: Path) -> None:
    site = tmp_path / "site"
    r = _pip_install(tmp_path, site, CC=str(tmp_path / "no-such-cc"))
    assert "s3torrent: compiled build not possible" in r.stdout + r.stderr
    assert not list(site.rglob("*.so"))
    assert _build(site) == "plain Python"
