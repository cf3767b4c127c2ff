"""The cost of issue 14's connection accounting (head deadlines, slots per client address,
minimum rate, breaker/guard on the store edge), measured side by side in one run:

    python benchmarks/ab_limits.py [--before REF] [--rounds 6] [--duration 5]

Makes a temporary detached git worktree of ``--before`` (default ``bbf5cd0^``: main just
before the issue 14 commits) and runs, with A = that build and B = this checkout:

1. ``ab_api.py --mode keepalive``: GetObjectTorrent on a cached torrent, wrk keep-alive.
2. ``ab_api.py --mode close``: the same, one connection per request (every request pays
   the slot admission and release).
3. ``ab_tracker.py --mode close``: tracker HTTP announces, one connection per announce
   (µs CPU per announce).

Each prints its per-load rows and "B/A"; goal (issue 14): B within 5 % of A. The worktree is
removed afterwards. Needs wrk and taskset; run it alone (under /tmp/s3t-bench.lock here).
req/s of a daemon on a shared core moves with the machine's other work (by up to 2x between
loads): ``ab_instructions.py`` counts instructions per request instead (repeatable).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", default="bbf5cd0^", help="git ref of the build without it")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--duration", type=int, default=5)
    args = p.parse_args(argv)
    before = Path(tempfile.mkdtemp(prefix="ab-limits-")) / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before),
                    args.before], check=True, capture_output=True)
    common = ["--rounds", str(args.rounds), "--duration", str(args.duration)]
    runs = [
        ("GetObjectTorrent, keep-alive", "ab_api.py", ["--mode", "keepalive"]),
        ("GetObjectTorrent, a connection per request", "ab_api.py", ["--mode", "close"]),
        ("tracker announce, a connection per announce", "ab_tracker.py", ["--mode", "close"]),
    ]
    try:
        for title, script, extra in runs:
            print(f"== {title}: A = {args.before}, B = {ROOT}", flush=True)
            subprocess.run([sys.executable, str(HERE / script), str(before), str(ROOT),
                            *common, *extra], check=True, cwd=ROOT)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)],
                       check=False, capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
