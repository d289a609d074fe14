"""A sandbox for root-only tests, demos and soaks: its own gateway namespace, state dir and prefix.

Everything it makes carries the prefix; `cleanup` runs `netcore purge` and then
deletes, as a safety net, anything left with that prefix: namespaces,
/etc/netns entries, the dnsd netcore started for this state dir and its
supervisor, and the processes the sandbox itself started (by PID).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from netcore.agent.client import PID_NAME as AGENT_PID_NAME
from netcore.agent.processes import processes_in
from netcore.dnsd_protocol import PID_NAME, SUPERVISOR_PID_NAME
from netcore.dnsd_protocol.control import is_dnsd_process
from netcore.system.holders import TABLES, TCP_LISTEN, parse_table
from netcore.system.linux import NETNS_DIR
from netcore.system.processes import runs_module

# the checkout this module is part of: its netcore runs in the subprocesses (PYTHONPATH), as it runs here, where
# tests.support imports from the same root (pytest's pythonpath, or .venv's editable install for bench scripts)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class Sandbox:
    prefix: str
    state_dir: str
    started: list = field(default_factory=list)

    @property
    def env(self) -> dict:
        env = dict(os.environ, NETCORE_NETNS=self.prefix, NETCORE_STATE_DIR=self.state_dir)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def nc(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run the netcore CLI as a user would."""
        proc = subprocess.run([sys.executable, "-m", "netcore", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"netcore {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "netcore", *args], env=self.env, **kw)
        self.started.append(proc)
        return proc

    def exec(self, container: str, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return self.nc("exec", container, "--", *argv, check=check, timeout=timeout)

    def spawn_in(self, namespace: str, *argv: str, **kw) -> subprocess.Popen:
        """A helper process (fake upstream, load generator) inside one of the sandbox's namespaces."""
        proc = subprocess.Popen(["ip", "netns", "exec", namespace, *argv], **kw)
        self.started.append(proc)
        return proc

    def dnsd_pid(self) -> int | None:
        """The serving dnsd's pid, from its pid file (what `ping` on the control socket reports)."""
        return self._read_pid(PID_NAME)

    def held_ports(self) -> set[str]:
        """The published host ports netcored holds, as the kernel shows them: the sockets of its process in the
        gateway namespace (``tcp 0.0.0.0:8080``, TCP listening), read from the namespace's /proc/net tables."""
        pid = self.agent_pid()
        if pid is None:
            return set()
        inodes = set()
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        inodes.add(int(target[8:-1]))
        except OSError:
            return set()
        held = set()
        for table in TABLES:
            text = subprocess.run(["ip", "netns", "exec", self.prefix, "cat", f"/proc/net/{table}"],
                                  capture_output=True, text=True).stdout
            protocol = table.rstrip("6")
            for found in parse_table(protocol, text):
                if found.inode in inodes and (protocol == "udp" or found.state == TCP_LISTEN):
                    address = f"[{found.address}]" if found.address.version == 6 else str(found.address)
                    held.add(f"{protocol} {address}:{found.port}")
        return held

    def agent_pid(self) -> int | None:
        """The pid of the sandbox's netcored, from its pid file."""
        return self._read_pid(AGENT_PID_NAME)

    def supervisor_pid(self) -> int | None:
        """The pid of dnsd's supervisor, from its pid file."""
        return self._read_pid(SUPERVISOR_PID_NAME)

    def _read_pid(self, name: str) -> int | None:
        try:
            with open(os.path.join(self.state_dir, name)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def neighbour(self, suffix: str, host_ifname: str, host_address: str, address: str) -> str:
        """A namespace ``PREFIX+suffix`` joined to the gateway namespace by a veth (``host_ifname`` there,
        with ``host_address``; ``eth0`` in the new one, with ``address``; both /24, up): the LAN or WAN
        next to the host. Returns its name; cleanup deletes it with the sandbox's other namespaces."""
        name = f"{self.prefix}{suffix}"
        for argv in (["ip", "netns", "add", name],
                     ["ip", "-n", self.prefix, "link", "add", host_ifname, "type", "veth", "peer", "name", "eth0",
                      "netns", name],
                     ["ip", "-n", self.prefix, "addr", "add", f"{host_address}/24", "dev", host_ifname],
                     ["ip", "-n", self.prefix, "link", "set", host_ifname, "up"],
                     ["ip", "-n", name, "addr", "add", f"{address}/24", "dev", "eth0"],
                     ["ip", "-n", name, "link", "set", "eth0", "up"],
                     ["ip", "-n", name, "link", "set", "lo", "up"]):
            subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        return name

    def namespaces(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(self.prefix))
        except FileNotFoundError:
            return []


def cleanup(box: Sandbox) -> None:
    for proc in box.started:  # only the processes this test started, by PID
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    supervisor, pid, agent = box.supervisor_pid(), box.dnsd_pid(), box.agent_pid()
    subprocess.run([sys.executable, "-m", "netcore", "purge"], env=box.env, capture_output=True, timeout=60)
    agent = agent or box.agent_pid()  # purge started one
    if agent and runs_module(agent, "netcore.agent", box.state_dir):  # purge stops it; a safety net
        os.kill(agent, signal.SIGKILL)
    # the supervisor first, or it would start the dnsd killed next anew
    if supervisor and is_dnsd_process(supervisor, box.state_dir, supervisor=True):
        os.kill(supervisor, signal.SIGKILL)
    if pid and is_dnsd_process(pid, box.state_dir):
        os.kill(pid, signal.SIGKILL)
    for name in box.namespaces():
        if name != box.prefix:  # containers' main processes purge did not stop (a safety net: purge does)
            for pid in processes_in(name):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    if os.path.isdir("/etc/netns"):
        for name in os.listdir("/etc/netns"):
            if name.startswith(box.prefix):
                shutil.rmtree(os.path.join("/etc/netns", name), ignore_errors=True)
    shutil.rmtree(box.state_dir, ignore_errors=True)


# The sandbox's own resolv.conf, as /etc/netns/<prefix>/resolv.conf: what netcore copies into a container on the
# default bridge (issue 23, item 5), so no test's container names the machine's own name servers. 127.0.0.1 is
# left out (loopback), 172.17.0.1 is the default bridge's gateway in the sandbox's gateway namespace, where
# nothing listens on port 53: a lookup there stays inside the sandbox, and fails within a second (the firewall
# may drop it rather than refuse it: timeout:1 attempts:1, which netcore copies with the servers).
SANDBOX_RESOLV_CONF = "nameserver 127.0.0.1\nnameserver 172.17.0.1\nsearch sandbox.test\noptions timeout:1 attempts:1\n"


def new_sandbox(prefix: str = "nct", state_dir: str | None = None) -> Sandbox:
    box = Sandbox(prefix=f"{prefix}{secrets.token_hex(3)}", state_dir=state_dir or tempfile.mkdtemp(prefix="netcore-"))
    os.makedirs(os.path.join("/etc/netns", box.prefix), exist_ok=True)  # cleanup removes it
    with open(os.path.join("/etc/netns", box.prefix, "resolv.conf"), "w") as f:
        f.write(SANDBOX_RESOLV_CONF)
    return box


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02):
    """Poll for an external process to be ready (never used to wait for dnsd to catch up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
