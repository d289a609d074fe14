"""Published ports (``run -p``), pure: Docker's grammar, host-port choice, conflicts, and what each binding maps to.

The grammar is Docker's (``docker run --publish``, moby's ``nat.ParsePortSpec``):

    [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|udp|sctp]

- no host port: an ephemeral one, from the gateway namespace's
  ``net.ipv4.ip_local_port_range`` less ``ip_local_reserved_ports``, handed
  out in turn after the last one given (Docker's port allocator does the same,
  so a port just released is not handed out again at once);
- a host range and one container port: the first free port of the range;
- a host range and a container range of the same length: port to port;
- no host IP: every address of the host, IPv4 and, where the container's
  network has IPv6, IPv6; ``0.0.0.0`` is every IPv4 address only and ``[::]``
  every IPv6 address only; an IPv6 address goes in brackets.

Each published host port becomes one ``PortBinding`` row. The firewall maps a
binding to the container's address on its first non-internal network (the
lowest ``ethN``; Docker publishes on the network that gives the container its
gateway), as ``Mapping`` records (``mappings``), one per address family.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from netcore.model import DNS_PORT, STATE_RUNNING, Container, Endpoint, Network, PortBinding

PROTOCOLS = ("tcp", "udp", "sctp")
PORT_MAX = 65535
EPHEMERAL_DEFAULT = (32768, 60999)  # the kernel's default ip_local_port_range


class PublishError(ValueError):
    """A ``-p`` spec that is not Docker's grammar; its text is one line for the user."""


@dataclass(frozen=True)
class PublishSpec:
    """One parsed ``-p`` value: ``host_ip`` '' (every address) or an address as ``ipaddress`` prints it;
    ``host_ports`` (first, last) or None (ephemeral); ``container_ports`` (first, last); ``protocol``."""

    host_ip: str
    host_ports: tuple[int, int] | None
    container_ports: tuple[int, int]
    protocol: str = "tcp"

    @property
    def requested(self) -> str:
        """The host port part as written: '' (ephemeral), ``8080`` or ``8000-8010``."""
        if self.host_ports is None:
            return ""
        first, last = self.host_ports
        return str(first) if first == last else f"{first}-{last}"

    def __str__(self) -> str:
        """The spec as ``-p`` takes it, normalised: ``[::]:8090:8090/tcp``, ``127.0.0.1::53/udp``, ``80/tcp``."""
        ports = "-".join(dict.fromkeys(map(str, self.container_ports)))
        host = self.requested
        if self.host_ip:
            return f"{_host(self.host_ip)}:{host}:{ports}/{self.protocol}"
        return f"{host}:{ports}/{self.protocol}" if host else f"{ports}/{self.protocol}"

    def requests(self) -> list[PortRequest]:
        """One request per container port, each with the host ports it may take (first, last), or None."""
        first, last = self.container_ports
        requests = []
        for offset, container_port in enumerate(range(first, last + 1)):
            if self.host_ports is None:
                host = None
            elif first == last:
                host = self.host_ports  # a host range for one container port: the first free of it
            else:
                host = (self.host_ports[0] + offset,) * 2  # equal ranges: port to port
            requests.append(PortRequest(self.protocol, container_port, self.host_ip, host, self.requested, str(self)))
        return requests


class PortRequest(NamedTuple):
    """One container port to publish: ``host_ports`` (first, last) it may take, or None for an ephemeral one."""

    protocol: str
    container_port: int
    host_ip: str
    host_ports: tuple[int, int] | None
    requested: str
    spec: str = ""  # the -p it came from (PublishSpec's str), for messages

    @property
    def fixed(self) -> bool:
        """Whether it asks for exactly one host port."""
        return self.host_ports is not None and self.host_ports[0] == self.host_ports[1]


