"""``python -m dnsd.supervise DNSD-ARGS...``: run dnsd as a child and restart it when it dies abnormally.

netcore starts dnsd through this supervisor (issue 11, item 6; containers/netavark#162), so a
dnsd killed (kill -9, OOM killer, a crash) answers again within a fraction of a second, from the
store, without any netcore command. The rules:

- A child that exits 0 stopped deliberately (``stop`` on the control socket, SIGTERM): the
  supervisor exits 0 too. SIGTERM and SIGINT sent to the supervisor are forwarded to the child.
- A child that dies otherwise (a signal, a non-zero status) is restarted, after RESTART_DELAY
  if it had come up (written its pid file), else after a delay doubling from there; after
  MAX_FAILURES restarts in a row that never come up (the gateway namespace is gone, say) the
  supervisor gives up and exits 1: it never spins forever. The next netcore command starts a
  new one.
- The very first child failing at start is not retried: its status is the supervisor's, so
  netcore reports the error at once (a bad argument included: the supervisor reads only
  ``--state-dir`` and leaves the rest to dnsd, and so stays small, without dnsd's modules).
- The child dies with the supervisor (PR_SET_PDEATHSIG), so killing the supervisor leaks no dnsd.
- One supervisor per state dir: it holds a lock on ``SUPERVISOR_PID_NAME`` (which holds its pid)
  for its lifetime; a second one exits with EXIT_ALREADY_SUPERVISED.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time

from netcore.dnsd_protocol import EXIT_ALREADY_SUPERVISED, PID_NAME, SUPERVISOR_PID_NAME
from netcore.system import linux

RESTART_DELAY = 0.1  # seconds before restarting a dnsd that had come up
MAX_FAILURES = 5  # restarts in a row that never came up (0.1, 0.2, 0.4, 0.8, 1.6 s apart), then give up
POLL = 0.05  # seconds between looks at the child until it has come up

log = logging.getLogger("dnsd.supervise")


def restart_delay(failures: int) -> float:
    """Seconds to wait before the next start: RESTART_DELAY after a child that came up (failures == 0),
    doubling with each start in a row that failed before coming up."""
    return RESTART_DELAY * 2 ** failures


def describe_exit(status: int) -> str:
    """A Popen return code in words: ``exit status 1`` or ``killed by SIGKILL``."""
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-status).name}"
        return f"killed by signal {-status}"
    return f"exit status {status}"


class Supervisor:
    """Runs ``python -m dnsd ARGV`` until it stops deliberately (see the module's rules)."""

    def __init__(self, argv: list[str], state_dir: str):
        self.argv = [sys.executable, "-m", "dnsd", *argv]
        self.dnsd_pid_path = os.path.join(state_dir, PID_NAME)
        self.child: subprocess.Popen | None = None
        self.stopping = False

    def request_stop(self, signum: int, _frame=None) -> None:
        """Signal handler: stop, and pass the signal on to a running child."""
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.child.send_signal(signal.SIGTERM if signum == signal.SIGINT else signum)

    def run(self) -> int:
        """The supervisor's exit status: 0 after a deliberate stop, else the reason it gave up."""
        failures, ever_up = 0, False
        while not self.stopping:
            status, came_up = self._run_child()
            if self.stopping or status == 0:
                log.info("dnsd (pid %d) stopped; supervisor exits", self.child.pid)
                return 0
            if not (ever_up or came_up):
                return status if status > 0 else 1  # never worked: netcore reports dnsd's own error line
            ever_up = True
            failures = 0 if came_up else failures + 1
            if failures >= MAX_FAILURES:
                log.error("dnsd failed %d times in a row before coming up (last: %s); giving up",
                          failures, describe_exit(status))
                return 1
            delay = restart_delay(failures)
            log.warning("dnsd (pid %d) died: %s; restarting in %.1f s", self.child.pid, describe_exit(status), delay)
            deadline = time.monotonic() + delay
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
        return 0

    def _run_child(self) -> tuple[int, bool]:
        """Start one dnsd and wait for it: (its return code, whether it came up, i.e. wrote its pid file)."""
        parent = os.getpid()
        self.child = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, preexec_fn=lambda: _die_with(parent))
        came_up = False
        while True:
            if not came_up:
                came_up = _pid_file_names(self.dnsd_pid_path, self.child.pid)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    return self.child.wait(timeout=POLL), came_up or _pid_file_names(self.dnsd_pid_path,
                                                                                      self.child.pid)
            else:
                return self.child.wait(), True


def _die_with(parent: int) -> None:
    """In the child, before exec: get SIGTERM when the supervisor dies; if it already has, go."""
    linux.die_with_parent(signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)


def _pid_file_names(path: str, pid: int) -> bool:
    try:
        with open(path) as f:
            return f.read().strip() == str(pid)
    except OSError:
        return False


def _hold_pid_file(path: str) -> int | None:
    """Lock the supervisor's pid file and write our pid in it; None if another supervisor holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def state_dir_of(argv: list[str]) -> str | None:
    """dnsd's state dir as its arguments give it (``--state-dir DIR``, ``--state-dir=DIR``, else
    $NETCORE_STATE_DIR, as dnsd.__main__ reads it), or None."""
    for i, arg in enumerate(argv):
        if arg == "--state-dir" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--state-dir="):
            return arg.partition("=")[2]
    return os.environ.get("NETCORE_STATE_DIR") or None


def main(argv: list[str] | None = None) -> int:
    """Entry point; ARGV is dnsd's, passed on as given. Exits as described in the module's docstring."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s dnsd-supervise[%(process)d] %(levelname)s %(message)s")
    state_dir = state_dir_of(argv)
    if not state_dir or not os.path.isdir(state_dir):
        print(f"dnsd: state dir {state_dir or '(none given)'} does not exist", file=sys.stderr)
        return 1
    pid_path = os.path.join(state_dir, SUPERVISOR_PID_NAME)
    fd = _hold_pid_file(pid_path)
    if fd is None:
        print(f"dnsd: another supervisor already serves {state_dir} ({pid_path})", file=sys.stderr)
        return EXIT_ALREADY_SUPERVISED
    supervisor = Supervisor(argv, state_dir)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, supervisor.request_stop)
    try:
        return supervisor.run()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(pid_path)  # still ours: we hold the lock
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
