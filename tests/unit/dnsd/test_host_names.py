"""Issue 16, items 5 and 6: the gateway namespace sees every network; the host's own name is the asked gateway."""

from __future__ import annotations

import pytest

from dnsd.core.answer import Answerer, Forward
from dnsd.core.builder import build_snapshot
from dnsd.core.snapshot import host_names
from dnsd.core.wire import NOERROR, REFUSED

GATEWAY_A, GATEWAY_B, GATEWAY_A6 = "10.89.1.1", "10.89.2.1", "fd00:89:1::1"


@pytest.fixture
def lan(world):
    """neta (dual stack) with web, netb with web too and db; ab on both; netc internal with its own cache."""
    net_a = world.network("neta", "10.89.1.0/24", GATEWAY_A, subnet6="fd00:89:1::/64", gateway6=GATEWAY_A6,
                          dns=("192.0.2.53",))
    net_b = world.network("netb", "10.89.2.0/24", GATEWAY_B, dns=("192.0.2.53",))
    world.container("web", net_a, "10.89.1.2")
    world.container("web2", net_b, "10.89.2.3", aliases=("web",))
    world.container("db", net_b, "10.89.2.2")
    ab = world.container("ab", net_a, "10.89.1.5")
    world.attach(ab, net_b, "10.89.2.5")
    return world


def ask(answerer, dns, name, qtype="A", client="10.89.1.2", listener=GATEWAY_A):
    return answerer.handle(dns.query(name, qtype), client, listener, False)


@pytest.mark.parametrize(("name", "expected"), [
    ("web.neta", ["10.89.1.2"]), ("web.netb", ["10.89.2.3"]), ("db", ["10.89.2.2"]), ("db.netb", ["10.89.2.2"]),
    ("web2", ["10.89.2.3"]), ("3.2.89.10.in-addr.arpa", None),
])
@pytest.mark.parametrize(("source", "listener"), [(GATEWAY_A, GATEWAY_A), (GATEWAY_A, GATEWAY_B),
                                                  (GATEWAY_B, GATEWAY_A)])
def test_the_gateway_namespace_sees_every_network(lan, dns, name, expected, source, listener):
    answerer = Answerer(build_snapshot(*lan.records()))
    reply = ask(answerer, dns, name, "PTR" if expected is None else "A", client=source, listener=listener)
    assert dns.rdata(reply) == (expected or ["web2.netb."])


def test_a_bare_name_two_networks_hold_is_not_answered_from_the_gateway_namespace(lan, dns):
    answerer = Answerer(build_snapshot(*lan.records()))
    assert type(ask(answerer, dns, "web", client=GATEWAY_A)) is Forward  # ambiguous: not ours to pick
    assert dns.rdata(ask(answerer, dns, "web", client="10.89.1.5")) == ["10.89.1.2"]  # a container still gets its own


def test_a_container_still_sees_only_its_own_networks(lan, dns):
    answerer = Answerer(build_snapshot(*lan.records()))
    assert type(ask(answerer, dns, "db", client="10.89.1.2")) is Forward  # web is on neta only
    assert type(ask(answerer, dns, "db.netb", client="10.89.1.2")) is Forward


def rcode_of(reply) -> int:
    return reply[3] & 0x0F if type(reply) is bytes else -1


@pytest.mark.parametrize("name", ["host.netcore.internal", "HOST.Docker.Internal", "host.containers.internal."])
def test_the_hosts_name_is_the_gateway_asked(lan, dns, name):
    answerer = Answerer(build_snapshot(*lan.records()))
    assert dns.rdata(ask(answerer, dns, name, client="10.89.1.5", listener=GATEWAY_A)) == [GATEWAY_A]
    assert dns.rdata(ask(answerer, dns, name, "AAAA", client="10.89.1.5", listener=GATEWAY_A)) == [GATEWAY_A6]
    assert dns.rdata(ask(answerer, dns, name, client="10.89.1.5", listener=GATEWAY_B)) == [GATEWAY_B]
    nodata = ask(answerer, dns, name, "AAAA", client="10.89.2.2", listener=GATEWAY_B)  # netb has no IPv6
    assert rcode_of(nodata) == NOERROR and dns.rdata(nodata) == []


def test_the_aliases_can_be_turned_off_and_a_container_of_that_name_wins(lan, dns):
    answerer = Answerer(build_snapshot(*lan.records()), host_names=host_names(aliases=False))
    assert type(ask(answerer, dns, "host.docker.internal")) is Forward
    assert dns.rdata(ask(answerer, dns, "host.netcore.internal")) == [GATEWAY_A]


def test_a_container_named_like_the_host_wins(world, dns):
    net = world.network("neta", "10.89.1.0/24", GATEWAY_A)
    world.container("proxy", net, "10.89.1.7", aliases=("host.docker.internal",))
    answerer = Answerer(build_snapshot(*world.records()))
    assert dns.rdata(ask(answerer, dns, "host.docker.internal", client="10.89.1.7")) == ["10.89.1.7"]
    assert dns.rdata(ask(answerer, dns, "host.netcore.internal", client="10.89.1.7")) == [GATEWAY_A]


def test_a_stranger_outside_the_served_subnets_is_still_refused(lan, dns):
    answerer = Answerer(build_snapshot(*lan.records()))
    assert rcode_of(ask(answerer, dns, "db.netb", client="192.0.2.7")) == REFUSED
    assert type(ask(answerer, dns, "nowhere.neta", client=GATEWAY_A)) is Forward  # not held: asked upstream


FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     +-- 10.73.0.0/24 2 0 2
        |-- 10.73.0.0
           /24 link UNICAST
        |-- 10.73.0.1
           /32 host LOCAL
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
     |-- 172.17.0.1
        /32 host LOCAL
     |-- 172.17.255.255
        /32 link BROADCAST
"""
IF_INET6 = """00000000000000000000000000000001 01 80 10 80       lo
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
fd000074000000000000000000000001 04 40 00 82     br-1
"""


def test_the_namespaces_own_addresses_are_read_without_loopback_or_link_local():
    from dnsd.io.local_addresses import parse_fib_trie, parse_if_inet6
    assert parse_fib_trie(FIB_TRIE) == {"10.73.0.1", "172.17.0.1"}
    assert parse_if_inet6(IF_INET6) == {"fd00:74::1"}


def test_a_masqueraded_query_from_the_gateway_namespace_still_sees_every_network(lan, dns):
    """netcore's masquerade rule rewrites the source of a query through lo to another address of the namespace."""
    snapshot = build_snapshot(*lan.records())
    snapshot.host_sources = frozenset({"172.17.0.1"})
    answerer = Answerer(snapshot)
    assert dns.rdata(ask(answerer, dns, "db", client="172.17.0.1", listener=GATEWAY_A)) == ["10.89.2.2"]
    assert rcode_of(ask(answerer, dns, "db", client="172.17.0.2", listener=GATEWAY_A)) == REFUSED
