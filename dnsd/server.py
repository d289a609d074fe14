"""The asyncio shell: sockets on every gateway address, the control socket, reloads.

The shell decides nothing about names. It reads datagrams and TCP messages,
hands them to the Answerer and sends what comes back, hands Forward decisions
to the Forwarder, and swaps in a new Snapshot whenever the store changes: a
patch of the last one when the store's change feed names a few containers, a
full build otherwise. Listeners are kept in a registry keyed by address and
diffed on every reload, so one network's listener comes or goes without
touching the others.

Each listener's UDP socket has a thread of its own that reads and answers
datagrams in batches (``dnsd.udp``); TCP, forwarding, the control socket and
reloads run on the event loop, and snapshots are built in a reload thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import logging
import os
import socket
import struct
import termios
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from netcore.dnsd_control import format_sync_reply
from netcore.errors import NetcoreError
from netcore.linux import release_free_memory
from netcore.model import Attached, Network

from .answer import Answerer, Forward
from .builder import SnapshotBuilder
from .forward import DEFAULT_MAX_INFLIGHT, DEFAULT_TIMEOUT, Forwarder
from .holders import describe_holders
from .snapshot import Snapshot, Upstream
from .udp import DEFAULT_WINDOW, DatagramBatch, serve as serve_datagrams

log = logging.getLogger("dnsd")

UDP_RECEIVE_BUFFER = 4 * 1024 * 1024  # a dnsperf-style opening burst fits without loss
MAX_MESSAGE = 65535
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # bind before the bridge has its address
IPV6_FREEBIND = getattr(socket, "IPV6_FREEBIND", 78)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # past net.core.rmem_max, as root
CONTROL_IDLE = 30.0  # seconds a control connection may stay silent


class DnsdError(NetcoreError):
    """A problem the operator can act on: another dnsd running, a namespace missing, a bad argument."""


@dataclass(frozen=True)
class ServerConfig:
    port: int = 53
    ttl: int = 0
    upstreams: tuple[Upstream, ...] = ()  # when neither the container nor the network names any
    forward_timeout: float = DEFAULT_TIMEOUT
    max_inflight: int = DEFAULT_MAX_INFLIGHT
    max_inflight_per_client: int | None = None  # default: an eighth of max_inflight, at least 16

    @property
    def client_share(self) -> int:
        """How many forwarded queries one client address may have in flight."""
        return self.max_inflight_per_client or min(self.max_inflight, max(16, self.max_inflight // 8))
    tcp_idle: float = 3.0  # seconds before a silent TCP connection is closed; also the write timeout
    tcp_max: int = 512  # open TCP connections, all listeners together
    control_path: str | None = None  # the Unix socket netcore talks to
    managed: bool = False  # started by netcore (versus in the foreground under a supervisor)
    poll_interval: float = 1.0  # the backstop: how often the store's generation is checked
    udp_window: float = DEFAULT_WINDOW  # seconds a busy UDP listener lets queries gather (see dnsd.udp)


class RecordSource(Protocol):
    """Where the records come from: netcore's ``Store`` (opened read-only) is one."""

    def generation(self) -> int:
        """A counter that every change of the records bumps."""

    def dns_records(self) -> AbstractContextManager[tuple[list[Network], Iterator[Attached]]]:
        """In one read: every running network, and every running container with its running endpoints."""

    def changes_since(self, generation: int) -> tuple[int, set[str] | None]:
        """The current generation, and the IDs of the containers changed since ``generation`` (None: reload all)."""

    def container_records(self, ids: set[str]) -> list[Attached]:
        """The running ones of these containers, each with its running endpoints."""


