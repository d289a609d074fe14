"""A link's index by the SIOCGIFINDEX ioctl (netcore.kernel.netlink._lookup): pyroute2's link_lookup's answers,
read from this process's own namespace, which needs no privilege."""

from __future__ import annotations

import socket

import pytest
from pyroute2 import IPRoute

from netcore.kernel.netlink import _lookup


@pytest.fixture
def ipr():
    with IPRoute() as opened:
        yield opened


def test_it_answers_as_pyroute2s_link_lookup_for_every_link_here(ipr):
    names = [link.get("ifname") for link in ipr.link("dump")]
    assert "lo" in names
    for name in names:
        assert _lookup(ipr, name) == ipr.link_lookup(ifname=name) == [socket.if_nametoindex(name)]


@pytest.mark.parametrize("name", ["nc-no-such-link", "", "lo\0", "lo" + "x" * 14, "l" * 40])
def test_a_name_no_link_has_is_none(ipr, name):
    """Names the kernel cannot hold (empty, a NUL in them, 16 bytes or more) are not cut to one it might."""
    assert _lookup(ipr, name) == []
