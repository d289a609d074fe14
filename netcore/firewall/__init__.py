"""The firewall seam: after every action the engine hands one component the whole desired firewall state.

``desired_state`` derives it from the store's records alone (pure): per
network its bridge, subnets and the switches a firewall enforces (internal,
ICC, masquerading), and per published port (``run -p``) where it leads
(netcore.ports.Mapping). A ``Firewall`` makes the kernel match it whole each
time (the state, not a delta), so a failed or missed apply is repaired by the
next one: ``NoFirewall`` for tests, netcore.nft_apply.NftablesFirewall for real.

What a failed apply means (``Engine.apply_firewall``): the action it ends is
recorded and built and stays so (the store is the truth and the firewall is
derived from it); the command fails with one NetcoreError line saying the
firewall was not applied, and the next command applies it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from netcore.model import DNS_PORT, OPT_PARENT, STATE_RUNNING, Container, Endpoint, Network, PortBinding
from netcore.ports import Mapping, mappings

SHORT_ID = 12  # hex digits of a network's ID that name its firewall chains (Docker's short ID)


@dataclass(frozen=True)
class NetworkRules:
    """What the firewall enforces for one network (``netcore.nftables`` renders it).

    ``id``: hex, at least 12 digits; ``name``: Docker's name rule; ``bridge``:
    the network's device in the gateway namespace (macvlan/ipvlan: the shim);
    ``subnet``/``subnet6``: CIDRs (either may be None, not both);
    ``gateway``/``gateway6``: the addresses dnsd listens on
    (``Network.dns_addresses``: a bridge's gateway, a macvlan network's shim
    address), used when ``dns``; ``internal``: no traffic
    leaves the subnets (Docker's ``--internal``); ``icc``: containers may reach
    each other across the bridge (``com.docker.network.bridge.enable_icc``);
    ``masquerade``: outgoing traffic is NATed to the gateway namespace's
    address (``com.docker.network.bridge.enable_ip_masquerade``, never for an
    internal network); ``dns``: dnsd serves it (every network but the default
    bridge, and macvlan networks without a shim); ``routed``: its containers'
    traffic crosses the gateway namespace (bridges; not macvlan and ipvlan,
    whose containers sit on the parent's LAN: only dnsd's port on the shim is
    theirs here); ``parent``: a macvlan/ipvlan network's parent link (its LAN:
    the shim's address is reached through it too, when the LAN's switch sends
    a container's frames back to it, vepa with hairpin), None for a bridge.
    """

    id: str
    name: str
    bridge: str
    subnet: str | None
    gateway: str | None = None
    subnet6: str | None = None
    gateway6: str | None = None
    internal: bool = False
    icc: bool = True
    masquerade: bool = True
    dns: bool = True
    routed: bool = True
    parent: str | None = None

    @classmethod
    def from_network(cls, network: Network) -> NetworkRules:
        """The firewall's view of a stored network."""
        listen4 = next((a for a in network.dns_addresses if ":" not in a), None)
        listen6 = next((a for a in network.dns_addresses if ":" in a), None)
        return cls(id=network.id, name=network.name, bridge=network.bridge, subnet=network.subnet,
                   gateway=listen4, subnet6=network.subnet6, gateway6=listen6,
                   internal=network.internal, icc=network.icc, masquerade=network.masquerade,
                   dns=bool(network.dns_addresses), routed=network.routed_by_gateway,
                   parent=None if network.routed_by_gateway else network.options.get(OPT_PARENT))

    @property
    def short_id(self) -> str:
        """The first 12 hex digits of the ID (Docker's short ID), which name the network's chains."""
        return self.id[:SHORT_ID]


@dataclass(frozen=True)
class FirewallState:
    """Everything the firewall should hold, in the store's order; empty when nothing is running.

    ``ports``: the published ports, each as it maps in one address family; ``dns_port``: where dnsd
    listens on each gateway address.
    """

    networks: tuple[NetworkRules, ...] = ()
    ports: tuple[Mapping, ...] = ()
    dns_port: int = DNS_PORT


def desired_state(networks: Iterable[Network], containers: Iterable[Container], endpoints: Iterable[Endpoint],
                  ports: Iterable[PortBinding] = ()) -> FirewallState:
    """The firewall state the records call for. Pure; only running records count (a row ``creating`` is
    not built yet, one ``removing`` is on its way out): networks, and the published ports of running
    containers, each mapped to its container's address (netcore.ports.mappings)."""
    running_networks = [n for n in networks if n.state == STATE_RUNNING]
    return FirewallState(networks=tuple(NetworkRules.from_network(n) for n in running_networks),
                         ports=tuple(mappings(ports, running_networks, containers, endpoints)))


class Firewall(Protocol):
    """Makes the kernel's firewall match the desired state whole.

    ``check_ready`` raises NetcoreError, before an action changes anything, when the
    firewall cannot work at all (its tool is missing). ``apply`` makes the live rules
    ``desired`` only if they are not already (after an ``nft flush ruleset``, a reboot,
    a firewalld reload), or always with ``force``; it returns notices for the user
    (a host setting it changed) and raises (any exception) when it cannot. An empty
    state removes every rule of netcore's (``purge``).
    """

    def check_ready(self) -> None: ...

    def apply(self, desired: FirewallState, force: bool = False) -> Sequence[str]: ...

    def changed_outside(self) -> bool:
        """Whether the live rules may have been changed by someone else since the last ``apply`` (then the
        next one looks at them); False when nothing could have."""


class NoFirewall:
    """No firewall rules at all: every bridge forwards as the kernel lets it (unit tests' fake kernel)."""

    def check_ready(self) -> None:
        """Always ready."""

    def changed_outside(self) -> bool:
        """Nothing to change."""
        return False

    def apply(self, desired: FirewallState, force: bool = False) -> Sequence[str]:
        """Nothing to do."""
        return ()
