"""The macvlan and ipvlan drivers through the engine, on the in-memory kernel (no root).

The fake kernel's gateway namespace gets an ``eth0`` netcore did not make (the
parent a user names); ``kernel.unsupported`` stands for a kernel without
802.1q, ipvlan or dummy links (this project's CI), which refuses them as the
real one does (EOPNOTSUPP, netcore.netlink.missing_feature).
"""

from __future__ import annotations

import re

import pytest

from dnsd.core.builder import build_snapshot
from netcore.cli.views import dns_state, network_document
from netcore.errors import Conflict, NetcoreError
from netcore.firewall import desired_state
from netcore.ports import parse_publish
from tests.support.engine_calls import connect_container, create_network, run_container
from tests.support.fake_kernel import Killed, new_world

world = pytest.fixture(new_world)

SUBNET = "192.168.77.0/24"
ROUTER = "192.168.77.1"


@pytest.fixture
def engine(world):
    engine = world.engine()
    world.kernel.ensure()
    world.kernel.add_physical("eth0", mtu=1500)
    with engine.action():
        pass  # the default bridge, as the first command makes it
    return engine


def nameservers(world, container) -> list[str]:
    return [line.split()[1] for line in world.kernel.etc[container.netns][0].splitlines()
            if line.startswith("nameserver")]


def lan(engine, name="my_macvlan", ip_range="192.168.77.64/28", **options):
    options = {"parent": "eth0", **options}
    return create_network(engine, name, [SUBNET], ip_range, ROUTER, driver="macvlan", options=options)


def test_bridge_mode_builds_a_shim_and_children_born_in_the_containers(world, engine):
    network = lan(engine)
    assert network.bridge == f"mv-{network.id[:12]}"
    assert network.options == {"parent": "eth0", "macvlan_mode": "bridge", "shim_address": "192.168.77.79"}
    shim = world.kernel.gateway.links[network.bridge]
    assert (shim.kind, shim.mode, shim.parent[1], shim.addresses, shim.up) == \
        ("macvlan", "bridge", "eth0", ["192.168.77.79/24"], True)
    c1 = run_container(engine, "c1", "my_macvlan")
    c2 = run_container(engine, "c2", "my_macvlan")
    inside = world.kernel.namespaces[c1.netns]
    eth0 = inside.links["eth0"]
    assert (eth0.kind, eth0.mode, eth0.parent[1], eth0.addresses) == ("macvlan", "bridge", "eth0", ["192.168.77.64/24"])
    assert eth0.mac == "02:42:c0:a8:4d:40" and inside.default_routes == {4: ROUTER}
    assert world.kernel.namespaces[c2.netns].links["eth0"].addresses == ["192.168.77.65/24"]
    assert nameservers(world, c1) == ["192.168.77.79"]  # dnsd on the shim
    assert set(world.kernel.gateway.links) == {"lo", "eth0", "netcore0", network.bridge}  # no veth of theirs
    world.assert_consistent(engine)
    engine.remove_containers(["c1", "c2"])
    engine.remove_network("my_macvlan")
    assert set(world.kernel.gateway.links) == {"lo", "eth0", "netcore0"}  # the parent stays as it was
    assert world.kernel.gateway.links["eth0"].kind == "physical"


def test_the_shim_address_is_reserved_and_may_be_chosen(engine):
    network = lan(engine, ip_range=None, shim_address="192.168.77.200")
    assert network.dns_addresses == ("192.168.77.200",) and network.reserved_addresses == ("192.168.77.200",)
    with pytest.raises(Conflict, match=re.escape("address 192.168.77.200 is already in use")):
        run_container(engine, "c1", "my_macvlan", ip="192.168.77.200")
    engine.remove_network("my_macvlan")
    default = lan(engine, ip_range=None)
    assert default.options["shim_address"] == "192.168.77.254"  # the subnet's highest without --ip-range
    with pytest.raises(NetcoreError, match=r"^invalid shim_address 10\.0\.0\.1: not a host address of 192"):
        create_network(engine, "other", ["192.168.78.0/24"], driver="macvlan",
                              options={"parent": "eth0", "shim_address": "10.0.0.1"})


