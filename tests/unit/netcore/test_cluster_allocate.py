"""Cluster-wide allocation (netcore.cluster.allocate) against FakeClusterStore: the decisions, the
transactions under contention, lost replies, dead hosts' leases."""

import asyncio
import ipaddress
import random
import re

import pytest

from netcore.cluster import allocate, keys
from netcore.cluster.allocate import OverlaySpec
from netcore.cluster.fake_store import FakeClusterStore
from netcore.cluster.keys import EndpointRecord, HostRecord
from netcore.cluster.store import LeaseKeeper, StoreUnavailable
from netcore.errors import Conflict, NetcoreError, NotFound


def hexid(n: int) -> str:
    return f"{n:064x}"


def spec(n: int, name: str | None = None, **kw) -> OverlaySpec:
    return OverlaySpec(network_id=hexid(n), name=name or f"ov{n}", host="h1", **kw)


async def keeper_on(store, ttl=5):
    keeper = LeaseKeeper(store, ttl=ttl, interval=3600)  # refreshed by hand (store.advance) in these tests
    await keeper.start()
    return keeper


# -- pure decisions ---------------------------------------------------------------------------------------------


def test_vxlan_ids_start_at_4096_and_fill_gaps():
    assert allocate.lowest_free_vni([]) == 4096
    assert allocate.lowest_free_vni([4096, 4097, 4099]) == 4098
    assert allocate.lowest_free_vni([1, 2, 3]) == 4096


def test_overlay_subnets_come_from_10_0_0_0_8_in_24s_around_what_is_used():
    owners = allocate.subnet_owners({"10.0.0.0/24": "ov1"},
                                    [HostRecord("h2", "192.0.2.2", "b", ("10.0.1.0/24", "172.18.0.0/16"))])
    subnet, gateway = allocate.plan_overlay_subnet(None, None, owners)
    assert (str(subnet), str(gateway)) == ("10.0.2.0/24", "10.0.2.1")
    with pytest.raises(Conflict, match=re.escape("overlaps 10.0.1.0/24 of a local network of host h2")):
        allocate.plan_overlay_subnet("10.0.0.0/16", None, {k: v for k, v in owners.items() if "h2" in k})
    with pytest.raises(NetcoreError, match="overlay networks are IPv4"):
        allocate.plan_overlay_subnet("fd00::/64", None, {})
    with pytest.raises(NetcoreError, match="not inside subnet"):
        allocate.plan_overlay_subnet("10.9.0.0/24", "10.8.0.1", {})


def test_the_lowest_free_address_skips_the_gateway():
    network = keys.NetworkRecord(hexid(1), "ov", "10.0.0.0/24", "10.0.0.1", 4096)
    assert allocate.lowest_free_address(network, []) == "10.0.0.2"
    assert allocate.lowest_free_address(network, ["10.0.0.2", "10.0.0.4"]) == "10.0.0.3"
    with pytest.raises(Conflict, match="gateway"):
        allocate.lowest_free_address(network, [], requested="10.0.0.1")


# -- networks -----------------------------------------------------------------------------------------------------


async def test_networks_get_unique_subnets_vxlan_ids_and_names():
    store = FakeClusterStore()
    first = await allocate.create_network(store, spec(1))
    second = await allocate.create_network(store, spec(2))
    assert (first.subnet, first.gateway, first.vni) == ("10.0.0.0/24", "10.0.0.1", 4096)
    assert (second.subnet, second.vni) == ("10.0.1.0/24", 4097)
    with pytest.raises(Conflict, match="network name 'ov1' is in use by an overlay network"):
        await allocate.create_network(store, spec(3, name="ov1"))
    with pytest.raises(Conflict, match=re.escape("overlaps 10.0.0.0/24 of overlay network ov1")):
        await allocate.create_network(store, spec(4, subnet="10.0.0.0/16"))
    stored = keys.decode((await store.get(keys.network_key(hexid(1)))).value, keys.NetworkRecord).record
    assert stored == first


async def test_an_overlay_never_overlaps_a_local_network_of_a_joined_host():
    store = FakeClusterStore()
    keeper = await keeper_on(store)
    await allocate.publish_host(keeper, HostRecord("h2", "192.0.2.12", "b2", ("10.0.0.0/23",)))
    network = await allocate.create_network(store, spec(1))
    assert network.subnet == "10.0.2.0/24"
    with pytest.raises(Conflict, match="of a local network of host h2"):
        await allocate.create_network(store, spec(2, subnet="10.0.1.0/24"))
    # and the other way: a host may not publish a local subnet an overlay has
    with pytest.raises(Conflict, match=re.escape("overlaps 10.0.2.0/24 of overlay network")):
        await allocate.publish_host(keeper, HostRecord("h2", "192.0.2.12", "b2", ("10.0.0.0/16",)))


