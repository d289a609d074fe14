"""Containers' main processes as the store records them: start, stop, and their status brought up to date.

The store is the one home of a main process's facts (``netcore.model.MainProcess``: argv, status, pid and
start time, exit status); the ``Supervisor`` of the context (netcored's netcore.agent.processes) is the
parent that starts, watches and signals them. Docker's rules: ``stop`` sends SIGTERM and, after a grace
period (10 s by default), SIGKILL; a process killed by signal N exited with 128+N; a container "is running"
while its main process runs. A process left inside a container's own network namespace (an ``exec`` in the
background) is the container's too: ``stop`` and ``rm -f`` end it with the main process, and a removal ends
what is left (it would otherwise run on in a namespace that no longer has a name).
"""

from __future__ import annotations

from dataclasses import replace

from netcore.engine.context import Context, StopTarget
from netcore.errors import Conflict, NetcoreError
from netcore.model import (
    EXIT_UNKNOWN,
    MODE_BRIDGE,
    MODE_NONE,
    PROCESS_CREATED,
    PROCESS_EXITED,
    PROCESS_RUNNING,
    STATE_RUNNING,
    Container,
    MainProcess,
)

STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL: Docker's default for stop, rm -f and compose down
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Docker's PATH without an image's


def environment(container: Container) -> dict[str, str]:
    """A main process's environment, Docker's for a container of no image: PATH, HOSTNAME, HOME."""
    return {"PATH": DEFAULT_PATH, "HOSTNAME": container.hostname, "HOME": "/root"}


def owns_namespace(container: Container) -> bool:
    """Whether the container has a network namespace of its own (bridge and none modes): every process
    in it is the container's."""
    return container.mode in (MODE_BRIDGE, MODE_NONE)


class MainProcesses:
    """The main processes of ``ctx``'s containers (module docstring)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    # -- what is recorded ------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Record the exit of every main process the store says runs and that ended (its exit status from
        the supervisor; ``EXIT_UNKNOWN`` for one that ran in an earlier boot or ended while another netcored
        was its parent). Every command starts with it (netcore.engine.Engine.begin_request), so a restarted
        agent finds the processes it did not start again, or marks them exited."""
        store = self.ctx.store
        ended = []
        boot = None
        for process in store.processes():
            if process.status != PROCESS_RUNNING:
                continue
            if boot is None:
                boot = self.ctx.clock.boot_id()
            if process.pid is None or process.boot_id != boot:
                ended.append(replace(process, status=PROCESS_EXITED, exit_code=EXIT_UNKNOWN, pid=None,
                                     error="the machine was restarted while it ran", finished=self.ctx.clock.now()))
                continue
            code = self.ctx.processes.poll(process.container_id, process.pid, process.start_ticks)
            if code is not None:
                error = "it ended while netcored was not its parent: its exit status is unknown" \
                    if code == EXIT_UNKNOWN else ""
                ended.append(replace(process, status=PROCESS_EXITED, exit_code=code, error=error,
                                     finished=self.ctx.clock.now()))
        if ended:
            with store.transaction():
                for process in ended:
                    if store.process(process.container_id) is not None:
                        store.put_process(process)

    def of(self, container: Container) -> MainProcess | None:
        """The container's main process as recorded (after ``refresh``), None for a container without one."""
        return self.ctx.store.process(container.id)

    def target(self, container: Container, spare: tuple[int, ...] = ()) -> StopTarget:
        """What stopping ``container`` reaches (StopTarget): its running main process, and its own namespace."""
        process = self.ctx.store.process(container.id)
        running = process is not None and process.status == PROCESS_RUNNING
        return StopTarget(process.pid if running else None, process.start_ticks if running else None,
                          container.netns if owns_namespace(container) and container.netns else None, spare)

    def _sharers(self, container: Container) -> tuple[int, ...]:
        """The running main processes of the containers that share ``container``'s namespace."""
        pids = []
        for dependent in self.ctx.store.dependents(container.id):
            process = self.ctx.store.process(dependent.id)
            if process is not None and process.status == PROCESS_RUNNING and process.pid:
                pids.append(process.pid)
        return tuple(pids)

    # -- start and stop --------------------------------------------------------------------------------------

    def start(self, container: Container) -> MainProcess:
        """Start the container's recorded main process unless it runs: as ``exec`` runs commands, in its
        namespace with its /etc files, its output to its log. NetcoreError: the container has no main
        process (exit 1) or is not built; the process could not be started (exit 127, 126, 125, the
        reason recorded as the process's error and written to its log; the container stays, ``Created``)."""
        store, clock = self.ctx.store, self.ctx.clock
        process = store.process(container.id)
        if process is None:
            raise NetcoreError(f"container {container.name} has no main process: give one with run -d -- CMD")
        if container.state != STATE_RUNNING:
            raise NetcoreError(f"container {container.name} is not built (it is {container.state})")
        if process.status == PROCESS_RUNNING:
            return process
        try:
            pid, ticks = self.ctx.processes.start(container.id, container.netns or None, process.argv,
                                                  environment(container))
        except NetcoreError as err:
            failed = replace(process, status=PROCESS_CREATED, pid=None, start_ticks=None, exit_code=err.exit_code,
                             error=str(err), finished=clock.now())
            with store.transaction():
                store.put_process(failed)
            raise
        started = replace(process, status=PROCESS_RUNNING, pid=pid, start_ticks=ticks, boot_id=clock.boot_id(),
                          exit_code=None, error="", started=clock.now(), finished="")
        with store.transaction():
            store.put_process(started)
        return started

    def stop(self, containers: list[Container], grace: float = STOP_GRACE) -> list[Container]:
        """Stop every process of ``containers`` (SIGTERM, SIGKILL after ``grace`` seconds; Supervisor.stop),
        all at once, and record how their main processes exited. Returns the containers that had any."""
        self.refresh()
        victims = {c.id for c in containers}
        targets, stopped = [], []
        for container in containers:
            spare = tuple(p for d in self.ctx.store.dependents(container.id) if d.id not in victims
                          for p in [self._main_pid(d)] if p)
            target = self.target(container, spare)
            if self.ctx.processes.running(target):
                targets.append(target)
                stopped.append(container)
        if targets:
            self.ctx.processes.stop(targets, grace)
            self.refresh()
        return stopped

    def _main_pid(self, container: Container) -> int | None:
        process = self.ctx.store.process(container.id)
        return process.pid if process is not None and process.status == PROCESS_RUNNING else None

    def check_removable(self, containers: list[Container]) -> None:
        """Conflict (Docker's refusal) naming the first of ``containers`` whose main process runs: ``rm``
        without ``-f``. Other processes left in a container's namespace (an ``exec`` in the background) do not
        make it running; its removal ends them (``kill``), as a stopped Docker container has none left."""
        self.refresh()
        for container in containers:
            process = self.ctx.store.process(container.id)
            if process is not None and process.status == PROCESS_RUNNING:
                raise Conflict(f"cannot remove container {container.name}: it is running (its main process "
                               f"{process.argv[0]}, pid {process.pid}): stop it first, or use rm -f")

    def kill(self, container: Container) -> None:
        """What is left of ``container``'s processes, killed at once (a removal's last step, reconciliation's
        too): no process outlives its container's namespace."""
        self.ctx.processes.stop([self.target(container, self._sharers(container))], 0.0)
