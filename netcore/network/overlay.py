"""The overlay driver: a network across hosts, a VXLAN device on a bridge in every host that has a container on it.

Docker's overlay driver, on netcore's bridge: on each host the network is a Linux bridge carrying the
network's gateway address and a MAC pinned from the network's ID, the same on every host (as Docker swarm
does: each container's resolv.conf names the gateway and reaches its own host's dnsd), with a VXLAN device
as one of its ports: VXLAN ID from the cluster (4096 and up, Docker's range), UDP port 4789 (IANA's), sent
from the host's advertise address over the link that holds it, no learning and an ARP proxy (it answers ARP
from its permanent neighbour entries, so no ARP and no flooding ever cross the underlay; the entries are
the cluster member's, netcore.cluster.member). Each container gets a veth on the bridge, as on a bridge
network. The gateway namespace routes, filters and masquerades the network's traffic that leaves it
(``routed``), as Docker's ``docker_gwbridge`` does: the firewall keeps overlay networks apart from each other
and from local bridges exactly as it keeps bridges apart.

What the driver needs beyond the network's row is in its stored options, decided when the network is built
on a host (netcore.engine.overlay): the VXLAN ID under Docker's option name, the VTEP address and the
underlay link (netcore's own names). A host builds the network when its first container joins it and
removes it when its last one leaves; what the network is cluster-wide lives in etcd (netcore.cluster).
"""

from __future__ import annotations

from netcore.errors import NetcoreError
from netcore.ipam import prefixlen
from netcore.kernel import Kernel
from netcore.kernel.names import check_device_name
from netcore.model import OPT_MTU, Endpoint, Network
from netcore.network.bridge import BridgeDriver
from netcore.requests import NetworkSpec

NAME = "overlay"
SCOPE = "global"  # Docker says "swarm"; the word: every joined host sees the network
VXLAN_PORT = 4789  # IANA's VXLAN port (RFC 7348 section 5), Docker's default data path port
VXLAN_OVERHEAD = 50  # bytes of an IPv4 underlay's frame the encapsulation takes (20 IP + 8 UDP + 8 VXLAN + 14 Ethernet)
OPT_VNI = "com.docker.network.driver.overlay.vxlanid_list"  # Docker's option name; netcore chooses the ID
OPT_VTEP = "netcore.overlay.vtep"  # this host's advertise address, the VXLAN device's local address
OPT_UNDERLAY = "netcore.overlay.underlay"  # the link of the gateway namespace that holds it
KNOWN_OPTIONS = (OPT_MTU,)  # what `network create -d overlay -o` takes


def bridge_name(network_id: str) -> str:
    """The network's bridge on a host: ``ov-`` and the ID's first 12 hex digits (15 characters, IFNAMSIZ)."""
    return f"ov-{network_id[:12]}"


def vxlan_name(network_id: str) -> str:
    """The network's VXLAN device on a host, a port of its bridge: ``vx-`` and the ID's first 12 hex digits."""
    return f"vx-{network_id[:12]}"


def max_mtu(underlay_mtu: int) -> int:
    """The largest MTU an overlay network can have over an underlay link of ``underlay_mtu`` bytes."""
    return underlay_mtu - VXLAN_OVERHEAD


def check_mtu(mtu: int, underlay_mtu: int, underlay: str) -> None:
    """NetcoreError unless an overlay MTU of ``mtu`` fits the underlay link ``underlay`` of ``underlay_mtu``
    (issue 27, item 9: an MTU that does not fit is refused, one line)."""
    if mtu > max_mtu(underlay_mtu):
        raise NetcoreError(f"invalid {OPT_MTU} {mtu}: the overlay's encapsulation takes {VXLAN_OVERHEAD} bytes of "
                           f"the underlay's {underlay_mtu} (link {underlay}): at most {max_mtu(underlay_mtu)}")


