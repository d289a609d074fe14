"""The kernel side, through pyroute2: namespaces, bridges, veths, addresses, routes.

This is the only module that touches the kernel's network state. It decides
nothing: the engine tells it what to build from the store's records. Every
call is idempotent where it can be (deleting what is gone is not an error),
because reconciliation after a crash calls it on half-built objects.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from netcore.errors import NetcoreError
from netcore.kernel.rtnl import IFF_UP, MAIN_TABLE, Rtnl
from netcore.system import linux
from netcore.system.processes import namespace_identity

NETNS_DIR = linux.NETNS_DIR
BRIDGE_MAX_PORTS = 1023  # port numbers of a Linux bridge (BR_MAX_PORTS - 1)
IFA_F_NODAD = 0x02
# The few link ioctls netcore makes where an rtnetlink request through pyroute2 costs ~0.5-1 ms of CPU and
# they cost µs: a link's index and its IFF_UP flag (include/uapi/linux/sockios.h, include/uapi/linux/if.h)
SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCGIFINDEX = 0x8913, 0x8914, 0x8933
IFNAMSIZ = 16  # a link's name and its NUL


class Route(NamedTuple):
    """A route of the gateway namespace: its ``destination`` and the ``device`` (link name) it leaves by."""

    destination: ipaddress.IPv4Network | ipaddress.IPv6Network
    device: str | None


class KernelError(NetcoreError):
    """A netlink request the kernel refused."""


def _kernel_error(action: str, err: Exception) -> KernelError:
    code = getattr(err, "code", None) or getattr(err, "errno", None)
    if code in (errno.EPERM, errno.EACCES):
        return KernelError(f"{action}: permission denied (netcore needs root: CAP_NET_ADMIN and CAP_SYS_ADMIN)")
    if code == errno.EXFULL:  # the bridge has no port number left
        return KernelError(f"{action}: the network is full (a Linux bridge takes at most {BRIDGE_MAX_PORTS} "
                           "interfaces); use another network")
    return KernelError(f"{action}: {err}")


# Link kinds a kernel may lack, and the feature a user must ask for: creating one on a kernel without it
# fails with EOPNOTSUPP ("Unknown device type" in iproute2's words), after the kernel tried to load its module.
LINK_FEATURES = {
    "macvlan": "macvlan support (CONFIG_MACVLAN, module macvlan)",
    "ipvlan": "ipvlan support (CONFIG_IPVLAN, module ipvlan)",
    "vlan": "802.1q VLAN support (CONFIG_VLAN_8021Q, module 8021q)",
    "dummy": "dummy interface support (CONFIG_DUMMY, module dummy)",
    "vxlan": "VXLAN support (CONFIG_VXLAN, module vxlan)",
}
IPVLAN_MODES = {"l2": 0, "l3": 1}  # IFLA_IPVLAN_MODE values (include/uapi/linux/if_link.h)


def missing_feature(action: str, kind: str) -> KernelError:
    """The one line for a link ``kind`` this kernel cannot make: ``ACTION: this kernel has no FEATURE``."""
    return KernelError(f"{action}: this kernel has no {LINK_FEATURES.get(kind, kind + ' support')}")


def _link_error(action: str, kind: str, err: Exception) -> KernelError:
    if getattr(err, "code", None) == errno.EOPNOTSUPP:
        return missing_feature(action, kind)
    return _kernel_error(action, err)


def _open_rtnl(namespace: str | None) -> IPRoute:
    """An rtnetlink socket bound to ``namespace`` (None: this process's own), opened without a fork."""
    if namespace is None:
        return IPRoute()
    with linux.entered_netns(os.path.join(NETNS_DIR, namespace)):
        return IPRoute()


@contextmanager
def _rtnl(namespace: str | None, action: str) -> Iterator[IPRoute]:
    try:
        with _open_rtnl(namespace) as ipr:
            yield ipr
    except NetcoreError:
        raise
    except (NetlinkError, OSError) as err:
        raise _kernel_error(action, err) from None


def local_addresses(namespace: str | None) -> set[str]:
    """Every address of every link of ``namespace`` (None: this process's), as ``ipaddress`` prints them:
    the destinations a packet to a host port of that namespace can have. KernelError if they cannot be
    read."""
    with _rtnl(namespace, "cannot read addresses") as ipr:
        return {str(ipaddress.ip_address(a.get("address"))) for a in ipr.addr("dump") if a.get("address")}


def namespace_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def list_namespaces() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


_netns_dir_shared = False


def _share_netns_dir() -> None:
    """Make /run/netns a shared mount point, as iproute2 does, so deletions reach every mount namespace."""
    global _netns_dir_shared
    if _netns_dir_shared:
        return
    os.makedirs(NETNS_DIR, exist_ok=True)
    try:
        linux.mount(None, NETNS_DIR, linux.MS_SHARED | linux.MS_REC)
    except OSError as err:
        if err.errno != errno.EINVAL:  # EINVAL: not a mount point yet
            raise
        linux.mount(NETNS_DIR, NETNS_DIR, linux.MS_BIND | linux.MS_REC)
        linux.mount(None, NETNS_DIR, linux.MS_SHARED | linux.MS_REC)
    _netns_dir_shared = True


def create_namespace(name: str) -> None:
    """A named namespace (as `ip netns add` makes it) with loopback up and no other route."""
    path = os.path.join(NETNS_DIR, name)
    if not namespace_exists(name):
        try:
            _share_netns_dir()
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
            try:
                linux.new_netns_at(path)
            except OSError:
                os.unlink(path)
                raise
        except OSError as err:
            raise _kernel_error(f"cannot create network namespace {name}", err) from None
    try:
        with linux.entered_netns(path), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            _set_flag_up(sock, "lo")  # a socket of the namespace: its ioctls act on that namespace's links
    except OSError as err:
        raise _kernel_error(f"cannot bring up loopback in {name}", err) from None



def _set_flag_up(sock: socket.socket, name: str) -> None:
    """Set IFF_UP on the link ``name`` of ``sock``'s namespace, as `ip link set up` does, by the
    SIOCGIFFLAGS/SIOCSIFFLAGS ioctls (what ifconfig uses): a few µs, where opening an rtnetlink socket in a
    new namespace and one request through pyroute2 cost about 1 ms of CPU for every container. OSError as
    the kernel gives it."""
    request = struct.pack("16sH", name.encode(), 0)
    flags = struct.unpack_from("H", fcntl.ioctl(sock, SIOCGIFFLAGS, request), IFNAMSIZ)[0]
    if not flags & IFF_UP:
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", name.encode(), flags | IFF_UP))


def delete_namespace(name: str) -> None:
    if namespace_exists(name):
        try:
            netns.remove(name)
        except OSError as err:
            if err.errno != errno.ENOENT:
                raise _kernel_error(f"cannot delete network namespace {name}", err) from None


class Gateway:
    """The gateway namespace, where every bridge and every host-side veth lives."""

    def __init__(self, namespace: str | None):
        self.namespace = namespace  # None: the host's own namespace
        self._socket: IPRoute | None = None  # opened once and kept: each open costs ~10 ms
        self._raw: Rtnl | None = None  # beside it, for what every container asks (netcore.kernel.rtnl)
        self._socket_namespace: tuple[int, int] | None = None  # the identity of the namespace both were opened in

    @contextmanager
    def _rtnl(self, action: str) -> Iterator[IPRoute]:
        with self._kernel_errors(action):
            self._open()
            yield self._socket

    @contextmanager
    def _raw_rtnl(self, action: str) -> Iterator[Rtnl]:
        with self._kernel_errors(action):
            self._open()
            yield self._raw

    @staticmethod
    @contextmanager
    def _kernel_errors(action: str) -> Iterator[None]:
        try:
            yield
        except NetcoreError:
            raise
        except (NetlinkError, OSError) as err:
            raise _kernel_error(action, err) from None

    def _open(self) -> None:
        if self._socket is None:
            self._socket_namespace = self._namespace_identity()
            raw = Rtnl(None if self.namespace is None else os.path.join(NETNS_DIR, self.namespace))
            try:
                self._socket = _open_rtnl(self.namespace)
            except BaseException:
                raw.close()
                raise
            self._raw = raw

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._raw.close()
            self._socket = self._raw = None

    def revalidate(self) -> bool:
        """Let the kept socket go if the gateway namespace is no longer the one it was opened in (deleted, or
        deleted and made anew under the same name): the next call opens one in the live namespace. Whether it
        was let go."""
        if self._socket is not None and self._namespace_identity() != self._socket_namespace:
            self.close()
            return True
        return False

    def _namespace_identity(self) -> tuple[int, int] | None:
        """The identity of the gateway namespace now (None: the host's, or none by that name)."""
        return None if self.namespace is None else namespace_identity(os.path.join(NETNS_DIR, self.namespace))

    def ensure(self) -> bool:
        """Create the gateway namespace if it is missing; True if it had to be created."""
        if self.namespace and not namespace_exists(self.namespace):
            create_namespace(self.namespace)
            return True
        return False

    def routes(self) -> list[Route]:
        """The main routing table's routes (the default route excluded): each destination with the name of
        the link it leaves by (None for one without, e.g. a blackhole route)."""
        found = []
        with self._rtnl("cannot read routes") as ipr:
            names = {link["index"]: link.get("ifname") for link in ipr.link("dump")}
            for family in (2, 10):
                for route in ipr.route("dump", family=family, table=MAIN_TABLE):
                    dst = route.get("dst")
                    if dst and route["dst_len"] > 0:
                        found.append(Route(ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False),
                                           names.get(route.get("oif"))))
        return found

    def links(self) -> dict[str, dict]:
        """Every link by name: its kind, the name of its master bridge, if any, its MTU and its addresses
        (``"192.168.0.50/24"``, link-local IPv6 ones left out)."""
        with self._rtnl("cannot list links") as ipr:
            raw = list(ipr.link("dump"))
            addresses = list(ipr.addr("dump"))
        by_index = {link["index"]: link.get("ifname") for link in raw}
        result = {}
        for link in raw:
            info = link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND"))
            result[link.get("ifname")] = {"kind": info, "master": by_index.get(link.get("master")),
                                          "mtu": link.get("IFLA_MTU"), "addresses": []}
        for address in addresses:
            owner = result.get(by_index.get(address["index"]))
            value = address.get("address")
            if owner is not None and value and not ipaddress.ip_address(value).is_link_local:
                owner["addresses"].append(f"{value}/{address['prefixlen']}")
        return result

    def create_bridge(self, name: str, mac: str, mtu: int, gateway: str, prefixlen: int,
                      gateway6: str | None = None, prefixlen6: int | None = None) -> None:
        """The bridge with its gateway address(es); its MAC is pinned so veths coming and going never change it."""
        with self._rtnl(f"cannot create bridge {name}") as ipr:
            if not _lookup(ipr, name):
                ipr.link("add", ifname=name, kind="bridge")
            index = _lookup(ipr, name)[0]
            ipr.link("set", index=index, address=mac, mtu=mtu)
            _add_address(ipr, index, gateway, prefixlen)
            if gateway6:
                _add_address(ipr, index, gateway6, prefixlen6)
            ipr.link("set", index=index, state="up")

    def delete_link(self, name: str) -> None:
        """Delete a bridge or a veth (deleting one end of a veth deletes its peer)."""
        with self._rtnl(f"cannot delete {name}") as ipr:
            _delete_link_named(ipr, name)

    def release_link(self, name: str) -> None:
        """Take a host-side veth out of service, down and off its bridge, in one request, without waiting for
        its deletion: for a veth whose peer's namespace is deleted next, which takes the pair along (the
        kernel's cleanup_net, in the background). Deleting it here would wait 15-40 ms for the kernel's RCU
        grace periods (netdev_run_todo). A link gone already is no error."""
        with self._raw_rtnl(f"cannot release {name}") as rtnl:
            found = _lookup(rtnl, name)
            if found:
                try:
                    rtnl.release(found[0])
                except NetlinkError as err:
                    if err.code != errno.ENODEV:
                        raise

    def attach_endpoint(self, container_ns: str, host_ifname: str, ifname: str, bridge: str, mtu: int,
                        mac: str, isolated: bool) -> None:
        """A veth pair made in one call, its peer born inside the container's namespace. The bridge port is in
        hairpin mode, as Docker sets it when no userland proxy carries published ports: a container reaching its
        own published port through a host address gets its DNATed packets back through the port they came in
        by, which the bridge otherwise refuses."""
        action = f"cannot create veth {host_ifname}"
        with self._raw_rtnl(action) as rtnl:
            master = _lookup(rtnl, bridge)
            if not master:
                raise KernelError(f"{action}: there is no bridge {bridge}")
            peer_netns = os.open(os.path.join(NETNS_DIR, container_ns), os.O_RDONLY | os.O_CLOEXEC)
            try:  # a port of the bridge and up as it is made: two round trips fewer than setting them after
                try:
                    rtnl.add_veth(host_ifname, master[0], mtu, ifname, peer_netns, mac)
                except NetlinkError as err:
                    if err.code != errno.EEXIST or not _lookup(rtnl, host_ifname):
                        raise
                    self.delete_link(host_ifname)  # left by an action killed part way
                    rtnl.add_veth(host_ifname, master[0], mtu, ifname, peer_netns, mac)
            finally:
                os.close(peer_netns)
            rtnl.set_bridge_port(_lookup(rtnl, host_ifname)[0], hairpin=True, isolated=isolated)


    def create_vxlan(self, name: str, vni: int, local: str, underlay: str, port: int, mtu: int,
                     master: str) -> None:
        """A VXLAN device ``name`` (VXLAN ID ``vni``, UDP ``port``) sending from ``local`` over the link
        ``underlay``, with no learning and an ARP proxy (it answers ARP from its permanent neighbour entries:
        no ARP and no flooding cross the overlay; shared/notes/overlay-in-namespaces.md), ``mtu``, a port of
        bridge ``master``, up. Kept if it exists with this ID; made anew if it exists with another (the proxy
        and learning flags cannot be changed later). KernelError names a missing underlay link or bridge, or
        a kernel without VXLAN."""
        action = f"cannot create VXLAN device {name}"
        with self._rtnl(action) as ipr:
            found = _lookup(ipr, underlay)
            if not found:
                raise KernelError(f"{action}: there is no interface {underlay} in the gateway namespace")
            bridge = _lookup(ipr, master)
            if not bridge:
                raise KernelError(f"{action}: there is no bridge {master}")
            existing = _lookup(ipr, name)
            try:
                if existing:
                    data = ipr.get_links(existing[0])[0].get(("IFLA_LINKINFO", "IFLA_INFO_DATA"))
                    if data is None or data.get("IFLA_VXLAN_ID") != vni:
                        ipr.link("del", index=existing[0])
                        existing = []
                if not existing:
                    ipr.link("add", ifname=name, kind="vxlan", vxlan_id=vni, vxlan_port=port, vxlan_local=local,
                             vxlan_link=found[0], vxlan_learning=0, vxlan_proxy=1, mtu=mtu)
                index = _lookup(ipr, name)[0]
                ipr.link("set", index=index, mtu=mtu, master=bridge[0], state="up")
            except NetlinkError as err:
                raise _link_error(action, "vxlan", err) from None

    def create_lan_link(self, kind: str, name: str, parent: str, mode: str, mtu: int | None = None,
                        mac: str | None = None, netns: str | None = None, address: str | None = None,
                        prefixlen: int | None = None) -> None:
        """A macvlan or ipvlan link ``name`` on ``parent`` (a gateway-namespace link) in ``mode`` (macvlan:
        bridge/private/vepa/passthru; ipvlan: l2/l3). With ``netns`` it is born there (the container's
        interface, configured by the engine afterwards); else it stays in the gateway namespace with
        ``address``/``prefixlen`` and up (the shim), kept if it exists. ``mtu``/``mac`` None: the parent's.
        KernelError names a missing parent or a kernel without ``kind`` (EOPNOTSUPP)."""
        action = f"cannot create {kind} link {name} on {parent}"
        with self._rtnl(action) as ipr:
            found = _lookup(ipr, parent)
            if not found:
                raise KernelError(f"{action}: there is no interface {parent} in the gateway namespace")
            attrs: dict = {"ifname": name, "kind": kind, "link": found[0]}
            if kind == "ipvlan":
                attrs["ipvlan_mode"] = IPVLAN_MODES[mode]
            else:
                attrs["macvlan_mode"] = mode
            if mtu:
                attrs["mtu"] = mtu
            if mac:
                attrs["address"] = mac
            if netns:
                attrs["net_ns_fd"] = netns
            elif _lookup(ipr, name):
                attrs = {}  # the shim is there: only its address and state are completed below
            try:
                if attrs:
                    ipr.link("add", **attrs)
                if netns is None:
                    index = _lookup(ipr, name)[0]
                    if address:
                        _add_address(ipr, index, address, prefixlen)
                    ipr.link("set", index=index, state="up")
            except NetlinkError as err:
                raise _link_error(action, kind, err) from None

    def create_parent(self, kind: str, name: str, base: str | None = None, vlan_id: int | None = None) -> None:
        """A parent netcore makes, up: an 802.1q sub-interface ``name`` of ``base`` with ``vlan_id``
        (``kind`` "vlan"), or a dummy link (``kind`` "dummy"); kept if it exists. KernelError names a
        missing ``base`` or a kernel without ``kind``."""
        action = f"cannot create {kind} link {name}"
        with self._rtnl(action) as ipr:
            try:
                if not _lookup(ipr, name):
                    if kind == "vlan":
                        found = _lookup(ipr, base)
                        if not found:
                            raise KernelError(f"{action}: there is no interface {base} in the gateway namespace")
                        ipr.link("add", ifname=name, kind="vlan", link=found[0], vlan_id=vlan_id)
                    else:
                        ipr.link("add", ifname=name, kind=kind)
                ipr.link("set", index=_lookup(ipr, name)[0], state="up")
            except NetlinkError as err:
                raise _link_error(action, kind, err) from None