class DnsServer:
    """Serves the records of ``records``, following its generation.

    Every call to ``records`` runs in one worker thread, which also owns the
    snapshot builder, so a reload never stalls the queries.
    """

    def __init__(self, config: ServerConfig, records: RecordSource):
        self.config = config
        self.answerer = Answerer(Snapshot.empty(), config.upstreams)
        self.forwarder = Forwarder(config.forward_timeout, config.max_inflight, config.client_share)
        self._records = records
        self._builder = SnapshotBuilder(config.ttl)
        self._generation: int | None = None
        self._reload_lock = asyncio.Lock()
        self._reload_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dnsd-reload")
        self._listeners: dict[str, _Listener] = {}
        self._bind_errors: dict[str, str] = {}
        self._tasks: set[asyncio.Task] = set()
        self._tcp_connections: dict[asyncio.Task, asyncio.StreamWriter] = {}
        self._control: asyncio.Server | None = None
        self._stopped = asyncio.Event()
        self._internal_errors = 0
        self._last_internal_error = ""
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def listen_addresses(self) -> frozenset[str]:
        return frozenset(self._listeners)

    @property
    def generation(self) -> int | None:
        return self._generation

    @property
    def down_listeners(self) -> dict[str, str]:
        """Gateway address -> why dnsd cannot listen there (one line), for every wanted address not served."""
        return {address: reason for address, reason in self._bind_errors.items() if address not in self._listeners}

    async def start(self) -> None:
        """Open the control socket, load the records and open the listeners; DnsdError if another dnsd runs."""
        self._loop = asyncio.get_running_loop()
        if self.config.control_path:  # first, so a second dnsd for the same state dir stops before binding
            self._control = await _open_control_socket(self.config.control_path, self._serve_control)
        await self.sync()
        for background in (self._poll_generation(), self._report_bad_input()):
            self._spawn(background)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def request_stop(self) -> None:
        self._stopped.set()

    async def close(self) -> None:
        if self._control is not None:
            self._control.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.config.control_path)
        for address in list(self._listeners):
            await self._listeners.pop(address).close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._tcp_connections.values():  # each connection's task sees its end and finishes
            writer.close()
        if self._tcp_connections:
            await asyncio.wait(list(self._tcp_connections), timeout=self.config.tcp_idle)
        self._reload_thread.shutdown(wait=False, cancel_futures=True)

    async def sync(self) -> int:
        """Reload if the store changed and reconcile the listeners; returns once the new snapshot is live."""
        async with self._reload_lock:
            loop = asyncio.get_running_loop()
            generation, snapshot = await loop.run_in_executor(self._reload_thread, self._load_if_changed,
                                                              self._generation)
            if snapshot is not None:
                self.answerer.snapshot = snapshot
                self._generation = generation
            await self._reconcile_listeners()
            return self._generation

    def _load_if_changed(self, known: int | None) -> tuple[int, Snapshot | None]:
        """In the reload thread: the generation, and a new snapshot if it is not the one already loaded.

        A few changed containers are patched into the last snapshot; a network
        change, a gap in the change feed or a large change rebuilds it whole.
        """
        if known is not None:
            generation, changed = self._records.changes_since(known)
            if generation == known:
                return generation, None
            if changed is not None and self._builder.can_patch(len(changed)):
                return generation, self._builder.patch(changed, self._records.container_records(changed))
        generation = self._records.generation()
        with self._records.dns_records() as (networks, containers):
            snapshot = self._builder.build(networks, containers)
        release_free_memory()  # a full build leaves the previous snapshot behind
        return generation, snapshot

    async def _reconcile_listeners(self) -> None:
        wanted = self.answerer.snapshot.listen_addresses
        for address in [address for address, listener in self._listeners.items() if not listener.alive]:
            await self._listeners.pop(address).close()  # its UDP thread failed (logged): open it afresh
        for address in sorted(wanted - self._listeners.keys()):
            try:
                self._listeners[address] = await _Listener.open(self, address)
            except OSError as err:
                reason = await self._bind_failure(address, err)
                if self._bind_errors.get(address) != reason:
                    log.error("%s", reason)
                    self._bind_errors[address] = reason
                continue
            self._bind_errors.pop(address, None)
            log.info("listening on %s port %d", address, self.config.port)
        for address in sorted(self._listeners.keys() - wanted):
            await self._listeners.pop(address).close()
            log.info("stopped listening on %s", address)
        for address in list(self._bind_errors.keys() - wanted):
            del self._bind_errors[address]

    async def _bind_failure(self, address: str, err: OSError) -> str:
        """One line on why ``address`` cannot be served; for EADDRINUSE it names the holder (see dnsd.holders)."""
        where = f"cannot listen on {address} port {self.config.port}"
        if err.errno != errno.EADDRINUSE:
            return f"{where}: {os.strerror(err.errno) if err.errno else err}"
        try:
            holders = await asyncio.get_running_loop().run_in_executor(None, describe_holders, address,
                                                                       self.config.port)
        except OSError as lookup_error:  # /proc unreadable: still say what failed
            holders = f"holder not found ({lookup_error})"
        return f"{where}: address already in use, {holders}"

    async def _poll_generation(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_interval)
            try:
                await self.sync()
            except Exception as err:  # the store may be busy or gone for a moment; the next poll retries
                log.warning("reload failed: %s", err)

    async def _report_bad_input(self) -> None:
        """At most one log line per second about malformed messages and internal errors."""
        reported_bad, reported_errors = 0, 0
        while True:
            await asyncio.sleep(1.0)
            bad, errors = self.answerer.bad_input_count, self._internal_errors
            if bad != reported_bad:
                reason, source = self.answerer.last_bad_input
                log.warning("%d malformed messages in the last second, the latest from %s: %s",
                            bad - reported_bad, source, reason)
            if errors != reported_errors:
                log.error("%d messages failed with an internal error, the latest: %s",
                          errors - reported_errors, self._last_internal_error)
            reported_bad, reported_errors = bad, errors

    def _answer(self, data: bytes, client_ip: str, listener_ip: str, tcp: bool) -> bytes | Forward | None:
        try:
            return self.answerer.handle(data, client_ip, listener_ip, tcp)
        except Exception as err:  # a bug; the message is dropped and the server goes on
            self._internal_errors += 1
            self._last_internal_error = repr(err)
            return None

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- UDP -----------------------------------------------------------------

    def _forward_datagram_later(self, listener: _Listener, forward: Forward, client: tuple) -> None:
        """Called from a listener's UDP thread: the forwarding itself runs on the event loop."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: dnsd is stopping, the query goes unanswered
            self._loop.call_soon_threadsafe(self._forward_datagram_now, listener, forward, client)

    def _forward_datagram_now(self, listener: _Listener, forward: Forward, client: tuple) -> None:
        self._spawn(self._forward_datagram(listener, forward, client))

    async def _forward_datagram(self, listener: _Listener, forward: Forward, client: tuple) -> None:
        reply = await self.forwarder.resolve(forward, tcp=False, client=client[0])
        listener.send_datagram(reply, client)

    # -- TCP -----------------------------------------------------------------

    async def _serve_tcp(self, listener_ip: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One task per connection: several length-prefixed queries, closed when idle, slow or garbled."""
        if len(self._tcp_connections) >= self.config.tcp_max:
            # the longest-open connection makes room: abusers holding every slot never lock newcomers out
            _close_now(next(iter(self._tcp_connections.values())))
        connection = asyncio.current_task()
        self._tcp_connections[connection] = writer
        client_ip = writer.get_extra_info("peername")[0]
        forwarding: set[asyncio.Task] = set()
        try:
            while True:
                try:
                    async with asyncio.timeout(self.config.tcp_idle):
                        length = int.from_bytes(await reader.readexactly(2), "big")
                        message = await reader.readexactly(length)
                except TimeoutError:
                    if forwarding:  # not idle: answers are on their way
                        await asyncio.wait(forwarding)
                    break
                result = self._answer(message, client_ip, listener_ip, True)
                if result is None:
                    break
                if type(result) is bytes:
                    await self._write_message(writer, result)
                else:
                    task = self._spawn(self._forward_message(result, writer, client_ip))
                    forwarding.add(task)
                    task.add_done_callback(forwarding.discard)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            del self._tcp_connections[connection]
            for task in forwarding:
                task.cancel()
            _close_now(writer)

    async def _forward_message(self, forward: Forward, writer: asyncio.StreamWriter, client_ip: str) -> None:
        reply = await self.forwarder.resolve(forward, tcp=True, client=client_ip)
        try:
            await self._write_message(writer, reply)
        except (ConnectionError, TimeoutError):
            _close_now(writer)

    async def _write_message(self, writer: asyncio.StreamWriter, message: bytes) -> None:
        """Write one length-prefixed message; a client that does not read it in time loses the connection."""
        writer.write(len(message).to_bytes(2, "big") + message)
        async with asyncio.timeout(self.config.tcp_idle):
            await writer.drain()

    # -- control socket ------------------------------------------------------

    async def _serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Line protocol: ``ping`` -> ``pong PID MODE``, ``sync`` (reload, then report) and ``status`` (report) ->
        ``ok GENERATION [{ADDRESS: WHY, ...}]`` (see netcore.dnsd_control.format_sync_reply), ``stop`` -> ``ok``."""
        try:
            while True:
                async with asyncio.timeout(CONTROL_IDLE):
                    line = await reader.readline()
                if not line:
                    break
                command = line.decode(errors="replace").strip()
                reply = await self._control_reply(command)
                writer.write(reply.encode() + b"\n")
                await writer.drain()
                if command == "stop":
                    self.request_stop()
                    break
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    async def _control_reply(self, command: str) -> str:
        if command == "ping":
            return f"pong {os.getpid()} {'managed' if self.config.managed else 'foreground'}"
        if command == "sync":
            try:
                return format_sync_reply(await self.sync(), self.down_listeners)
            except Exception as err:  # reported to the caller, who retries or gives up
                log.warning("sync failed: %s", err)
                return f"error {err}".replace("\n", " ")
        if command == "status":
            return format_sync_reply(self._generation, self.down_listeners)
        if command == "stop":
            return "ok"
        return f"error unknown command {command[:40]!r}"


class _Listener:
    """A gateway address: a UDP socket served by a thread of its own (see ``dnsd.udp``) and a TCP server."""

    def __init__(self, server: DnsServer, address: str, udp_socket: socket.socket, tcp: asyncio.Server):
        self.address = address
        self.udp_socket = udp_socket
        self.tcp = tcp
        self._stopping = threading.Event()
        self._udp_done = asyncio.get_running_loop().create_future()
        self._thread = threading.Thread(target=self._serve_udp, args=(server, asyncio.get_running_loop()),
                                        name=f"dnsd-udp-{address}", daemon=True)
        self._thread.start()

    @classmethod
    async def open(cls, server: DnsServer, address: str) -> _Listener:
        port = server.config.port
        udp_socket = _bound_socket(address, port, socket.SOCK_DGRAM)
        try:
            tcp_socket = _bound_socket(address, port, socket.SOCK_STREAM)
            tcp = await asyncio.start_server(functools.partial(server._serve_tcp, address), sock=tcp_socket)
        except OSError:
            udp_socket.close()
            raise
        return cls(server, address, udp_socket, tcp)

    @property
    def alive(self) -> bool:
        return not self._udp_done.done()

    def _serve_udp(self, server: DnsServer, loop: asyncio.AbstractEventLoop) -> None:
        """The UDP thread: answers through ``server._answer`` (the GIL keeps the snapshot swap atomic)."""
        address, answer = self.address, server._answer
        try:
            serve_datagrams(DatagramBatch(self.udp_socket), lambda data, client: answer(data, client, address, False),
                            lambda forward, client: server._forward_datagram_later(self, forward, client),
                            self._stopping, server.config.udp_window)
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


def _bound_socket(address: str, port: int, kind: socket.SocketKind) -> socket.socket:
    """A non-blocking socket bound to exactly this address (never a wildcard), even before the address exists."""
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
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TCP only: UDP must not share the port
        sock.setblocking(kind == socket.SOCK_DGRAM)  # UDP: its thread blocks in recvmmsg; TCP: the event loop
        sock.bind((address, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(socket.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    return sock


def _close_now(writer: asyncio.StreamWriter) -> None:
    """Close a TCP connection without waiting on its client: unsent data is dropped (RST), not flushed.

    Unsent data may sit in the transport or in the kernel's send queue; either way a
    client that stopped reading must not keep buffers and an orphaned socket alive.
    """
    if writer.transport.get_write_buffer_size() or _kernel_send_queue(writer):
        writer.transport.abort()
    else:
        writer.close()


def _kernel_send_queue(writer: asyncio.StreamWriter) -> int:
    """Bytes the kernel still holds unsent (or unacknowledged) for this connection."""
    sock = writer.get_extra_info("socket")
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (OSError, AttributeError, ValueError):
        return 0


async def _open_control_socket(path: str, serve: Callable) -> asyncio.Server:
    """The control socket, mode 0600; refuses to take over from a dnsd still answering on it."""
    if os.path.exists(path):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except (ConnectionRefusedError, FileNotFoundError):
                os.unlink(path)  # left behind by a dnsd that died
            else:
                raise DnsdError(f"another dnsd already serves {os.path.dirname(path) or '.'} (socket {path})")
    old_umask = os.umask(0o177)
    try:
        return await asyncio.start_unix_server(serve, path=path)
    finally:
        os.umask(old_umask)
