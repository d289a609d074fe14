"""The answering core, bytes in and bytes out, against snapshots built from model records."""

from __future__ import annotations

import collections
import ipaddress
import struct

import dnslib
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dnsd.core.answer import Answerer, Forward
from dnsd.core.builder import SnapshotBuilder, build_snapshot
from dnsd.core.snapshot import Upstream
from dnsd.core.wire import BADVERS, FORMERR, NOERROR, NOTIMP, NXDOMAIN, REFUSED, SERVFAIL

GATEWAY_A, GATEWAY_B, GATEWAY_A6 = "10.89.1.1", "10.89.2.1", "fd00:89:1::1"


@pytest.fixture
def lan(world):
    """netA (dual stack) with a1..a3 sharing the alias web, netB with b1, ab on both, d1 on the default bridge."""
    net_a = world.network("neta", "10.89.1.0/24", GATEWAY_A, subnet6="fd00:89:1::/64", gateway6=GATEWAY_A6)
    net_b = world.network("netb", "10.89.2.0/24", GATEWAY_B)
    bridge = world.network("bridge", "172.17.0.0/16", "172.17.0.1")
    world.container("a1", net_a, "10.89.1.2", aliases=("web",), hostname="a1host")
    world.container("a2", net_a, "10.89.1.3", aliases=("web",))
    world.container("a3", net_a, "10.89.1.4", aliases=("web",))
    world.container("six", net_a, "10.89.1.6", ipv6="fd00:89:1::6")
    world.container("b1", net_b, "10.89.2.2")
    ab = world.container("ab", net_a, "10.89.1.5")
    world.attach(ab, net_b, "10.89.2.5")
    world.container("d1", bridge, "172.17.0.2")
    return world


def answerer_for(world, ttl: int = 0, default_upstreams: tuple = ()) -> Answerer:
    return Answerer(build_snapshot(*world.records(), ttl=ttl), default_upstreams)


def ask(answerer, dns, name, qtype="A", client="10.89.1.2", listener=GATEWAY_A, tcp=False, **query_options):
    return answerer.handle(dns.query(name, qtype, **query_options), client, listener, tcp)


def rcode(reply: bytes) -> int:
    return reply[3] & 0x0F


# -- names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a2", "a2.", "a2.neta", "a1host", "a1host.neta"])
def test_container_names_answer_a(lan, dns, name):
    reply = ask(answerer_for(lan), dns, name, client="10.89.1.5")
    assert rcode(reply) == NOERROR
    expected = "10.89.1.2" if name.startswith("a1") else "10.89.1.3"
    assert dns.rdata(reply) == [expected]


def test_short_id_and_its_network_qualified_form_answer(lan, dns):
    a2 = next(c for c in lan.containers if c.name == "a2")
    answerer = answerer_for(lan)
    for name in (a2.short_id, f"{a2.short_id}.neta", a2.short_id.upper()):
        assert dns.rdata(ask(answerer, dns, name)) == ["10.89.1.3"]


def test_reply_header_copies_id_and_rd_sets_ra_never_aa(lan, dns):
    answerer = answerer_for(lan)
    for recursion_desired in (True, False):
        reply = dns.parse(ask(answerer, dns, "a2", query_id=0xBEEF, recursion_desired=recursion_desired))
        assert reply.header.id == 0xBEEF
        assert reply.header.qr == 1 and reply.header.ra == 1 and reply.header.aa == 0
        assert reply.header.rd == int(recursion_desired)
        assert reply.header.tc == 0


def test_matching_is_case_blind_and_the_question_is_echoed_as_asked(lan, dns):
    query = dns.query("A2.NetA")
    reply = answerer_for(lan).handle(query, "10.89.1.2", GATEWAY_A, False)
    assert reply[12:12 + len(query) - 12] == query[12:]  # the question, byte for byte
    parsed = dns.parse(reply)
    assert str(parsed.q.qname) == "A2.NetA."
    assert [str(record.rname) for record in parsed.rr] == ["A2.NetA."]
    assert dns.rdata(reply) == ["10.89.1.3"]


def test_ttl_defaults_to_zero_and_is_configurable(lan, dns):
    assert [r.ttl for r in dns.parse(ask(answerer_for(lan), dns, "a2")).rr] == [0]
    assert [r.ttl for r in dns.parse(ask(answerer_for(lan, ttl=30), dns, "a2")).rr] == [30]


def test_aaaa_answers_for_a_dual_stack_container(lan, dns):
    reply = ask(answerer_for(lan), dns, "six", "AAAA")
    assert rcode(reply) == NOERROR
    assert dns.rdata(reply) == ["fd00:89:1::6"]


@pytest.mark.parametrize("qtype", ["AAAA", "MX", "TXT", "SRV"])
def test_known_name_without_that_type_is_nodata_never_nxdomain(lan, dns, qtype):
    reply = ask(answerer_for(lan), dns, "a2", qtype)
    assert rcode(reply) == NOERROR
    assert dns.parse(reply).rr == []


def test_any_is_not_expanded_it_answers_the_addresses(lan, dns):
    reply = ask(answerer_for(lan), dns, "six", "ANY")
    assert rcode(reply) == NOERROR
    assert dns.rdata(reply) == ["10.89.1.6"]


@pytest.mark.parametrize("address, target", [("10.89.1.3", "a2.neta."), ("fd00:89:1::6", "six.neta.")])
def test_ptr_answers_name_dot_network(lan, dns, address, target):
    reply = ask(answerer_for(lan), dns, ipaddress.ip_address(address).reverse_pointer, "PTR")
    assert rcode(reply) == NOERROR
    assert dns.rdata(reply) == [target]


# -- aliases -----------------------------------------------------------------------------------------


def test_alias_answers_every_holder(lan, dns):
    reply = ask(answerer_for(lan), dns, "web")
    assert sorted(dns.rdata(reply)) == ["10.89.1.2", "10.89.1.3", "10.89.1.4"]
    assert sorted(dns.rdata(ask(answerer_for(lan), dns, "WEB.neta"))) == ["10.89.1.2", "10.89.1.3", "10.89.1.4"]


def test_alias_rotation_puts_each_holder_first_a_third_of_the_time(lan, dns):
    answerer = answerer_for(lan)
    firsts = collections.Counter()
    for query_id in range(3000):
        addresses = dns.rdata(ask(answerer, dns, "web", query_id=query_id))
        assert sorted(addresses) == ["10.89.1.2", "10.89.1.3", "10.89.1.4"]
        firsts[addresses[0]] += 1
    assert set(firsts) == {"10.89.1.2", "10.89.1.3", "10.89.1.4"}
    for count in firsts.values():
        assert abs(count - 1000) <= 50


