"""The domain model: networks, containers and endpoints, as stored.

These frozen records are the contract between netcore (which writes them) and
dnsd (which builds its answering snapshot from them). They hold facts only;
everything else (bridge MTU, whether a network has DNS) is derived here, once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

DEFAULT_BRIDGE = "bridge"  # Docker's default network: no name resolution
DEFAULT_BRIDGE_DEVICE = "netcore0"
DEFAULT_BRIDGE_SUBNET = "172.17.0.0/16"
DEFAULT_MTU = 1500

# The options the derived facts below read. Every other option name is its driver's (netcore.network).
OPT_MTU = "com.docker.network.driver.mtu"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"

# networks whose traffic does not cross the gateway namespace (netcore.network.macvlan): the link they hang on,
# and the shim's address in the gateway namespace (dnsd listens there)
OPT_PARENT = "parent"  # the interface in the gateway namespace the network's links hang on
OPT_SHIM_ADDRESS = "shim_address"
# addresses of the subnet no container gets, as Docker's --aux-address: "NAME=IP,NAME=IP" (macvlan/ipvlan: the
# host's own addresses on the parent, issue 23, item 1)
OPT_AUX_ADDRESSES = "netcore.aux_addresses"
_FALSE = ("false", "0", "no")

# Docker's rule for container and network names, with a bound on the length so
# a name always fits a DNS label, a path component and a netns name.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
NAME_MAX = 63

DNS_PORT = 53

MODE_BRIDGE = "bridge"  # attached to one or more bridge networks through veths
MODE_HOST = "host"  # shares the gateway namespace
MODE_NONE = "none"  # loopback only
MODE_CONTAINER = "container"  # shares another container's namespace

STATE_CREATING = "creating"  # rows written, kernel work not yet finished
STATE_RUNNING = "running"
STATE_REMOVING = "removing"  # kernel teardown in progress


def parse_dns_server(text: str) -> tuple[str, int]:
    """A DNS server as users write it and the store keeps it: ``IP``, ``IP:PORT`` or ``[IPv6]:PORT``.

    Returns (address, port); ValueError if it is none of them.
    """
    host, port = text.strip(), str(DNS_PORT)
    if host.startswith("["):
        host, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            host = ""
        port = rest[1:] or port
    elif host.count(":") == 1:
        host, port = host.split(":")
    try:
        address = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ValueError(f"bad DNS server {text!r}: expected IP, IP:PORT or [IPv6]:PORT") from None
    if not 0 < number < 65536:
        raise ValueError(f"bad DNS server {text!r}: port out of range")
    return str(address), number


@dataclass(frozen=True)
class Network:
    id: str  # 64 hex
    name: str
    bridge: str  # device name in the gateway namespace
    subnet: str  # IPv4 CIDR
    gateway: str  # IPv4 address on the bridge (macvlan/ipvlan: the LAN's router, no address of netcore's)
    ip_range: str | None = None
    subnet6: str | None = None
    gateway6: str | None = None
    ip_range6: str | None = None
    internal: bool = False
    dns: tuple[str, ...] = ()  # upstream servers "IP" or "IP:PORT", in order
    options: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    driver: str = "bridge"
    routed: bool = True  # its driver's word: the gateway namespace routes, filters and masquerades its traffic
    state: str = STATE_RUNNING
    created: str = ""

    @property
    def dns_enabled(self) -> bool:
        """User-defined bridges get dnsd; the default bridge, as in Docker, does not."""
        return self.name != DEFAULT_BRIDGE

    @property
    def routed_by_gateway(self) -> bool:
        """Whether the containers' traffic crosses the gateway namespace (``routed``, as the network's driver
        said when it was made: netcore.network.NetworkDriver.routed): on a bridge it does (the gateway
        namespace routes, filters and masquerades it); on macvlan and ipvlan it goes straight onto the
        parent's LAN, and the gateway namespace only holds the shim (docs/ARCHITECTURE.md)."""
        return self.routed

    @property
    def dns_addresses(self) -> tuple[str, ...]:
        """The addresses dnsd serves this network on, and the first of which containers' resolv.conf names:
        the one home of that fact (engine, firewall, dnsd's builder, inspect). On a bridge its gateway
        address(es); on macvlan and ipvlan the shim's address (``shim_address``), since the gateway there is
        the LAN's router; empty when the network has no names (the default bridge) or no shim (macvlan
        private and passthru modes: nothing on the parent can reach a host address)."""
        if not self.dns_enabled:
            return ()
        if self.routed_by_gateway:
            return tuple(a for a in (self.gateway, self.gateway6) if a)
        shim = self.options.get(OPT_SHIM_ADDRESS)
        return (shim,) if shim else ()

    @property
    def aux_addresses(self) -> dict[str, str]:
        """Addresses of the subnet taken by others, by name (Docker's ``--aux-address NAME=IP``, which inspect
        shows as ``AuxiliaryAddresses``): on macvlan and ipvlan the host's own addresses on the parent
        (``eth0=192.168.0.50``), recorded at ``network create``."""
        text = self.options.get(OPT_AUX_ADDRESSES, "")
        return dict(item.split("=", 1) for item in text.split(",") if "=" in item)

    @property
    def reserved_addresses(self) -> tuple[str, ...]:
        """Addresses of the subnet no container gets besides the gateway: the shim's on macvlan and ipvlan,
        and the ``aux_addresses``."""
        shim = None if self.routed_by_gateway else self.options.get(OPT_SHIM_ADDRESS)
        return (*((shim,) if shim else ()), *self.aux_addresses.values())

    @property
    def enable_ipv6(self) -> bool:
        return self.subnet6 is not None

    @property
    def mtu(self) -> int:
        return int(self.options.get(OPT_MTU, DEFAULT_MTU))

    @property
    def icc(self) -> bool:
        """Inter-container communication on this bridge (Docker's enable_icc)."""
        return str(self.options.get(OPT_ICC, "true")).lower() not in _FALSE

    @property
    def masquerade(self) -> bool:
        """Outgoing traffic NATed to the gateway namespace's address (Docker's enable_ip_masquerade);
        an internal network never is, whatever the option says."""
        return (not self.internal and self.routed_by_gateway
                and str(self.options.get(OPT_MASQUERADE, "true")).lower() not in _FALSE)

    def effective_options(self) -> dict[str, str]:
        """The options as given, with Docker's booleans this network enforces filled in where not given
        (what ``network inspect`` shows, as Docker shows ``enable_icc`` and ``enable_ip_masquerade``);
        macvlan and ipvlan networks show their options as stored (those switches are a bridge's)."""
        if not self.routed_by_gateway:
            return dict(self.options)
        return {OPT_ICC: str(self.icc).lower(), OPT_MASQUERADE: str(self.masquerade).lower(), **self.options}


