"""The macvlan and ipvlan drivers: containers on the parent interface's LAN, with a shim for the host and dnsd.

Docker's (and netavark's ``vlan.rs``) vocabulary: ``-o parent=IF`` (a link of
the gateway namespace; ``IF.VLAN`` makes the 802.1q sub-interface if it is
missing, and deletes it with the network), ``-o macvlan_mode=bridge|private|
vepa|passthru`` or ``-o ipvlan_mode=l2|l3``, ``--gateway`` the LAN's router,
``--ip-range`` this host's share of the subnet. No parent (Docker's way of
making an internal network): a dummy link ``dm-ID`` is the parent, and the
network is internal.

Each endpoint is a child link of the parent, born inside the container's
namespace as ``eth0``, ``eth1``... (netavark creates it in the host namespace
and moves it; one netlink call with IFLA_NET_NS_FD does both); nothing of it
stays in the gateway namespace. A kernel does not deliver frames between a
macvlan parent and its children, so the host cannot reach its own containers
through the parent: the network's device (the store's ``bridge``) is the
*shim*, ``mv-ID`` (``iv-ID`` for ipvlan), a child of the same parent in the
gateway namespace, in bridge mode, holding one address of the subnet
(``shim_address``: the user's, else the highest of ``--ip-range``, else of the
subnet). dnsd listens there, containers' resolv.conf names it
(``Network.dns_addresses``) and the host routes to its containers through it.
private and passthru macvlan networks have no shim: nothing on the parent may
reach another child there, so they get no names and no host access.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from netcore.errors import Conflict, NetcoreError
from netcore.ipam import IPNetwork, plan_ip_range, prefixlen, usable_bounds
from netcore.kernel import Kernel
from netcore.kernel.names import IFNAMSIZ, check_device_name
from netcore.model import OPT_AUX_ADDRESSES, OPT_MTU, OPT_PARENT, OPT_SHIM_ADDRESS, Endpoint, Network
from netcore.requests import NetworkSpec

OPT_MACVLAN_MODE = "macvlan_mode"  # Docker's: bridge (default), private, vepa, passthru
OPT_IPVLAN_MODE = "ipvlan_mode"  # Docker's: l2 (default), l3
OPT_PARENT_CREATED = "netcore.parent_created"  # "vlan" or "dummy": netcore made the parent and deletes it

MACVLAN_MODES = ("bridge", "private", "vepa", "passthru")  # Linux's macvlan modes (Docker's macvlan_mode)
IPVLAN_MODES = ("l2", "l3")  # Docker's ipvlan_mode (l3s is not offered)
NO_SHIM_MODES = ("private", "passthru")  # macvlan modes in which no sibling link reaches the containers
VLAN_ID_MAX = 4094  # 802.1Q: 0 and 4095 are reserved


def vlan_of(parent: str) -> tuple[str, int] | None:
    """``("eth0", 10)`` for a parent written ``eth0.10`` (the 802.1q sub-interface naming of ``ip link``
    and Docker); None for a plain interface name. NetcoreError for a VLAN ID outside 1..4094."""
    base, dot, tag = parent.rpartition(".")
    if not dot or not base or not tag.isdigit():
        return None
    vlan_id = int(tag)
    if not 1 <= vlan_id <= VLAN_ID_MAX:
        raise NetcoreError(f"invalid parent {parent!r}: the VLAN ID {tag} is not from 1 to {VLAN_ID_MAX}")
    return base, vlan_id


class LanDriver:
    """What macvlan and ipvlan share; a subclass names its kind, its mode option, its modes and its prefix."""

    name = ""
    mode_option = ""
    modes: tuple[str, ...] = ()
    prefix = ""  # of the shim's name: the prefix and the ID's first 12 hex digits make IFNAMSIZ
    routed = False  # containers sit on the parent's LAN; the gateway namespace only holds the shim

    def mode(self, network: Network) -> str:
        """The network's mode as stored (the first of ``modes`` when not given)."""
        return network.options.get(self.mode_option, self.modes[0])

    def has_shim(self, network: Network) -> bool:
        """Whether the network gets a shim (and so names and host access)."""
        return True

    # -- validate: the request alone ---------------------------------------------

    def validate(self, request: NetworkSpec) -> dict[str, str]:
        """Docker's options for the driver: ``parent``, the mode option, ``com.docker.network.driver.mtu``,
        and netcore's ``shim_address``. NetcoreError for any other option, an unknown mode, a bad parent
        name or MTU, or IPv6 (not offered yet)."""
        options = {k: str(v) for k, v in (request.options or {}).items()}
        known = (OPT_PARENT, self.mode_option, OPT_MTU, OPT_SHIM_ADDRESS)
        for key in options:
            if key not in known:
                raise NetcoreError(f"unsupported option {key!r} for driver {self.name}: supported are "
                                   f"{', '.join(known)}")
        mode = options.setdefault(self.mode_option, self.modes[0])
        if mode not in self.modes:
            raise NetcoreError(f"invalid {self.mode_option} {mode!r}: one of {', '.join(self.modes)}")
        parent = options.get(OPT_PARENT, "")
        if parent:
            check_device_name(parent, "parent")
            vlan_of(parent)
        else:
            options.pop(OPT_PARENT, None)
        if OPT_MTU in options and not (options[OPT_MTU].isdigit() and 68 <= int(options[OPT_MTU]) <= 65535):
            raise NetcoreError(f"invalid {OPT_MTU} {options[OPT_MTU]!r}: a number from 68 to 65535")
        if request.ipv6:
            raise NetcoreError(f"--ipv6 is not supported by netcore's {self.name} driver yet")
        return options

    def device_name(self, network_id: str, options: dict[str, str]) -> str:
        """The shim's name: ``mv-`` (``iv-``) and the ID's first 12 hex digits; the name is kept in the store
        even for a network without a shim (it is the network's unique device name there)."""
        return check_device_name(f"{self.prefix}{network_id[:12]}")

    # -- plan: after IPAM, against the other networks and the gateway namespace's links ------------------

    @staticmethod
    def shared_routes(options: dict[str, str], links: dict[str, dict]) -> set[tuple[IPNetwork, str]]:
        """The parent's connected routes (the networks of its addresses), as (destination, parent): a macvlan
        or ipvlan network is meant to share its parent's LAN, so a ``--subnet`` may overlap them (podman#12971,
        moby/libnetwork#1915; issue 23, item 1). None when the parent does not exist yet (a VLAN netcore
        makes) or has no address."""
        parent = options.get(OPT_PARENT)
        if parent not in links:
            return set()
        return {(ipaddress.ip_interface(a).network, parent) for a in links[parent].get("addresses", ())}

    @staticmethod
    def host_addresses(network: Network, parent: str, links: dict[str, dict]) -> dict[str, str]:
        """The parent's own addresses inside the network's subnet, named as Docker's ``--aux-address`` would
        be (``eth0``, ``eth0-2``, ...): no container and no shim may take them."""
        subnet = ipaddress.ip_network(network.subnet)
        found = [ipaddress.ip_interface(a).ip for a in links.get(parent, {}).get("addresses", ())]
        inside = [str(a) for a in found if a.version == subnet.version and a in subnet]
        return {parent if i == 0 else f"{parent}-{i + 1}": a for i, a in enumerate(inside)}

    def plan_network(self, network: Network, others: list[Network], links: dict[str, dict]) -> Network:
        """``network`` with what the driver decides before anything is built: its parent (a dummy ``dm-ID``
        when none is given; the network is then internal), whether netcore makes the parent
        (``netcore.parent_created``: ``vlan`` for a missing ``IF.VLAN`` whose IF exists, ``dummy``), and the
        shim's address. NetcoreError (Conflict) for a parent that is missing, netcore's for another
        network, taken whole by a passthru network, or a shim address outside the subnet or taken."""
        options = dict(network.options)
        parent = options.get(OPT_PARENT)
        internal = network.internal
        if parent is None:
            parent, internal = f"dm-{network.id[:12]}", True
            options[OPT_PARENT] = parent
            options[OPT_PARENT_CREATED] = "dummy"
        elif parent not in links:
            vlan = vlan_of(parent)
            if vlan is None:
                raise NetcoreError(f"parent {parent} not found: no such interface in the gateway namespace")
            if vlan[0] not in links:
                raise NetcoreError(f"parent {parent} not found: no interface {vlan[0]} to make VLAN {vlan[1]} on")
            if len(parent) > IFNAMSIZ:
                raise NetcoreError(f"invalid parent {parent!r}: an interface name has at most {IFNAMSIZ} characters")
            options[OPT_PARENT_CREATED] = "vlan"
        self._check_parent_shared(network, parent, others)
        aux = self.host_addresses(network, parent, links)
        if aux:
            options[OPT_AUX_ADDRESSES] = ",".join(f"{name}={address}" for name, address in aux.items())
        planned = replace(network, internal=internal, options=options)
        if self.has_shim(planned):
            options[OPT_SHIM_ADDRESS] = str(self._shim_address(planned))
        elif OPT_SHIM_ADDRESS in options:
            raise NetcoreError(f"{self.mode_option}={self.mode(planned)} has no shim: drop -o {OPT_SHIM_ADDRESS}")
        return replace(planned, options=options)

    def _check_parent_shared(self, network: Network, parent: str, others: list[Network]) -> None:
        sharing = [n for n in others if n.driver in (MacvlanDriver.name, IpvlanDriver.name)
                   and n.options.get(OPT_PARENT) == parent]
        for other in sharing:
            if other.options.get(OPT_PARENT_CREATED):
                raise Conflict(f"parent {parent} was made by netcore for network {other.name} and goes with it: "
                               "use another parent")
            if other.driver != self.name:
                raise Conflict(f"parent {parent} carries {other.driver} network {other.name}: "
                               "one parent takes macvlan or ipvlan links, not both")
            if "passthru" in (self.mode(network), other.options.get(OPT_MACVLAN_MODE)):
                raise Conflict(f"parent {parent} is used by network {other.name}: a passthru network takes its "
                               "parent whole")

    @staticmethod
    def _shim_address(network: Network) -> ipaddress.IPv4Address:
        subnet = ipaddress.ip_network(network.subnet)
        given = network.options.get(OPT_SHIM_ADDRESS)
        if given:
            try:
                address = ipaddress.ip_address(given)
            except ValueError:
                raise NetcoreError(f"invalid {OPT_SHIM_ADDRESS} {given!r}: an IPv4 address") from None
            first, last = usable_bounds(subnet)
            if address.version != 4 or not first <= int(address) <= last:
                raise NetcoreError(f"invalid {OPT_SHIM_ADDRESS} {given}: not a host address of {subnet}")
        else:
            rng = plan_ip_range(subnet, network.ip_range)
            first, last = usable_bounds(subnet)
            if rng:
                first, last = max(first, int(rng.network_address)), min(last, int(rng.broadcast_address))
            taken = {network.gateway, *network.aux_addresses.values()}
            candidate = last  # the highest of the range that is not the router's or the host's
            while candidate > first and str(ipaddress.ip_address(candidate)) in taken:
                candidate -= 1
            address = ipaddress.ip_address(candidate)
        if str(address) in network.aux_addresses.values():
            raise Conflict(f"{OPT_SHIM_ADDRESS} {address} is the host's own address on the parent: give -o "
                           f"{OPT_SHIM_ADDRESS}=IP another host address")
        if str(address) == network.gateway:
            raise Conflict(f"{OPT_SHIM_ADDRESS} {address} is the gateway (the LAN's router): give -o "
                           f"{OPT_SHIM_ADDRESS}=IP another host address")
        return address

    # -- build and teardown ---------------------------------------------------

    @staticmethod
    def _mtu(network: Network) -> int | None:
        return int(network.options[OPT_MTU]) if OPT_MTU in network.options else None  # else the parent's

    def build_network(self, kernel: Kernel, network: Network) -> None:
        """The parent if netcore makes it (802.1q sub-interface or dummy), then the shim with its address;
        idempotent. KernelError names a missing parent or a kernel feature it lacks."""
        parent = network.options[OPT_PARENT]
        created = network.options.get(OPT_PARENT_CREATED)
        if created == "vlan":
            base, vlan_id = vlan_of(parent)
            kernel.create_parent("vlan", parent, base, vlan_id)
        elif created == "dummy":
            kernel.create_parent("dummy", parent)
        if self.has_shim(network):
            kernel.create_lan_link(self.name, network.bridge, parent, self._shim_mode(network), self._mtu(network),
                                   address=network.options[OPT_SHIM_ADDRESS], prefixlen=prefixlen(network.subnet))

    def _shim_mode(self, network: Network) -> str:
        return self.mode(network)

    def teardown_network(self, kernel: Kernel, network: Network) -> None:
        """The shim, and the parent only if netcore made it."""
        kernel.delete_link(network.bridge)
        if network.options.get(OPT_PARENT_CREATED):
            kernel.delete_link(network.options[OPT_PARENT])  # a parent the user gave stays as it was

    def build_endpoint(self, kernel: Kernel, network: Network, netns: str, endpoint: Endpoint) -> None:
        """The container's link ``endpoint.ifname``, a child of the parent in the network's mode, born in
        ``netns`` with the network's MTU (the engine then gives it its address and routes)."""
        kernel.create_lan_link(self.name, endpoint.ifname, network.options[OPT_PARENT], self.mode(network),
                               self._mtu(network), mac=self._mac(network, endpoint), netns=netns)

    def _mac(self, network: Network, endpoint: Endpoint) -> str | None:
        """The endpoint's MAC; None where the link must keep its parent's."""
        return endpoint.mac

    @staticmethod
    def teardown_endpoint(kernel: Kernel, network: Network, netns: str, endpoint: Endpoint,
                          namespace_follows: bool = False) -> None:
        """The container's link, deleted inside its namespace; a namespace gone took it along. Deleted even when
        the namespace follows: a link the namespace's deletion takes along keeps its MAC on the parent until
        the kernel gets to it, and the next container given the address (and so the MAC) would wait for it."""
        if kernel.namespace_exists(netns):  # a namespace deleted took its link along
            kernel.delete_container_link(netns, endpoint.ifname)

    def network_links(self, network: Network) -> list[str]:
        """The shim (if any) and a parent netcore made: any missing, reconciliation rebuilds the network."""
        names = [network.bridge] if self.has_shim(network) else []
        if network.options.get(OPT_PARENT_CREATED):
            names.insert(0, network.options[OPT_PARENT])
        return names

    @staticmethod
    def endpoint_links(endpoint: Endpoint) -> list[str]:
        """None: a container's link lives in its own namespace only."""
        return []

    @staticmethod
    def ports(network: Network, links: dict[str, dict]) -> list[str]:
        """None: no link of the gateway namespace hangs on the network but the shim."""
        return []