async def test_names_are_unique_across_local_and_global_scope():
    store = FakeClusterStore()
    keeper = await keeper_on(store)
    await allocate.claim_local_name(keeper, "web", "h2")
    await allocate.claim_local_name(keeper, "web", "h3")  # two hosts may share a local name
    with pytest.raises(Conflict, match=r"in use by a local network on host h[23]"):
        await allocate.create_network(store, spec(1, name="web"))
    await allocate.create_network(store, spec(2, name="db"))
    with pytest.raises(Conflict, match="'db' is in use by an overlay network"):
        await allocate.claim_local_name(keeper, "db", "h2")
    await allocate.release_local_name(keeper, "web", "h2")
    await allocate.release_local_name(keeper, "web", "h3")
    await allocate.create_network(store, spec(1, name="web"))


async def test_a_create_whose_reply_was_lost_is_not_made_twice():
    store = FakeClusterStore()
    store.lose_reply_next()
    with pytest.raises(StoreUnavailable):
        await allocate.create_network(store, spec(1))
    again = await allocate.create_network(store, spec(1))  # the caller's retry, same network ID
    assert again.vni == 4096
    listing = await store.list(keys.VNIS)
    assert [kv.key for kv in listing.items] == [keys.vni_key(4096)]


async def test_concurrent_creates_never_share_a_subnet_or_vxlan_id():
    store = FakeClusterStore()
    made = await asyncio.gather(*(allocate.create_network(store, spec(n)) for n in range(1, 13)))
    assert len({m.subnet for m in made}) == 12 and len({m.vni for m in made}) == 12


async def test_rm_refuses_while_a_host_has_a_container_and_then_removes_every_key():
    store = FakeClusterStore()
    keeper = await keeper_on(store)
    network = await allocate.create_network(store, spec(1, name="web"))
    endpoint = EndpointRecord(hexid(9), network.id, "h2", hexid(8), "c1", "c1", "", "02:42:0a:00:00:02")
    address = await allocate.allocate_address(keeper, network, endpoint.id, "h2")
    endpoint = EndpointRecord(**{**endpoint.__dict__, "ipv4": address})
    await allocate.publish_endpoint(keeper, endpoint)
    with pytest.raises(Conflict, match=r"network web is in use by c1 \(host h2\)"):
        await allocate.remove_network(store, network.id)
    await allocate.withdraw_endpoint(keeper, endpoint)
    await allocate.remove_network(store, network.id)
    assert (await store.list(keys.PREFIX)).items == ()
    with pytest.raises(NotFound):
        await allocate.remove_network(store, network.id)


async def test_rm_refuses_while_a_container_is_starting():
    store = FakeClusterStore()
    keeper = await keeper_on(store)
    network = await allocate.create_network(store, spec(1, name="web"))
    await allocate.allocate_address(keeper, network, hexid(9), "h3")  # claimed, not yet published
    with pytest.raises(Conflict, match="containers starting on host h3"):
        await allocate.remove_network(store, network.id)


# -- addresses ------------------------------------------------------------------------------------------------------


async def test_addresses_lowest_free_requested_and_repeated():
    store = FakeClusterStore()
    keeper = await keeper_on(store)
    network = await allocate.create_network(store, spec(1, subnet="10.5.0.0/29"))
    assert await allocate.allocate_address(keeper, network, hexid(11), "h1") == "10.5.0.2"
    assert await allocate.allocate_address(keeper, network, hexid(11), "h1") == "10.5.0.2"  # same endpoint again
    assert await allocate.allocate_address(keeper, network, hexid(12), "h2", requested="10.5.0.5") == "10.5.0.5"
    with pytest.raises(Conflict, match=re.escape("10.5.0.5 is already in use by a container on host h2")):
        await allocate.allocate_address(keeper, network, hexid(13), "h3", requested="10.5.0.5")
    assert await allocate.allocate_address(keeper, network, hexid(13), "h3") == "10.5.0.3"
    assert await allocate.allocate_address(keeper, network, hexid(14), "h3") == "10.5.0.4"
    assert await allocate.allocate_address(keeper, network, hexid(15), "h3") == "10.5.0.6"
    with pytest.raises(NetcoreError, match="no free address left"):
        await allocate.allocate_address(keeper, network, hexid(16), "h3")
    assert await allocate.release_address(keeper, network.id, "10.5.0.3", hexid(13), "h3")
    assert not await allocate.release_address(keeper, network.id, "10.5.0.4", hexid(99), "h3")  # not its own
    assert await allocate.allocate_address(keeper, network, hexid(16), "h3") == "10.5.0.3"


