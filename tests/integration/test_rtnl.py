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
