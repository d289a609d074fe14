"""The few Linux calls Python 3.11 lacks, through libc: setns(2), unshare(2), mount(2), prctl(2), malloc_trim(3).

``LIBC`` is the project's one handle on libc (dnsd.io.udp takes recvmmsg and sendmmsg from it).

Namespaces are per thread for networking, so switching the calling thread in
and out of a namespace is how netcore creates namespaces and opens netlink
sockets inside them without forking a helper process for each (what
`ip netns add` and `ip -n NS` do, at a fraction of pyroute2's fork-based cost).

A named network namespace is a file under ``NETNS_DIR``, as `ip netns` pins
them; ``netns_path`` is the one place that turns a name into that path, and
``enter_netns`` and ``entered_netns`` the ways into it.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
THREAD_NETNS = "/proc/thread-self/ns/net"
NETNS_DIR = "/run/netns"  # where named network namespaces are pinned (`ip netns add`, netcore)

LIBC = ctypes.CDLL(None, use_errno=True)


def _check(result: int, call: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{call}: {os.strerror(err)}")


def setns(fd: int, nstype: int) -> None:
    _check(LIBC.setns(fd, nstype), "setns")


PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int) -> None:
    """Have the kernel send ``signum`` to this process when the thread that forked it exits (prctl(2))."""
    _check(LIBC.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0), "prctl")


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim; elsewhere nothing)."""
    trim = getattr(LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


def unshare(flags: int) -> None:
    _check(LIBC.unshare(flags), "unshare")


def mount(source: str | None, target: str, flags: int) -> None:
    _check(LIBC.mount(source.encode() if source else b"none", target.encode(), None, flags, None), f"mount {target}")


def netns_path(name: str, directory: str = NETNS_DIR) -> str:
    """The path of the network namespace named ``name`` under ``directory``.

    OSError(EINVAL) if ``name`` cannot name one there: empty, ``.``, ``..``, or with a ``/``.
    """
    if not name or "/" in name or name in (".", ".."):
        raise OSError(errno.EINVAL, f"bad network namespace name {name!r}")
    return os.path.join(directory, name)


def enter_netns(name: str, directory: str = NETNS_DIR) -> None:
    """Move the calling thread into the existing network namespace named ``name``, for good (never creates one).

    Threads started afterwards are born there; one that started before stays
    where it was. OSError: a bad name (EINVAL, see ``netns_path``), no such
    namespace (FileNotFoundError), not root (PermissionError).
    """
    _set_netns(netns_path(name, directory))


@contextmanager
def entered_netns(path: str) -> Iterator[None]:
    """Run the block with this thread inside the network namespace at ``path``, then come back."""
    saved = os.open(THREAD_NETNS, os.O_RDONLY)
    try:
        _set_netns(path)
        try:
            yield
        finally:
            setns(saved, CLONE_NEWNET)
    finally:
        os.close(saved)


def _set_netns(path: str) -> None:
    """Move the calling thread into the network namespace at ``path`` (a /run/netns file or /proc/.../ns/net)."""
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(target, CLONE_NEWNET)
    finally:
        os.close(target)


def new_netns_at(path: str) -> None:
    """Create a network namespace and pin it by bind-mounting it on ``path`` (an existing empty file)."""
    saved = os.open(THREAD_NETNS, os.O_RDONLY)
    try:
        unshare(CLONE_NEWNET)
        try:
            mount(THREAD_NETNS, path, MS_BIND)
        finally:
            setns(saved, CLONE_NEWNET)
    finally:
        os.close(saved)
