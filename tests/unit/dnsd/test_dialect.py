"""Docker's rules against aardvark-dns's (dnsd.core.dialect): the same records, answered as each engine's DNS answers.

netcore's own networks keep Docker's (``DOCKER``); dnsd in aardvark-dns's place answers by ``podman()``
(issue 23 item 12). Each rule here is one where the two differ.
"""

from __future__ import annotations

import asyncio
import socket

import dnslib
import pytest

from dnsd.app import make_server
from dnsd.core.answer import Answerer, Forward
from dnsd.core.builder import build_snapshot
from dnsd.core.config import ServerConfig
from dnsd.core.dialect import DOCKER, podman
from dnsd.core.wire import NXDOMAIN, SERVFAIL

GATEWAY_A, GATEWAY_B = "127.0.1.1", "127.0.2.1"
UPSTREAM = "127.0.0.153"
PODMAN = podman()


def answerer_for(world, dialect) -> Answerer:
    return Answerer(build_snapshot(world.networks, world.containers, world.endpoints, dialect=dialect),
                    dialect=dialect)


def ask(answerer: Answerer, name: str, client: str, gateway: str, qtype: str = "A"):
    reply = answerer.handle(bytes(dnslib.DNSRecord.question(name, qtype).pack()), client, gateway, False)
    return reply if isinstance(reply, Forward) else dnslib.DNSRecord.parse(reply)


def rdata(reply) -> list[str]:
    return [str(record.rdata) for record in reply.rr]


@pytest.fixture
def two_networks(world):
    """``both`` on networks a and b (its addresses 127.0.1.3 and 127.0.2.3), ``only`` on a; a has an upstream."""
    world.net_a = world.network("neta", "127.0.1.0/24", GATEWAY_A, subnet6="fd00:1::/64", gateway6="fd00:1::1",
                                dns=(UPSTREAM,))
    world.net_b = world.network("netb", "127.0.2.0/24", GATEWAY_B)
    both = world.container("both", world.net_a, "127.0.1.3", ipv6="fd00:1::3", aliases=("b-alias", "bb"))
    world.attach(both, world.net_b, "127.0.2.3")
    world.container("only", world.net_a, "127.0.1.2")
    return world


@pytest.mark.parametrize("gateway", [GATEWAY_A, GATEWAY_B])
def test_a_container_on_two_networks_asking_its_own_name(two_networks, gateway):
    """aardvark-dns gives the addresses on all its networks together (aardvark-dns 200/300 bats, issue 23);
    Docker's answers from one network, here the one asked (moby/moby#46162): netcore's networks keep that."""
    podman = ask(answerer_for(two_networks, PODMAN), "both", "127.0.1.3", gateway)
    assert sorted(rdata(podman)) == ["127.0.1.3", "127.0.2.3"]
    docker = ask(answerer_for(two_networks, DOCKER), "both", "127.0.1.3", gateway)
    assert rdata(docker) == ["127.0.1.3" if gateway == GATEWAY_A else "127.0.2.3"]


@pytest.mark.parametrize("reverse", [
    "3.1.0.127.in-addr.arpa",  # 127.0.1.3
    ".".join(reversed("fd000001" + "0" * 23 + "3")) + ".ip6.arpa",  # fd00:1::3
], ids=["ipv4", "ipv6"])
def test_a_reverse_name_answers_every_name_bare_or_name_dot_network(two_networks, reverse):
    """aardvark-dns: every name of the container there, bare, in its order (500-reverse-lookups.bats, IPv4 and
    IPv6); Docker: ``NAME.NETWORK.`` (moby's Sandbox.ResolveIP), which netcore's networks keep."""
    assert rdata(ask(answerer_for(two_networks, PODMAN), reverse, "127.0.1.2", GATEWAY_A, "PTR")) == [
        "both.", "b-alias.", "bb."]
    assert rdata(ask(answerer_for(two_networks, DOCKER), reverse, "127.0.1.2", GATEWAY_A, "PTR")) == ["both.neta."]


def test_a_reverse_name_keeps_the_spelling_of_the_names(world):
    net = world.network("neta", "127.0.1.0/24", GATEWAY_A)
    world.container("WebApp", net, "127.0.1.5", aliases=("Front",))
    reply = ask(answerer_for(world, PODMAN), "5.1.0.127.in-addr.arpa", "127.0.1.5", GATEWAY_A, "PTR")
    assert rdata(reply) == ["WebApp.", "Front."]
    assert rdata(ask(answerer_for(world, PODMAN), "webapp", "127.0.1.5", GATEWAY_A)) == ["127.0.1.5"]