def configure_container_interface(container_ns: str, ifname: str, address: str | None, prefixlen: int,
                                  gateway: str | None, address6: str | None = None, prefixlen6: int | None = None,
                                  gateway6: str | None = None) -> None:
    """Addresses, IPv6 kept quiet, link up and (unless the network is internal) a default route via the gateway.
    The requests of every container go on a plain rtnetlink socket (netcore.kernel.rtnl: pyroute2's messages
    without its asyncio layer); the IPv6 default route, which needs a dump first, through IPRoute."""
    action = f"cannot configure {ifname} in {container_ns}"
    path = os.path.join(NETNS_DIR, container_ns)
    try:
        with Rtnl(path) as rtnl:
            index = _lookup(rtnl, ifname)[0]
            for added, length in ((address, prefixlen), (address6, prefixlen6)):
                if added:
                    _unless_exists(rtnl.add_address, index, added, length, IFA_F_NODAD if ":" in added else 0)
            try:
                with linux.entered_netns(path):
                    _quiet_ipv6(ifname, ipv6_network=bool(address6))
            except OSError as err:
                raise _kernel_error(f"cannot configure IPv6 of {ifname} in {container_ns}", err) from None
            _set_up(rtnl, index, action)
            if gateway:  # IPv4 refuses a second default route of metric 0 (EEXIST): the first network keeps it
                _unless_exists(rtnl.add_default_route, gateway)
    except NetcoreError:
        raise
    except (NetlinkError, OSError) as err:
        raise _kernel_error(action, err) from None
    if gateway6:
        with _rtnl(container_ns, action) as ipr:
            if not _has_default_route(ipr, 10):
                ipr.route("add", dst="default", gateway=gateway6, family=10)


