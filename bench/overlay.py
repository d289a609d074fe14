"""Overlay networks across three hosts (issue 27): convergence, scale, throughput and the cost of a run.

    sudo .venv/bin/python bench/overlay.py [--runs 200] [--scale 100] [--seconds 3] [--skip-scale]

As root. Three hosts (gateway namespaces on an underlay namespace, each with its state dir and netcored) joined
to a throwaway 3-member etcd on 127.0.0.1 (tests/support/overlay_hosts.py), all removed at the end. What
it prints:

- **convergence**, over ``--runs`` runs: ``netcore run`` on host 1, then, from the moment it returns, until
  the name is answered by the dnsd of hosts 2 and 3 (queried from a container there every 2 ms) and the first
  ICMP echo to the answered address comes back (sent only once the name is answered: the data plane must
  be ready by then, no ARP retry); the worse of the two hosts counts. Then ``netcore rm`` on host 1, until
  both hosts answer the name no more. p50, p90, p99, max.
- **scale**: ``--scale`` containers on each host (three runs at a time, one per host), then the time from
  the last run returning until every host answers all of them; the keys in etcd; the RSS of each netcored
  and dnsd.
- **throughput**: one TCP stream for ``--seconds`` s between two containers on different hosts across the
  overlay, and the same stream between two containers on one host's local bridge (Python sockets at both
  ends, 256 KiB writes; the ratio is the figure, the absolute rates are Python's on this machine).
- **cost of a run**: the wall time of ``netcore run`` (the CLI as users run it) on an overlay network
  against a local bridge network on the same host, median of 20 each.

The machine's load average is printed before and after: the machine is shared, and the figures move with it.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

from netcore.system import linux
from tests.support.overlay_hosts import Hosts, Resolver, in_ns

POLL = 0.002  # seconds between two queries of a prober


class Pinger:
    """ICMP echo from inside a namespace (a raw socket made there), timed in the test process."""

    def __init__(self, namespace: str):
        with linux.entered_netns(linux.netns_path(namespace)):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0

    @staticmethod
    def _checksum(data: bytes) -> int:
        if len(data) % 2:
            data += b"\0"
        total = sum(struct.unpack(f"!{len(data) // 2}H", data))
        total = (total >> 16) + (total & 0xFFFF)
        total += total >> 16
        return ~total & 0xFFFF

    def ping(self, address: str, timeout: float) -> bool:
        """One echo request; True once its reply came back within ``timeout`` seconds."""
        self.seq = (self.seq + 1) & 0xFFFF
        header = struct.pack("!BBHHH", 8, 0, 0, self.ident, self.seq)
        payload = b"netcore-bench"
        packet = struct.pack("!BBHHH", 8, 0, self._checksum(header + payload), self.ident, self.seq) + payload
        self.sock.sendto(packet, (address, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, (source, _) = self.sock.recvfrom(2048)
            except TimeoutError:
                return False
            offset = (data[0] & 0x0F) * 4
            kind, _, _, ident, seq = struct.unpack("!BBHHH", data[offset:offset + 8])
            if kind == 0 and ident == self.ident and seq == self.seq and source == address:
                return True
        return False

    def close(self) -> None:
        self.sock.close()


class Prober:
    """A container on a host: its dnsd asked by name, its ICMP echoes."""

    def __init__(self, hosts: Hosts, n: int, name: str, network: str, gateway: str):
        self.container = hosts.run(n, name, "--net", network)
        self.dns = Resolver(self.container.netns, gateway, timeout=0.5)
        self.pinger = Pinger(self.container.netns)

    def until_reachable(self, name: str, started: float, timeout: float = 30.0) -> tuple[float, float]:
        """(seconds until ``name`` is answered, until its address answers a ping), from ``started``."""
        while True:
            answer = self.dns.ask(name)
            if answer:
                named = time.monotonic() - started
                break
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{name} not answered within {timeout} s")
            time.sleep(POLL)
        while not self.pinger.ping(answer[0], 1.0):
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{answer[0]} ({name}) does not answer pings")
        return named, time.monotonic() - started

    def until_gone(self, name: str, started: float, timeout: float = 30.0) -> float:
        while self.dns.ask(name):
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{name} still answered after {timeout} s")
            time.sleep(POLL)
        return time.monotonic() - started

    def close(self) -> None:
        self.dns.close()
        self.pinger.close()


def quantiles(values: list[float]) -> str:
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return f"p50 {q(0.50):7.1f}  p90 {q(0.90):7.1f}  p99 {q(0.99):7.1f}  max {ordered[-1] * 1000:7.1f} ms"


def on_both(probers: list[Prober], work) -> list:
    results: list = [None] * len(probers)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            results[i] = work(probers[i])
        except BaseException as err:  # noqa: BLE001 (re-raised in the caller's thread)
            errors.append(err)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(probers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def convergence(hosts: Hosts, runs: int) -> None:
    hosts.nc(0, "network", "create", "-d", "overlay", "--subnet", "10.0.100.0/22", "conv")
    probers = [Prober(hosts, 1, "probe2", "conv", "10.0.100.1"), Prober(hosts, 2, "probe3", "conv", "10.0.100.1")]
    up_named, up_pinged, down = [], [], []
    try:
        for i in range(runs):
            name = f"r{i}"
            hosts.nc(0, "run", "--name", name, "--net", "conv")
            started = time.monotonic()
            results = on_both(probers, lambda p, name=name, started=started: p.until_reachable(name, started))
            up_named.append(max(named for named, _ in results))
            up_pinged.append(max(pinged for _, pinged in results))
            hosts.nc(0, "rm", name)
            started = time.monotonic()
            down.append(max(on_both(probers, lambda p, name=name, started=started: p.until_gone(name, started))))
    finally:
        for prober in probers:
            prober.close()
        hosts.nc(1, "rm", "probe2")
        hosts.nc(2, "rm", "probe3")
        hosts.nc(0, "network", "rm", "conv")
    print(f"convergence over {runs} runs (run on host 1, seen from hosts 2 and 3, the worse of the two):")
    print(f"  run -> name answered         {quantiles(up_named)}")
    print(f"  run -> answered and pinged   {quantiles(up_pinged)}")
    print(f"  rm  -> name gone everywhere  {quantiles(down)}")


def rss_kib(pid: int | None) -> int:
    if pid is None:
        return 0
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def scale(hosts: Hosts, per_host: int) -> None:
    hosts.nc(0, "network", "create", "-d", "overlay", "--subnet", "10.0.104.0/22", "wide")
    names = [[f"w{n}x{i}" for i in range(per_host)] for n in range(3)]
    first: dict[int, str] = {}

    def fill(n: int) -> None:
        first[n] = hosts.run(n, names[n][0], "--net", "wide").netns
        for name in names[n][1:]:
            hosts.nc(n, "run", "--name", name, "--net", "wide")

    started = time.monotonic()
    threads = [threading.Thread(target=fill, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runs_done = time.monotonic()
    everyone = [name for group in names for name in group]
    askers = [Resolver(first[n], "10.0.104.1") for n in range(3)]
    pending = {(n, name) for n in range(3) for name in everyone}
    while pending:
        for n, name in sorted(pending):
            if askers[n].ask(name):
                pending.discard((n, name))
        if pending:
            time.sleep(0.01)
        if time.monotonic() - runs_done > 120:
            raise RuntimeError(f"{len(pending)} names not answered after 120 s")
    converged = time.monotonic()
    keys = len(hosts.etcd_keys())
    print(f"scale: {per_host} containers on each of 3 hosts ({3 * per_host} in all)")
    print(f"  runs took {runs_done - started:.1f} s; every host answered every name {converged - runs_done:.3f} s "
          "after the last run returned")
    print(f"  keys in etcd: {keys}")
    for n in range(3):
        print(f"  host {n + 1}: netcored RSS {rss_kib(hosts.agent_pid(n)) / 1024:.1f} MiB, dnsd RSS "
              f"{rss_kib(hosts.boxes[n].dnsd_pid()) / 1024:.1f} MiB")
    for asker in askers:
        asker.close()
    threads = [threading.Thread(target=lambda n=n: hosts.nc(n, "rm", *names[n])) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    hosts.nc(0, "network", "rm", "wide")


SINK = """
import socket, sys, time
server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", 5201)); server.listen(1); print("ready", flush=True)
conn, _ = server.accept(); total = 0; start = None
while True:
    data = conn.recv(1 << 18)
    if not data: break
    if start is None: start = time.monotonic()
    total += len(data)