def test_names_of_the_search_domain_and_of_networks(two_networks):
    """aardvark-dns answers NAME.dns.podman as NAME and a name under .dns.podman it lacks with NXDOMAIN at once
    (every release); it has no NAME.NETWORK and no short ID a Podman line does not list; a single label it lacks
    goes upstream (aardvark-dns 1.13.0, 5db65bd, RHEL-61873; 1.4 answered NXDOMAIN)."""
    podman = answerer_for(two_networks, PODMAN)
    assert rdata(ask(podman, "both.dns.podman", "127.0.1.2", GATEWAY_A)) == ["127.0.1.3"]
    assert rdata(ask(podman, "BB.Dns.Podman.", "127.0.1.2", GATEWAY_A)) == ["127.0.1.3"]
    assert ask(podman, "nothere.dns.podman", "127.0.1.2", GATEWAY_A).header.rcode == NXDOMAIN
    assert ask(podman, "dns.podman", "127.0.1.2", GATEWAY_A).header.rcode == NXDOMAIN
    assert isinstance(ask(podman, "nothere", "127.0.1.2", GATEWAY_A), Forward)
    assert isinstance(ask(podman, "both.neta", "127.0.1.2", GATEWAY_A), Forward)
    short_id = two_networks.containers[0].id[:12]
    assert isinstance(ask(podman, short_id, "127.0.1.2", GATEWAY_A), Forward)
    docker = answerer_for(two_networks, DOCKER)
    assert rdata(ask(docker, "both.neta", "127.0.1.2", GATEWAY_A)) == ["127.0.1.3"]
    assert rdata(ask(docker, short_id, "127.0.1.2", GATEWAY_A)) == ["127.0.1.3"]
    assert isinstance(ask(docker, "nothere.dns.podman", "127.0.1.2", GATEWAY_A), Forward)


def test_the_gateway_namespace_asks_name_dot_search_domain_as_the_bare_name(two_networks):
    """From the gateway namespace (every network: ``HostScope``) NAME.dns.podman is NAME where one network alone
    has it; every network shares the suffix, so it is no one network's."""
    podman = answerer_for(two_networks, PODMAN)
    assert rdata(ask(podman, "only.dns.podman", GATEWAY_B, GATEWAY_A)) == ["127.0.1.2"]
    assert ask(podman, "both.dns.podman", GATEWAY_B, GATEWAY_A).header.rcode == NXDOMAIN  # on two: ambiguous


def test_podman_alias_sets_keep_their_order(world):
    """aardvark-dns answers a name's records in one order (no rotation); Docker's rotate (moby shuffles them)."""
    net = world.network("neta", "127.0.1.0/24", GATEWAY_A)
    for n in (3, 1, 2):
        world.container(f"c{n}", net, f"127.0.1.{10 + n}", aliases=("svc",))
    podman, docker = answerer_for(world, PODMAN), answerer_for(world, DOCKER)
    assert {tuple(rdata(ask(podman, "svc", "127.0.1.11", GATEWAY_A))) for _ in range(4)} == {
        ("127.0.1.13", "127.0.1.11", "127.0.1.12")}
    assert len({rdata(ask(docker, "svc", "127.0.1.11", GATEWAY_A))[0] for _ in range(4)}) == 3


def test_no_reply_of_our_own_when_no_upstream_answered(dns):
    """aardvark-dns sends nothing when no upstream answered (every release; its suite's "custom bad dns server"
    expects dig to time out); Docker's resolver answers SERVFAIL. REFUSED at the in-flight cap stays."""
    query = dns.query("example.com")
    forward = Forward(query, query[12:], (), edns=False, answer_failure=False)
    assert forward.error_reply(SERVFAIL) is None
    assert dns.parse(forward.error_reply(5)).header.rcode == 5
    assert dns.parse(Forward(query, query[12:], (), edns=False).error_reply(SERVFAIL)).header.rcode == SERVFAIL


async def _silent_upstream_server(world, free_port, tmp_path, dialect):
    net = world.network("neta", "127.0.1.0/24", GATEWAY_A, dns=(f"{UPSTREAM}:{free_port}",))
    world.container("a1", net, "127.0.1.2")
    config = ServerConfig(port=free_port, control_path=str(tmp_path / "dnsd.sock"), forward_timeout=0.2,
                          dialect=dialect)
    server = make_server(config, world)
    await server.start()
    return server


async def _udp_reply(query: bytes, port: int, wait: float) -> bytes | None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind(("127.0.1.2", 0))
        sock.connect((GATEWAY_A, port))
        await loop.sock_sendall(sock, query)
        try:
            async with asyncio.timeout(wait):
                return await loop.sock_recv(sock, 65535)
        except TimeoutError:
            return None


@pytest.mark.parametrize(("dialect", "rcode"), [(PODMAN, None), (DOCKER, SERVFAIL)], ids=["podman", "docker"])
async def test_a_silent_upstream_gets_the_client_silence_or_servfail(world, free_port, tmp_path, dns, fake_upstream,
                                                                     dialect, rcode):
    """End to end over UDP and TCP at once: an upstream that never answers (0.2 s budget here, waited for 1.5 s)."""

    async def tcp_reply(query: bytes, wait: float) -> bytes | None:
        reader, writer = await asyncio.open_connection(GATEWAY_A, free_port, local_addr=("127.0.1.2", 0))
        writer.write(len(query).to_bytes(2, "big") + query)
        try:
            async with asyncio.timeout(wait):
                return await reader.readexactly(int.from_bytes(await reader.readexactly(2), "big"))
        except (TimeoutError, asyncio.IncompleteReadError):
            return None
        finally:
            writer.close()

    server = await _silent_upstream_server(world, free_port, tmp_path, dialect)
    try:
        async with fake_upstream(UPSTREAM, free_port, lambda query: []) as upstream:
            udp, tcp = await asyncio.gather(_udp_reply(dns.query("example.com", query_id=7), free_port, 1.5),
                                            tcp_reply(dns.query("example.org", query_id=8), 1.5))
    finally:
        await server.close()
    assert sorted(protocol for protocol, _ in upstream.queries) == ["tcp", "udp"]  # both were asked upstream
    assert (dns.parse(udp).header.rcode if udp else None) == rcode
    assert (dns.parse(tcp).header.rcode if tcp else None) == rcode
