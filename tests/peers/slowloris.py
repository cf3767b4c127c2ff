"""A bounded slowloris client in its own process, for tests: many connections from one
address that trickle a request head one byte at a time and never finish it.

Usage::

    python tests/peers/slowloris.py --host 127.0.0.1 --port N --bind 127.0.0.2 \
        --connections 1100 --interval 0.5 --duration 6

Opens ``--connections`` connections from ``--bind`` (as fast as the server accepts them),
sends ``GET / HTTP/1.1\\r\\n`` on each, then one more header byte every ``--interval``
seconds on every connection still open, for ``--duration`` seconds in all; then closes
everything and prints one JSON object on stdout:

``{"opened": N, "failed": N, "closed_by_server": N, "open_at_end": N,
"max_life": SECONDS, "answers": {"503": N, ...}}``: ``max_life`` is the longest a
connection lived before the server closed it; ``answers`` counts status lines the server
sent before closing (an evicted or timed-out connection usually gets none).

Every loop is bounded by ``--duration``; the process never outlives it by more than a
second.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import time

HEAD = b"GET / HTTP/1.1\r\n"
TRICKLE = b"X-Slow: " + b"a" * 4000  # never ends: no CRLF


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bind", default="127.0.0.2")
    ap.add_argument("--connections", type=int, default=1100)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--duration", type=float, default=6.0)
    args = ap.parse_args()

    start = time.monotonic()
    end = start + args.duration
    sel = selectors.DefaultSelector()
    opened_at: dict[socket.socket, float] = {}
    sent: dict[socket.socket, int] = {}
    failed = closed = 0
    max_life = 0.0
    answers: dict[str, int] = {}

    def gone(sock: socket.socket, data: bytes) -> None:
        nonlocal closed, max_life
        if data.startswith(b"HTTP/1.1 "):
            code = data[9:12].decode("ascii", "replace")
            answers[code] = answers.get(code, 0) + 1
        closed += 1
        max_life = max(max_life, time.monotonic() - opened_at.pop(sock))
        sent.pop(sock, None)
        sel.unregister(sock)
        sock.close()

    for _ in range(args.connections):
        if time.monotonic() >= end:
            break
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((args.bind, 0))
            sock.settimeout(2.0)
            sock.connect((args.host, args.port))
            sock.sendall(HEAD)
        except OSError:
            failed += 1
            sock.close()
            continue
        sock.setblocking(False)
        opened_at[sock] = time.monotonic()
        sent[sock] = 0
        sel.register(sock, selectors.EVENT_READ)

    next_trickle = time.monotonic()
    while True:  # bounded by ``end``
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_trickle:
            next_trickle = now + args.interval
            for sock in list(sent):
                i = sent[sock] % len(TRICKLE)
                try:
                    sock.send(TRICKLE[i : i + 1])
                    sent[sock] += 1
                except BlockingIOError:
                    pass
                except OSError:
                    gone(sock, b"")
        for key, _ in sel.select(timeout=max(0.0, min(next_trickle, end) - time.monotonic())):
            sock = key.fileobj  # type: ignore[assignment]
            try:
                data = sock.recv(65536)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            gone(sock, data)  # type: ignore[arg-type]
    open_at_end = len(opened_at)
    for sock in list(opened_at):
        sock.close()
    print(json.dumps({"opened": args.connections - failed, "failed": failed,
                      "closed_by_server": closed, "open_at_end": open_at_end,
                      "max_life": round(max_life, 3), "answers": answers}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
