"""Who holds a port: the sockets of this network namespace bound to an address and port, and their processes.

When dnsd cannot bind a gateway address, or netcore a published host port
(EADDRINUSE), the operator needs to know what took it: another resolver
started in the gateway namespace, a host server, or something bound to the
wildcard address (containers/aardvark-dns#13, podman#23226). ``/proc/net/{udp,tcp}{,6}`` list the sockets of the network
namespace of the process reading them (dnsd runs inside the gateway namespace,
so it reads its own), each with its inode; ``/proc/PID/fd`` links name the
inode of each socket a process holds (``socket:[INODE]``), in any namespace.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from dataclasses import dataclass

PROC_NET = "/proc/net"
TABLES = ("udp", "udp6", "tcp", "tcp6")
TCP_LISTEN = 0x0A
TCP_TIME_WAIT = 0x06


@dataclass(frozen=True)
class BoundSocket:
    """One row of /proc/net/{udp,tcp}{,6}: protocol ('udp' or 'tcp'), local address and port, state, inode."""

    protocol: str
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int
    state: int
    inode: int


def parse_address(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """``0100000A:0035`` -> (10.0.0.1, 53): the kernel prints each 32-bit word of the address in host order
    (little-endian here) and the port in hex. 8 hex digits: IPv4; 32: IPv6. ValueError on anything else."""
    address_hex, _, port_hex = text.partition(":")
    if len(address_hex) not in (8, 32) or not port_hex:
        raise ValueError(f"bad /proc/net address {text!r}")
    raw = bytes.fromhex(address_hex)
    packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(packed)
    return address, int(port_hex, 16)


def parse_table(protocol: str, text: str) -> list[BoundSocket]:
    """Every socket row of one /proc/net table's text (the header and unreadable rows are skipped)."""
    sockets = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            address, port = parse_address(fields[1])
            sockets.append(BoundSocket(protocol, address, port, int(fields[3], 16), int(fields[9])))
        except ValueError:
            continue
    return sockets


def conflicting(sockets: list[BoundSocket], address: str, port: int) -> list[BoundSocket]:
    """The sockets that keep a bind of ``address``:``port`` from succeeding, exact address first.

    A socket on the same port conflicts when it is bound to that address, to its family's
    wildcard, or (for IPv4) to ``::`` without IPV6_V6ONLY, which /proc cannot tell, so it is
    listed too; for a wildcard ``address`` (a published port on every address), a socket bound
    to any address of its family conflicts. An IPv4-mapped IPv6 address counts as its IPv4
    address. TCP sockets in TIME_WAIT or without an inode (no process holds them) are left out.
    """
    wanted = ipaddress.ip_address(address)
    exact, wildcard = [], []
    for sock in sockets:
        if sock.port != port or sock.inode == 0 or (sock.protocol == "tcp" and sock.state == TCP_TIME_WAIT):
            continue
        bound = sock.address
        if bound.version == 6 and bound.ipv4_mapped is not None:
            bound = bound.ipv4_mapped
        if bound == wanted:
            exact.append(sock)
        elif bound.is_unspecified and (bound.version == wanted.version or bound.version == 6):
            wildcard.append(sock)
        elif wanted.is_unspecified and bound.version == wanted.version:
            exact.append(sock)
    return exact + wildcard


def read_sockets(proc_net: str = PROC_NET) -> list[BoundSocket]:
    """Every socket of this process's network namespace (tables that cannot be read are skipped)."""
    sockets = []
    for table in TABLES:
        try:
            with open(os.path.join(proc_net, table)) as f:
                sockets += parse_table(table.rstrip("6"), f.read())
        except OSError:
            continue
    return sockets


