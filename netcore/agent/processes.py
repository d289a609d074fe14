"""Containers' main processes, kept by netcored: the long-lived parent that starts them, keeps their output
and their exit status (issue 28).

``ProcessSupervisor`` is the ``netcore.engine.context.Supervisor`` netcored hands its one Engine (the
handlers reach it as ``engine.processes``; what the store records of each process is the engine's,
netcore.engine.processes). It

- starts a process as ``exec`` runs a command (netcore.kernel.sandbox.spawn: the container's network
  namespace and /etc files, a session of its own) with its standard output and error appended straight to
  the container's log, ``STATE_DIR/containers/ID.log``: the output is kept even while no netcored runs,
  and a process outlives a restarted agent;
- keeps the ``Popen`` of each child, so its exit status is read (``poll``) whenever a command asks, the
  zombie holding it until then; a process it did not start (an earlier agent's) is found again by pid and
  start time (field 22 of /proc/PID/stat), and once gone its exit status is unknown (Docker's 255);
- bounds every log it knows of: a thread checks them each ``ROTATE_EVERY`` seconds and rotates one past
  ``LOG_MAX_BYTES`` (copytruncate, one older part kept: netcore.system.logfile);
- finds a container's processes through ``/proc/*/ns/net`` (the namespace's device and inode, as
  ``ip netns identify`` compares them) and their sessions, and stops them: SIGTERM, then SIGKILL after the
  grace period, until none is left. It refuses to sweep the namespace init runs in.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time

from netcore.engine.context import StopTarget
from netcore.errors import NetcoreError
from netcore.kernel import sandbox
from netcore.model import EXIT_UNKNOWN
from netcore.system.linux import netns_path
from netcore.system.logfile import rotate_log
from netcore.system.processes import DEAD_STATES, alive, namespace_identity, start_ticks, stat_fields

LOG_DIR = "containers"  # in the state dir: ID.log per container, ID.log.1 its older part
LOG_MAX_BYTES = 1 << 20  # a container's log is rotated past 1 MiB; with its older part, at most about 2 MiB
LOG_BACKUPS = 1
ROTATE_EVERY = 2.0  # seconds between checks of the logs' sizes
KILL_WAIT = 5.0  # seconds to wait for SIGKILLed processes to be gone


def processes_in(netns: str) -> list[int]:
    """Every live process whose network namespace is the one named ``netns`` (/run/netns/NETNS), found by
    comparing each /proc/PID/ns/net with it. Empty when the namespace does not exist. NetcoreError if it
    is the namespace init runs in (never swept)."""
    wanted = namespace_identity(netns_path(netns))
    if wanted is None:
        return []
    if wanted == namespace_identity("/proc/1/ns/net"):
        raise NetcoreError(f"refusing to stop the processes of namespace {netns}: it is the host's own")
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and namespace_identity(f"/proc/{name}/ns/net") == wanted and alive(int(name)):
            found.append(int(name))
    return sorted(found)


def session_members(sid: int) -> list[int]:
    """Every live process of session ``sid`` (field 6 of /proc/PID/stat)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = stat_fields(int(name))
            if fields and len(fields) > 3 and fields[3] == str(sid) and fields[0] not in DEAD_STATES:
                found.append(int(name))
    return sorted(found)


