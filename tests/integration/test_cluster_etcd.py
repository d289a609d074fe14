"""netcore.cluster against a real 3-member etcd 3.4 on 127.0.0.1 (random free ports, a unique token and data dir
per test, members killed by PID in teardown): the semantics FakeClusterStore copies, failover when the leader
dies mid-burst, compaction during a watch, all members down and back, lease expiry."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time

import pytest

from netcore.cluster import allocate, keys
from netcore.cluster.allocate import OverlaySpec
from netcore.cluster.keys import EndpointRecord, HostRecord
from netcore.cluster.store import (
    Compacted,
    EtcdStore,
    Get,
    LeaseKeeper,
    LeaseNotFound,
    PrefixFollower,
    Put,
    StoreUnavailable,
    absent,
    none_under,
    parse_store_url,
)
from netcore.cluster.view import ClusterView
from tests.support.etcd_cluster import EtcdCluster, have_etcd

pytestmark = pytest.mark.skipif(not have_etcd(), reason="needs etcd and etcdctl (Debian's etcd-server, etcd-client)")

NET = "e" * 64


@pytest.fixture
def etcd():
    cluster = EtcdCluster(3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        assert all(m.process.poll() is not None for m in cluster.members if m.process is not None)


def store_for(endpoints, **kw) -> EtcdStore:
    return EtcdStore([(h, int(p)) for h, p in (e.rsplit(":", 1) for e in endpoints)], **kw)


async def eventually(predicate, timeout: float, what: str):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {what}")
        await asyncio.sleep(0.02)


async def stop(task):
    """Cancel ``task`` and wait, bounded, until it has ended: a cancel that is lost fails the test, not the run."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=10)
    assert task in done, f"{task!r} did not end within 10 s of its cancel"
    with contextlib.suppress(asyncio.CancelledError):
        await task


def feed(view: ClusterView, follower: PrefixFollower) -> asyncio.Task:
    async def run():
        async for batch in follower.batches():
            view.apply(batch)

    return asyncio.get_running_loop().create_task(run())


async def test_etcd_behaves_as_the_fake_assumes(etcd):
    """Each etcd behaviour FakeClusterStore copies, checked on the real thing."""
    store = store_for(etcd.endpoints)
    try:
        assert (await store.check()).startswith("3.")
        p = "/netcore/v1/test/"
        first = await store.txn([absent(p + "a")], [Put(p + "a", b"1"), Put(p + "b", b"2")], [Get(p + "a")])
        assert first.succeeded
        assert (await store.get(p + "b")).mod_revision == first.revision  # one transaction, one revision
        again = await store.txn([absent(p + "a")], [Put(p + "a", b"x")], [Get(p + "a")])
        assert not again.succeeded and again.reads[0][0].value == b"1"
        assert not (await store.txn([none_under(p)], [])).succeeded
        assert (await store.txn([none_under(p + "empty/")], [])).succeeded
        # a lease that is gone: keepalive says TTL 0, a put under it is refused
        lease = await store.grant(5)
        await store.revoke(lease)
        assert await store.refresh(lease) <= 0
        with pytest.raises(LeaseNotFound):
            await store.put(p + "c", b"", lease=lease)
        # the compaction pitfall: a delete at exactly the compaction revision
        last = (await store.get(p + "a")).mod_revision
        await store.delete(p + "a")
        deleted_at = (await store.list(p)).revision
        await store.compact(deleted_at)
        with pytest.raises(Compacted):
            async for _ in store.watch(p, last):
                pass
        stream = store.watch(p, deleted_at)  # allowed, and silent about the delete
        await store.put(p + "later", b"")
        assert (await asyncio.wait_for(stream.__anext__(), 5)).key == p + "later"
        await stream.aclose()
    finally:
        await store.close()


async def test_the_leader_killed_mid_burst_of_allocations_loses_nothing_and_duplicates_nothing(etcd):
    """20 allocations from 3 clients at once; the Raft leader is killed after the first few."""
    stores = [store_for(etcd.endpoints[i:] + etcd.endpoints[:i], call_timeout=10) for i in range(3)]
    keepers = [LeaseKeeper(s, ttl=15) for s in stores]
    try:
        for keeper in keepers:
            await keeper.start()
        network = await allocate.create_network(stores[0], OverlaySpec(NET, "burst", "h0"))
        leader = etcd.leader()
        done = []
        retries = []

        async def run(n):
            keeper = keepers[n % 3]
            for _attempt in range(20):  # the agent's retry of a call that failed in one line
                try:
                    address = await allocate.allocate_address(keeper, network, f"{n + 1:064x}", f"h{n % 3}")
                    done.append(address)
                    return address
                except StoreUnavailable:
                    retries.append(n)
            raise AssertionError(f"allocation {n} never succeeded")

        async def killer():
            await eventually(lambda: len(done) >= 4, 30, "first allocations")
            etcd.kill(leader)

        results = await asyncio.gather(killer(), *(run(n) for n in range(20)))
        addresses = results[1:]
        assert len(set(addresses)) == 20
        check = store_for([m.endpoint for m in etcd.members if m is not leader])
        try:
            listing = await check.list(keys.addresses_prefix(NET))
        finally:
            await check.close()
        held = {keys.parse_key(kv.key).parts[1]: keys.decode(kv.value, keys.Claim).record.owner
                for kv in listing.items}
        assert held == {address: f"{n + 1:064x}" for n, address in enumerate(addresses)}
        assert sorted(held, key=ipaddress.ip_address) == [f"10.0.0.{i}" for i in range(2, 22)]
        assert all(k.regrants == 0 for k in keepers)  # no lease expired over the election
    finally:
        for keeper in keepers:
            await keeper.stop(revoke=False)
        for store in stores:
            await store.close()