def test_the_shim_address_cannot_be_the_router(engine):
    with pytest.raises(Conflict, match=r"shim_address 192\.168\.77\.1 is the gateway"):
        lan(engine, shim_address=ROUTER)


def test_private_mode_has_no_shim_and_so_no_names(world, engine):
    network = lan(engine, macvlan_mode="private")
    assert network.bridge not in world.kernel.gateway.links and network.dns_addresses == ()
    c1 = run_container(engine, "c1", "my_macvlan", dns=["192.168.77.53"])
    assert world.kernel.namespaces[c1.netns].links["eth0"].mode == "private"
    assert nameservers(world, c1) == ["192.168.77.53"]  # its own --dns only
    rules = desired_state(engine.store.networks(), engine.store.containers(), engine.store.endpoints())
    [mine] = [n for n in rules.networks if n.name == "my_macvlan"]
    assert (mine.dns, mine.routed, mine.masquerade) == (False, False, False)
    with pytest.raises(NetcoreError, match="macvlan_mode=private has no shim: drop -o shim_address"):
        create_network(engine, "other", ["192.168.78.0/24"], driver="macvlan",
                              options={"parent": "eth0", "macvlan_mode": "private", "shim_address": "192.168.78.9"})


def test_passthru_takes_its_parent_whole(world, engine):
    lan(engine, ip_range="192.168.77.64/28")
    with pytest.raises(Conflict, match="a passthru network takes its parent whole"):
        create_network(engine, "pt", ["192.168.78.0/24"], driver="macvlan",
                              options={"parent": "eth0", "macvlan_mode": "passthru"})
    engine.remove_network("my_macvlan")
    network = create_network(engine, "pt", ["192.168.78.0/24"], driver="macvlan",
                                    options={"parent": "eth0", "macvlan_mode": "passthru"})
    with pytest.raises(Conflict, match="a passthru network takes its parent whole"):
        lan(engine)
    c1 = run_container(engine, "c1", "pt")
    child = world.kernel.namespaces[c1.netns].links["eth0"]
    assert (child.mode, child.mac) == ("passthru", None)  # a passthru link's MAC would be the parent's
    assert network.bridge not in world.kernel.gateway.links and network.dns_addresses == ()


def test_several_networks_share_a_parent_and_disconnect_deletes_the_child(world, engine):
    lan(engine)
    create_network(engine, "second", ["192.168.78.0/24"], driver="macvlan", options={"parent": "eth0"})
    c1 = run_container(engine, "c1", "my_macvlan")
    connect_container(engine, "second", "c1")
    assert sorted(world.kernel.namespaces[c1.netns].links) == ["eth0", "eth1", "lo"]
    engine.disconnect("second", "c1")
    assert sorted(world.kernel.namespaces[c1.netns].links) == ["eth0", "lo"]
    world.assert_consistent(engine)


def test_a_vlan_parent_is_made_and_deleted_with_the_network_only_if_netcore_made_it(world, engine):
    network = lan(engine, parent="eth0.10")
    assert network.options["netcore.parent_created"] == "vlan"
    vlan = world.kernel.gateway.links["eth0.10"]
    assert (vlan.kind, vlan.parent[1], vlan.up) == ("vlan", "eth0", True)
    assert world.kernel.gateway.links[network.bridge].parent[1] == "eth0.10"
    with pytest.raises(Conflict, match=re.escape("parent eth0.10 was made by netcore for network my_macvlan")):
        create_network(engine, "b", ["192.168.78.0/24"], driver="macvlan", options={"parent": "eth0.10"})
    engine.remove_network("my_macvlan")
    assert "eth0.10" not in world.kernel.gateway.links
    world.kernel.create_parent("vlan", "eth0.20", "eth0", 20)  # the user's own sub-interface
    mine = lan(engine, parent="eth0.20")
    assert "netcore.parent_created" not in mine.options
    engine.remove_network("my_macvlan")
    assert "eth0.20" in world.kernel.gateway.links


