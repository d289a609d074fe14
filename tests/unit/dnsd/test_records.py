"""The records a source gives dnsd (``dnsd.core.records``), without root: what the builder reads is named once, in
a protocol that netcore's store rows meet as they are and that Podman's and the CNI plugin's sources meet
without a field made up to fill a row of netcore's (issue 25 item 4); and what dnsd serves of a network whose
source names no subnet (Podman's config directory) is the range docs/podman.md promises."""

from __future__ import annotations

import contextlib
import dataclasses

import dnslib

from dnsd.core.answer import Answerer, Forward
from dnsd.core.builder import SnapshotBuilder
from dnsd.core.dialect import DOCKER, podman
from dnsd.core.records import (
    ContainerRecord,
    EndpointRecord,
    NetworkRecord,
    ServedContainer,
    ServedEndpoint,
    ServedNetwork,
)
from dnsd.core.stats import Stats
from dnsd.reload import Reloader
from dnsd.sources.aardvark_config import parse_config_dir, to_records
from dnsd.sources.cni import to_records as cni_records
from dnsd.sources.cni_store import Attachment
from netcore.model import Container, Endpoint, Network, group_by_container

PODMAN = podman()
ID1 = "f35256b5e2f72ec8cb7d974d4f8841686fc8921fdfbc867285b50164e313f715"
ID2 = "e5df0cdbe0136a30cc3e848d495d2cc6dada25b7dedc776b4584ce2cbba6f06f"


def podman_snapshot(text: str):
    networks, problems = parse_config_dir({"podman": text})
    assert problems == []
    return SnapshotBuilder(dialect=PODMAN).build(*to_records(networks))


def ask(snapshot, name: str, client: str, listener: str, qtype: str = "A"):
    reply = Answerer(snapshot, dialect=PODMAN).handle(bytes(dnslib.DNSRecord.question(name, qtype).pack()), client,
                                                      listener, False)
    return reply if isinstance(reply, Forward) else dnslib.DNSRecord.parse(reply)


def rcode(reply) -> str:
    return "forwarded" if isinstance(reply, Forward) else dnslib.RCODE.get(reply.header.rcode)


# -- a network whose source names no subnet: the narrowest range around its gateway, at least a /24 or /64, that
#    holds its containers (docs/podman.md, "Sources") --------------------------------------------------------------

def test_a_podman_network_serves_sources_that_are_no_container_within_a_slash_24_around_its_gateway():
    snapshot = podman_snapshot(f"10.89.0.1 9.9.9.9\n{ID1} 10.89.0.2  web\n{ID2} 10.89.0.3  db\n")
    assert rcode(ask(snapshot, "web", "10.89.0.200", "10.89.0.1")) == "NOERROR"  # the host side, a container to be
    assert rcode(ask(snapshot, "web", "10.89.1.5", "10.89.0.1")) == "REFUSED"
    # reverse names of the range are answered here, never forwarded; outside it they go upstream
    assert rcode(ask(snapshot, "77.0.89.10.in-addr.arpa", "10.89.0.3", "10.89.0.1", "PTR")) == "NXDOMAIN"
    assert rcode(ask(snapshot, "77.1.89.10.in-addr.arpa", "10.89.0.3", "10.89.0.1", "PTR")) == "forwarded"


def test_the_range_widens_to_hold_a_container_far_from_the_gateway_and_covers_ipv6_with_a_slash_64():
    snapshot = podman_snapshot(f"10.89.0.1,fdfd::1 9.9.9.9\n{ID1} 10.89.3.7 fdfd::2 web\n")
    assert rcode(ask(snapshot, "web", "10.89.2.1", "10.89.0.1")) == "NOERROR"  # within 10.89.0.0/22
    assert rcode(ask(snapshot, "web", "10.89.4.1", "10.89.0.1")) == "REFUSED"
    assert rcode(ask(snapshot, "web", "fdfd::99", "fdfd::1")) == "NOERROR"
    assert rcode(ask(snapshot, "web", "fdfe::1", "fdfd::1")) == "REFUSED"


# -- the protocol: exactly what the builder reads, met by netcore's rows as they are --------------------------------

PROTOCOLS = {"network": ServedNetwork, "container": ServedContainer, "endpoint": ServedEndpoint}


def members(protocol) -> set[str]:
    return {name for name, value in vars(protocol).items() if isinstance(value, property)}


class Watched:
    """A record whose reads are noted: ``kind`` and the attribute name, for every attribute read."""

    def __init__(self, kind: str, record, reads: set[tuple[str, str]]):
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_record", record)
        object.__setattr__(self, "_reads", reads)

    def __getattr__(self, name: str):
        self._reads.add((self._kind, name))
        return getattr(self._record, name)


def watched(world, reads):
    networks = [Watched("network", network, reads) for network in world.networks]
    attached = [(Watched("container", container, reads), [Watched("endpoint", e, reads) for e in endpoints])
                for container, endpoints in group_by_container(world.containers, world.endpoints)]
    return networks, attached