async def test_a_delete_during_an_outage_compacted_right_at_it_reaches_the_watch(etcd):
    """The watcher's only member dies; meanwhile a key is deleted and the store compacted at exactly that
    revision; when the member is back, the watch resumes, is told of the compaction, lists and sees the delete."""
    first = etcd.members[0]
    watcher_store = store_for([first.endpoint], op_timeout=1, call_timeout=2)
    writer = store_for([m.endpoint for m in etcd.members[1:]])
    p = keys.PREFIX
    view = ClusterView()
    try:
        keeper = LeaseKeeper(writer, ttl=30)
        await keeper.start()
        await allocate.publish_host(keeper, HostRecord("h1", "192.0.2.11", "i1"))
        await allocate.publish_host(keeper, HostRecord("h2", "192.0.2.12", "i2"))
        follower = PrefixFollower(watcher_store, p)
        task = feed(view, follower)
        await eventually(lambda: set(view.hosts) == {"h1", "h2"}, 10, "both hosts seen")
        etcd.kill(first)
        await eventually(lambda: not follower.connected, 10, "the watch broken")
        await writer.delete(keys.host_key("h2"))
        await writer.compact((await writer.list(p)).revision)
        etcd.start_member(first)
        await eventually(lambda: set(view.hosts) == {"h1"}, 30, "the delete seen after the member came back")
        assert follower.relists >= 1
        await stop(task)
        await keeper.stop()
    finally:
        await watcher_store.close()
        await writer.close()


async def test_all_members_down_then_back_no_hot_loop_and_everything_converges(etcd):
    store = store_for(etcd.endpoints, op_timeout=1, call_timeout=3)
    view = ClusterView()
    try:
        keeper = LeaseKeeper(store, ttl=10)
        await keeper.start()
        await allocate.publish_host(keeper, HostRecord("h1", "192.0.2.11", "i1"))
        follower = PrefixFollower(store, keys.PREFIX)
        task = feed(view, follower)
        await eventually(lambda: "h1" in view.hosts, 10, "the host seen")
        for member in etcd.members:
            etcd.kill(member)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            await allocate.create_network(store, OverlaySpec(NET, "down", "h1"))
        message = str(caught.value)
        assert "\n" not in message and "cluster store etcd://127.0.0.1:" in message and "unreachable" in message
        failures = store.failures
        await asyncio.sleep(3)
        # three users of the store (a call, the keepalive loop, the watch) backing off: some tens of attempts
        # over 3 s at most, where a hot loop makes thousands
        assert store.failures - failures < 60, store.failures - failures
        assert "h1" in view.hosts  # the last known state is kept
        for member in etcd.members:
            etcd.start_member(member)
        etcd.wait_healthy()
        await allocate.create_network(store, OverlaySpec(NET, "back", "h1"))
        await eventually(lambda: NET in view.networks, 30, "the watch converged after the outage")
        assert (await store.get(keys.host_key("h1"))) is not None  # the host's key is there (kept or re-put)
        assert time.monotonic() - started < 120
        await stop(task)
        await keeper.stop()
    finally:
        await store.close()


async def test_lease_expiry_removes_a_hosts_keys_everywhere(etcd):
    store = store_for(etcd.endpoints)
    observer = store_for(list(reversed(etcd.endpoints)))
    view = ClusterView()
    try:
        network = await allocate.create_network(store, OverlaySpec(NET, "web", "h1"))
        keeper = LeaseKeeper(store, ttl=2)
        await keeper.start()
        await allocate.publish_host(keeper, HostRecord("h1", "192.0.2.11", "i1"))
        endpoint_id = "1" * 64
        address = await allocate.allocate_address(keeper, network, endpoint_id, "h1")
        await allocate.publish_endpoint(keeper, EndpointRecord(endpoint_id, NET, "h1", "c" * 64, "c1", "c1", address,
                                                               "02:42:0a:00:00:02"))
        task = feed(view, PrefixFollower(observer, keys.PREFIX))
        await eventually(lambda: view.endpoints_of(NET) and "h1" in view.hosts, 10, "the host and its endpoint")
        await keeper.stop(revoke=False)  # the host dies: no revoke, no keepalive
        await eventually(lambda: not view.endpoints_of(NET) and "h1" not in view.hosts, 3 * 2 + 5,
                         "the host's keys gone with its lease")
        await stop(task)
        left = [kv.key for kv in (await observer.list(keys.PREFIX)).items]
        assert keys.addresses_prefix(NET) not in "".join(left)  # its address is free again
        assert keys.network_key(NET) in left  # the network itself is global, not the host's
        await allocate.remove_network(observer, NET)
        assert (await observer.list(keys.PREFIX)).items == ()
    finally:
        await store.close()
        await observer.close()


async def test_a_revoked_lease_is_granted_again_and_the_hosts_keys_put_back(etcd):
    store = store_for(etcd.endpoints)
    other = store_for(list(reversed(etcd.endpoints)))
    try:
        keeper = LeaseKeeper(store, ttl=3)
        first = await keeper.start()
        await allocate.publish_host(keeper, HostRecord("h1", "192.0.2.11", "i1"))
        await other.revoke(first)  # as etcd does when the TTL ends while the host is cut off
        assert await other.get(keys.host_key("h1")) is None
        await eventually(lambda: keeper.regrants == 1, 10, "the keeper noticed at its next refresh")
        kv = await other.get(keys.host_key("h1"))
        assert kv is not None and kv.lease == keeper.lease != first
        await keeper.stop()
        assert await other.get(keys.host_key("h1")) is None
    finally:
        await store.close()
        await other.close()


def test_store_url_of_the_test_cluster_parses(etcd):
    assert [f"{h}:{p}" for h, p in parse_store_url(etcd.url)] == etcd.endpoints