class OverlayDriver:
    """Networks across hosts (``-d overlay``): a bridge and a VXLAN device on every host that has a container
    on the network. The cluster parts (names, subnets, VXLAN IDs, addresses, the FDB and neighbour entries)
    are netcore.cluster's; this driver does the kernel work of one host."""

    name = NAME
    scope = SCOPE
    routed = True  # containers reach the outside through the gateway namespace, masqueraded (docker_gwbridge)

    @staticmethod
    def validate(request: NetworkSpec) -> dict[str, str]:
        """``-o com.docker.network.driver.mtu=N`` (68 to 65535; whether it fits the underlay is checked against
        the link, netcore.engine.overlay) and nothing else: no IPv6 (the underlay and the allocation are
        IPv4), no ``--ip-range`` and no ``--dns`` (every host's dnsd forwards as configured there)."""
        options = dict(request.options or {})
        for key in options:
            if key not in KNOWN_OPTIONS:
                raise NetcoreError(f"unsupported option {key!r} for an overlay network: supported is "
                                   f"{', '.join(KNOWN_OPTIONS)}")
        if OPT_MTU in options:
            mtu = str(options[OPT_MTU])
            if not mtu.isdigit() or not 68 <= int(mtu) <= 65535:
                raise NetcoreError(f"invalid {OPT_MTU} {mtu!r}: a number from 68 to 65535")
        if request.ipv6 or request.subnet6:
            raise NetcoreError("overlay networks are IPv4 only: leave out --ipv6")
        if request.ip_range:
            raise NetcoreError("--ip-range is not supported on overlay networks: addresses come from the whole "
                               "subnet, allocated across the cluster")
        if request.dns:
            raise NetcoreError("--dns is not supported on overlay networks: each host's dnsd forwards what it "
                               "does not know as configured on that host")
        return {k: str(v) for k, v in options.items()}

    @staticmethod
    def device_name(network_id: str, options: dict[str, str]) -> str:
        return check_device_name(bridge_name(network_id))

    @staticmethod
    def shared_routes(options: dict[str, str], links: dict[str, dict]) -> set:
        """None: an overlay's subnet overlaps no route of any joined host."""
        return set()

    @staticmethod
    def plan_network(network: Network, others: list[Network], links: dict[str, dict]) -> Network:
        """Nothing to add: netcore.engine.overlay plans an overlay's row from the cluster's record."""
        return network

    @staticmethod
    def build_network(kernel: Kernel, network: Network) -> None:
        """The bridge (gateway address, MAC pinned from the ID: the same on every host) and the VXLAN device."""
        mac = "02:" + ":".join(network.id[i:i + 2] for i in range(0, 10, 2))
        kernel.create_bridge(network.bridge, mac, network.mtu, network.gateway, prefixlen(network.subnet))
        try:
            vni = int(network.options[OPT_VNI])
            vtep, underlay = network.options[OPT_VTEP], network.options[OPT_UNDERLAY]
        except (KeyError, ValueError):
            raise NetcoreError(f"overlay network {network.name} has no VXLAN ID, VTEP or underlay link in its "
                               "options: remove it on this host (netcore network rm)") from None
        kernel.create_vxlan(vxlan_name(network.id), vni, vtep, underlay, VXLAN_PORT, network.mtu, network.bridge)

    @staticmethod
    def teardown_network(kernel: Kernel, network: Network) -> None:
        kernel.delete_link(vxlan_name(network.id))  # not a bridge's port any more once the bridge is gone: first
        kernel.delete_link(network.bridge)

    @staticmethod
    def build_endpoint(kernel: Kernel, network: Network, netns: str, endpoint: Endpoint) -> None:
        kernel.attach_endpoint(netns, endpoint.host_ifname, endpoint.ifname, network.bridge, network.mtu,
                               endpoint.mac, isolated=False)

    @staticmethod
    def teardown_endpoint(kernel: Kernel, network: Network, netns: str, endpoint: Endpoint,
                          namespace_follows: bool = False) -> None:
        """As the bridge driver's: a veth on the network's bridge."""
        BridgeDriver.teardown_endpoint(kernel, network, netns, endpoint, namespace_follows)

    @staticmethod
    def network_links(network: Network) -> list[str]:
        return [network.bridge, vxlan_name(network.id)]

    @staticmethod
    def endpoint_links(endpoint: Endpoint) -> list[str]:
        return [endpoint.host_ifname]

    @staticmethod
    def ports(network: Network, links: dict[str, dict]) -> list[str]:
        """The bridge's ports but its VXLAN device: the containers' veths."""
        vxlan = vxlan_name(network.id)
        return [name for name, link in links.items() if link["master"] == network.bridge and name != vxlan]
