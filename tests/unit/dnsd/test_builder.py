"""Patching snapshots: whatever the changes, a patched snapshot holds what a full build of the same records holds."""

from __future__ import annotations

import dataclasses
import ipaddress
import math

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dnsd.core.answer import Answerer
from dnsd.core.builder import PATCH_LIMIT_FLOOR, SnapshotBuilder, build_snapshot
from dnsd.core.snapshot import RecordSet, Snapshot, lookup, records_in
from dnsd.core.wire import A_IN, AAAA_IN, ANY_IN, PTR_IN, encode_name
from netcore.model import STATE_CREATING, STATE_RUNNING
from netcore.store import Store

GATEWAY_A, GATEWAY_B = "10.89.1.1", "10.89.2.1"
CONTAINER_NAMES = ["c0", "c1", "c2", "c3", "c4", "web"]
ALIASES = ["web", "db", "c1", "2.1.89.10.in-addr.arpa"]  # a container name; the reverse name of neta's first address


# -- what a snapshot holds, compared structurally ------------------------------------------------------------


def _records_content(records) -> tuple:
    if records.__class__ is bytes:
        return records, 1, False
    return records.wire, records.count, records.rotation_slot >= 0, records.record_size, records.doubled


def _names_content(names: dict) -> dict:
    """Per name, what each type of question gets (ANY, and a type the name lacks, included)."""
    return {name: {type_class: _records_content(records) if records is not None else None
                   for type_class in (A_IN, AAAA_IN, PTR_IN, ANY_IN) for records in [lookup(entry, type_class)]}
            for name, entry in names.items()}


def count(entry, type_class: bytes) -> int:
    """How many records of this type a name's entry answers with."""
    records = lookup(entry, type_class)
    return 0 if records is None else 1 if records.__class__ is bytes else records.count


def rotates(entry, type_class: bytes) -> bool:
    records = lookup(entry, type_class)
    return records.__class__ is RecordSet and records.rotation_slot >= 0


def content(snapshot: Snapshot) -> dict:
    """Everything a snapshot answers from; of rotation slots only whether a set rotates (numbers may differ)."""
    converted: dict[int, dict] = {}

    def names_content(names):
        if id(names) not in converted:
            converted[id(names)] = _names_content(names)
        return converted[id(names)]

    def scope_content(scope):
        qualified = {suffix: names_content(names) for suffix, names in scope.qualified.items()}
        preferred = {listener: (names_content(preferring.names), names_content(preferring.everywhere))
                     for listener, preferring in (scope.by_listener or {}).items()}
        return ([network.id for network in scope.networks], scope.dns, names_content(scope.names), qualified,
                preferred)

    return {"clients": {address: scope_content(snapshot.scopes[slot]) for address, slot in snapshot.clients.items()},
            "listeners": {address: scope_content(scope) for address, scope in snapshot.listeners.items()},
            "subnets": snapshot.served_subnets, "upstreams": snapshot.network_upstreams}


def check_rotation_slots(snapshot: Snapshot) -> None:
    """Every rotating set has a slot of its own, below the snapshot's count."""
    owners: dict[int, object] = {}
    scopes = [snapshot.scopes[slot] for slot in set(snapshot.clients.values())] + list(snapshot.listeners.values())
    for scope in scopes:
        for entry in scope.names.values():
            for records in records_in(entry):
                if records.__class__ is RecordSet and records.rotation_slot >= 0:
                    assert records.rotation_slot < snapshot.rotation_slots
                    assert owners.setdefault(records.rotation_slot, records) is records


def retained(builder: SnapshotBuilder) -> dict:
    """What a builder keeps between snapshots, counted: a patched builder must keep what a fresh one would."""
    return {"shared entries": len(builder._shared),
            "views": {key: len(view.names) for key, view in builder._views.items()},
            "crowded": {key: len(names.crowded) for key, names in builder._networks.items()},
            "scopes": set(builder._scopes), "containers": set(builder._containers), "clients": len(builder._clients),
            "live rotation slots": builder._rotation_slot_count - len(builder._free_rotation_slots),
            "live scope slots": len(builder._scope_table) - len(builder._free_scope_slots)}


# -- a world that changes, and a builder that follows it through the change feed ------------------------------