@dataclass(frozen=True)
class Container:
    id: str  # 64 hex
    name: str
    hostname: str
    netns: str  # named network namespace its processes run in
    mode: str = MODE_BRIDGE
    peer: str | None = None  # container id whose namespace is shared (MODE_CONTAINER)
    dns: tuple[str, ...] = ()  # the container's own --dns servers, "IP" or "IP:PORT"
    labels: dict = field(default_factory=dict)  # kept and shown by inspect (Compose's project labels among them)
    state: str = STATE_RUNNING
    created: str = ""
    dns_search: tuple[str, ...] = ()  # --dns-search: resolv.conf's search domains ("." alone: none)
    extra_hosts: tuple[str, ...] = ()  # --add-host "HOST:IP" lines for its hosts file (IP may be host-gateway)

    @property
    def short_id(self) -> str:
        return self.id[:12]


# A container's main process (``run -d -- CMD``, a Compose service's command): Docker's statuses
PROCESS_CREATED = "created"  # recorded, never started (or its start failed: ``error`` says why)
PROCESS_RUNNING = "running"
PROCESS_EXITED = "exited"
EXIT_UNKNOWN = 255  # the exit status of a process that ended while netcored was not its parent (Docker's 255)


@dataclass(frozen=True)
class MainProcess:
    """A container's main process, as stored: its ``argv``, Docker's ``status`` (created, running, exited);
    while running its ``pid`` with ``start_ticks`` (field 22 of /proc/PID/stat: a pid reused by another
    program has another) and the ``boot_id`` it was started in; once ended its ``exit_code`` (128+N for a
    signal, as Docker reports it; ``EXIT_UNKNOWN`` when netcored was not its parent then) and ``error``
    (why it could not start, or why the status is unknown). Times as ``Container.created``."""

    container_id: str
    argv: tuple[str, ...]
    status: str = PROCESS_CREATED
    pid: int | None = None
    start_ticks: int | None = None
    boot_id: str = ""
    exit_code: int | None = None
    error: str = ""
    started: str = ""
    finished: str = ""