def socket_owners(inodes: set[int], proc: str = "/proc") -> dict[int, list[tuple[str, int]]]:
    """inode -> [(process name, pid)] of the processes holding these sockets, found through /proc/PID/fd.

    Every descriptor of every process is looked at: a process holding several of the sockets (dnsd's UDP
    and TCP listeners, the port holder's IPv4 and IPv6 sockets) is named for each of them (issue 23,
    item 4: stopping at its first match left the others to "an unknown process"). The name is
    ``process_name``'s: netcore's own processes are named for what they are.
    """
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    owners: dict[int, list[tuple[str, int]]] = {}
    if not wanted:
        return owners
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        fd_dir = os.path.join(proc, entry, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or not ours to read
            continue
        name = None
        for fd in fds:
            try:
                inode = wanted.get(os.readlink(os.path.join(fd_dir, fd)))
            except OSError:
                continue
            if inode is None:
                continue
            if name is None:
                name = process_name(proc, entry)
            if (name, int(entry)) not in owners.get(inode, []):  # two descriptors of one socket: one owner
                owners.setdefault(inode, []).append((name, int(entry)))
    return owners


DNSD_MODULE = "dnsd"  # ``python -m dnsd``: netcore's dnsd (and one run by hand)
SUPERVISOR_MODULE = "dnsd.supervise"
AGENT_MODULE = "netcore.agent"  # netcored: it holds the published ports
AARDVARK_HELPER_MARK = "# dnsd in aardvark-dns's place"  # the second line of dnsd.aardvark.HELPER_SCRIPT


def role_of(argv: list[str], script_head: str = "") -> str | None:
    """What a process of netcore's is, by its command line ``argv`` (``/proc/PID/cmdline`` split at NULs):
    ``dnsd``, ``dnsd's supervisor``, ``netcored``, ``dnsd (as aardvark-dns)``, each followed
    by ``of state dir DIR`` when its command line names one; None for any other process. ``script_head``
    is the start of the script ``argv[1]`` names, if any (the aardvark-dns helper is recognised by it).
    Pure."""
    module = None
    if "-m" in argv[1:-1]:  # python3 [-u ...] -m MODULE
        module = argv[argv.index("-m", 1) + 1]
    elif "dnsd" in (os.path.basename(a) for a in argv[:2]):
        module = DNSD_MODULE  # the console script
    roles = {DNSD_MODULE: "dnsd", SUPERVISOR_MODULE: "dnsd's supervisor", AGENT_MODULE: "netcored"}
    role = roles.get(module or "")
    if role is None and AARDVARK_HELPER_MARK in script_head:
        return "dnsd (as aardvark-dns)"
    if role is None:
        return None
    if "--state-dir" in argv[:-1]:
        return f"{role} of state dir {argv[argv.index('--state-dir') + 1]}"
    return role


def process_name(proc: str, pid: str) -> str:
    """How an error line names process ``pid``: netcore's own processes by their role (``role_of``: dnsd,
    its supervisor, netcored, which holds the published ports), any other by its ``comm`` (``nginx``); ``?``
    if it is gone."""
    try:
        with open(os.path.join(proc, pid, "cmdline"), "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0")[:-1]]
    except OSError:
        argv = []
    head = ""
    if len(argv) >= 2 and os.path.isabs(argv[1]):
        with contextlib.suppress(OSError), open(argv[1], "rb") as script:
            head = script.read(256).decode(errors="replace")
    role = role_of(argv, head)
    if role is not None:
        return role
    try:
        with open(os.path.join(proc, pid, "comm")) as f:
            return f.read().strip() or "?"
    except OSError:
        return "?"


def describe_holders(address: str, port: int, proc_net: str = PROC_NET) -> str:
    """What holds ``address``:``port`` in the network namespace of ``proc_net`` (this process's by default;
    ``/proc/thread-self/net`` for a thread that entered another one with setns), for an error line:
    ``held by nginx (pid 4242, udp 10.89.0.1:53)``, ``held by dnsd of state dir /var/lib/netcore (pid 42,
    udp 10.89.0.1:53)`` (netcore's own processes by their role, ``process_name``); every holder of every
    conflicting socket is named, joined with ``;``,
    and when no socket is found (it closed meanwhile, or another namespace) ``holder not found``."""
    found = conflicting(read_sockets(proc_net), address, port)
    if not found:
        return "holder not found"
    owners = socket_owners({sock.inode for sock in found})
    parts = []
    for sock in found:
        bound = f"[{sock.address}]" if sock.address.version == 6 else str(sock.address)
        where = f"{sock.protocol} {bound}:{sock.port}"
        for name, pid in owners.get(sock.inode, [("an unknown process", 0)]):
            part = f"{name} (pid {pid}, {where})" if pid else f"{name} ({where})"
            if part not in parts:
                parts.append(part)
    return "held by " + "; ".join(parts)
