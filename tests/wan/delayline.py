"""A user-space delay line between two network interfaces (this kernel has no ``netem``).

Usage (as root, inside the namespace that holds both interfaces)::

    python3 tests/wan/delayline.py IFACE_A IFACE_B DELAY_SECONDS

Every frame that arrives on one interface is sent out of the other ``DELAY_SECONDS`` later,
in both directions, in arrival order (a constant delay keeps FIFO order, so one deque per
direction is the whole timer). Two AF_PACKET sockets, one epoll loop, one process.

- ``PACKET_VNET_HDR`` on both sockets: TCP's GSO/TSO super-frames (up to 64 KiB) cross as
  one frame with their virtio-net header, so the relay moves a few thousand frames per
  second instead of one per 1500 bytes (and checksums stay the kernel's job).
- ``PACKET_IGNORE_OUTGOING``: the relay does not see the frames it sends.
- A frame is dropped (counted) when its direction already holds MAX_QUEUED_BYTES, or when
  the outgoing interface refuses it (its qdisc, e.g. a ``tbf`` shaper, is full): a router
  queue, not an unbounded buffer.

Stats: on SIGTERM or SIGINT it prints one JSON line to stdout ({"frames": N, "bytes": N,
"dropped": N, "wakeups": N, "user_s": S, "sys_s": S}: frames and bytes sent, frames
dropped, epoll returns, its own CPU seconds) and exits 0. Nothing else is printed. Exit 2
on bad arguments.
"""

from __future__ import annotations

import collections
import json
import os
import select
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
SOCKET_BUFFER = 8 * 1024 * 1024  # bytes, each way: a burst at 1 Gbit/s for ~60 ms
MAX_FRAME = 70_000  # virtio-net header + a 64 KiB GSO frame
MAX_QUEUED_BYTES = 32 * 1024 * 1024  # per direction: ~0.27 s at 1 Gbit/s
RECV_BATCH = 512  # frames read per wakeup and socket, at most
IDLE_WAIT = 1.0  # s: epoll timeout with nothing queued


def open_socket(iface: str) -> socket.socket:
    """A non-blocking raw packet socket bound to ``iface`` that reads and writes frames with
    their virtio-net header."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: nothing until bound
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_BUFFER)
    s.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, SOCKET_BUFFER)
    s.bind((iface, ETH_P_ALL))
    s.setblocking(False)
    return s


def run(iface_a: str, iface_b: str, delay: float) -> dict[str, int]:
    """Relay until SIGTERM/SIGINT; the counters."""
    stop = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    a, b = open_socket(iface_a), open_socket(iface_b)
    other = {a.fileno(): b, b.fileno(): a}
    by_fd = {a.fileno(): a, b.fileno(): b}
    queues: dict[int, collections.deque[tuple[float, bytes]]] = {
        a.fileno(): collections.deque(), b.fileno(): collections.deque()
    }
    queued = {a.fileno(): 0, b.fileno(): 0}
    stats = {"frames": 0, "bytes": 0, "dropped": 0, "wakeups": 0}
    buf = bytearray(MAX_FRAME)
    ep = select.epoll()
    for fd in by_fd:
        ep.register(fd, select.EPOLLIN)
    try:
        while not stop:
            heads = [q[0][0] for q in queues.values() if q]
            wait = max(0.0, min(heads) - time.monotonic()) if heads else IDLE_WAIT
            ready = ep.poll(wait)
            stats["wakeups"] += 1
            for fd, _ in ready:
                sock, q = by_fd[fd], queues[fd]
                due = time.monotonic() + delay
                for _ in range(RECV_BATCH):
                    try:
                        n = sock.recv_into(buf)
                    except BlockingIOError:
                        break
                    if queued[fd] + n > MAX_QUEUED_BYTES:
                        stats["dropped"] += 1
                        continue
                    q.append((due, bytes(buf[:n])))
                    queued[fd] += n
            now = time.monotonic()
            for fd, q in queues.items():
                out = other[fd]
                while q and q[0][0] <= now:
                    _, frame = q.popleft()
                    queued[fd] -= len(frame)
                    try:
                        out.send(frame)
                        stats["frames"] += 1
                        stats["bytes"] += len(frame)
                    except OSError:  # ENOBUFS (qdisc full), EAGAIN (socket buffer full)
                        stats["dropped"] += 1
    finally:
        ep.close()
        a.close()
        b.close()
    return stats


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        delay = float(argv[2])
    except ValueError:
        delay = -1.0
    if not 0.0 <= delay <= 10.0:
        print(f"delayline: bad delay {argv[2]!r} (seconds, 0..10)", file=sys.stderr)
        return 2
    stats: dict[str, float] = dict(run(argv[0], argv[1], delay))
    cpu = os.times()
    stats.update(user_s=round(cpu.user, 2), sys_s=round(cpu.system, 2))
    sys.stdout.write(json.dumps(stats) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
