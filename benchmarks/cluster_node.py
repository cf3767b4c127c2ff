"""One tracker node for benchmarks/bench_cluster.py: the daemon's tracker stack (TrackerCore
with its metrics, serve_tracker on trio with the monotonic clock), standalone or, with
``--redis``, as a cluster node (seeder.cluster.node.ClusterNode: swarm sync, membership,
shared UDP key), serving the benchmark's synthetic torrents.

    python benchmarks/cluster_node.py --port PORT --torrents N [--redis URL --node-id ID]
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
from pathlib import Path

import trio
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_tracker as bt

from seeder.cluster.node import ClusterNode
from tracker.clock import MonotonicClock
from tracker.core import TrackerCore
from tracker.metrics import TrackerMetrics
from tracker.service import serve_tracker


async def _run(core: TrackerCore, node: ClusterNode | None, port: int) -> None:
    async with trio.open_nursery() as nursery:
        if node is not None:
            await nursery.start(node.run)
        await nursery.start(serve_tracker, core, (bt.HOST, port), (bt.HOST, port))
        print("ready", flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--torrents", type=int, default=1000)
    p.add_argument("--redis", default="")
    p.add_argument("--node-id", default="bench")
    args = p.parse_args()
    registry = CollectorRegistry()
    core = TrackerCore(interval=1800, min_interval=300, metrics=TrackerMetrics(registry))
    for t in range(args.torrents):
        core.register([bt.info_hash(t)])
    node = None
    if args.redis:
        node = ClusterNode(args.redis, args.node_id, 2, registry)
        node.attach_tracker(core)
    gc.freeze()
    trio.run(_run, core, node, args.port, clock=MonotonicClock())
    return 0


if __name__ == "__main__":
    sys.exit(main())
