"""A TCP proxy that counts the bytes its upstream sends (the object store's bytes out).

Usage::

    python3 tests/wan/countproxy.py LISTEN_HOST LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT COUNT_FILE

Every accepted connection is relayed to the upstream, both ways, by two threads of its own
until either side closes. The total of upstream-to-client bytes is written to COUNT_FILE
(atomically, by rename) whenever it changed, at most every WRITE_EVERY seconds, and once
more on SIGTERM/SIGINT before exiting 0. Prints ``ready`` on stdout once listening.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time

CHUNK = 256 * 1024
WRITE_EVERY = 0.2  # s


class Counter:
    def __init__(self, path: str) -> None:
        self.path = path
        self.total = 0
        self.lock = threading.Lock()
        self.written = -1

    def add(self, n: int) -> None:
        with self.lock:
            self.total += n

    def write(self) -> None:
        with self.lock:
            total = self.total
        if total != self.written:
            tmp = f"{self.path}.tmp"
            with open(tmp, "w") as f:
                f.write(f"{total}\n")
            os.replace(tmp, self.path)
            self.written = total


def pipe(src: socket.socket, dst: socket.socket, counter: Counter | None) -> None:
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            dst.sendall(data)
            if counter is not None:
                counter.add(len(data))
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def handle(client: socket.socket, upstream: tuple[str, int], counter: Counter) -> None:
    try:
        up = socket.create_connection(upstream, timeout=30)
        up.settimeout(None)
    except OSError:
        client.close()
        return
    back = threading.Thread(target=pipe, args=(up, client, counter), daemon=True)
    back.start()
    pipe(client, up, None)
    back.join()
    client.close()
    up.close()


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    host, port, up_host, up_port, path = argv
    counter = Counter(path)
    counter.write()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    listener = socket.create_server((host, int(port)), backlog=128)
    listener.settimeout(WRITE_EVERY)
    print("ready", flush=True)
    last = time.monotonic()
    while not stop.is_set():
        try:
            client, _ = listener.accept()
            client.settimeout(None)
            threading.Thread(
                target=handle, args=(client, (up_host, int(up_port)), counter), daemon=True
            ).start()
        except TimeoutError:
            pass
        if time.monotonic() - last >= WRITE_EVERY:
            counter.write()
            last = time.monotonic()
    counter.write()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