def test_rotation_carries_over_a_snapshot_swap(lan, dns):
    answerer = answerer_for(lan)
    first = dns.rdata(ask(answerer, dns, "web"))[0]
    answerer.snapshot = build_snapshot(*lan.records())
    assert dns.rdata(ask(answerer, dns, "web"))[0] != first


def test_a_client_on_two_networks_gets_the_names_of_the_network_it_asked_through(world, dns):
    net_a = world.network("neta", "10.89.1.0/24", GATEWAY_A)
    net_b = world.network("netb", "10.89.2.0/24", GATEWAY_B)
    world.container("x1", net_a, "10.89.1.2", aliases=("svc",))
    world.container("x2", net_b, "10.89.2.2", aliases=("svc",))
    world.container("only_b", net_b, "10.89.2.3")
    both = world.container("both", net_a, "10.89.1.9")
    world.attach(both, net_b, "10.89.2.9", aliases=("svc",))
    answerer = answerer_for(world)
    # svc is x1 on A, and x2 and both on B (an alias belongs to one network's endpoint)
    assert dns.rdata(ask(answerer, dns, "svc", client="10.89.1.9", listener=GATEWAY_A)) == ["10.89.1.2"]
    assert sorted(dns.rdata(ask(answerer, dns, "svc", client="10.89.1.9", listener=GATEWAY_B))) == [
        "10.89.2.2", "10.89.2.9"]
    assert dns.rdata(ask(answerer, dns, "svc", client="10.89.1.2")) == ["10.89.1.2"]
    # a container's own name, on both of the client's networks: the address on the network asked
    assert dns.rdata(ask(answerer, dns, "both", client="10.89.1.9", listener=GATEWAY_A)) == ["10.89.1.9"]
    assert dns.rdata(ask(answerer, dns, "both", client="10.89.1.9", listener=GATEWAY_B)) == ["10.89.2.9"]
    assert dns.rdata(ask(answerer, dns, "both", client="10.89.2.2", listener=GATEWAY_B)) == ["10.89.2.9"]
    # a name the asked network lacks comes from the client's other networks, whichever gateway it asked
    for listener in (GATEWAY_A, GATEWAY_B):
        assert dns.rdata(ask(answerer, dns, "only_b", client="10.89.1.9", listener=listener)) == ["10.89.2.3"]
        assert dns.rdata(ask(answerer, dns, "x1", client="10.89.1.9", listener=listener)) == ["10.89.1.2"]
    # the remembered reply of one gateway is not given to a question through the other
    for _ in range(2):
        assert dns.rdata(ask(answerer, dns, "both", client="10.89.1.9", listener=GATEWAY_A)) == ["10.89.1.9"]
        assert dns.rdata(ask(answerer, dns, "both", client="10.89.1.9", listener=GATEWAY_B)) == ["10.89.2.9"]


def test_an_address_on_a_network_without_icc_is_offered_only_when_no_other_network_has_the_name(world, dns):
    """moby/moby#46162: pinga and pingb on uplink (enable_icc=false) and interconnect."""
    uplink = world.network("uplink", "10.89.1.0/24", GATEWAY_A,
                           options={"com.docker.network.bridge.enable_icc": "false"})
    interconnect = world.network("interconnect", "10.89.2.0/24", GATEWAY_B)
    pinga = world.container("pinga", uplink, "10.89.1.2")
    world.attach(pinga, interconnect, "10.89.2.2")
    pingb = world.container("pingb", uplink, "10.89.1.3")
    world.attach(pingb, interconnect, "10.89.2.3")
    world.container("lonely", uplink, "10.89.1.4")
    answerer = answerer_for(world)
    for listener in (GATEWAY_A, GATEWAY_B):
        for _ in range(3):  # never the unreachable address, however the answers rotate
            assert dns.rdata(ask(answerer, dns, "pingb", client="10.89.1.2", listener=listener)) == ["10.89.2.3"]
        # a name only the isolated network has is still answered: there is nothing better
        assert dns.rdata(ask(answerer, dns, "lonely", client="10.89.1.2", listener=listener)) == ["10.89.1.4"]
    # NAME.NETWORK still names the address on that network, and a source on uplink alone still sees uplink's
    assert dns.rdata(ask(answerer, dns, "pingb.uplink", client="10.89.1.2")) == ["10.89.1.3"]
    assert dns.rdata(ask(answerer, dns, "pingb", client="10.89.1.4", listener=GATEWAY_A)) == ["10.89.1.3"]


# -- remembered replies ------------------------------------------------------------------------------


def test_a_repeated_query_gets_the_same_reply_with_its_own_id(lan, dns):
    answerer = answerer_for(lan)
    first = ask(answerer, dns, "a2", query_id=1)
    again = ask(answerer, dns, "a2", query_id=2)
    fresh = ask(answerer_for(lan), dns, "a2", query_id=2)
    assert again == fresh  # remembered or not, byte for byte what a fresh answerer says
    assert first[:2] == b"\x00\x01" and again[:2] == b"\x00\x02" and first[2:] == again[2:]


def test_remembered_replies_keep_each_spelling_and_flags_of_the_question(lan, dns):
    answerer = answerer_for(lan)
    for _ in range(2):
        for name in ("a2", "A2", "a2.NETA"):
            for recursion_desired in (True, False):
                reply = dns.parse(ask(answerer, dns, name, recursion_desired=recursion_desired))
                assert str(reply.q.qname) == f"{name}."
                assert reply.header.rd == int(recursion_desired)
                assert [str(r.rdata) for r in reply.rr] == ["10.89.1.3"]


def test_rotating_sets_are_never_remembered(lan, dns):
    answerer = answerer_for(lan)
    firsts = {dns.rdata(ask(answerer, dns, "web", query_id=1))[0] for _ in range(6)}  # the same query each time
    assert len(firsts) == 3


def test_after_a_swap_a_changed_name_gets_its_new_answer_not_a_remembered_one(lan, dns):
    builder = SnapshotBuilder()  # as the server does: patches keep the scopes of unchanged containers
    with lan.dns_records() as (networks, containers):
        answerer = Answerer(builder.build(networks, containers))
    assert dns.rdata(ask(answerer, dns, "b1", client="10.89.2.5", listener=GATEWAY_B)) == ["10.89.2.2"]
    b1 = next(c for c in lan.containers if c.name == "b1")
    lan.remove_container(b1)
    new_b1 = lan.container("b1", lan.networks[1], "10.89.2.9")
    answerer.snapshot = builder.patch({b1.id, new_b1.id}, lan.container_records({b1.id, new_b1.id}))
    assert dns.rdata(ask(answerer, dns, "b1", client="10.89.2.5", listener=GATEWAY_B)) == ["10.89.2.9"]


