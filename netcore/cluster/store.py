"""The cluster store: etcd through aetcd (asyncio), behind the ``ClusterStore`` protocol the rest of netcore uses.

Three layers, each with one job:

- ``ClusterStore`` (protocol) and its operations (``Compare``, ``Put``, ``Delete``, ``Get``): a key-value store
  with revisions, leases, transactions and prefix watches, as etcd v3 defines them. ``EtcdStore`` is the real
  one (the only module that imports aetcd); ``netcore.cluster.fake_store.FakeClusterStore`` is the in-memory
  one for unit tests.
- ``LeaseKeeper``: one host's lease, its keepalive loop, and the keys written under it; when the lease is
  lost (TTL reached while the host was cut off, or revoked), a new one is granted and every key re-put.
- ``PrefixFollower``: every key under a prefix as a stream of events: list, then watch from the listed
  revision, resume after a broken stream from the last revision seen INCLUSIVE, and on compaction list again
  and diff against what it knew (the recipe's lost-delete pitfall: resuming one revision past the last event
  misses a DELETE at exactly the compaction revision).

Failover (``EtcdStore``): one aetcd client per endpoint, the current one used until a call fails with
UNAVAILABLE or its deadline, then the next. Measured against aetcd on the gRPC multi-address target
(``ipv4:A:P1,B:P2,C:P3``) with the leader (the client's first endpoint) killed under 50 puts/s, 1 s deadline
(``python3 bench/cluster_failover.py``, 3 runs each, this 2-core machine): the target stopped writes for
1.0-2.0 s and failed 1-2 puts; the rotation, its retries included, for 2.1-2.9 s and failed none (a first
measurement of a bare rotation without retries: 1.0-2.6 s, 0-1 failed). Both are bounded by the election
(~1 s) plus a deadline. The rotation was chosen at that comparable speed because it takes host names and
IPv6 alike (the target takes only literals of one family), retries under one call deadline, and knows
which endpoint answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from netcore.errors import NetcoreError

log = logging.getLogger("netcore.cluster")

DEFAULT_PORT = 2379
DEFAULT_OP_TIMEOUT = 2.0  # seconds: one attempt against one member (gRPC deadline)
DEFAULT_CALL_TIMEOUT = 5.0  # seconds: a whole call, over every member and retry ("fails within a few seconds")


# -- errors --------------------------------------------------------------------------------------------------


class StoreUnavailable(NetcoreError):
    """No member of the store answered within the call's time: ``cluster store etcd://... unreachable: WHY``."""


class StoreRefused(NetcoreError):
    """The store answered but refused the request (not an etcd, a bad argument): the message says which."""


class Compacted(Exception):
    """A watch started below the store's compaction revision: list again. ``revision``: the compaction revision."""

    def __init__(self, revision: int):
        super().__init__(f"revision compacted below {revision}")
        self.revision = revision


class LeaseNotFound(Exception):
    """A write named a lease the store no longer has (expired or revoked)."""


# -- data and operations -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyValue:
    """One stored key. Revisions are the store's (etcd's) global revision numbers; ``lease`` 0: none."""

    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0
    lease: int = 0


@dataclass(frozen=True)
class Listing:
    """The keys under a prefix as of ``revision`` (the store's revision when it answered), sorted by key."""

    revision: int
    items: tuple[KeyValue, ...]


PUT = "put"
DELETE = "delete"


@dataclass(frozen=True)
class Event:
    """A change under a watched prefix: ``kind`` PUT or DELETE; ``revision``: the revision that made it
    (the key's mod_revision for a PUT); ``value`` empty for a DELETE."""

    kind: str
    key: str
    value: bytes
    revision: int


@dataclass(frozen=True)
class Compare:
    """One condition of a transaction, as etcd's Compare: ``target`` is "create", "mod", "version" (revisions,
    ints) or "value" (bytes); ``op`` "==", "!=", "<", ">"; ``prefix`` compares every key under ``key`` (an
    empty range satisfies create/mod/version conditions; a value condition on no key fails, as in etcd)."""

    key: str
    target: str
    op: str
    operand: int | bytes
    prefix: bool = False


