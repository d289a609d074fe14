"""The cluster member (netcore.cluster.member) of several hosts on one FakeClusterStore, without root or etcd:
registration and its refusals, the data plane programmed before the names, a host that dies and comes back
with the same addresses, the store down and back, compaction, a newer release's keys, and the engine's writes
crossing the registrar's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re

import pytest

from netcore.cluster import allocate, keys
from netcore.cluster.allocate import OverlaySpec
from netcore.cluster.dataplane import RemoteEndpoint
from netcore.cluster.fake_store import FakeClusterStore
from netcore.cluster.keys import EndpointRecord
from netcore.cluster.member import LocalState, Member
from netcore.cluster.membership import Membership
from netcore.cluster.store import StoreUnavailable
from netcore.errors import Conflict

NET = "a" * 64
VX = "vx-aaaaaaaaaaaa"


class FakeHost:
    """A host's side: its local state as the test sets it; what was programmed and named, in order."""

    def __init__(self, name: str):
        self.name = name
        self.state = LocalState()
        self.entries: dict[str, list[RemoteEndpoint]] = {}
        self.names: list[EndpointRecord] | None = None
        self.journal: list[tuple[str, object]] = []

    def local_state(self) -> LocalState:
        return self.state

    def program(self, device, remotes):
        self.entries[device] = sorted(remotes)
        self.journal.append(("program", tuple(sorted(r.ip for r in remotes))))

    def release(self, device):
        self.journal.append(("release", device))

    def publish_names(self, endpoints):
        self.names = sorted(endpoints, key=lambda e: e.ipv4)
        self.journal.append(("names", tuple(e.ipv4 for e in self.names)))

    def close(self):
        pass

    def named(self) -> set[str]:
        return {e.container_name for e in self.names or ()}


def membership(n: int, ttl: int = 3) -> Membership:
    return Membership("etcd://fake:2379", f"h{n}", f"192.0.2.1{n}", f"{n:032x}", ttl)


def endpoint(n: int, host: str, ip: str, aliases=()) -> EndpointRecord:
    return EndpointRecord(f"{n:064x}", NET, host, f"{n + 100:064x}", f"c{n}", f"c{n}", ip,
                          "02:42:" + ":".join(f"{int(b):02x}" for b in ip.split(".")), tuple(aliases))


async def eventually(predicate, timeout: float = 3.0, what: str = ""):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {what}")
        await asyncio.sleep(0.01)


class Cluster:
    def __init__(self):
        self.store = FakeClusterStore()
        self.members: list[Member] = []

    async def member(self, n: int, host: FakeHost | None = None, join: bool = True, ttl: int = 3) -> Member:
        member = Member(self.store, membership(n, ttl), host or FakeHost(f"h{n}"), resync_interval=0.05)
        member.keeper.interval = 0.02  # refreshed often: tests move the fake clock in steps
        if join:
            await member.join()
        else:
            await member.start()
        self.members.append(member)
        return member

    async def tick(self, seconds: float, step: float = 0.5):
        """Move the fake clock in steps, letting live keepers refresh in between."""
        moved = 0.0
        while moved < seconds:
            self.store.advance(step)
            moved += step
            await asyncio.sleep(0.05)

    async def close(self):
        for member in self.members:
            with contextlib.suppress(Exception):
                await member.stop()


@pytest.fixture
async def cluster():
    world = Cluster()
    try:
        yield world
    finally:
        await world.close()


async def overlay(store) -> keys.NetworkRecord:
    return await allocate.create_network(store, OverlaySpec(NET, "app", "h1", subnet="10.0.0.0/24"))


async def run_on(member: Member, host: FakeHost, n: int, ip: str | None = None, aliases=()) -> EndpointRecord:
    """What the engine does for a `run` on an overlay network: claim, build (the local state), publish."""
    record = endpoint(n, member.name, "0.0.0.0", aliases)
    address = await member.allocate(NET, record.id, ip)
    record = EndpointRecord(record.id, NET, member.name, record.container_id, record.container_name,
                            record.hostname, address, endpoint(n, member.name, address).mac, tuple(aliases))
    host.state = LocalState(host.state.networks, (), (*host.state.endpoints, record), frozenset(),
                            {**host.state.devices, NET: VX})
    await member.publish(record)
    return record