def test_remembered_replies_stay_within_their_scope(lan, dns):
    answerer = answerer_for(lan)
    assert dns.rdata(ask(answerer, dns, "b1", client="10.89.2.5", listener=GATEWAY_B)) == ["10.89.2.2"]
    assert dns.rdata(ask(answerer, dns, "b1", client="10.89.2.200", listener=GATEWAY_B)) == ["10.89.2.2"]
    # a container of netA only, and a source outside every served subnet, never get netB's answer
    assert rcode(ask(answerer, dns, "b1", client="10.89.1.2", listener=GATEWAY_B)) != NOERROR
    assert rcode(ask(answerer, dns, "b1", client="192.168.7.7", listener=GATEWAY_B)) == REFUSED


def test_the_memo_is_bounded(lan, dns, monkeypatch):
    monkeypatch.setattr("dnsd.core.answer.REPLY_MEMO_SIZE", 3)
    answerer = answerer_for(lan)
    names = ["a1", "a2", "a3", "six", "ab", "a1host"]
    for _ in range(3):
        for name in names:
            assert rcode(ask(answerer, dns, name)) == NOERROR
            assert sum(len(replies) for replies in answerer._current[1].values()) <= 3


# -- replay tables (what dnsd/io/_replay.c looks up) ----------------------------------------------------


def replayed(answerer: Answerer, query: bytes, client: str, listener: str) -> bytes | None:
    """What the compiled loop would send for ``query`` from ``client`` (keyed by its address bytes, as the loop
    keys it) to the listener on ``listener``, or None where it would hand the query to Python."""
    key = ipaddress.ip_address(client).packed
    replies = answerer.replay_table(listener)[0].get(key)
    tail = replies.get(query[2:]) if replies is not None else None
    return query[:2] + tail if tail.__class__ is bytes else None


def ask_and_remember(answerer, dns, name, client="10.89.1.2", listener=GATEWAY_A, **query_options) -> bytes:
    """A UDP listener's part for a query Python answers: answer it, then remember the client."""
    reply = ask(answerer, dns, name, client=client, listener=listener, **query_options)
    answerer.remember_client(ipaddress.ip_address(client).packed, client, listener)
    return reply


def test_a_remembered_client_is_replayed_what_the_answerer_says(lan, dns):
    answerer = answerer_for(lan)
    answerer.replay_table(GATEWAY_A)
    assert replayed(answerer, dns.query("a2", query_id=7), "10.89.1.2", GATEWAY_A) is None
    ask_and_remember(answerer, dns, "a2", query_id=1)
    for query_id in (7, 8):
        query = dns.query("a2", query_id=query_id)
        assert replayed(answerer, query, "10.89.1.2", GATEWAY_A) == answerer_for(lan).handle(
            query, "10.89.1.2", GATEWAY_A, False)
    # another container of the same network shares the scope, but is replayed only once it is remembered
    assert replayed(answerer, dns.query("a2"), "10.89.1.3", GATEWAY_A) is None
    ask_and_remember(answerer, dns, "a1", client="10.89.1.3")
    assert dns.rdata(replayed(answerer, dns.query("a2"), "10.89.1.3", GATEWAY_A)) == ["10.89.1.3"]


def test_what_is_never_remembered_is_never_replayed(lan, dns):
    """Rotating sets, EDNS queries, NXDOMAIN and REFUSED are the answerer's every time."""
    answerer = answerer_for(lan)
    answerer.replay_table(GATEWAY_A)
    answerer.replay_table(GATEWAY_B)
    for name, options in (("web", {}), ("a2", {"edns_payload": 1232}), ("nosuch", {})):
        ask_and_remember(answerer, dns, name, **options)
        assert replayed(answerer, dns.query(name, **options), "10.89.1.2", GATEWAY_A) is None
    ask_and_remember(answerer, dns, "b1", client="192.168.7.7", listener=GATEWAY_B)  # REFUSED: not a client
    assert answerer.replay_table(GATEWAY_B)[0] == {}


def test_replay_tables_are_per_listener(lan, dns):
    """A container on two networks may get another scope through each gateway: one table per listener."""
    answerer = answerer_for(lan)
    answerer.replay_table(GATEWAY_A)
    answerer.replay_table(GATEWAY_B)
    ask_and_remember(answerer, dns, "b1", client="10.89.1.5", listener=GATEWAY_B)
    assert dns.rdata(replayed(answerer, dns.query("b1"), "10.89.1.5", GATEWAY_B)) == ["10.89.2.2"]
    assert replayed(answerer, dns.query("b1"), "10.89.1.5", GATEWAY_A) is None


def test_a_new_snapshot_puts_new_tables_in_the_cells(lan, dns):
    """Nothing remembered from an old snapshot is replayed: the cell's item is replaced, not emptied, so a
    listener thread still holding the old table cannot add to what is replayed now."""
    builder = SnapshotBuilder()
    with lan.dns_records() as (networks, containers):
        answerer = Answerer(builder.build(networks, containers))
    cell = answerer.replay_table(GATEWAY_B)
    ask_and_remember(answerer, dns, "b1", client="10.89.2.5", listener=GATEWAY_B)
    old_table = cell[0]
    b1 = next(c for c in lan.containers if c.name == "b1")
    lan.remove_container(b1)
    new_b1 = lan.container("b1", lan.networks[1], "10.89.2.9")
    answerer.snapshot = builder.patch({b1.id, new_b1.id}, lan.container_records({b1.id, new_b1.id}))
    assert answerer.replay_table(GATEWAY_B) is cell and cell[0] == {} and cell[0] is not old_table
    assert replayed(answerer, dns.query("b1"), "10.89.2.5", GATEWAY_B) is None
    ask_and_remember(answerer, dns, "b1", client="10.89.2.5", listener=GATEWAY_B)
    assert dns.rdata(replayed(answerer, dns.query("b1"), "10.89.2.5", GATEWAY_B)) == ["10.89.2.9"]