def _port_range(text: str, what: str, spec: str) -> tuple[int, int]:
    first_text, dash, last_text = text.partition("-")
    try:
        first = int(first_text, 10)
        last = int(last_text, 10) if dash else first
    except ValueError:
        raise PublishError(f"invalid {what} {text!r} in -p {spec!r}: expected a port or a range PORT-PORT") from None
    if not (0 < first <= PORT_MAX and 0 < last <= PORT_MAX):
        raise PublishError(f"invalid {what} {text!r} in -p {spec!r}: ports are 1 to {PORT_MAX}")
    if last < first:
        raise PublishError(f"invalid {what} {text!r} in -p {spec!r}: the range ends before it starts")
    return first, last


def _host_ip(text: str, spec: str) -> str:
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1]
        try:
            address = ipaddress.IPv6Address(inner)
        except ValueError:
            raise PublishError(f"invalid host IP {text!r} in -p {spec!r}: not an IPv6 address") from None
    else:
        try:
            address = ipaddress.IPv4Address(text)
        except ValueError:
            raise PublishError(f"invalid host IP {text!r} in -p {spec!r}: expected an IPv4 address or "
                               "[IPv6 address]") from None
    if address.version == 6 and address.is_loopback:
        raise PublishError(f"cannot publish on {text} (-p {spec!r}): the kernel does not route IPv6 loopback "
                           "to a container; publish on 127.0.0.1, or on every address")
    return address.compressed


def _split(rest: str, spec: str) -> tuple[str, str, str]:
    """(host IP, host ports, container ports) of a spec without its protocol; '' where absent."""
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0 or rest[close + 1:close + 2] != ":":
            raise PublishError(f"invalid -p {spec!r}: expected [IPv6]:HOST_PORT:CONTAINER_PORT")
        ip, remainder = rest[:close + 1], rest[close + 2:]
        host, sep, container = remainder.partition(":")
        if not sep:
            raise PublishError(f"invalid -p {spec!r}: expected [IPv6]:HOST_PORT:CONTAINER_PORT")
        return ip, host, container
    parts = rest.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 3:
        if not parts[0]:
            raise PublishError(f"invalid -p {spec!r}: an empty host IP; leave it out to publish on every address")
        return parts[0], parts[1], parts[2]
    raise PublishError(f"invalid -p {spec!r}: too many ':'; an IPv6 host address goes in brackets, "
                       "[ADDRESS]:HOST_PORT:CONTAINER_PORT")


def parse_publish(spec: str) -> PublishSpec:
    """Parse one ``-p`` value (module docstring); PublishError with one line naming what is wrong.

    As Docker: ``80:`` (no container port), ``70000:80`` (out of range),
    ``8000-8002:80-81`` (ranges of different lengths), ``1.2.3.4.5::80``
    (not an address) and ``80/icmp`` (unknown protocol) are refused.
    """
    text = spec.strip()
    rest, slash, protocol = text.rpartition("/")
    if not slash:
        rest, protocol = text, "tcp"
    protocol = protocol.lower()
    if protocol not in PROTOCOLS:
        raise PublishError(f"invalid protocol {protocol!r} in -p {spec!r}: expected tcp, udp or sctp")
    ip_text, host_text, container_text = _split(rest, spec)
    if not container_text:
        raise PublishError(f"invalid -p {spec!r}: no container port")
    container = _port_range(container_text, "container port", spec)
    host = _port_range(host_text, "host port", spec) if host_text else None
    if host is not None and container[0] != container[1] and host[1] - host[0] != container[1] - container[0]:
        raise PublishError(f"invalid -p {spec!r}: the host range {host_text} and the container range "
                           f"{container_text} differ in length")
    return PublishSpec(_host_ip(ip_text, spec) if ip_text else "", host, container, protocol)


# -- host ports: which are free, in which order ------------------------------------------------------------


def parse_port_range(text: str) -> tuple[int, int]:
    """``/proc/sys/net/ipv4/ip_local_port_range`` ("32768\\t60999") -> (32768, 60999); ValueError if malformed."""
    first, last = (int(field) for field in text.split())
    if not 0 < first <= last <= PORT_MAX:
        raise ValueError(f"bad port range {text!r}")
    return first, last


