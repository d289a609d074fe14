"""The data plane of an overlay network on one host, as a diff. Pure: no I/O.

Each remote endpoint (a container of the network on another host: its IP, its MAC, and its host's VTEP
address) needs two kernel entries on the host's VXLAN device, as the recipe in
shared/notes/overlay-in-namespaces.md sets them: a static FDB entry (MAC -> VTEP, on the device itself,
NTF_SELF) and a permanent neighbour entry (IP -> MAC, answered by the device's ARP proxy). No flooding, no
learning: an all-zeros FDB entry (head-end replication) is never wanted and is removed.

``plan(desired, fdb, neighbours)`` compares what should be there with what the kernel holds (FDB entries
with a destination, permanent neighbour entries) and returns what to replace and what to delete; applying
it twice changes nothing the second time. ``netcore.cluster.dataplane_netlink`` reads and applies it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

FLOOD_MAC = "00:00:00:00:00:00"


def _mac(text: str) -> str:
    parts = text.lower().replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) in (1, 2) and all(c in "0123456789abcdef" for c in p) for p in parts):
        raise ValueError(f"bad MAC address {text!r}")
    return ":".join(p.zfill(2) for p in parts)


def _ip(text: str) -> str:
    return str(ipaddress.ip_address(text))


@dataclass(frozen=True, order=True)
class RemoteEndpoint:
    """A container on another host: ``ip`` and ``mac`` of its interface, ``vtep`` its host's underlay address."""

    ip: str
    mac: str
    vtep: str

    def normalized(self) -> RemoteEndpoint:
        return RemoteEndpoint(_ip(self.ip), _mac(self.mac), _ip(self.vtep))


@dataclass(frozen=True, order=True)
class FdbEntry:
    """A VXLAN FDB entry: frames to ``mac`` go to ``dst`` (a VTEP)."""

    mac: str
    dst: str


@dataclass(frozen=True, order=True)
class NeighEntry:
    """A permanent neighbour entry on the VXLAN device: ``ip`` is at ``mac``."""

    ip: str
    mac: str


@dataclass(frozen=True)
class DataplanePlan:
    """What to change, in the order to apply it: deletions (neighbours first, then FDB), then FDB entries
    before the neighbour entries that lead to them. ``conflicts``: desired entries left out because another
    one claimed the same IP or MAC (one line each; an allocation fault elsewhere, never silently merged)."""

    fdb_replace: tuple[FdbEntry, ...] = ()
    fdb_delete: tuple[FdbEntry, ...] = ()
    neigh_replace: tuple[NeighEntry, ...] = ()
    neigh_delete: tuple[NeighEntry, ...] = ()
    conflicts: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.fdb_replace or self.fdb_delete or self.neigh_replace or self.neigh_delete)


def plan(desired: Iterable[RemoteEndpoint], fdb: Iterable[FdbEntry], neighbours: Iterable[NeighEntry]
         ) -> DataplanePlan:
    """The diff from the kernel's ``fdb`` (entries with a destination on the device) and permanent
    ``neighbours`` to ``desired``. An FDB entry is kept only if its MAC is desired at that very VTEP (a MAC
    with several destinations keeps the right one only); a neighbour entry of an IP no longer desired is
    deleted, one with the wrong MAC replaced (a neighbour is keyed by its IP alone). Two desired endpoints
    with one IP or one MAC: the first in sorted order wins, the other is a conflict. ValueError: a malformed
    address."""
    by_mac: dict[str, RemoteEndpoint] = {}
    by_ip: dict[str, RemoteEndpoint] = {}
    conflicts = []
    for endpoint in sorted({e.normalized() for e in desired}):
        if endpoint.ip in by_ip or endpoint.mac in by_mac:
            other = by_ip.get(endpoint.ip) or by_mac[endpoint.mac]
            conflicts.append(f"{endpoint.ip} ({endpoint.mac} at {endpoint.vtep}) conflicts with "
                             f"{other.ip} ({other.mac} at {other.vtep})")
            continue
        by_mac[endpoint.mac] = endpoint
        by_ip[endpoint.ip] = endpoint
    have_fdb = {FdbEntry(_mac(e.mac), _ip(e.dst)) for e in fdb}
    have_neigh = {NeighEntry(_ip(n.ip), _mac(n.mac)) for n in neighbours}
    want_fdb = {FdbEntry(e.mac, e.vtep) for e in by_mac.values()}
    want_neigh = {NeighEntry(e.ip, e.mac) for e in by_ip.values()}
    return DataplanePlan(
        fdb_replace=tuple(sorted(want_fdb - have_fdb)),
        fdb_delete=tuple(sorted(have_fdb - want_fdb)),
        neigh_replace=tuple(sorted(want_neigh - have_neigh)),
        neigh_delete=tuple(sorted(n for n in have_neigh - want_neigh if n.ip not in by_ip)),  # else replaced
        conflicts=tuple(conflicts))
