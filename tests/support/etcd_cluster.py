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


def _free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now (held open together so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


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
        ports = _free_ports(2 * size)
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
