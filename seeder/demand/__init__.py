"""Demand: which catalog torrents the libtorrent session holds (pure policy, no I/O).

`Activation` decides from demand events, the time and a cap; the seed layer applies its
answers to the session (seeder/seed/policy.py). A cluster plugs in through its
``eligible`` predicate (this node is among the torrent's replicas).
"""

from seeder.demand.activation import Activation, Change

__all__ = ["Activation", "Change"]
