"""The rtnetlink requests of every container's configuration, without pyroute2's asyncio layer.

A container's interface takes three requests once it is in its namespace: its address, its link up, its
default route; before that its veth is made, a port of its bridge, in the gateway namespace (two more, and
one to release it at ``rm``). Through pyroute2's ``IPRoute`` (0.9) each cost about 0.5 ms of CPU, and opening an
``IPRoute`` in the container's namespace another 0.6 ms, where the kernel's own work is a few µs: most of a
``run``'s CPU and of an ``up`` of 100 containers (docs/performance.md, netcored and the CLI). ``Rtnl``
builds each message with pyroute2's message classes (``ifaddrmsg``, ``ifinfmsg``, ``rtmsg``: its encoding,
and the fields and flags ``IPRoute`` sends for the same call) and sends it on a plain rtnetlink socket
opened in the namespace, then reads the kernel's acknowledgement: 30-70 µs a request, 35 µs the socket.
Everything else netcore asks of rtnetlink goes through ``IPRoute`` (netcore.kernel.netlink, which also
reads a link's index and sets loopback up by ioctl): what is asked once per network, not per container.
"""

from __future__ import annotations

import os
import socket
import struct

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from netcore.system import linux

IFF_UP = 0x1
MAIN_TABLE = 254
RTPROT_STATIC, RTN_UNICAST = 4, 1  # what `ip route add` and IPRoute.route("add") send (rtnetlink.h)
CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL  # an exclusive add, as IPRoute's "add"
HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: length, type, flags, sequence number, port id


