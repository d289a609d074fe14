"""The listeners: per gateway address a UDP socket with a thread of its own and a TCP server, in a registry.

The registry is diffed against the addresses of every new snapshot, so one
network's listener comes or goes without touching the others. An address that
cannot be bound is kept with the reason, one line naming what holds it
(``netcore.holders``), and tried again at the next reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import ipaddress
import logging
import os
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from typing import Protocol

from dnsd.core.answer import Forward
from dnsd.core.stats import Stats
from dnsd.io.udp import DatagramBatch, serve as serve_datagrams
from netcore.system.holders import PROC_NET, TCP_TIME_WAIT, describe_holders, parse_table

log = logging.getLogger("dnsd")

UDP_RECEIVE_BUFFER = 4 * 1024 * 1024  # a dnsperf-style opening burst fits without loss
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # bind before the bridge has its address
IPV6_FREEBIND = getattr(socket, "IPV6_FREEBIND", 78)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # past net.core.rmem_max, as root
SO_ATTACH_REUSEPORT_CBPF = getattr(socket, "SO_ATTACH_REUSEPORT_CBPF", 51)
# a classic BPF program of one instruction, BPF_RET | BPF_K with k = 0: every packet to the first socket of the
# reuseport group, the listener's own (see bound_socket)
_FIRST_OF_GROUP = (ctypes.c_ubyte * 8).from_buffer_copy(struct.pack("=HBBI", 0x06, 0, 0, 0))

# (message, client address, listener address, over TCP) -> reply bytes, a Forward, or None to drop
Answer = Callable[[bytes, str, str, bool], "bytes | Forward | None"]
# called from a listener's UDP thread with (the listener, the Forward, the client's socket address)
ForwardDatagram = Callable[["Listener", Forward, tuple], None]
# serves one accepted TCP connection: (listener address, reader, writer)
ServeTcp = Callable[[str, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Replay(Protocol):
    """What lets a quiet listener replay remembered replies in C (``dnsd.core.answer.Answerer`` is one;
    see ``dnsd.io.udp.serve``): a cell per listener address, filled in per client, dropped on closing."""

    def replay_table(self, listener_ip: str) -> list[dict[bytes, dict]]: ...

    def remember_client(self, key: bytes, client_ip: str, listener_ip: str) -> None: ...

    def forget_replay(self, listener_ip: str) -> None: ...


class Listeners:
    """The listeners on the gateway addresses of the current snapshot, keyed by address.

    ``answer`` runs in each listener's UDP thread; ``forward_datagram`` too, and
    must hand the Forward to the event loop itself; ``serve_tcp`` runs on the
    event loop, one call per connection. The UDP threads count their replies in ``stats``.
    With ``replay``, a quiet UDP thread replays the replies it remembered (``dnsd.io.udp.serve``).
    """

    def __init__(self, port: int, udp_window: float, answer: Answer, forward_datagram: ForwardDatagram,
                 serve_tcp: ServeTcp, stats: Stats, replay: Replay | None = None):
        self.port = port
        self._udp_window = udp_window
        self._stats = stats
        self._answer = answer
        self._forward_datagram = forward_datagram
        self._serve_tcp = serve_tcp
        self._replay = replay
        self._open: dict[str, Listener] = {}
        self._bind_errors: dict[str, str] = {}

    @property
    def addresses(self) -> frozenset[str]:
        """The addresses served now."""
        return frozenset(self._open)

    @property
    def down(self) -> dict[str, str]:
        """Gateway address -> why dnsd cannot listen there (one line), for every wanted address not served."""
        return {address: reason for address, reason in self._bind_errors.items() if address not in self._open}

    async def reconcile(self, wanted: frozenset[str]) -> None:
        """Open a listener on each wanted address not served yet, close the others; reopen failed ones."""
        for address in [address for address, listener in self._open.items() if not listener.alive]:
            await self._open.pop(address).close()  # its UDP thread failed (logged): open it afresh
        for address in sorted(wanted - self._open.keys()):
            try:
                self._open[address] = await Listener.open(address, self.port, self._udp_window, self._answer,
                                                          self._forward_datagram, self._serve_tcp, self._stats,
                                                          self._replay)
            except OSError as err:
                reason = await self._bind_failure(address, err)
                if self._bind_errors.get(address) != reason:
                    log.error("%s", reason)
                    self._bind_errors[address] = reason
                continue
            self._bind_errors.pop(address, None)
            log.info("listening on %s port %d", address, self.port)
        for address in sorted(self._open.keys() - wanted):
            await self._open.pop(address).close()
            log.info("stopped listening on %s", address)
        for address in list(self._bind_errors.keys() - wanted):
            del self._bind_errors[address]

    async def close(self) -> None:
        """Close every listener; returns once their addresses are free again."""
        for address in list(self._open):
            await self._open.pop(address).close()

    async def _bind_failure(self, address: str, err: OSError) -> str:
        """One line on why ``address`` cannot be served; for EADDRINUSE it names the holder (see netcore.holders)."""
        where = f"cannot listen on {address} port {self.port}"
        if err.errno != errno.EADDRINUSE:
            return f"{where}: {os.strerror(err.errno) if err.errno else err}"
        try:
            holders = await asyncio.get_running_loop().run_in_executor(None, describe_holders, address, self.port)
        except OSError as lookup_error:  # /proc unreadable: still say what failed
            holders = f"holder not found ({lookup_error})"
        return f"{where}: address already in use, {holders}"


class Listener:
    """A gateway address: a UDP socket served by a thread of its own (see ``dnsd.io.udp``) and a TCP server."""

    def __init__(self, address: str, udp_socket: socket.socket, tcp: asyncio.Server, udp_window: float,
                 answer: Answer, forward_datagram: ForwardDatagram, stats: Stats, replay: Replay | None = None):
        self.address = address
        self._replay = replay
        self.udp_socket = udp_socket
        self.tcp = tcp
        self._stopping = threading.Event()
        loop = asyncio.get_running_loop()
        self._udp_done = loop.create_future()
        self._thread = threading.Thread(target=self._serve_udp,
                                        args=(loop, udp_window, answer, forward_datagram, stats,
                                              replay.replay_table(address) if replay is not None else None),
                                        name=f"dnsd-udp-{address}", daemon=True)
        self._thread.start()

    @classmethod
    async def open(cls, address: str, port: int, udp_window: float, answer: Answer,
                   forward_datagram: ForwardDatagram, serve_tcp: ServeTcp, stats: Stats,
                   replay: Replay | None = None) -> Listener:
        """Bind both sockets to exactly ``address``:``port`` and start serving; OSError if either cannot be bound."""
        udp_socket = bound_socket(address, port, socket.SOCK_DGRAM)
        try:
            tcp_socket = bound_socket(address, port, socket.SOCK_STREAM)
            tcp = await asyncio.start_server(functools.partial(serve_tcp, address), sock=tcp_socket)
        except OSError:
            udp_socket.close()
            raise
        return cls(address, udp_socket, tcp, udp_window, answer, forward_datagram, stats, replay)

    @property
    def alive(self) -> bool:
        """False once the UDP thread has ended (it failed, or the listener is closing)."""
        return not self._udp_done.done()

    def _serve_udp(self, loop: asyncio.AbstractEventLoop, window: float, answer: Answer,
                   forward_datagram: ForwardDatagram, stats: Stats, replay_cell: list | None) -> None:
        """The UDP thread: answers through ``answer`` (the GIL keeps the snapshot swap atomic)."""
        address, replay = self.address, self._replay
        try:
            serve_datagrams(DatagramBatch(self.udp_socket), lambda data, client: answer(data, client, address, False),
                            lambda forward, client: forward_datagram(self, forward, client), self._stopping, window,
                            stats, replay_cell,
                            (lambda key, client: replay.remember_client(key, client, address)) if replay else None)
        except Exception as err:  # noqa: BLE001 - a thread must not die silently
            log.error("UDP listener on %s failed: %s", address, err)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(self._udp_done.set_result, None)

    def send_datagram(self, data: bytes, client: tuple) -> None:
        """Send one reply from the event loop (a forwarded answer); dropped if it cannot go at once."""
        if self._stopping.is_set():
            return
        with contextlib.suppress(OSError):
            self.udp_socket.sendto(data, socket.MSG_DONTWAIT, client)

    async def close(self) -> None:
        """Returns once both sockets are closed: a removed network's address is free again."""
        self._stopping.set()
        with contextlib.suppress(OSError):  # ENOTCONN, but it wakes the thread blocked in recvmmsg
            self.udp_socket.shutdown(socket.SHUT_RDWR)
        self.tcp.close()
        await self._udp_done
        self.udp_socket.close()
        if self._replay is not None:
            self._replay.forget_replay(self.address)


