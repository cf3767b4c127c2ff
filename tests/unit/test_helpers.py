"""The suite's own helpers (tests/helpers.py) that every daemon test stands on."""

from __future__ import annotations

from tests.helpers import free_port


def test_free_port_never_hands_a_port_out_twice() -> None:
    """A test that picks several ports before starting anything (a cluster: four a node)
    must get distinct ones; 500 draws at random from ~12k ports would repeat one nearly
    always (p ~ 1 - e^-9.8) if the helper only checked that a port is free now."""
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