def test_a_dropped_memo_drops_the_tables_and_both_are_bounded(lan, dns, monkeypatch):
    monkeypatch.setattr("dnsd.core.answer.REPLY_MEMO_SIZE", 3)
    monkeypatch.setattr("dnsd.core.answer.REPLAY_CLIENTS", 2)
    answerer = answerer_for(lan)
    cell = answerer.replay_table(GATEWAY_A)
    for client in ("10.89.1.2", "10.89.1.3", "10.89.1.4"):
        ask_and_remember(answerer, dns, "a2", client=client)
        assert len(cell[0]) <= 2
    for name in ("a1", "a3", "six", "ab"):  # the fourth remembered reply drops the memo, the table with it
        ask_and_remember(answerer, dns, name)
    table = cell[0]
    replies = table[ipaddress.ip_address("10.89.1.2").packed]
    assert replies is next(iter(answerer._current[1].values())) and len(replies) <= 3


def test_a_closed_listener_keeps_no_table(lan, dns):
    answerer = answerer_for(lan)
    answerer.replay_table(GATEWAY_A)
    answerer.forget_replay(GATEWAY_A)
    answerer.snapshot = answerer.snapshot
    assert answerer._current[2] == {} and answerer._replay_cells == {}
    answerer.remember_client(b"\x0a\x59\x01\x02", "10.89.1.2", GATEWAY_A)  # no table: nothing to fill
    assert answerer._current[2] == {}


# -- isolation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("client, listener, name, seen", [
    ("10.89.1.2", GATEWAY_A, "b1", False),  # a container on A alone, whichever gateway it asks
    ("10.89.1.2", GATEWAY_B, "b1", False),
    ("10.89.1.2", GATEWAY_B, "a2", True),
    ("fd00:89:1::6", GATEWAY_A6, "a2", True),  # a container's IPv6 address is the same client
    ("10.89.1.5", GATEWAY_A, "b1", True),  # a container on A and B sees both, from either gateway
    ("10.89.1.5", GATEWAY_B, "a2", True),
    ("10.89.1.200", GATEWAY_A, "a2", True),  # no container: the asked gateway's network only
    ("10.89.1.200", GATEWAY_A, "b1", False),
    ("10.89.2.200", GATEWAY_B, "b1", True),
    ("10.89.2.200", GATEWAY_B, "a2", False),
    ("10.89.1.200", GATEWAY_B, "b1", None),  # ... and only from its subnets (issue 24 item 1): REFUSED
    ("10.89.1.200", GATEWAY_B, "a2", None),
    ("10.89.2.2", GATEWAY_A, "d1", False),  # the default bridge has no names
])
def test_isolation_matrix(lan, dns, client, listener, name, seen):
    answerer = answerer_for(lan, default_upstreams=(("127.0.0.1", 5353),))
    reply = ask(answerer, dns, name, client=client, listener=listener)
    if seen:
        assert rcode(reply) == NOERROR and dns.rdata(reply)
    elif seen is None:  # no client of that gateway's network: refused, never forwarded
        assert not isinstance(reply, Forward) and rcode(reply) == REFUSED
    else:  # not answered here: it goes upstream like any name dnsd does not hold
        assert isinstance(reply, Forward)


@pytest.mark.parametrize("client", ["192.168.7.7", "172.17.0.2", "127.0.0.1"])
def test_sources_outside_every_served_subnet_are_refused(lan, dns, client):
    reply = ask(answerer_for(lan, default_upstreams=(("127.0.0.1", 5353),)), dns, "a2", client=client)
    assert rcode(reply) == REFUSED
    assert dns.parse(reply).rr == []


def test_ptr_of_an_address_on_a_network_the_client_cannot_see_is_nxdomain(lan, dns):
    answerer = answerer_for(lan, default_upstreams=(("127.0.0.1", 5353),))
    reply = ask(answerer, dns, "2.2.89.10.in-addr.arpa", "PTR", client="10.89.1.2")
    assert rcode(reply) == NXDOMAIN
    assert dns.rdata(ask(answerer, dns, "2.2.89.10.in-addr.arpa", "PTR", client="10.89.1.5")) == ["b1.netb."]


def test_default_bridge_gets_no_listener(lan):
    assert build_snapshot(*lan.records()).listen_addresses == {GATEWAY_A, GATEWAY_B, GATEWAY_A6}


# -- size, truncation and EDNS -----------------------------------------------------------------------


@pytest.fixture
def crowd(world):
    """40 containers sharing the alias crowd: 640 bytes of answers, more than 512."""
    net = world.network("neta", "10.89.1.0/24", GATEWAY_A)
    for index in range(40):
        world.container(f"c{index}", net, f"10.89.1.{index + 10}", aliases=("crowd",))
    return world


def test_udp_answer_over_512_bytes_carries_the_records_that_fit_with_tc(crowd, dns):
    """alpinelinux/docker-alpine#326: musl before 1.2.4 and busybox never retry over TCP; an empty
    truncated reply left them with nothing."""
    answerer = answerer_for(crowd)
    firsts = []
    for _ in range(40):
        reply = ask(answerer, dns, "crowd", client="10.89.1.10")
        parsed = dns.parse(reply)
        assert parsed.header.tc == 1 and rcode(reply) == NOERROR and len(reply) <= 512
        # 512 - 12 (header) - 9 (question) leaves room for 30 records of 16 bytes
        assert len(parsed.rr) == 30 == parsed.header.a and len(set(dns.rdata(reply))) == 30
        firsts.append(dns.rdata(reply)[0])
    assert len(set(firsts)) == 40  # the rotation still applies: every holder comes first in turn


def test_a_truncated_reply_never_ends_in_part_of_a_record(world, dns):
    """PTR records differ in size: only whole ones go in."""
    net = world.network("neta", "10.89.1.0/24", GATEWAY_A)
    world.container("c", net, "10.89.1.9")
    for index in range(30):  # thirty names of different lengths hold one address: one PTR record each
        world.container(f"n{'x' * index}", net, "10.89.1.10")
    reply = ask(answerer_for(world), dns, "10.1.89.10.in-addr.arpa", "PTR", client="10.89.1.9")
    parsed = dns.parse(reply)
    assert parsed.header.tc == 1 and 0 < len(parsed.rr) < 30 and len(reply) <= 512
    assert parsed.header.a == len(parsed.rr)