class MacvlanDriver(LanDriver):
    """``-d macvlan``: each container a macvlan link of the parent, with a MAC of its own on the LAN."""

    name = "macvlan"
    mode_option = OPT_MACVLAN_MODE
    modes = MACVLAN_MODES
    prefix = "mv-"

    def has_shim(self, network: Network) -> bool:
        """Not in private mode (no sibling may reach the containers) nor passthru (one link takes the
        parent whole)."""
        return self.mode(network) not in NO_SHIM_MODES

    def _mac(self, network: Network, endpoint: Endpoint) -> str | None:
        """None in passthru mode: setting a passthru link's MAC sets its parent's (drivers/net/macvlan.c),
        and netcore leaves a parent as it found it."""
        return None if self.mode(network) == "passthru" else endpoint.mac

    def _shim_mode(self, network: Network) -> str:
        """Always bridge: the kernel hands a bridge-mode link frames from bridge-mode siblings directly;
        from vepa ones only when the LAN's switch sends them back (hairpin, reflective relay)."""
        return "bridge"


class IpvlanDriver(LanDriver):
    """``-d ipvlan``: each container an ipvlan link of the parent, sharing its MAC (l2: one broadcast
    domain with the LAN; l3: the parent routes, no ARP). The shim is an ipvlan link in the same mode."""

    name = "ipvlan"
    mode_option = OPT_IPVLAN_MODE
    modes = IPVLAN_MODES
    prefix = "iv-"

    def _mac(self, network: Network, endpoint: Endpoint) -> str | None:
        """None: every ipvlan link has its parent's MAC."""
        return None
