"""Real Podman 4.3 with its CNI backend, netcore-dns chained after bridge, and Debian's dnsname as the reference
(issue 29).

Podman runs under ``nsenter`` into a ``CniBox`` (its network namespace and its
mount namespace: a resolv.conf naming the box's fake upstream, dnsname's files
on a private tmpfs), with ``--network-backend cni``, a private CNI config
directory, private storage (``--root``, ``--runroot``, ``--tmpdir`` in the
box's directory) and a containers.conf naming the plugin directories: nothing
global is read or written but libcni's result cache (``/var/lib/cni``, keyed by
the unique container IDs and emptied by DEL). Clients are dig in the
containers' namespaces and busybox nslookup inside them (through the
resolv.conf Podman wrote from the chain's result).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.support.cni_runtime import CNI_DIR, CniBox, dig, unavailable

REASON = unavailable("dnsname") or (None if shutil.which("podman") and shutil.which("runc") and
                                    os.path.exists("/bin/busybox") else "podman, runc or busybox-static missing")
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")
LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")  # Podman's defaults exceed this machine's
APPLETS = ("sh", "nslookup", "sleep", "cat")


class PodmanCni:
    """Podman with the CNI backend inside a CniBox, its storage and CNI configuration private to it."""

    def __init__(self, box: CniBox, dns_plugin: str):
        self.box = box
        self.dns_plugin = dns_plugin
        self.dir = os.path.join(box.workdir, "podman")
        self.config_dir = os.path.join(self.dir, "cni")
        for sub in ("root", "runroot", "tmp", "cni"):
            os.makedirs(os.path.join(self.dir, sub))
        conf = os.path.join(self.dir, "containers.conf")
        with open(conf, "w") as out:
            out.write(f'[network]\nnetwork_backend = "cni"\ncni_plugin_dirs = {json.dumps([box.plugin_dir, CNI_DIR])}\n'
                      f'network_config_dir = "{self.config_dir}"\n')
        self.env = {**os.environ, "CONTAINERS_CONF": conf}
        self.image = f"localhost/{box.prefix}:1"
        self._import_image()

    def podman(self, *args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess:
        command = [*self.box.enter, "podman", "--root", f"{self.dir}/root", "--runroot", f"{self.dir}/runroot",
                   "--tmpdir", f"{self.dir}/tmp", "--network-backend", "cni", "--cni-config-dir", self.config_dir,
                   "--runtime", "runc", "--cgroup-manager=cgroupfs", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def _import_image(self) -> None:
        rootfs = os.path.join(self.dir, "rootfs")
        for sub in ("bin", "etc", "proc", "sys", "dev", "tmp"):
            os.makedirs(os.path.join(rootfs, sub))
        shutil.copy("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
        for applet in APPLETS:
            os.symlink("busybox", os.path.join(rootfs, "bin", applet))
        archive = os.path.join(self.dir, "rootfs.tar")
        subprocess.run(["tar", "-C", rootfs, "-cf", archive, "."], check=True)
        self.podman("import", "-q", archive, self.image)

    def network(self, name: str, subnet: str) -> str:
        """A conflist for NAME (box-prefixed): bridge + host-local, then the DNS plugin, as Podman's own
        CNI networks with dnsname look; returns the full name."""
        full = f"{self.box.prefix}{name}"
        plugins = [{"type": "bridge", "bridge": full[:15], "isGateway": True, "ipMasq": False, "hairpinMode": True,
                    "ipam": {"type": "host-local", "dataDir": self.box.ipam_dir,
                             "ranges": [[{"subnet": subnet, "gateway": subnet.replace("0/24", "1")}]],
                             "routes": [{"dst": "0.0.0.0/0"}]}}]
        if self.dns_plugin == "netcore-dns":
            plugins.append({"type": "netcore-dns", "domainName": "dns.podman", "capabilities": {"aliases": True}})
        else:
            plugins.append({"type": "dnsname", "domainName": "dns.podman", "capabilities": {"aliases": True}})
        with open(os.path.join(self.config_dir, f"{full}.conflist"), "w") as out:
            json.dump({"cniVersion": "1.0.0", "name": full, "plugins": plugins}, out)
        return full

    def run(self, name: str, network: str, *aliases: str) -> str:
        full = f"{self.box.prefix}-{name}"
        args = ["run", "-d", *LIMITS, "--name", full, "--network", network]
        for alias in aliases:
            args += ["--network-alias", alias]
        self.podman(*args, self.image, "sleep", "600")
        return full

    def netns(self, container: str) -> str:
        return self.podman("inspect", "-f", "{{.NetworkSettings.SandboxKey}}", container).stdout.strip()

    def close(self) -> None:
        self.podman("rm", "-a", "-f", "-t", "0", check=False, timeout=180)
        self.podman("rmi", "-a", "-f", check=False)
        subprocess.run(["umount", "-R", f"{self.dir}/root/overlay"], capture_output=True, check=False)


@pytest.fixture(params=["netcore-dns", "dnsname"])
def podman(request):
    box = CniBox()
    pod = None
    try:
        pod = PodmanCni(box, request.param)
        yield pod
    finally:
        if pod is not None:
            pod.close()
        box.close()
        assert box.leftovers() == []


def test_podman_cni_names_aliases_connect_disconnect_rm_isolation(podman):
    one = podman.network("one", "10.93.0.0/24")
    two = podman.network("two", "10.94.0.0/24")
    web = podman.run("web", one, "www")
    db = podman.run("db", two)
    client = podman.run("client", one)
    client_ns = podman.netns(client)
    gateway_one, gateway_two = "10.93.0.1", "10.94.0.1"
    assert dig(podman.box, client_ns, gateway_one, web) == ["10.93.0.2"]
    assert dig(podman.box, client_ns, gateway_one, "www") == ["10.93.0.2"]
    # inside the container, through the resolv.conf Podman wrote from the chain's result
    lookup = podman.podman("exec", client, "nslookup", "www.dns.podman").stdout
    assert "10.93.0.2" in lookup
    resolv = podman.podman("exec", client, "cat", "/etc/resolv.conf").stdout
    assert resolv.split("nameserver ")[1].split()[0] == gateway_one
    # isolation: "two"'s container is not answered on "one"
    assert dig(podman.box, client_ns, gateway_one, db) == []
    # connect: seen at once on the new network; disconnect: gone at once
    podman.podman("network", "connect", two, web)
    db_ns = podman.netns(db)
    assert dig(podman.box, db_ns, gateway_two, web) == ["10.94.0.3"]
    podman.podman("network", "disconnect", two, web)
    assert dig(podman.box, db_ns, gateway_two, web) == []
    # rm: gone at once
    podman.podman("rm", "-f", "-t", "0", web)
    assert dig(podman.box, client_ns, gateway_one, web) == []
    assert dig(podman.box, client_ns, gateway_one, "www") == []


def test_podman_cni_container_on_two_networks(podman):
    """dnsd answers a container on two networks the names of both on its first nameserver; dnsname's dnsmasq
    (one per network) knows only its own network's (documented in docs/cni.md)."""
    one = podman.network("one", "10.95.0.0/24")
    two = podman.network("two", "10.96.0.0/24")
    podman.run("a", one)
    b = podman.run("b", two)
    both = f"{podman.box.prefix}-both"
    podman.podman("run", "-d", *LIMITS, "--name", both, "--network", f"{one},{two}", podman.image, "sleep", "600")
    both_ns = podman.netns(both)
    answer = dig(podman.box, both_ns, "10.95.0.1", b)
    assert answer == (["10.96.0.2"] if podman.dns_plugin == "netcore-dns" else [])
    assert dig(podman.box, both_ns, "10.96.0.1", b) == ["10.96.0.2"]
