"""Published host ports are really taken: netcore binds each one and a small process keeps the sockets open.

Docker binds (and for TCP listens on) every published host port for as long
as the mapping lives, so no host process can take the port later and break the
mapping silently. netcore does the same in two parts:

- the netcore command binds each new port itself, in the gateway namespace
  (``bind``), so a port already in use fails that command with one line naming
  the holder: ``Bind for 0.0.0.0:8080 failed: port is already allocated (held
  by python3 (pid 42, tcp 0.0.0.0:8080))``;
- it hands the bound socket (SCM_RIGHTS over a Unix socket,
  ``STATE_DIR/ports.sock``) to the port holder, ``python -m
  netcore.ports.holder``, a process started in the gateway namespace that does
  nothing but keep the sockets it is given, and closes them when told.

The holder knows no policy: the engine derives which ports must be held from
the store (netcore.ports.Mapping.held), asks the holder what it holds, binds
what is missing and releases the rest. A holder killed releases every port
with it (the kernel closes its sockets); the next netcore command starts a new
one and binds them again. A holder left in a gateway namespace that was
deleted and made anew holds sockets of the dead namespace: it is stopped and
replaced. Nothing reaches the held sockets: the firewall DNATs every packet to
a published port before it could be delivered to them.

``conntrack`` entries are this module's too (``forget``): when a UDP mapping
is added or removed, the entries for its host port are deleted, so a client
that keeps sending from one source port reaches the new container at once
instead of following a stale entry until it times out (moby/moby#8795, fixed
in moby PR #44742). pyroute2 speaks the conntrack netlink protocol.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import ipaddress
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable

from netcore.errors import NetcoreError
from netcore.kernel import netlink
from netcore.model import DNS_PORT
from netcore.ports import EPHEMERAL_DEFAULT, HostPort, parse_port_range, parse_reserved_ports, published_flow
from netcore.system import linux
from netcore.system.holders import TCP_TIME_WAIT, describe_holders, parse_table
from netcore.system.logfile import rotate_log

SOCKET_NAME = "ports.sock"
LOCK_NAME = "ports.lock"  # locked by the running holder, which writes its pid there: one holder per state dir
LOG_NAME = "ports.log"
START_TIMEOUT = 5.0
CLIENT_TIMEOUT = 1.0  # a client that sends no request within this many seconds is dropped (issue 24, item 6)
REPLY_TIMEOUT = 2.0  # a holder answers at once (it never waits on a client); one that does not within this is stuck
EXIT_ALREADY_RUNNING = 75  # another holder keeps this state dir's ports
MESSAGE_MAX = 1 << 20  # a `list` reply of every held port fits
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


def _request(path: str, text: str, fds: Iterable[int] = (), timeout: float = REPLY_TIMEOUT) -> str | None:
    """One request to the holder and its reply; None when no holder answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            socket.send_fds(sock, [text.encode()], list(fds))
            reply = sock.recv(MESSAGE_MAX)
            return reply.decode()
    except OSError:
        return None


