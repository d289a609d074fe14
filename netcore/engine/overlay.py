"""The engine's part of networks across hosts (issue 27): membership, overlay networks, their endpoints.

What lives where: an overlay network is the cluster's (its record in etcd: name, subnet, gateway, VXLAN ID),
created and removed there from any joined host, and shown by every host's ``network ls``/``inspect``. A host
builds it (a row in its store, a bridge and a VXLAN device: netcore.network.overlay) when its first container
joins it, and removes it when the last one leaves, as Docker swarm does on its nodes; the row is the host's
record of what it built. Addresses are claimed in etcd (create-if-absent, netcore.cluster.allocate) when an
endpoint is planned, and the endpoint is published in etcd once it is built and confirmed, so ``run``
returns with the container in the cluster's store (the other hosts program it and answer its name when their
watch brings it, a moment later); it is withdrawn whenever its row is deleted (``rm``, ``disconnect``, an
undone ``run``, reconciliation, ``purge``).

The member (netcore.cluster.member) runs in netcored for as long as its engine; see netcore.engine.cluster.
Nothing here runs on a host that never joined: every entry point returns at once without a service.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace

from netcore import ipam
from netcore.cluster import membership as membership_file
from netcore.cluster.allocate import OverlaySpec
from netcore.cluster.keys import NetworkRecord
from netcore.cluster.member import MemberStatus
from netcore.cluster.membership import Membership
from netcore.cluster.service import ClusterService
from netcore.dnsd_protocol import cluster_names
from netcore.engine.build import Builder
from netcore.engine.cluster import ClusterOptions, LocalHost, endpoint_record
from netcore.engine.context import Context
from netcore.errors import Conflict, NetcoreError, NotFound
from netcore.model import OPT_MTU, STATE_CREATING, STATE_RUNNING, Container, Endpoint, Network
from netcore.network.overlay import (
    NAME as OVERLAY,
    OPT_UNDERLAY,
    OPT_VNI,
    OPT_VTEP,
    bridge_name,
    check_mtu,
    max_mtu,
    vxlan_name,
)
from netcore.requests import NetworkSpec


@dataclass(frozen=True)
class Underlay:
    """The link of the gateway namespace that holds the advertise address: ``name``, ``mtu``, its ``cidrs``."""

    name: str
    mtu: int
    cidrs: tuple[str, ...]


def find_underlay(links: dict[str, dict], address: str) -> Underlay | None:
    """The link of ``links`` (netcore.kernel.Kernel.links) that has ``address``, or None."""
    for name, link in links.items():
        for cidr in link["addresses"]:
            interface = ipaddress.ip_interface(cidr)
            if str(interface.ip) == address:
                cidrs = tuple(str(ipaddress.ip_interface(c).network) for c in link["addresses"] if ":" not in c)
                return Underlay(name, int(link.get("mtu") or 1500), cidrs)
    return None


class Overlays:
    """The overlay work of one engine (``ctx``, ``builder``); ``taken_subnets`` is the planner's (this host's
    networks and routes, by description)."""

    def __init__(self, ctx: Context, builder: Builder, taken_subnets: Callable[[], dict],
                 options: ClusterOptions | None = None):
        self.ctx = ctx
        self.builder = builder
        self.taken_subnets = taken_subnets
        self.options = options or ClusterOptions()
        self.service: ClusterService | None = None
        self._claims: list[tuple[str, str, str]] | None = None  # (network ID, address, endpoint ID) this action

    @property
    def joined(self) -> bool:
        return self.service is not None

    # -- membership ----------------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"the gateway namespace {self.ctx.namespace}" if self.ctx.namespace else "this host"

    def _underlay(self, address: str) -> Underlay:
        found = find_underlay(self.ctx.kernel.links(), address)
        if found is None:
            raise NetcoreError(f"advertise address {address} is not an address of this host: no interface of "
                               f"{self._where()} has it")
        return found

    def _open(self, membership: Membership, underlay: tuple[str, ...]) -> ClusterService:
        host = LocalHost(self.ctx.state_dir, self.ctx.namespace, membership.name, underlay, self.options)
        return ClusterService(membership, host, self.options.store_factory, self.options.loop,
                              self.options.resync_interval)

    def start(self) -> None:
        """Start the member of a state dir that joined (netcored opening its engine); nothing otherwise.
        NetcoreError for a membership file that cannot be read."""
        if self.service is not None:
            return
        membership = membership_file.read(self.ctx.state_dir)
        if membership is None:
            return
        underlay = find_underlay(self.ctx.kernel.links(), membership.address) if not self.ctx.gateway_gone() else None
        service = self._open(membership, underlay.cidrs if underlay else ())
        service.start()
        self.service = service

    def close(self) -> None:
        """Stop the member (its keys stay until its lease ends, or until a new netcored takes them over)."""
        if self.service is not None:
            service, self.service = self.service, None
            service.close(revoke=False)

    def join(self, store: str, address: str, name: str | None, lease_ttl: int) -> tuple[Membership, str]:
        """``cluster join``: (the membership, the store's version). One NetcoreError line and nothing changed
        for: a joined host, a URL that is not ``etcd://``, a bad name or TTL, an advertise address not on
        this host, a store that does not answer or is not etcd, a name another host has, a local network
        whose name or subnet an overlay network has."""
        if self.service is not None or membership_file.read(self.ctx.state_dir) is not None:
            current = self.service.membership if self.service else membership_file.read(self.ctx.state_dir)
            raise Conflict(f"this host already joined cluster {current.store} as {current.name}: "
                           "netcore cluster leave first")
        membership = Membership(store, name or socket.gethostname().split(".")[0], address, secrets.token_hex(16),
                                lease_ttl, self.ctx.clock.now()).check()
        underlay = self._underlay(membership.address)
        service = self._open(membership, underlay.cidrs)
        version = service.join()  # stopped again on failure: nothing of this host left in the store
        try:
            membership_file.write(self.ctx.state_dir, membership)
        except OSError:
            service.close(revoke=True)
            raise
        self.service = service
        return membership, version

    def leave(self, force: bool = False) -> Membership:
        """``cluster leave``: Conflict while containers here are on overlay networks (named); the store told
        (StoreUnavailable, nothing changed, unless ``force``); the membership, the names of other hosts and
        every overlay network built here removed."""
        membership = self.service.membership if self.service else membership_file.read(self.ctx.state_dir)
        if membership is None:
            raise NetcoreError("this host has not joined a cluster")
        store = self.ctx.store
        overlays = {n.id: n for n in store.networks() if n.driver == OVERLAY}
        users = sorted({f"{store.container(e.container_id).name} (on {overlays[e.network_id].name})"
                        for e in store.endpoints() if e.network_id in overlays})
        if users:
            raise Conflict(f"cannot leave the cluster: containers on overlay networks run here: {', '.join(users)}; "
                           "remove or disconnect them first")
        if self.service is not None:
            self.service.leave(force)
            self.service = None
        membership_file.remove(self.ctx.state_dir)
        cluster_names.remove(self.ctx.state_dir)
        self.sweep()
        return membership

    def status(self) -> MemberStatus | None:
        return self.service.status() if self.service is not None else None

    def _need(self, what: str) -> ClusterService:
        if self.service is None:
            raise NetcoreError(f"{what}: this host has not joined a cluster "
                               "(netcore cluster join --store etcd://HOST:PORT --advertise-address ADDRESS)")
        return self.service

    def local_changed(self) -> None:
        if self.service is not None:
            self.service.local_changed()

    # -- networks --------------------------------------------------------------------------------------------

    def create(self, spec: NetworkSpec, options: dict[str, str]) -> Network:
        """``network create -d overlay`` (``spec`` checked, ``options`` as the driver validated them): the
        network in the cluster, built on no host yet. Conflict for a name taken here or in the cluster, a
        subnet overlapping a network of any joined host; NetcoreError for an MTU the underlay cannot carry."""
        service = self._need("network create -d overlay")
        if self.ctx.store.find_network(spec.name):
            raise Conflict(f"network with name {spec.name} already exists")
        underlay = self._underlay(service.membership.address)
        mtu = int(options.get(OPT_MTU, max_mtu(underlay.mtu)))
        check_mtu(mtu, underlay.mtu, underlay.name)
        taken = self.taken_subnets()
        if spec.subnet4:
            ipam.check_no_overlap(ipam.parse_subnet(spec.subnet4), taken)
        record = service.create_network(OverlaySpec(
            network_id=secrets.token_hex(32), name=spec.name, host=service.membership.name, subnet=spec.subnet4,
            gateway=spec.gateway4, internal=spec.internal, options={**options, OPT_MTU: str(mtu)},
            labels=dict(spec.labels), created=self.ctx.clock.now(),
            avoid=tuple((what, str(net)) for what, net in taken.items() if net.version == 4)))
        return network_of(record)

    def find(self, ref: str) -> NetworkRecord | None:
        """The cluster's overlay network ``ref`` names (name, ID, unique ID prefix), None if none (or not joined)."""
        status = self.status()
        return status.network_named(ref) if status is not None else None

    def remove(self, ref: str) -> Network:
        """``network rm`` of an overlay network: Conflict while any host has a container on it (named, with
        their hosts); else gone from the cluster, and from this host if built here."""
        service = self._need(f"network rm {ref}")
        record = self.find(ref)
        local = self.ctx.store.find_network(record.name) if record is not None else None
        if record is None:
            raise NotFound(f"no such network: {ref}")
        if local is not None and self.ctx.store.endpoints_on_network(local.id):
            # containers here: refused whatever the cluster knows of them (one not published yet included)
            here = service.membership.name
            users = {f"{self.ctx.store.container(e.container_id).name} (host {here})"
                     for e in self.ctx.store.endpoints_on_network(local.id)}
            users.update(f"{e.container_name} (host {e.host})"
                         for e in self.status().endpoints.get(record.id, ()) if e.host != here)
            raise Conflict(f"network {record.name} is in use by {', '.join(sorted(users))}")
        service.remove_network(record.id)
        if local is not None:
            self._drop(local)
        return network_of(record)

    def shown(self) -> list[Network]:
        """The cluster's overlay networks not built here, as ``network ls`` shows them."""
        status = self.status()
        if status is None:
            return []
        local = {n.id for n in self.ctx.store.networks()}
        return [network_of(r) for r in sorted(status.networks.values(), key=lambda n: (n.created, n.name))
                if r.id not in local]

    def peers(self, network: Network) -> list[tuple[str, str]] | None:
        """Docker's ``Peers`` of an overlay network: (host, address) of each host with a container on it."""
        status = self.status() if network.driver == OVERLAY else None
        return status.peers(network.id) if status is not None else None

    def cluster_names(self) -> dict[str, ipaddress.IPv4Network]:
        """The overlay networks of the cluster not built here, by name: what a local network must not take."""
        status = self.status()
        if status is None:
            return {}
        return {r.name: ipaddress.ip_network(r.subnet) for r in status.networks.values()}

    def ensure_local(self, ref: str) -> None:
        """Build overlay network ``ref`` on this host if it is the cluster's and not built here yet, with its
        data plane programmed before it returns (its first container's first packet finds its peers). Nothing
        if ``ref`` is a network of this host's store, or no network of the cluster. NetcoreError (nothing
        built) for an MTU this host's underlay cannot carry, a subnet overlapping a route here, a name of a
        local network."""
        store = self.ctx.store
        with suppress(NotFound):
            store.network(ref)
            return
        if self.service is None:
            return
        record = self.find(ref)
        if record is None:
            return
        if store.find_network(record.name):
            raise Conflict(f"network name {record.name} is both a local network here and an overlay network of the "
                           "cluster: rename or remove the local one")
        address = self.service.membership.address
        underlay = self._underlay(address)
        network = network_of(record)
        check_mtu(network.mtu, underlay.mtu, underlay.name)
        ipam.check_no_overlap(ipaddress.ip_network(network.subnet), self.taken_subnets())
        network = replace(network, options={**network.options, OPT_VTEP: address, OPT_UNDERLAY: underlay.name},
                          state=STATE_CREATING)
        with store.transaction():
            store.insert(network)
        self.builder.build(network, lambda: self.builder.build_network(network),
                           lambda: self.builder.drop_network(network))
        try:
            self.service.attach(network.id, vxlan_name(network.id))
        except NetcoreError as err:
            self._drop(network, detach=False)
            raise NetcoreError(f"overlay network {network.name} not built here: {err}") from None

    def _drop(self, network: Network, detach: bool = True) -> None:
        self.builder.teardown([network], lambda: self.builder.drop_network(network))
        if detach and self.service is not None:
            with suppress(NetcoreError):
                self.service.detach(network.id)

    def sweep(self) -> None:
        """Remove the overlay networks built here that no container of this host uses any more (a run that
        failed after building one, an action killed between its last container and its network)."""
        store = self.ctx.store
        for network in store.networks():
            if (network.driver == OVERLAY and network.state == STATE_RUNNING
                    and not store.endpoints_on_network(network.id)):
                self._drop(network)

    def reprogram(self) -> None:
        """Program the entries of every overlay network built here again (reconciliation rebuilt devices)."""
        if self.service is None:
            return
        for network in self.ctx.store.networks():
            if network.driver == OVERLAY and network.state == STATE_RUNNING:
                try:
                    self.service.attach(network.id, vxlan_name(network.id))
                except NetcoreError as err:
                    self.ctx.report.warnings.append(f"overlay network {network.name}: {err}")

    # -- endpoints -------------------------------------------------------------------------------------------

    def allocate(self, network: Network, endpoint_id: str, requested: str | None) -> str:
        """The address of a new endpoint on overlay network ``network``, claimed in the cluster (the planner's
        IPAM for overlays): StoreUnavailable (one line naming the store) when the store does not answer."""
        service = self._need(f"network {network.name}")
        address = service.allocate(network.id, endpoint_id, requested)
        if self._claims is not None:
            self._claims.append((network.id, address, endpoint_id))
        return address

    @contextmanager
    def claims(self) -> Iterator[None]:
        """Around a ``run`` or ``connect``: the addresses it claimed are given back, and the networks it built
        for nothing removed, if it fails."""
        self._claims = []
        try:
            yield
        except BaseException:
            claims, self._claims = self._claims, None
            for network_id, address, endpoint_id in claims or ():
                with suppress(NetcoreError):
                    self.service.release(network_id, address, endpoint_id)
            with suppress(NetcoreError):
                self.sweep()
            raise
        self._claims = None

    def publish(self, container: Container, endpoints: list[Endpoint]) -> None:
        """Make the container's overlay endpoints known to every host (after the action confirmed them); a
        store that fails now is a warning: the member publishes them when it answers."""
        if self.service is None:
            return
        store = self.ctx.store
        for endpoint in endpoints:
            network = store.network(endpoint.network_id)
            if network.driver != OVERLAY:
                continue
            try:
                self.service.publish(endpoint_record(endpoint, container, self.service.membership.name))
            except NetcoreError as err:
                self.ctx.report.warnings.append(f"container {container.name} is not known to other hosts yet: {err}"
                                                "; netcored publishes it when the store answers")

    def dropped(self, gone: list[tuple[Endpoint, Network, Container | None]]) -> None:
        """Endpoint rows deleted (the builder's hook): those on overlay networks withdrawn from the cluster, and
        a network with no endpoint left here removed from this host."""
        emptied = {}
        for endpoint, network, container in gone:
            if network.driver != OVERLAY:
                continue
            if self.service is not None and container is not None and endpoint.ipv4:
                try:
                    self.service.withdraw(endpoint_record(endpoint, container, self.service.membership.name))
                except NetcoreError as err:
                    self.ctx.report.warnings.append(f"container {container.name} is still known to other hosts: "
                                                    f"{err}; netcored withdraws it when the store answers")
            emptied[network.id] = network
        for network in emptied.values():
            current = self.ctx.store.find_network(network.name)
            if current is not None and current.id == network.id and \
                    not self.ctx.store.endpoints_on_network(network.id) and current.state == STATE_RUNNING:
                self._drop(current)


def network_of(record: NetworkRecord) -> Network:
    """The row of an overlay network as this host builds it (and as reads show it), from the cluster's record:
    the VXLAN ID among its options under Docker's name."""
    return Network(id=record.id, name=record.name, bridge=bridge_name(record.id), subnet=record.subnet,
                   gateway=record.gateway, internal=record.internal,
                   options={**record.options, OPT_VNI: str(record.vni)}, labels=dict(record.labels),
                   driver=OVERLAY, routed=True, state=STATE_RUNNING, created=record.created)
