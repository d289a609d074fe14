"""The firewall seam: after every action the engine hands one component the whole desired firewall state.

``desired_state`` derives it from the store's records alone (pure): per
network its bridge, subnets and the switches a firewall enforces (internal,
ICC, masquerading), per endpoint its veth and addresses. A ``Firewall`` makes
the kernel match it whole each time (the state, not a delta), so a failed or
missed apply is repaired by the next one. Today netcore has ``NoFirewall``;
nftables goes behind the same ``apply`` without touching the engine.

What a failed apply means (``Engine.apply_firewall``): the action it ends is
recorded and built and stays so (the store is the truth and the firewall is
derived from it); the command fails with one NetcoreError line saying the
firewall was not applied, and the next command applies it again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from .model import STATE_RUNNING, Container, Endpoint, Network


@dataclass(frozen=True)
class NetworkRules:
    """What the firewall enforces for one network.

    ``internal``: no traffic leaves the subnets (Docker's --internal); ``icc``:
    containers may reach each other across the bridge (Docker's
    ``com.docker.network.bridge.enable_icc``); ``masquerade``: outgoing traffic
    is NATed to the host's address, as Docker does for every bridge that is not
    internal (netcore takes no ``enable_ip_masquerade`` option yet).
    """

    id: str
    name: str
    bridge: str  # the network's device in the gateway namespace
    subnets: tuple[str, ...]  # IPv4 CIDR first, then IPv6 if any
    internal: bool
    icc: bool
    masquerade: bool


@dataclass(frozen=True)
class EndpointRules:
    """One container's interface on one network: its veth on the bridge and its addresses (IPv4 first)."""

    network_id: str
    container_id: str
    container: str  # the container's name, for rule comments
    host_ifname: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class FirewallState:
    """Everything the firewall should hold, in the store's order; empty when nothing is running."""

    networks: tuple[NetworkRules, ...] = ()
    endpoints: tuple[EndpointRules, ...] = ()


def desired_state(networks: Iterable[Network], containers: Iterable[Container],
                  endpoints: Iterable[Endpoint]) -> FirewallState:
    """The firewall state the records call for. Pure; only running records count (a row ``creating`` is
    not built yet, one ``removing`` is on its way out), and an endpoint only with its network and container."""
    running_networks = [n for n in networks if n.state == STATE_RUNNING]
    names = {c.id: c.name for c in containers if c.state == STATE_RUNNING}
    network_ids = {n.id for n in running_networks}
    return FirewallState(
        networks=tuple(NetworkRules(id=n.id, name=n.name, bridge=n.bridge,
                                    subnets=tuple(s for s in (n.subnet, n.subnet6) if s), internal=n.internal,
                                    icc=n.icc, masquerade=not n.internal) for n in running_networks),
        endpoints=tuple(EndpointRules(network_id=e.network_id, container_id=e.container_id,
                                      container=names[e.container_id], host_ifname=e.host_ifname,
                                      addresses=tuple(a for a in (e.ipv4, e.ipv6) if a))
                        for e in endpoints
                        if e.state == STATE_RUNNING and e.network_id in network_ids and e.container_id in names))


class Firewall(Protocol):
    """Makes the kernel's firewall match ``desired`` whole; raises (any exception) when it cannot."""

    def apply(self, desired: FirewallState) -> None: ...


class NoFirewall:
    """No firewall rules at all: what netcore does today (every bridge forwards as the kernel lets it)."""

    def apply(self, desired: FirewallState) -> None:
        """Nothing to do."""
