"""macvlan (and ipvlan) networks against the real kernel, in sandboxes joined by a "LAN" namespace.

The LAN is a namespace (``<prefix>lan``: the sandbox's prefix, so its cleanup
deletes it, but not ``<prefix>-``, which netcore sweeps as its own) holding a
bridge with the LAN router's address. Each node is a sandbox whose gateway
namespace is made here, before netcore's first command, with a veth ``eth0``
whose peer is a port of the LAN bridge: the parent a user would name, and no
physical NIC needed. A LAN port must accept several MACs (every container's
and the shim's): a Linux bridge learns them all, as a switch without port
security does.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netcore.kernel import netlink
from netcore.kernel.netlink import KernelError, configure_container_interface
from tests.support.sandbox import cleanup, new_sandbox
from tests.support.upstream import FAKE_UPSTREAM

SUBNET = "192.168.77.0/24"
ROUTER = "192.168.77.1"
LAN_BRIDGE = "lan0"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def lan_namespace(box) -> str:
    return f"{box.prefix}lan"


def make_lan(box) -> str:
    """The LAN namespace: a bridge holding the router's address."""
    lan = lan_namespace(box)
    ip("netns", "add", lan)
    ip("-n", lan, "link", "add", LAN_BRIDGE, "type", "bridge")
    ip("-n", lan, "addr", "add", f"{ROUTER}/24", "dev", LAN_BRIDGE)
    ip("-n", lan, "link", "set", LAN_BRIDGE, "up")
    return lan