class Rtnl:
    """An rtnetlink socket in the network namespace at ``path`` (a /run/netns file; None: this thread's),
    for ``add_address``, ``set_up``, ``add_default_route``, ``add_veth``, ``set_bridge_port``, ``release``
    and ``delete_link``. A context manager; ``fileno()`` serves link
    ioctls in the same namespace. OSError if the socket cannot be opened; each request raises pyroute2's
    NetlinkError with the kernel's errno as ``code``, as IPRoute would."""

    def __init__(self, path: str | None):
        if path is None:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        else:
            with linux.entered_netns(path):  # a socket belongs to the namespace it was made in
                self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            self._sock.bind((0, 0))
        except OSError:
            self._sock.close()
            raise
        self._sequence = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    def add_address(self, index: int, address: str, prefixlen: int, flags: int = 0) -> None:
        """Address ``address``/``prefixlen`` on link ``index`` (``flags``: IFA_F_*, e.g. IFA_F_NODAD);
        NetlinkError EEXIST if the link has it."""
        msg = ifaddrmsg()
        msg["family"] = socket.AF_INET6 if ":" in address else socket.AF_INET
        msg["prefixlen"] = prefixlen
        msg["index"] = index
        attrs = [("IFA_ADDRESS", address), ("IFA_FLAGS", flags)]
        if msg["family"] == socket.AF_INET:
            attrs.append(("IFA_LOCAL", address))
        msg["attrs"] = attrs
        self._request(msg, RTM_NEWADDR, CREATE)

    def set_up(self, index: int) -> None:
        """Link ``index`` up (IFF_UP set, no other flag changed)."""
        msg = ifinfmsg()
        msg["index"] = index
        msg["flags"] = IFF_UP
        msg["change"] = IFF_UP
        self._request(msg, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK)

    def add_default_route(self, gateway: str) -> None:
        """A default route via ``gateway`` in the main table, as an exclusive add: NetlinkError EEXIST (IPv4)
        while a default route of metric 0 exists."""
        msg = rtmsg()
        msg["family"] = socket.AF_INET6 if ":" in gateway else socket.AF_INET
        msg["table"] = MAIN_TABLE
        msg["proto"] = RTPROT_STATIC
        msg["type"] = RTN_UNICAST
        msg["attrs"] = [("RTA_GATEWAY", gateway)]
        self._request(msg, RTM_NEWROUTE, CREATE)

    def add_veth(self, name: str, master: int, mtu: int, peer: str, peer_netns_fd: int, peer_mac: str) -> None:
        """A veth pair made in one request: ``name`` in this namespace, a port of the bridge of index
        ``master`` and up as it is made; its peer ``peer`` born in the namespace of the open file
        ``peer_netns_fd`` with MAC ``peer_mac``; both ``mtu``. The message ``IPRoute.link("add", kind="veth",
        ifname=name, mtu=mtu, master=master, state="up", peer={...})`` sends (`ip link add NAME mtu MTU master
        BR up type veth peer name PEER netns NS address MAC mtu MTU`). NetlinkError EEXIST if a name is taken
        in its namespace."""
        msg = ifinfmsg()
        msg["flags"] = IFF_UP
        msg["change"] = IFF_UP
        peer_attrs = [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", peer_netns_fd), ("IFLA_ADDRESS", peer_mac),
                      ("IFLA_MTU", mtu)]
        msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_MTU", mtu), ("IFLA_MASTER", master),
                        ("IFLA_LINKINFO", {"attrs": [
                            ("IFLA_INFO_KIND", "veth"),
                            ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]})]})]
        self._request(msg, RTM_NEWLINK, CREATE)

    def set_bridge_port(self, index: int, hairpin: bool, isolated: bool) -> None:
        """Link ``index``, a bridge's port: hairpin mode (IFLA_BRPORT_MODE) as given, port isolation
        (IFLA_BRPORT_ISOLATED) set if ``isolated`` (else not sent: kernels before 4.18 do not know it). The
        message ``IPRoute.brport("set", index=index, mode=.., isolated=..)`` sends (`ip link set DEV type
        bridge_slave hairpin on isolated on`). NetlinkError ENODEV for no such link, EOPNOTSUPP for a link
        that is no bridge's port."""
        msg = ifinfmsg()
        msg["index"] = index
        port = [("IFLA_BRPORT_MODE", int(hairpin))] + ([("IFLA_BRPORT_ISOLATED", 1)] if isolated else [])
        msg["attrs"] = [("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge_slave"),
                                                     ("IFLA_INFO_SLAVE_DATA", {"attrs": port})]})]
        self._request(msg, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK)

    def release(self, index: int) -> None:
        """Link ``index`` down and out of its bridge (IFF_UP cleared, IFLA_MASTER 0), in one request: the
        message ``IPRoute.link("set", index=index, state="down", master=0)`` sends. NetlinkError ENODEV for no
        such link."""
        msg = ifinfmsg()
        msg["index"] = index
        msg["change"] = IFF_UP
        msg["attrs"] = [("IFLA_MASTER", 0)]
        self._request(msg, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK)

    def delete_link(self, index: int) -> None:
        """Delete link ``index`` (a veth takes its peer along), once the kernel has (its RCU grace periods:
        10-40 ms for a veth). NetlinkError ENODEV for no such link."""
        msg = ifinfmsg()
        msg["index"] = index
        self._request(msg, RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK)

    def _request(self, msg, msg_type: int, flags: int) -> None:
        """Send ``msg`` and wait for the kernel's acknowledgement of it (NLMSG_ERROR, errno 0: done)."""
        self._sequence += 1
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = flags
        msg["header"]["sequence_number"] = self._sequence
        msg["header"]["pid"] = 0
        msg.encode()
        self._sock.send(msg.data)
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset + HEADER.size <= len(data):
                length, kind, _, sequence, _ = HEADER.unpack_from(data, offset)
                if kind == NLMSG_ERROR and sequence == self._sequence:
                    (error,) = struct.unpack_from("=i", data, offset + HEADER.size)
                    if error:
                        raise NetlinkError(-error, os.strerror(-error))
                    return
                if length < HEADER.size:
                    break  # malformed: read on
                offset += (length + 3) & ~3