def absent(key: str) -> Compare:
    """The key does not exist."""
    return Compare(key, "create", "==", 0)


def none_under(prefix: str) -> Compare:
    """No key exists under ``prefix``."""
    return Compare(prefix, "create", "==", 0, prefix=True)


def exists(key: str) -> Compare:
    """The key exists."""
    return Compare(key, "create", ">", 0)


def mod_is(key: str, revision: int) -> Compare:
    """The key exists and was last changed at ``revision`` (nobody wrote it since it was read)."""
    return Compare(key, "mod", "==", revision)


def value_is(key: str, value: bytes) -> Compare:
    """The key exists and holds exactly ``value``."""
    return Compare(key, "value", "==", value)


def unchanged_since(prefix: str, revision: int) -> Compare:
    """No key under ``prefix`` was created or changed after ``revision`` (deletions pass: they only free)."""
    return Compare(prefix, "mod", "<", revision + 1, prefix=True)


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True)
class Delete:
    key: str
    prefix: bool = False


@dataclass(frozen=True)
class Get:
    key: str
    prefix: bool = False


Operation = Put | Delete | Get


@dataclass(frozen=True)
class TxnResult:
    """``succeeded``: every compare held (the success branch ran, else the failure branch); ``revision``: the
    store's revision after it; ``reads``: for each Get of the branch that ran, in order, what it found."""

    succeeded: bool
    revision: int
    reads: tuple[tuple[KeyValue, ...], ...] = ()


class ClusterStore(Protocol):
    """What netcore needs of a distributed store (etcd v3's model). Every call is bounded in time: it returns,
    or raises StoreUnavailable (no member answered in time) or StoreRefused. Keys are str, values bytes."""

    description: str  # e.g. "etcd://127.0.0.1:2379,127.0.0.1:2381", for the one-line errors

    async def get(self, key: str) -> KeyValue | None: ...

    async def list(self, prefix: str) -> Listing: ...

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        """Returns the revision of the write; LeaseNotFound if ``lease`` is gone."""
        ...

    async def delete(self, key: str, prefix: bool = False) -> int:
        """Returns how many keys were deleted (0: none were there)."""
        ...

    async def txn(self, compare: Sequence[Compare], success: Sequence[Operation],
                  failure: Sequence[Operation] = ()) -> TxnResult:
        """LeaseNotFound if a Put of the branch that ran names a lease that is gone."""
        ...

    async def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; returns its ID."""
        ...

    async def refresh(self, lease: int) -> int:
        """Keep ``lease`` alive; returns its TTL in seconds, 0 or less if the lease is gone."""
        ...

    async def revoke(self, lease: int) -> None:
        """End ``lease`` now, deleting its keys; no error if it is gone already."""
        ...

    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        """Every change under ``prefix`` from ``start_revision`` INCLUSIVE on, in revision order, until the
        stream breaks: StoreUnavailable, or Compacted if ``start_revision`` is below the compaction revision."""
        ...

    async def compact(self, revision: int) -> None: ...

    async def close(self) -> None: ...


# -- the endpoints -------------------------------------------------------------------------------------------


def parse_store_url(url: str) -> list[tuple[str, int]]:
    """``etcd://HOST[:PORT][,HOST[:PORT]...]`` -> [(host, port), ...] (port 2379 by default; ``[v6]:PORT``).

    NetcoreError for another scheme, an empty list, a bad port (issue 27: `cluster join --store`)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme != "etcd":
        raise NetcoreError(f"bad store URL {url!r}: expected etcd://HOST:PORT[,HOST:PORT...]")
    endpoints = []
    for item in rest.rstrip("/").split(","):
        item = item.strip()
        host, port = item, str(DEFAULT_PORT)
        if item.startswith("["):
            host, bracket, tail = item[1:].partition("]")
            if not bracket or (tail and not tail.startswith(":")):
                host = ""
            port = tail[1:] or port
        elif item.count(":") == 1:
            host, port = item.split(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise NetcoreError(f"bad store URL {url!r}: {item!r} is not HOST:PORT")
        endpoints.append((host, int(port)))
    return endpoints


def format_store_url(endpoints: Iterable[tuple[str, int]]) -> str:
    return "etcd://" + ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in endpoints)


