"""Which build of the tracker's hot modules this process runs: plain Python or compiled.

The modules in :data:`HOT` may be compiled from their own ``.py`` source (Cython, see
``setup.py``) by a non-editable ``pip install .``; Python then imports the extension
module in place of the ``.py`` next to it. Nothing else changes: the same source, the same
behaviour. :func:`describe` says which build is in use (``python -m tracker --version``,
``seeder --version``, the tracker's startup log line).

Stdlib only: ``setup.py`` reads :data:`HOT` from this file before the package is built.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util

__all__ = ["HOT", "TYPED", "compiled_modules", "describe"]

# The request path of the HTTP and UDP tracker (profiles in docs/benchmarks.md). Not
# tracker.bencode: off the compact path, shared with torrent generation, and recursive.
HOT: tuple[str, ...] = (
    "tracker.announce",
    "tracker.core",
    "tracker.peerchanges",
    "tracker.peermerge",
    "tracker.peerwindow",
    "tracker.responses",
    "tracker.swarm",
    "tracker.udp_protocol",
    "tracker.udpburst",
    "httpshell.epoll",
    "httpshell.parser",
    "httpshell.render",
)

# The classes a compiled build makes extension types with C-typed fields, from the
# ``.pxd`` file next to their module (``tracker/*.pxd``: Cython's augmenting declarations;
# the ``.py`` stays the source and the plain fallback).
TYPED: tuple[str, ...] = (
    "tracker.core.TrackerCore",
    "tracker.peerchanges.PeerChanges",
    "tracker.swarm.Peer",
    "tracker.swarm.Swarm",
    "tracker.swarm.Swarms",
    "tracker.udp_protocol.ConnectionIds",
)


def compiled_modules() -> list[str]:
    """The names in :data:`HOT` that import (or were imported) from an extension module."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    found = []
    for name in HOT:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin is not None and spec.origin.endswith(suffixes):
            found.append(name)
    return found


def describe() -> str:
    """One line: ``compiled (N of M hot modules)`` or ``plain Python``."""
    n = len(compiled_modules())
    if n == 0:
        return "plain Python"
    return f"compiled ({n} of {len(HOT)} hot modules)"