def test_udp_replies_are_capped_at_the_size_dnsd_advertises(world, dns):
    """RFC 6891 section 6.2.5 and DNS flag day 2020: never more than 1,232 bytes over UDP, whatever is asked."""
    net = world.network("neta", "10.89.1.0/24", GATEWAY_A)
    for index in range(100):  # 1,600 bytes of answers
        world.container(f"c{index}", net, f"10.89.1.{index + 10}", aliases=("many",))
    answerer = answerer_for(world)
    reply = ask(answerer, dns, "many", client="10.89.1.10", edns_payload=4096)
    assert len(reply) <= 1232 and dns.parse(reply).header.tc == 1
    assert len(dns.parse(ask(answerer, dns, "many", client="10.89.1.10", tcp=True, edns_payload=4096)).rr) == 100


def test_the_same_answer_is_whole_over_tcp(crowd, dns):
    reply = ask(answerer_for(crowd), dns, "crowd", client="10.89.1.10", tcp=True)
    parsed = dns.parse(reply)
    assert parsed.header.tc == 0 and len(parsed.rr) == 40


def test_edns_payload_size_lifts_the_limit_and_the_reply_carries_opt(crowd, dns):
    answerer = answerer_for(crowd)
    parsed = dns.parse(ask(answerer, dns, "crowd", client="10.89.1.10", edns_payload=4096))
    assert parsed.header.tc == 0 and len(parsed.rr) == 40
    assert [record.rtype for record in parsed.ar] == [dnslib.QTYPE.OPT]
    small = dns.parse(ask(answerer, dns, "crowd", client="10.89.1.10", edns_payload=600))
    assert small.header.tc == 1 and [record.rtype for record in small.ar] == [dnslib.QTYPE.OPT]


def test_reply_has_opt_only_when_the_query_had_one(lan, dns):
    answerer = answerer_for(lan)
    assert dns.parse(ask(answerer, dns, "a2")).ar == []
    with_edns = dns.parse(ask(answerer, dns, "a2", edns_payload=1232))
    assert [record.rtype for record in with_edns.ar] == [dnslib.QTYPE.OPT]
    assert dns.rdata(ask(answerer, dns, "a2", edns_payload=1232)) == ["10.89.1.3"]


def test_edns_with_options_such_as_a_cookie_is_understood(lan, dns):
    query = dnslib.DNSRecord.question("a2")
    query.add_ar(dnslib.EDNS0(udp_len=1232, opts=[dnslib.EDNSOption(10, b"\x01" * 8)]))
    reply = answerer_for(lan).handle(bytes(query.pack()), "10.89.1.2", GATEWAY_A, False)
    assert dns.rdata(reply) == ["10.89.1.3"]


def test_unknown_edns_version_gets_badvers(lan, dns):
    query = dnslib.DNSRecord.question("a2")
    query.add_ar(dnslib.EDNS0(udp_len=1232, version=1))
    reply = answerer_for(lan).handle(bytes(query.pack()), "10.89.1.2", GATEWAY_A, False)
    parsed = dns.parse(reply)
    assert parsed.rr == []
    opt = parsed.ar[0]
    assert ((opt.ttl >> 24) << 4) | parsed.header.rcode == BADVERS


# -- bad input ---------------------------------------------------------------------------------------


