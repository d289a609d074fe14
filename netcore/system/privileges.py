"""What netcore needs of its process's privileges, read from /proc (no libc call: the CLI client imports this)."""

from __future__ import annotations

CAPABILITIES = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21}


def missing_capabilities(status_path: str = "/proc/self/status") -> list[str]:
    """The capabilities netcore needs (``CAPABILITIES``) that this process lacks in its effective set.

    The CLI client checks them before it speaks to or starts the agent, before anything is written; the Engine
    does not (an Engine given an in-memory kernel runs without root). Returns
    names, e.g. ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"].
    """
    with open(status_path) as f:
        effective = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    return [name for name, bit in CAPABILITIES.items() if not effective >> bit & 1]
