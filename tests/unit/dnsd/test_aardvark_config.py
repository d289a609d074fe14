"""The aardvark-dns config directory (as netavark 1.4 and 2.x write it) → records → dnsd's answers by aardvark-dns's
rules (``dnsd.core.dialect.podman``), without root."""

from __future__ import annotations

import dnslib
import pytest

from dnsd.core.answer import Answerer, Forward
from dnsd.core.builder import SnapshotBuilder
from dnsd.core.dialect import podman
from dnsd.core.snapshot import Upstream
from dnsd.sources.aardvark import AardvarkRecords
from dnsd.sources.aardvark_config import (
    ConfigProblem,
    parse_config_dir,
    parse_container_line,
    parse_network_file,
    to_records,
)

ID1 = "f35256b5e2f72ec8cb7d974d4f8841686fc8921fdfbc867285b50164e313f715"
ID2 = "e5df0cdbe0136a30cc3e848d495d2cc6dada25b7dedc776b4584ce2cbba6f06f"
ID3 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

# netavark 1.4 (Debian 12): gateway line, then ID IPV4S IPV6S NAMES with the short ID among the names
NETAVARK_14 = f"10.89.0.1\n{ID1} 10.89.0.2  web,www,{ID1[:12]}\n{ID2} 10.89.0.3  db,{ID2[:12]}\n"
# netavark 2.x, from aardvark-dns's config.md: dual stack, network and container DNS servers
NETAVARK_2X = (f"10.0.0.1,fdfd::1 8.8.8.8,1.1.1.1\n{ID1} 10.0.0.2 fdfd::2 testmulti1 9.9.9.9,1.0.0.1\n"
               f"{ID2} 10.0.0.3 fdfd::3 testmulti2\n")


PODMAN = podman()


def snapshot_of(files: dict[str, str], dialect=PODMAN):
    networks, problems = parse_config_dir(files)
    return SnapshotBuilder(dialect=dialect).build(*to_records(networks)), problems


def ask(snapshot, name: str, client: str, listener: str, qtype: str = "A", dialect=PODMAN, answerer=None):
    answerer = answerer or Answerer(snapshot, dialect=dialect)
    reply = answerer.handle(bytes(dnslib.DNSRecord.question(name, qtype).pack()), client, listener, False)
    return reply if isinstance(reply, Forward) else dnslib.DNSRecord.parse(reply)


def answers(reply) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr)


# -- the format ---------------------------------------------------------------------------------------


def test_netavark_14_file_names_aliases_short_ids_and_the_search_domain_answer():
    snapshot, problems = snapshot_of({"podman": NETAVARK_14})
    assert problems == []
    for name in ("web", "WWW", ID1[:12], "web.dns.podman", "www.dns.podman."):
        assert answers(ask(snapshot, name, "10.89.0.3", "10.89.0.1")) == ["10.89.0.2"], name
    assert ask(snapshot, "nothere", "10.89.0.3", "10.89.0.1").header.rcode == dnslib.RCODE.NXDOMAIN  # no upstream
    reverse = ask(snapshot, "2.0.89.10.in-addr.arpa", "10.89.0.3", "10.89.0.1", "PTR")
    assert [str(rr.rdata) for rr in reverse.rr] == ["web.", "www.", f"{ID1[:12]}."]  # every name, bare


def test_netavark_2x_file_dual_stack_and_upstreams():
    (network,), problems = parse_config_dir({"podman": NETAVARK_2X})
    assert problems == [] and network.gateways == ("10.0.0.1", "fdfd::1")
    assert network.upstreams == ("8.8.8.8", "1.1.1.1")
    assert network.containers[0].upstreams == ("9.9.9.9", "1.0.0.1") and network.containers[1].upstreams == ()
    snapshot, _ = snapshot_of({"podman": NETAVARK_2X})
    assert answers(ask(snapshot, "testmulti2", "10.0.0.2", "10.0.0.1", "AAAA")) == ["fdfd::3"]
    assert answers(ask(snapshot, "testmulti1", "fdfd::3", "fdfd::1")) == ["10.0.0.2"]
    assert ask(snapshot, "testmulti1", "10.0.0.3", "10.0.0.1", "MX").rr == []  # NODATA for a name we hold
    # a container's own servers, else its network's (aardvark-dns's order)
    own = ask(snapshot, "example.com", "10.0.0.2", "10.0.0.1")
    assert own.upstream_groups[0] == (Upstream("9.9.9.9", 53), Upstream("1.0.0.1", 53))
    networks = ask(snapshot, "example.com", "10.0.0.3", "10.0.0.1")
    assert networks.upstream_groups[0] == (Upstream("8.8.8.8", 53), Upstream("1.1.1.1", 53))