# -- backoff -------------------------------------------------------------------------------------------------


@dataclass
class Backoff:
    """Exponential backoff with jitter (seconds): ``initial`` doubling up to ``cap``; ``reset`` after a success.
    ``waits`` counts the waits taken (tests use it to show there is no hot loop)."""

    initial: float = 0.1
    cap: float = 2.0
    current: float = 0.0
    waits: int = 0

    def next_delay(self) -> float:
        self.current = self.initial if self.current == 0 else min(self.cap, self.current * 2)
        return self.current * random.uniform(0.75, 1.0)

    async def wait(self) -> None:
        self.waits += 1
        await asyncio.sleep(self.next_delay())

    def reset(self) -> None:
        self.current = 0.0


# -- the real store: etcd through aetcd ----------------------------------------------------------------------

# Channel options: reconnect quickly once a member is back (gRPC's default backoff grows to 120 s); detect a
# member that stopped answering under an open watch stream (etcd accepts pings every 5 s or slower).
_CHANNEL_OPTIONS = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
}


# What etcd says when its own deadline for a request ran out, as gRPC status UNKNOWN (a proposal left unanswered
# while the leader died and a new one was elected): aetcd maps only DEADLINE_EXCEEDED to its timeout error, so this
# reaches the caller as a plain ClientError; it is as transient as a timeout here (the callers' writes are
# idempotent: see EtcdStore)
STORE_TIMEOUT = "context deadline exceeded"


