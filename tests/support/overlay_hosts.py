"""Hosts for overlay tests and benchmarks (issue 27): N sandboxes, each a "host" (its gateway namespace, state dir
and netcored), on an underlay namespace of their own, beside a throwaway etcd cluster on loopback.

::

    underlay ns  PREFIX-ul: bridge br-ul ── veth ul-hN ──┐
    host N       sandbox namespace:  ul0 192.0.2.1N/24 <─┘   (given before netcore's first command, as a NIC is)

192.0.2.0/24 (TEST-NET-1) exists only inside these namespaces; the veths are made inside the underlay namespace
with their peers born in the hosts', so the root namespace never sees one. netcored runs in the root
namespace, where etcd listens on loopback. ``close()`` purges every host (which leaves the cluster), deletes
the underlay namespace, and stops etcd (members killed by PID): nothing is left.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import socket
import subprocess
from dataclasses import dataclass

from dnslib import QTYPE, DNSRecord

from netcore.system import linux
from tests.support.etcd_cluster import EtcdCluster
from tests.support.sandbox import Sandbox, cleanup, new_sandbox

UNDERLAY = "192.0.2.0/24"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Hosts:
    """``count`` hosts joined to one etcd cluster of ``members`` members (lease TTL ``ttl`` seconds)."""

    def __init__(self, count: int = 3, members: int = 3, ttl: int = 3, mtu: int = 1500):
        self.underlay = f"ncul{secrets.token_hex(3)}"
        self.boxes: list[Sandbox] = []
        self.names = [f"h{n + 1}" for n in range(count)]
        self.addresses = [f"192.0.2.1{n + 1}" for n in range(count)]
        self.ttl = ttl
        self.mtu = mtu
        self.etcd = EtcdCluster(members)
        self._count = count
        self._purged: list[Sandbox] = []

    def start(self, join: bool = True) -> Hosts:
        try:
            self.etcd.start()
            ip("netns", "add", self.underlay)
            ip("-n", self.underlay, "link", "set", "lo", "up")
            ip("-n", self.underlay, "link", "add", "br-ul", "mtu", str(self.mtu), "type", "bridge")
            ip("-n", self.underlay, "link", "set", "br-ul", "up")
            for n in range(self._count):
                box = new_sandbox("ncov")
                self.boxes.append(box)
                ip("netns", "add", box.prefix)
                ip("-n", box.prefix, "link", "set", "lo", "up")
                ip("-n", self.underlay, "link", "add", f"ul-h{n}", "mtu", str(self.mtu), "type", "veth", "peer",
                   "name", "ul0", "mtu", str(self.mtu), "netns", box.prefix)
                ip("-n", self.underlay, "link", "set", f"ul-h{n}", "master", "br-ul", "up")
                ip("-n", box.prefix, "addr", "add", f"{self.addresses[n]}/24", "dev", "ul0")
                ip("-n", box.prefix, "link", "set", "ul0", "up")
                if join:
                    self.join(n)
        except BaseException:
            self.close()
            raise
        return self

    def join(self, n: int) -> subprocess.CompletedProcess:
        return self.boxes[n].nc("cluster", "join", "--store", self.etcd.url, "--advertise-address",
                                self.addresses[n], "--name", self.names[n], "--lease-ttl", str(self.ttl))

    def nc(self, n: int, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.boxes[n].nc(*args, **kw)

    def run(self, n: int, name: str, *args: str) -> Container:
        """``netcore run --name NAME ARGS...`` on host ``n``: the container, with its namespace."""
        container_id = self.nc(n, "run", "--name", name, *args).stdout.strip()
        return Container(name, container_id, f"{self.boxes[n].prefix}-{container_id[:12]}", n)

    def agent_pid(self, n: int) -> int | None:
        return self.boxes[n].agent_pid()

    def etcd_keys(self) -> list[str]:
        """Every key netcore holds in etcd."""
        out = self.etcd.etcdctl("get", "--prefix", "--keys-only", "/netcore/").stdout
        return sorted(line for line in out.splitlines() if line.strip())

    def values(self, prefix: str) -> dict[str, dict]:
        """The keys under ``prefix`` with their JSON values."""
        out = self.etcd.etcdctl("get", "--prefix", prefix, "-w", "json").stdout
        kvs = json.loads(out).get("kvs", [])
        return {base64.b64decode(kv["key"]).decode(): json.loads(base64.b64decode(kv["value"])) for kv in kvs}

    def purge(self) -> None:
        """``netcore purge`` on every host (each leaves the cluster, telling etcd) and the sandboxes' safety net."""
        for box in self.boxes:
            if box not in self._purged:
                self._purged.append(box)
                cleanup(box)

    def close(self) -> None:
        for box in self.boxes:
            if box not in self._purged:
                with contextlib.suppress(Exception):
                    cleanup(box)
        subprocess.run(["ip", "netns", "delete", self.underlay], capture_output=True, timeout=30)
        self.etcd.stop()

    def __enter__(self) -> Hosts:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()


@dataclass(frozen=True)
class Container:
    """A container of a test: its name, ID, network namespace and the index of its host."""

    name: str
    id: str
    netns: str
    host: int


def in_ns(namespace: str, *argv: str, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    """``argv`` inside ``namespace`` (``ip netns exec``), output captured as text."""
    return subprocess.run(["ip", "netns", "exec", namespace, *argv], capture_output=True, text=True, timeout=timeout,
                          **kw)


def pings(namespace: str, address: str, size: int | None = None, wait: float = 2) -> subprocess.CompletedProcess:
    argv = ["ping", "-c", "1", "-W", str(wait)]
    if size is not None:
        argv += ["-M", "do", "-s", str(size)]
    return in_ns(namespace, *argv, address)


class Resolver:
    """A UDP socket made inside a container's namespace, asking its gateway's dnsd (``server``) directly: many
    queries without a process each."""

    def __init__(self, namespace: str, server: str, timeout: float = 1.0):
        with linux.entered_netns(linux.netns_path(namespace)):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)
        self.sock.connect((server, 53))

    def ask(self, name: str, qtype: str = "A") -> list[str] | None:
        """The answer's records of ``qtype`` (sorted as answered; [] for an answer without any); None when
        nothing came back in time."""
        query = DNSRecord.question(name, qtype)
        self.sock.send(query.pack())
        try:
            while True:
                reply = DNSRecord.parse(self.sock.recv(4096))
                if reply.header.id == query.header.id:
                    return [str(rr.rdata) for rr in reply.rr if rr.rtype == getattr(QTYPE, qtype)]
        except (TimeoutError, OSError):
            return None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Resolver:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