class HostPorts:
    """The engine's side of held host ports for one state dir and gateway namespace (None: the host's).

    ``check(port)`` raises PortError unless the port could be bound now; ``held()`` is what the holder
    keeps (None: no holder runs); ``hold(ports)`` binds and hands over each, returning {port: why not}
    for those that failed; ``release(ports)`` closes them; ``forget(ports)`` deletes their conntrack
    entries; ``local_range()`` is where ephemeral ports come from. Errors other than a port's own are
    one-line PortErrors.
    """

    def __init__(self, state_dir: str, namespace: str | None):
        self.state_dir = state_dir
        self.namespace = namespace
        self.socket_path = os.path.join(state_dir, SOCKET_NAME)

    def _in_gateway(self):
        if self.namespace is None:
            return _NoSwitch()
        return linux.entered_netns(linux.netns_path(self.namespace))

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

    def _status(self) -> tuple[int, set[HostPort]] | None:
        reply = _request(self.socket_path, "list")
        if reply is None:
            return None
        pid_line, *keys = reply.splitlines()
        return int(pid_line.split()[1]), {HostPort.parse(key) for key in keys}

    def pid(self) -> int | None:
        """The holder's pid, or None when none answers."""
        status = self._status()
        return status[0] if status else None

    def held(self) -> set[HostPort] | None:
        """The ports the holder keeps; None when no holder runs. A holder in a gateway namespace that is
        not the live one (it was deleted and made anew) is stopped first: its sockets hold nothing here."""
        status = self._status()
        if status is None:
            return None
        pid, ports = status
        if self.namespace is not None and not self._in_live_namespace(pid):
            self.stop()
            return None
        return ports

    def _in_live_namespace(self, pid: int) -> bool:
        live = netlink.namespace_identity(linux.netns_path(self.namespace))
        theirs = netlink.namespace_identity(f"/proc/{pid}/ns/net")
        return live is None or theirs is None or live == theirs

    def hold(self, ports: Iterable[HostPort], shared_with: Iterable[str] = ()) -> dict[HostPort, str]:
        """Bind each port and hand it to the holder (started if needed); {port: reason} of those that failed.
        ``shared_with``: dnsd's addresses (see ``bind``)."""
        failures: dict[HostPort, str] = {}
        wanted, shared_with = sorted(ports), frozenset(shared_with)
        if not wanted:
            return failures
        self._ensure_running()
        for port in wanted:
            try:
                with self._in_gateway():
                    sock = bind(port, shared_with=shared_with)
            except PortError as err:
                failures[port] = str(err)
                continue
            with sock:
                if _request(self.socket_path, f"hold {port}", [sock.fileno()]) != "ok":
                    failures[port] = "the port holder did not take it"
        return failures

    def release(self, ports: Iterable[HostPort]) -> None:
        """Close the holder's sockets of ``ports`` (those it does not hold are no error)."""
        for port in sorted(ports):
            _request(self.socket_path, f"release {port}")

    def stop(self) -> None:
        """Stop the holder (every port it holds is released); no error if there is none. A holder that
        does not answer (found by its lock, ``LOCK_NAME``) is killed: nothing outlives ``purge``."""
        status = self._status()
        pid = status[0] if status else self._locked_pid()
        if pid is None:
            self._unlink()
            return
        if status is not None:
            _request(self.socket_path, "stop", timeout=CLIENT_TIMEOUT)
        _end(pid, 0 if status is None else 5.0)
        self._unlink()

    def _locked_pid(self) -> int | None:
        """The pid of the holder that keeps this state dir's lock, when one does; else None."""
        return locked_holder(os.path.join(self.state_dir, LOCK_NAME), self.socket_path)

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

    def _unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def _ensure_running(self) -> None:
        """Start a holder unless one answers. One that holds the lock without answering (it cannot be made
        to hang by a client any more, but could be stopped with SIGSTOP) is killed first, so there is
        never a second holder beside it (issue 24, item 6)."""
        if _request(self.socket_path, "list") is not None:
            return
        stuck = self._locked_pid()
        if stuck is not None:
            _end(stuck, 0)
        argv = [sys.executable, "-m", "netcore.ports.holder", self.socket_path]
        namespace = self.namespace

        def enter() -> None:  # in the child, before exec: the holder lives in the gateway namespace
            if namespace is not None:
                linux.enter_netns(namespace)
        log_path = os.path.join(self.state_dir, LOG_NAME)
        rotate_log(log_path)
        with open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600), "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True,
                                    start_new_session=True, preexec_fn=enter)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if _request(self.socket_path, "list", timeout=CLIENT_TIMEOUT) is not None:
                return
            if proc.poll() not in (None, EXIT_ALREADY_RUNNING):  # 75: another one came up meanwhile; ask it
                raise PortError(f"the port holder exited at start (status {proc.returncode}): see {log_path}")
            time.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise PortError(f"the port holder did not come up within {START_TIMEOUT:.0f} s: see {log_path}")


