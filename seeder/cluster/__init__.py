"""Cluster mode: N daemons sharing one Redis act as one service (issue 12).

```
Cluster.run                        one nursery, started by the daemon before its listeners
├── RedisLink.run                  the coredis client; health, degraded gauge, one log line
│                                  per state change                        (link.py)
├── SwarmSync.run                  tracker announces -> Redis every 100 ms; other nodes'
│                                  announces -> this tracker's swarms     (swarm_sync.py)
├── CatalogSync.run                torrents made by other nodes -> the local catalog
│                                                                          (shared_catalog.py)
└── Membership.run                 heartbeat, live nodes, which torrents this node seeds
                                                                           (membership.py)
```
Pure parts, no I/O: key names and record codecs (``keys``, ``records``), the Lua
scripts (``scripts``), rendezvous hashing (``rendezvous``). The rest talks to Redis only
through :class:`~seeder.cluster.link.RedisLink`, which turns every Redis failure into
:class:`~seeder.cluster.link.Unavailable` and marks the cluster degraded: each node then
serves from its local view (catalog cache, in-memory swarms) and catches up when Redis
returns.

Layering: this package sits under ``seeder.ops`` (the daemon wires it in) and may import
the layers below it; the tracker and the torrent service know it only through the small
protocols they define (``tracker.peerlog.PeerLog``, ``seeder.torrent.service.SharedStore``).
"""
