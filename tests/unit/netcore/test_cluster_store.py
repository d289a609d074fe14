"""The cluster store's logic against FakeClusterStore (no etcd, no root): the fake's etcd semantics, the
watch follower (listing, duplicates, deletes, compaction, outages) and the lease keeper (keepalive, loss)."""

import asyncio
import contextlib

import pytest

from netcore.cluster.fake_store import FakeClusterStore
from netcore.cluster.store import (
    DELETE,
    PUT,
    Compacted,
    Event,
    Get,
    LeaseKeeper,
    LeaseNotFound,
    PrefixFollower,
    Put,
    StoreUnavailable,
    absent,
    none_under,
    parse_store_url,
    unchanged_since,
    value_is,
)
from netcore.errors import NetcoreError

P = "/netcore/v1/test/"


async def eventually(predicate, timeout=5.0):
    """Wait (bounded) for a background task to reach a state; fails the test if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def following(follower):
    """Run ``follower`` in a task; yields the list its batches land in (flattened events)."""
    seen: list[Event] = []

    async def run():
        async for batch in follower.batches():
            seen.extend(batch)

    task = asyncio.get_running_loop().create_task(run())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def state_of(events):
    """What a consumer applying ``events`` in order ends up with: key -> value."""
    state = {}
    for event in events:
        if event.kind == PUT:
            state[event.key] = event.value
        else:
            state.pop(event.key, None)
    return state


# -- the fake behaves as etcd does where netcore relies on it -------------------------------------------------


async def test_fake_transactions_compare_keys_and_whole_prefixes():
    store = FakeClusterStore()
    first = await store.txn([absent(P + "a")], [Put(P + "a", b"1")], [Get(P + "a")])
    assert first.succeeded
    again = await store.txn([absent(P + "a")], [Put(P + "a", b"2")], [Get(P + "a")])
    assert not again.succeeded and again.reads[0][0].value == b"1"
    assert (await store.txn([none_under(P + "b/")], [Put(P + "b/x", b"")])).succeeded
    assert not (await store.txn([none_under(P + "b/")], [Put(P + "b/y", b"")])).succeeded
    # a value compare on a missing key fails; a create compare over an empty range passes
    assert not (await store.txn([value_is(P + "missing", b"")], [])).succeeded
    assert (await store.txn([none_under(P + "empty/")], [])).succeeded
    listing = await store.list(P)
    assert (await store.txn([unchanged_since(P, listing.revision)], [])).succeeded
    await store.put(P + "c", b"")
    assert not (await store.txn([unchanged_since(P, listing.revision)], [])).succeeded


async def test_fake_one_transaction_is_one_revision_and_a_put_under_a_gone_lease_is_refused():
    store = FakeClusterStore()
    before = store.revision
    await store.txn([], [Put(P + "a", b""), Put(P + "b", b"")])
    assert store.revision == before + 1
    lease = await store.grant(5)
    await store.revoke(lease)
    with pytest.raises(LeaseNotFound):
        await store.put(P + "c", b"", lease=lease)
    assert await store.refresh(lease) == 0


async def test_fake_compaction_loses_the_delete_at_the_compaction_revision_as_etcd_does():
    store = FakeClusterStore()
    await store.put(P + "k", b"v")
    last = store.revision
    await store.delete(P + "k")
    deleted_at = store.revision
    await store.compact(deleted_at)
    with pytest.raises(Compacted):
        async for _ in store.watch(P, last):
            pass
    # one past the last event seen is allowed, and says nothing of the delete: the pitfall
    stream = store.watch(P, last + 1)
    await store.put(P + "other", b"")
    first = await stream.__anext__()
    assert first.key == P + "other"
    await stream.aclose()


# -- the follower -----------------------------------------------------------------------------------------------


async def test_follower_lists_then_follows_puts_and_deletes():
    store = FakeClusterStore()
    await store.put(P + "a", b"1")
    follower = PrefixFollower(store, P)
    async with following(follower) as seen:
        await eventually(lambda: len(seen) == 1)
        await store.put(P + "b", b"2")
        await store.put("/elsewhere", b"x")
        await store.delete(P + "a")
        await eventually(lambda: len(seen) == 3)
    assert [(e.kind, e.key) for e in seen] == [(PUT, P + "a"), (PUT, P + "b"), (DELETE, P + "a")]
    assert follower.revision == store.revision  # the delete was the last write


async def test_follower_resumes_inclusive_and_drops_the_repeated_events():
    store = FakeClusterStore()
    follower = PrefixFollower(store, P)
    async with following(follower) as seen:
        await eventually(lambda: follower.connected)
        await store.put(P + "a", b"1")
        await eventually(lambda: len(seen) == 1)
        store.down()  # the stream breaks; the follower waits and watches again from its last revision
        await eventually(lambda: not follower.connected)
        store.up()
        await store.put(P + "b", b"2")
        await eventually(lambda: len(seen) >= 2)
        await asyncio.sleep(0.05)
    assert [(e.kind, e.key) for e in seen] == [(PUT, P + "a"), (PUT, P + "b")]  # "a" came again and was dropped


async def test_follower_misses_no_delete_at_the_compaction_revision():
    store = FakeClusterStore()
    await store.put(P + "gone", b"1")
    await store.put(P + "kept", b"1")
    follower = PrefixFollower(store, P)
    async with following(follower) as seen:
        await eventually(lambda: len(seen) == 2)
    # cut off (task stopped, state kept): the key is deleted and the store compacted at exactly that revision
    await store.delete(P + "gone")
    await store.compact(store.revision)
    await store.put(P + "new", b"1")
    async with following(follower) as seen_after:
        await eventually(lambda: P + "new" in state_of(seen + seen_after))
        await asyncio.sleep(0.02)
    assert state_of(seen + seen_after) == {P + "kept": b"1", P + "new": b"1"}
    assert follower.relists == 1
    assert set(follower.known) == {P + "kept", P + "new"}


async def test_follower_relist_reports_changed_values_once():
    store = FakeClusterStore()
    await store.put(P + "a", b"1")
    follower = PrefixFollower(store, P)
    async with following(follower) as seen:
        await eventually(lambda: len(seen) == 1)
    await store.put(P + "a", b"2")
    await store.put(P + "b", b"3")
    await store.compact(store.revision)
    async with following(follower) as more:
        await eventually(lambda: len(more) >= 2)
        await asyncio.sleep(0.02)
    assert sorted((e.kind, e.key, e.value) for e in more) == [(PUT, P + "a", b"2"), (PUT, P + "b", b"3")]


async def test_follower_does_not_hot_loop_while_the_store_is_down_and_converges_after():
    store = FakeClusterStore()
    follower = PrefixFollower(store, P)
    async with following(follower) as seen:
        await eventually(lambda: follower.connected)
        store.down()
        calls = store.calls
        await asyncio.sleep(0.6)
        # backoff from 0.1 s doubling: a handful of attempts, not thousands
        assert store.calls - calls <= 8
        store.up()
        await store.put(P + "back", b"1")
        await eventually(lambda: state_of(seen) == {P + "back": b"1"})


# -- the lease keeper ---------------------------------------------------------------------------------------------


async def test_keeper_refreshes_its_lease_so_its_keys_outlive_the_ttl():
    store = FakeClusterStore()
    keeper = LeaseKeeper(store, ttl=3, interval=0.01)
    await keeper.start()
    await keeper.put(P + "host", b"h")
    for _ in range(10):
        store.advance(1)  # 10 s of fake time in 1 s steps, each followed by a refresh
        refreshed = store.calls
        await eventually(lambda r=refreshed: store.calls > r)
    assert (await store.get(P + "host")).value == b"h"
    await keeper.stop(revoke=True)
    assert await store.get(P + "host") is None


async def test_a_lost_lease_is_granted_again_and_every_key_re_put():
    store = FakeClusterStore()
    regranted = []

    async def on_regrant(lease):
        regranted.append(lease)

    keeper = LeaseKeeper(store, ttl=3, interval=0.01, on_regrant=on_regrant)
    first = await keeper.start()
    await keeper.put(P + "host", b"h")
    ok, _, _ = await keeper.claim(P + "addr", b"mine")
    assert ok
    await keeper.delete(P + "host2")
    store.advance(10)  # the host was cut off longer than its TTL: the store ended the lease
    assert await store.get(P + "host") is None
    await eventually(lambda: regranted)
    assert keeper.lease != first and regranted == [keeper.lease]
    assert (await store.get(P + "host")).lease == keeper.lease
    assert (await store.get(P + "addr")).value == b"mine"
    await keeper.stop(revoke=False)


async def test_a_key_taken_while_the_lease_was_gone_is_reported_not_overwritten():
    store = FakeClusterStore()
    conflicts = []

    async def on_conflict(conflict):
        conflicts.append(conflict)

    keeper = LeaseKeeper(store, ttl=3, interval=0.01, on_conflict=on_conflict)
    await keeper.start()
    await keeper.claim(P + "addr", b"mine")
    store.advance(10)
    await store.put(P + "addr", b"theirs")  # another host allocated it meanwhile
    await eventually(lambda: conflicts)
    assert conflicts[0].key == P + "addr" and conflicts[0].holder.value == b"theirs"
    assert (await store.get(P + "addr")).value == b"theirs"
    assert P + "addr" not in keeper.held
    await keeper.stop(revoke=False)


async def test_a_write_that_finds_its_lease_gone_is_retried_under_the_new_one():
    store = FakeClusterStore()
    keeper = LeaseKeeper(store, ttl=3, interval=3600)  # no refresh during the test
    old = await keeper.start()
    await store.revoke(old)
    await keeper.put(P + "k", b"v")
    assert keeper.lease != old
    assert (await store.get(P + "k")).lease == keeper.lease
    await keeper.stop(revoke=False)


async def test_a_claim_whose_reply_was_lost_is_recognized_as_its_own_on_retry():
    store = FakeClusterStore()
    keeper = LeaseKeeper(store, ttl=3, interval=3600)
    await keeper.start()
    store.lose_reply_next()  # applied, but the caller hears "unavailable" (the leader died in flight)
    with pytest.raises(StoreUnavailable):
        await keeper.claim(P + "addr", b"mine")
    ok, holder, _ = await keeper.claim(P + "addr", b"mine")
    assert ok and holder.value == b"mine"
    ok, holder, _ = await keeper.claim(P + "addr", b"another endpoint")
    assert not ok and holder.value == b"mine"
    await keeper.stop(revoke=False)


async def test_keeper_does_not_hot_loop_while_the_store_is_down_and_keeps_the_lease_after():
    store = FakeClusterStore()
    keeper = LeaseKeeper(store, ttl=3, interval=0.01)
    lease = await keeper.start()
    store.down()
    calls = store.calls
    await asyncio.sleep(0.5)
    assert store.calls - calls <= 10  # backoff, not a refresh every 10 ms
    store.up()
    refreshed = store.calls
    await eventually(lambda: store.calls > refreshed + 2)
    assert keeper.lease == lease and keeper.regrants == 0
    await keeper.stop()


# -- the store URL -----------------------------------------------------------------------------------------------


def test_store_urls_name_every_endpoint():
    assert parse_store_url("etcd://10.1.0.1:2379,node2,[fd00::1]:2381") == \
        [("10.1.0.1", 2379), ("node2", 2379), ("fd00::1", 2381)]


@pytest.mark.parametrize("url", ["http://a:2379", "etcd://", "etcd://a:b", "etcd://a:0", "a:2379", "etcd://a:1,"])
def test_bad_store_urls_are_one_line_errors(url):
    with pytest.raises(NetcoreError, match="bad store URL"):
        parse_store_url(url)


async def test_a_keeper_that_was_not_started_writes_nothing():
    store = FakeClusterStore()
    keeper = LeaseKeeper(store, ttl=3)
    with pytest.raises(RuntimeError, match="start"):
        await keeper.put(P + "k", b"v")
    assert await store.get(P + "k") is None


class _Stream:
    """What aetcd's watch_prefix gives: events (none ever come here) and cancel()."""

    def __aiter__(self):
        return self

    async def __anext__(self):
        await asyncio.get_running_loop().create_future()  # no event, ever

    async def cancel(self):
        return None