def parse_reserved_ports(text: str) -> frozenset[int]:
    """``/proc/sys/net/ipv4/ip_local_reserved_ports`` ("8080,9000-9010" or empty) -> the ports it names."""
    reserved: set[int] = set()
    for item in filter(None, (part.strip() for part in text.split(","))):
        first, _, last = item.partition("-")
        reserved.update(range(int(first), int(last or first) + 1))
    return frozenset(reserved)


def ephemeral_candidates(port_range: tuple[int, int], reserved: Iterable[int], last: int | None) -> Iterator[int]:
    """The ports an ephemeral request tries, in order: those of ``port_range`` not ``reserved``, starting
    after ``last`` (the previous one handed out for the protocol) and wrapping around once."""
    first, end = port_range
    skip = frozenset(reserved)
    start = last + 1 if last is not None and first <= last < end else first
    for port in (*range(start, end + 1), *range(first, start)):
        if port not in skip:
            yield port


def overlaps(a: str, b: str) -> bool:
    """Whether two host IPs of bindings on one port and protocol collide: '' (every address) collides
    with everything, ``0.0.0.0`` with every IPv4 address, ``::`` with every IPv6 address, else equal ones."""
    if not a or not b or a == b:
        return True
    first, second = ipaddress.ip_address(a), ipaddress.ip_address(b)
    return first.version == second.version and (first.is_unspecified or second.is_unspecified)


def conflict(protocol: str, host_ip: str, host_port: int, bindings: Iterable[PortBinding]) -> PortBinding | None:
    """The stored binding that already takes ``host_ip``:``host_port``/``protocol``, or None."""
    for binding in bindings:
        if binding.protocol == protocol and binding.host_port == host_port and overlaps(binding.host_ip, host_ip):
            return binding
    return None


def covers(wide: str, narrow: str) -> bool:
    """Whether host IP ``wide`` takes in every address ``narrow`` does: '' (every address) covers
    everything, ``0.0.0.0`` every IPv4 address, ``::`` every IPv6 address, and an address itself."""
    if not wide or wide == narrow:
        return True
    if not narrow:
        return False
    first, second = ipaddress.ip_address(wide), ipaddress.ip_address(narrow)
    return first.is_unspecified and first.version == second.version


def plan_requests(specs: Iterable[PublishSpec]) -> list[PortRequest]:
    """The port requests of one container's ``-p`` specs, merged among themselves and in the order they
    are given host ports: exact host ports first, then ranges and ephemeral ones (Docker's order,
    moby's ``cmpPortBinding``, so a range cannot take the port a later exact request names), each group in
    the order given.

    Two requests for the same protocol, container port and host port (or range, or ephemeral port)
    whose host addresses overlap are one request: the one with the wider address stays (``-p 8090:8090
    -p '[::]:8090:8090'``: every address already takes in ``[::]``), as Docker allocates one host port
    for bindings that differ only in host address (``needSamePort``). Two exact requests of one host
    port and protocol on overlapping addresses for different container ports cannot both be published:
    PublishError, one line naming both specs (issue 23, item 8). Pure."""
    merged: list[PortRequest] = []
    for spec in specs:
        for request in spec.requests():
            same = next((i for i, kept in enumerate(merged)
                         if (kept.protocol, kept.container_port, kept.host_ports) ==
                         (request.protocol, request.container_port, request.host_ports)
                         and overlaps(kept.host_ip, request.host_ip)), None)
            if same is None:
                merged.append(request)
            elif covers(request.host_ip, merged[same].host_ip) and request.host_ip != merged[same].host_ip:
                merged[same] = request
    fixed = [r for r in merged if r.fixed]
    for i, first in enumerate(fixed):
        for second in fixed[i + 1:]:
            if (first.protocol, first.host_ports) == (second.protocol, second.host_ports) \
                    and overlaps(first.host_ip, second.host_ip):
                where = first.host_ip if covers(second.host_ip, first.host_ip) else second.host_ip
                raise PublishError(f"-p {first.spec} and -p {second.spec} collide: both publish {first.protocol} "
                                   f"host port {first.host_ports[0]} on {_host(where) if where else 'every address'}"
                                   f" (to container ports {first.container_port} and {second.container_port})")
    return fixed + [r for r in merged if not r.fixed]


