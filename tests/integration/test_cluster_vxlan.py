"""The overlay data plane executor (netcore.cluster.dataplane_netlink) in namespaces, as the recipe builds it:
three host namespaces on an underlay bridge, a VXLAN device and bridge in each, one container per host; the
executor programs FDB and permanent neighbour entries from the remote endpoints, and the containers ping.

Every address here (192.0.2.0/24 underlay, 10.200.0.0/24 overlay) exists only inside the test's namespaces;
veths are created inside a namespace with the peer born in the other, so the host namespace never sees one.
"""

from __future__ import annotations

import secrets
import subprocess

import pytest

from netcore.cluster.dataplane import FdbEntry, NeighEntry, RemoteEndpoint
from netcore.cluster.dataplane_netlink import DataplaneError, VxlanDataplane
from netcore.kernel.netlink import namespace_exists

VNI = 4242
GATEWAY_MAC = "02:42:0a:c8:00:01"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def ping(namespace: str, address: str, size: int | None = None) -> subprocess.CompletedProcess:
    argv = ["ip", "netns", "exec", namespace, "ping", "-c", "1", "-W", "2"]
    if size is not None:
        argv += ["-M", "do", "-s", str(size)]
    return subprocess.run([*argv, address], capture_output=True, text=True, timeout=30)


class Overlay:
    """Three hosts (``PREFIX-hN``) on an underlay (``PREFIX-ul``), a container (``PREFIX-cN``) on each."""

    def __init__(self):
        self.prefix = f"nci27{secrets.token_hex(3)}"
        self.underlay = f"{self.prefix}-ul"
        self.hosts = [f"{self.prefix}-h{n}" for n in (1, 2, 3)]
        self.containers = [f"{self.prefix}-c{n}" for n in (1, 2, 3)]
        self.vteps = [f"192.0.2.1{n}" for n in (1, 2, 3)]
        self.addresses = [f"10.200.0.1{n}" for n in (1, 2, 3)]
        self.macs = ["02:42:" + ":".join(f"{int(b):02x}" for b in a.split(".")) for a in self.addresses]

    def namespaces(self) -> list[str]:
        return [self.underlay, *self.hosts, *self.containers]

    def build(self) -> None:
        for namespace in self.namespaces():
            ip("netns", "add", namespace)
            ip("-n", namespace, "link", "set", "lo", "up")
        ip("-n", self.underlay, "link", "add", "br-ul", "type", "bridge")
        ip("-n", self.underlay, "link", "set", "br-ul", "up")
        for n, (host, container) in enumerate(zip(self.hosts, self.containers, strict=True)):
            ip("-n", self.underlay, "link", "add", f"ul-h{n}", "type", "veth", "peer", "name", "ul0", "netns", host)
            ip("-n", self.underlay, "link", "set", f"ul-h{n}", "master", "br-ul", "up")
            ip("-n", host, "addr", "add", f"{self.vteps[n]}/24", "dev", "ul0")
            ip("-n", host, "link", "set", "ul0", "up")
            ip("-n", host, "link", "add", "br0", "address", GATEWAY_MAC, "type", "bridge")
            ip("-n", host, "addr", "add", "10.200.0.1/24", "dev", "br0")
            ip("-n", host, "link", "add", f"vx{VNI}", "mtu", "1450", "type", "vxlan", "id", str(VNI), "dstport",
               "4789", "local", self.vteps[n], "dev", "ul0", "nolearning", "proxy")
            ip("-n", host, "link", "set", f"vx{VNI}", "master", "br0", "up")
            ip("-n", host, "link", "add", "vc", "mtu", "1450", "type", "veth", "peer", "name", "eth0", "netns",
               container)
            ip("-n", host, "link", "set", "vc", "master", "br0", "up")
            ip("-n", host, "link", "set", "br0", "up")
            ip("-n", container, "link", "set", "eth0", "address", self.macs[n], "mtu", "1450", "up")
            ip("-n", container, "addr", "add", f"{self.addresses[n]}/24", "dev", "eth0")
            ip("-n", container, "route", "add", "default", "via", "10.200.0.1")

    def remote_of(self, n: int, hosts=(0, 1, 2)) -> list[RemoteEndpoint]:
        """What host ``n`` must reach: the other hosts' containers (of those in ``hosts``)."""
        return [RemoteEndpoint(self.addresses[m], self.macs[m], self.vteps[m]) for m in hosts if m != n]

    def teardown(self) -> None:
        for namespace in self.namespaces():
            subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, timeout=30)