def test_the_builder_and_the_answers_read_exactly_the_protocol_of_netcores_rows(world, dns):
    """Built, patched and answered in both dialects, every record read is one the protocol names, and every name
    of the protocol is read: it says what dnsd needs of a source, no more and no less."""
    app = world.network("app", "10.89.1.0/24", "10.89.1.1", subnet6="fd00:89:1::/64", gateway6="fd00:89:1::1",
                        dns=("192.0.2.53",))
    db = world.network("db", "10.89.2.0/24", "10.89.2.1", internal=True,
                       options={"com.docker.network.bridge.enable_icc": "false"})
    web = world.container("web", app, "10.89.1.2", ipv6="fd00:89:1::2", aliases=("www",), hostname="h-web")
    world.attach(web, db, "10.89.2.2")
    world.container("resolver", app, "10.89.1.3", dns=("127.0.0.1",))  # its own loopback server: its namespace
    world.container("api", db, "10.89.2.3", aliases=("www",))
    reads: set[tuple[str, str]] = set()
    for dialect in (DOCKER, PODMAN):
        builder = SnapshotBuilder(dialect=dialect)
        snapshot = builder.build(*watched(world, reads))
        answerer = Answerer(snapshot, default_upstreams=(), dialect=dialect)
        for client, name in (("10.89.1.2", "www"), ("10.89.1.3", "example.com"), ("10.89.2.3", "example.com"),
                             ("10.89.1.2", "www.db")):
            answerer.handle(dns.query(name), client, "10.89.1.1", False)
        _, attached = watched(world, reads)
        builder.patch({web.id}, [pair for pair in attached if pair[0].id == web.id])
    assert reads == {(kind, name) for kind, protocol in PROTOCOLS.items() for name in members(protocol)}


def test_netcores_rows_meet_the_protocol_as_they_are():
    for row, protocol in ((Network, ServedNetwork), (Container, ServedContainer), (Endpoint, ServedEndpoint)):
        fields = {field.name for field in dataclasses.fields(row)}
        assert members(protocol) <= fields | {name for name, value in vars(row).items() if isinstance(value, property)}


def test_the_records_of_a_source_with_no_rows_of_its_own_hold_the_protocol_alone():
    for record, protocol in ((NetworkRecord, ServedNetwork), (ContainerRecord, ServedContainer),
                             (EndpointRecord, ServedEndpoint)):
        names = {field.name for field in dataclasses.fields(record)}
        names |= {name for name, value in vars(record).items() if isinstance(value, property)}
        assert names == members(protocol), record


def test_podmans_records_hold_what_the_config_says_and_nothing_made_up():
    """Before issue 25 the Podman source filled netcore's rows: bridge="", mac="", host_ifname="", an invented
    subnet, eth0, eth1 as interface names, endpoint IDs. What a file does not say is unknown now."""
    (config,), _ = parse_config_dir({"podman": f"10.89.0.1,10.89.5.1,fdfd::1 8.8.8.8\n"
                                               f"{ID1} 10.89.0.2,10.89.0.4 fdfd::2 web,www 9.9.9.9\n"})
    (network,), ((container, endpoints),) = to_records([config])
    assert (network.subnet, network.subnet6) == (None, None)
    assert network.dns_addresses == ("10.89.0.1", "fdfd::1")  # the first gateway of each family
    assert (network.name, network.internal, network.dns) == ("podman", False, ("8.8.8.8",))
    assert (container.id, container.name, container.dns) == (ID1, "web", ("9.9.9.9",))
    assert (container.hostname, container.netns) == ("", "")  # the file names neither
    assert endpoints == [EndpointRecord(network.id, "10.89.0.2", "fdfd::2", ("www",)),
                         EndpointRecord(network.id, "10.89.0.4", None, ("www",))]
    assert all(endpoint.ifname is None for endpoint in endpoints)


def test_the_cni_plugins_records_hold_what_was_registered():
    attachment = Attachment(ID1, "net1", "cni0", name="web", hostname="h1", ipv4=("10.88.0.2", "10.88.0.5"),
                            gateways=("10.88.0.1",), subnets=("10.88.0.2/24",))
    (network,), ((container, endpoints),) = cni_records([attachment])
    assert (network.subnet, network.subnet6, network.dns_addresses) == ("10.88.0.0/24", None, ("10.88.0.1",))
    assert (container.name, container.hostname, container.netns) == ("web", "h1", "")
    assert [(e.ifname, e.ipv4) for e in endpoints] == [("net1", "10.88.0.2"), ("net1", "10.88.0.5")]


# -- adding a source: one module of a class like this one -----------------------------------------------------------

class Zone:
    """A record source in a few lines, as a new module in dnsd/sources/ would be: a static zone of names."""

    def __init__(self, names: dict[str, str]):
        self.network = NetworkRecord("zone", "zone", ("10.90.0.1",), subnet="10.90.0.0/24")
        self.attached = [(ContainerRecord(f"{name:0>12}", name), [EndpointRecord("zone", address)])
                         for name, address in names.items()]

    def generation(self) -> int:
        return 1

    @contextlib.contextmanager
    def dns_records(self):
        yield [self.network], iter(self.attached)

    def changes_since(self, generation: int) -> tuple[int, set[str] | None]:
        return 1, set() if generation == 1 else None

    def container_records(self, ids: set[str]) -> list:
        return [pair for pair in self.attached if pair[0].id in ids]


async def test_a_new_source_is_served_as_it_is(dns):
    reloader = Reloader(Zone({"alpha": "10.90.0.2", "beta": "10.90.0.3"}), 0, Stats())
    try:
        snapshot = await reloader.reload()
    finally:
        reloader.close()
    answerer = Answerer(snapshot)
    assert dns.rdata(answerer.handle(dns.query("beta"), "10.90.0.2", "10.90.0.1", False)) == ["10.90.0.3"]
    assert dns.rdata(answerer.handle(dns.query("3.0.90.10.in-addr.arpa", "PTR"), "10.90.0.2", "10.90.0.1",
                                     False)) == ["beta.zone."]
