"""What the engine asks of the kernel, as one object it is given: ``Kernel`` (the real one: netcore.kernel
.linux_kernel.LinuxKernel, the only module here that imports pyroute2 through netcore.kernel.netlink).

The engine never calls netlink or the /etc/netns files directly: it holds a
``Kernel`` (constructor parameter, ``LinuxKernel`` by default), so unit tests
hand it an in-memory model instead (tests/support/fake_kernel.py). ``LinuxKernel``
adds nothing of its own: every method is the netcore.netlink or netcore.sandbox
function the engine called before, so the real code path is unchanged.

Errors: every call raises NetcoreError (netlink.KernelError) when the kernel
refuses, with a message a user can act on; deleting what is gone is no error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the protocol names netlink's shapes; importing it would load pyroute2 for every client
    from netcore.kernel import netlink


class Kernel(Protocol):
    """The kernel objects of one state dir: the gateway namespace's links and routes, named namespaces,
    and each namespace's /etc/netns files. Shapes as in netcore.netlink and netcore.sandbox."""

    # -- the gateway namespace (netlink.Gateway) --------------------------------
    def ensure(self) -> bool:
        """Create the gateway namespace if it is missing; True if it had to be created."""

    def routes(self) -> list[netlink.Route]:
        """The gateway namespace's main routing table (the default route excluded): destination and the
        link each leaves by."""

    def links(self) -> dict[str, dict]:
        """Every link of the gateway namespace by name: {"kind": "bridge"|"veth"|..., "master": NAME|None,
        "mtu": BYTES, "addresses": ["ADDRESS/PREFIXLEN", ...]} (no link-local IPv6 addresses)."""

    def create_bridge(self, name: str, mac: str, mtu: int, gateway: str, prefixlen: int,
                      gateway6: str | None = None, prefixlen6: int | None = None) -> None:
        """A bridge (made or completed) with its gateway address(es) and pinned MAC, up."""

    def delete_link(self, name: str) -> None:
        """Delete a gateway-namespace link if it is there (one end of a veth takes its peer along)."""

    def release_link(self, name: str) -> None:
        """Set a gateway-namespace veth down and off its bridge, if it is there: its peer's namespace is deleted
        next and takes the pair along, in the kernel's own time."""

    def attach_endpoint(self, container_ns: str, host_ifname: str, ifname: str, bridge: str, mtu: int,
                        mac: str, isolated: bool) -> None:
        """A veth pair: ``host_ifname`` on ``bridge`` (isolated port if asked), ``ifname`` in ``container_ns``."""

    def create_lan_link(self, kind: str, name: str, parent: str, mode: str, mtu: int | None = None,
                        mac: str | None = None, netns: str | None = None, address: str | None = None,
                        prefixlen: int | None = None) -> None:
        """A macvlan/ipvlan link on ``parent``: born in ``netns`` (a container's interface), or the gateway
        namespace's shim with its address, up (see netlink.Gateway.create_lan_link)."""

    def create_vxlan(self, name: str, vni: int, local: str, underlay: str, port: int, mtu: int,
                     master: str) -> None:
        """A VXLAN device on ``underlay`` (no learning, ARP proxy), a port of bridge ``master``, up (see
        netlink.Gateway.create_vxlan)."""

    def create_parent(self, kind: str, name: str, base: str | None = None, vlan_id: int | None = None) -> None:
        """An 802.1q sub-interface of ``base`` ("vlan") or a dummy link ("dummy") to be a parent, up."""

    def close(self) -> None:
        """Release what the object holds open (the gateway's netlink socket)."""

    def revalidate(self) -> bool:
        """Release what was opened in a gateway namespace that is no longer the live one (a long-lived
        engine calls this before each command); whether there was such a thing."""

    # -- named namespaces -------------------------------------------------------
    def namespace_exists(self, name: str) -> bool:
        """Whether /run/netns/NAME exists."""

    def list_namespaces(self) -> list[str]:
        """The names of /run/netns, sorted."""

    def create_namespace(self, name: str) -> None:
        """A named namespace with loopback up (kept if it exists)."""

    def delete_namespace(self, name: str) -> None:
        """Delete a named namespace if it exists."""

    def configure_container_interface(self, container_ns: str, ifname: str, address: str | None, prefixlen: int,
                                      gateway: str | None, address6: str | None = None,
                                      prefixlen6: int | None = None, gateway6: str | None = None) -> None:
        """Addresses on ``ifname``, IPv6 kept quiet, link up, default route(s) via the gateway(s) given."""

    def delete_container_link(self, container_ns: str, ifname: str) -> None:
        """Delete ``ifname`` inside ``container_ns`` if it is there."""

    def runs_in_gateway(self, pid: int) -> bool:
        """Whether process ``pid`` runs in the live gateway namespace (True when either cannot be read)."""

    # -- /etc/netns/NAME --------------------------------------------------------
    def write_etc(self, namespace: str, resolv: str, hosts: str) -> None:
        """Write the namespace's resolv.conf and hosts, in place (see sandbox.write_etc)."""

    def remove_etc(self, namespace: str) -> None:
        """Remove the namespace's /etc/netns directory, if any."""

    def list_etc(self) -> list[str]:
        """The names of /etc/netns (a namespace's files each), sorted."""

    def read_text(self, path: str) -> str | None:
        """The text of a file of the host (the gateway namespace's resolv.conf), None if it cannot be read."""