@pytest.fixture
def overlay():
    world = Overlay()
    try:
        world.build()
        yield world
    finally:
        world.teardown()
        assert not any(namespace_exists(n) for n in world.namespaces()), "teardown leaked namespaces"


def test_programmed_entries_carry_pings_across_hosts_and_removal_takes_them_away(overlay):
    # nothing programmed: no ARP crosses the overlay (proxy, no flooding), so nothing gets through
    assert ping(overlay.containers[0], overlay.addresses[1]).returncode != 0
    # that ping's unanswered ARP entry may still be resolving (3 probes, a second apart) when the next ping
    # starts and fail it at once ("Destination Host Unreachable"): begin the programmed part from a clean cache
    subprocess.run(["ip", "-n", overlay.containers[0], "neigh", "flush", "all"], check=True)
    planes = [VxlanDataplane(host, f"vx{VNI}") for host in overlay.hosts]
    try:
        for n, plane in enumerate(planes):
            applied = plane.reconcile(overlay.remote_of(n))
            assert len(applied.fdb_replace) == 2 and len(applied.neigh_replace) == 2
            assert plane.reconcile(overlay.remote_of(n)).empty  # read back from the kernel: nothing left to do
        fdb, neighbours = planes[0].read()
        assert sorted(fdb) == [FdbEntry(overlay.macs[1], overlay.vteps[1]), FdbEntry(overlay.macs[2], overlay.vteps[2])]
        assert sorted(neighbours) == [NeighEntry(overlay.addresses[1], overlay.macs[1]),
                                      NeighEntry(overlay.addresses[2], overlay.macs[2])]
        for a in range(3):
            for b in range(3):
                if a != b:
                    result = ping(overlay.containers[a], overlay.addresses[b])
                    assert result.returncode == 0, result.stdout + result.stderr
        # the overlay's MTU: 1422 bytes of payload fit in 1450 with DF, 1472 do not
        assert ping(overlay.containers[0], overlay.addresses[2], size=1422).returncode == 0
        too_big = ping(overlay.containers[0], overlay.addresses[2], size=1472)
        assert too_big.returncode != 0 and "message too long" in (too_big.stdout + too_big.stderr).lower()
        # host 3's container is gone: the other hosts drop its entries, and it is unreachable
        for n in (0, 1):
            applied = planes[n].reconcile(overlay.remote_of(n, hosts=(0, 1)))
            assert applied.fdb_delete == (FdbEntry(overlay.macs[2], overlay.vteps[2]),)
            assert applied.neigh_delete == (NeighEntry(overlay.addresses[2], overlay.macs[2]),)
        fdb, neighbours = planes[0].read()
        assert fdb == [FdbEntry(overlay.macs[1], overlay.vteps[1])]
        assert neighbours == [NeighEntry(overlay.addresses[1], overlay.macs[1])]
        assert ping(overlay.containers[0], overlay.addresses[2]).returncode != 0
        assert ping(overlay.containers[0], overlay.addresses[1]).returncode == 0
    finally:
        for plane in planes:
            plane.close()


def test_a_stale_entry_left_in_the_kernel_is_repaired_from_the_kernel_not_from_memory(overlay):
    with VxlanDataplane(overlay.hosts[0], f"vx{VNI}") as plane:
        plane.reconcile(overlay.remote_of(0))
        # someone (a crashed earlier run) left a flooding entry and pointed host 2's MAC at a wrong VTEP
        subprocess.run(["bridge", "-n", overlay.hosts[0], "fdb", "append", "00:00:00:00:00:00", "dev", f"vx{VNI}",
                        "dst", "192.0.2.99"], check=True, capture_output=True, timeout=30)
        subprocess.run(["bridge", "-n", overlay.hosts[0], "fdb", "replace", overlay.macs[1], "dev", f"vx{VNI}",
                        "dst", "192.0.2.98", "self", "permanent"], check=True, capture_output=True, timeout=30)
        applied = plane.reconcile(overlay.remote_of(0))
        assert FdbEntry("00:00:00:00:00:00", "192.0.2.99") in applied.fdb_delete
        assert FdbEntry(overlay.macs[1], overlay.vteps[1]) in applied.fdb_replace
        assert sorted(plane.read()[0]) == [FdbEntry(overlay.macs[1], overlay.vteps[1]),
                                           FdbEntry(overlay.macs[2], overlay.vteps[2])]


def test_a_missing_device_is_one_clear_error(overlay):
    with VxlanDataplane(overlay.hosts[0], "vx-none") as plane, pytest.raises(DataplaneError, match="no such device"):
        plane.read()
