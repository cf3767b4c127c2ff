"""The optional compiled build of the tracker's hot modules (everything else: pyproject.toml).

A non-editable build (``pip install .``, ``pip wheel .``) compiles the modules named in
``tracker/build.py: HOT`` from their own ``.py`` source with Cython (pure-Python mode: the
``.py`` files are the source, no ``.pyx``) next to the plain modules. Where that cannot
happen (no C compiler, no Python headers, Cython missing) the wheel is built with the plain
modules only and one line says so; it is never an error unless asked for.

``S3TORRENT_COMPILE``: unset or ``auto`` (compile if possible), ``0`` (never), ``1``
(compile or fail). Editable installs (``pip install -e .``, what scripts/test.sh does)
never compile: a compiled module next to its ``.py`` would shadow every later edit.
"""

from __future__ import annotations

import os
import runpy
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
MODE = os.environ.get("S3TORRENT_COMPILE", "auto").strip().lower() or "auto"
# What the compiled build must keep: the plain modules' behaviour. Annotations are not
# read as C types (a `bytes` parameter given a bytearray works as in Python), and
# tracebacks keep their line numbers.
DIRECTIVES = {"language_level": 3, "annotation_typing": False, "binding": True}


def _note(message: str) -> None:
    print(f"s3torrent: {message}", file=sys.stderr, flush=True)


def _editable() -> bool:
    return any(cmd in sys.argv for cmd in ("editable_wheel", "develop"))


def _extensions() -> list:
    if MODE not in ("auto", "0", "1"):
        raise SystemExit(f"S3TORRENT_COMPILE={MODE!r}: must be 0, 1 or auto")
    if MODE == "0":
        return []
    if _editable():
        if MODE == "1":
            _note("editable install: S3TORRENT_COMPILE=1 ignored, plain Python modules")
        return []
    if not any(cmd.startswith(("bdist", "build", "install")) for cmd in sys.argv[1:]):
        return []  # egg_info, sdist, --version...: nothing to compile
    try:
        from Cython.Build import cythonize
    except ImportError:
        if MODE == "1":
            raise SystemExit("S3TORRENT_COMPILE=1 but Cython is not installed") from None
        _note("Cython not installed: plain Python modules (the tracker runs the same)")
        return []
    sources = [name.replace(".", "/") + ".py" for name in _hot()]
    try:
        return cythonize(
            sources, compiler_directives=DIRECTIVES, build_dir="build/cython", quiet=True
        )
    except Exception as exc:
        if MODE == "1":
            raise
        _note(f"Cython failed ({exc}): plain Python modules (the tracker runs the same)")
        return []


def _hot() -> list[str]:
    return list(runpy.run_path(str(HERE / "tracker" / "build.py"))["HOT"])


class BuildPy(build_py):
    """build_py that drops compiled hot modules a previous build left in the build
    directory: a wheel built without them must not ship stale ones."""

    def run(self) -> None:
        super().run()
        for name in _hot():
            stem = Path(self.build_lib, *name.split("."))
            for suffix in EXTENSION_SUFFIXES:
                stem.with_name(stem.name + suffix).unlink(missing_ok=True)


class OptionalBuildExt(build_ext):
    """build_ext that falls back to the plain modules, all of them, when an extension
    cannot be built (unless ``S3TORRENT_COMPILE=1``)."""

    failed: str | None = None

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:  # one compiler per core: ~10 modules
            self.parallel = True

    def build_extension(self, ext) -> None:
        if self.failed is not None:
            return
        try:
            super().build_extension(ext)
        except Exception as exc:
            if MODE == "1":
                raise
            text = str(exc).strip()
            self.failed = text.splitlines()[0] if text else type(exc).__name__

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            if MODE == "1":
                raise
            self.failed = self.failed or str(exc).strip() or type(exc).__name__
        if self.failed is None:
            return
        for ext in self.extensions:  # nothing half-built goes into the wheel
            Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
        _note(f"compiled build not possible ({self.failed}): plain Python modules "
              "(the tracker runs the same, slower)")


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPy})
