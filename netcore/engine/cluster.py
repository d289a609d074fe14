"""The cluster member's hands on this host (issue 27): what it reads of the local store, how it programs the
data plane, how it hands other hosts' names to dnsd. ``LocalHost`` is netcore.cluster.member's ``Host``.

How the member hangs on netcored: netcored's one Engine owns it (netcore.engine.overlay.Overlays), starts it
when the agent opens the engine on a state dir that joined a cluster (``cluster.json``), or at
``cluster join``, and stops it when the engine closes. It runs on a loop thread of its own
(netcore.cluster.service) in the agent's process, which in sandbox mode lives in the root namespace: it
reaches etcd on the root namespace's loopback, and enters the gateway namespace only through netlink sockets
opened there (the VXLAN device's entries, netcore.cluster.dataplane_netlink). dnsd, inside the gateway
namespace, gets the cluster's names through a file of the state dir the member writes after each change
(netcore.dnsd_protocol.cluster_names) and a ``sync`` on its control socket: never by reading etcd.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from netcore.cluster.dataplane import RemoteEndpoint
from netcore.cluster.keys import EndpointRecord
from netcore.cluster.member import LocalState
from netcore.cluster.service import LoopThread
from netcore.cluster.store import ClusterStore
from netcore.dnsd_protocol import SYNC, cluster_names
from netcore.dnsd_protocol.control import DnsdControl
from netcore.model import STATE_RUNNING, Container, Endpoint
from netcore.network.overlay import NAME as OVERLAY, vxlan_name
from netcore.store import Store

log = logging.getLogger("netcore.cluster")


@dataclass
class ClusterOptions:
    """What an engine's cluster member is made of, when not the real ones (unit tests): ``store_factory``
    (endpoints -> ClusterStore), ``loop`` (a LoopThread shared by several hosts), ``dataplane`` ((namespace,
    device) -> an object with ``reconcile(remotes)`` and ``close()``), ``names`` (called after each names
    file written, instead of dnsd's sync), ``resync_interval`` (seconds)."""

    store_factory: Callable[[list[tuple[str, int]]], ClusterStore] | None = None
    loop: LoopThread | None = None
    dataplane: Callable[[str | None, str], object] | None = None
    names: Callable[[], None] | None = None
    resync_interval: float | None = None


def _vxlan_dataplane(namespace: str | None, device: str):
    from netcore.cluster.dataplane_netlink import VxlanDataplane  # pyroute2: only on a host that joined

    return VxlanDataplane(namespace, device)


class LocalHost:
    """netcore.cluster.member.Host for the state dir ``state_dir`` and gateway namespace ``namespace`` of host
    ``name``. ``underlay``: the CIDRs of the link holding the advertise address. Its methods run in the member's
    worker thread: the store is a read-only connection of its own, the netlink sockets are its own."""

    def __init__(self, state_dir: str, namespace: str | None, name: str, underlay: tuple[str, ...] = (),
                 options: ClusterOptions | None = None):
        options = options or ClusterOptions()
        self.state_dir = state_dir
        self.namespace = namespace
        self.name = name
        self.underlay = underlay
        self._dataplane = options.dataplane or _vxlan_dataplane
        self._names_hook = options.names
        self._store: Store | None = None
        self._planes: dict[str, object] = {}
        self._dnsd = DnsdControl(state_dir, namespace)
        try:
            found = cluster_names.read(state_dir)
        except (OSError, cluster_names.NamesError):
            found = None
        self._generation = found[0] if found else 0

    def local_state(self) -> LocalState:
        if self._store is None:
            self._store = Store.open_readonly(self.state_dir, program="netcored")
        store = self._store
        networks = store.networks()
        overlays = {n.id: n for n in networks if n.driver == OVERLAY}
        local = tuple((n.name, cidr) for n in networks if n.driver != OVERLAY for cidr in (n.subnet, n.subnet6) if cidr)
        containers = {c.id: c for c in store.containers()}
        endpoints, pending = [], set()
        for endpoint in store.endpoints():
            if endpoint.network_id not in overlays:
                continue
            container = containers.get(endpoint.container_id)
            if (container is not None and endpoint.state == STATE_RUNNING and container.state == STATE_RUNNING
                    and overlays[endpoint.network_id].state == STATE_RUNNING):
                endpoints.append(endpoint_record(endpoint, container, self.name))
            else:
                pending.add(endpoint.id)
        devices = {n.id: vxlan_name(n.id) for n in overlays.values() if n.state == STATE_RUNNING}
        return LocalState(local, self.underlay, tuple(endpoints), frozenset(pending), devices)

    def program(self, device: str, remotes: list[RemoteEndpoint]) -> None:
        plane = self._planes.get(device)
        if plane is None:
            plane = self._planes[device] = self._dataplane(self.namespace, device)
        try:
            plane.reconcile(remotes)
        except BaseException:
            self.release(device)  # opened anew next time: the device may have been made anew
            raise

    def release(self, device: str) -> None:
        plane = self._planes.pop(device, None)
        if plane is not None:
            with contextlib.suppress(Exception):
                plane.close()

    def publish_names(self, endpoints: list[EndpointRecord]) -> None:
        """Write the names file (other hosts' containers, each with its endpoints) and have dnsd load it."""
        containers: dict[str, tuple[Container, list[Endpoint], str]] = {}
        for record in endpoints:
            if record.container_id not in containers:
                container = Container(id=record.container_id, name=record.container_name,
                                      hostname=record.hostname, netns="")
                containers[record.container_id] = (container, [], record.host)
            containers[record.container_id][1].append(
                Endpoint(id=record.id, container_id=record.container_id, network_id=record.network_id, ifname="",
                         host_ifname="", mac=record.mac, ipv4=record.ipv4, aliases=record.aliases))
        self._generation += 1
        cluster_names.write(self.state_dir, self._generation, containers.values())
        if self._names_hook is not None:
            self._names_hook()
        else:
            self._dnsd.request(SYNC)  # None when no dnsd runs: it reads the file when it starts

    def close(self) -> None:
        for device in list(self._planes):
            self.release(device)
        if self._store is not None:
            self._store.close()
            self._store = None


def endpoint_record(endpoint: Endpoint, container: Container, host: str) -> EndpointRecord:
    """What the cluster knows of one of this host's endpoints on an overlay network."""
    return EndpointRecord(id=endpoint.id, network_id=endpoint.network_id, host=host, container_id=container.id,
                          container_name=container.name, hostname=container.hostname, ipv4=endpoint.ipv4 or "",
                          mac=endpoint.mac, aliases=tuple(endpoint.aliases))