def test_an_internal_network_is_marked_and_never_forwards():
    (network,), _ = parse_config_dir({"secret%int": NETAVARK_14})
    assert network.name == "secret" and network.internal
    snapshot, _ = snapshot_of({"secret%int": NETAVARK_14})
    assert answers(ask(snapshot, "db", "10.89.0.2", "10.89.0.1")) == ["10.89.0.3"]
    assert ask(snapshot, "example.com", "10.89.0.2", "10.89.0.1").header.rcode == dnslib.RCODE.NXDOMAIN


def test_a_container_on_two_networks_resolves_both_through_either_gateway():
    files = {"front": f"10.89.1.1\n{ID1} 10.89.1.2  web\n{ID3} 10.89.1.3  both\n",
             "back": f"10.89.2.1\n{ID2} 10.89.2.2  db\n{ID3} 10.89.2.3  both,both-alias\n"}
    snapshot, _ = snapshot_of(files)
    for gateway in ("10.89.1.1", "10.89.2.1"):
        assert answers(ask(snapshot, "db", "10.89.1.3", gateway)) == ["10.89.2.2"]
        assert answers(ask(snapshot, "web", "10.89.2.3", gateway)) == ["10.89.1.2"]
    assert ask(snapshot, "db", "10.89.1.2", "10.89.1.1").header.rcode == dnslib.RCODE.NXDOMAIN  # web is not on back
    assert answers(ask(snapshot, "both-alias", "10.89.2.2", "10.89.2.1")) == ["10.89.2.3"]


def test_an_alias_held_by_three_containers_answers_all_three_in_the_order_of_the_file():
    """aardvark-dns answers an alias's holders in one order, its file's (netavark appends a container's line when it
    starts), every time; no rotation (a Podman user may count on the order: a later release changed nothing)."""
    lines = "".join(f"{n:064x} 10.89.0.{n + 10}  c{n},svc\n" for n in (2, 0, 1))
    snapshot, _ = snapshot_of({"net": f"10.89.0.1\n{lines}"})
    answerer = Answerer(snapshot, dialect=PODMAN)
    for _ in range(3):
        reply = ask(snapshot, "svc", "10.89.0.10", "10.89.0.1", answerer=answerer)
        assert [str(rr.rdata) for rr in reply.rr] == ["10.89.0.12", "10.89.0.10", "10.89.0.11"]


def test_several_addresses_of_one_family_each_answer():
    entry = parse_container_line(f"{ID1} 10.89.0.2,10.90.0.2 fd00::2,fd01::2 web")
    assert entry.ipv4 == ("10.89.0.2", "10.90.0.2") and entry.ipv6 == ("fd00::2", "fd01::2")
    snapshot, _ = snapshot_of({"net": f"10.89.0.1,10.90.0.1\n{ID1} 10.89.0.2,10.90.0.2 fd00::2,fd01::2 web\n"})
    assert answers(ask(snapshot, "web", "10.89.0.2", "10.89.0.1")) == ["10.89.0.2", "10.90.0.2"]
    assert answers(ask(snapshot, "web", "10.89.0.2", "10.89.0.1", "AAAA")) == ["fd00::2", "fd01::2"]


def test_another_search_domain_is_honoured():
    dialect = podman("example.internal")
    snapshot, _ = snapshot_of({"net": NETAVARK_14}, dialect)
    assert answers(ask(snapshot, "web.example.internal", "10.89.0.3", "10.89.0.1", dialect=dialect)) == ["10.89.0.2"]
    assert ask(snapshot, "web.dns.podman", "10.89.0.3", "10.89.0.1", dialect=dialect).header.rcode == 3


# -- bad input: one problem, the line skipped, never a crash ----------------------------------------------------


