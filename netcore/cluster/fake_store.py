"""``FakeClusterStore``: an in-memory ``ClusterStore`` with etcd's semantics, for tests without etcd or root.

It keeps what etcd keeps and behaves where etcd's behaviour matters to netcore (each point checked against
etcd 3.4 by tests/integration/test_cluster_etcd.py):

- one global revision, bumped once per write request (a transaction is one revision, whatever it changes);
  a key's create/mod revisions; a transaction's compares, prefix compares included (an empty range passes a
  create/mod/version compare, fails a value compare);
- leases with TTLs on an injected clock (``advance(seconds)`` expires them, deleting their keys in one
  revision), keepalive answering TTL 0 for a lease that is gone, a put naming a gone lease refused;
- watches from any revision not below the compaction revision, inclusive; ``compact(R)`` drops the history
  below R and the DELETEs at R itself (etcd keeps no tombstone there), and a watch from below R raises
  Compacted;
- failures on demand: ``down()`` (every call raises StoreUnavailable and every open watch breaks) and
  ``up()``; ``fail_next(n)`` (the next n calls fail without applying); ``lose_reply_next(n)`` (the next n
  writes are applied but raise StoreUnavailable, as a write in flight when the leader dies).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from netcore.cluster.store import (
    DELETE,
    PUT,
    Compacted,
    Compare,
    Delete,
    Event,
    Get,
    KeyValue,
    LeaseNotFound,
    Listing,
    Operation,
    Put,
    StoreUnavailable,
    TxnResult,
)


@dataclass
class _Lease:
    ttl: int
    expires: float


class FakeClusterStore:
    """See the module docstring. ``calls`` counts every call made (failed ones included): tests use it to show
    that nothing retries in a hot loop while the store is down."""

    def __init__(self, description: str = "etcd://fake:2379"):
        self.description = description
        self.revision = 1  # etcd starts at 1
        self.compacted = 0
        self.data: dict[str, KeyValue] = {}
        self.history: list[Event] = []
        self.leases: dict[int, _Lease] = {}
        self.now = 0.0
        self.calls = 0
        self._next_lease = 0x1000
        self._down = False
        self._fail = 0
        self._lose_reply = 0
        self._watchers: set[asyncio.Queue] = set()

    # -- failures and time --------------------------------------------------------------------------------

    def down(self) -> None:
        """Every member unreachable: calls fail, open watches break."""
        self._down = True
        for queue in self._watchers:
            queue.put_nowait(StoreUnavailable(f"cluster store {self.description} unreachable: down"))

    def up(self) -> None:
        self._down = False

    def fail_next(self, count: int = 1) -> None:
        self._fail += count

    def lose_reply_next(self, count: int = 1) -> None:
        self._lose_reply += count

    def advance(self, seconds: float) -> None:
        """Move the clock; leases not refreshed in time expire and their keys are deleted (one revision each)."""
        self.now += seconds
        for lease_id, lease in sorted(self.leases.items()):
            if lease.expires <= self.now:
                self._end_lease(lease_id)

    def _enter(self, what: str) -> None:
        self.calls += 1
        if self._down:
            raise StoreUnavailable(f"cluster store {self.description} unreachable ({what}): down")
        if self._fail:
            self._fail -= 1
            raise StoreUnavailable(f"cluster store {self.description} unreachable ({what}): injected failure")

    def _reply(self, what: str) -> None:
        if self._lose_reply:
            self._lose_reply -= 1
            raise StoreUnavailable(f"cluster store {self.description} unreachable ({what}): reply lost")

    # -- writes --------------------------------------------------------------------------------------------

    def _emit(self, events: list[Event]) -> None:
        self.history.extend(events)
        for queue in self._watchers:
            for event in events:
                queue.put_nowait(event)

    def _apply_put(self, key: str, value: bytes, lease: int, revision: int) -> Event:
        old = self.data.get(key)
        create = old.create_revision if old is not None else revision
        self.data[key] = KeyValue(key, bytes(value), revision, create, lease)
        return Event(PUT, key, bytes(value), revision)

    def _apply_delete(self, key: str, prefix: bool, revision: int) -> list[Event]:
        keys = [k for k in self.data if k.startswith(key)] if prefix else ([key] if key in self.data else [])
        for k in keys:
            del self.data[k]
        return [Event(DELETE, k, b"", revision) for k in sorted(keys)]

    def _end_lease(self, lease_id: int) -> None:
        self.leases.pop(lease_id, None)
        keys = sorted(k for k, kv in self.data.items() if kv.lease == lease_id)
        if keys:
            self.revision += 1
            events = []
            for key in keys:
                events.extend(self._apply_delete(key, False, self.revision))
            self._emit(events)

    # -- the ClusterStore protocol ---------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        self._enter(f"get {key}")
        await asyncio.sleep(0)
        return self.data.get(key)

    async def list(self, prefix: str) -> Listing:
        self._enter(f"list {prefix}")
        await asyncio.sleep(0)
        return Listing(self.revision, tuple(kv for k, kv in sorted(self.data.items()) if k.startswith(prefix)))

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        result = await self.txn([], [Put(key, value, lease)])
        return result.revision

    async def delete(self, key: str, prefix: bool = False) -> int:
        before = len(self.data)
        await self.txn([], [Delete(key, prefix)])
        return before - len(self.data)

    def _holds(self, compare: Compare) -> bool:
        if compare.prefix:
            kvs = [kv for k, kv in self.data.items() if k.startswith(compare.key)]
        else:
            kvs = [self.data[compare.key]] if compare.key in self.data else []
        if not kvs:
            if compare.target == "value":
                return False
            kvs = [KeyValue(compare.key, b"", 0, 0, 0)]
        for kv in kvs:
            actual = {"create": kv.create_revision, "mod": kv.mod_revision, "value": kv.value,
                      "version": 0 if kv.create_revision == 0 else 1}[compare.target]
            ok = {"==": actual == compare.operand, "!=": actual != compare.operand,
                  "<": actual < compare.operand, ">": actual > compare.operand}[compare.op]
            if not ok:
                return False
        return True

    async def txn(self, compare: Sequence[Compare], success: Sequence[Operation],
                  failure: Sequence[Operation] = ()) -> TxnResult:
        self._enter("transaction")
        await asyncio.sleep(0)
        succeeded = all(self._holds(c) for c in compare)
        branch = success if succeeded else failure
        for op in branch:
            if isinstance(op, Put) and op.lease and op.lease not in self.leases:
                raise LeaseNotFound("etcdserver: requested lease not found")
        reads = []
        events: list[Event] = []
        revision = self.revision + 1
        for op in branch:
            match op:
                case Put():
                    events = [e for e in events if e.key != op.key]
                    events.append(self._apply_put(op.key, op.value, op.lease, revision))
                case Delete():
                    events.extend(self._apply_delete(op.key, op.prefix, revision))
                case Get():
                    reads.append(tuple(kv for k, kv in sorted(self.data.items())
                                       if (k.startswith(op.key) if op.prefix else k == op.key)))
        if events:  # etcd bumps the revision only when something changed
            self.revision = revision
            self._emit(events)
        self._reply("transaction")
        return TxnResult(succeeded, self.revision, tuple(reads))

    async def grant(self, ttl: int) -> int:
        self._enter("lease grant")
        await asyncio.sleep(0)
        self._next_lease += 1
        self.leases[self._next_lease] = _Lease(ttl, self.now + ttl)
        return self._next_lease

    async def refresh(self, lease: int) -> int:
        self._enter("lease keepalive")
        await asyncio.sleep(0)
        held = self.leases.get(lease)
        if held is None:
            return 0
        held.expires = self.now + held.ttl
        return held.ttl

    async def revoke(self, lease: int) -> None:
        self._enter("lease revoke")
        await asyncio.sleep(0)
        self._end_lease(lease)

    async def compact(self, revision: int) -> None:
        """etcd's compaction: history below ``revision`` and the DELETEs at ``revision`` are gone."""
        self._enter("compact")
        await asyncio.sleep(0)
        self.compacted = max(self.compacted, revision)
        self.history = [e for e in self.history
                        if e.revision > revision or (e.revision == revision and e.kind == PUT)]

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        self._enter("watch")
        await asyncio.sleep(0)
        if start_revision < self.compacted:
            raise Compacted(self.compacted)
        queue: asyncio.Queue = asyncio.Queue()
        for event in self.history:
            if event.revision >= start_revision:
                queue.put_nowait(event)
        self._watchers.add(queue)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                if item.key.startswith(prefix):
                    yield item
        finally:
            self._watchers.discard(queue)

    async def close(self) -> None:
        pass
