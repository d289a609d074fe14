"""One host at work in its cluster (issue 27): its lease, the watch, the data plane and dnsd fed, its own keys.

A ``Member`` runs on an asyncio loop (netcore.cluster.service gives it a thread of its own inside netcored)
and does four jobs, each from one place:

- **Its lease and registration** (the registrar task): a lease of the membership's TTL kept alive by a
  ``LeaseKeeper``; the host record (underlay address, local subnets), the claims of its local network names,
  and the endpoints of its containers on overlay networks, as the host's own SQLite store says (the one home
  of what this host built; ``Host.local_state`` reads it). It registers at start and again whenever its lease
  was lost (regranted), the store came back after an outage, or the engine says the local state changed; a
  store that is down is retried with backoff, never in a tight loop, and never stops the host: local
  networks need no cluster. A restarted host re-registers the same addresses and names (create-if-absent
  claims holding the same values: netcore.cluster.allocate).
- **The watch**: one ``PrefixFollower`` over the whole prefix feeds a ``ClusterView`` (hosts, overlay networks,
  endpoints); its warnings (a newer release's fields, an unreadable key) are logged, never raised.
- **The data plane and the names, in that order**: after each batch of changes, the FDB and permanent
  neighbour entries of every affected overlay network built on this host are reconciled from the kernel
  (``Host.program``), then the names of every other host's containers are handed to dnsd
  (``Host.publish_names``), so the first packet to a container whose name was just answered finds its entries
  (no ARP retry). Batches that arrive while one is applied are merged into the next.
- **What the engine asks** (coroutines it runs through netcore.cluster.service): create and remove overlay
  networks, claim and give back addresses, publish and withdraw endpoints, program a network it has just
  built (``attach``) before its first container is confirmed.

A write the engine made and the registrar's view of the local state may cross (the registrar read the store
just before a ``run`` or ``rm`` changed it): each engine operation bumps a tick, and the registrar neither
withdraws an endpoint published nor re-publishes one withdrawn after its read began.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from netcore.cluster import allocate, keys
from netcore.cluster.allocate import OverlaySpec
from netcore.cluster.dataplane import RemoteEndpoint
from netcore.cluster.keys import Claim, EndpointRecord, HostRecord, NetworkRecord, RecordError
from netcore.cluster.membership import Membership
from netcore.cluster.store import (
    Backoff,
    ClusterStore,
    Conflict as LeaseConflict,
    Delete,
    LeaseKeeper,
    PrefixFollower,
    StoreRefused,
    StoreUnavailable,
    value_is,
)
from netcore.cluster.view import ClusterView
from netcore.errors import Conflict, NetcoreError, NotFound

log = logging.getLogger("netcore.cluster")

RESYNC_INTERVAL = 10.0  # seconds between the registrar's checks of the local state when nothing wakes it
WARNINGS_KEPT = 50


@dataclass(frozen=True)
class LocalState:
    """What this host built, as its SQLite store says: ``networks`` its local (not overlay) networks as
    (name, CIDR) pairs, one per subnet; ``underlay`` the CIDRs of its underlay link (no overlay may take
    them); ``endpoints`` its containers' running endpoints on overlay networks, as the cluster shows them;
    ``pending`` the IDs of its overlay endpoints not running yet or any more (their address claims are
    kept); ``devices`` the VXLAN device of each overlay network built here, by network ID."""

    networks: tuple[tuple[str, str], ...] = ()
    underlay: tuple[str, ...] = ()
    endpoints: tuple[EndpointRecord, ...] = ()
    pending: frozenset[str] = frozenset()
    devices: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> set[str]:
        return {name for name, _ in self.networks}

    @property
    def subnets(self) -> tuple[str, ...]:
        return tuple(sorted({*(cidr for _, cidr in self.networks), *self.underlay}))


class Host(Protocol):
    """What a member does outside etcd, on this host (netcore.engine.cluster.LocalHost is the real one). Every
    method is synchronous and runs in the member's one worker thread, in order."""

    def local_state(self) -> LocalState:
        """Read this host's own store."""

    def program(self, device: str, remotes: list[RemoteEndpoint]) -> None:
        """Make VXLAN device ``device`` hold the FDB and neighbour entries of exactly ``remotes``."""

    def release(self, device: str) -> None:
        """Forget what is held open for ``device`` (it is being removed)."""

    def publish_names(self, endpoints: list[EndpointRecord]) -> None:
        """Hand dnsd the names of these containers of other hosts (the whole set, each time)."""

    def close(self) -> None:
        """Let go of everything held open."""