# -- what each binding maps to -------------------------------------------------------------------------------


class HostPort(NamedTuple):
    """A socket netcore holds open so no host process takes a published port: ``protocol``, the
    ``address`` it binds (``0.0.0.0``/``::`` for every address) and ``port``. ``str``: ``tcp 0.0.0.0:8080``."""

    protocol: str
    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.protocol} {_host(self.address)}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> HostPort:
        """The inverse of ``str``; ValueError if ``text`` is not one."""
        protocol, _, rest = text.partition(" ")
        host, _, port = rest.rpartition(":")
        return cls(protocol, host.strip("[]"), int(port))

    def shares_dns_port(self, dns_port: int = DNS_PORT) -> bool:
        """Whether this socket takes dnsd's port (``dns_port``, UDP or TCP) on every address of its family
        (``-p 53:53/udp`` for a Pi-hole, issue 23 item 3), and so shares the port with dnsd's listeners on
        the gateway addresses. The kernel lets a wildcard and a specific socket share a port only when both
        set SO_REUSEPORT (as the same user), so such a socket does, as dnsd's listeners always do: the more
        specific socket gets the packets for its address (dnsd's), and the firewall maps the others
        (netcore.nftables). Any other published port keeps its port to itself."""
        return (self.protocol in ("udp", "tcp") and self.port == dns_port
                and ipaddress.ip_address(self.address).is_unspecified)


def published_flow(port: HostPort, protocol: str, destination: str, destination_port: int,
                   local: Iterable[str]) -> bool:
    """Whether a connection-tracking flow, by its original direction's ``protocol`` (``tcp``, ``udp``,
    ``sctp``), ``destination`` address and ``destination_port``, is a flow to the published host port
    ``port``: the same protocol and port, to ``port``'s own address, or for a port on every address
    (``0.0.0.0``/``::``) to any address of that family the gateway namespace has (``local``) or a loopback
    one. A flow the gateway namespace forwards to another machine's port of the same number is not
    (issue 24, item 6: only the published port's flows are deleted). Pure."""
    if protocol != port.protocol or destination_port != port.port:
        return False
    wanted, found = ipaddress.ip_address(port.address), ipaddress.ip_address(destination)
    if found.version == 6 and found.ipv4_mapped is not None:
        found = found.ipv4_mapped
    if wanted.version != found.version:
        return False
    if not wanted.is_unspecified:
        return found == wanted
    return found.is_loopback or str(found) in {str(ipaddress.ip_address(a)) for a in local}


@dataclass(frozen=True)
class Mapping:
    """One published port as the firewall maps it, in one address family: packets to ``host_ip``
    ('' every address of the host) port ``host_port``/``protocol`` go to ``address``:``container_port``,
    the container's address on the network ``network_id`` whose device is ``bridge``."""

    protocol: str
    family: int  # 4 or 6
    host_ip: str
    host_port: int
    address: str
    container_port: int
    network_id: str
    bridge: str
    container_id: str
    container: str  # the container's name, for messages

    @property
    def loopback(self) -> bool:
        """Published on a loopback address (127.0.0.0/8): reachable from the host alone."""
        return bool(self.host_ip) and ipaddress.ip_address(self.host_ip).is_loopback

    @property
    def reaches_loopback(self) -> bool:
        """The host reaches it through 127.0.0.1 (every address, or a loopback one): the bridge then needs
        ``route_localnet`` and loopback sources masquerading (IPv4 only: IPv6 has no such route)."""
        return self.family == 4 and (not self.host_ip or self.loopback)

    @property
    def held(self) -> HostPort:
        """The socket that keeps the host port taken."""
        return HostPort(self.protocol, self.host_ip or ("0.0.0.0" if self.family == 4 else "::"), self.host_port)