@pytest.mark.parametrize(("kind", "driver", "options", "feature"), [
    ("vlan", "macvlan", {"parent": "eth0.10"}, "802.1q VLAN support (CONFIG_VLAN_8021Q, module 8021q)"),
    ("dummy", "macvlan", {}, "dummy interface support (CONFIG_DUMMY, module dummy)"),
    ("ipvlan", "ipvlan", {"parent": "eth0"}, "ipvlan support (CONFIG_IPVLAN, module ipvlan)"),
])
def test_a_kernel_without_the_feature_fails_with_one_line_naming_it(world, engine, kind, driver, options, feature):
    world.kernel.unsupported = {"vlan", "dummy", "ipvlan"}  # this project's CI kernel
    before = dict(world.kernel.gateway.links)
    with pytest.raises(NetcoreError) as raised:
        create_network(engine, "n", [SUBNET], driver=driver, options=options)
    assert str(raised.value).endswith(f": this kernel has no {feature}")
    assert "\n" not in str(raised.value)
    assert engine.store.find_network("n") is None and world.kernel.gateway.links.keys() == before.keys()


def test_no_parent_means_a_dummy_parent_and_an_internal_network(world, engine):
    network = create_network(engine, "solo", [SUBNET], driver="macvlan")
    dummy = f"dm-{network.id[:12]}"
    assert network.internal and network.options["parent"] == dummy
    assert world.kernel.gateway.links[dummy].kind == "dummy"
    c1 = run_container(engine, "c1", "solo")
    assert world.kernel.namespaces[c1.netns].default_routes == {}  # internal: no route out
    engine.remove_containers(["c1"])
    engine.remove_network("solo")
    assert dummy not in world.kernel.gateway.links


def test_ipvlan_children_share_the_parents_mac_and_the_shim_takes_the_mode(world, engine):
    network = create_network(engine, "iv", [SUBNET], driver="ipvlan", options={"parent": "eth0", "ipvlan_mode": "l3"})
    assert network.bridge == f"iv-{network.id[:12]}"
    assert world.kernel.gateway.links[network.bridge].mode == "l3"
    c1 = run_container(engine, "c1", "iv")
    child = world.kernel.namespaces[c1.netns].links["eth0"]
    assert (child.kind, child.mode, child.mac) == ("ipvlan", "l3", None)


@pytest.mark.parametrize(("driver", "options", "message"), [
    ("macvlan", {"parent": "eth0", "foo": "1"}, "unsupported option 'foo' for driver macvlan: supported are parent, "
                                                 "macvlan_mode, com.docker.network.driver.mtu, shim_address"),
    ("macvlan", {"parent": "eth0", "macvlan_mode": "l2"}, "invalid macvlan_mode 'l2': one of bridge, private, "
                                                          "vepa, passthru"),
    ("ipvlan", {"parent": "eth0", "ipvlan_mode": "l3s"}, "invalid ipvlan_mode 'l3s': one of l2, l3"),
    ("macvlan", {"parent": "eth0.4095"}, "invalid parent 'eth0.4095': the VLAN ID 4095 is not from 1 to 4094"),
    ("macvlan", {"parent": "eth9"}, "parent eth9 not found: no such interface in the gateway namespace"),
    ("macvlan", {"parent": "eth9.5"}, "parent eth9.5 not found: no interface eth9 to make VLAN 5 on"),
    ("macvlan", {"parent": "a-very-long-name0"}, "invalid parent name 'a-very-long-name0': at most 15 of "
                                                 "[a-zA-Z0-9_.-]"),
    ("macvlan", {"parent": "eth0", "netcore.parent_created": "vlan"}, "unsupported option 'netcore.parent_created'"),
    ("macvlan", {"parent": "eth0", "com.docker.network.bridge.enable_icc": "false"},
     "unsupported option 'com.docker.network.bridge.enable_icc' for driver macvlan"),
])
def test_bad_requests_get_one_line_and_change_nothing(world, engine, driver, options, message):
    before = dict(world.kernel.gateway.links)
    with pytest.raises(NetcoreError) as raised:
        create_network(engine, "n", [SUBNET], driver=driver, options=options)
    assert str(raised.value).startswith(message)
    assert engine.store.find_network("n") is None and world.kernel.gateway.links.keys() == before.keys()


