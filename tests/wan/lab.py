"""A WAN in network namespaces: one namespace per host, each host's link through a delay
line and ``tbf`` shapers to a bridge in its own namespace.

::

    host ns "<p>-h<i>"          wan ns "<p>-wan"
    [eth0 10.99.0.x] ==veth== [h<i>] <-delayline-> [x<i>] ==veth== [b<i>] -- br0 -- ...

- Latency: every host link has a delay line holding each frame ``rtt / 4`` each way; a
  frame between two hosts crosses two links, so every pair of hosts sees ``rtt`` (the kernel
  here has no ``netem``). The delay line is tests/wan/delayline.c, compiled at the lab's
  start; where no C compiler builds it, tests/wan/delayline.py (same model, ~2x the CPU:
  docs/benchmarks.md, session 13), with a logged warning saying why.
- Rates: ``tbf`` on the host's ``eth0`` (its upload: the sender's own queue, as a home
  modem's) and on ``h<i>`` in the wan namespace (its download: the provider's queue).
- Addresses: 10.99.0.0/24 inside these namespaces only; no namespace has a route out (the
  wan namespace has no addresses at all), so nothing leaves the lab.

`Lab` is a context manager: it builds everything on entry and removes it on exit (the
processes it started stopped by PID, then the namespaces deleted). Needs root, ``ip``,
``tc`` and the ``tbf`` qdisc: `unavailable` says why not, for a skip.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

DELAYLINE = Path(__file__).resolve().parent / "delayline.py"
DELAYLINE_C = DELAYLINE.with_suffix(".c")
SUBNET = "10.99.0"  # /24, private, inside the lab's namespaces only
CLONE_NEWNET = 0x40000000
STOP_WAIT = 10.0  # s for a process to exit after SIGTERM before SIGKILL
MIB = 1024 * 1024

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shape:
    """Everything a lab run depends on, in one place (bits per second for rates)."""

    size: int = 256 * MIB
    clients: tuple[str, ...] = (
        "aria2", "transmission", "qbittorrent", "libtorrent",
        "aria2", "transmission", "qbittorrent", "libtorrent",
    )  # fmt: skip
    rtt: float = 0.040  # s, between every pair of hosts
    client_down: int = 100_000_000
    client_up: int = 20_000_000
    daemon_up: int = 200_000_000
    daemon_down: int = 1_000_000_000
    store_rate: int = 1_000_000_000  # the object store's link, both ways
    swarm_budget: float | None = None  # [seeding] swarm_budget (None: the daemon's default)
    upload_rate_limit: int = 0  # [seeding] upload_rate_limit, bytes/s (0: none)
    deadline: float = 600.0  # s for the clients to finish
    # Every host's TCP congestion control (net.ipv4.tcp_congestion_control in its namespace;
    # one of the machine's net.ipv4.tcp_allowed_congestion_control); None: what a new
    # namespace gets from the machine (bbr on this VM; cubic is Linux's, Windows' and
    # macOS's default, and is not allowed in a namespace here).
    congestion: str | None = None

    def ideal(self) -> float:
        """Seconds the links allow the median client: max(size / client download rate,
        size x clients / total upload capacity of the daemon and the clients)."""
        bits = self.size * 8
        up = self.daemon_up + self.client_up * len(self.clients)
        return max(bits / self.client_down, bits * len(self.clients) / up)


@dataclass(frozen=True)
class Host:
    name: str  # "srv", "s3", "c0", ...
    ns: str  # its network namespace
    addr: str  # its eth0 address
    up: int  # bits/s
    down: int


def unavailable() -> str | None:
    """Why a lab cannot be built on this machine (None: it can)."""
    if os.geteuid() != 0:
        return "the WAN lab needs root (network namespaces, tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"the WAN lab needs `{tool}` (iproute2)"
    probe = f"s3tprobe{os.getpid()}"
    try:
        _run(["ip", "netns", "add", probe])
    except RuntimeError as exc:
        return f"`ip netns add` fails here: {exc}"
    try:
        _run(["ip", "-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1"])
        _run(["tc", "-n", probe, "qdisc", "add", "dev", "p0", "root", "tbf",
              "rate", "1mbit", "burst", "32kb", "latency", "50ms"])  # fmt: skip
    except RuntimeError as exc:
        return f"veth or tbf unavailable: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


class Lab:
    """The namespaces, links and delay lines of one `Shape` (see the module doc)."""

    def __init__(self, shape: Shape, workdir: Path, *, prefix: str | None = None,
                 delayline: str = "c") -> None:
        """``delayline``: "c" (delayline.c, the Python one where it does not build) or
        "python" (delayline.py, to compare)."""
        if delayline not in ("c", "python"):
            raise ValueError(f"delayline: 'c' or 'python', not {delayline!r}")
        self.delayline = delayline
        self.shape = shape
        self.workdir = workdir
        self.prefix = prefix or f"s3t{os.getpid() % 100000}"
        self.wan = f"{self.prefix}-wan"
        hosts = [
            Host("srv", f"{self.prefix}-srv", f"{SUBNET}.2", shape.daemon_up, shape.daemon_down),
            Host("s3", f"{self.prefix}-s3", f"{SUBNET}.3", shape.store_rate, shape.store_rate),
        ]
        for i in range(len(shape.clients)):
            hosts.append(Host(f"c{i}", f"{self.prefix}-c{i}", f"{SUBNET}.{10 + i}",
                              shape.client_up, shape.client_down))
        self.hosts = {h.name: h for h in hosts}
        self._procs: list[subprocess.Popen[Any]] = []
        self._relays: dict[str, subprocess.Popen[Any]] = {}  # host name -> its delay line
        # Host name -> its delay line's counters as printed at its stop (see delayline.py).
        self.relay_stats: dict[str, dict[str, float]] = {}
        self._made: list[str] = []
        self.relay_argv: list[str] = []  # the delay line's command, before its arguments
        # Host name -> its delay line's per-destination counters (the C relay only).
        self._counts: dict[str, Path] = {}

    # -- build and tear down -----------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        one_way = self.shape.rtt / 4  # per link and direction; two links per path
        self.relay_argv = (relay_command(self.workdir) if self.delayline == "c"
                           else [sys.executable, str(DELAYLINE)])
        for ns in [self.wan, *(h.ns for h in self.hosts.values())]:
            _run(["ip", "netns", "add", ns])
            self._made.append(ns)
            _batch(ns, ["link set lo up"])
            _sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
            _sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")
            if self.shape.congestion is not None and ns != self.wan:
                _congestion(ns, self.shape.congestion)
        _batch(self.wan, ["link add br0 type bridge", "link set br0 up"])
        for i, host in enumerate(self.hosts.values()):
            h, x, b = f"h{i}", f"x{i}", f"b{i}"
            _batch(self.wan, [
                f"link add {h} type veth peer name eth0 netns {host.ns}",
                f"link add {x} type veth peer name {b}",
                f"link set {b} master br0",
                f"link set {h} up promisc on", f"link set {x} up promisc on", f"link set {b} up",
            ])  # fmt: skip
            _batch(host.ns, [f"addr add {host.addr}/24 dev eth0", "link set eth0 up"])
            _tbf(host.ns, "eth0", host.up, self.shape.rtt)
            _tbf(self.wan, h, host.down, self.shape.rtt)
            argv = [*self.relay_argv, h, x, repr(one_way)]
            if self.relay_argv[0] != sys.executable:  # the C relay counts by destination
                self._counts[host.name] = self.workdir / f"sent-to-{host.name}"
                argv.append(str(self._counts[host.name]))
            relay = subprocess.Popen(["ip", "netns", "exec", self.wan, *argv],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self._relays[host.name] = relay

    def close(self) -> None:
        """Stop every process started here (by PID), then delete the namespaces."""
        for proc in reversed(self._procs):
            stop(proc)
        for name, relay in self._relays.items():
            stop(relay)
            self.relay_stats[name] = _last_json(relay.stdout.read() if relay.stdout else "")
        self._procs.clear()
        self._relays.clear()
        for ns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self._made.clear()

    # -- use -----------------------------------------------------------------------------------

    def popen(self, host: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in ``host``'s namespace (stopped at `close` if still running)."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.hosts[host].ns, *argv], **kw)
        self._procs.append(proc)
        return proc

    def run(self, host: str, argv: Sequence[str], timeout: float = 60.0) -> str:
        """Run ``argv`` in ``host``'s namespace to the end; its stdout (RuntimeError if it
        fails)."""
        return _run(["ip", "netns", "exec", self.hosts[host].ns, *argv], timeout)

    def call(self, host: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a thread that entered ``host``'s network namespace (sockets it
        opens live there); its result or its exception."""
        return call_in(self.hosts[host].ns, fn, *args)

    def congestion(self, host: str = "srv") -> str:
        """The TCP congestion control ``host``'s namespace uses."""
        return self.run(host, ["sysctl", "-n", "net.ipv4.tcp_congestion_control"]).strip()

    def tx_bytes(self, host: str) -> int:
        """Bytes ``host`` has sent on its link (its eth0 counter)."""
        path = "/sys/class/net/eth0/statistics/tx_bytes"
        return int(self.run(host, ["cat", path]).strip())

    def link_bytes(self) -> dict[str, tuple[int, int]]:
        """Host name -> (bytes it sent, bytes it received) so far, from its link's end in
        the wan namespace (one ``ip`` call for every host)."""
        out = _run(["ip", "-n", self.wan, "-j", "-s", "link", "show"])
        ends = {f"h{i}": name for i, name in enumerate(self.hosts)}
        got: dict[str, tuple[int, int]] = {}
        for link in json.loads(out):
            name = ends.get(link.get("ifname", "").split("@")[0])
            if name is not None:
                stats = link["stats64"]
                got[name] = (int(stats["rx"]["bytes"]), int(stats["tx"]["bytes"]))
        return got

    def pair_bytes(self) -> dict[str, dict[str, int]]:
        """Host name -> (host name -> bytes it sent that host so far): every host's upload by
        destination, IPv4 frames as its delay line relayed them (frames dropped later, on
        the receiver's download queue, included; wire bytes as `link_bytes`). Empty with
        the Python delay line, which does not count."""
        by_octet = {int(h.addr.rsplit(".", 1)[1]): h.name for h in self.hosts.values()}
        got: dict[str, dict[str, int]] = {}
        for name, path in self._counts.items():
            try:
                raw = path.read_bytes()
            except OSError:  # the relay has not made it yet
                continue
            if len(raw) != 8 * 256:
                continue
            counters = struct.unpack("<256Q", raw)
            got[name] = {dst: counters[k] for k, dst in by_octet.items() if dst != name}
        return got

    def relay_cpu(self) -> dict[str, float]:
        """Host name -> CPU seconds (user + system) its link's delay line has used so far
        (``ip netns exec`` execs, so the PID is the relay's)."""
        tick = os.sysconf("SC_CLK_TCK")
        got: dict[str, float] = {}
        for name, relay in self._relays.items():
            try:
                stat = Path(f"/proc/{relay.pid}/stat").read_text()
            except OSError:  # exited
                continue
            fields = stat.rsplit(")", 1)[1].split()  # from field 3 (state) on
            got[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        return got

    def wait_reachable(self, timeout: float = 20.0) -> None:
        """Every host reaches the daemon's host (ARP through the delay lines done)."""
        srv = self.hosts["srv"].addr
        for name in self.hosts:
            if name != "srv":
                self.run(name, ["ping", "-c", "1", "-W", str(int(timeout)), srv], timeout)


def relay_command(workdir: Path) -> list[str]:
    """The delay line to run: tests/wan/delayline.c compiled into ``workdir``, or, where that
    cannot be done, the Python one (a warning logged with the reason)."""
    binary = workdir / "delayline"
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        why = "no C compiler (gcc, cc) on PATH"
    else:
        done = subprocess.run([cc, "-O2", "-o", str(binary), str(DELAYLINE_C)],
                              capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            return [str(binary)]
        why = f"{cc} failed: {done.stderr.strip()[-500:]}"
    log.warning("WAN lab: the Python delay line (about twice the CPU): %s", why)
    return [sys.executable, str(DELAYLINE)]


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after STOP_WAIT; by PID."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def call_in(ns: str, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on a new thread inside network namespace ``ns`` (setns affects only
    the calling thread); join it; its result or its exception."""
    out: dict[str, Any] = {}

    def body() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {ns}")
        finally:
            os.close(fd)
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller
            out["error"] = exc

    thread = threading.Thread(target=body, name=f"in-{ns}")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def _run(argv: Sequence[str], timeout: float = 30.0) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{' '.join(argv)}: timed out after {timeout} s") from None
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _last_json(text: str) -> dict[str, float]:
    """The last line of ``text`` as a JSON object ({} when there is none)."""
    lines = text.strip().splitlines()
    try:
        got = json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}
    return got if isinstance(got, dict) else {}


def _batch(ns: str, commands: list[str]) -> None:
    """``ip -n ns -batch``: one process for several ``ip`` commands."""
    done = subprocess.run(["ip", "-n", ns, "-batch", "-"], input="\n".join(commands) + "\n",
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip -n {ns}: {done.stderr.strip()}")


def _sysctl(ns: str, key: str, value: str) -> None:
    _run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={value}"])


def _congestion(ns: str, name: str) -> None:
    """Set ``ns``'s TCP congestion control; a namespace other than the machine's own may only
    pick one of net.ipv4.tcp_allowed_congestion_control (the kernel's rule; "reno bbr" on
    this VM), which a clear error says."""
    try:
        _sysctl(ns, "net.ipv4.tcp_congestion_control", name)
    except RuntimeError:
        allowed = Path("/proc/sys/net/ipv4/tcp_allowed_congestion_control").read_text().strip()
        raise RuntimeError(f"TCP congestion control {name!r} cannot be set in a network "
                           f"namespace here: net.ipv4.tcp_allowed_congestion_control is "
                           f"{allowed!r} (a machine setting the lab leaves alone)") from None


def _tbf(ns: str, dev: str, rate: int, rtt: float) -> None:
    """Shape ``dev``'s egress to ``rate`` bits/s: a burst of 64 KiB at least (a GSO frame
    passes whole) and a queue of one bandwidth-delay product (at least 128 KiB)."""
    burst = max(64 * 1024, rate // 8 // 250)  # ~4 ms of traffic
    limit = max(128 * 1024, int(rate / 8 * rtt), 2 * burst)
    _run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{rate}bit",
          "burst", str(burst), "limit", str(limit)])  # fmt: skip

