"""The kernel's rule for interface names, pure: what the drivers name their devices and the firewall matches."""

from __future__ import annotations

from netcore.errors import NetcoreError
from netcore.model import NAME_RE

IFNAMSIZ = 15  # a Linux interface name holds at most 15 characters (IFNAMSIZ - 1)


def check_device_name(name: str, what: str = "bridge") -> str:
    """``name`` if Linux takes it as an interface name (at most 15 of [a-zA-Z0-9_.-]); else NetcoreError
    ``invalid WHAT name ...``."""
    if len(name) > IFNAMSIZ or not NAME_RE.match(name):
        raise NetcoreError(f"invalid {what} name {name!r}: at most {IFNAMSIZ} of [a-zA-Z0-9_.-]")
    return name