def test_publishing_a_port_on_macvlan_is_refused_with_one_line(engine):
    lan(engine)
    with pytest.raises(NetcoreError, match=r"^-p needs a bridge network: a container on macvlan network my_macvlan "
                                           r"is reached on its own address on the LAN"):
        run_container(engine, "web", "my_macvlan", publish=[parse_publish("8080:80")])
    assert engine.store.find_container("web") is None


def test_ipv6_is_refused_with_one_line(engine):
    with pytest.raises(NetcoreError, match=r"^--ipv6 is not supported by netcore's macvlan driver yet$"):
        create_network(engine, "n", [SUBNET], ipv6=True, driver="macvlan", options={"parent": "eth0"})


def test_reconciliation_rebuilds_a_missing_shim_and_removes_a_half_run_container(world, engine):
    network = lan(engine)
    run_container(engine, "c1", "my_macvlan")
    world.kernel.kill_at("create_lan_link")
    with pytest.raises(Killed):
        run_container(world.engine(), "c2", "my_macvlan")
    world.kernel.revive()
    world.kernel.delete_link(network.bridge)  # and the shim is gone (deleted by hand)
    after = world.engine()
    run_container(after, "c3", "my_macvlan")
    assert any(note.startswith("removed half-created container c2") for note in after.notes)
    assert f"recreated missing bridge {network.bridge} of network my_macvlan" in after.notes
    assert world.kernel.gateway.links[network.bridge].addresses == ["192.168.77.79/24"]
    assert sorted(c.name for c in after.store.containers()) == ["c1", "c3"]
    world.assert_consistent(after)


def test_a_missing_parent_is_a_note_not_a_failure_of_every_command(world, engine):
    lan(engine)
    create_network(engine, "other", ["10.9.0.0/24"])
    world.kernel.delete_link("eth0")  # takes the shim along, as the kernel does
    world.clock.boot = "boot-2"  # a sweep
    after = world.engine()
    run_container(after, "web", "other")
    assert any(re.match(r"could not rebuild network my_macvlan: .*there is no interface eth0", n) for n in after.notes)


def test_inspect_says_which_macvlan_networks_have_names(engine):
    bridged = lan(engine)
    private = create_network(engine, "quiet", ["192.168.78.0/24"], driver="macvlan",
                                    options={"parent": "eth0", "macvlan_mode": "private"})
    assert dns_state(bridged, {}) == {"Enabled": True, "Servers": [], "Listening": True}
    assert dns_state(bridged, {"192.168.77.79": "in use"})["Error"] == "dnsd in use"
    assert dns_state(private, {}) == {"Enabled": False, "Servers": []}
    assert network_document(private, [])["Options"] == {"parent": "eth0", "macvlan_mode": "private"}


def test_dnsd_listens_on_the_shim_and_not_on_the_lans_router(engine):
    lan(engine)
    run_container(engine, "c1", "my_macvlan", aliases=["db"])
    store = engine.store
    snapshot = build_snapshot(store.networks(), store.containers(), store.endpoints())
    assert "192.168.77.79" in snapshot.listeners and ROUTER not in snapshot.listeners
    names = snapshot.listeners["192.168.77.79"].names
    assert {b"\x02c1\x00", b"\x02db\x00"} <= set(names)


# -- issue 23, item 1: a macvlan network on the host's own LAN (seed note 004: node01 is 192.168.0.50) -------------


