"""The rtnetlink requests of every container's configuration, without pyroute2.

A container takes six requests: in the gateway namespace its veth, made a port of its bridge and up, and
that port's hairpin mode; in its own namespace its address, its link up, its default route (and one at
``rm``: its veth released). Through pyroute2's ``IPRoute`` (0.9) each cost about 0.5 ms of CPU, opening an
``IPRoute`` in the container's namespace another 0.6 ms, and encoding a veth's nested attributes with
pyroute2's message classes about 1 ms, where the kernel's own work is a few µs (a veth's some 100 µs):
most of a ``run``'s CPU and of an ``up`` of 100 containers (docs/performance.md, netcored and the CLI).
``Rtnl`` encodes each message here (struct ``nlmsghdr``, ``ifinfomsg``, ``ifaddrmsg``, ``rtmsg`` and
their attributes, include/uapi/linux/rtnetlink.h and if_link.h), byte for byte what ``IPRoute`` sends for
the same call (tests/unit/netcore/test_rtnl.py compares them), sends it on a plain rtnetlink socket opened
in the namespace, then reads the kernel's acknowledgement: 30-70 µs a request, 35 µs the socket.
Everything else netcore asks of rtnetlink goes through ``IPRoute`` (netcore.kernel.netlink, which also
reads a link's index and sets loopback up by ioctl): what is asked once per network, not per container.
"""

from __future__ import annotations

import os
import socket
import struct

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE

from netcore.system import linux

IFF_UP = 0x1
MAIN_TABLE = 254
RTPROT_STATIC, RTN_UNICAST = 4, 1  # what `ip route add` and IPRoute.route("add") send (rtnetlink.h)
CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL  # an exclusive add, as IPRoute's "add"
HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: length, type, flags, sequence number, port id
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
# attribute types (include/uapi/linux/if_link.h, if_addr.h, rtnetlink.h, veth.h)
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 4, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_DATA, VETH_INFO_PEER = 1, 2, 5, 1
IFLA_BRPORT_MODE, IFLA_BRPORT_ISOLATED = 4, 33
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS, RTA_GATEWAY = 1, 2, 8, 5


def attribute(kind: int, payload: bytes) -> bytes:
    """One netlink attribute: struct nlattr (length, type) and ``payload``, padded to 4 bytes (NLA_ALIGN)."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + bytes(-length % 4)


def _u32(value: int) -> bytes:
    return struct.pack("=I", value)


def _string(value: str) -> bytes:
    return value.encode() + b"\0"


def _address(value: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in value else socket.AF_INET, value)


class Rtnl:
    """An rtnetlink socket in the network namespace at ``path`` (a /run/netns file; None: this thread's),
    for ``add_address``, ``set_up``, ``add_default_route``, ``add_veth``, ``set_bridge_port`` and
    ``release``. A context manager; ``fileno()`` serves link
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
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        attrs = attribute(IFA_ADDRESS, _address(address)) + attribute(IFA_FLAGS, _u32(flags))
        if family == socket.AF_INET:
            attrs += attribute(IFA_LOCAL, _address(address))
        self._request(RTM_NEWADDR, CREATE, IFADDRMSG.pack(family, prefixlen, 0, 0, index) + attrs)

    def set_up(self, index: int) -> None:
        """Link ``index`` up (IFF_UP set, no other flag changed)."""
        self._request(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, IFINFOMSG.pack(0, 0, index, IFF_UP, IFF_UP))

    def add_default_route(self, gateway: str) -> None:
        """A default route via ``gateway`` in the main table, as an exclusive add: NetlinkError EEXIST (IPv4)
        while a default route of metric 0 exists."""
        family = socket.AF_INET6 if ":" in gateway else socket.AF_INET
        self._request(RTM_NEWROUTE, CREATE, RTMSG.pack(family, 0, 0, 0, MAIN_TABLE, RTPROT_STATIC, 0, RTN_UNICAST, 0)
                      + attribute(RTA_GATEWAY, _address(gateway)))

    def add_veth(self, name: str, master: int, mtu: int, peer: str, peer_netns_fd: int, peer_mac: str) -> None:
        """A veth pair made in one request: ``name`` in this namespace, a port of the bridge of index
        ``master`` and up as it is made; its peer ``peer`` born in the namespace of the open file
        ``peer_netns_fd`` with MAC ``peer_mac``; both ``mtu``. The message ``IPRoute.link("add", kind="veth",
        ifname=name, mtu=mtu, master=master, state="up", peer={...})`` sends (`ip link add NAME mtu MTU master
        BR up type veth peer name PEER netns NS address MAC mtu MTU`). NetlinkError EEXIST if a name is taken
        in its namespace."""
        peer_link = (IFINFOMSG.pack(0, 0, 0, 0, 0) + attribute(IFLA_IFNAME, _string(peer))
                     + attribute(IFLA_NET_NS_FD, _u32(peer_netns_fd))
                     + attribute(IFLA_ADDRESS, bytes.fromhex(peer_mac.replace(":", "")))
                     + attribute(IFLA_MTU, _u32(mtu)))
        linkinfo = (attribute(IFLA_INFO_KIND, _string("veth"))
                    + attribute(IFLA_INFO_DATA, attribute(VETH_INFO_PEER, peer_link)))
        self._request(RTM_NEWLINK, CREATE, IFINFOMSG.pack(0, 0, 0, IFF_UP, IFF_UP)
                      + attribute(IFLA_IFNAME, _string(name)) + attribute(IFLA_MTU, _u32(mtu))
                      + attribute(IFLA_MASTER, _u32(master)) + attribute(IFLA_LINKINFO, linkinfo))

    def set_bridge_port(self, index: int, hairpin: bool, isolated: bool) -> None:
        """Link ``index``, a bridge's port: hairpin mode (IFLA_BRPORT_MODE) as given, port isolation
        (IFLA_BRPORT_ISOLATED) set if ``isolated`` (else not sent: kernels before 4.18 do not know it). The
        message ``IPRoute.brport("set", index=index, mode=.., isolated=..)`` sends (`ip link set DEV type
        bridge_slave hairpin on isolated on`). NetlinkError ENODEV for no such link, EOPNOTSUPP for a link
        that is no bridge's port."""
        port = attribute(IFLA_BRPORT_MODE, bytes([int(hairpin)]))
        if isolated:
            port += attribute(IFLA_BRPORT_ISOLATED, b"\1")
        linkinfo = attribute(IFLA_INFO_KIND, _string("bridge_slave")) + attribute(IFLA_INFO_SLAVE_DATA, port)
        self._request(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, IFINFOMSG.pack(0, 0, index, 0, 0)
                      + attribute(IFLA_LINKINFO, linkinfo))

    def release(self, index: int) -> None:
        """Link ``index`` down and out of its bridge (IFF_UP cleared, IFLA_MASTER 0), in one request: the
        message ``IPRoute.link("set", index=index, state="down", master=0)`` sends. NetlinkError ENODEV for no
        such link."""
        self._request(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, IFINFOMSG.pack(0, 0, index, 0, IFF_UP)
                      + attribute(IFLA_MASTER, _u32(0)))

    def _request(self, msg_type: int, flags: int, body: bytes) -> None:
        """Send ``body`` (the message after its header) as a request of ``msg_type`` and wait for the kernel's
        acknowledgement of it (NLMSG_ERROR, errno 0: done)."""
        self._sequence += 1
        self._sock.send(HEADER.pack(HEADER.size + len(body), msg_type, flags, self._sequence, 0) + body)
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
