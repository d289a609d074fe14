"""The cluster member as a service of netcored: its asyncio loop in a thread of its own, and blocking calls
into it for the engine's thread.

netcored's engine runs every command on one thread, synchronously (netcore.agent.server); the member
(netcore.cluster.member) is asyncio, as aetcd is. ``LoopThread`` runs a loop in a daemon thread;
``ClusterService`` owns one member on it and offers the engine each of the member's operations as a plain call
that waits for the result (``asyncio.run_coroutine_threadsafe``), bounded in time: every store call has its
own deadline (netcore.cluster.store: 5 s), and a call that outlives ``CALL_TIMEOUT`` raises StoreUnavailable
rather than hang a command. The member never waits on the engine's thread, so the two cannot deadlock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from netcore.cluster.allocate import OverlaySpec
from netcore.cluster.keys import EndpointRecord, NetworkRecord
from netcore.cluster.member import Host, Member, MemberStatus
from netcore.cluster.membership import Membership
from netcore.cluster.store import ClusterStore, StoreUnavailable

CALL_TIMEOUT = 30.0  # seconds: longer than any store call's own deadline; a bound against a bug, not a policy
T = TypeVar("T")


class LoopThread:
    """An asyncio loop running in a daemon thread (``name``). ``call`` runs a coroutine there and waits."""

    def __init__(self, name: str = "netcore-cluster-loop"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coroutine: Awaitable[T], timeout: float = CALL_TIMEOUT) -> T:
        """The coroutine's result (or its exception), run on the loop; TimeoutError past ``timeout`` seconds."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer within {timeout:g} s") from None

    def call_soon(self, function: Callable[..., object], *args) -> None:
        """Run ``function(*args)`` on the loop, without waiting."""
        self.loop.call_soon_threadsafe(function, *args)

    def stop(self) -> None:
        """Stop the loop and wait for its thread (tasks still pending are abandoned)."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class ClusterService:
    """One member (this host in its cluster) on a loop thread, with blocking calls for the engine.

    ``store_factory(endpoints)`` makes the store (netcore.cluster.store.EtcdStore by default; tests give a
    FakeClusterStore); ``loop``: a LoopThread to share (tests run several hosts on one), else one of its own,
    stopped with the service. Methods raise what the member raises (NetcoreError kinds: one line each)."""

    def __init__(self, membership: Membership, host: Host,
                 store_factory: Callable[[list[tuple[str, int]]], ClusterStore] | None = None,
                 loop: LoopThread | None = None, resync_interval: float | None = None):
        self.membership = membership
        self._own_loop = loop is None
        self.loop = loop or LoopThread()
        factory = store_factory or _etcd_store

        async def make() -> Member:
            kw = {} if resync_interval is None else {"resync_interval": resync_interval}
            return Member(factory(membership.endpoints), membership, host, **kw)

        try:
            self.member = self.loop.call(make())
        except BaseException:
            self._stop_loop()
            raise
        self.description = self.member.store.description

    def _call(self, coroutine: Awaitable[T]) -> T:
        try:
            return self.loop.call(coroutine)
        except TimeoutError as err:
            raise StoreUnavailable(f"cluster store {self.description} unreachable: {err}") from None

    def _stop_loop(self) -> None:
        if self._own_loop:
            self.loop.stop()

    # -- life --------------------------------------------------------------------------------------------------

    def join(self) -> str:
        """Member.join; on failure the service is stopped (nothing of this host left in the store)."""
        try:
            return self._call(self.member.join())
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        self._call(self.member.start())

    def close(self, revoke: bool = False) -> None:
        """Stop the member (Member.stop) and its loop thread if it is the service's own."""
        try:
            self._call(self.member.stop(revoke=revoke))
        finally:
            self._stop_loop()

    def leave(self, force: bool = False) -> None:
        """Member.leave, then the loop thread stops. StoreUnavailable (the service still runs) unless ``force``."""
        self._call(self.member.leave(force))
        self._stop_loop()

    # -- the engine's calls ------------------------------------------------------------------------------------

    def status(self) -> MemberStatus:
        return self._call(self.member.status())

    def create_network(self, spec: OverlaySpec) -> NetworkRecord:
        return self._call(self.member.create_network(spec))

    def remove_network(self, network_id: str) -> NetworkRecord:
        return self._call(self.member.remove_network(network_id))

    def network(self, network_id: str) -> NetworkRecord:
        return self._call(self.member.network(network_id))

    def allocate(self, network_id: str, endpoint_id: str, requested: str | None) -> str:
        return self._call(self.member.allocate(network_id, endpoint_id, requested))

    def release(self, network_id: str, address: str, endpoint_id: str) -> None:
        self._call(self.member.release(network_id, address, endpoint_id))

    def publish(self, endpoint: EndpointRecord) -> None:
        self._call(self.member.publish(endpoint))

    def withdraw(self, endpoint: EndpointRecord) -> None:
        self._call(self.member.withdraw(endpoint))

    def attach(self, network_id: str, device: str) -> None:
        self._call(self.member.attach(network_id, device))

    def detach(self, network_id: str) -> None:
        self._call(self.member.detach(network_id))

    def local_changed(self) -> None:
        """Tell the member the local state changed; returns at once."""
        self.loop.call_soon(self.member.local_changed)


def _etcd_store(endpoints: list[tuple[str, int]]) -> ClusterStore:
    from netcore.cluster.store import EtcdStore

    return EtcdStore(endpoints)
