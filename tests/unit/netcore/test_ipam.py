import ipaddress
import re

import pytest

from netcore import ipam
from netcore.errors import Conflict, NetcoreError


def net(text):
    return ipaddress.ip_network(text)


def test_default_pools_follow_dockers_order():
    subnets = [str(s) for s in ipam.pool_subnets()]
    assert subnets[:8] == ["172.17.0.0/16", "172.18.0.0/16", "172.19.0.0/16", "172.20.0.0/16",
                           "172.21.0.0/16", "172.22.0.0/16", "172.23.0.0/16", "172.24.0.0/16"]
    assert subnets[14] == "172.31.0.0/16"
    assert subnets[15] == "192.168.0.0/20"
    assert subnets[-1] == "192.168.240.0/20"
    assert len(subnets) == 15 + 16


def test_choose_subnet_takes_lowest_free_that_overlaps_nothing():
    taken = [net("172.17.0.0/16"), net("172.18.0.0/16"), net("172.19.5.0/24")]
    assert str(ipam.choose_subnet(taken)) == "172.20.0.0/16"
    # a route covering a whole /14 pool block pushes past all of it
    assert str(ipam.choose_subnet([*taken, net("172.20.0.0/14")])) == "172.24.0.0/16"


def test_exhausted_pools_fail_clearly():
    with pytest.raises(NetcoreError, match="exhausted"):
        ipam.choose_subnet([net("172.16.0.0/12"), net("192.168.0.0/16")])


@pytest.mark.parametrize("text, message", [
    ("10.0.0.0", "prefix length is missing"),
    ("10.0.0.1/24", "host bits are set"),
    ("banana/24", "expected a CIDR"),
    ("10.0.0.0/33", "expected a CIDR"),
    ("10.0.0.0/31", "too small"),
])
def test_bad_subnets_are_refused(text, message):
    with pytest.raises(NetcoreError, match=message):
        ipam.parse_subnet(text)


def test_overlap_names_the_owner():
    with pytest.raises(Conflict, match=re.escape("overlaps 10.1.0.0/16 of network app")):
        ipam.check_no_overlap(net("10.1.2.0/24"), {"network app": net("10.1.0.0/16")})
    ipam.check_no_overlap(net("10.2.0.0/24"), {"network app": net("10.1.0.0/16")})


def test_gateway_defaults_to_first_host_and_must_be_inside():
    subnet = net("10.9.0.0/24")
    assert str(ipam.plan_gateway(subnet, None)) == "10.9.0.1"
    assert str(ipam.plan_gateway(subnet, "10.9.0.254")) == "10.9.0.254"
    with pytest.raises(NetcoreError, match="not inside subnet"):
        ipam.plan_gateway(subnet, "10.9.1.1")
    with pytest.raises(NetcoreError, match="network or broadcast"):
        ipam.plan_gateway(subnet, "10.9.0.255")


def test_ip_range_must_be_inside_the_subnet():
    subnet = net("10.9.0.0/16")
    assert str(ipam.plan_ip_range(subnet, "10.9.5.0/24")) == "10.9.5.0/24"
    with pytest.raises(NetcoreError, match="not inside subnet"):
        ipam.plan_ip_range(subnet, "10.10.0.0/24")


def test_addresses_are_lowest_free_and_skip_gateway():
    subnet = net("10.9.0.0/24")
    gateway = ipaddress.ip_address("10.9.0.1")
    assert str(ipam.allocate_address(subnet, gateway, [])) == "10.9.0.2"
    assert str(ipam.allocate_address(subnet, gateway, ["10.9.0.2", "10.9.0.4"])) == "10.9.0.3"
    # a released address is free again: it is simply no longer in `taken`
    assert str(ipam.allocate_address(subnet, gateway, ["10.9.0.3", "10.9.0.4"])) == "10.9.0.2"


def test_addresses_stay_inside_ip_range_and_never_take_broadcast():
    subnet = net("10.9.0.0/24")
    gateway = ipaddress.ip_address("10.9.0.254")
    rng = net("10.9.0.252/30")
    assert str(ipam.allocate_address(subnet, gateway, [], rng)) == "10.9.0.252"
    assert str(ipam.allocate_address(subnet, gateway, ["10.9.0.252"], rng)) == "10.9.0.253"
    with pytest.raises(NetcoreError, match=re.escape("no free address left in ip-range 10.9.0.252/30")):
        ipam.allocate_address(subnet, gateway, ["10.9.0.252", "10.9.0.253"], rng)


def test_full_subnet_fails_clearly():
    subnet = net("10.9.0.0/30")
    gateway = ipaddress.ip_address("10.9.0.1")
    assert str(ipam.allocate_address(subnet, gateway, [])) == "10.9.0.2"
    with pytest.raises(NetcoreError, match=re.escape("no free address left in subnet 10.9.0.0/30")):
        ipam.allocate_address(subnet, gateway, ["10.9.0.2"])


def test_requested_address_checks():
    subnet = net("10.9.0.0/24")
    gateway = ipaddress.ip_address("10.9.0.1")
    assert str(ipam.allocate_address(subnet, gateway, [], requested="10.9.0.77")) == "10.9.0.77"
    with pytest.raises(Conflict, match="already in use"):
        ipam.allocate_address(subnet, gateway, ["10.9.0.77"], requested="10.9.0.77")
    with pytest.raises(Conflict, match="is the gateway"):
        ipam.allocate_address(subnet, gateway, [], requested="10.9.0.1")
    with pytest.raises(NetcoreError, match="not inside subnet"):
        ipam.allocate_address(subnet, gateway, [], requested="10.8.0.5")
    with pytest.raises(NetcoreError, match="invalid address"):
        ipam.allocate_address(subnet, gateway, [], requested="10.9.0.x")


def test_ipv6_allocation_and_ula():
    subnet = net("fd00:1::/64")
    gateway = ipam.plan_gateway(subnet, None)
    assert str(gateway) == "fd00:1::1"
    assert str(ipam.allocate_address(subnet, gateway, ["fd00:1::2"])) == "fd00:1::3"
    ula = ipam.ula_subnet("ab" * 32)
    assert ula.prefixlen == 64 and str(ula).startswith("fdab:abab:abab::")


def test_mac_follows_the_address():
    assert ipam.mac_for(ipaddress.ip_address("172.18.0.2")) == "02:42:ac:12:00:02"
