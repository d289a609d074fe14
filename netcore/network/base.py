"""The network driver interface: what a driver decides and builds, and what the engine keeps for itself.

After netavark's ``NetworkDriver`` (validate, setup, teardown): a driver checks
a ``network create`` request, names the network's device, builds and tears down
the network's and each endpoint's kernel objects, and says which links of the
gateway namespace are its own, so reconciliation can rebuild what is missing
and remove what nobody owns. Everything else stays in the engine: the lock,
record -> build -> confirm, IPAM, the container's namespace, its addresses and
routes (the same for every driver that gives a container an interface with an
address), its /etc/netns files, dnsd, the firewall.

A driver decides nothing about the store's shape: every network has a device
name in ``Network.bridge`` (the schema's ``bridge NOT NULL UNIQUE``; macvlan's
is its shim) and every endpoint a unique ``Endpoint.host_ifname``; what else a
driver needs to remember goes in the network's stored options
(``plan_network``).
"""

from __future__ import annotations

from typing import Protocol

from netcore.ipam import IPNetwork
from netcore.kernel import Kernel
from netcore.model import Endpoint, Network
from netcore.requests import NetworkSpec


class NetworkDriver(Protocol):
    """One kind of network (``network create -d NAME``). Methods raise NetcoreError with one line a user can act on."""

    name: str  # what `-d` takes and the store's `driver` column holds
    routed: bool  # whether containers' traffic crosses the gateway namespace (stored: Network.routed)

    def validate(self, spec: NetworkSpec) -> dict[str, str]:
        """The options of ``spec`` (checked already: NetworkSpec.check), normalized for the store; NetcoreError
        for an option, a value or a subnet the driver refuses. The driver owns its option names."""

    def device_name(self, network_id: str, options: dict[str, str]) -> str:
        """The name of the network's device in the gateway namespace (the store's ``bridge``)."""

    def shared_routes(self, options: dict[str, str], links: dict[str, dict]) -> set[tuple[IPNetwork, str]]:
        """The routes of the gateway namespace, as (destination, link name), that a network of this driver with
        ``options`` (as ``validate`` returned them) may overlap with a ``--subnet`` it is given: macvlan's
        and ipvlan's parent's connected routes (the network is meant to share the parent's LAN, issue 23,
        item 1); none for a bridge. Every other route and every other network stays refused."""

    def plan_network(self, network: Network, others: list[Network], links: dict[str, dict]) -> Network:
        """``network`` as planned by the engine (IPAM done, not yet stored), completed with what the driver
        decides against the ``others`` stored networks and the gateway namespace's ``links``
        (netcore.kernel.Kernel.links): e.g. macvlan's parent and shim address. NetcoreError to refuse."""

    def build_network(self, kernel: Kernel, network: Network) -> None:
        """Make (or complete: it may be half-built) the network's kernel objects."""

    def teardown_network(self, kernel: Kernel, network: Network) -> None:
        """Remove the network's kernel objects; what is gone already is no error."""

    def build_endpoint(self, kernel: Kernel, network: Network, netns: str, endpoint: Endpoint) -> None:
        """Give namespace ``netns`` the interface ``endpoint.ifname`` (MAC ``endpoint.mac``) on ``network``.

        The engine then configures its addresses and routes."""

    def teardown_endpoint(self, kernel: Kernel, network: Network, netns: str, endpoint: Endpoint,
                          namespace_follows: bool = False) -> None:
        """Remove the endpoint's kernel objects, its interface inside namespace ``netns`` included (which
        may be gone already). ``namespace_follows``: the engine deletes namespace ``netns`` right after (the
        container goes), so what the kernel deletes with a namespace may be left to it, once out of service."""

    def network_links(self, network: Network) -> list[str]:
        """The gateway-namespace links that are the network itself: any missing, reconciliation rebuilds it."""

    def endpoint_links(self, endpoint: Endpoint) -> list[str]:
        """The gateway-namespace links of one endpoint: any missing, reconciliation rebuilds the endpoint."""

    def ports(self, network: Network, links: dict[str, dict]) -> list[str]:
        """Which of ``links`` (netcore.kernel.Kernel.links) hang on the network: those of no stored endpoint
        are leftovers that reconciliation deletes."""