async def test_join_registers_the_host_its_local_names_and_subnets(cluster):
    host = FakeHost("h1")
    host.state = LocalState(networks=(("web", "172.18.0.0/16"),), underlay=("192.0.2.0/24",))
    member = await cluster.member(1, host)
    held = cluster.store.data
    record = keys.decode(held[keys.host_key("h1")].value, keys.HostRecord).record
    assert record.local_subnets == ("172.18.0.0/16", "192.0.2.0/24")
    assert keys.local_name_key("web", "h1") in held
    # an overlay network may take neither the name nor the subnets
    with pytest.raises(Conflict, match="local network on host h1"):
        await allocate.create_network(cluster.store, OverlaySpec("b" * 64, "web", "h2"))
    with pytest.raises(Conflict, match="a local network of host h1"):
        await allocate.create_network(cluster.store, OverlaySpec("b" * 64, "x", "h2", subnet="192.0.2.0/25"))
    # every key of the host is under its lease: revoking it (cluster leave) leaves nothing of it
    await member.leave()
    assert not [k for k in cluster.store.data if "h1" in k]


async def test_a_join_that_is_refused_leaves_nothing_in_the_store(cluster):
    await overlay(cluster.store)
    host = FakeHost("h1")
    host.state = LocalState(networks=(("app", "172.18.0.0/16"),))  # a local network named like the overlay
    member = Member(cluster.store, membership(1), host)
    with pytest.raises(Conflict, match="in use by an overlay network"):
        await member.join()
    await member.stop()
    assert not cluster.store.leases and keys.host_key("h1") not in cluster.store.data
    other = Member(cluster.store, membership(1), FakeHost("h1"))
    await other.join()
    leases = dict(cluster.store.leases)
    impostor = Member(cluster.store, Membership("etcd://fake:2379", "h1", "192.0.2.99", "f" * 32, 3), FakeHost("h1"))
    with pytest.raises(Conflict, match=re.escape("host name h1 is taken by another host at 192.0.2.11")):
        await impostor.join()
    await impostor.stop()
    assert cluster.store.leases.keys() == leases.keys()  # the impostor's lease is gone, h1's own is kept
    assert keys.decode(cluster.store.data[keys.host_key("h1")].value, keys.HostRecord).record.address == "192.0.2.11"
    await other.stop()


async def test_a_remote_container_is_programmed_before_its_name_is_handed_to_dnsd(cluster):
    await overlay(cluster.store)
    h1, h2 = FakeHost("h1"), FakeHost("h2")
    m1 = await cluster.member(1, h1)
    m2 = await cluster.member(2, h2)
    h2.state = LocalState(devices={NET: VX})
    await m2.attach(NET, VX)  # h2 built the network (its own container comes)
    record = await run_on(m1, h1, 1, aliases=("api",))
    assert record.ipv4 == "10.0.0.2"
    await eventually(lambda: h2.named() == {"c1"}, what="h2 names c1")
    assert h2.entries[VX] == [RemoteEndpoint("10.0.0.2", record.mac, "192.0.2.11")]
    program = h2.journal.index(("program", ("10.0.0.2",)))
    names = h2.journal.index(("names", ("10.0.0.2",)))
    assert program < names, h2.journal
    assert h1.names == []  # a host never names its own containers from the cluster (its store has them)
    # rm on h1: gone from h2's entries, then from its names
    h1.state = LocalState(devices={NET: VX})
    await m1.withdraw(record)
    await eventually(lambda: h2.named() == set(), what="c1 gone from h2")
    assert h2.entries[VX] == []
    assert not [k for k in cluster.store.data if k.startswith(keys.ADDRESSES)]


async def test_a_dead_host_leaves_after_its_lease_and_comes_back_with_the_same_addresses(cluster):
    await overlay(cluster.store)
    h1, h2 = FakeHost("h1"), FakeHost("h2")
    m1 = await cluster.member(1, h1)
    await cluster.member(2, h2)
    first = await run_on(m1, h1, 1)
    second = await run_on(m1, h1, 2, aliases=("api",))
    await eventually(lambda: h2.named() == {"c1", "c2"})
    # h1's agent is killed: its keepalive stops, nothing is revoked
    cluster.members.remove(m1)
    await m1.stop(revoke=False)
    await cluster.tick(2.5)
    assert h2.named() == {"c1", "c2"}  # its lease (3 s) is not over yet
    await cluster.tick(1.0)
    await eventually(lambda: h2.named() == set(), what="h1's containers gone after its lease")
    # restarted (a new netcored on the same store and state dir): the same addresses, published again
    restarted = await cluster.member(1, h1, join=False)
    await eventually(lambda: h2.named() == {"c1", "c2"}, what="h1 back")
    assert sorted(e.ipv4 for e in h2.names) == sorted([first.ipv4, second.ipv4])
    assert restarted.registered


async def test_an_address_is_not_handed_out_again_until_the_dead_hosts_lease_is_gone(cluster):
    await overlay(cluster.store)
    h1, h2 = FakeHost("h1"), FakeHost("h2")
    m1 = await cluster.member(1, h1)
    m2 = await cluster.member(2, h2)
    taken = await run_on(m1, h1, 1)
    cluster.members.remove(m1)
    await m1.stop(revoke=False)
    with pytest.raises(Conflict, match=f"address {taken.ipv4} is already in use by a container on host h1"):
        await m2.allocate(NET, "e" * 64, taken.ipv4)
    assert await m2.allocate(NET, "d" * 64, None) != taken.ipv4
    await cluster.tick(4.0)
    assert await m2.allocate(NET, "e" * 64, taken.ipv4) == taken.ipv4


