"""Processes: whether one is alive, whether a pid is the process it is said to be, which network namespace
it is in, and the pid files that name netcore's and dnsd's own processes.

The one home of these facts (netcore's agent and its supervisor of containers' processes, the dnsd control,
dnsd and its aardvark-dns mode, the port holder, the CNI store, and the tests' sandboxes all ask them): a pid
read from a pid file may be gone, a zombie, or reused by another program. Everything here reads /proc of this
process's pid namespace; nothing is signalled.
"""

from __future__ import annotations

import contextlib
import os

from netcore.system.files import write_atomically

DEAD_STATES = ("Z", "X")  # /proc/PID/stat's state of a process that ended: zombie (not yet reaped), dead


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, the state first (so field N of proc(5) is index
    N - 3); None if there is no such process. The command name is skipped by its last ``)``: a name may
    hold spaces and parentheses of its own."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields or None


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (field 22 of /proc/PID/stat); None if gone."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def alive(pid: int, ticks: int | None = None) -> bool:
    """Whether ``pid`` runs: it exists, whoever's it is, and has not ended (a zombie, ended and not yet
    reaped, serves nothing and holds no socket; nor does a dead one); with ``ticks`` (``start_ticks`` as
    read when it was started), whether it is still that process and not another that reused its pid."""
    fields = stat_fields(pid)
    if fields is None or fields[0] in DEAD_STATES:
        return False
    return ticks is None or (len(fields) > 19 and int(fields[19]) == ticks)


def runs_module(pid: int, module: str, state_dir: str) -> bool:
    """Whether ``pid`` is ``python -m MODULE ... STATE_DIR ...``: a process netcore started for this state dir
    (its command line names both as whole words), so a reused pid is never taken for it."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return module.encode() in argv and state_dir.encode() in argv


def namespace_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the network namespace at ``path`` (/run/netns/NAME, /proc/PID/ns/net, a bind mount
    of either): equal for two paths exactly when they are the same namespace, as ``ip netns identify``
    compares them; None if it cannot be read (gone, no such pid, a bad path)."""
    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return None
    return found.st_dev, found.st_ino


def runs_in_namespace(pid: int, path: str) -> bool | None:
    """Whether process ``pid`` is in the network namespace at ``path`` now (a namespace made anew under the
    same name is another one); None when either cannot be read."""
    live = namespace_identity(path)
    theirs = namespace_identity(f"/proc/{pid}/ns/net")
    if live is None or theirs is None:
        return None
    return live == theirs


def write_pid_file(path: str, newline: bool = True) -> None:
    """Write this process's pid into ``path`` by rename, so a reader never sees it empty or half written
    (mode 0644, not synced: it names a running process, which a crash ends anyway). ``newline=False``:
    the bare number, for a reader that parses the whole file as one (netavark reads aardvark-dns's so).
    OSError if it cannot be written."""
    write_atomically(path, f"{os.getpid()}\n" if newline else str(os.getpid()))


def remove_pid_file(path: str) -> None:
    """Remove the pid file at ``path`` if it still names this process (a newer one may have written its own
    since); nothing if it is gone, unreadable or another's."""
    with contextlib.suppress(OSError, ValueError):
        with open(path) as pid_file:
            if int(pid_file.read().strip()) != os.getpid():
                return
        os.unlink(path)
