"""dnsd supervised by netcored itself: no supervisor process of its own (issue 26).

The agent starts dnsd (``python -m dnsd --state-dir DIR --managed ...``) in a session of its own and watches
it from a thread; a dnsd that dies when nobody asked it to stop is started again, by dnsd.supervise's rules
(``restart_delay``: 0.1 s after one that had come up, doubling after each that failed before coming up,
giving up after ``MAX_FAILURES`` in a row; the next command that needs dnsd starts it again). dnsd does not
die with the agent: container names keep being answered while the agent restarts (kill -9, an upgrade,
``systemctl restart netcored``), and the next agent finds the running dnsd on its control socket and watches
it (a pidfd, since it is not its child). A dnsd supervisor process a release before netcored left running is
stopped with its dnsd when this one starts its own.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
import threading
import time

from netcore.dnsd_protocol import LOG_NAME, MANAGED, START_TIMEOUT
from netcore.dnsd_protocol.control import DnsdControl
from netcore.errors import NetcoreError
from netcore.system.logfile import rotate_log

RESTART_DELAY = 0.1  # seconds before restarting a dnsd that had come up (dnsd.supervise's)
MAX_FAILURES = 5  # restarts in a row that never came up, then give up until the next command
POLL = 0.02

log = logging.getLogger("netcored")


def restart_delay(failures: int) -> float:
    """Seconds before the next start: RESTART_DELAY after a dnsd that came up (failures == 0), doubling with
    each start in a row that failed before coming up."""
    return RESTART_DELAY * 2 ** failures


class SupervisedDnsd(DnsdControl):
    """The dnsd of one state dir, started and restarted by this process (netcored); its ``start``/``stop``/
    ``sync`` are DnsdControl's words on dnsd's control socket."""

    def __init__(self, state_dir: str, namespace: str | None, dnsd_args: tuple[str, ...] = ()):
        super().__init__(state_dir, namespace, dnsd_args)
        self._lock = threading.RLock()
        self._watched: int | None = None  # the pid of the dnsd the watcher thread waits for
        self._wanted = False  # whether dnsd should run (a start since the last stop)
        self.failures = 0

    def start(self) -> int:
        """Start dnsd (a session of its own, its output to ``dnsd.log``) and return its pid once it answers;
        from then on it is restarted when it dies. NetcoreError with dnsd's last log line when it exits at
        start or does not come up within START_TIMEOUT."""
        with self._lock:
            found = self.status()
            if found is not None:
                self._watch(found[0])
                return found[0]
            super().stop()  # a supervisor of an older release restarting its dnsd: it goes, with its dnsd
            self._wanted = True
            pid = self._spawn()
            self.failures = 0
            return pid

    def adopt(self) -> int | None:
        """Watch a managed dnsd that already runs for the state dir (started by an agent before this one);
        its pid, or None when none answers."""
        with self._lock:
            if self.supervisor_pid() is not None:  # an older release's supervisor: it goes, with its dnsd;
                super().stop()  # the next sync starts dnsd under this agent
                return None
            found = self.status()
            if found is None or found[1] != MANAGED:
                return None
            self._wanted = True
            self._watch(found[0])
            return found[0]

    def stop(self, only_managed: bool = True) -> None:
        """Stop dnsd (and an older release's supervisor) and return once it is gone; it is not restarted."""
        with self._lock:
            self._wanted = False
            self._watched = None
            super().stop(only_managed)

    def _spawn(self) -> int:
        log_path = os.path.join(self.state_dir, LOG_NAME)
        rotate_log(log_path)
        argv = [sys.executable, "-m", "dnsd", *self.dnsd_argv()]
        # 0600 like the store: the log names clients and queries (the state dir is 0700 as well)
        with open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600), "ab") as out:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd="/",  # not the caller
                                     start_new_session=True, close_fds=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = self.status()
            if found is not None and found[0] == child.pid:
                self._watch(child.pid, child)
                return child.pid
            if child.poll() is not None:
                raise NetcoreError(f"dnsd exited at start (status {child.returncode}): {self._last_log_line(log_path)}")
            time.sleep(POLL)
        child.kill()
        child.wait()
        raise NetcoreError(f"dnsd did not come up within {START_TIMEOUT:.0f}s: see {log_path}")

    def _watch(self, pid: int, child: subprocess.Popen | None = None) -> None:
        if self._watched == pid:
            return
        self._watched = pid
        threading.Thread(target=self._wait_for, args=(pid, child), daemon=True, name="netcored-dnsd").start()

    def _wait_for(self, pid: int, child: subprocess.Popen | None) -> None:
        """The watcher: wait for dnsd ``pid`` to end (its exit status when it is this process's child, a pidfd
        when adopted), then start it again unless it was asked to stop or another took its place."""
        if child is not None:
            status = child.wait()
        else:
            status = None
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                fd = None
            if fd is not None:  # readable once the process has ended
                try:
                    poller = select.poll()
                    poller.register(fd, select.POLLIN)
                    poller.poll()
                finally:
                    os.close(fd)
        with self._lock:
            if not self._wanted or self._watched != pid:
                return  # stopped on purpose, or replaced
            self._watched = None
            log.warning("dnsd (pid %d) ended (%s); starting it again", pid,
                        "unknown status" if status is None else f"status {status}")
        while True:
            time.sleep(restart_delay(self.failures))
            with self._lock:
                if not self._wanted or self._watched is not None:
                    return
                try:
                    self._spawn()
                    self.failures = 0
                    return
                except NetcoreError as err:
                    self.failures += 1
                    if self.failures >= MAX_FAILURES:
                        log.error("dnsd failed %d times in a row (%s); the next command starts it again",
                                  self.failures, err)
                        self._wanted = False
                        self.failures = 0
                        return