def target_endpoint(endpoints: Iterable[Endpoint], networks: dict[str, Network]) -> Endpoint | None:
    """The endpoint published ports reach: the running one on a running non-internal network routed by the
    gateway namespace (a bridge; a macvlan container is reached on the LAN itself) with the lowest interface
    name (eth0 before eth1); None when the container has none (nothing reaches its ports)."""
    candidates = [e for e in endpoints if e.state == STATE_RUNNING and e.network_id in networks
                  and networks[e.network_id].state == STATE_RUNNING and not networks[e.network_id].internal
                  and networks[e.network_id].routed_by_gateway]
    return min(candidates, key=lambda e: (len(e.ifname), e.ifname), default=None)


def mappings(bindings: Iterable[PortBinding], networks: Iterable[Network], containers: Iterable[Container],
             endpoints: Iterable[Endpoint]) -> list[Mapping]:
    """The mappings the records call for: running containers' bindings, each to the address of its target
    endpoint (``target_endpoint``) in each family both have; in the bindings' order, IPv4 before IPv6."""
    by_id = {n.id: n for n in networks}
    running = {c.id: c for c in containers if c.state == STATE_RUNNING}
    attached: dict[str, list[Endpoint]] = {}
    for endpoint in endpoints:
        attached.setdefault(endpoint.container_id, []).append(endpoint)
    found = []
    for binding in bindings:
        container = running.get(binding.container_id)
        target = container and target_endpoint(attached.get(container.id, ()), by_id)
        if target is None:
            continue
        family = ipaddress.ip_address(binding.host_ip).version if binding.host_ip else None
        for version, address in ((4, target.ipv4), (6, target.ipv6)):
            if address and family in (None, version):
                found.append(Mapping(binding.protocol, version, binding.host_ip, binding.host_port, address,
                                     binding.container_port, target.network_id, by_id[target.network_id].bridge,
                                     container.id, container.name))
    return found


# -- what users read ----------------------------------------------------------------------------------------


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def port_key(protocol: str, container_port: int) -> str:
    """Docker's key of a container port: ``80/tcp``."""
    return f"{container_port}/{protocol}"


def published_addresses(binding: PortBinding, ipv6: bool) -> list[str]:
    """The host addresses a binding is published on, as Docker shows them: '' -> ``0.0.0.0`` (and ``::``
    when the container's network has IPv6), else the address itself."""
    if binding.host_ip:
        return [binding.host_ip]
    return ["0.0.0.0", "::"] if ipv6 else ["0.0.0.0"]


def port_lines(bindings: Iterable[PortBinding], ipv6: bool) -> list[str]:
    """``netcore port`` lines, Docker's: ``80/tcp -> 0.0.0.0:8080``, sorted by container port and protocol."""
    ordered = sorted(bindings, key=lambda b: (b.container_port, b.protocol, b.host_port, b.host_ip))
    return [f"{port_key(b.protocol, b.container_port)} -> {_host(address)}:{b.host_port}"
            for b in ordered for address in published_addresses(b, ipv6)]


def parse_port_filter(text: str) -> tuple[int, str]:
    """``netcore port CONTAINER PORT[/PROTO]``: (port, protocol); PublishError if malformed."""
    number, _, protocol = text.partition("/")
    protocol = protocol.lower() or "tcp"
    if protocol not in PROTOCOLS:
        raise PublishError(f"invalid protocol {protocol!r} in {text!r}: expected tcp, udp or sctp")
    try:
        port = int(number, 10)
    except ValueError:
        raise PublishError(f"invalid port {text!r}: expected PORT[/PROTO]") from None
    if not 0 < port <= PORT_MAX:
        raise PublishError(f"invalid port {text!r}: ports are 1 to {PORT_MAX}")
    return port, protocol