class EtcdStore:
    """``ClusterStore`` on an etcd v3 cluster (3.4 and later) through aetcd, over several endpoints.

    ``endpoints``: [(host, port), ...] (see ``parse_store_url``). Each attempt has a deadline of
    ``op_timeout`` seconds; a failed attempt (UNAVAILABLE, deadline) moves to the next endpoint, and after a
    round over all of them waits (``Backoff``) before the next round, until ``call_timeout`` seconds have
    passed: then StoreUnavailable names the store and the last error. Every operation is retried this way,
    writes included: the callers' writes are idempotent (a put of the same value, a transaction whose
    compare fails the second time and whose failure branch reads what the first one wrote)."""

    def __init__(self, endpoints: Sequence[tuple[str, int]], op_timeout: float = DEFAULT_OP_TIMEOUT,
                 call_timeout: float = DEFAULT_CALL_TIMEOUT):
        # gRPC's fork handlers, on by default, run in every child the process forks (netcored forks nft, dnsd,
        # the port holder) and crashed 6 of 30 such children with SIGSEGV while a watch stream was open: the
        # children exec at once and never use gRPC, so the handlers are switched off before gRPC is loaded
        os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
        import aetcd  # imported here: 80-95 ms and 40 MB, only for a host that joined a cluster

        if not endpoints:
            raise NetcoreError("no store endpoint given")
        self._aetcd = aetcd
        self.endpoints = list(endpoints)
        self.description = format_store_url(self.endpoints)
        self.op_timeout = op_timeout
        self.call_timeout = call_timeout
        self._clients = [aetcd.Client(host=h, port=p, timeout=op_timeout, options=dict(_CHANNEL_OPTIONS))
                         for h, p in self.endpoints]
        self._current = 0
        self.failures = 0  # failed attempts (all endpoints), for tests and metrics

    @classmethod
    def from_url(cls, url: str, **kw) -> EtcdStore:
        return cls(parse_store_url(url), **kw)

    @property
    def current_endpoint(self) -> str:
        host, port = self.endpoints[self._current]
        return f"{host}:{port}"

    def _transient(self) -> tuple[type[BaseException], ...]:
        e = self._aetcd.exceptions
        return (e.ConnectionFailedError, e.ConnectionTimeoutError, e.WatchTimeoutError, TimeoutError)

    def _failed(self, index: int) -> None:
        self.failures += 1
        if index == self._current:
            self._current = (index + 1) % len(self._clients)

    def _refusal(self, err: Exception) -> Exception:
        text = str(err) or type(err).__name__
        if "lease not found" in text:
            return LeaseNotFound(text)
        return StoreRefused(f"cluster store {self.description} refused the request: {text}")

    async def _call(self, what: str, fn: Callable[[object], Awaitable]):
        """Run ``fn(client)`` against the current endpoint, failing over as the class says."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.call_timeout
        backoff = Backoff(initial=0.05, cap=0.5)
        last: Exception | None = None
        tried = 0
        while True:
            index = self._current
            client = self._clients[index]
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(min(remaining, self.op_timeout + 0.5)):  # not wait_for: see watch()
                    return await fn(client)
            except self._transient() as err:
                last = err
                self._failed(index)
            except self._aetcd.exceptions.ClientError as err:
                if STORE_TIMEOUT not in str(err):
                    raise self._refusal(err) from None
                last = err  # etcd's own deadline ran out (an election): transient, as a timeout here is
                self._failed(index)
            tried += 1
            if tried % len(self._clients) == 0:
                delay = min(backoff.next_delay(), max(0.0, deadline - loop.time()))
                await asyncio.sleep(delay)
        detail = str(last) if last is not None and str(last) else type(last).__name__
        raise StoreUnavailable(f"cluster store {self.description} unreachable ({what}): {detail}")

    @staticmethod
    def _kv(kv) -> KeyValue:
        return KeyValue(kv.key.decode(), bytes(kv.value), kv.mod_revision, kv.create_revision, kv.lease)

    async def check(self) -> str:
        """The version the store reports (e.g. "3.4.23"); StoreUnavailable, or StoreRefused if it is not etcd."""
        status = await self._call("status", lambda c: c.status())
        return status.version

    async def get(self, key: str) -> KeyValue | None:
        result = await self._call(f"get {key}", lambda c: c.get(key.encode()))
        return None if result is None else self._kv(result)

    async def list(self, prefix: str) -> Listing:
        result = await self._call(f"list {prefix}", lambda c: c.get_prefix(prefix.encode()))
        return Listing(result.header.revision, tuple(self._kv(kv) for kv in result))

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        result = await self._call(f"put {key}", lambda c: c.put(key.encode(), value, lease=lease or None))
        return result.header.revision

    async def delete(self, key: str, prefix: bool = False) -> int:
        if prefix:
            result = await self._call(f"delete {key}*", lambda c: c.delete_prefix(key.encode()))
            return result.deleted
        result = await self._call(f"delete {key}", lambda c: c.delete(key.encode()))
        return 0 if result is None else result.deleted

    def _compare(self, client, compare: Compare):
        from aetcd import utils

        kinds = {"create": client.transactions.create, "mod": client.transactions.mod,
                 "version": client.transactions.version, "value": client.transactions.value}
        key = compare.key.encode()
        made = kinds[compare.target](key, utils.prefix_range_end(key) if compare.prefix else None)
        operand = compare.operand
        match compare.op:
            case "==":
                return made == operand
            case "!=":
                return made != operand
            case "<":
                return made < operand
            case ">":
                return made > operand
        raise ValueError(f"bad compare operator {compare.op!r}")

    def _operation(self, client, op: Operation):
        from aetcd import utils

        key = op.key.encode()
        match op:
            case Put():
                return client.transactions.put(key, op.value, lease=op.lease or None)
            case Delete():
                return client.transactions.delete(key, utils.prefix_range_end(key) if op.prefix else None)
            case Get():
                return client.transactions.get(key, utils.prefix_range_end(key) if op.prefix else None)
        raise TypeError(f"not a transaction operation: {op!r}")

    async def txn(self, compare: Sequence[Compare], success: Sequence[Operation],
                  failure: Sequence[Operation] = ()) -> TxnResult:
        async def run(client):
            await client.connect()
            request = self._aetcd.rpc.TxnRequest(
                compare=[self._compare(client, c).build_message() for c in compare],
                success=client._ops_to_requests([self._operation(client, op) for op in success]),
                failure=client._ops_to_requests([self._operation(client, op) for op in failure]))
            try:
                return await client.kvstub.Txn(request, timeout=self.op_timeout, metadata=client.metadata)
            except self._aetcd.rpc.AioRpcError as err:
                self._aetcd.exceptions._handle_exception(err)

        response = await self._call("transaction", run)
        reads = []
        for item in response.responses:
            if item.WhichOneof("response") == "response_range":
                reads.append(tuple(self._kv(kv) for kv in item.response_range.kvs))
        return TxnResult(response.succeeded, response.header.revision, tuple(reads))

    async def grant(self, ttl: int) -> int:
        lease = await self._call("lease grant", lambda c: c.lease(ttl))
        return lease.id

    async def refresh(self, lease: int) -> int:
        reply = await self._call("lease keepalive", lambda c: c.refresh_lease(lease))
        return 0 if reply is None else reply.TTL

    async def revoke(self, lease: int) -> None:
        with contextlib.suppress(LeaseNotFound):
            await self._call("lease revoke", lambda c: c.revoke_lease(lease))

    async def compact(self, revision: int) -> None:
        await self._call("compact", lambda c: c.compact(revision, physical=True))

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        exceptions = self._aetcd.exceptions
        index = self._current
        client = self._clients[index]
        try:
            # asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for returns the result of a call that
            # completes in the same turn of the loop as a cancel of the awaiting task, and the cancel is lost
            # (CPython gh-86296); a follower's task cancelled then (a leave, netcored's stop) would go on to wait
            # on the stream for good, and whoever awaits it with it
            async with asyncio.timeout(self.op_timeout + 0.5):
                stream = await client.watch_prefix(prefix.encode(), start_revision=max(1, start_revision))
        except exceptions.RevisionCompactedError as err:
            raise Compacted(err.compacted_revision) from None
        except self._transient() as err:
            self._failed(index)
            raise StoreUnavailable(f"cluster store {self.description} unreachable (watch): {err}") from None
        except exceptions.ClientError as err:
            raise self._refusal(err) from None
        try:
            async for event in stream:
                kind = PUT if event.kind == self._aetcd.rtypes.EventKind.PUT else DELETE
                revision = event.kv.mod_revision
                yield Event(kind, event.kv.key.decode(), bytes(event.kv.value) if kind == PUT else b"", revision)
        except exceptions.RevisionCompactedError as err:
            raise Compacted(err.compacted_revision) from None
        except (TimeoutError, exceptions.ClientError) as err:
            self._failed(index)
            raise StoreUnavailable(f"cluster store {self.description}: watch broken: {err}") from None
        finally:
            try:
                async with asyncio.timeout(self.op_timeout + 0.5):  # a stream that never acknowledges is let go
                    await asyncio.shield(stream.cancel())
            except Exception as err:  # noqa: BLE001 (cancelling a broken stream: nothing left to do)
                log.debug("watch cancel: %s", err)

    async def close(self) -> None:
        for client in self._clients:
            try:
                await client.close()
            except Exception as err:  # noqa: BLE001 (closing: a channel that fails to close is gone anyway)
                log.debug("closing an etcd client: %s", err)


# -- the lease of one host -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conflict:
    """A key this host held that someone else holds now (seen when re-putting after a lost lease)."""

    key: str
    mine: bytes
    holder: KeyValue | None


@dataclass
class LeaseKeeper:
    """One host's lease and every key it wrote under it.

    ``start()`` grants a lease of ``ttl`` seconds and starts a loop that refreshes it every ``ttl/3``. If the
    store says the lease is gone (its TTL ran out while the host was cut off, or it was revoked), the keeper
    grants a new one and re-puts every key it holds, each only if absent (a key taken by someone else in
    between is reported to ``on_conflict``, never overwritten); then ``on_regrant(lease)`` runs. While the
    store is unreachable the loop waits with backoff (no hot loop) and keeps trying. Writes go through
    ``txn``/``claim``/``put``/``delete`` so the keeper knows what to re-put; a write that finds its lease gone
    waits for the new one and is retried once."""

    store: ClusterStore
    ttl: int
    on_regrant: Callable[[int], Awaitable[None]] | None = None
    interval: float | None = None  # seconds between refreshes; None: ttl / 3
    on_conflict: Callable[[Conflict], Awaitable[None]] | None = None
    lease: int = 0
    held: dict[str, bytes] = field(default_factory=dict)
    regrants: int = 0
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.2, cap=2.0))
    _task: asyncio.Task | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _stopped: bool = False

    async def start(self) -> int:
        """Grant the lease (StoreUnavailable if the store is down) and start the keepalive loop."""
        self.lease = await self.store.grant(self.ttl)
        self._task = asyncio.get_running_loop().create_task(self._keepalive())
        return self.lease

    async def stop(self, revoke: bool = True) -> None:
        """Stop the loop; with ``revoke``, end the lease (every key it holds goes now) if the store answers."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if revoke and self.lease:
            try:
                await self.store.revoke(self.lease)
            except (StoreUnavailable, StoreRefused) as err:
                log.warning("could not revoke the lease (its keys go when its TTL ends): %s", err)
        self.held.clear()

    async def _keepalive(self) -> None:
        interval = self.interval if self.interval is not None else max(0.05, self.ttl / 3)
        while not self._stopped:
            try:
                remaining = await self.store.refresh(self.lease)
                if remaining <= 0:
                    await self.regrant(self.lease)
                self.backoff.reset()
                await asyncio.sleep(interval)
            except (StoreUnavailable, StoreRefused) as err:
                if self.backoff.current == 0:  # the first failure of a run says so; the others wait quietly
                    log.warning("lease keepalive: %s", err)
                await self.backoff.wait()  # 0.2 s doubling to 2 s: sooner than the interval, never a hot loop

    async def regrant(self, lost: int) -> None:
        """Replace lease ``lost`` (if it is still the current one) and re-put the held keys under the new one."""
        async with self._lock:
            if self.lease != lost:
                return  # another task replaced it already
            self.lease = await self.store.grant(self.ttl)
            self.regrants += 1
            log.warning("lease %x lost; granted %x and re-putting %d keys", lost, self.lease, len(self.held))
            for key, value in list(self.held.items()):
                result = await self.store.txn([absent(key)], [Put(key, value, self.lease)], [Get(key)])
                if not result.succeeded:
                    holder = result.reads[0][0] if result.reads and result.reads[0] else None
                    if holder is not None and holder.value == value:
                        continue  # ours already (a write retried across the regrant)
                    del self.held[key]
                    if self.on_conflict is not None:
                        await self.on_conflict(Conflict(key, value, holder))
        if self.on_regrant is not None:
            await self.on_regrant(self.lease)

    async def txn(self, compare: Sequence[Compare], success: Callable[[int], Sequence[Operation]],
                  failure: Sequence[Operation] = ()) -> TxnResult:
        """A transaction whose success branch ``success(lease)`` may put keys under this lease (those puts are
        held for re-putting; its deletes are forgotten). Retried once under a new lease if the lease is gone."""
        if not self.lease:
            raise RuntimeError("LeaseKeeper.start() was not called: its writes would outlive the host")
        for attempt in (1, 2):
            lease = self.lease
            operations = list(success(lease))
            try:
                result = await self.store.txn(compare, operations, failure)
            except LeaseNotFound:
                if attempt == 2:
                    raise StoreUnavailable(f"cluster store {self.store.description}: lease lost twice") from None
                await self.regrant(lease)
                continue
            if result.succeeded:
                for op in operations:
                    if isinstance(op, Put) and op.lease == lease:
                        self.held[op.key] = op.value
                    elif isinstance(op, Delete):
                        self._forget(op.key, op.prefix)
            return result
        raise AssertionError("unreachable")

    async def claim(self, key: str, value: bytes, extra: Sequence[Operation] = (),
                    read_on_failure: Sequence[Get] = ()) -> tuple[bool, KeyValue | None, TxnResult]:
        """Create ``key`` = ``value`` under the lease if absent (with the ``extra`` operations in the same
        transaction). Returns (ok, holder, result): ok also when ``key`` holds ``value`` already (this host's own
        earlier write, e.g. a retried one; re-leased if needed); else ``holder`` is who holds it. The failure
        branch reads ``key`` first, then ``read_on_failure`` (result.reads[1:])."""
        result = await self.txn([absent(key)], lambda lease: [Put(key, value, lease), *extra],
                                [Get(key), *read_on_failure])
        if result.succeeded:
            return True, None, result
        holder = result.reads[0][0] if result.reads[0] else None
        if holder is not None and holder.value == value:
            if holder.lease != self.lease:  # ours from before a regrant, or written by an older lease
                await self.put(key, value)
            else:
                self.held[key] = value
            return True, holder, result
        return False, holder, result

    async def put(self, key: str, value: bytes) -> int:
        """Put ``key`` under the lease, unconditionally (e.g. this host's own record); returns the revision."""
        result = await self.txn([], lambda lease: [Put(key, value, lease)])
        return result.revision

    async def delete(self, key: str, prefix: bool = False) -> None:
        await self.txn([], lambda lease: [Delete(key, prefix)])

    def _forget(self, key: str, prefix: bool) -> None:
        if prefix:
            for held in [k for k in self.held if k.startswith(key)]:
                del self.held[held]
        else:
            self.held.pop(key, None)