def build(builder: SnapshotBuilder, world) -> Snapshot:
    with world.dns_records() as (networks, containers):
        return builder.build(networks, containers)


class Follower:
    """Follows a world's change feed the way the server does, and checks every patch against a full build."""

    def __init__(self, world):
        self.world = world
        self.builder = SnapshotBuilder()
        self.snapshot = build(self.builder, world)
        self.seen = world.generation()
        self.patches = 0

    def sync(self) -> Snapshot:
        generation, changed = self.world.changes_since(self.seen)
        if changed is not None and self.builder.can_patch(len(changed)):
            self.snapshot = self.builder.patch(changed, self.world.container_records(changed))
            self.patches += 1
        else:
            self.snapshot = build(self.builder, self.world)
        self.seen = generation
        assert content(self.snapshot) == content(build_snapshot(*self.world.records()))
        check_rotation_slots(self.snapshot)
        return self.snapshot

    def rebuild(self) -> None:
        self.snapshot = build(self.builder, self.world)
        self.seen = self.world.generation()


def free_address(world, network, family: int = 4) -> str:
    """The lowest address of ``network``'s subnet (IPv4 or IPv6) no endpoint holds, past the gateway's."""
    subnet = ipaddress.ip_network(network.subnet if family == 4 else network.subnet6)
    taken = {e.ipv4 if family == 4 else e.ipv6 for e in world.endpoints if e.network_id == network.id}
    first = int(subnet.network_address)
    for offset in range(2, subnet.num_addresses - 1):
        address = str(subnet.network_address.__class__(first + offset))
        if address not in taken:
            return address
    raise AssertionError(f"{network.name} is full")


def small_lan(world):
    world.neta = world.network("neta", "10.89.1.0/24", GATEWAY_A, subnet6="fd00:89:1::/64", gateway6="fd00:89:1::1")
    world.netb = world.network("netb", "10.89.2.0/24", GATEWAY_B)
    world.netc = world.network("NetC", "10.89.3.0/24", "10.89.3.1", dns=("10.0.0.3",))  # names fold: NetC is netc
    world.netd = world.network("netd", "10.89.4.0/24", "10.89.4.1",
                               options={"com.docker.network.bridge.enable_icc": "false"})
    world.bridge = world.network("bridge", "172.17.0.0/16", "172.17.0.1")
    return world


def attach(world, container, network, aliases: tuple[str, ...], ipv6: bool) -> None:
    ipv6_address = free_address(world, network, 6) if ipv6 and network.subnet6 else None
    world.attach(container, network, free_address(world, network), ipv6=ipv6_address, aliases=aliases)


# One change is one integer, read in mixed radix as the choices below; ``change_the_world`` reads them against
# the world of the moment (an index picks the index-th of what there is to pick, counted round). Hypothesis
# spends most of this test on drawing: one integer a change costs it a tenth of one draw per choice, and it
# still shrinks towards the first of every choice (0: run, c0, neta, no alias, no IPv6).
ALIAS_CHOICES = [()] + [(a,) for a in ALIASES] + [(a, b) for a in ALIASES for b in ALIASES if a != b]
NETWORK_CHOICES = [(a,) for a in range(5)] + [(a, b) for a in range(5) for b in range(5) if a != b]
RADICES = {"kind": 4, "name": len(CONTAINER_NAMES), "pick": 5, "on": len(NETWORK_CHOICES), "hostname is shared": 2,
           "dns given": 2, "aliases": len(ALIAS_CHOICES), "aliases, second network": len(ALIAS_CHOICES),
           "ipv6": 2, "ipv6, second network": 2}


def decode(number: int) -> dict:
    """The choices of one change (``RADICES``' keys) that ``number`` holds, the first in its lowest digit."""
    change = {}
    for field, radix in RADICES.items():
        number, change[field] = divmod(number, radix)
    change["on"] = NETWORK_CHOICES[change["on"]]
    change["aliases"] = [ALIAS_CHOICES[change.pop("aliases")], ALIAS_CHOICES[change.pop("aliases, second network")]]
    change["ipv6"] = [change.pop("ipv6") == 1, change.pop("ipv6, second network") == 1]
    return change


