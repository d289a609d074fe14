"""netcore.kernel.rtnl against the real kernel, in a namespace of the test's own: each request does what
pyroute2's IPRoute does for the same call, and the kernel's refusals come back as pyroute2's NetlinkError."""

from __future__ import annotations

import errno
import json
import os
import secrets
import subprocess

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from netcore.kernel.netlink import NETNS_DIR
from netcore.kernel.rtnl import Rtnl


def ip_json(namespace: str, *args: str) -> list[dict]:
    out = subprocess.run(["ip", "-j", "-n", namespace, *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out or "[]")


@pytest.fixture
def namespace():
    name = f"ncrt{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "d0", "type", "veth", "peer", "name", "d1"], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "d1", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_an_address_a_link_up_and_a_default_route_as_iproute_makes_them(namespace):
    index = ip_json(namespace, "link", "show", "d0")[0]["ifindex"]
    with Rtnl(os.path.join(NETNS_DIR, namespace)) as rtnl:
        rtnl.add_address(index, "10.9.0.2", 24)
        rtnl.add_address(index, "fd00:9::2", 64, flags=0x02)  # IFA_F_NODAD
        rtnl.set_up(index)
        rtnl.add_default_route("10.9.0.1")
        with pytest.raises(NetlinkError) as exists:
            rtnl.add_default_route("10.9.0.3")  # IPv4 keeps its one default route of metric 0
        assert exists.value.code == errno.EEXIST
        with pytest.raises(NetlinkError) as again:
            rtnl.add_address(index, "10.9.0.2", 24)
        assert again.value.code == errno.EEXIST
        with pytest.raises(NetlinkError) as missing:
            rtnl.set_up(index + 100)
        assert missing.value.code == errno.ENODEV
    [link] = ip_json(namespace, "addr", "show", "d0")
    assert "UP" in link["flags"]
    found = {(a["local"], a["prefixlen"]) for a in link["addr_info"] if a.get("scope") == "global"}
    assert found == {("10.9.0.2", 24), ("fd00:9::2", 64)}
    [v6] = [a for a in link["addr_info"] if a["local"] == "fd00:9::2"]
    assert not v6.get("tentative")  # no duplicate address detection, as asked
    [route] = ip_json(namespace, "route", "show", "default")
    assert (route["gateway"], route["dev"], route["protocol"]) == ("10.9.0.1", "d0", "static")


def test_a_namespace_that_is_not_there_is_an_oserror():
    with pytest.raises(OSError):
        Rtnl(os.path.join(NETNS_DIR, f"ncrt-missing-{secrets.token_hex(3)}"))


@pytest.fixture
def peer_namespace():
    name = f"ncrp{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_a_veth_born_a_bridge_port_its_peer_in_another_namespace_as_iproute_makes_it(namespace, peer_namespace):
    subprocess.run(["ip", "-n", namespace, "link", "add", "br9", "type", "bridge"], check=True)
    bridge = ip_json(namespace, "link", "show", "br9")[0]["ifindex"]
    other = ip_json(namespace, "link", "show", "d0")[0]["ifindex"]
    peer_fd = os.open(os.path.join(NETNS_DIR, peer_namespace), os.O_RDONLY)
    try:
        with Rtnl(os.path.join(NETNS_DIR, namespace)) as rtnl:
            rtnl.add_veth("vh9", bridge, 1400, "eth0", peer_fd, "02:42:0a:09:00:02")
            [host] = ip_json(namespace, "-d", "link", "show", "vh9")
            [peer] = ip_json(peer_namespace, "link", "show", "eth0")
            with pytest.raises(NetlinkError) as taken:
                rtnl.add_veth("vh9", bridge, 1400, "eth1", peer_fd, "02:42:0a:09:00:03")
            assert taken.value.code == errno.EEXIST
            rtnl.set_bridge_port(host["ifindex"], hairpin=True, isolated=True)
            [port] = ip_json(namespace, "-d", "link", "show", "vh9")
            with pytest.raises(NetlinkError) as not_a_port:
                rtnl.set_bridge_port(other, hairpin=True, isolated=False)
            assert not_a_port.value.code == errno.EOPNOTSUPP
            rtnl.release(host["ifindex"])
            [released] = ip_json(namespace, "link", "show", "vh9")
            subprocess.run(["ip", "-n", namespace, "link", "del", "vh9"], check=True)
            with pytest.raises(NetlinkError) as gone:
                rtnl.release(host["ifindex"])
            assert gone.value.code == errno.ENODEV
    finally:
        os.close(peer_fd)
    assert (host["master"], host["mtu"], host["linkinfo"]["info_kind"]) == ("br9", 1400, "veth")
    assert "UP" in host["flags"]  # up as it is made (its carrier waits for the peer)
    assert (peer["address"], peer["mtu"], "UP" in peer["flags"]) == ("02:42:0a:09:00:02", 1400, False)
    slave = port["linkinfo"]["info_slave_data"]
    assert (slave["hairpin"], slave["isolated"]) == (True, True)
    assert "master" not in released and "UP" not in released["flags"]
    assert "vh9" not in [link["ifname"] for link in ip_json(namespace, "link", "show")]
    assert "eth0" not in [link["ifname"] for link in ip_json(peer_namespace, "link", "show")]  # the pair went