def _unless_exists(request: Callable[..., None], *args) -> None:
    """``request(*args)``, an exclusive add; EEXIST (it is there: a rebuild, or the first network's default
    route) is done."""
    try:
        request(*args)
    except NetlinkError as err:
        if err.code != errno.EEXIST:
            raise


def _quiet_ipv6(ifname: str, ipv6_network: bool) -> None:
    """Before the link is up, in the container's namespace: no router advertisements taken (nor, so, router
    solicitations sent), and on a network without IPv6 no IPv6 at all, as Docker does. Every solicitation
    and report a container sends to a multicast group is flooded to every port of the bridge: with 1,000
    containers that stalled the whole bridge for tens of ms at a time. Accepting no RA also keeps a
    container from rerouting its neighbours' IPv6 with a forged one (CVE-2020-13401)."""
    conf = f"/proc/sys/net/ipv6/conf/{ifname}"  # this thread's namespace; netlink cannot set these
    if not os.path.isdir(conf):
        return  # a kernel without IPv6
    settings = {"accept_ra": 0, "accept_dad": 0} if ipv6_network else {"accept_ra": 0, "disable_ipv6": 1}
    for key, value in settings.items():
        with open(f"{conf}/{key}", "w") as setting:
            setting.write(f"{value}\n")


def delete_container_link(container_ns: str, ifname: str) -> None:
    """Delete ``ifname`` inside a container's namespace if it is there (a veth's peer goes with it)."""
    with _rtnl(container_ns, f"cannot delete {ifname} in {container_ns}") as ipr:
        _delete_link_named(ipr, ifname)