CHANGE = st.integers(0, math.prod(RADICES.values()) - 1).map(decode)
# a patch: 1 to 3 changes (three are drawn, the first ``count`` applied), then a full build on the same builder
# before one patch in ten
PATCH = st.tuples(st.integers(1, 3), st.integers(0, 9), CHANGE, CHANGE, CHANGE).map(
    lambda drawn: (drawn[2:2 + drawn[0]], drawn[1]))
# a program: 1 to 30 patches, as many as an integer drawn in range (st.lists of a range runs short: its drawn
# lengths tend towards the low end)
PROGRAM = st.integers(1, 30).flatmap(lambda count: st.lists(PATCH, min_size=count, max_size=count))


def nth(items: list, index: int):
    """The ``index``-th of ``items``, counted round: an index drawn before the world was known picks one."""
    return items[index % len(items)]


def change_the_world(change: dict, world) -> None:
    """One change: run, rm, connect or disconnect (names are never renamed, as in netcore)."""
    networks = [world.neta, world.netb, world.netc, world.netd, world.bridge]
    running = list(world.containers)
    free_names = [name for name in CONTAINER_NAMES if name not in {c.name for c in running}]
    kinds = (["run"] if free_names else []) + (["rm", "connect", "disconnect"] if running else [])
    kind = nth(kinds, change["kind"])
    aliases = change["aliases"]
    if kind == "run":
        container = world.container(nth(free_names, change["name"]),
                                    hostname="shared" if change["hostname is shared"] else None,
                                    dns=("10.0.0.9",) if change["dns given"] else ())
        for index, network in enumerate(networks[index] for index in change["on"]):
            attach(world, container, network, aliases[index], change["ipv6"][index])
        return
    container = nth(running, change["name"])
    attached = {e.network_id for e in world.endpoints if e.container_id == container.id}
    if kind == "rm":
        world.remove_container(container)
    elif kind == "connect":
        candidates = [network for network in networks if network.id not in attached]
        if candidates:
            attach(world, container, nth(candidates, change["pick"]), aliases[0], change["ipv6"][0])
    elif attached:
        world.detach(container, nth([n for n in networks if n.id in attached], change["pick"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=PROGRAM)
def test_a_patched_snapshot_holds_what_a_full_build_holds(new_world, program):
    world = small_lan(new_world())
    follower = Follower(world)
    for changes, one_in_ten in program:
        for change in changes:
            change_the_world(change, world)
        if one_in_ten == 0:
            follower.rebuild()  # a rebuild on the same builder, between patches
        follower.sync()
    assert follower.patches > 0
    fresh = SnapshotBuilder()
    build(fresh, world)
    assert retained(follower.builder) == retained(fresh)


# -- focused cases -----------------------------------------------------------------------------------------


@pytest.fixture
def follower(world):
    small_lan(world)
    for index in range(3):
        attach(world, world.container(f"a{index}"), world.neta, ("web",), ipv6=False)
    return Follower(world)


def names_seen(snapshot: Snapshot, client: str) -> dict:
    return snapshot.scope_of(client, "").names


def test_an_alias_shrinks_and_grows_with_its_holders(follower):
    world = follower.world
    web = encode_name("web")
    assert count(follower.snapshot.listeners[GATEWAY_A].names[web], A_IN) == 3
    world.remove_container(world.containers[0])
    assert count(follower.sync().listeners[GATEWAY_A].names[web], A_IN) == 2
    world.remove_container(world.containers[0])
    entry = follower.sync().listeners[GATEWAY_A].names[web]
    assert count(entry, A_IN) == 1 and not rotates(entry, A_IN)  # one holder left: its own entry
    assert entry is follower.snapshot.listeners[GATEWAY_A].names[encode_name("a2")]
    attach(world, world.container("a3"), world.neta, ("web",), ipv6=True)
    entry = follower.sync().listeners[GATEWAY_A].names[web]
    assert count(entry, A_IN) == 2 and rotates(entry, A_IN) and count(entry, AAAA_IN) == 1


def test_a_name_on_two_networks_of_one_view_follows_each(follower):
    world = follower.world
    both = world.container("both")
    attach(world, both, world.neta, ("svc",), ipv6=False)
    attach(world, both, world.netb, ("svc",), ipv6=False)
    other = world.container("other")
    attach(world, other, world.netb, ("svc",), ipv6=False)
    client = next(e.ipv4 for e in world.endpoints if e.container_id == both.id)
    assert count(names_seen(follower.sync(), client)[encode_name("svc")], A_IN) == 3
    world.remove_container(other)
    assert count(names_seen(follower.sync(), client)[encode_name("svc")], A_IN) == 2
    world.detach(both, world.netb)
    assert count(names_seen(follower.sync(), client)[encode_name("svc")], A_IN) == 1


def test_connect_and_disconnect_change_what_a_container_sees(follower):
    world = follower.world
    b1 = world.container("b1")
    attach(world, b1, world.netb, (), ipv6=False)
    a0 = world.containers[0]
    a0_address = next(e.ipv4 for e in world.endpoints if e.container_id == a0.id)
    assert encode_name("b1") not in names_seen(follower.sync(), a0_address)
    attach(world, a0, world.netb, (), ipv6=False)
    assert encode_name("b1") in names_seen(follower.sync(), a0_address)
    assert len(follower.builder._views) == 5  # neta, netb, netc, netd and the view over neta and netb
    world.detach(a0, world.netb)
    assert encode_name("b1") not in names_seen(follower.sync(), a0_address)
    assert len(follower.builder._views) == 4  # the view nobody sees any more is gone


def test_a_patch_copies_only_what_changes(follower):
    world = follower.world
    before = follower.snapshot
    attach(world, world.container("b1"), world.netb, (), ipv6=False)
    after = follower.sync()
    assert after.listeners[GATEWAY_A] is before.listeners[GATEWAY_A]  # neta's names and scope untouched
    assert after.listeners[GATEWAY_B].names is not before.listeners[GATEWAY_B].names
    a0_address = next(e.ipv4 for e in world.endpoints if e.container_id == world.containers[0].id)
    assert after.scope_of(a0_address, "") is before.scope_of(a0_address, "")
    assert encode_name("b1") not in before.listeners[GATEWAY_B].names  # the old snapshot never changes
    assert len(before.clients) == 3 and len(after.clients) == 4

    attach(world, world.containers[0], world.netb, (), ipv6=False)  # a connect: its names on neta stay as they are
    connected = follower.sync()
    assert connected.listeners[GATEWAY_A] is after.listeners[GATEWAY_A]
    assert connected.scope_of(a0_address, "").names is not after.scope_of(a0_address, "").names


def test_rotation_carries_over_a_patch_and_slots_do_not_leak(follower, dns):
    world = follower.world
    answerer = Answerer(follower.snapshot)
    first = dns.rdata(answerer.handle(dns.query("web"), "10.89.1.2", GATEWAY_A, False))[0]
    attach(world, world.container("unrelated"), world.netb, (), ipv6=False)
    answerer.snapshot = follower.sync()
    assert dns.rdata(answerer.handle(dns.query("web"), "10.89.1.2", GATEWAY_A, False))[0] != first
    for round_ in range(50):  # holders come and go: every alias set gets a slot, and gives it back
        extra = world.container(f"extra{round_}")
        attach(world, extra, world.neta, ("web", "db"), ipv6=True)
        answerer.snapshot = follower.sync()
        world.remove_container(extra)
        answerer.snapshot = follower.sync()
    assert follower.snapshot.rotation_slots <= 4
    assert len(dns.rdata(answerer.handle(dns.query("web"), "10.89.1.2", GATEWAY_A, False))) == 3


def test_rotation_carries_over_a_full_rebuild_on_the_same_builder(follower, dns):
    answerer = Answerer(follower.snapshot)
    first = dns.rdata(answerer.handle(dns.query("web"), "10.89.1.2", GATEWAY_A, False))[0]
    follower.world.network("netd", "10.89.4.0/24", "10.89.4.1")  # a network change: the server rebuilds
    answerer.snapshot = follower.sync()
    assert dns.rdata(answerer.handle(dns.query("web"), "10.89.1.2", GATEWAY_A, False))[0] != first


def test_a_patched_answerer_answers_like_a_fresh_one(follower, dns):
    """Every name, type and client through Answerer.handle, rotation normalised by sorting."""
    world = follower.world
    both = world.container("both", dns=("10.0.0.9",))
    attach(world, both, world.neta, ("web", "db"), ipv6=True)
    attach(world, both, world.netb, ("db",), ipv6=False)
    follower.sync()
    world.detach(world.containers[1], world.neta)
    attach(world, world.containers[1], world.netb, ("web",), ipv6=False)
    world.remove_container(world.containers[0])
    patched, fresh = Answerer(follower.sync()), Answerer(build_snapshot(*world.records()))
    names = {str(name) for e in world.endpoints for name in (*e.aliases, e.ipv4, e.ipv6) if name}
    names |= {c.name for c in world.containers} | {"a0", "gone"}
    questions = [name for name in names if ":" not in name and not name[0].isdigit()]
    questions += [ipaddress.ip_address(address).reverse_pointer for address in names if address[0].isdigit()]
    clients = [e.ipv4 for e in world.endpoints] + ["10.89.1.200", "192.168.0.1"]
    for question in questions:
        for qtype in ("A", "AAAA", "PTR", "ANY"):
            for client in clients:
                for listener in (GATEWAY_A, GATEWAY_B):
                    query = dns.query(question, qtype)
                    replies = [answerer.handle(query, client, listener, False) for answerer in (patched, fresh)]
                    if isinstance(replies[0], bytes):
                        assert replies[0][:12] == replies[1][:12]
                        assert sorted(dns.rdata(replies[0])) == sorted(dns.rdata(replies[1]))
                    else:
                        assert replies[0] == replies[1]


def test_large_changes_and_network_changes_build_from_scratch(follower):
    builder = follower.builder
    assert not SnapshotBuilder().can_patch(1)  # nothing to patch yet
    assert builder.can_patch(PATCH_LIMIT_FLOOR) and not builder.can_patch(PATCH_LIMIT_FLOOR + 1)
    follower.world.network("netd", "10.89.4.0/24", "10.89.4.1")
    assert follower.world.changes_since(follower.seen)[1] is None
    assert "10.89.4.1" in follower.sync().listeners
    with pytest.raises(RuntimeError):
        builder.patch(set(map(str, range(PATCH_LIMIT_FLOOR + 1))), [])


def test_patches_follow_a_real_store(world, tmp_path):
    """Through netcore's store: its change feed and container_records drive the patches."""
    small_lan(world)
    store = Store.open(str(tmp_path))
    with store.transaction():
        for record in world.networks:
            store.insert(record)
    reader = Store.open_readonly(str(tmp_path))
    builder = SnapshotBuilder()
    with reader.dns_records() as (networks, containers):
        builder.build(networks, containers)
    seen = reader.generation()

    def follow() -> Snapshot:
        nonlocal seen
        generation, changed = reader.changes_since(seen)
        assert changed is not None and builder.can_patch(len(changed))
        snapshot, seen = builder.patch(changed, reader.container_records(changed)), generation
        assert content(snapshot) == content(build(SnapshotBuilder(), reader))
        return snapshot

    half = world.container("half", world.neta, "10.89.1.9", aliases=("web",))
    with store.transaction():  # written as netcore does: creating first, running once the kernel work is done
        store.insert(dataclasses.replace(half, state=STATE_CREATING))
        store.insert(dataclasses.replace(world.endpoints[-1], state=STATE_CREATING))
    assert encode_name("half") not in follow().listeners[GATEWAY_A].names
    with store.transaction():
        store.set_state(half, STATE_RUNNING)
        store.set_state(world.endpoints[-1], STATE_RUNNING)
    assert encode_name("half") in follow().listeners[GATEWAY_A].names
    other = world.container("other", world.neta, "10.89.1.10", aliases=("web",))
    with store.transaction():
        store.insert(other)
        store.insert(world.endpoints[-1])
    assert count(follow().listeners[GATEWAY_A].names[encode_name("web")], A_IN) == 2
    with store.transaction():
        store.delete(world.endpoints[-1])
        store.delete(other)
    names = follow().listeners[GATEWAY_A].names
    assert count(names[encode_name("web")], A_IN) == 1 and encode_name("other") not in names
    reverse = names[encode_name("9.1.89.10.in-addr.arpa")]
    assert lookup(reverse, PTR_IN) is lookup(reverse, ANY_IN) and count(reverse, A_IN) == 0
    assert count(names[encode_name("half")], ANY_IN) == 1
    reader.close()
    store.close()