class ProcessSupervisor:
    """The Supervisor of the main processes of state dir ``state_dir`` (module docstring). Thread-safe: the
    engine thread starts and stops, a connection thread following a log polls."""

    def __init__(self, state_dir: str):
        self.state_dir = state_dir
        self._children: dict[int, subprocess.Popen] = {}
        self._pids: dict[str, int] = {}  # container id -> the pid of the child started for it last
        self._logs: set[str] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._rotator: threading.Thread | None = None

    # -- the Supervisor protocol ----------------------------------------------------------------------------

    def log_path(self, container_id: str) -> str:
        return os.path.join(self.state_dir, LOG_DIR, f"{container_id}.log")

    def start(self, container_id: str, netns: str | None, argv: tuple[str, ...],
              env: dict[str, str]) -> tuple[int, int]:
        path = self.log_path(container_id)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            try:
                proc = sandbox.spawn(netns, argv, log, env)
            except NetcoreError as err:
                os.write(log, f"netcore: {err}\n".encode())
                raise
        finally:
            os.close(log)
        ticks = start_ticks(proc.pid)
        with self._lock:
            self._children[proc.pid] = proc
            self._pids[container_id] = proc.pid
            self._logs.add(path)
        self._ensure_rotator()
        return proc.pid, ticks if ticks is not None else 0

    def poll(self, container_id: str, pid: int, start_ticks: int | None) -> int | None:
        with self._lock:
            proc = self._children.get(pid)
        if proc is not None:
            code = proc.poll()
            if code is None:
                return None
            with self._lock:
                self._children.pop(pid, None)
            return 128 - code if code < 0 else code
        if not alive(pid, start_ticks):
            return EXIT_UNKNOWN
        self.watch_log(container_id)  # an earlier agent's child: its log is bounded from now on
        return None

    def alive(self, pid: int, start_ticks: int | None) -> bool:
        with self._lock:
            proc = self._children.get(pid)
        if proc is not None:
            return proc.poll() is None  # Popen keeps the exit status for poll()
        return alive(pid, start_ticks)

    def running(self, target: StopTarget) -> list[int]:
        pids: set[int] = set()
        if target.pid and alive(target.pid, target.start_ticks):
            pids.add(target.pid)
            pids.update(session_members(target.pid))
        if target.netns:
            spared = {p for sid in target.spare for p in session_members(sid)}
            pids.update(p for p in processes_in(target.netns) if p not in spared)
        pids.discard(os.getpid())
        return sorted(pids)

    def stop(self, targets: list[StopTarget], grace: float) -> None:
        left = self._left(targets)  # one look through /proc when nothing runs (a removal's usual case), not three
        if not left:
            return
        self._signal_all(targets, signal.SIGTERM, left)
        deadline = time.monotonic() + grace
        while self._left(targets) and time.monotonic() < deadline:
            time.sleep(0.05)
        deadline = time.monotonic() + KILL_WAIT
        while self._left(targets):
            self._signal_all(targets, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise NetcoreError(f"processes {', '.join(map(str, self._left(targets)[:5]))} did not end after "
                                   f"SIGKILL within {KILL_WAIT:g} s")
            time.sleep(0.02)

    def forget(self, container_id: str) -> None:
        path = self.log_path(container_id)
        with self._lock:
            self._logs.discard(path)
            pid = self._pids.pop(container_id, None)
            proc = self._children.get(pid) if pid is not None else None
            if proc is not None and proc.poll() is not None:
                del self._children[pid]  # reaped by the removal; nobody asks for its status any more
        for name in (path, f"{path}.1"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)

    # -- more ---------------------------------------------------------------------------------------------------

    def watch_log(self, container_id: str) -> None:
        """Keep the log of a process this supervisor did not start (an earlier agent's) bounded too."""
        path = self.log_path(container_id)
        with self._lock:
            if path in self._logs:
                return
            self._logs.add(path)
        self._ensure_rotator()

    def close(self) -> None:
        """Stop the rotating thread. The processes run on: a new netcored finds them again."""
        self._closing.set()
        if self._rotator is not None:
            self._rotator.join(timeout=5)

    def _signal_all(self, targets: list[StopTarget], signum: int, left: list[int] | None = None) -> None:
        for pid in self._left(targets) if left is None else left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _left(self, targets: list[StopTarget]) -> list[int]:
        """What still runs of ``targets``; a child that ended is reaped (its exit status kept for ``poll``)."""
        with self._lock:
            children = list(self._children.values())
        for proc in children:
            proc.poll()  # a zombie child is reaped here; Popen keeps its returncode
        return sorted({pid for target in targets for pid in self.running(target)})

    def _ensure_rotator(self) -> None:
        with self._lock:
            if self._rotator is not None and self._rotator.is_alive():
                return
            self._rotator = threading.Thread(target=self._rotate_logs, name="netcored-logs", daemon=True)
            self._rotator.start()

    def _rotate_logs(self) -> None:
        while not self._closing.wait(ROTATE_EVERY):
            with self._lock:
                paths = list(self._logs)
            for path in paths:
                rotate_log(path, LOG_MAX_BYTES, LOG_BACKUPS)
