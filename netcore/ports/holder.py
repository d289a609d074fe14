"""Published host ports are really taken: netcore binds each one and netcored keeps the sockets open.

Docker binds (and for TCP listens on) every published host port for as long
as the mapping lives, so no host process can take the port later and break the
mapping silently. netcore does the same: the agent (netcore.agent, the one
long-lived process of a state dir) binds each new port in the gateway
namespace (``bind``), so a port already in use fails that command with one
line naming the holder: ``Bind for 0.0.0.0:8080 failed: port is already
allocated (held by nginx (pid 42, tcp 0.0.0.0:8080))``, and keeps the socket
as long as the mapping lives (``HostPorts``).

``HostPorts`` knows no policy: the engine derives which ports must be held from
the store (netcore.ports.Mapping.held), asks what is held, binds what is
missing and releases the rest. The agent killed releases every port with it
(the kernel closes its sockets); the next agent binds them again at its start.
A socket bound in a gateway namespace that was deleted and made anew holds
nothing there: it is closed and the port bound again in the live one. Nothing
reaches the held sockets: the firewall DNATs every packet to a published port
before it could be delivered to them.

``conntrack`` entries are this module's too (``forget``): when a UDP mapping
is added or removed, the entries for its host port are deleted, so a client
that keeps sending from one source port reaches the new container at once
instead of following a stale entry until it times out (moby/moby#8795, fixed
in moby PR #44742). pyroute2 speaks the conntrack netlink protocol.

The releases before netcored kept the sockets in a process of their own (``python -m netcore.port_holder``,
``STATE_DIR/ports.sock``); ``stop_legacy_holder`` ends one left running by such a release.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import signal
import socket
import time
from collections.abc import Iterable

from netcore.errors import NetcoreError
from netcore.kernel import netlink
from netcore.model import DNS_PORT
from netcore.ports import EPHEMERAL_DEFAULT, HostPort, parse_port_range, parse_reserved_ports, published_flow
from netcore.system import linux
from netcore.system.holders import TCP_TIME_WAIT, describe_holders, parse_table
from netcore.system.processes import alive, namespace_identity

LEGACY_SOCKET_NAME = "ports.sock"  # the port holder process of the releases before netcored
MESSAGE_MAX = 1 << 20  # a `list` reply of the legacy holder
PROTOCOL_NUMBERS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "sctp": 132}
LISTEN_BACKLOG = 1  # never used: every packet for the port is DNATed before it reaches this socket


class PortError(NetcoreError):
    """A host port cannot be taken (in use, no such address, protocol not in this kernel) or held."""


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def bind(port: HostPort, proc_net: str = "/proc/thread-self/net", dns_port: int = DNS_PORT,
         shared_with: Iterable[str] = ()) -> socket.socket:
    """A socket bound to ``port`` in the calling thread's network namespace (TCP and SCTP listening, IPv6
    only for an IPv6 address), the way Docker holds a published port. PortError (one line) when the port is
    in use (naming its holder, read from ``proc_net``), the address is not the namespace's, or the kernel
    lacks the protocol.

    dnsd's port on every address (``HostPort.shares_dns_port``) shares the port with dnsd's listeners on
    ``shared_with`` (dnsd's addresses): both set SO_REUSEPORT. Any other socket on that port, on any
    address of the family, is in use as for any published port (Docker's bind of the wildcard would fail
    there too), even one that set SO_REUSEPORT as well and so let the bind succeed: found in ``proc_net``.
    """
    family = _family(port.address)
    kind = socket.SOCK_DGRAM if port.protocol == "udp" else socket.SOCK_STREAM
    where = f"{_host(port.address)}:{port.port}"
    try:
        sock = socket.socket(family, kind, PROTOCOL_NUMBERS[port.protocol])
    except OSError as err:
        if err.errno in (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EAFNOSUPPORT):
            raise PortError(f"cannot publish {port.protocol} port {where}: this kernel has no "
                            f"{port.protocol.upper()} support ({err.strerror})") from None
        raise PortError(f"cannot publish {port}: {err.strerror}") from None
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers; LISTEN still excludes
        shared = port.shares_dns_port(dns_port)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((port.address, port.port))
        others = _others_on_port(sock, port, shared_with, proc_net) if shared else []
        if others:
            sock.close()
            holders = "; ".join(dict.fromkeys(describe_holders(address, port.port, proc_net) for address in others))
            raise PortError(f"Bind for {where} failed: port is already allocated ({port.protocol}, {holders})")
        if kind == socket.SOCK_STREAM:
            sock.listen(LISTEN_BACKLOG)
        return sock
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            holders = describe_holders(port.address, port.port, proc_net)
            raise PortError(f"Bind for {where} failed: port is already allocated ({port.protocol}, {holders})") \
                from None
        if err.errno == errno.EADDRNOTAVAIL:
            raise PortError(f"cannot publish on {port.address}: not an address of the gateway namespace") from None
        raise PortError(f"cannot bind {port}: {err.strerror}") from None


def _others_on_port(sock: socket.socket, port: HostPort, shared_with: Iterable[str], proc_net: str) -> list[str]:
    """The addresses of the sockets of ``port``'s protocol and family on its port, other than ``sock`` and
    those on ``shared_with``, from ``proc_net``'s table (TCP: not in TIME_WAIT); [] when it cannot be read."""
    own = os.fstat(sock.fileno()).st_ino
    allowed = {ipaddress.ip_address(address) for address in shared_with}
    table = port.protocol + ("6" if _family(port.address) == socket.AF_INET6 else "")
    try:
        with open(os.path.join(proc_net, table)) as f:
            found = parse_table(port.protocol, f.read())
    except OSError:
        return []
    return [str(other.address) for other in found
            if other.port == port.port and other.inode not in (0, own) and other.address not in allowed
            and not (port.protocol == "tcp" and other.state == TCP_TIME_WAIT)]


class HostPorts:
    """The published host ports one state dir holds in its gateway namespace (None: the host's), as sockets
    of this process (netcored's).

    ``check(port)`` raises PortError unless the port could be bound now; ``held()`` is what is held in the
    live gateway namespace; ``hold(ports)`` binds and keeps each, returning {port: why not} for those that
    failed; ``release(ports)`` closes them; ``stop()`` closes all; ``forget(ports)`` deletes their conntrack
    entries; ``local_range()`` is where ephemeral ports come from. Errors other than a port's own are
    one-line PortErrors.
    """

    def __init__(self, state_dir: str, namespace: str | None):
        self.state_dir = state_dir
        self.namespace = namespace
        self._held: dict[HostPort, tuple[socket.socket, tuple[int, int] | None]] = {}  # socket, its netns identity

    def _in_gateway(self):
        if self.namespace is None:
            return _NoSwitch()
        return linux.entered_netns(linux.netns_path(self.namespace))

    def _gateway_identity(self) -> tuple[int, int] | None:
        return None if self.namespace is None else namespace_identity(linux.netns_path(self.namespace))

    def check(self, port: HostPort, shared_with: Iterable[str] = ()) -> None:
        """PortError unless ``port`` can be bound in the gateway namespace now (the socket is closed again);
        ``shared_with``: dnsd's addresses (see ``bind``)."""
        with self._in_gateway():
            bind(port, shared_with=shared_with).close()

    def local_range(self) -> tuple[tuple[int, int], frozenset[int]]:
        """The gateway namespace's ``ip_local_port_range`` and ``ip_local_reserved_ports`` (the kernel's
        defaults if they cannot be read)."""
        with self._in_gateway():
            try:
                with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
                    port_range = parse_port_range(f.read())
            except (OSError, ValueError):
                port_range = EPHEMERAL_DEFAULT
            try:
                with open("/proc/sys/net/ipv4/ip_local_reserved_ports") as f:
                    reserved = parse_reserved_ports(f.read())
            except (OSError, ValueError):
                reserved = frozenset()
        return port_range, reserved

    def pid(self) -> int | None:
        """The pid of the process that holds the ports (this one) while it holds any; else None."""
        return os.getpid() if self._held else None

    def held(self) -> set[HostPort] | None:
        """The ports held in the live gateway namespace; None when none is. Sockets of a gateway namespace
        that is gone (deleted, or made anew) are closed first: they hold nothing here."""
        live = self._gateway_identity()
        for port in [p for p, (_, identity) in self._held.items() if identity != live]:
            self._held.pop(port)[0].close()
        return set(self._held) or None

    def hold(self, ports: Iterable[HostPort], shared_with: Iterable[str] = ()) -> dict[HostPort, str]:
        """Bind each port and keep it; {port: reason} of those that failed. ``shared_with``: dnsd's addresses
        (see ``bind``)."""
        failures: dict[HostPort, str] = {}
        shared_with = frozenset(shared_with)
        identity = self._gateway_identity()
        for port in sorted(ports):
            if port in self._held:
                continue
            try:
                with self._in_gateway():
                    self._held[port] = (bind(port, shared_with=shared_with), identity)
            except PortError as err:
                failures[port] = str(err)
        return failures

    def release(self, ports: Iterable[HostPort]) -> None:
        """Close the sockets of ``ports`` (those not held are no error)."""
        for port in ports:
            held = self._held.pop(port, None)
            if held is not None:
                held[0].close()

    def stop(self) -> None:
        """Release every port held."""
        self.release(list(self._held))

    def forget(self, ports: Iterable[HostPort]) -> int:
        """Delete the gateway namespace's conntrack entries of flows to ``ports`` (``ports.published_flow``:
        the same protocol and port, to the port's address or, for every address, to one of the gateway
        namespace's own); the number deleted. Flows the gateway namespace forwards elsewhere to a port of
        the same number stay. PortError if conntrack cannot be read.

        Every netlink socket of it is made and used while this thread is in the gateway namespace: pyroute2
        opens a conntrack socket lazily, at its first request, so one made in the block and used after it
        came into being in the host's namespace and deleted the host's entries (issue 24, item 6).
        (pyroute2's own ``netns=`` forks a child to make the socket, which hangs in netcored's threads.)"""
        wanted = list(ports)
        if not wanted:
            return 0
        from pyroute2 import Conntrack  # imported here: only ports need it

        numbers = {number: name for name, number in PROTOCOL_NUMBERS.items()}
        deleted = 0
        try:
            with self._in_gateway():
                local = netlink.local_addresses(None)  # this thread's namespace: the gateway's
                for family in (socket.AF_INET, socket.AF_INET6):
                    conntrack = Conntrack(nfgen_family=family)
                    try:
                        for entry in list(conntrack.dump_entries()):
                            flow = entry.tuple_orig
                            protocol = numbers.get(flow.proto)
                            if protocol and flow.daddr and any(
                                    published_flow(port, protocol, flow.daddr, flow.dport, local)
                                    for port in wanted):
                                conntrack.delete(entry)
                                deleted += 1
                    finally:
                        conntrack.close()
        except Exception as err:  # noqa: BLE001  (pyroute2 raises its own kinds; the user reads one line)
            raise PortError(f"cannot clear conntrack entries of published ports: {err}") from None
        return deleted

def stop_legacy_holder(state_dir: str) -> int | None:
    """End the port holder process a release before netcored left running for ``state_dir`` (it answers
    ``list`` on ``STATE_DIR/ports.sock`` with its pid; its command line names the holder module and that
    socket, so a reused pid is never signalled): its ports go with it, and the agent binds them again.
    Returns its pid, or None when there was none."""
    path = os.path.join(state_dir, LEGACY_SOCKET_NAME)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
            sock.settimeout(2.0)
            sock.connect(path)
            sock.send(b"list")
            pid = int(sock.recv(MESSAGE_MAX).split(b"\n", 1)[0].split()[1])
    except (OSError, ValueError, IndexError):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    if path.encode() not in argv or not any(b"port_holder" in word or b"ports.holder" in word for word in argv):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.01)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return pid


class _NoSwitch:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