class Member:
    """This host (``membership``) in the cluster of ``store``; see the module's docstring. Create it on the
    loop it runs on. ``executor``: where ``host``'s methods run (default: one thread of its own)."""

    def __init__(self, store: ClusterStore, membership: Membership, host: Host, *,
                 resync_interval: float = RESYNC_INTERVAL, executor: ThreadPoolExecutor | None = None):
        self.store = store
        self.membership = membership
        self.name = membership.name
        self.host = host
        self.resync_interval = resync_interval
        self.view = ClusterView()
        self.keeper = LeaseKeeper(store, membership.lease_ttl, on_regrant=self._regranted,
                                  on_conflict=self._lease_conflict)
        self.follower = PrefixFollower(store, keys.PREFIX)
        self.devices: dict[str, str] = {}  # overlay network ID -> VXLAN device, of those built here
        self.published: dict[str, EndpointRecord] = {}  # this host's endpoints in etcd, as far as it knows
        self.inflight: set[str] = set()  # endpoint IDs the engine claimed an address for and has not published
        self.unwithdrawn: dict[str, EndpointRecord] = {}  # withdrawals the store did not take: retried
        self.registered = False
        self.listed = False  # the watch's first listing is in the view
        self.last_error: str | None = None
        self.warnings: list[str] = []
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="netcore-cluster")
        self._own_executor = executor is None
        self._tick = 0  # bumped by each engine operation on an endpoint
        self._published_at: dict[str, int] = {}
        self._withdrawn_at: dict[str, int] = {}
        self._host_record: HostRecord | None = None  # as last published
        self._claimed_names: set[str] = set()
        self._full_sync = True
        self._wake = asyncio.Event()
        self._dirty: set[str] = set()
        self._names_dirty = False
        self._flusher: asyncio.Task | None = None
        self._tasks: list[asyncio.Task] = []
        self._breaks_seen = 0
        self._warnings_seen = 0

    # -- life ------------------------------------------------------------------------------------------------

    async def join(self) -> str:
        """``cluster join``: the store checked (StoreUnavailable, or StoreRefused if it is not an etcd of 3.4
        or later), this host registered (Conflict: its name is another host's, a local network's name or
        subnet is an overlay network's), then the member runs. On any failure nothing of this host is left in
        the store (its lease is revoked). Returns the store's version."""
        version = await self._store_version()
        try:
            await self._register(strict=True)
        except BaseException:
            await self.keeper.stop(revoke=True)
            raise
        self._start_tasks()
        return version

    async def start(self) -> None:
        """Run as a member that joined before (netcored starting): register in the background (retried while
        the store is down) and follow the cluster. Never fails: local networks need no cluster."""
        self._start_tasks()

    def _start_tasks(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._registrar(), name="cluster-registrar"),
                       loop.create_task(self._follow(), name="cluster-watch")]

    async def stop(self, revoke: bool = False) -> None:
        """Stop every task; with ``revoke`` end the lease (every leased key of this host goes now, if the store
        answers). Without it the keys stay until the lease's TTL ends: a netcored restarted meanwhile takes
        them over."""
        tasks = [*self._tasks, *([self._flusher] if self._flusher else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)  # bounded: a task that ignored its cancel is abandoned
        self._tasks, self._flusher = [], None
        await self.keeper.stop(revoke=revoke)
        await self.store.close()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            await loop.run_in_executor(self._executor, self.host.close)
        if self._own_executor:
            self._executor.shutdown(wait=False)

    async def leave(self, force: bool = False) -> None:
        """``cluster leave``: end the lease, so every leased key of this host goes at once (host record, local
        name claims; its endpoints are gone already: the engine refuses while it has containers on overlay
        networks), then stop. StoreUnavailable, nothing changed, if the store cannot be told, unless ``force``
        (the keys then go when the lease's TTL ends)."""
        if self.keeper.lease:
            try:
                await self.store.revoke(self.keeper.lease)
            except (StoreUnavailable, StoreRefused):
                if not force:
                    raise
        elif not force:
            raise StoreUnavailable(f"cluster store {self.store.description} unreachable: this host is not "
                                   f"registered ({self.last_error or 'not yet'})")
        self.keeper.lease = 0
        await self.stop(revoke=False)

    async def _store_version(self) -> str:
        check = getattr(self.store, "check", None)
        if check is None:
            return "fake"
        version = await check()
        major_minor = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
        if major_minor < (3, 4):
            raise StoreRefused(f"cluster store {self.store.description} is etcd {version}: netcore needs 3.4 or later")
        return version

    # -- registration ------------------------------------------------------------------------------------------

    async def _local(self) -> LocalState:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.host.local_state)

    def _record(self, local: LocalState) -> HostRecord:
        m = self.membership
        return HostRecord(name=m.name, address=m.address, host_id=m.host_id, local_subnets=local.subnets,
                          lease_ttl=m.lease_ttl, joined=m.joined)

    async def _register(self, strict: bool) -> None:
        """Lease, host record, local names and endpoints, as a full sync. ``strict`` (join): a conflict raises;
        else it is a warning and the rest goes on."""
        if not self.keeper.lease:
            await self.keeper.start()
        local = await self._local()
        self.devices = dict(local.devices)
        await self._sync(local, full=True, strict=strict)
        self.registered = True
        self._mark_dirty(None)

    async def _sync(self, local: LocalState, full: bool, strict: bool = False, read_tick: int | None = None) -> None:
        """Make the store hold this host's record, names and endpoints as ``local`` says. ``full``: compare with
        what the store lists (after a restart, a regrant, an outage); else with what this member published."""
        read_tick = self._tick if read_tick is None else read_tick
        record = self._record(local)
        if full or record != self._host_record:
            try:
                await allocate.publish_host(self.keeper, record)
                self._host_record = record
            except NetcoreError as err:
                if strict or isinstance(err, (StoreUnavailable, StoreRefused)):
                    raise
                self._warn(f"this host's record not published: {err}")
        await self._sync_names(local.names, full, strict)
        await self._sync_endpoints(local, full, read_tick)

    async def _sync_names(self, wanted: set[str], full: bool, strict: bool) -> None:
        """Claim the name of every local network (no overlay network may take it), give back the others."""
        claimed = set(self._claimed_names)
        if full:
            claimed = set()
            for kv in (await self.store.list(keys.NAMES)).items:
                with contextlib.suppress(RecordError):
                    ref = keys.parse_key(kv.key)
                    if ref.kind == keys.KIND_LOCAL_NAME and ref.parts[1] == self.name:
                        claimed.add(ref.parts[0])
        for name in sorted(wanted - claimed if not full else wanted):
            try:
                await allocate.claim_local_name(self.keeper, name, self.name)
                claimed.add(name)
            except NetcoreError as err:
                if strict or isinstance(err, (StoreUnavailable, StoreRefused)):
                    raise
                self._warn(f"local network {name}: {err}")
        for name in sorted(claimed - wanted):
            await allocate.release_local_name(self.keeper, name, self.name)
            claimed.discard(name)
        self._claimed_names = claimed

    async def _sync_endpoints(self, local: LocalState, full: bool, read_tick: int) -> None:
        desired = {e.id: e for e in local.endpoints}
        keep = set(desired) | set(local.pending) | self.inflight
        if full:
            current = {}
            leases = {}
            for kv in (await self.store.list(keys.ENDPOINTS)).items:
                with contextlib.suppress(RecordError):
                    record = keys.decode(kv.value, EndpointRecord, kv.key).record
                    if record.host == self.name:
                        current[record.id], leases[record.id] = record, kv.lease
            await self._drop_stale_claims(keep, read_tick)
        else:
            current, leases = dict(self.published), {}
        for endpoint_id, endpoint in sorted(desired.items()):
            if self._withdrawn_at.get(endpoint_id, -1) >= read_tick:
                continue  # the engine withdrew it after this read began
            if current.get(endpoint_id) == endpoint and (not full or leases.get(endpoint_id) == self.keeper.lease):
                self.published[endpoint_id] = endpoint
                continue
            await self._publish_own(endpoint)
        for endpoint_id, endpoint in sorted({**current, **self.unwithdrawn}.items()):
            if endpoint_id in keep or self._published_at.get(endpoint_id, -1) >= read_tick:
                continue
            await allocate.withdraw_endpoint(self.keeper, endpoint)
            self.published.pop(endpoint_id, None)
            self.unwithdrawn.pop(endpoint_id, None)

    async def _publish_own(self, endpoint: EndpointRecord) -> None:
        """Claim the endpoint's address (its own claim, re-leased, counts) and publish it; a claim another host
        holds now (this host's lease ended while it was cut off) is a warning: the container keeps running here
        but no other host reaches it."""
        claim = keys.encode(Claim(owner=endpoint.id, host=self.name))
        try:
            ok, holder, _ = await self.keeper.claim(keys.address_key(endpoint.network_id, endpoint.ipv4), claim)
            if not ok:
                who = allocate._holder(holder)
                self._warn(f"container {endpoint.container_name}: its address {endpoint.ipv4} is held by "
                           f"{'host ' + who.host if who and who.host else 'another container'} now; other hosts "
                           "do not reach it: remove it (netcore rm) and run it again")
                return
            await allocate.publish_endpoint(self.keeper, endpoint)
            self.published[endpoint.id] = endpoint
        except NetcoreError as err:
            if isinstance(err, (StoreUnavailable, StoreRefused)):
                raise
            self._warn(f"container {endpoint.container_name} not published: {err}")

    async def _drop_stale_claims(self, keep: set[str], read_tick: int) -> None:
        """Address claims of this host whose endpoint is neither built nor being built here (a run killed
        between its claim and its build): given back."""
        for kv in (await self.store.list(keys.ADDRESSES)).items:
            try:
                claim = keys.decode(kv.value, Claim, kv.key).record
            except RecordError:
                continue
            if claim.host != self.name or claim.owner in keep or self._published_at.get(claim.owner, -1) >= read_tick:
                continue
            result = await self.keeper.txn([value_is(kv.key, kv.value)], lambda lease, k=kv.key: [Delete(k)])
            if result.succeeded:
                log.info("gave back address claim %s of an endpoint that is not here", kv.key)

    async def _registrar(self) -> None:
        """Register, then keep this host's keys in step: woken by the engine, a regrant, the store's return;
        every ``resync_interval`` seconds otherwise. Backoff (0.2 s doubling to 5 s) while the store fails."""
        backoff = Backoff(initial=0.2, cap=5.0)
        while True:
            try:
                if not self.registered:
                    await self._register(strict=False)
                    self._full_sync = False
                else:
                    read_tick = self._tick
                    full, self._full_sync = self._full_sync, False
                    await self._sync(await self._local(), full=full, read_tick=read_tick)
                if self.last_error is not None:
                    log.info("cluster store %s answers again", self.store.description)
                self.last_error = None
                backoff.reset()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.resync_interval):  # not wait_for: 3.11's can swallow a cancel
                        await self._wake.wait()
                self._wake.clear()
            except (StoreUnavailable, StoreRefused) as err:
                if self.last_error is None:
                    log.warning("%s", err)
                self.last_error = str(err)
                self._full_sync = True
                await backoff.wait()
            except Exception as err:  # a bug must not end the registrar: logged, retried
                log.exception("cluster registration failed")
                self.last_error = f"{type(err).__name__}: {err}"
                self._full_sync = True
                await backoff.wait()

    def local_changed(self) -> None:
        """The engine changed the local state (any action): sync this host's keys soon."""
        self._wake.set()

    async def _regranted(self, lease: int) -> None:
        self._full_sync = True
        self._wake.set()

    async def _lease_conflict(self, conflict: LeaseConflict) -> None:
        self._warn(f"{conflict.key} is held by another host now")

    # -- the watch, the data plane and the names ---------------------------------------------------------------

    async def _follow(self) -> None:
        async for batch in self.follower.batches():
            if self.follower.breaks != self._breaks_seen:  # the store was away: what did it keep of ours?
                self._breaks_seen = self.follower.breaks
                self._full_sync = True
                self._wake.set()
            changes = self.view.apply(batch)
            self._report_view_warnings()
            if not self.listed:
                self.listed = True
                self._mark_dirty(None)
            elif changes:
                self._mark_dirty(self.view.networks_affected(changes))

    def _report_view_warnings(self) -> None:
        for warning in self.view.warnings[self._warnings_seen:]:
            self._warn(warning)
        self._warnings_seen = len(self.view.warnings)

    def _warn(self, message: str) -> None:
        log.warning("%s", message)
        self.warnings.append(message)
        del self.warnings[:-WARNINGS_KEPT]

    def _mark_dirty(self, networks: Iterable[str] | None) -> None:
        """Networks whose entries to reconcile (None: all built here), and the names, then apply soon."""
        self._dirty.update(self.devices if networks is None else networks)
        self._names_dirty = True
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._dirty or self._names_dirty:
            dirty, self._dirty = self._dirty, set()
            plans = [(self.devices[n], self.view.remote_endpoints(n, self.name)) for n in sorted(dirty)
                     if n in self.devices]
            names = self.remote_endpoints() if self._names_dirty and self.listed else None
            self._names_dirty = False
            await loop.run_in_executor(self._executor, self._apply, plans, names)

    def _apply(self, plans: list[tuple[str, list[RemoteEndpoint]]], names: list[EndpointRecord] | None,
               strict: bool = False) -> None:
        """In the worker thread: the entries first, then the names."""
        for device, remotes in plans:
            try:
                self.host.program(device, remotes)
            except Exception as err:  # one network's device must not stop the others: logged
                if strict:
                    raise
                log.warning("data plane of %s not programmed: %s", device, err)
        if names is not None:
            try:
                self.host.publish_names(names)
            except Exception as err:  # noqa: BLE001 (dnsd keeps the last names; the next change retries)
                log.warning("names of the cluster not handed to dnsd: %s", err)

    def remote_endpoints(self) -> list[EndpointRecord]:
        """Every endpoint of another host whose host record is known (what this host can reach and name)."""
        return [e for network_id in sorted(self.view.endpoints) for e in self.view.endpoints_of(network_id)
                if e.host != self.name and e.host in self.view.hosts]

    # -- what the engine asks ------------------------------------------------------------------------------------

    def _need_lease(self) -> None:
        if not self.keeper.lease or not self.registered:
            why = self.last_error or "this host is not registered yet"
            raise StoreUnavailable(why if why.startswith("cluster store") else
                                   f"cluster store {self.store.description} unreachable: {why}")

    async def create_network(self, spec: OverlaySpec) -> NetworkRecord:
        """netcore.cluster.allocate.create_network; the view holds the record when this returns."""
        record = await allocate.create_network(self.store, spec)
        self.view.networks.setdefault(record.id, record)  # the watch brings the same record a moment later
        return record

    async def remove_network(self, network_id: str) -> NetworkRecord:
        """netcore.cluster.allocate.remove_network (Conflict naming the containers and their hosts)."""
        return await allocate.remove_network(self.store, network_id)

    async def network(self, network_id: str) -> NetworkRecord:
        """The network's record: the view's, else read from the store (NotFound if there is none)."""
        record = self.view.networks.get(network_id)
        if record is not None:
            return record
        kv = await self.store.get(keys.network_key(network_id))
        if kv is None:
            raise NotFound(f"overlay network {network_id[:12]} not found in the cluster")
        return keys.decode(kv.value, NetworkRecord, kv.key).record

    async def allocate(self, network_id: str, endpoint_id: str, requested: str | None) -> str:
        """An address of the network for a new endpoint of this host (netcore.cluster.allocate.allocate_address):
        StoreUnavailable (one line naming the store) while this host is not registered."""
        self._need_lease()
        network = await self.network(network_id)
        self.inflight.add(endpoint_id)
        self._tick += 1
        try:
            return await allocate.allocate_address(self.keeper, network, endpoint_id, self.name, requested)
        except BaseException:
            self.inflight.discard(endpoint_id)
            raise

    async def release(self, network_id: str, address: str, endpoint_id: str) -> None:
        """Give back an address claimed for an endpoint that was never built (a run that failed)."""
        self._tick += 1
        self._withdrawn_at[endpoint_id] = self._tick
        self.inflight.discard(endpoint_id)
        await allocate.release_address(self.keeper, network_id, address, endpoint_id, self.name)

    async def publish(self, endpoint: EndpointRecord) -> None:
        """Make a built endpoint known to every host (netcore.cluster.allocate.publish_endpoint)."""
        self._tick += 1
        self._published_at[endpoint.id] = self._tick
        try:
            await allocate.publish_endpoint(self.keeper, endpoint)
            self.published[endpoint.id] = endpoint
        finally:
            self.inflight.discard(endpoint.id)

    async def withdraw(self, endpoint: EndpointRecord) -> None:
        """Remove an endpoint from the cluster and give back its address. If the store does not answer, its
        keys are no longer re-put by the lease keeper, and the registrar withdraws them when it answers again
        (StoreUnavailable is raised all the same, for the engine's warning)."""
        self._tick += 1
        self._withdrawn_at[endpoint.id] = self._tick
        self.inflight.discard(endpoint.id)
        self.published.pop(endpoint.id, None)
        try:
            await allocate.withdraw_endpoint(self.keeper, endpoint)
            self.unwithdrawn.pop(endpoint.id, None)
        except BaseException:
            self.unwithdrawn[endpoint.id] = endpoint
            self.keeper.held.pop(keys.endpoint_key(endpoint.network_id, endpoint.id), None)
            self.keeper.held.pop(keys.address_key(endpoint.network_id, endpoint.ipv4), None)
            raise

    async def attach(self, network_id: str, device: str) -> None:
        """The engine built overlay network ``network_id`` here (VXLAN device ``device``): program its entries
        now, before its first container is confirmed. Raises what the data plane raises."""
        self.devices[network_id] = device
        plans = [(device, self.view.remote_endpoints(network_id, self.name))]
        await asyncio.get_running_loop().run_in_executor(self._executor, self._apply, plans, None, True)

    async def detach(self, network_id: str) -> None:
        """The engine removed overlay network ``network_id`` here."""
        device = self.devices.pop(network_id, None)
        if device is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.host.release, device)

    async def status(self) -> MemberStatus:
        """What ``cluster ls``, ``network ls`` and ``network inspect`` show, copied on the loop."""
        return MemberStatus(
            name=self.name, registered=self.registered, connected=self.follower.connected, listed=self.listed,
            last_error=self.last_error, hosts=dict(self.view.hosts), networks=dict(self.view.networks),
            endpoints={n: self.view.endpoints_of(n) for n in self.view.endpoints}, warnings=tuple(self.warnings))


