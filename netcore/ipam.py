"""IP address management: pools, subnets and lowest-free addresses. Pure: no I/O.

Addresses are handed out the way Docker's default IPAM does: a new network
takes the lowest free subnet of the default pools, its gateway is the first
host address, and containers get the lowest free address inside the network's
ip-range (or its whole subnet), never the network, broadcast or gateway address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Iterator

from netcore.errors import Conflict, NetcoreError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Docker's default address pools, in the order it draws from them:
# (base, size of each subnet carved from it).
DEFAULT_POOLS: tuple[tuple[str, int], ...] = (
    ("172.17.0.0/16", 16),
    ("172.18.0.0/16", 16),
    ("172.19.0.0/16", 16),
    ("172.20.0.0/14", 16),
    ("172.24.0.0/14", 16),
    ("172.28.0.0/14", 16),
    ("192.168.0.0/16", 20),
)


def pool_subnets(pools: Iterable[tuple[str, int]] = DEFAULT_POOLS) -> Iterator[ipaddress.IPv4Network]:
    """Every candidate subnet of the pools, lowest first in pool order."""
    for base, size in pools:
        yield from ipaddress.ip_network(base).subnets(new_prefix=size)


def parse_subnet(text: str) -> IPNetwork:
    """A CIDR as the user wrote it; host bits set are an error, as in Docker."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise NetcoreError(f"invalid subnet {text!r}: expected a CIDR such as 172.30.0.0/16") from None
    if "/" not in text:
        raise NetcoreError(f"invalid subnet {text!r}: the prefix length is missing (for example {text}/24)")
    if net.network_address != ipaddress.ip_interface(text).ip:
        raise NetcoreError(f"invalid subnet {text!r}: host bits are set (did you mean {net}?)")
    max_prefix = 30 if net.version == 4 else 126
    if net.prefixlen > max_prefix:
        raise NetcoreError(f"invalid subnet {text!r}: too small, the prefix must be /{max_prefix} or shorter")
    return net


def prefixlen(cidr: str | None) -> int | None:
    """The prefix length of a stored CIDR (``"10.1.0.0/24"`` -> 24); None for no subnet (a network without IPv6)."""
    return ipaddress.ip_network(cidr).prefixlen if cidr else None


def parse_address(text: str, what: str = "address") -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise NetcoreError(f"invalid {what} {text!r}: expected an IP address such as 172.30.0.1") from None


def choose_subnet(taken: Iterable[IPNetwork],
                  pools: Iterable[tuple[str, int]] = DEFAULT_POOLS) -> ipaddress.IPv4Network:
    """The lowest pool subnet that overlaps none of ``taken`` (networks and routes)."""
    taken4 = [t for t in taken if t.version == 4]
    for candidate in pool_subnets(pools):
        if not any(candidate.overlaps(t) for t in taken4):
            return candidate
    raise NetcoreError("all predefined address pools are exhausted: remove a network or give --subnet")


def check_no_overlap(subnet: IPNetwork, existing: dict[str, IPNetwork]) -> None:
    """Refuse a subnet that overlaps a network (or route) already there; ``existing`` maps a description to its
    subnet."""
    for owner, other in existing.items():
        if other.version == subnet.version and subnet.overlaps(other):
            raise Conflict(f"subnet {subnet} overlaps {other} of {owner}")


def usable_bounds(subnet: IPNetwork) -> tuple[int, int]:
    """First and last address a host may use: not the network address, not the IPv4 broadcast."""
    first = int(subnet.network_address) + 1
    last = int(subnet.broadcast_address) - (1 if subnet.version == 4 else 0)
    return first, last


def plan_gateway(subnet: IPNetwork, gateway: str | None) -> IPAddress:
    """The gateway address: the first host address unless the user named one inside the subnet."""
    if gateway is None:
        return ipaddress.ip_address(usable_bounds(subnet)[0])
    address = parse_address(gateway, "gateway")
    check_host_address(subnet, address, "gateway")
    return address


def plan_ip_range(subnet: IPNetwork, ip_range: str | None) -> IPNetwork | None:
    if ip_range is None:
        return None
    rng = parse_subnet(ip_range) if "/" in ip_range else None
    if rng is None:
        raise NetcoreError(f"invalid ip-range {ip_range!r}: expected a CIDR inside the subnet")
    if rng.version != subnet.version or not rng.subnet_of(subnet):
        raise NetcoreError(f"ip-range {rng} is not inside subnet {subnet}")
    return rng


def check_host_address(subnet: IPNetwork, address: IPAddress, what: str) -> None:
    if address.version != subnet.version or address not in subnet:
        raise NetcoreError(f"{what} {address} is not inside subnet {subnet}")
    first, last = usable_bounds(subnet)
    if not first <= int(address) <= last:
        raise NetcoreError(f"{what} {address} is the network or broadcast address of {subnet}")


def allocate_address(
    subnet: IPNetwork,
    gateway: IPAddress,
    taken: Iterable[str],
    ip_range: IPNetwork | None = None,
    requested: str | None = None,
) -> IPAddress:
    """The requested address if it is free, else the lowest free one in the range."""
    used = {_to_int(a) for a in taken}
    used.add(int(gateway))
    if requested is not None:
        address = parse_address(requested, "address")
        check_host_address(subnet, address, "address")
        if int(address) in used:
            what = "the gateway" if address == gateway else "already in use"
            raise Conflict(f"address {address} is {what} on subnet {subnet}")
        return address
    first, last = usable_bounds(subnet)
    if ip_range is not None:
        first = max(first, int(ip_range.network_address))
        last = min(last, int(ip_range.broadcast_address))
    candidate = first
    while candidate <= last:
        if candidate not in used:
            return ipaddress.ip_address(candidate)
        candidate += 1
    where = f"ip-range {ip_range}" if ip_range is not None else f"subnet {subnet}"
    raise NetcoreError(f"no free address left in {where}")


def _to_int(address: str) -> int:
    """An address as an integer, ~20x faster than ipaddress for the thousands IPAM compares."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return int.from_bytes(socket.inet_pton(family, address), "big")


def ula_subnet(network_id: str) -> ipaddress.IPv6Network:
    """A unique-local /64 derived from the network ID, for --ipv6 without a v6 subnet."""
    global_id = int(network_id[:10], 16)  # 40 bits, RFC 4193
    return ipaddress.IPv6Network(((0xFD << 120) | (global_id << 80), 64))


def mac_for(address: IPAddress) -> str:
    """Docker's scheme: 02:42 followed by the IPv4 address, so a MAC never collides on one bridge."""
    octets = address.packed[-4:]
    return "02:42:" + ":".join(f"{b:02x}" for b in octets)