def _delete_link_named(ipr: IPRoute, name: str) -> None:
    """Delete the link called ``name`` through ``ipr`` if it is there; one gone meanwhile is no error."""
    found = _lookup(ipr, name)
    if found:
        try:
            ipr.link("del", index=found[0])
        except NetlinkError as err:
            if err.code != errno.ENODEV:
                raise


def container_links(container_ns: str) -> list[str]:
    with _rtnl(container_ns, f"cannot list links in {container_ns}") as ipr:
        return [link.get("ifname") for link in ipr.link("dump")]


def _lookup(ipr: IPRoute | Rtnl, name: str) -> list[int]:
    """The index of the link called ``name`` in ``ipr``'s namespace as a one-item list, or [] if there is none:
    ``IPRoute.link_lookup(ifname=name)``'s answer. Asked with the SIOCGIFINDEX ioctl on ``ipr``'s own socket,
    which the kernel answers for any socket in that socket's namespace (net/socket.c, sock_do_ioctl falls back
    to dev_ioctl): a few µs, where pyroute2's lookup took about 0.9 ms of CPU on a quiet machine, six times in
    every ``run``."""
    encoded = name.encode()
    if not encoded or len(encoded) >= IFNAMSIZ or b"\0" in encoded:
        return []  # no link can have this name (the kernel would read a truncated one)
    try:
        reply = fcntl.ioctl(ipr.fileno(), SIOCGIFINDEX, struct.pack("16si", encoded, 0))
    except OSError as err:
        if err.errno == errno.ENODEV:
            return []
        raise
    return [struct.unpack_from("i", reply, IFNAMSIZ)[0]]


