"""netcore.kernel.rtnl's messages, byte for byte what pyroute2 sends for the same calls: a veth, a bridge
port and a release as IPRoute (0.9.7) sent them (captured on a real socket; the sequence
number and port id, which differ, left out), an address, a link up and a default route as pyroute2's
message classes encode them (``ifaddrmsg``, ``ifinfmsg``, ``rtmsg``, with the fields IPRoute sets): the
kernel gets the same request whichever path asks. Against the kernel itself: tests/integration/test_rtnl.py."""

from __future__ import annotations

import struct

import pytest
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from netcore.kernel.rtnl import CREATE, HEADER, IFF_UP, MAIN_TABLE, RTN_UNICAST, RTPROT_STATIC, Rtnl

# (nlmsghdr type, flags, the message after the header) as IPRoute sent them
VETH = (16, 0x605, "00000000000000000100000001000000080003007668300008000400dc05000008000a00020000005000120009000100"
                   "7665746800000000400002003c0001000000000000000000000000000000000009000300657468300000000008001c00"
                   "070000000a00010002420a000002000008000400dc050000")  # link("add", kind="veth", ...)
PORT_ISOLATED = (16, 0x5, "000000000300000000000000000000002c001200110001006272696467655f736c61766500000000140005000500"
                          "0400010000000500210001000000")  # brport("set", index=3, mode=1, isolated=1)
RELEASE = (16, 0x5, "0000000003000000000000000100000008000a0000000000")  # link("set", index=3, state="down", master=0)


class Kernel:
    """A socket that records what is sent and acknowledges it with ``errno`` (0: done)."""

    def __init__(self, errno: int = 0):
        self.sent: list[bytes] = []
        self.errno = errno

    def send(self, data: bytes) -> None:
        self.sent.append(bytes(data))

    def recv(self, size: int) -> bytes:
        _, _, _, sequence, _ = HEADER.unpack_from(self.sent[-1])
        return HEADER.pack(36, 2, 0, sequence, 0) + struct.pack("=i", -self.errno) + self.sent[-1][:16]


def rtnl_on(kernel: Kernel) -> Rtnl:
    rtnl = Rtnl.__new__(Rtnl)  # no socket: the kernel above stands for it
    rtnl._sock, rtnl._sequence = kernel, 0
    return rtnl


def sent(kernel: Kernel) -> list[tuple[int, int, str]]:
    found = []
    for data in kernel.sent:
        length, kind, flags, _, _ = HEADER.unpack_from(data)
        assert length == len(data)
        found.append((kind, flags, data[HEADER.size:].hex()))
    return found


def test_each_request_is_the_message_iproute_sends_for_the_same_call():
    kernel = Kernel()
    rtnl = rtnl_on(kernel)
    rtnl.add_veth("vh0", 2, 1500, "eth0", 7, "02:42:0a:00:00:02")
    rtnl.set_bridge_port(3, hairpin=True, isolated=True)
    rtnl.release(3)
    assert sent(kernel) == [VETH, PORT_ISOLATED, RELEASE]


def test_a_port_that_is_not_isolated_is_not_told_so():
    kernel = Kernel()
    rtnl_on(kernel).set_bridge_port(3, hairpin=True, isolated=False)
    [(_, _, body)] = sent(kernel)
    assert "05002100" not in body  # no IFLA_BRPORT_ISOLATED attribute (type 33): kernels before 4.18 lack it
    assert "050004000100" in body  # IFLA_BRPORT_MODE 1: hairpin


def test_the_kernels_refusal_is_pyroute2s_netlink_error_with_its_errno():
    with pytest.raises(NetlinkError) as refused:
        rtnl_on(Kernel(errno=17)).add_veth("vh0", 2, 1500, "eth0", 7, "02:42:0a:00:00:02")
    assert refused.value.code == 17


def encoded(msg, fields: dict, attrs: list) -> str:
    for key, value in fields.items():
        msg[key] = value
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data[HEADER.size:]).hex()


@pytest.mark.parametrize("address, prefixlen, flags, gateway", [
    ("10.88.0.2", 16, 0, "10.88.0.1"), ("172.31.255.254", 30, 0, "172.31.255.253"),
    ("fd00:9::2", 64, 0x02, "fd00:9::1"), ("2001:db8:1:2:3:4:5:6", 127, 0x02, "fe80::1")])
def test_an_address_a_link_up_and_a_route_are_what_pyroute2s_message_classes_encode(address, prefixlen, flags,
                                                                                    gateway):
    kernel = Kernel()
    rtnl = rtnl_on(kernel)
    rtnl.add_address(7, address, prefixlen, flags)
    rtnl.set_up(7)
    rtnl.add_default_route(gateway)
    v6 = ":" in address
    family = 10 if v6 else 2
    address_attrs = [("IFA_ADDRESS", address), ("IFA_FLAGS", flags)] + ([] if v6 else [("IFA_LOCAL", address)])
    assert sent(kernel) == [
        (20, CREATE, encoded(ifaddrmsg(), {"family": family, "prefixlen": prefixlen, "index": 7}, address_attrs)),
        (16, 0x5, encoded(ifinfmsg(), {"index": 7, "flags": IFF_UP, "change": IFF_UP}, [])),
        (24, CREATE, encoded(rtmsg(), {"family": 10 if ":" in gateway else 2, "table": MAIN_TABLE,
                                       "proto": RTPROT_STATIC, "type": RTN_UNICAST}, [("RTA_GATEWAY", gateway)]))]
