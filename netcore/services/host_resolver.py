"""The host's own resolver, pointed at dnsd for the names of each network (opt-in: ``netcore host-dns on``).

With systemd-resolved, each DNS-enabled network's bridge gets its gateway as
per-link DNS server and the network's name as a routing-only domain
(``resolvectl dns BRIDGE GATEWAY``, ``resolvectl domain BRIDGE ~NETWORK``), so
the host resolves ``web.app`` through dnsd (which answers the gateway
namespace with every network: dnsd's "names from the host") and nothing else
changes: no default route for DNS, no search domain. That is what
systemd-resolved's documentation calls a routing-only domain (resolved.conf(5),
resolvectl(1)); moby/moby#27790 and containers/aardvark-dns#82 ask for it.

Opt-in and remembered in the state dir (``HOST_DNS_NAME``: the bridges set
up, with the interface index each had): every netcore action re-applies it to
a bridge that is new or was re-created (systemd-resolved forgets a link's
settings with the link) and reverts (``resolvectl revert``) a bridge whose
network is gone. ``off`` reverts them all. Without systemd-resolved, one line
says what to configure by hand.

Host mode only: in sandbox mode the bridges are in the gateway namespace,
which the host's resolver cannot reach. The commands run through an injected
``runner`` (tests check them against a fake); ``plan`` is pure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable

from netcore.errors import NetcoreError
from netcore.model import Network
from netcore.system.files import write_atomically

HOST_DNS_NAME = "host-dns.json"  # in the state dir: present while on; bridge -> interface index set up
RESOLVECTL = "resolvectl"

Runner = Callable[[list[str]], None]  # runs one command; raises OSError or CalledProcessError on failure


def plan(networks: Iterable[Network], ifindex: Callable[[str], int | None],
         applied: dict[str, int]) -> tuple[list[list[str]], dict[str, int]]:
    """The resolvectl commands that bring the host's resolver in line, and the record of what is then set up.

    ``ifindex(bridge)`` is the bridge's interface index now (None: no such
    link yet). A bridge is set up when it is new or its index changed (it was
    re-created); a recorded bridge whose network is gone or no longer served
    is reverted (if its link still exists).
    """
    commands: list[list[str]] = []
    now: dict[str, int] = {}
    for network in networks:
        if not network.dns_addresses or network.driver != "bridge":  # macvlan's shim is no link of the host's
            continue
        index = ifindex(network.bridge)
        if index is None:
            continue
        now[network.bridge] = index
        if applied.get(network.bridge) != index:
            commands.append([RESOLVECTL, "dns", network.bridge, *network.dns_addresses])
            commands.append([RESOLVECTL, "domain", network.bridge, f"~{network.name}"])
    for bridge in sorted(applied.keys() - now.keys()):
        if ifindex(bridge) is not None:
            commands.append([RESOLVECTL, "revert", bridge])
    return commands, now


def by_hand(networks: Iterable[Network]) -> str:
    """The one line for a host without systemd-resolved: which suffix goes to which address."""
    routes = ", ".join(f"*.{network.name} to {network.dns_addresses[0]}" for network in networks
                       if network.dns_addresses and network.driver == "bridge")
    return (f"systemd-resolved's {RESOLVECTL} not found: configure the host's resolver by hand to send "
            f"{routes or 'each network name suffix to its gateway'} (e.g. dnsmasq: server=/NETWORK/GATEWAY)")


class HostResolver:
    """Applies ``plan`` for the state dir, when it is on. ``runner`` runs a command (default: subprocess, checked);
    ``which`` finds resolvectl (default: shutil.which); ``ifindex`` reads /sys/class/net/BRIDGE/ifindex."""

    def __init__(self, state_dir: str, namespace: str | None, runner: Runner | None = None,
                 which: Callable[[str], str | None] = shutil.which,
                 ifindex: Callable[[str], int | None] | None = None):
        self.path = os.path.join(state_dir, HOST_DNS_NAME)
        self.namespace = namespace
        self.runner = runner or _run
        self.which = which
        self.ifindex = ifindex or _ifindex

    @property
    def enabled(self) -> bool:
        return os.path.exists(self.path)

    def check_host_mode(self) -> None:
        """NetcoreError (exit 2) in sandbox mode, where the host's resolver cannot reach the bridges."""
        if self.namespace is not None:
            raise NetcoreError(f"host-dns: in sandbox mode the bridges live in the gateway namespace "
                               f"{self.namespace}, out of the host resolver's reach (host mode only)", exit_code=2)

    def turn_on(self, networks: list[Network]) -> str:
        """Start pointing the host's resolver at dnsd; returns what was done, one line. NetcoreError in sandbox
        mode (exit 2) or when a command fails."""
        self.check_host_mode()
        if self.which(RESOLVECTL) is None:
            return by_hand(networks)
        if not self.enabled:
            self._record({})
        done = self.apply(networks)
        return f"host-dns on: {done} bridge(s) set up; names NAME.NETWORK resolve on the host through dnsd"

    def turn_off(self) -> str:
        """Revert every bridge set up and forget the setting; returns what was done, one line."""
        if not self.enabled:
            return "host-dns is off"
        applied = self._applied()
        if self.which(RESOLVECTL) is not None:
            commands, _ = plan((), self.ifindex, applied)
            self._run_all(commands)
        os.unlink(self.path)
        return f"host-dns off: {len(applied)} bridge(s) reverted"

    def apply(self, networks: Iterable[Network]) -> int:
        """If on (and resolvectl is there), set up new or re-created bridges and revert gone ones; returns how
        many bridges were set up. Called after every netcore action."""
        if not self.enabled or self.namespace is not None or self.which(RESOLVECTL) is None:
            return 0
        commands, now = plan(networks, self.ifindex, self._applied())
        self._run_all(commands)
        self._record(now)
        return sum(1 for command in commands if command[1] == "dns")

    def _run_all(self, commands: list[list[str]]) -> None:
        for command in commands:
            try:
                self.runner(command)
            except (OSError, subprocess.CalledProcessError) as err:
                raise NetcoreError(f"host-dns: {' '.join(command)} failed: {err}") from None

    def _applied(self) -> dict[str, int]:
        try:
            with open(self.path) as file:
                applied = json.load(file)
        except (OSError, ValueError):
            return {}
        return {bridge: index for bridge, index in applied.items() if isinstance(index, int)}

    def _record(self, applied: dict[str, int]) -> None:
        write_atomically(self.path, json.dumps(applied))  # not synced: resolved forgets its links at a reboot


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=10)


def _ifindex(bridge: str) -> int | None:
    try:
        with open(f"/sys/class/net/{bridge}/ifindex") as file:
            return int(file.read())
    except (OSError, ValueError):
        return None