def _has_default_route(ipr: IPRoute, family: int) -> bool:
    return any(r["dst_len"] == 0 for r in ipr.route("dump", family=family, table=MAIN_TABLE))


# How long a link's MAC address may stay taken by a link the kernel is still destroying: a namespace is
# torn down asynchronously (net/core/net_namespace.c, cleanup_net on a workqueue), so a macvlan link of a
# namespace just deleted keeps its MAC on the parent for a moment (tens of ms; seconds under load).
MAC_RELEASE_WAIT = 5.0  # seconds


def _set_up(rtnl: Rtnl, index: int, action: str) -> None:
    """Bring link ``index`` up. A macvlan link whose MAC another macvlan link of the same parent holds gets
    EADDRINUSE (drivers/net/macvlan.c, macvlan_open): when that link belongs to a namespace being destroyed,
    it goes within moments, so this waits up to MAC_RELEASE_WAIT seconds for it; then KernelError names
    the conflict."""
    deadline = time.monotonic() + MAC_RELEASE_WAIT
    while True:
        try:
            rtnl.set_up(index)
            return
        except NetlinkError as err:
            if err.code != errno.EADDRINUSE:
                raise
            if time.monotonic() >= deadline:
                raise KernelError(f"{action}: its MAC address is in use by another macvlan link on the same "
                                  "parent interface") from None
            time.sleep(0.02)


def _add_address(ipr: IPRoute, index: int, address: str, prefixlen: int) -> None:
    flags = IFA_F_NODAD if ":" in address else 0
    try:
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen, flags=flags)
    except NetlinkError as err:
        if err.code != errno.EEXIST:
            raise
