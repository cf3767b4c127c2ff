"""The packages' public surface: every name in ``__all__`` is there, and callers import from
the package (``from httpshell import Request``), not from the module that defines it."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["httpshell", "seeder.config"])
def test_all_names_resolve(package: str) -> None:
    module = importlib.import_module(package)
    assert len(set(module.__all__)) == len(module.__all__)
    assert [n for n in module.__all__ if not hasattr(module, n)] == []


def test_config_load_is_the_function() -> None:
    # seeder.config.load is both a module and the function the package exports; the package
    # attribute must be the function, so `from seeder.config import load` loads a config.
    from seeder.config import ConfigError, load

    assert callable(load) and not isinstance(load, type(importlib))
    assert issubclass(ConfigError, Exception)