@dataclass(frozen=True)
class Endpoint:
    id: str  # 64 hex
    container_id: str
    network_id: str
    ifname: str  # inside the container: eth0, eth1, ...
    host_ifname: str  # veth end on the bridge: "veth" + 7 hex (macvlan/ipvlan: a unique name, no link)
    mac: str
    ipv4: str | None
    ipv6: str | None = None
    aliases: tuple[str, ...] = ()  # network-scoped --net-alias names
    state: str = STATE_RUNNING


@dataclass(frozen=True)
class PortBinding:
    """One published host port (``run -p``): Docker's PortBinding, one row per host port, so a range is
    several rows. ``protocol``: tcp, udp or sctp; ``host_ip``: '' for every address of the host (IPv4 and,
    where the container's network has IPv6, IPv6), else one address as given; ``requested``: the host
    part as the user wrote it ('' for an ephemeral port, ``8080``, ``8000-8010``), which ``inspect``
    shows as ``HostConfig.PortBindings``. netcore.ports decides everything about them."""

    container_id: str
    protocol: str
    container_port: int
    host_ip: str
    host_port: int
    requested: str = ""


def dns_names(container: Container, endpoint: Endpoint) -> tuple[str, ...]:
    """The names a container answers to on the network of ``endpoint``, in the order of Docker's DNSNames
    (moby's buildEndpointDNSNames): its name, the endpoint's aliases, its 12-hex short ID, its hostname;
    empty ones left out, each kept once as spelled. ``network inspect`` shows them; dnsd serves each,
    case-insensitively, and each as NAME.NETWORK."""
    names = (container.name, *endpoint.aliases, container.short_id, container.hostname)
    return tuple(dict.fromkeys(name for name in names if name))


def removal_order(containers: Iterable[Container]) -> list[Container]:
    """The order in which to remove these containers: each one after every container that shares its namespace.

    A container run with ``--net container:NAME`` keeps NAME's ID in ``peer``, and
    the schema holds that reference (``containers.peer REFERENCES containers(id)``),
    so its row must go before its owner's: deleting the owner first fails the
    foreign key. Otherwise the given order is kept; each owner's dependents
    (in their given order, chains of any depth) come right before it.
    Duplicates (the same ID) count once; a dependent whose owner is not among
    ``containers`` stays where it is. Pure: reads nothing, raises nothing.
    """
    given: dict[str, Container] = {}
    for container in containers:
        given.setdefault(container.id, container)
    dependents: dict[str, list[Container]] = {}
    for container in given.values():
        if container.peer in given and container.peer != container.id:
            dependents.setdefault(container.peer, []).append(container)
    ordered: list[Container] = []
    seen: set[str] = set()
    for root in given.values():
        if root.id in seen:
            continue
        seen.add(root.id)
        stack = [(root, iter(dependents.get(root.id, ())))]
        while stack:  # depth first, dependents before their owner; no recursion limit on long chains
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                ordered.append(node)
            elif child.id not in seen:
                seen.add(child.id)
                stack.append((child, iter(dependents.get(child.id, ()))))
    return ordered


Attached = tuple[Container, list[Endpoint]]  # a container and its endpoints, in no particular order


def group_by_container(containers: Iterable[Container], endpoints: Iterable[Endpoint]) -> list[Attached]:
    """Each container with its endpoints; endpoints of containers not among them are left out."""
    attached: dict[str, Attached] = {container.id: (container, []) for container in containers}
    for endpoint in endpoints:
        if endpoint.container_id in attached:
            attached[endpoint.container_id][1].append(endpoint)
    return list(attached.values())
