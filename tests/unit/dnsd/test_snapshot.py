"""Building the snapshot: names, scopes, listeners and the helpers it rests on."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from dnsd.core.builder import build_snapshot
from dnsd.core.snapshot import lookup, normalize_address, parse_upstream
from dnsd.core.wire import A_IN, ANY_IN, encode_name
from netcore.model import dns_names


@pytest.mark.parametrize("name, wire", [
    ("web", b"\x03web\x00"),
    ("web.", b"\x03web\x00"),
    ("Web.NetA", b"\x03Web\x04NetA\x00"),
    ("a" * 63, b"\x3f" + b"a" * 63 + b"\x00"),
])
def test_encode_name(name, wire):
    assert encode_name(name) == wire


@pytest.mark.parametrize("name", ["", ".", "a..b", "a" * 64, ".".join(["a" * 63] * 4), "café"])
def test_names_that_cannot_be_dns_names_are_refused(name):
    assert encode_name(name) is None


@pytest.mark.parametrize("text, upstream", [
    ("10.0.0.1", ("10.0.0.1", 53)),
    ("10.0.0.1:5353", ("10.0.0.1", 5353)),
    ("fd00::1", ("fd00::1", 53)),
    ("[fd00::1]:5353", ("fd00::1", 5353)),
    ("[fd00:0::1]", ("fd00::1", 53)),
])
def test_parse_upstream(text, upstream):
    assert parse_upstream(text) == upstream


@pytest.mark.parametrize("text", ["", "example.com", "10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:x", "[fd00::1",
                                  "[fd00::1]x", "300.1.1.1"])
def test_parse_upstream_rejects(text):
    with pytest.raises(ValueError):
        parse_upstream(text)


def test_addresses_are_keyed_as_sockets_spell_them():
    assert normalize_address("fd00:0089:0001:0000::0006") == "fd00:89:1::6"
    assert normalize_address("10.89.1.2") == "10.89.1.2"


def test_clients_are_the_addresses_of_containers_on_dns_networks(world):
    net = world.network("neta", "10.89.1.0/24", "10.89.1.1", subnet6="fd00:89:1::/64", gateway6="fd00:89:1::1")
    bridge = world.network("bridge", "172.17.0.0/16", "172.17.0.1")
    both = world.container("both", net, "10.89.1.2", ipv6="fd00:0089:0001::2")
    world.attach(both, bridge, "172.17.0.3")
    world.container("legacy", bridge, "172.17.0.2")
    snapshot = build_snapshot(*world.records())
    assert set(snapshot.clients) == {"10.89.1.2", "fd00:89:1::2", "172.17.0.3"}
    assert snapshot.scope_of("172.17.0.3", "") is snapshot.scope_of("10.89.1.2", "")
    assert [network.name for network in snapshot.scope_of("10.89.1.2", "").networks] == ["neta"]
    assert snapshot.listen_addresses == {"10.89.1.1", "fd00:89:1::1"}


def test_names_of_one_container_share_one_entry(world):
    net = world.network("neta", "10.89.1.0/24", "10.89.1.1")
    web = world.container("web", net, "10.89.1.2", hostname="www", aliases=("front",))
    scope = build_snapshot(*world.records()).listeners["10.89.1.1"]
    keys = [encode_name(name) for name in ("web", "www", "front", web.short_id, "web.neta", "front.neta")]
    assert len({id(scope.entry(key)) for key in keys}) == 1
    entry = scope.entry(keys[0])
    assert lookup(entry, ANY_IN) is lookup(entry, A_IN) is entry  # a lone A record
    assert encode_name("web.neta") not in scope.names  # found through the network's own names, not stored twice


def test_names_that_cannot_be_encoded_are_skipped(world):
    net = world.network("neta", "10.89.1.0/24", "10.89.1.1")
    world.container("web", net, "10.89.1.2", aliases=("a" * 64, "ok"))
    names = build_snapshot(*world.records()).listeners["10.89.1.1"].names
    assert encode_name("ok") in names and encode_name("web") in names


def test_containers_that_are_not_running_are_not_served(world):
    net = world.network("neta", "10.89.1.0/24", "10.89.1.1")
    gone = world.container("gone", net, "10.89.1.2")
    world.containers.remove(gone)  # the store returns running rows only; an orphan endpoint is ignored
    snapshot = build_snapshot(*world.records())
    assert snapshot.clients == {} and encode_name("gone") not in snapshot.listeners["10.89.1.1"].names


def test_only_sources_inside_served_subnets_are_served(world):
    world.network("neta", "10.89.1.0/24", "10.89.1.1", subnet6="fd00:89:1::/64", gateway6="fd00:89:1::1")
    world.network("bridge", "172.17.0.0/16", "172.17.0.1")
    snapshot = build_snapshot(*world.records())
    for gateway in ("10.89.1.1", "fd00:89:1::1"):  # either family's gateway serves both families of its network
        assert snapshot.serves_source("10.89.1.77", gateway) and snapshot.serves_source("fd00:89:1::77", gateway)
        assert not snapshot.serves_source("172.17.0.5", gateway) and not snapshot.serves_source("10.89.2.1", gateway)
    assert not snapshot.serves_source("172.17.0.5", "172.17.0.1")  # the default bridge is served by nobody
    assert snapshot.scope_of("10.89.1.77", "10.89.1.1") is snapshot.listeners["10.89.1.1"]
    assert snapshot.scope_of("192.168.0.1", "10.89.1.1") is None


def test_a_source_of_one_networks_subnet_is_no_client_of_another_networks_gateway(world):
    """Issue 24 item 1: a spare address of an internal network's subnet, asking a network that forwards
    (the class of Docker's CVE-2024-29018), is refused; asking its own gateway it sees its own network."""
    vault = world.network("vault", "10.89.3.0/24", "10.89.3.1", internal=True)
    world.network("app", "10.89.7.0/24", "10.89.7.1", dns=("192.0.2.53",))
    world.container("v1", vault, "10.89.3.2")
    snapshot = build_snapshot(*world.records())
    assert snapshot.scope_of("10.89.3.77", "10.89.7.1") is None
    assert snapshot.scope_of("10.89.3.77", "10.89.3.1") is snapshot.listeners["10.89.3.1"]
    assert snapshot.upstreams_for(snapshot.scope_of("10.89.3.77", "10.89.3.1"), (), 3) == ()
    assert snapshot.scope_of("10.89.7.77", "10.89.7.1") is snapshot.listeners["10.89.7.1"]


def test_reverse_names_inside_served_subnets_are_owned(world):
    world.network("neta", "10.89.1.0/24", "10.89.1.1", subnet6="fd00:89:1::/64", gateway6="fd00:89:1::1")
    snapshot = build_snapshot(*world.records())
    assert snapshot.owns_reverse_name(encode_name("99.1.89.10.in-addr.arpa"))
    assert snapshot.owns_reverse_name(encode_name(ipaddress.ip_address("fd00:89:1::9").reverse_pointer))
    assert not snapshot.owns_reverse_name(encode_name("99.2.89.10.in-addr.arpa"))
    assert not snapshot.owns_reverse_name(encode_name("1.89.10.in-addr.arpa"))  # a zone, not an address
    assert not snapshot.owns_reverse_name(encode_name("web"))


def test_dns_names_are_dockers_in_its_order_and_each_is_served(world):
    """Name, aliases, short ID, hostname (moby's buildEndpointDNSNames); the builder serves the same names."""
    net = world.network("neta", "10.89.1.0/24", "10.89.1.1")
    web = world.container("web", net, "10.89.1.2", hostname="www", aliases=("front", "web"))
    endpoint = next(e for e in world.endpoints if e.container_id == web.id)
    assert dns_names(web, endpoint) == ("web", "front", web.short_id, "www")
    assert dns_names(dataclasses.replace(web, hostname=""), endpoint) == ("web", "front", web.short_id)
    names = build_snapshot(*world.records()).listeners["10.89.1.1"].names
    assert all(encode_name(name) in names for name in dns_names(web, endpoint))
