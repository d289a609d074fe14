"""Port 53 published on every address beside dnsd's listeners (issue 23 item 3), on loopback sockets, no root:
dnsd's listener (dnsd.io.listeners.bound_socket) and the port holder's socket (netcore.ports.holder.bind) share the
port, each gets the packets for its own addresses, and nothing else shares dnsd's address."""

from __future__ import annotations

import errno
import socket

import pytest

from dnsd.io.listeners import bound_socket
from netcore.ports import HostPort
from netcore.ports.holder import PortError, bind

DNSD_ADDRESS, OTHER_ADDRESS = "127.0.1.1", "127.0.0.1"  # a gateway's address; any other of the namespace
KINDS = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM}


def received(sock: socket.socket, kind: str, wait: bool = True) -> bool:
    """Whether ``sock`` got the datagram (UDP) or has the connection waiting (TCP); without ``wait``, only
    what is there now (asked after the other socket got it: the kernel chose one socket for it already)."""
    sock.settimeout(2 if wait else 0)
    try:
        if kind == "udp":
            return sock.recv(16) == b"q"
        conn, _ = sock.accept()
        conn.close()
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(None)


def reach(address: str, port: int, kind: str) -> None:
    if kind == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"q", (address, port))
    else:
        socket.create_connection((address, port), timeout=1).close()


@pytest.mark.parametrize("kind", ["udp", "tcp"])
@pytest.mark.parametrize("dnsd_first", [True, False])
def test_dnsd_and_a_port_published_on_every_address_share_the_port(free_port, kind, dnsd_first):
    held = HostPort(kind, "0.0.0.0", free_port)
    assert held.shares_dns_port(free_port)
    opened = []
    try:
        for which in (("dnsd", "holder") if dnsd_first else ("holder", "dnsd")):
            if which == "dnsd":
                dnsd = bound_socket(DNSD_ADDRESS, free_port, KINDS[kind])
                opened.append(dnsd)
            else:
                holder = bind(held, "/proc/net", dns_port=free_port, shared_with={DNSD_ADDRESS})
                opened.append(holder)
        dnsd.setblocking(True)
        reach(DNSD_ADDRESS, free_port, kind)
        assert received(dnsd, kind) and not received(holder, kind, wait=False)  # dnsd's address is dnsd's
        reach(OTHER_ADDRESS, free_port, kind)
        assert received(holder, kind) and not received(dnsd, kind, wait=False)  # any other reaches the wildcard
    finally:
        for sock in opened:
            sock.close()


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_nothing_else_shares_dnsds_address_or_a_published_port(free_port, kind):
    dnsd = bound_socket(DNSD_ADDRESS, free_port, KINDS[kind])
    try:
        # a published port that is not dnsd's port, on every address: taken by dnsd's listener, as before
        with pytest.raises(PortError, match="port is already allocated"):
            bind(HostPort(kind, "0.0.0.0", free_port), dns_port=53)
        # the same address published on dnsd's port: refused
        with pytest.raises(PortError, match="port is already allocated"):
            bind(HostPort(kind, DNSD_ADDRESS, free_port), dns_port=free_port)
        # a plain process on the port, on any address
        for address in (DNSD_ADDRESS, "0.0.0.0"):
            plain = socket.socket(socket.AF_INET, KINDS[kind])
            with pytest.raises(OSError) as caught:
                plain.bind((address, free_port))
            plain.close()
            assert caught.value.errno == errno.EADDRINUSE
    finally:
        dnsd.close()
    holder = bind(HostPort(kind, "0.0.0.0", free_port), dns_port=free_port)
    try:
        plain = socket.socket(socket.AF_INET, KINDS[kind])
        with pytest.raises(OSError) as caught:
            plain.bind((OTHER_ADDRESS, free_port))  # the port published on every address stays taken
        plain.close()
        assert caught.value.errno == errno.EADDRINUSE
    finally:
        holder.close()


