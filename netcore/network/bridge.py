"""The bridge driver: a Linux bridge per network in the gateway namespace, a veth pair per endpoint.

Docker's bridge driver (and netavark's): the bridge carries the gateway
address(es) and a MAC pinned from the network ID, each endpoint is a veth whose
host end is a port of the bridge (an isolated port with
``com.docker.network.bridge.enable_icc=false``) and whose peer is born inside
the container's namespace. Options are Docker's: ``...bridge.name``,
``...driver.mtu``, ``...bridge.enable_icc``.
"""

from __future__ import annotations

from netcore.errors import NetcoreError
from netcore.ipam import prefixlen
from netcore.kernel import Kernel
from netcore.kernel.names import check_device_name
from netcore.model import OPT_ICC, OPT_MASQUERADE, OPT_MTU, Endpoint, Network
from netcore.requests import NetworkSpec

OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
KNOWN_OPTIONS = (OPT_BRIDGE_NAME, OPT_MTU, OPT_ICC, OPT_MASQUERADE)  # Docker's bridge options netcore implements
BOOLEAN_OPTIONS = (OPT_ICC, OPT_MASQUERADE)  # true or false, true by default (Docker's bridge driver)


class BridgeDriver:
    """Networks on Linux bridges (``-d bridge``, the default)."""

    name = "bridge"
    routed = True  # the gateway namespace routes, filters and masquerades a bridge's traffic

    @staticmethod
    def validate(request: NetworkSpec) -> dict[str, str]:
        """Only Docker's bridge options it implements (KNOWN_OPTIONS): MTU 68 to 65535, ICC and IP
        masquerading true/false."""
        options = dict(request.options or {})
        for key in options:
            if key not in KNOWN_OPTIONS:
                raise NetcoreError(f"unsupported option {key!r}: supported are {', '.join(KNOWN_OPTIONS)}")
        if OPT_MTU in options:
            mtu = str(options[OPT_MTU])
            if not mtu.isdigit() or not 68 <= int(mtu) <= 65535:
                raise NetcoreError(f"invalid {OPT_MTU} {mtu!r}: a number from 68 to 65535")
        for key in BOOLEAN_OPTIONS:
            if key in options and str(options[key]).lower() not in ("true", "false", "1", "0"):
                raise NetcoreError(f"invalid {key} {options[key]!r}: true or false")
        return {k: str(v) for k, v in options.items()}

    @staticmethod
    def device_name(network_id: str, options: dict[str, str]) -> str:
        """``com.docker.network.bridge.name``, else Docker's ``br-`` and the ID's first 12 hex digits."""
        return check_device_name(options.get(OPT_BRIDGE_NAME) or f"br-{network_id[:12]}")

    @staticmethod
    def shared_routes(options: dict[str, str], links: dict[str, dict]) -> set:
        """None: a bridge's subnet overlaps no route of the gateway namespace."""
        return set()

    @staticmethod
    def plan_network(network: Network, others: list[Network], links: dict[str, dict]) -> Network:
        """Nothing to add: the bridge is named and addressed by the engine's plan."""
        return network

    @staticmethod
    def build_network(kernel: Kernel, network: Network) -> None:
        mac = "02:" + ":".join(network.id[i:i + 2] for i in range(0, 10, 2))
        kernel.create_bridge(network.bridge, mac, network.mtu, network.gateway, prefixlen(network.subnet),
                             network.gateway6, prefixlen(network.subnet6))

    @staticmethod
    def teardown_network(kernel: Kernel, network: Network) -> None:
        kernel.delete_link(network.bridge)

    @staticmethod
    def build_endpoint(kernel: Kernel, network: Network, netns: str, endpoint: Endpoint) -> None:
        kernel.attach_endpoint(netns, endpoint.host_ifname, endpoint.ifname, network.bridge, network.mtu,
                               endpoint.mac, isolated=not network.icc)

    @staticmethod
    def teardown_endpoint(kernel: Kernel, network: Network, netns: str, endpoint: Endpoint,
                          namespace_follows: bool = False) -> None:
        """The veth pair deleted (its peer in the container goes with it); or, when the container's namespace is
        deleted next, the host side only taken down and off the bridge: the namespace's deletion takes the
        pair along, and ``rm`` does not wait the 15-40 ms the kernel takes to delete a veth."""
        if namespace_follows:
            kernel.release_link(endpoint.host_ifname)
        else:
            kernel.delete_link(endpoint.host_ifname)

    @staticmethod
    def network_links(network: Network) -> list[str]:
        return [network.bridge]

    @staticmethod
    def endpoint_links(endpoint: Endpoint) -> list[str]:
        return [endpoint.host_ifname]

    @staticmethod
    def ports(network: Network, links: dict[str, dict]) -> list[str]:
        return [name for name, link in links.items() if link["master"] == network.bridge]