async def test_an_address_on_a_removed_network_is_refused():
    store = FakeClusterStore()
    keeper = await keeper_on(store)
    network = await allocate.create_network(store, spec(1))
    await allocate.remove_network(store, network.id)
    with pytest.raises(NotFound):
        await allocate.allocate_address(keeper, network, hexid(11), "h1")


async def test_twenty_concurrent_allocations_from_three_hosts_are_unique_and_all_kept():
    store = FakeClusterStore()
    network = await allocate.create_network(store, spec(1))
    keepers = [await keeper_on(store) for _ in range(3)]
    rng = random.Random(27)
    store.lose_reply_next(3)  # three writes applied whose replies were lost, as when the leader dies

    async def run(n):
        keeper = keepers[n % 3]
        await asyncio.sleep(rng.random() / 1000)
        while True:  # the caller's retry of a failed call (the agent's job)
            try:
                return await allocate.allocate_address(keeper, network, hexid(100 + n), f"h{n % 3}")
            except StoreUnavailable:
                continue

    addresses = await asyncio.gather(*(run(n) for n in range(20)))
    assert len(set(addresses)) == 20
    listing = await store.list(keys.addresses_prefix(network.id))
    held = {keys.parse_key(kv.key).parts[1]: keys.decode(kv.value, keys.Claim).record.owner for kv in listing.items}
    assert held == {address: hexid(100 + n) for n, address in enumerate(addresses)}  # nothing lost, no extra
    assert sorted(held, key=ipaddress.ip_address) == [f"10.0.0.{i}" for i in range(2, 22)]


async def test_a_dead_hosts_addresses_are_not_handed_out_until_its_lease_is_gone():
    store = FakeClusterStore()
    network = await allocate.create_network(store, spec(1))
    dead = await keeper_on(store, ttl=5)
    alive = await keeper_on(store, ttl=5)
    assert await allocate.allocate_address(dead, network, hexid(11), "dead") == "10.0.0.2"
    store.advance(3)
    await store.refresh(alive.lease)  # only the living host refreshes
    assert await allocate.allocate_address(alive, network, hexid(12), "alive") == "10.0.0.3"
    store.advance(3)  # the dead host's TTL is over
    assert await allocate.allocate_address(alive, network, hexid(13), "alive") == "10.0.0.2"


async def test_an_endpoint_is_published_only_while_it_holds_its_address():
    store = FakeClusterStore()
    keeper = await keeper_on(store)
    network = await allocate.create_network(store, spec(1))
    endpoint = EndpointRecord(hexid(9), network.id, "h1", hexid(8), "c1", "c1", "10.0.0.2", "02:42:0a:00:00:02")
    with pytest.raises(Conflict, match="no longer held"):
        await allocate.publish_endpoint(keeper, endpoint)
    await allocate.allocate_address(keeper, network, endpoint.id, "h1")
    await allocate.publish_endpoint(keeper, endpoint)
    await allocate.publish_endpoint(keeper, endpoint)  # again: harmless
    assert (await store.get(keys.endpoint_key(network.id, endpoint.id))).lease == keeper.lease
    await allocate.withdraw_endpoint(keeper, endpoint)
    assert (await store.list(keys.addresses_prefix(network.id))).items == ()
    assert await store.get(keys.endpoint_key(network.id, endpoint.id)) is None


# -- hosts -------------------------------------------------------------------------------------------------------


async def test_a_host_name_belongs_to_one_host_id_and_a_restart_takes_it_back():
    store = FakeClusterStore()
    first = await keeper_on(store)
    await allocate.publish_host(first, HostRecord("h1", "192.0.2.11", "id-a"))
    other = await keeper_on(store)
    with pytest.raises(Conflict, match=re.escape("host name h1 is taken by another host at 192.0.2.11")):
        await allocate.publish_host(other, HostRecord("h1", "192.0.2.99", "id-b"))
    restarted = await keeper_on(store)  # the same host (same ID) back before its old lease ended
    await allocate.publish_host(restarted, HostRecord("h1", "192.0.2.11", "id-a", ("172.18.0.0/16",)))
    kv = await store.get(keys.host_key("h1"))
    assert kv.lease == restarted.lease
    assert keys.decode(kv.value, HostRecord).record.local_subnets == ("172.18.0.0/16",)
