"""Whether anything changed nftables in the gateway namespace since netcore last looked: the kernel says so.

nftables multicasts every committed change to the NFNLGRP_NFTABLES group of NETLINK_NETFILTER sockets
(``nft monitor`` listens the same way). netcored keeps one such socket in the gateway namespace: after its
own commit it drains what that commit sent, so a message found later is somebody else's change (``nft flush
ruleset``, a firewall reload, another tool's table) and the firewall is checked and put back. No ruleset is
listed and no transaction committed while nothing changed.
"""

from __future__ import annotations

import socket

from netcore.system import linux
from netcore.system.processes import namespace_identity

NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1


class NftMonitor:
    """The nftables change feed of ``namespace`` (None: this process's own). ``changed()`` says whether a
    change was committed since the last call (or since the socket was opened in the live namespace)."""

    def __init__(self, namespace: str | None):
        self.namespace = namespace
        self._sock: socket.socket | None = None
        self._identity: tuple[int, int] | None = None

    def _identity_now(self) -> tuple[int, int] | None:
        return namespace_identity(linux.netns_path(self.namespace) if self.namespace else "/proc/self/ns/net")

    def _open(self) -> None:
        def make() -> socket.socket:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                                 NETLINK_NETFILTER)
            sock.bind((0, 0))
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
            return sock
        if self.namespace is None:
            self._sock = make()
        else:
            with linux.entered_netns(linux.netns_path(self.namespace)):
                self._sock = make()

    def changed(self) -> bool:
        """Whether nftables changed since the last call: True when a change message waits (or messages were
        lost: the socket's buffer overran), when the gateway namespace is not the one watched (made anew),
        or the first time; False when nothing changed. The messages are read and dropped."""
        identity = self._identity_now()
        if self._sock is None or identity != self._identity:
            self.close()
            if identity is None:
                return True  # no gateway namespace: the next action makes it, and applies the firewall
            try:
                self._open()
            except OSError:
                return True  # cannot watch: always look
            self._identity = identity
            self.drain()
            return True
        return self.drain()

    def drain(self) -> bool:
        """Read every message waiting; whether there was one (or an overrun lost some)."""
        if self._sock is None:
            return True
        found = False
        while True:
            try:
                if not self._sock.recv(65536):
                    return True
                found = True
            except BlockingIOError:
                return found
            except OSError:  # ENOBUFS: more changes than the buffer held
                found = True

    def fileno(self) -> int | None:
        """The socket to wait on (select/poll) for a change, when one is open."""
        return self._sock.fileno() if self._sock is not None else None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