print(total / (time.monotonic() - start), flush=True)
"""
SOURCE = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], 5201)); buf = b"x" * (1 << 18); end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end: s.sendall(buf)
s.close()
"""


def stream(receiver_ns: str, sender_ns: str, address: str, seconds: float) -> float:
    sink = subprocess.Popen(["ip", "netns", "exec", receiver_ns, sys.executable, "-c", SINK], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert sink.stdout.readline().strip() == "ready"
        in_ns(sender_ns, sys.executable, "-c", SOURCE, address, str(seconds), timeout=seconds + 30)
        return float(sink.stdout.readline())
    finally:
        sink.kill()
        sink.wait()


def throughput(hosts: Hosts, seconds: float) -> None:
    hosts.nc(0, "network", "create", "-d", "overlay", "--subnet", "10.0.108.0/24", "pipe")
    hosts.nc(0, "network", "create", "--subnet", "10.79.0.0/24", "local")
    a = hosts.run(0, "ta", "--net", "pipe")
    b = hosts.run(1, "tb", "--net", "pipe")
    c = hosts.run(0, "tc", "--net", "local")
    d = hosts.run(0, "td", "--net", "local")
    try:
        overlay = stream(b.netns, a.netns, "tb", seconds)
        bridge = stream(d.netns, c.netns, "td", seconds)
    finally:
        hosts.nc(0, "rm", "ta", "tc", "td")
        hosts.nc(1, "rm", "tb")
        hosts.nc(0, "network", "rm", "pipe", "local")
    print(f"throughput, one TCP stream for {seconds:g} s (Python at both ends):")
    print(f"  across the overlay (host 1 -> host 2) {overlay * 8 / 1e9:6.2f} Gbit/s")
    print(f"  across a local bridge (one host)      {bridge * 8 / 1e9:6.2f} Gbit/s")
    print(f"  ratio overlay / bridge                {overlay / bridge:6.2f}")


def run_cost(hosts: Hosts, count: int = 20) -> None:
    hosts.nc(0, "network", "create", "-d", "overlay", "--subnet", "10.0.109.0/24", "costly")
    hosts.nc(0, "network", "create", "--subnet", "10.79.1.0/24", "cheap")
    times = {"overlay": [], "bridge": []}
    try:
        for i in range(count):
            for kind, network in (("overlay", "costly"), ("bridge", "cheap")):
                started = time.monotonic()
                hosts.nc(0, "run", "--name", f"{kind}{i}", "--net", network)
                times[kind].append(time.monotonic() - started)
    finally:
        hosts.nc(0, "rm", *[f"{kind}{i}" for kind in times for i in range(count)], check=False)
        hosts.nc(0, "network", "rm", "costly", "cheap", check=False)
    overlay, bridge = statistics.median(times["overlay"]), statistics.median(times["bridge"])
    print(f"cost of `netcore run` (CLI wall time, median of {count}):")
    print(f"  overlay network {overlay * 1000:7.1f} ms   local bridge {bridge * 1000:7.1f} ms   "
          f"overlay - bridge {(overlay - bridge) * 1000:+6.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--scale", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/overlay.py: run as root (it makes network namespaces)", file=sys.stderr)
        return 2
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    hosts = Hosts(3, ttl=15)
    try:
        hosts.start()
        convergence(hosts, args.runs)
        if not args.skip_scale:
            scale(hosts, args.scale)
        throughput(hosts, args.seconds)
        run_cost(hosts)
    finally:
        hosts.purge()
        hosts.close()
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    from _signals import exit_on_signals  # a killed run still removes what it made

    exit_on_signals()
    sys.exit(main())