@pytest.mark.parametrize(("line", "reason"), [
    ("garbage", "1 fields, expected ID IPV4S IPV6S NAMES [DNS-SERVERS]"),
    (f"{ID1} 10.89.0.300  web", "bad IPv4 address '10.89.0.300'"),
    (f"{ID1} fd00::2  web", "bad IPv4 address 'fd00::2': not IPv4"),
    (f"{ID1} 10.89.0.5 10.89.0.6 web", "bad IPv6 address '10.89.0.6': not IPv6"),
    (f"{ID1} 10.89.0.5  ,", f"container {ID1[:12]} has no name"),
    (f"{ID1}   web", f"container {ID1[:12]} has no address"),
    (f"{ID1} 10.89.0.5  web nameserver", "bad DNS server 'nameserver'"),
    (f"{ID1} 10.89.0.5  web 1.1.1.1 extra", "6 fields, expected ID IPV4S IPV6S NAMES [DNS-SERVERS]"),
])
def test_a_malformed_container_line_is_one_problem_and_the_rest_is_served(line, reason):
    text = f"10.89.0.1\n{ID2} 10.89.0.3  db\n{line}\n{ID3} 10.89.0.4  cache\n"
    network, problems = parse_network_file("net", text)
    assert problems == [ConfigProblem("net", 3, reason)]
    assert str(problems[0]) == f"aardvark config net line 3: {reason}, skipped"
    assert [entry.names[0] for entry in network.containers] == ["db", "cache"]


@pytest.mark.parametrize("first", ["", "not-an-ip", "10.89.0.1 8.8.8.8 extra", "10.89.0.1 dns.example", " 8.8.8.8"])
def test_a_bad_first_line_skips_the_file_with_one_problem(first):
    networks, problems = parse_config_dir({"bad": f"{first}\n{ID1} 10.89.0.2  web\n", "good": NETAVARK_14})
    assert [network.name for network in networks] == ["good"]
    assert len(problems) == 1 and problems[0].file == "bad", problems


def test_a_last_line_without_its_newline_is_being_written_and_skipped():
    network, problems = parse_network_file("net", f"10.89.0.1\n{ID1} 10.89.0.2  web\n{ID2} 10.89")
    assert [entry.id for entry in network.containers] == [ID1]
    assert problems == [ConfigProblem("net", 3, "no newline at its end (still being written?)")]
    assert parse_network_file("net", "")[0] is None


def test_the_pid_file_and_hidden_files_are_not_networks():
    networks, problems = parse_config_dir({"aardvark.pid": "1234", ".aardvark.pid.99": "99", "net": NETAVARK_14})
    assert [network.name for network in networks] == ["net"] and problems == []


# -- the record source: reads on demand, reports what changed --------------------------------------------------


def test_records_follow_the_directory_and_name_the_changed_containers(tmp_path):
    (tmp_path / "net").write_text(NETAVARK_14)
    (tmp_path / "aardvark.pid").write_text("1")
    records = AardvarkRecords(str(tmp_path))
    first = records.generation()
    assert records.changes_since(first) == (first, set())
    (tmp_path / "net").write_text(NETAVARK_14 + f"{ID3} 10.89.0.4  cache\n")
    assert records.changes_since(first) == (first, set())  # no SIGHUP yet: not read
    records.mark_changed()
    assert records.changes_since(first) == (first + 1, {ID3})
    with records.dns_records() as (networks, containers):
        assert [network.name for network in networks] == ["net"] and len(list(containers)) == 3
    assert [container.name for container, _ in records.container_records({ID3, "gone"})] == ["cache"]
    (tmp_path / "other").write_text(f"10.89.1.1\n{ID3} 10.89.1.2  cache\n")
    records.mark_changed()
    assert records.changes_since(first + 1) == (first + 2, None)  # a network came: a full build
    assert records.network_count == 2


def test_a_file_caught_mid_rewrite_keeps_the_network_as_it_was(tmp_path):
    (tmp_path / "net").write_text(NETAVARK_14)
    records = AardvarkRecords(str(tmp_path))
    generation = records.generation()
    (tmp_path / "net").write_text("")  # netavark truncates, then writes the lines back
    records.mark_changed()
    assert records.changes_since(generation) == (generation, set()) and records.network_count == 1
    (tmp_path / "net").unlink()
    records.mark_changed()
    assert records.changes_since(generation)[0] == generation + 1 and records.network_count == 0
