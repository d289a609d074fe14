"""A throwaway etcd cluster on 127.0.0.1 for root-only tests and benchmarks (Debian's etcd-server, 3.4).

Each cluster gets random free loopback ports, a unique ``--initial-cluster-token``
and a temporary data directory; members are started and killed by PID only, and
``stop()`` kills every member this object started (SIGKILL: a throwaway cluster
needs no graceful exit, and SIGTERM takes ~7 s) and removes the data directory.
See /work/shared/notes/overlay-in-namespaces.md for the recipe this follows.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"


def have_etcd() -> bool:
    return os.access(ETCD, os.X_OK) and os.access(ETCDCTL, os.X_OK)


PORT_RANGE = range(20000, 32000)  # below Linux's ephemeral ports (32768-60999): no client socket takes one


def _reserve_ports(count: int) -> tuple[list[int], list[socket.socket]]:
    """``count`` distinct loopback ports for etcd members, reserved for the cluster's whole life: (ports, the
    sockets that hold the reservations; closing them frees the ports).

    A port picked by binding port 0 comes from the ephemeral range, where any process's outgoing connection
    (a gRPC client's to etcd) may take it while a killed member waits to be restarted on it, and a cluster
    of another test running beside this one could pick it too. So ports come from below the ephemeral range,
    each reserved by an abstract unix socket named after it (bound by one process at a time, released by the
    kernel when its holder dies or closes it, no file left behind), and must be free to bind when taken."""
    ports, held = [], []
    for port in secrets.SystemRandom().sample(PORT_RANGE, len(PORT_RANGE)):
        if len(ports) == count:
            break
        reservation = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            reservation.bind(f"\0netcore-test-etcd-port-{port}")
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port))
        except OSError:  # reserved by another cluster, or in use
            reservation.close()
            continue
        ports.append(port)
        held.append(reservation)
    if len(ports) < count:
        for reservation in held:
            reservation.close()
        raise RuntimeError(f"no {count} free loopback ports in {PORT_RANGE}")
    return ports, held


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"


class EtcdCluster:
    """``size`` etcd members on loopback; ``endpoints`` is the ``HOST:PORT,...`` list a client takes."""

    def __init__(self, size: int = 3):
        self.directory = tempfile.mkdtemp(prefix="netcore-etcd-")
        self.token = f"netcore-test-{secrets.token_hex(6)}"
        ports, self._reservations = _reserve_ports(2 * size)
        self.members = [Member(f"e{i}", ports[2 * i], ports[2 * i + 1]) for i in range(size)]
        self.initial_cluster = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    @property
    def url(self) -> str:
        """The store URL as `netcore cluster join --store` takes it."""
        return "etcd://" + ",".join(self.endpoints)

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        for member in self.members:
            self.start_member(member)
        self.wait_healthy(timeout)
        return self

    def start_member(self, member: Member) -> None:
        """Start (or restart: the data dir is kept, the --initial-* flags are then ignored) one member."""
        log = open(os.path.join(self.directory, f"{member.name}.log"), "ab")  # noqa: SIM115 (kept by the child)
        try:
            member.process = subprocess.Popen(
                [ETCD, "--name", member.name, "--data-dir", os.path.join(self.directory, member.name),
                 "--listen-client-urls", f"http://{member.endpoint}",
                 "--advertise-client-urls", f"http://{member.endpoint}",
                 "--listen-peer-urls", f"http://127.0.0.1:{member.peer_port}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{member.peer_port}",
                 "--initial-cluster", self.initial_cluster, "--initial-cluster-token", self.token,
                 "--initial-cluster-state", "new", "--logger", "zap", "--log-outputs", "stderr"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        finally:
            log.close()

    def kill(self, member: Member) -> None:
        """SIGKILL one member by its PID and wait for it."""
        if member.process is not None and member.process.poll() is None:
            os.kill(member.process.pid, signal.SIGKILL)
            member.process.wait()

    def stop(self) -> None:
        """Kill every member this object started and remove the data directory."""
        for member in self.members:
            self.kill(member)
        shutil.rmtree(self.directory, ignore_errors=True)
        for reservation in self._reservations:  # the ports are free for other clusters again
            reservation.close()
        self._reservations = []

    def etcdctl(self, *args: str, endpoints: list[str] | None = None, timeout: float = 10.0,
                check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, ETCDCTL_API="3")
        return subprocess.run([ETCDCTL, "--endpoints", ",".join(endpoints or self.endpoints), *args],
                              env=env, capture_output=True, text=True, timeout=timeout, check=check)

    def healthy(self, members: list[Member] | None = None) -> bool:
        eps = [m.endpoint for m in (members or self.members)]
        return self.etcdctl("endpoint", "health", endpoints=eps, check=False, timeout=10).returncode == 0

    def wait_healthy(self, timeout: float = 30.0, members: list[Member] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy(members):
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd cluster not healthy after {timeout} s (logs in {self.directory})")
            time.sleep(0.1)

    def leader(self) -> Member:
        """The member that is the Raft leader now."""
        alive = [m for m in self.members if m.process is not None and m.process.poll() is None]
        out = self.etcdctl("endpoint", "status", "-w", "json", endpoints=[m.endpoint for m in alive]).stdout
        for status in json.loads(out):
            if status["Status"]["header"]["member_id"] == status["Status"]["leader"]:
                return next(m for m in alive if status["Endpoint"].endswith(m.endpoint))
        raise RuntimeError("no leader")

    def __enter__(self) -> EtcdCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info) -> None:
        self.stop()