@pytest.mark.parametrize("kind", ["udp", "tcp"])
@pytest.mark.parametrize("reuse_port", [False, True])
def test_dnsd_does_not_listen_beside_a_squatter_on_its_address(free_port, kind, reuse_port):
    """A squatter that sets SO_REUSEPORT would share the address with dnsd's listener: it is found and the
    bind fails as with any other holder (README "When dnsd cannot listen")."""
    squatter = socket.socket(socket.AF_INET, KINDS[kind])
    if reuse_port:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    squatter.bind((DNSD_ADDRESS, free_port))
    if kind == "tcp":
        squatter.listen(1)
    try:
        with pytest.raises(OSError) as caught:
            bound_socket(DNSD_ADDRESS, free_port, KINDS[kind])
        assert caught.value.errno == errno.EADDRINUSE
    finally:
        squatter.close()
    bound_socket(DNSD_ADDRESS, free_port, KINDS[kind]).close()  # and once it is gone, dnsd listens


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_a_socket_that_joins_dnsds_address_later_gets_none_of_its_queries(free_port, kind):
    """SO_REUSEPORT would let a later socket of the same user on exactly dnsd's address take a share of its
    queries; the group's program sends every one to dnsd's listener."""
    dnsd = bound_socket(DNSD_ADDRESS, free_port, KINDS[kind])
    dnsd.setblocking(True)
    joiner = socket.socket(socket.AF_INET, KINDS[kind])
    joiner.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        joiner.bind((DNSD_ADDRESS, free_port))
        if kind == "tcp":
            joiner.listen(16)
        for _ in range(16):  # spread over the group by the 4-tuple's hash, without the program
            reach(DNSD_ADDRESS, free_port, kind)
            assert received(dnsd, kind)
        assert not received(joiner, kind, wait=False)
    finally:
        joiner.close()
        dnsd.close()


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_port_53_on_every_address_is_refused_beside_any_other_socket_on_that_port(free_port, kind):
    """As Docker's bind of the wildcard would be: a resolver of the host on one address (one that set
    SO_REUSEPORT too, or the kernel would have refused already) keeps the port; dnsd's addresses do not."""
    other = socket.socket(socket.AF_INET, KINDS[kind])
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    other.bind((OTHER_ADDRESS, free_port))
    if kind == "tcp":
        other.listen(1)
    dnsd = bound_socket(DNSD_ADDRESS, free_port, KINDS[kind])
    try:
        with pytest.raises(PortError) as caught:
            bind(HostPort(kind, "0.0.0.0", free_port), "/proc/net", dns_port=free_port, shared_with={DNSD_ADDRESS})
        message = str(caught.value)
        assert message.startswith(f"Bind for 0.0.0.0:{free_port} failed: port is already allocated ({kind}, held by ")
        assert f"{kind} {OTHER_ADDRESS}:{free_port})" in message and DNSD_ADDRESS not in message
        other.close()
        bind(HostPort(kind, "0.0.0.0", free_port), "/proc/net", dns_port=free_port,
             shared_with={DNSD_ADDRESS}).close()  # dnsd's own listener is no obstacle
        with pytest.raises(PortError, match=f"{kind} {DNSD_ADDRESS}:{free_port}"):  # unless not known as dnsd's
            bind(HostPort(kind, "0.0.0.0", free_port), "/proc/net", dns_port=free_port)
    finally:
        other.close()
        dnsd.close()


@pytest.mark.parametrize("port, shares", [
    (HostPort("udp", "0.0.0.0", 53), True),
    (HostPort("tcp", "::", 53), True),
    (HostPort("sctp", "0.0.0.0", 53), False),  # dnsd does not speak SCTP
    (HostPort("udp", "127.0.0.1", 53), False),  # one address: no wildcard, nothing to share
    (HostPort("udp", "0.0.0.0", 5353), False),
])
def test_only_dnsds_port_on_every_address_is_shared(port, shares):
    assert port.shares_dns_port() is shares