# -- following a prefix --------------------------------------------------------------------------------------


@dataclass
class PrefixFollower:
    """Every key under ``prefix`` as batches of Events, kept up across broken streams and compactions.

    The first batch is the listing (a PUT per key, at the listing's revision). Then each watch event, one
    per batch. Resuming after a broken stream watches again from ``revision``, the last revision seen,
    INCLUSIVE: events already seen come again and are dropped here (``known`` holds each key's
    mod_revision); starting one past it could miss a DELETE at exactly a compaction revision (etcd keeps no
    tombstone there, and a watch from that revision is allowed, so nothing says it is gone). When the watch
    says Compacted, the follower lists again and yields the difference to what it knew: a DELETE for each
    key gone, a PUT for each new or changed one. While the store is down it waits with ``backoff``.
    ``connected`` is False from a broken stream until the next listing or event."""

    store: ClusterStore
    prefix: str
    backoff: Backoff = field(default_factory=Backoff)
    revision: int = 0
    known: dict[str, int] = field(default_factory=dict)
    connected: bool = False
    relists: int = 0
    breaks: int = 0
    _listed: bool = False

    async def batches(self) -> AsyncIterator[list[Event]]:
        """The endless stream of batches (cancel the consuming task to stop)."""
        while True:
            try:
                if not self._listed:
                    listing = await self.store.list(self.prefix)
                    batch = self.resync(listing)
                    self._listed, self.connected = True, True
                    self.backoff.reset()
                    if batch:
                        yield batch
                async for event in self.store.watch(self.prefix, self.revision):
                    self.connected = True
                    self.backoff.reset()
                    if self.accept(event):
                        yield [event]
                # a stream that ends without an error: watch again from the same revision
            except Compacted as err:
                log.info("watch of %s: compacted at %d; listing again", self.prefix, err.revision)
                self._listed = False
                self.relists += 1
            except (StoreUnavailable, StoreRefused) as err:
                if self.connected:
                    log.warning("watch of %s broken: %s", self.prefix, err)
                    self.breaks += 1
                self.connected = False
                await self.backoff.wait()

    def resync(self, listing: Listing) -> list[Event]:
        """The events that turn what this follower knew into ``listing``; remembers ``listing`` as known."""
        events = []
        present = {kv.key: kv for kv in listing.items}
        for key in sorted(set(self.known) - set(present)):
            events.append(Event(DELETE, key, b"", listing.revision))
        for key, kv in present.items():
            if self.known.get(key) != kv.mod_revision:
                events.append(Event(PUT, key, kv.value, kv.mod_revision))
        self.known = {key: kv.mod_revision for key, kv in present.items()}
        self.revision = max(self.revision, listing.revision)
        return events

    def accept(self, event: Event) -> bool:
        """Whether ``event`` is news (and remember it): False for one seen already (a resumed watch repeats
        the events of its start revision) or older than what is known of its key."""
        seen = self.known.get(event.key)
        if event.kind == PUT:
            if seen is not None and seen >= event.revision:
                return False
            self.known[event.key] = event.revision
        else:
            if seen is None or seen >= event.revision:
                return False
            del self.known[event.key]
        self.revision = max(self.revision, event.revision)
        return True
