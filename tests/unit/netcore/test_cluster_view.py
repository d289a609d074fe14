"""The cluster's in-memory mirror (netcore.cluster.view): built from a listing and events, idempotent, with a
change feed; fed end to end by a PrefixFollower over FakeClusterStore through outages and compaction."""

import asyncio
import contextlib
import json

from netcore.cluster import allocate, keys
from netcore.cluster.dataplane import RemoteEndpoint
from netcore.cluster.fake_store import FakeClusterStore
from netcore.cluster.keys import Claim, EndpointRecord, HostRecord, NetworkRecord
from netcore.cluster.store import DELETE, PUT, Event, LeaseKeeper, PrefixFollower
from netcore.cluster.view import ClusterView

NET = "a" * 64
H1 = HostRecord("h1", "192.0.2.11", "i1")
H2 = HostRecord("h2", "192.0.2.12", "i2")
NETWORK = NetworkRecord(NET, "web", "10.0.0.0/24", "10.0.0.1", 4096)
E1 = EndpointRecord("1" * 64, NET, "h1", "c" * 64, "c1", "c1", "10.0.0.2", "02:42:0a:00:00:02", ("db",))
E2 = EndpointRecord("2" * 64, NET, "h2", "d" * 64, "c2", "c2", "10.0.0.3", "02:42:0a:00:00:03")


def put(key, record, revision):
    return Event(PUT, key, keys.encode(record), revision)


def listing():
    return [put(keys.host_key("h1"), H1, 2), put(keys.host_key("h2"), H2, 3), put(keys.network_key(NET), NETWORK, 4),
            put(keys.endpoint_key(NET, E1.id), E1, 5), put(keys.endpoint_key(NET, E2.id), E2, 6),
            put(keys.vni_key(4096), Claim(NET), 4)]


def test_a_listing_builds_hosts_networks_and_endpoints_by_network():
    view = ClusterView()
    changes = view.apply(listing())
    assert len(changes) == 5  # the allocation key is not mirrored
    assert view.hosts == {"h1": H1, "h2": H2}
    assert view.networks == {NET: NETWORK}
    assert view.endpoints_of(NET) == [E1, E2]
    assert view.network_named("web") == NETWORK
    assert view.generation == 5


def test_duplicate_events_and_deletes_of_absent_keys_change_nothing():
    view = ClusterView()
    view.apply(listing())
    assert view.apply(listing()) == []
    assert view.apply([Event(DELETE, keys.endpoint_key(NET, "9" * 64), b"", 9)]) == []
    assert view.generation == 5
    first = view.apply([Event(DELETE, keys.endpoint_key(NET, E2.id), b"", 10)])
    assert view.apply([Event(DELETE, keys.endpoint_key(NET, E2.id), b"", 10)]) == []
    assert [(c.kind, c.ident, c.before, c.after) for c in first] == [(keys.KIND_ENDPOINT, E2.id, E2, None)]


def test_the_change_feed_says_what_changed_since_a_generation():
    view = ClusterView()
    view.apply(listing())
    mark = view.generation
    moved = HostRecord("h2", "192.0.2.99", "i2")
    view.apply([put(keys.host_key("h2"), moved, 11), Event(DELETE, keys.endpoint_key(NET, E1.id), b"", 12)])
    since = view.changes_since(mark)
    assert [(c.kind, c.ident) for c in since] == [(keys.KIND_HOST, "h2"), (keys.KIND_ENDPOINT, E1.id)]
    assert view.changes_since(view.generation) == []
    assert view.networks_affected(since) is None  # a host moved: every network's data plane
    assert view.networks_affected(since[1:]) == {NET}
    assert view.changes_since(0) is not None  # the log still reaches back to the start


def test_a_reader_too_far_behind_is_told_to_rebuild():
    view = ClusterView()
    view.apply(listing())
    for revision in range(7, 7 + 5000):
        view.apply([put(keys.host_key("h1"), HostRecord("h1", f"192.0.2.{revision % 200}", "i1"), revision)])
    assert view.changes_since(1) is None


def test_remote_endpoints_are_the_other_hosts_with_their_vteps():
    view = ClusterView()
    view.apply(listing())
    assert view.remote_endpoints(NET, "h1") == [RemoteEndpoint("10.0.0.3", "02:42:0a:00:00:03", "192.0.2.12")]
    assert view.remote_endpoints(NET, "h2") == [RemoteEndpoint("10.0.0.2", "02:42:0a:00:00:02", "192.0.2.11")]
    view.apply([Event(DELETE, keys.host_key("h2"), b"", 20)])  # its lease is ending: no VTEP to send to
    assert view.remote_endpoints(NET, "h1") == []


def test_a_newer_releases_value_is_read_with_one_warning_and_an_unreadable_one_skipped():
    view = ClusterView()
    newer = json.loads(keys.encode(H1))
    newer.update(v=2, rack="r7")
    event = Event(PUT, keys.host_key("h1"), json.dumps(newer).encode(), 2)
    view.apply([event])
    view.apply([Event(PUT, keys.host_key("h1"), json.dumps({**newer, "zone": 1}).encode(), 3)])
    assert view.hosts["h1"] == H1
    assert len([w for w in view.warnings if "rack" in w]) == 2  # one per distinct set of fields, not per event
    view.apply([Event(PUT, keys.host_key("h1"), b"\x00garbage", 4), Event(PUT, keys.host_key("h1"), b"?", 5)])
    assert "h1" not in view.hosts
    view.apply([Event(PUT, "/netcore/v1/future/kind", b"{}", 6)])
    assert any("unknown key" in w for w in view.warnings)


def test_an_endpoint_record_filed_under_another_key_is_ignored():
    view = ClusterView()
    view.apply([put(keys.endpoint_key(NET, "9" * 64), E1, 2)])
    assert view.endpoints == {}
    assert view.warnings


async def stop(task):
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_view_fed_by_a_follower_matches_the_store_after_outages_and_compaction():
    store = FakeClusterStore()
    keeper = LeaseKeeper(store, ttl=5, interval=3600)
    await keeper.start()
    await allocate.publish_host(keeper, H1)
    network = await allocate.create_network(store, allocate.OverlaySpec(NET, "web", "h1"))
    view = ClusterView()
    follower = PrefixFollower(store, keys.PREFIX)

    async def feed():
        async for batch in follower.batches():
            view.apply(batch)

    task = asyncio.get_running_loop().create_task(feed())
    published = []
    for n in range(6):
        endpoint = EndpointRecord(f"{n + 1:064x}", NET, "h1", "c" * 64, f"c{n}", f"c{n}", "", "02:42:00:00:00:00")
        address = await allocate.allocate_address(keeper, network, endpoint.id, "h1")
        endpoint = EndpointRecord(**{**endpoint.__dict__, "ipv4": address})
        await allocate.publish_endpoint(keeper, endpoint)
        published.append(endpoint)
        if n == 2:
            store.down()
            await asyncio.sleep(0.05)
            store.up()
    await stop(task)  # cut off: two containers go, the store is compacted right at the last delete
    await allocate.withdraw_endpoint(keeper, published[0])
    await allocate.withdraw_endpoint(keeper, published[5])
    await store.compact(store.revision)
    task = asyncio.get_running_loop().create_task(feed())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while view.endpoints_of(NET) != sorted(published[1:5], key=lambda e: e.id) and loop.time() < deadline:
        await asyncio.sleep(0.005)
    await stop(task)
    assert view.endpoints_of(NET) == sorted(published[1:5], key=lambda e: e.id)
    assert view.hosts == {"h1": H1} and list(view.networks) == [NET]
    await keeper.stop()
