"""What every part of an action works on: the state dir's store and kernel, the services beside them, and the
report of what the command did beyond its own objects. One object, handed to each part of the engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from netcore.dnsd_protocol.control import DnsdControl
from netcore.errors import NetcoreError
from netcore.firewall import Firewall
from netcore.kernel import Kernel
from netcore.model import EXIT_UNKNOWN, Container, Endpoint, Network
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


@dataclass(frozen=True)
class StopTarget:
    """What stopping one container's processes reaches: its main process (``pid`` with ``start_ticks``, the
    field 22 of /proc/PID/stat that tells it from a reused pid; None when it has none running) and its
    session; and, for a container with a network namespace of its own (``netns``, bridge and none modes),
    every process in that namespace, but those of the sessions in ``spare`` (the main processes of
    containers that share it and are not stopped with it). A container of ``--net host`` or
    ``container:NAME`` has no ``netns`` here: the namespace is another's."""

    pid: int | None = None
    start_ticks: int | None = None
    netns: str | None = None
    spare: tuple[int, ...] = ()


class Supervisor(Protocol):
    """The long-lived parent of containers' main processes (netcore.agent.processes.ProcessSupervisor, which
    netcored gives its engine; unit tests give an in-memory one). The engine keeps what the store records
    (netcore.engine.processes); this side starts, watches, signals and logs."""

    def start(self, container_id: str, netns: str | None, argv: tuple[str, ...],
              env: dict[str, str]) -> tuple[int, int]:
        """Start ``argv`` in network namespace ``netns`` (None: the agent's own) with the container's /etc
        files, as ``exec`` runs a command (netcore.kernel.sandbox), its output appended to the container's
        log; returns (pid, start_ticks). NetcoreError with exit code 127 (not found), 126 (cannot be run)
        or 125 (the namespace could not be entered), nothing left running."""

    def poll(self, container_id: str, pid: int, start_ticks: int | None) -> int | None:
        """None while container ``container_id``'s main process ``pid`` (started at ``start_ticks``) runs (its
        log kept bounded from then on, whoever started it); once it ended, its exit status (128+N for signal
        N), or ``netcore.model.EXIT_UNKNOWN`` when it was not this supervisor's child."""

    def alive(self, pid: int, start_ticks: int | None) -> bool:
        """Whether process ``pid`` (started at ``start_ticks``) still runs; its exit status stays for ``poll``."""

    def running(self, target: StopTarget) -> list[int]:
        """The pids of ``target``'s live processes (main process, its session, its namespace's)."""

    def stop(self, targets: list[StopTarget], grace: float) -> None:
        """SIGTERM to every process of ``targets``, SIGKILL to what is left after ``grace`` seconds; returns
        once none is left (children reaped, so their exit status stays readable by ``poll``)."""

    def log_path(self, container_id: str) -> str:
        """The container's log file (its rotated part is ``PATH.1``)."""

    def forget(self, container_id: str) -> None:
        """Remove the container's logs (it is gone)."""


class NoSupervisor:
    """An engine without netcored (tests that drive an Engine directly): no main process can be started;
    nothing runs, so nothing is stopped."""

    def start(self, container_id, netns, argv, env):
        raise NetcoreError("main processes are started by netcored: run this command through netcore",
                           exit_code=125)

    def poll(self, container_id, pid, start_ticks):
        return EXIT_UNKNOWN

    def alive(self, pid, start_ticks):
        return False

    def running(self, target):
        return []

    def stop(self, targets, grace):
        pass

    def log_path(self, container_id):
        return "/dev/null"

    def forget(self, container_id):
        pass


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
    processes: Supervisor = field(default_factory=NoSupervisor)
    report: Report = field(default_factory=Report)

    @property
    def ns_prefix(self) -> str:
        """The prefix of every container namespace of this state dir: netcore's leftovers are found by it."""
        return f"{self.namespace or 'netcore'}-"

    def gateway_gone(self) -> bool:
        """Whether sandbox mode's gateway namespace is missing (not made yet, or deleted under netcore)."""
        return self.namespace is not None and not self.kernel.namespace_exists(self.namespace)