def _header(query_id=0x4242, flags=0x0100, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack("!HHHHHH", query_id, flags, qd, an, ns, ar)


QUESTION_A2 = b"\x02a2\x00\x00\x01\x00\x01"


@pytest.mark.parametrize("message", [
    b"",
    b"\x12\x34\x01",
    _header()[:11],
    _header(flags=0x8180) + QUESTION_A2,  # a response, not a query
], ids=["empty", "short", "header-short", "response"])
def test_messages_no_reply_can_be_made_to_are_dropped(lan, message):
    answerer = answerer_for(lan)
    assert answerer.handle(message, "10.89.1.2", GATEWAY_A, False) is None
    assert answerer.stats.malformed == 1


@pytest.mark.parametrize("message, expected", [
    (_header(flags=0x2100) + QUESTION_A2, NOTIMP),  # opcode UPDATE
    (_header(flags=0x1100) + QUESTION_A2, NOTIMP),  # opcode STATUS
    (_header(qd=0), FORMERR),
    (_header(qd=2) + QUESTION_A2 + QUESTION_A2, FORMERR),
    (_header() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01", FORMERR),  # a label of 64 bytes
    (_header() + b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x3f" + b"d" * 63
     + b"\x00\x00\x01\x00\x01", FORMERR),  # a name of 257 bytes
    (_header() + b"\xc0\x0c\x00\x01\x00\x01", FORMERR),  # a compression pointer in the question
    (_header() + b"\x02a2\x00\x00\x01", FORMERR),  # the question cut short
    (_header() + b"\x02a2", FORMERR),
    (_header(ar=1) + QUESTION_A2 + b"\xc0\x20\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x01\x02\x03\x04",
     FORMERR),  # a record whose name points forward
    (_header(ar=1) + QUESTION_A2 + b"\x01x\xc0\x1b\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x01\x02\x03\x04",
     FORMERR),  # a record whose name points at itself: a loop
    (_header(ar=2) + QUESTION_A2 + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00" * 2, FORMERR),  # two OPT
    (_header(an=1) + QUESTION_A2 + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00", FORMERR),  # OPT as answer
    (_header(ar=1) + QUESTION_A2 + b"\x00\x00\x29\x04\xd0\x00\x00", FORMERR),  # OPT cut short
], ids=["update", "status", "no-question", "two-questions", "long-label", "long-name", "pointer-in-question",
        "question-short", "no-type", "forward-pointer", "pointer-loop", "two-opt", "opt-in-answer", "opt-short"])
def test_malformed_queries_get_formerr_or_notimp(lan, message, expected):
    answerer = answerer_for(lan)
    reply = answerer.handle(message, "10.89.1.2", GATEWAY_A, False)
    assert reply[:2] == b"\x42\x42"
    assert reply[2] & 0x80 and rcode(reply) == expected
    assert answerer.stats.malformed == 1


def test_unusual_but_valid_query_is_answered_through_the_full_parser(lan, dns):
    query = dns.query("a2") + b"\x00"  # a stray byte after the question
    assert dns.rdata(answerer_for(lan).handle(query, "10.89.1.2", GATEWAY_A, False)) == ["10.89.1.3"]


FUZZ_SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ_SETTINGS
@given(data=st.binary(max_size=600), tcp=st.booleans())
def test_handle_never_raises_on_random_bytes(lan, data, tcp):
    answerer = answerer_for(lan, default_upstreams=(("127.0.0.1", 5353),))
    result = answerer.handle(data, "10.89.1.2", GATEWAY_A, tcp)
    assert result is None or isinstance(result, (bytes, Forward))


@FUZZ_SETTINGS
@given(tail=st.binary(max_size=300), flags=st.integers(0, 0xFFFF), counts=st.tuples(*[st.integers(0, 3)] * 4),
       client=st.sampled_from(["10.89.1.2", "10.89.1.200", "192.168.1.1", "fd00:89:1::6"]))
def test_handle_never_raises_on_a_plausible_header_with_random_tail(lan, tail, flags, counts, client):
    answerer = answerer_for(lan, default_upstreams=(("127.0.0.1", 5353),))
    data = struct.pack("!HHHHHH", 7, flags, *counts) + tail
    result = answerer.handle(data, client, GATEWAY_A, False)
    assert result is None or isinstance(result, (bytes, Forward))


@FUZZ_SETTINGS
@given(position=st.integers(0, 40), value=st.integers(0, 255), name=st.sampled_from(["a2", "web", "example.com"]))
def test_handle_never_raises_on_a_query_with_one_byte_changed(lan, dns, position, value, name):
    answerer = answerer_for(lan, default_upstreams=(("127.0.0.1", 5353),))
    query = bytearray(dns.query(name, edns_payload=1232))
    query[position % len(query)] = value
    result = answerer.handle(bytes(query), "10.89.1.2", GATEWAY_A, False)
    assert result is None or isinstance(result, (bytes, Forward))


# -- forwarding decisions ----------------------------------------------------------------------------


DEFAULT_UPSTREAM = ("127.0.0.1", 5354)  # dnsd's --upstream


def as_upstreams(lists: list[list[tuple]]) -> tuple[tuple[Upstream, ...], ...]:
    """Lists of (address, port[, netns]) as a Forward holds them; no netns: dnsd's own namespace."""
    return tuple(tuple(Upstream(*server) for server in servers) for servers in lists)


@pytest.fixture
def upstream_world(world):
    net_a = world.network("neta", "10.89.1.0/24", GATEWAY_A, dns=("10.0.0.1", "10.0.0.2:5353"))
    net_b = world.network("netb", "10.89.2.0/24", GATEWAY_B, dns=("10.0.0.3",))
    net_c = world.network("netc", "10.89.3.0/24", "10.89.3.1")
    net_d = world.network("netd", "10.89.4.0/24", "10.89.4.1")
    net_i = world.network("neti", "10.89.5.0/24", "10.89.5.1", internal=True, dns=("10.0.0.5",))
    net_e = world.network("nete", "10.89.6.0/24", "10.89.6.1", dns=("10.0.0.3", "10.0.0.1", "10.0.0.4", "10.0.0.6"))
    world.container("own", net_a, "10.89.1.2", dns=("10.0.0.9", "10.0.0.8", "10.0.0.7", "10.0.0.6"))
    world.container("plain", net_a, "10.89.1.3")
    ba = world.container("ba", net_b, "10.89.2.4")
    world.attach(ba, net_a, "10.89.1.4")
    world.container("c1", net_c, "10.89.3.2")
    cd = world.container("cd", net_c, "10.89.3.3")  # two networks without --dns: dnsd's --upstream, once
    world.attach(cd, net_d, "10.89.4.3")
    ac = world.container("ac", net_a, "10.89.1.5")
    world.attach(ac, net_c, "10.89.3.5")
    ia = world.container("ia", net_i, "10.89.5.2")  # an internal network gives no list
    world.attach(ia, net_a, "10.89.1.6")
    be = world.container("be", net_b, "10.89.2.7")  # netE's servers already in an earlier list are not asked twice
    world.attach(be, net_e, "10.89.6.7")
    world.attach(be, net_a, "10.89.1.7")
    return world


@pytest.mark.parametrize("client, expected", [
    ("10.89.1.2", [[("10.0.0.9", 53), ("10.0.0.8", 53), ("10.0.0.7", 53)]]),  # its own --dns, at most 3
    ("10.89.1.3", [[("10.0.0.1", 53), ("10.0.0.2", 5353)]]),  # its network's --dns
    ("10.89.2.4", [[("10.0.0.3", 53)], [("10.0.0.1", 53), ("10.0.0.2", 5353)]]),  # its networks' in interface order
    ("10.89.3.2", [[DEFAULT_UPSTREAM]]),  # nothing configured: dnsd's --upstream
    ("10.89.3.3", [[DEFAULT_UPSTREAM]]),
    ("10.89.1.5", [[("10.0.0.1", 53), ("10.0.0.2", 5353)], [DEFAULT_UPSTREAM]]),
    ("10.89.5.2", [[("10.0.0.1", 53), ("10.0.0.2", 5353)]]),
    ("10.89.2.7", [[("10.0.0.3", 53)], [("10.0.0.1", 53), ("10.0.0.4", 53)], [("10.0.0.2", 5353)]]),
])
def test_upstream_order_is_one_per_client_whichever_gateway_it_asks(upstream_world, dns, client, expected):
    answerer = answerer_for(upstream_world, default_upstreams=(DEFAULT_UPSTREAM,))
    query = dns.query("example.com", edns_payload=1232)
    for listener in (GATEWAY_A, GATEWAY_B, "10.89.3.1", "10.89.4.1", "10.89.5.1", "10.89.6.1"):
        forward = answerer.handle(query, client, listener, False)
        assert isinstance(forward, Forward)
        assert forward.upstream_groups == as_upstreams(expected), listener
        assert forward.query == query and forward.edns
        assert forward.question == query[12:12 + len(b"\x07example\x03com\x00") + 4]


@pytest.mark.parametrize("client, listener, expected", [
    ("10.89.1.200", GATEWAY_A, [[("10.0.0.1", 53), ("10.0.0.2", 5353)]]),  # no container: the asked network's
    ("10.89.2.200", GATEWAY_B, [[("10.0.0.3", 53)]]),
    ("10.89.3.200", "10.89.3.1", [[DEFAULT_UPSTREAM]]),
])
def test_a_source_that_is_no_container_gets_the_asked_networks_upstreams(upstream_world, dns, client, listener,
                                                                         expected):
    answerer = answerer_for(upstream_world, default_upstreams=(DEFAULT_UPSTREAM,))
    forward = answerer.handle(dns.query("example.com"), client, listener, False)
    assert forward.upstream_groups == as_upstreams(expected)


@pytest.mark.parametrize("client, listener", [
    ("10.89.5.200", GATEWAY_A),  # a spare address of the internal network, at a gateway that forwards
    ("10.89.5.200", "10.89.6.1"),
    ("10.89.1.200", GATEWAY_B),  # any source of one network's subnet at another network's gateway
    ("192.0.2.7", GATEWAY_A),  # outside every served subnet
])
def test_a_source_that_is_no_container_outside_the_asked_networks_subnets_is_refused(upstream_world, dns, client,
                                                                                      listener):
    """Issue 24 item 1 (attack a, the class of Docker's CVE-2024-29018): no forwarded answer, no local one."""
    answerer = answerer_for(upstream_world, default_upstreams=(DEFAULT_UPSTREAM,))
    for name in ("example.com", "plain"):
        reply = answerer.handle(dns.query(name), client, listener, False)
        assert not isinstance(reply, Forward) and rcode(reply) == REFUSED, name
    # through its own network's gateway, an internal network's source gets no way out either
    reply = answerer.handle(dns.query("example.com"), "10.89.5.200", "10.89.5.1", False)
    assert not isinstance(reply, Forward) and rcode(reply) == NXDOMAIN


def groups_of(answerer, dns, client, listener=GATEWAY_A):
    forward = answerer.handle(dns.query("example.com"), client, listener, False)
    assert isinstance(forward, Forward)
    return forward.upstream_groups


def test_a_containers_loopback_dns_is_asked_from_its_own_namespace(world, dns):
    net = world.network("neta", "10.89.1.0/24", GATEWAY_A, dns=("127.0.0.1", "10.0.0.1"))
    own = ("127.0.0.1:5300", "::1", "127.0.0.53", "10.0.0.9")
    world.container("one", net, "10.89.1.2", dns=own)
    world.container("two", net, "10.89.1.3", dns=own)
    world.container("plain", net, "10.89.1.4")
    world.container("far", net, "10.89.1.5", dns=("10.0.0.9",))
    world.container("near", net, "10.89.1.6", dns=("10.0.0.9",))
    answerer = answerer_for(world, default_upstreams=(("127.0.0.1", 5354),))
    # moby/libnetwork#1595: a loopback --dns on a container is a resolver inside it (consul, a local dnsmasq)
    assert groups_of(answerer, dns, "10.89.1.2") == as_upstreams([[("127.0.0.1", 5300, "ns-one"), ("::1", 53, "ns-one"),
                                                                   ("127.0.0.53", 53, "ns-one")]])
    assert groups_of(answerer, dns, "10.89.1.3") == as_upstreams([[("127.0.0.1", 5300, "ns-two"), ("::1", 53, "ns-two"),
                                                                   ("127.0.0.53", 53, "ns-two")]])
    # a network's loopback --dns, and other servers, are asked from dnsd's own namespace
    assert groups_of(answerer, dns, "10.89.1.4") == as_upstreams([[("127.0.0.1", 53), ("10.0.0.1", 53)]])
    assert groups_of(answerer, dns, "10.89.1.5") == as_upstreams([[("10.0.0.9", 53)]])
    snapshot = answerer.snapshot
    assert snapshot.clients["10.89.1.5"] == snapshot.clients["10.89.1.6"]  # no loopback server: one shared scope


def test_a_loopback_dns_keeps_its_namespace_through_patches(world, dns):
    net = world.network("neta", "10.89.1.0/24", GATEWAY_A)
    world.container("plain", net, "10.89.1.4")
    builder = SnapshotBuilder()
    with world.dns_records() as (networks, containers):
        builder.build(networks, containers)
    seen = world.generation()
    later = world.container("later", net, "10.89.1.7", dns=("127.0.0.1",))
    _, changed = world.changes_since(seen)
    assert builder.can_patch(len(changed))
    answerer = Answerer(builder.patch(changed, world.container_records(changed)))
    assert groups_of(answerer, dns, "10.89.1.7") == as_upstreams([[("127.0.0.1", 53, later.netns)]])


@pytest.mark.parametrize("qtype", ["A", "AAAA", "MX"])
def test_nothing_to_forward_to_is_nxdomain(upstream_world, dns, qtype):
    # no upstream anywhere (sandbox mode's default): NXDOMAIN, as aardvark-dns answers, so every libc gives up at
    # once; SERVFAIL has musl retry until its 5 s timeout
    reply = ask(answerer_for(upstream_world), dns, "example.com", qtype, client="10.89.3.2", listener="10.89.3.1")
    assert rcode(reply) == NXDOMAIN
    assert dns.parse(reply).rr == [] and str(dns.parse(reply).q.qname) == "example.com."


def test_forward_error_reply_keeps_id_question_and_edns(upstream_world, dns):
    forward = ask(answerer_for(upstream_world), dns, "Example.COM", query_id=77, edns_payload=1232)
    parsed = dns.parse(forward.error_reply(SERVFAIL))
    assert parsed.header.id == 77 and parsed.header.rcode == SERVFAIL
    assert str(parsed.q.qname) == "Example.COM."
    assert [record.rtype for record in parsed.ar] == [dnslib.QTYPE.OPT]


def test_internal_networks_are_not_forwarded_for(world, dns):
    net = world.network("private", "10.89.5.0/24", "10.89.5.1", internal=True, dns=("10.0.0.1",))
    world.container("p1", net, "10.89.5.2")
    world.container("p2", net, "10.89.5.3")
    answerer = answerer_for(world, default_upstreams=(("127.0.0.1", 5354),))
    # no way out: NXDOMAIN (aardvark-dns's answer for internal networks); musl ignores REFUSED and waits out 5 s
    assert rcode(ask(answerer, dns, "example.com", client="10.89.5.2", listener="10.89.5.1")) == NXDOMAIN
    assert rcode(ask(answerer, dns, "example.com", client="10.89.5.200", listener="10.89.5.1")) == NXDOMAIN
    assert dns.rdata(ask(answerer, dns, "p2", client="10.89.5.2", listener="10.89.5.1")) == ["10.89.5.3"]


# -- case: every key is folded as the question is ------------------------------------------------------------


def test_name_network_is_case_blind_and_the_ptr_target_resolves_back(world, dns):
    """moby/moby#28689: `network create Net1`, `run --name WebApp --net Net1`."""
    net = world.network("Net1", "10.89.1.0/24", GATEWAY_A)
    web = world.container("WebApp", net, "10.89.1.2", aliases=("Api",), hostname="WebHost")
    world.container("client", net, "10.89.1.3")
    answerer = answerer_for(world)
    for name in ("webapp", "WEBAPP", "WebApp.Net1", "webapp.net1", "WEBAPP.NET1", "api.NET1", "WEBHOST.net1",
                 f"{web.id[:12].upper()}.Net1", "WebApp.Net1."):
        assert dns.rdata(ask(answerer, dns, name, client="10.89.1.3")) == ["10.89.1.2"], name
    [target] = dns.rdata(ask(answerer, dns, "2.1.89.10.in-addr.arpa", "PTR", client="10.89.1.3"))
    assert dns.rdata(ask(answerer, dns, target, client="10.89.1.3")) == ["10.89.1.2"]


_label = st.text("abcXYZ019_-", min_size=1, max_size=8).filter(lambda text: text[0].isalnum())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(networks=st.lists(_label, min_size=1, max_size=3, unique_by=str.lower),
       containers=st.lists(st.tuples(_label, st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True),
                                     st.lists(_label, max_size=2), _label),
                           min_size=1, max_size=6, unique_by=lambda c: c[0]),
       fold=st.sampled_from([str.lower, str.upper, str.swapcase, lambda text: text]))
def test_every_key_answers_in_any_case_and_every_ptr_target_resolves_back(new_world, dns, networks, containers, fold):
    """For random mixed-case names: each name a container answers to, plain and as NAME.NETWORK, in any
    case, includes its address; and each PTR target, asked in any case, leads back to the address."""
    world = new_world()
    nets = [world.network(name, f"10.89.{index}.0/24", f"10.89.{index}.1") for index, name in enumerate(networks)]
    placed = []
    for number, (name, on, aliases, hostname) in enumerate(containers):
        container = world.container(name, hostname=hostname)
        for index in sorted({i % len(nets) for i in on}):
            address = f"10.89.{index}.{number + 10}"
            world.attach(container, nets[index], address, aliases=tuple(aliases))
            placed.append((container, nets[index], address, aliases))
    answerer = answerer_for(world)
    for container, network, address, aliases in placed:
        for key in (container.name, container.hostname, container.id[:12], *aliases):
            qualified = fold(f"{key}.{network.name}")
            assert address in dns.rdata(ask(answerer, dns, qualified, client=address)), qualified
            assert dns.rdata(ask(answerer, dns, fold(key), client=address)), key
        reverse = ".".join(reversed(address.split("."))) + ".in-addr.arpa"
        targets = dns.rdata(ask(answerer, dns, fold(reverse), "PTR", client=address))
        assert targets, reverse
        for target in targets:
            assert address in dns.rdata(ask(answerer, dns, fold(target), client=address)), target


# -- EDNS (RFC 6891) and the DO bit (RFC 3225) -------------------------------------------------------------------


def _edns_query(name: str, qtype: str = "A", *, dnssec_ok: bool, opcode: int = 0, questions: int = 1,
                version: int = 0) -> bytes:
    query = dnslib.DNSRecord(dnslib.DNSHeader(id=7, rd=1, opcode=opcode),
                             questions=[dnslib.DNSQuestion(name, getattr(dnslib.QTYPE, qtype))] * questions)
    query.add_ar(dnslib.EDNS0(udp_len=1232, flags="do" if dnssec_ok else "", version=version))
    return bytes(query.pack())


def _opt_of(reply: bytes) -> dnslib.RR | None:
    options = [record for record in dnslib.DNSRecord.parse(reply).ar if record.rtype == dnslib.QTYPE.OPT]
    assert len(options) <= 1
    return options[0] if options else None


@pytest.mark.parametrize("dnssec_ok", [True, False])
@pytest.mark.parametrize("tcp", [True, False])
@pytest.mark.parametrize("case", ["answer", "nodata", "unknown", "reverse", "refused", "notimp", "formerr",
                                  "badvers", "truncated"])
def test_every_reply_to_an_edns_query_has_an_opt_with_do_as_asked(crowd, dns, dnssec_ok, tcp, case):
    answerer = Answerer(build_snapshot(*crowd.records()))
    client = "192.0.2.1" if case == "refused" else "10.89.1.10"
    query = {"answer": lambda: _edns_query("c1", dnssec_ok=dnssec_ok),
             "nodata": lambda: _edns_query("c1", "MX", dnssec_ok=dnssec_ok),
             "unknown": lambda: _edns_query("nowhere.example", dnssec_ok=dnssec_ok),
             "reverse": lambda: _edns_query("99.1.89.10.in-addr.arpa", "PTR", dnssec_ok=dnssec_ok),
             "refused": lambda: _edns_query("c1", dnssec_ok=dnssec_ok),
             "notimp": lambda: _edns_query("c1", dnssec_ok=dnssec_ok, opcode=2),
             "formerr": lambda: _edns_query("c1", dnssec_ok=dnssec_ok, questions=2),
             "badvers": lambda: _edns_query("c1", dnssec_ok=dnssec_ok, version=1),
             "truncated": lambda: _edns_query("crowd", dnssec_ok=dnssec_ok)}[case]()
    if case == "truncated":  # 640 bytes of answers do not fit a 600-byte payload
        query = query[:-8] + (600).to_bytes(2, "big") + query[-6:]
    reply = answerer.handle(query, client, GATEWAY_A, tcp)
    assert type(reply) is bytes, reply
    option = _opt_of(reply)
    assert option is not None, case
    assert bool(option.ttl & 0x8000) == dnssec_ok  # RFC 3225 section 3: DO copied into the reply
    assert (option.ttl >> 16) & 0xFF == 0  # the version dnsd speaks
    assert option.rclass == 1232


def test_a_forwarding_error_reply_copies_do(world, dns):
    net = world.network("neta", "10.89.1.0/24", GATEWAY_A, dns=("10.0.0.3",))
    world.container("c", net, "10.89.1.2")
    forward = Answerer(build_snapshot(*world.records())).handle(_edns_query("example.com", dnssec_ok=True),
                                                                 "10.89.1.2", GATEWAY_A, False)
    assert isinstance(forward, Forward)
    assert _opt_of(forward.error_reply(SERVFAIL)).ttl & 0x8000


def test_a_malformed_opt_gets_formerr_without_opt(lan, dns):
    query = dnslib.DNSRecord.question("a2")
    query.add_ar(dnslib.EDNS0(udp_len=1232))
    query.add_ar(dnslib.EDNS0(udp_len=1232))
    reply = answerer_for(lan).handle(bytes(query.pack()), "10.89.1.2", GATEWAY_A, False)
    assert rcode(reply) == FORMERR and _opt_of(reply) is None
