"""Applies a ``netcore.cluster.dataplane`` plan to a VXLAN device through pyroute2 (the thin I/O shell).

The entries are the recipe's (shared/notes/overlay-in-namespaces.md): FDB entries on the VXLAN device itself
(``flags=NTF_SELF``: pyroute2's ``fdb("replace")`` applies no defaults, and without it the entry went to the
bridge's FDB with its destination dropped), permanent and no-ARP; neighbour entries NUD_PERMANENT. Reading
back is from the kernel, never from memory: FDB entries with a destination (``NDA_DST``; the bridge's own
entries for the port carry none), and IPv4 neighbour entries in state permanent.

Synchronous: pyroute2's IPRoute refuses to run inside a running asyncio loop, so an agent calls this from a
thread (``asyncio.to_thread``). The socket is opened the way netcore.netlink opens its own: this thread enters
the namespace, opens it, and comes back (no helper process per socket); it stays bound to that namespace.
"""

from __future__ import annotations

import errno
import socket

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import ndmsg

from netcore.cluster.dataplane import DataplanePlan, FdbEntry, NeighEntry, RemoteEndpoint, plan
from netcore.errors import NetcoreError
from netcore.system import linux

NUD_PERMANENT = ndmsg.states["permanent"]
NUD_NOARP = ndmsg.states["noarp"]
NTF_SELF = ndmsg.flags["self"]


class DataplaneError(NetcoreError):
    """The kernel refused an FDB or neighbour change: ``cannot ACTION on DEVICE in NAMESPACE: REASON``."""


class VxlanDataplane:
    """The FDB and neighbour entries of the VXLAN device ``ifname`` in network namespace ``namespace`` (a name
    under /run/netns; None: this thread's own). DataplaneError if the device is missing or the kernel refuses."""

    def __init__(self, namespace: str | None, ifname: str):
        self.namespace = namespace
        self.ifname = ifname
        self._ipr: IPRoute | None = None
        self._index: int | None = None

    def _where(self) -> str:
        return f"{self.ifname} in {self.namespace}" if self.namespace else self.ifname

    def _rtnl(self) -> tuple[IPRoute, int]:
        if self._ipr is None:
            try:
                if self.namespace is None:
                    self._ipr = IPRoute()
                else:
                    with linux.entered_netns(linux.netns_path(self.namespace)):
                        self._ipr = IPRoute()
            except OSError as err:
                raise DataplaneError(f"cannot open {self._where()}: {err.strerror or err}") from None
        if self._index is None:
            found = self._ipr.link_lookup(ifname=self.ifname)
            if not found:
                raise DataplaneError(f"cannot program {self._where()}: no such device")
            self._index = found[0]
        return self._ipr, self._index

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
            self._index = None

    def __enter__(self) -> VxlanDataplane:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def read(self) -> tuple[list[FdbEntry], list[NeighEntry]]:
        """What the kernel holds: FDB entries with a destination, permanent IPv4 neighbour entries."""
        ipr, index = self._rtnl()
        try:
            fdb = [FdbEntry(e.get_attr("NDA_LLADDR"), e.get_attr("NDA_DST"))
                   for e in ipr.fdb("dump", ifindex=index)
                   if e.get("ifindex") == index and e.get_attr("NDA_DST") and e.get_attr("NDA_LLADDR")]
            neighbours = [NeighEntry(e.get_attr("NDA_DST"), e.get_attr("NDA_LLADDR"))
                          for e in ipr.neigh("dump", ifindex=index)
                          if e.get("ifindex") == index and e["family"] == socket.AF_INET
                          and e["state"] & NUD_PERMANENT and e.get_attr("NDA_LLADDR")]
        except NetlinkError as err:
            raise DataplaneError(f"cannot read the entries of {self._where()}: {err}") from None
        return fdb, neighbours

    def apply(self, diff: DataplanePlan) -> None:
        """Make the changes of ``diff`` in its order; an entry already gone counts as deleted."""
        ipr, index = self._rtnl()
        for entry in diff.neigh_delete:
            self._call("delete neighbour " + entry.ip, errno.ENOENT,
                       lambda e=entry: ipr.neigh("del", dst=e.ip, lladdr=e.mac, ifindex=index))
        for entry in diff.fdb_delete:
            self._call(f"delete FDB entry {entry.mac} -> {entry.dst}", errno.ENOENT,
                       lambda e=entry: ipr.fdb("del", ifindex=index, lladdr=e.mac, dst=e.dst))
        for entry in diff.fdb_replace:
            self._call(f"set FDB entry {entry.mac} -> {entry.dst}", None,
                       lambda e=entry: ipr.fdb("replace", ifindex=index, lladdr=e.mac, dst=e.dst,
                                               state=NUD_PERMANENT | NUD_NOARP, flags=NTF_SELF))
        for entry in diff.neigh_replace:
            self._call(f"set neighbour {entry.ip} -> {entry.mac}", None,
                       lambda e=entry: ipr.neigh("replace", dst=e.ip, lladdr=e.mac, ifindex=index,
                                                 state=NUD_PERMANENT))

    def _call(self, action: str, tolerated: int | None, call) -> None:
        try:
            call()
        except NetlinkError as err:
            if tolerated is not None and err.code == tolerated:
                return
            raise DataplaneError(f"cannot {action} on {self._where()}: {err}") from None

    def reconcile(self, desired: list[RemoteEndpoint]) -> DataplanePlan:
        """Read the kernel, diff against ``desired``, apply; returns the plan applied (empty: nothing to do)."""
        fdb, neighbours = self.read()
        diff = plan(desired, fdb, neighbours)
        if not diff.empty:
            self.apply(diff)
        return diff