@dataclass(frozen=True)
class MemberStatus:
    """A copy of a member's state: ``hosts``/``networks`` by name/ID, ``endpoints`` by network ID; ``connected``:
    the watch is up; ``registered``: this host's keys are in the store; ``last_error``: why not, one line."""

    name: str
    registered: bool
    connected: bool
    listed: bool
    last_error: str | None
    hosts: dict[str, HostRecord]
    networks: dict[str, NetworkRecord]
    endpoints: dict[str, list[EndpointRecord]]
    warnings: tuple[str, ...] = ()

    def network_named(self, ref: str) -> NetworkRecord | None:
        """The overlay network ``ref`` names: its name, its ID, or a unique ID prefix (Conflict if ambiguous),
        as netcore.store resolves local networks."""
        for network in self.networks.values():
            if ref in (network.name, network.id):
                return network
        if ref and all(c in "0123456789abcdef" for c in ref):
            found = [n for n in self.networks.values() if n.id.startswith(ref)]
            if len(found) > 1:
                raise Conflict(f"network ID prefix {ref!r} is ambiguous: it matches {len(found)} networks")
            if found:
                return found[0]
        return None

    def containers_of(self, host: str) -> int:
        """How many containers ``host`` has on overlay networks."""
        return len({e.container_id for endpoints in self.endpoints.values() for e in endpoints if e.host == host})

    def peers(self, network_id: str) -> list[tuple[str, str]]:
        """(host name, underlay address) of every host with a container on the network (Docker's ``Peers``)."""
        names = sorted({e.host for e in self.endpoints.get(network_id, ())})
        return [(name, self.hosts[name].address if name in self.hosts else "") for name in names]

