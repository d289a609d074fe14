"""Real Podman containers inside a sandbox namespace (the recipe of ../shared/notes/podman-in-a-sandbox.md).

A ``PodmanBox`` owns: a network namespace where netavark builds its bridges,
firewall rules and starts its DNS server; a mount namespace, held by a
``sleep`` process, with a private tmpfs on /run/containers/networks (netavark's
state: the DNS server's config and pid file, which two boxes would otherwise
share) and its own /etc/resolv.conf (the DNS servers' default upstream: a fake
one inside the sandbox, never the host's); a containers.conf naming the
helper directory (dnsd's or Debian's aardvark-dns) and the netavark backend.
Podman runs under ``nsenter`` into both namespaces. Every container and
network is named with the box's prefix and removed in ``close``, as are the
namespaces, the processes it started and the image it imported.

Used by tests/integration/test_podman.py and bench/podman.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

AARDVARK = "/usr/lib/podman/aardvark-dns"
NETAVARK = "/usr/lib/podman/netavark"
UPSTREAM_ADDRESS = "192.0.2.53"  # TEST-NET-1, on the sandbox's loopback link: the resolv.conf nameserver
LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")  # Podman's defaults exceed this machine's
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUSYBOX_APPLETS = ("sh", "ping", "nslookup", "sleep", "cat", "hostname", "ip", "wget", "nc", "true")


def unavailable() -> str | None:
    """Why real Podman cannot run here (one line), or None."""
    if os.geteuid() != 0:
        return "Podman tests need root"
    for tool in ("podman", "unshare", "nsenter", "runc", "busybox"):
        if shutil.which(tool) is None and not os.path.exists(f"/bin/{tool}"):
            return f"{tool} is not installed (.ci/setup installs podman, runc, busybox-static)"
    for path in (NETAVARK, AARDVARK):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt-get install netavark aardvark-dns)"
    with open(shutil.which("busybox") or "/bin/busybox", "rb") as busybox:
        if b"ld-linux" in busybox.read(4096):  # a dynamic one has an interpreter: it cannot run alone in the image
            return "busybox is dynamically linked (apt-get install busybox-static)"
    return None


def import_busybox_image(tag: str, workdir: str) -> str:
    """``podman import`` of a root filesystem holding one static busybox; returns the image name."""
    rootfs = os.path.join(workdir, "rootfs")
    for sub in ("bin", "etc", "proc", "sys", "dev", "tmp"):
        os.makedirs(os.path.join(rootfs, sub), exist_ok=True)
    busybox = shutil.which("busybox") or "/bin/busybox"
    shutil.copy(busybox, os.path.join(rootfs, "bin", "busybox"))
    for applet in BUSYBOX_APPLETS:
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    archive = os.path.join(workdir, "rootfs.tar")
    subprocess.run(["tar", "-C", rootfs, "-cf", archive, "."], check=True)
    subprocess.run(["podman", "import", "-q", archive, tag], check=True, capture_output=True, timeout=120)
    return tag


def remove_image(tag: str) -> None:
    subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, timeout=120)


class PodmanBox:
    """One sandbox for Podman; ``server`` is "dnsd" (dnsd's helper dir first) or "aardvark" (Debian's).

    ``upstream_options`` go to the fake upstream (fake_upstream.py: ``--answer NAME=IP``, ``--drop NAME``).
    """

    def __init__(self, server: str, image: str, prefix: str | None = None, upstream_options: tuple[str, ...] = ()):
        self.server = server
        self.upstream_options = upstream_options
        self.image = image
        self.prefix = prefix or f"pdm{uuid.uuid4().hex[:6]}"
        self.netns = self.prefix
        self.netns_path = f"/run/netns/{self.netns}"
        self.workdir = tempfile.mkdtemp(prefix=f"{self.prefix}-")
        self.holder: subprocess.Popen | None = None
        self.upstream: subprocess.Popen | None = None
        self.started_servers: set[int] = set()  # DNS server pids seen, stopped in close if still alive
        self.networks: list[str] = []
        try:
            self._set_up()
        except BaseException:
            self.close()
            raise

    def _set_up(self) -> None:
        helpers = [os.path.dirname(AARDVARK)]  # Podman finds netavark there too
        if self.server == "dnsd":
            helper = subprocess.run([sys.executable, "-m", "dnsd", "podman-helper-dir",
                                     os.path.join(self.workdir, "helper")], check=True, text=True,
                                    capture_output=True, env={**os.environ, "PYTHONPATH": REPO}).stdout.strip()
            helpers.insert(0, helper)
        conf = os.path.join(self.workdir, "containers.conf")
        with open(conf, "w") as out:
            out.write(f"[engine]\nhelper_binaries_dir = {json.dumps(helpers)}\n"
                      '[network]\nnetwork_backend = "netavark"\n')
        self.env = {**os.environ, "CONTAINERS_CONF": conf, "PYTHONPATH": REPO}
        resolv = os.path.join(self.workdir, "resolv.conf")
        with open(resolv, "w") as out:
            out.write(f"nameserver {UPSTREAM_ADDRESS}\n")
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        self.ip("link", "set", "lo", "up")
        self.ip("addr", "add", f"{UPSTREAM_ADDRESS}/32", "dev", "lo")
        self.upstream = subprocess.Popen(
            ["nsenter", f"--net={self.netns_path}", sys.executable, os.path.join(HERE, "fake_upstream.py"),
             "--address", UPSTREAM_ADDRESS, "--nxdomain-unknown", *self.upstream_options],
            stdout=subprocess.PIPE, text=True)
        assert self.upstream.stdout.readline().strip() == "ready"
        os.makedirs("/run/containers/networks", exist_ok=True)
        # / is private on this machine and /run/netns shared: "unchanged" keeps it so (containers' namespaces
        # stay visible to all), while the tmpfs and the resolv.conf bind mount stay in this mount namespace
        self.holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "unchanged", "sh", "-c",
             f"mount -t tmpfs tmpfs /run/containers/networks && mount --bind {resolv} /etc/resolv.conf "
             "&& echo ready && exec sleep infinity"], stdout=subprocess.PIPE, text=True)
        assert self.holder.stdout.readline().strip() == "ready"

    # -- commands ---------------------------------------------------------------

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", "-n", self.netns, *args], check=True)

    def podman(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Podman inside the box's namespaces; stderr's CNI warnings (Debian ships a CNI config) dropped."""
        command = ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", f"--net={self.netns_path}",
                   "podman", "--runtime", "runc", "--cgroup-manager=cgroupfs", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=self.env)
        result.stderr = "\n".join(line for line in result.stderr.splitlines() if "CNI" not in line)
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        self._note_server()
        return result

    def network_create(self, name: str, *options: str) -> str:
        full = f"{self.prefix}-{name}"
        self.podman("network", "create", *options, full)
        self.networks.append(full)
        return full

    def run(self, name: str, *networks: str, aliases: tuple[str, ...] = (), options: tuple[str, ...] = (),
            command: tuple[str, ...] = ("sleep", "3600")) -> str:
        """A detached container on these networks (full names); returns its full name."""
        full = f"{self.prefix}-{name}"
        args = ["run", "-d", *LIMITS, "--name", full, "--network", ",".join(networks)]
        for alias in aliases:
            args += ["--network-alias", alias]
        self.podman(*args, *options, self.image, *command)
        return full

    def exec(self, container: str, *argv: str, check: bool = False) -> subprocess.CompletedProcess:
        return self.podman("exec", container, *argv, check=check)

    def address(self, container: str, network: str) -> str:
        out = self.podman("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}',
                          container).stdout
        return out.strip()

    def container_netns(self, container: str) -> str:
        return self.podman("inspect", "-f", "{{.NetworkSettings.SandboxKey}}", container).stdout.strip()

    def gateway(self, network: str) -> str:
        info = json.loads(self.podman("network", "inspect", network).stdout)[0]
        return info["subnets"][0]["gateway"]

    def bridge(self, network: str) -> str:
        return json.loads(self.podman("network", "inspect", network).stdout)[0]["network_interface"]

    def pin_bridge_mac(self, network: str) -> None:
        """Keep the bridge's MAC as it is now: netavark 1.4 lets the kernel take the lowest port's, so a port that
        comes or goes can change it and containers lose packets to the gateway until their ARP entry is renewed
        (whatever DNS server runs; ../shared/notes/podman-in-a-sandbox.md). Call it once the first container is up."""
        bridge = self.bridge(network)
        mac = subprocess.run(["ip", "-n", self.netns, "-j", "link", "show", bridge], check=True,
                             capture_output=True, text=True).stdout
        self.ip("link", "set", "dev", bridge, "address", json.loads(mac)[0]["address"])

    # -- the DNS server netavark started ----------------------------------------

    @property
    def config_dir(self) -> str:
        return f"/proc/{self.holder.pid}/root/run/containers/networks/aardvark-dns"

    def server_pid(self) -> int | None:
        """The pid in the DNS server's pid file, as netavark reads it; None without one."""
        try:
            with open(os.path.join(self.config_dir, "aardvark.pid")) as pid_file:
                return int(pid_file.read())
        except (OSError, ValueError):
            return None

    def _note_server(self) -> None:
        pid = self.server_pid()
        if pid is not None:
            self.started_servers.add(pid)

    def query(self, name: str, server: str, qtype: str = "A", source_netns: str | None = None,
              timeout: float = 2.0, family: int = socket.AF_INET):
        """One UDP query from the sandbox namespace (or ``source_netns``'s path) → dnslib.DNSRecord, or None."""
        from dnslib import DNSRecord

        with self.socket(source_netns, family) as sock:
            sock.settimeout(timeout)
            sock.sendto(DNSRecord.question(name, qtype).pack(), (server, 53))
            try:
                return DNSRecord.parse(sock.recv(4096))
            except TimeoutError:
                return None

    def socket(self, source_netns: str | None = None, family: int = socket.AF_INET) -> socket.socket:
        """A UDP socket that lives in the sandbox namespace (or the namespace at ``source_netns``)."""
        from netcore.system.linux import entered_netns

        with entered_netns(source_netns or self.netns_path):
            return socket.socket(family, socket.SOCK_DGRAM)

    # -- teardown ---------------------------------------------------------------

    def close(self) -> None:
        """Remove every container and network of the box, stop what it started, delete its namespaces."""
        if self.holder is not None and self.holder.poll() is None:
            names = self.podman("ps", "-a", "--format", "{{.Names}}", check=False).stdout.split()
            mine = [name for name in names if name.startswith(f"{self.prefix}-")]
            if mine:
                self.podman("rm", "-f", "-t", "0", *mine, check=False, timeout=120)
            if self.networks:
                self.podman("network", "rm", "-f", *self.networks, check=False)
            deadline = time.monotonic() + 5
            while self.server_pid() is not None and time.monotonic() < deadline:
                time.sleep(0.05)
        for pid in self.started_servers:  # netavark stops its DNS server with the last network; a straggler is ours
            if _in_netns(pid, self.netns_path):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for process in (self.holder, self.upstream):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        if os.path.exists(self.netns_path):
            subprocess.run(["ip", "netns", "del", self.netns], check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _in_netns(pid: int, path: str) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(path).st_ino
    except OSError:
        return False