def locked_holder(lock_path: str, socket_path: str) -> int | None:
    """The pid of a live port holder of ``socket_path`` that keeps ``lock_path`` locked, or None: the lock
    is free (no holder), the file names no pid, or that pid is not a port holder of this socket (checked
    against its command line, so a reused pid is never signalled)."""
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: a holder runs
        else:
            return None
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    finally:
        os.close(fd)
    if not text.isdigit():
        return None
    try:
        with open(f"/proc/{text}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    return int(text) if b"netcore.ports.holder" in argv and socket_path.encode() in argv else None


def _end(pid: int, grace: float) -> None:
    """End holder ``pid``: wait ``grace`` seconds for it to go by itself, then SIGKILL it and wait until it is gone."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.01)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.01)


class _NoSwitch:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# -- the holder process -----------------------------------------------------------------------------------------


def serve(path: str) -> int:
    """Keep the sockets handed over on ``path`` until told to stop. Requests, one a message:
    ``hold KEY`` with one file descriptor (replacing any kept under KEY), ``release KEY``, ``list`` (reply:
    ``pid PID`` then one KEY a line), ``stop``. Replies ``ok`` or ``error: ...``.

    One holder per state dir: it locks ``LOCK_NAME`` beside ``path`` (and writes its pid there) before
    it binds, and returns ``EXIT_ALREADY_RUNNING`` when another holder has it. Clients are served
    side by side; one that sends nothing within ``CLIENT_TIMEOUT`` seconds is dropped, so a silent
    client never stalls another, nor the netcore command that needs the holder (the CVE-2024-8418
    pattern, issue 24, item 6). Returns 0 once stopped."""
    lock_path = os.path.join(os.path.dirname(path), LOCK_NAME)
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        return EXIT_ALREADY_RUNNING
    os.ftruncate(lock, 0)
    os.pwrite(lock, f"{os.getpid()}\n".encode(), 0)
    held: dict[str, socket.socket] = {}
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a dead holder's socket file: the lock says no other holder serves it
    old_umask = os.umask(0o077)
    try:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        server.bind(path)
    finally:
        os.umask(old_umask)
    server.listen(16)
    server.setblocking(False)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    waiting = selectors.DefaultSelector()
    waiting.register(server, selectors.EVENT_READ)
    deadlines: dict[socket.socket, float] = {}
    try:
        while True:
            now = time.monotonic()
            for conn in [c for c, deadline in deadlines.items() if deadline <= now]:  # silent too long: dropped
                waiting.unregister(conn)
                del deadlines[conn]
                conn.close()
            timeout = max(0.0, min(deadlines.values()) - now) if deadlines else None
            for key, _events in waiting.select(timeout):
                if key.fileobj is server:
                    with contextlib.suppress(BlockingIOError, InterruptedError):
                        conn, _ = server.accept()
                        conn.setblocking(False)
                        waiting.register(conn, selectors.EVENT_READ)
                        deadlines[conn] = time.monotonic() + CLIENT_TIMEOUT
                    continue
                conn = key.fileobj
                waiting.unregister(conn)
                del deadlines[conn]
                with conn:
                    if _answer(conn, held):
                        return 0
    finally:
        for sock in held.values():
            sock.close()
        server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(lock)  # the lock goes last: no new holder binds while this one still has the socket file


def _answer(conn: socket.socket, held: dict[str, socket.socket]) -> bool:
    """Read one request from ``conn`` (readable, non-blocking) and answer it; True when it says ``stop``."""
    try:
        message, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
    except OSError:
        return False
    word, _, key = message.decode(errors="replace").partition(" ")
    reply = "ok"
    if word == "hold" and fds:
        if key in held:
            held.pop(key).close()
        held[key] = socket.socket(fileno=fds[0])
    elif word == "release":
        if key in held:
            held.pop(key).close()
    elif word == "list":
        reply = "\n".join([f"pid {os.getpid()}", *sorted(held)])
    elif word == "stop":
        with contextlib.suppress(OSError):
            conn.send(b"ok")
        return True
    else:
        for fd in fds:
            os.close(fd)
        reply = f"error: unknown request {word!r}"
    with contextlib.suppress(OSError):  # a client gone meanwhile
        conn.send(reply.encode())
    return False


def main(argv: list[str] | None = None) -> int:
    """``python -m netcore.ports.holder SOCKET``: what HostPorts starts in the gateway namespace."""
    parser = argparse.ArgumentParser(prog="netcore.ports.holder", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument("socket", help="the Unix socket to serve (STATE_DIR/ports.sock)")
    args = parser.parse_args(argv)
    return serve(args.socket)


if __name__ == "__main__":
    sys.exit(main())