def plug(box, lan: str, port: str) -> None:
    """The node's gateway namespace, made here, with ``eth0`` cabled to ``port`` of the LAN bridge."""
    ip("netns", "add", box.prefix)
    ip("-n", lan, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", box.prefix)
    ip("-n", lan, "link", "set", port, "master", LAN_BRIDGE, "up")
    ip("-n", box.prefix, "link", "set", "eth0", "up")


def in_ns(namespace: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", namespace, *argv], capture_output=True, text=True, timeout=timeout)


def pings(box, container: str, address: str) -> bool:
    return box.exec(container, "ping", "-c1", "-W1", address, check=False).returncode == 0


def gateway_links(box) -> dict[str, dict]:
    """Every link of the node's gateway namespace: kind, state, MTU, MAC, addresses (no link-local)."""
    with IPRoute(netns=box.prefix) as ipr:
        raw = list(ipr.link("dump"))
        by_index = {link["index"]: link.get("ifname") for link in raw}
        found = {link.get("ifname"): {"kind": link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")), "mtu": link.get("mtu"),
                                      "mac": link.get("address"), "up": bool(link["flags"] & 1), "addresses": []}
                 for link in raw}
        for addr in ipr.addr("dump"):
            if not addr.get("address", "").startswith("fe80:"):
                found[by_index[addr["index"]]]["addresses"].append(f"{addr.get('address')}/{addr['prefixlen']}")
    return found


def network_id(box, name: str) -> str:
    return json.loads(box.nc("network", "inspect", name).stdout)[0]["Id"]


def create_macvlan(box, ip_range: str, *options: str, name: str = "my_macvlan") -> str:
    return box.nc("network", "create", "-d", "macvlan", "--subnet", SUBNET, "--ip-range", ip_range,
                  "--gateway", ROUTER, "-o", "parent=eth0", *(f"-o{o}" for o in options), name).stdout.strip()


@pytest.fixture
def node01(sandbox):
    """One node on the LAN (port n1)."""
    lan = make_lan(sandbox)
    plug(sandbox, lan, "n1")
    return sandbox


@pytest.fixture
def node02(node01, tmp_path_factory):
    """A second node on node01's LAN (port n2): its own gateway namespace and state dir."""
    box = new_sandbox(state_dir=str(tmp_path_factory.mktemp("state02")))
    try:
        plug(box, lan_namespace(node01), "n2")
        yield box
    finally:
        cleanup(box)
        assert box.namespaces() == [], "teardown leaked namespaces"


def test_two_nodes_on_one_lan_reach_each_other_and_the_router(node01, node02):
    """The seed's scenario: my_macvlan on each node, its own --ip-range; c1 (node01) and c2 (node02)."""
    create_macvlan(node01, "192.168.77.64/28", "macvlan_mode=bridge")
    create_macvlan(node02, "192.168.77.128/28", "macvlan_mode=bridge")
    node01.nc("run", "--name", "c1", "--hostname", "c1", "--net", "my_macvlan")
    node02.nc("run", "--name", "c2", "--hostname", "c2", "--net", "my_macvlan")
    assert pings(node01, "c1", "192.168.77.128") and pings(node02, "c2", "192.168.77.64")
    assert pings(node01, "c1", ROUTER) and pings(node02, "c2", ROUTER)
    route = node01.exec("c1", "ip", "-4", "route", "show", "default").stdout.split()
    assert route[:3] == ["default", "via", ROUTER]


def test_bridge_mode_siblings_names_and_the_host_through_the_shim(node01):
    net_id = create_macvlan(node01, "192.168.77.64/28")
    shim = f"mv-{net_id[:12]}"
    node01.nc("run", "--name", "c1", "--net", "my_macvlan", "--net-alias", "db")
    node01.nc("run", "--name", "c1b", "--net", "my_macvlan")
    assert pings(node01, "c1b", "192.168.77.64")  # siblings on one node, through the parent's macvlan bridge
    links = gateway_links(node01)
    assert links[shim]["kind"] == "macvlan" and links[shim]["addresses"] == ["192.168.77.79/24"]
    assert node01.exec("c1b", "cat", "/etc/resolv.conf").stdout.count("nameserver 192.168.77.79") == 1
    assert node01.exec("c1b", "getent", "hosts", "c1").stdout.split() == ["192.168.77.64", "c1"]
    assert node01.exec("c1b", "getent", "hosts", "db").stdout.split()[0] == "192.168.77.64"  # the alias
    ptr = node01.exec("c1b", "dig", "+short", "+time=2", "+tries=1", "-x", "192.168.77.64").stdout.split()
    assert ptr and ptr[0].startswith("c1.")
    assert in_ns(node01.prefix, "ping", "-c1", "-W1", "192.168.77.65").returncode == 0  # the host, via the shim
    [doc] = json.loads(node01.nc("network", "inspect", "my_macvlan").stdout)
    assert doc["Driver"] == "macvlan" and doc["DNS"]["Listening"] is True
    assert doc["Options"] == {"parent": "eth0", "macvlan_mode": "bridge", "shim_address": "192.168.77.79"}


def test_forwarding_through_the_shim_and_the_other_networks_names_stay_apart(node01):
    """dnsd on the shim forwards what is not local to the network's --dns (an upstream on the LAN, reached
    from the gateway namespace through the shim), and answers a container only its own networks' names."""
    lan = lan_namespace(node01)
    ip("-n", lan, "addr", "add", "192.168.77.53/24", "dev", LAN_BRIDGE)
    upstream = node01.spawn_in(lan, sys.executable, FAKE_UPSTREAM, "--address", "192.168.77.53",
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert upstream.stdout.readline().strip() == "ready"
    node01.nc("network", "create", "-d", "macvlan", "--subnet", SUBNET, "--ip-range", "192.168.77.64/28",
              "--gateway", ROUTER, "-o", "parent=eth0", "--dns", "192.168.77.53", "my_macvlan")
    node01.nc("network", "create", "--subnet", "10.81.0.0/24", "apart")
    node01.nc("run", "--name", "c1", "--net", "my_macvlan")
    node01.nc("run", "--name", "other", "--net", "apart")
    answer = node01.exec("c1", "dig", "+short", "+time=2", "+tries=1", "www.upstream.test").stdout.split()
    assert answer == ["192.0.2.1"]
    assert node01.exec("c1", "getent", "hosts", "other", check=False).returncode == 2  # not on its network
    assert node01.exec("other", "getent", "hosts", "c1", check=False).returncode == 2


def test_private_mode_siblings_do_not_reach_each_other(node01):
    create_macvlan(node01, "192.168.77.64/28", "macvlan_mode=private")
    node01.nc("run", "--name", "c1", "--net", "my_macvlan")
    node01.nc("run", "--name", "c2", "--net", "my_macvlan")
    assert pings(node01, "c1", ROUTER)  # the LAN is there ...
    assert not pings(node01, "c2", "192.168.77.64")  # ... the sibling is not
    assert not any(link["kind"] == "macvlan" for link in gateway_links(node01).values())  # no shim


def test_vepa_siblings_meet_only_through_a_hairpin_switch_port_and_then_use_the_shim(node01):
    create_macvlan(node01, "192.168.77.64/28", "macvlan_mode=vepa")
    node01.nc("run", "--name", "c1", "--net", "my_macvlan")
    node01.nc("run", "--name", "c2", "--net", "my_macvlan")
    assert not pings(node01, "c2", "192.168.77.64")  # every frame goes to the switch, which does not send it back
    ip("-n", lan_namespace(node01), "link", "set", "n1", "type", "bridge_slave", "hairpin", "on")
    assert pings(node01, "c2", "192.168.77.64")  # reflective relay: now it does
    assert node01.exec("c2", "getent", "hosts", "c1").stdout.split() == ["192.168.77.64", "c1"]  # dnsd on the shim


def test_passthru_takes_the_parent_and_gives_it_back_as_it_was(node01):
    before = gateway_links(node01)["eth0"]
    node01.nc("network", "create", "-d", "macvlan", "--subnet", SUBNET, "--gateway", ROUTER,
              "-o", "parent=eth0", "-o", "macvlan_mode=passthru", "pt")
    node01.nc("run", "--name", "c1", "--net", "pt")
    assert pings(node01, "c1", ROUTER)
    refused = node01.nc("network", "create", "-d", "macvlan", "--subnet", "192.168.88.0/24", "-o", "parent=eth0",
                        "second", check=False)
    assert refused.returncode == 1 and "a passthru network takes its parent whole" in refused.stderr
    node01.nc("rm", "c1")
    node01.nc("network", "rm", "pt")
    assert gateway_links(node01)["eth0"] == before


def test_removal_deletes_every_link_netcore_made_and_leaves_the_parent_as_it_was(node01):
    before = gateway_links(node01)
    create_macvlan(node01, "192.168.77.64/28")
    node01.nc("run", "--name", "c1", "--net", "my_macvlan")
    node01.nc("network", "create", "-d", "macvlan", "--subnet", "192.168.88.0/24", "-o", "parent=eth0", "second")
    node01.nc("network", "connect", "second", "c1")
    assert node01.exec("c1", "ip", "-o", "link", "show", "eth1").returncode == 0
    node01.nc("network", "disconnect", "second", "c1")
    assert node01.exec("c1", "ip", "-o", "link", "show", "eth1", check=False).returncode != 0
    node01.nc("rm", "c1")
    node01.nc("network", "rm", "my_macvlan")
    node01.nc("network", "rm", "second")
    after = gateway_links(node01)
    after.pop("netcore0")  # the default bridge, made by netcore's first command
    assert after == before


def test_kill_9_and_a_lost_shim_and_namespace_are_reconciled(node01):
    """A run killed midway, the shim deleted by hand, a container's namespace gone (as after a reboot): the
    next command removes the half-run container, rebuilds the shim and the namespace with its macvlan link."""
    net_id = create_macvlan(node01, "192.168.77.64/28")
    shim = f"mv-{net_id[:12]}"
    c1 = node01.nc("run", "--name", "c1", "--net", "my_macvlan").stdout.strip()
    proc = node01.popen("run", "--name", "killed", "--net", "my_macvlan", stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
    time.sleep(0.15)  # within the run (about 0.3 s) on this machine; if it finished anyway, it must work
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ip("-n", node01.prefix, "link", "del", shim)
    ip("netns", "del", f"{node01.prefix}-{c1[:12]}")
    with sqlite3.connect(os.path.join(node01.state_dir, "netcore.db")) as db:  # a new boot: the full sweep
        db.execute("UPDATE meta SET value = 'another-boot' WHERE key = 'boot_id'")
    stderr = node01.nc("run", "--name", "c2", "--net", "my_macvlan").stderr
    assert f"recreated missing bridge {shim} of network my_macvlan" in stderr
    assert "rebuilt missing namespace of container c1" in stderr
    names = node01.nc("ps").stdout.split()
    assert "c1" in names and "c2" in names
    if "killed" in names:  # it had finished before the signal: then it is a container like the others
        assert pings(node01, "c2", "192.168.77.65")
    ids = node01.nc("ps", "-q").stdout.split()
    assert sorted(node01.namespaces()) == sorted([node01.prefix, lan_namespace(node01)]
                                                 + [f"{node01.prefix}-{i[:12]}" for i in ids])
    assert gateway_links(node01)[shim]["addresses"] == ["192.168.77.79/24"]
    assert pings(node01, "c2", "192.168.77.64")
    assert in_ns(node01.prefix, "ping", "-c1", "-W1", "192.168.77.64").returncode == 0


def test_a_mac_held_by_a_link_being_destroyed_is_waited_for(node01, monkeypatch):
    """The kernel destroys a deleted namespace asynchronously, so a macvlan link of a container whose
    namespace was just deleted keeps its MAC on the parent for a moment: under load, the container rebuilt
    with that MAC failed to come up with "(98, 'Address already in use')". Bringing it up waits for the old
    link to go; a MAC held for good is named in one line."""
    holder, fresh = f"{node01.prefix}ma", f"{node01.prefix}mb"  # the sandbox's cleanup deletes both
    mac = "02:42:c0:a8:4d:46"
    for namespace in (holder, fresh):
        ip("netns", "add", namespace)
    for namespace, name in ((holder, "old0"), (fresh, "new0"), (holder, "old1")):
        ip("-n", node01.prefix, "link", "add", "tmp0", "link", "eth0", "address", mac, "type", "macvlan",
           "mode", "bridge")
        ip("-n", node01.prefix, "link", "set", "tmp0", "netns", namespace, "name", name)
    ip("-n", holder, "link", "set", "old0", "up")
    deleter = threading.Timer(0.5, ip, ("-n", holder, "link", "del", "old0"))
    deleter.start()
    try:
        configure_container_interface(fresh, "new0", "192.168.77.70", 24, None)
    finally:
        deleter.join()
    assert "UP" in in_ns(fresh, "ip", "link", "show", "new0").stdout.split("<")[1].split(">")[0].split(",")
    ip("-n", fresh, "link", "set", "new0", "down")
    ip("-n", holder, "link", "set", "old1", "up")  # the MAC taken for good
    monkeypatch.setattr(netlink, "MAC_RELEASE_WAIT", 0.3)
    with pytest.raises(KernelError, match="its MAC address is in use by another macvlan link on the same parent"):
        configure_container_interface(fresh, "new0", "192.168.77.70", 24, None)


def _kernel_has(box, kind: str) -> bool:
    """Whether this kernel makes links of ``kind``: tried in the node's gateway namespace (never the host's)."""
    with IPRoute(netns=box.prefix) as ipr:
        parent = ipr.link_lookup(ifname="eth0")[0]
        extra = {"vlan": {"link": parent, "vlan_id": 4000}, "ipvlan": {"link": parent}, "dummy": {}}[kind]
        try:
            ipr.link("add", ifname="probe0", kind=kind, **extra)
        except NetlinkError as err:
            if err.code == errno.EOPNOTSUPP:
                return False
            raise
        ipr.link("del", index=ipr.link_lookup(ifname="probe0")[0])
        return True


FEATURES = {"vlan": ("macvlan", ["-o", "parent=eth0.10"], "802.1q VLAN support"),
            "ipvlan": ("ipvlan", ["-o", "parent=eth0"], "ipvlan support"),
            "dummy": ("macvlan", [], "dummy interface support")}


@pytest.mark.parametrize("kind", sorted(FEATURES))
def test_a_kernel_without_the_feature_refuses_with_one_line(node01, kind):
    if _kernel_has(node01, kind):
        pytest.skip(f"this kernel has {kind} links: the refusal cannot be shown here")
    driver, options, feature = FEATURES[kind]
    before = gateway_links(node01)
    proc = node01.nc("network", "create", "-d", driver, "--subnet", SUBNET, *options, "n", check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert f"this kernel has no {feature}" in proc.stderr and "Traceback" not in proc.stderr
    assert node01.nc("network", "ls").stdout.count(" n ") == 0
    after = gateway_links(node01)
    after.pop("netcore0", None)
    assert after == before


def test_a_vlan_parent_is_made_and_deleted_with_the_network(node01):
    if not _kernel_has(node01, "vlan"):
        pytest.skip("this kernel has no 802.1q VLAN support (CONFIG_VLAN_8021Q): `ip link add ... type vlan` fails")
    node01.nc("network", "create", "-d", "macvlan", "--subnet", SUBNET, "-o", "parent=eth0.10", "tagged")
    assert gateway_links(node01)["eth0.10"]["kind"] == "vlan"
    node01.nc("network", "rm", "tagged")
    assert "eth0.10" not in gateway_links(node01)


def test_ipvlan_l2_containers_reach_each_other_and_the_router(node01):
    if not _kernel_has(node01, "ipvlan"):
        pytest.skip("this kernel has no ipvlan support (CONFIG_IPVLAN): `ip link add ... type ipvlan` fails")
    node01.nc("network", "create", "-d", "ipvlan", "--subnet", SUBNET, "--ip-range", "192.168.77.64/28",
              "--gateway", ROUTER, "-o", "parent=eth0", "iv")
    node01.nc("run", "--name", "c1", "--net", "iv")
    node01.nc("run", "--name", "c2", "--net", "iv")
    assert pings(node01, "c2", "192.168.77.64") and pings(node01, "c1", ROUTER)
    assert node01.exec("c2", "getent", "hosts", "c1").stdout.split() == ["192.168.77.64", "c1"]


def test_a_parent_on_the_lan_as_on_a_real_host(node01, node02):
    """Issue 23, item 1 (podman#12971, moby/libnetwork#1915), seed note 004 as written: each node's eth0 has its
    own address on the LAN (192.168.77.50 and .51), so its connected route covers the subnet. netcore refused
    the network ("overlaps ... route ... in the gateway namespace"); now the parent's own route is shared,
    the host's address is kept out of IPAM, and a share containing it is a warning."""
    ip("-n", node01.prefix, "addr", "add", "192.168.77.50/24", "dev", "eth0")
    ip("-n", node02.prefix, "addr", "add", "192.168.77.51/24", "dev", "eth0")
    proc = node01.nc("network", "create", "-d", "macvlan", "--subnet", SUBNET, "--ip-range", "192.168.77.64/28",
                     "--gateway", ROUTER, "-o", "macvlan_mode=bridge", "-o", "parent=eth0", "my_macvlan", check=False)
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    wide = node02.nc("network", "create", "-d", "macvlan", "--subnet", SUBNET, "--ip-range", "192.168.77.48/28",
                     "--gateway", ROUTER, "-o", "parent=eth0", "my_macvlan", check=False)
    assert wide.returncode == 0, wide.stderr
    warnings = [line for line in wide.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith(
        "netcore: warning: network my_macvlan: the host's address 192.168.77.51 (eth0) is inside 192.168.77.48/28")
    node01.nc("run", "--name", "c1", "--hostname", "c1", "--net", "my_macvlan")
    for name in ("c2", "c3", "c4", "c5"):
        node02.nc("run", "--name", name, "--net", "my_macvlan")
    [doc] = json.loads(node02.nc("network", "inspect", "my_macvlan").stdout)
    assert doc["IPAM"]["Config"][0]["AuxiliaryAddresses"] == {"eth0": "192.168.77.51"}
    given = sorted(c["IPv4Address"] for c in doc["Containers"].values())
    assert given == ["192.168.77.48/24", "192.168.77.49/24", "192.168.77.50/24", "192.168.77.52/24"]  # not .51
    assert pings(node01, "c1", "192.168.77.48") and pings(node02, "c2", "192.168.77.64")
    assert pings(node01, "c1", ROUTER)
    assert pings(node01, "c1", "192.168.77.51")  # node02 itself, on the LAN
    bridge = node01.nc("network", "create", "--subnet", SUBNET, "br", check=False)  # a bridge still may not
    assert bridge.returncode == 1 and "overlaps" in bridge.stderr