@pytest.fixture
def on_lan(world):
    """The gateway namespace's eth0 is on the LAN, as a real host's is: 192.168.77.50/24 (its connected route)."""
    engine = world.engine()
    world.kernel.ensure()
    world.kernel.add_physical("eth0", addresses=["192.168.77.50/24"])
    with engine.action():
        pass
    return engine


def test_a_macvlan_network_shares_its_parents_lan_and_keeps_the_hosts_address_out_of_ipam(world, on_lan):
    network = lan(on_lan, ip_range="192.168.77.64/28")  # node01's share of the LAN
    assert network.aux_addresses == {"eth0": "192.168.77.50"}
    assert on_lan.warnings == []  # the host's address is not in the share: nothing to warn about
    assert network_document(network, [])["IPAM"]["Config"][0]["AuxiliaryAddresses"] == {"eth0": "192.168.77.50"}
    other = create_network(on_lan, "other", ["192.168.78.0/24"], driver="macvlan", options={"parent": "eth0"})
    assert other.aux_addresses == {}  # the host has no address there


def test_the_host_address_inside_the_range_is_a_warning_and_no_container_gets_it(world, on_lan):
    network = lan(on_lan, ip_range="192.168.77.48/29")
    assert len(on_lan.warnings) == 1
    assert on_lan.warnings[0].startswith("network my_macvlan: the host's address 192.168.77.50 (eth0) is inside "
                                         "192.168.77.48/29")
    assert network.options["shim_address"] == "192.168.77.55"
    addresses = [on_lan.store.endpoints_of_container(run_container(on_lan, f"c{i}", "my_macvlan").id)[0].ipv4
                 for i in range(4)]
    assert addresses == ["192.168.77.48", "192.168.77.49", "192.168.77.51", "192.168.77.52"]
    with pytest.raises(Conflict, match=r"address 192\.168\.77\.50 is already in use"):
        run_container(on_lan, "c9", "my_macvlan", ip="192.168.77.50")


def test_the_shim_never_takes_the_hosts_address(world, on_lan):
    network = lan(on_lan, ip_range="192.168.77.48/28", name="a")  # .63 is the highest of the share: free
    assert network.options["shim_address"] == "192.168.77.63"
    world.kernel.add_physical("eth1", addresses=["192.168.79.254/24"])
    shifted = create_network(on_lan, "b", ["192.168.79.0/24"], None, "192.168.79.1", driver="macvlan",
                                    options={"parent": "eth1"})
    assert shifted.options["shim_address"] == "192.168.79.253"
    on_lan.remove_network("b")
    with pytest.raises(Conflict, match=r"shim_address 192\.168\.79\.254 is the host.s own address"):
        create_network(on_lan, "c", ["192.168.79.0/24"], None, "192.168.79.1", driver="macvlan",
                              options={"parent": "eth1", "shim_address": "192.168.79.254"})


def test_overlap_with_any_other_route_or_network_is_still_refused(world, on_lan):
    world.kernel.add_physical("eth1", addresses=["192.168.80.7/24"])
    with pytest.raises(Conflict, match=r"overlaps 192\.168\.80\.0/24 of route 192\.168\.80\.0/24 via eth1"):
        create_network(on_lan, "x", ["192.168.80.0/24"], None, "192.168.80.1", driver="macvlan",
                              options={"parent": "eth0"})  # the LAN of another link than the parent
    with pytest.raises(Conflict, match=r"route 192\.168\.77\.0/24 via eth0"):
        create_network(on_lan, "br", ["192.168.77.0/24"])  # a bridge never shares the host's LAN
    lan(on_lan, ip_range="192.168.77.64/28")
    with pytest.raises(Conflict, match="of network my_macvlan"):
        lan(on_lan, name="again", ip_range="192.168.77.128/28")  # one network per subnet on one host
    assert create_network(on_lan, "auto", driver="macvlan", options={"parent": "eth0"}).subnet != "192.168.77.0/24"
