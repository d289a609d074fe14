"""Processes netcore started: whether one is alive, and whether a pid is the process it is said to be.

The one home of these facts (netcore's agent, dnsd and its supervisor, the port holder, and the tests'
sandboxes all ask them): a pid read from a pid file may be gone, a zombie, or reused by another program.
"""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: it exists, is not a zombie (ended, not yet reaped: it serves nothing), and may be
    another user's (EPERM still means it exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def runs_module(pid: int, module: str, state_dir: str) -> bool:
    """Whether ``pid`` is ``python -m MODULE ... STATE_DIR ...``: a process netcore started for this state dir
    (its command line names both as whole words), so a reused pid is never taken for it."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return module.encode() in argv and state_dir.encode() in argv