async def test_a_store_down_at_start_fails_overlay_work_in_one_line_and_is_joined_when_it_returns(cluster):
    await overlay(cluster.store)
    h1 = FakeHost("h1")
    first = await cluster.member(1, h1)
    record = await run_on(first, h1, 1)
    cluster.members.remove(first)
    await first.stop(revoke=False)
    cluster.store.down()
    restarted = await cluster.member(1, h1, join=False)  # netcored starts while the store is down: no failure
    calls = cluster.store.calls
    await asyncio.sleep(1.0)
    assert cluster.store.calls - calls < 20  # backoff, no hot loop
    with pytest.raises(StoreUnavailable, match=r"^cluster store etcd://fake:2379 unreachable"):
        await restarted.allocate(NET, "e" * 64, None)
    cluster.store.up()
    await eventually(lambda: restarted.registered, timeout=8, what="registered when the store returned")
    assert keys.endpoint_key(NET, record.id) in cluster.store.data


async def test_a_withdrawal_the_store_did_not_take_is_made_when_it_answers_again(cluster):
    await overlay(cluster.store)
    h1, h2 = FakeHost("h1"), FakeHost("h2")
    m1 = await cluster.member(1, h1)
    await cluster.member(2, h2)
    record = await run_on(m1, h1, 1)
    await eventually(lambda: h2.named() == {"c1"})
    h1.state = LocalState()  # rm: the container is gone here
    cluster.store.down()
    with pytest.raises(StoreUnavailable):
        await m1.withdraw(record)
    cluster.store.up()
    await eventually(lambda: keys.endpoint_key(NET, record.id) not in cluster.store.data, timeout=8,
                     what="withdrawn by the registrar")
    await eventually(lambda: h2.named() == set())


async def test_the_registrar_never_undoes_what_the_engine_did_after_its_read(cluster):
    """The registrar read the local state before a run was recorded; the run's endpoint is published
    meanwhile: it must stay. And one withdrawn after the read must not come back."""
    await overlay(cluster.store)
    h1 = FakeHost("h1")
    m1 = await cluster.member(1, h1)
    stale = LocalState()
    read_tick = m1._tick
    record = await run_on(m1, h1, 1)
    await m1._sync(stale, full=True, read_tick=read_tick)
    assert keys.endpoint_key(NET, record.id) in cluster.store.data
    read_tick = m1._tick
    old_state = h1.state
    h1.state = LocalState()
    await m1.withdraw(record)
    await m1._sync(old_state, full=True, read_tick=read_tick)
    assert keys.endpoint_key(NET, record.id) not in cluster.store.data
    assert not [k for k in cluster.store.data if k.startswith(keys.ADDRESSES)]


async def test_compaction_during_an_outage_misses_no_delete(cluster):
    await overlay(cluster.store)
    h1, h2 = FakeHost("h1"), FakeHost("h2")
    m1 = await cluster.member(1, h1)
    m2 = await cluster.member(2, h2)
    h2.state = LocalState(devices={NET: VX})
    await m2.attach(NET, VX)
    record = await run_on(m1, h1, 1)
    await eventually(lambda: h2.named() == {"c1"})
    cluster.store.down()
    cluster.store.up()  # the watch of h2 broke; before it resumes, c1 goes and the store compacts past it
    h1.state = LocalState()
    await m1.withdraw(record)
    await cluster.store.compact(cluster.store.revision)
    await eventually(lambda: h2.named() == set(), timeout=8, what="the delete seen after a re-list")
    assert h2.entries[VX] == []
    assert m2.follower.relists >= 1


async def test_a_key_of_a_newer_release_is_ignored_with_a_warning(cluster):
    await overlay(cluster.store)
    h2 = FakeHost("h2")
    m2 = await cluster.member(2, h2)
    newer = dict(json.loads(keys.encode(endpoint(7, "h9", "10.0.0.9"))), shape="hexagon")
    await cluster.store.put(keys.host_key("h9"), keys.encode(keys.HostRecord("h9", "192.0.2.99", "9")))
    await cluster.store.put(keys.endpoint_key(NET, f"{7:064x}"), json.dumps(newer).encode())
    await cluster.store.put(keys.endpoint_key(NET, "8" * 64), b"{not json")
    await eventually(lambda: h2.named() == {"c7"}, what="the newer record read for what it has")
    assert any("ignored fields shape" in w for w in m2.warnings)
    assert any("not JSON" in w for w in m2.warnings)