def bound_socket(address: str, port: int, kind: socket.SocketKind) -> socket.socket:
    """A socket bound to exactly this address (never a wildcard), even before the address exists.

    UDP gets a 4 MiB receive buffer and stays blocking (its thread waits in
    recvmmsg); TCP listens. Both set SO_REUSEPORT, so that a port published on
    every address of the gateway namespace (``-p 53:53/udp`` for a Pi-hole,
    issue 23 item 3) can be held beside them: the kernel lets a wildcard and
    a specific socket share a port only when both set it (as the same user),
    and then gives each packet to the most specific socket, dnsd's for its
    address (netcore.ports.HostPort.shares_dns_port). What SO_REUSEPORT would
    also let in, another socket on exactly this address and port, is kept
    out: one found there after the bind (``/proc/net``) is EADDRINUSE, as a
    socket without the option always is; and one that joins later gets
    nothing, as the group's program (SO_ATTACH_REUSEPORT_CBPF, one
    instruction, run only where the kernel picks among the group) sends
    every packet to its first socket, this one. OSError if the address
    cannot be bound.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            with contextlib.suppress(OSError):  # kernels before 4.15
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
        else:
            sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        if kind == socket.SOCK_DGRAM:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, UDP_RECEIVE_BUFFER)
            except PermissionError:  # not root: as much as net.core.rmem_max allows
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers; LISTEN still excludes
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setblocking(kind == socket.SOCK_DGRAM)  # UDP: its thread blocks in recvmmsg; TCP: the event loop
        sock.bind((address, port))
        if _shared(sock, address, port, "udp" if kind == socket.SOCK_DGRAM else "tcp"):
            raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
        if kind == socket.SOCK_STREAM:
            sock.listen(socket.SOMAXCONN)  # a TCP socket joins its reuseport group here
        with contextlib.suppress(OSError):  # a kernel before 4.5: no later joiner is kept out
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF,
                            struct.pack("@HP", 1, ctypes.addressof(_FIRST_OF_GROUP)))
    except OSError:
        sock.close()
        raise
    return sock


def _shared(sock: socket.socket, address: str, port: int, protocol: str) -> bool:
    """Whether another socket of this network namespace is bound to exactly ``address``:``port`` (one that
    also set SO_REUSEPORT, as the same user: any other would have made the bind fail). Reads the one table
    of /proc/net that can hold it; a table that cannot be read finds nothing."""
    own = os.fstat(sock.fileno()).st_ino
    wanted = ipaddress.ip_address(address)
    table = protocol + ("6" if wanted.version == 6 else "")
    try:
        with open(os.path.join(PROC_NET, table)) as f:
            found = parse_table(protocol, f.read())
    except OSError:
        return False
    return any(other.port == port and other.address == wanted and other.inode not in (0, own)
               and not (protocol == "tcp" and other.state == TCP_TIME_WAIT) for other in found)
