"""The records a source gives dnsd (``dnsd.core.records``), without root: what the builder reads is named once, in
a protocol that netcore's store rows meet as they are and that Podman's and the CNI plugin's sources meet
without a field made up to fill a row of netcore's (issue 25 item 4); and what dnsd serves of a network whose
source names no subnet (Podman's config directory) is the range docs/podman.md promises."""

from __future__ import annotations

import dnslib

from dnsd.core.answer import Answerer, Forward
from dnsd.core.builder import SnapshotBuilder
from dnsd.core.dialect import podman
from dnsd.sources.aardvark_config import parse_config_dir, to_records

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