class _Client:
    """An aetcd client stand-in whose watch_prefix answers with the future given."""

    def __init__(self, reply):
        self.reply = reply

    def watch_prefix(self, prefix, start_revision):
        return self.reply


@pytest.mark.parametrize("request_kind", ["call", "watch"])
async def test_a_cancel_that_meets_the_stores_answer_in_one_turn_of_the_loop_is_not_lost(request_kind):
    """A follower's task cancelled (a leave, netcored stopping) just as etcd answers a call or a new watch
    stops. asyncio.wait_for on Python 3.11 returned the answer and dropped the cancel (CPython gh-86296): the
    task went on to wait on the watch stream for good, and the leave with it."""
    from netcore.cluster.store import EtcdStore

    store = EtcdStore([("127.0.0.1", 9)])  # never connected: the stand-ins answer
    answer = asyncio.get_running_loop().create_future()
    went_on = []

    async def asking():
        if request_kind == "call":
            await store._call("get", lambda client: answer)
        else:
            store._clients = [_Client(answer)]
            async for _ in store.watch(P, 1):
                pass
        went_on.append(True)

    try:
        task = asyncio.get_running_loop().create_task(asking())
        await asyncio.sleep(0)  # the task waits for the answer
        answer.set_result(_Stream() if request_kind == "watch" else "value")
        task.cancel()  # in the same turn of the loop as the answer
        done, _ = await asyncio.wait({task}, timeout=2)
        assert task in done and task.cancelled() and not went_on
    finally:
        await store.close()


async def test_etcds_own_deadline_is_tried_again_and_a_refusal_is_not():
    """A leader killed mid-request: the member's deadline runs out and it answers gRPC UNKNOWN "context deadline
    exceeded", a plain ClientError in aetcd. It is tried again (here: on the next endpoint), as a timeout is; any
    other ClientError is a refusal at once."""
    import aetcd

    from netcore.cluster.store import EtcdStore, StoreRefused

    store = EtcdStore([("127.0.0.1", 9), ("127.0.0.1", 10)], call_timeout=5)
    answers = [aetcd.exceptions.ClientError("context deadline exceeded"), "value"]

    async def ask(client):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def refuse(client):
        raise aetcd.exceptions.ClientError("etcdserver: mvcc: required revision has been compacted")

    try:
        assert await store._call("get", ask) == "value"
        assert (store.failures, store.current_endpoint) == (1, "127.0.0.1:10")
        with pytest.raises(StoreRefused):
            await store._call("get", refuse)
        assert store.failures == 1
    finally:
        await store.close()
