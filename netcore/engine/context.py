"""What every part of an action works on: the state dir's store and kernel, the services beside them, and the
report of what the command did beyond its own objects. One object, handed to each part of the engine."""

from __future__ import annotations

from dataclasses import dataclass, field

from netcore.dnsd_protocol.control import DnsdControl
from netcore.firewall import Firewall
from netcore.kernel import Kernel
from netcore.model import Container, Endpoint, Network
from netcore.ports.holder import HostPorts
from netcore.services.host_resolver import HostResolver
from netcore.store import Store
from netcore.system.clock import Clock


@dataclass
class Report:
    """What a command did or found beyond its own objects, for its user to read on stderr (the CLI, the agent)."""

    notes: list[str] = field(default_factory=list)  # what reconciliation did
    warnings: list[str] = field(default_factory=list)  # what is wrong but did not fail the command
    notices: list[str] = field(default_factory=list)  # what the command changed beyond its objects
    reconciled: list[Network | Container | Endpoint] = field(default_factory=list)  # rows reconciliation removed

    def clear(self) -> None:
        for kept in (self.notes, self.warnings, self.notices, self.reconciled):
            kept.clear()


@dataclass
class Context:
    """One state dir (its ``store``) and one gateway namespace (``namespace``, None: the host's), with what an
    action acts on: ``kernel`` (netcore.kernel.Kernel), ``dnsd`` (DnsdControl), ``ports`` (HostPorts: the
    published host ports held), ``firewall`` (netcore.firewall.Firewall), ``clock``, the host's resolver
    (``host_resolver``, opt-in), and the ``report`` of the command under way."""

    state_dir: str
    namespace: str | None
    store: Store
    kernel: Kernel
    dnsd: DnsdControl
    ports: HostPorts
    firewall: Firewall
    clock: Clock
    host_resolver: HostResolver
    report: Report = field(default_factory=Report)

    @property
    def ns_prefix(self) -> str:
        """The prefix of every container namespace of this state dir: netcore's leftovers are found by it."""
        return f"{self.namespace or 'netcore'}-"

    def gateway_gone(self) -> bool:
        """Whether sandbox mode's gateway namespace is missing (not made yet, or deleted under netcore)."""
        return self.namespace is not None and not self.kernel.namespace_exists(self.namespace)
