"""The client side of netcored: find the agent of a state dir, start it when none runs, send one request.

Light on purpose: the standard library and netcore.agent.protocol only, so a command pays for its own
interpreter and this, not for the engine's imports (the agent has them loaded already). It speaks through
``_socket``, the C module under ``socket``: a unix stream socket needs nothing ``socket.py`` adds, whose
import (its enums, ``selectors``) would cost a command more than its connection does.
"""

from __future__ import annotations

import _socket
import errno
import os
import sys
import time

from netcore.agent.protocol import INTERRUPT, LineReader, ProtocolError, Request, decode_reply
from netcore.errors import NetcoreError

TYPE_CHECKING = False  # typing, collections and signal cost more than this module: none is imported to run it
if TYPE_CHECKING:
    from collections.abc import Callable

SOCKET_NAME = "netcored.sock"  # the agent's socket in the state dir, root's, mode 0600
PID_NAME = "netcored.pid"  # its pid, written once it serves
LOCK_NAME = "netcored.lock"  # held by the one agent of the state dir for its whole life
LOG_NAME = "netcored.log"  # its stdout and stderr when the CLI started it
START_TIMEOUT = 30.0  # seconds a command waits for an agent it started to answer
STOP_TIMEOUT = 30.0  # seconds `agent stop` waits for an agent of an older release it sent SIGTERM to
POLL = 0.005  # seconds between tries to connect to an agent that is starting


class AgentUnavailable(NetcoreError):
    """No agent runs for the state dir (and none was to be started), or it cannot be reached."""


def socket_path(state_dir: str) -> str:
    return os.path.join(state_dir, SOCKET_NAME)


class AgentClient:
    """Requests to the agent of ``state_dir`` serving gateway namespace ``namespace`` (None: the host's)."""

    def __init__(self, state_dir: str, namespace: str | None):
        self.state_dir = state_dir
        self.namespace = namespace

    def call(self, verb: str, params: dict, out: Callable[[str], None], err: Callable[[str], None],
             start: bool = True, debug: bool = False, argv: list[str] | None = None, cwd: str | None = None,
             environ: dict[str, str] | None = None, graceful: Callable[[], None] | None = None) -> dict:
        """Send one request (with ``argv``: that command line instead of ``verb`` and ``params``, and for a
        Compose command line the client's working directory ``cwd`` and environment ``environ``); hand each
        ``out`` text and ``err`` line to the callbacks as they come; return the last line (``{"exit": N,
        ...}``). ``start``: start an agent when none answers (else AgentUnavailable). NetcoreError, one line,
        when the agent cannot be started or ends before it answers. Ctrl-C (KeyboardInterrupt) once a reply
        was marked interruptible calls ``graceful`` (when given), asks the agent for the command's graceful
        end and reads on (netcore.agent.protocol); a second one, or one during any other reply, is raised."""
        sock = self.connect(start)
        try:
            sock.sendall(Request(verb, params, self.namespace, debug, argv, cwd, environ).encode())
            reader = LineReader(sock)
            interruptible = interrupted = False
            while True:
                try:
                    line = reader.readline()
                    if line is None:
                        raise NetcoreError(f"netcored ({self._pid_text()}) ended before it answered; the next "
                                           f"command starts a new one, which repairs what it left (its log: "
                                           f"{os.path.join(self.state_dir, LOG_NAME)})")
                    reply = decode_reply(line)
                    if "exit" in reply:
                        return reply
                    if "out" in reply:
                        interruptible = interruptible or reply.get("interruptible", False)
                        out(reply["out"])
                    else:
                        err(reply["err"])
                except KeyboardInterrupt:
                    if not interruptible or interrupted:
                        raise
                    interrupted = True
                    if graceful is not None:
                        graceful()
                    sock.sendall(INTERRUPT)
        except ProtocolError as error:
            raise NetcoreError(str(error)) from None
        except (ConnectionResetError, BrokenPipeError):
            raise NetcoreError(f"netcored ({self._pid_text()}) closed the connection before it answered; "
                               "the next command starts a new one") from None
        finally:
            sock.close()

    def connect(self, start: bool = True) -> _socket.socket:
        """A connection to the agent; with ``start``, one is started first when none answers."""
        path = socket_path(self.state_dir)
        try:
            return _connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            if not start:
                raise AgentUnavailable(f"no netcored runs for state dir {self.state_dir}", exit_code=1) from None
        except PermissionError:
            raise NetcoreError(f"permission denied: netcored's socket {path} is root's (run netcore as root)") from None
        return self._start()

    def _start(self) -> _socket.socket:
        """Start ``python -m netcore.agent`` for this state dir, detached (its own session, output to its log),
        and wait until it answers. Two commands may start one each at once: the agent that does not get
        the state dir's lock exits at once, and both commands reach the one that did."""
        import subprocess  # only a command that starts the agent pays for it

        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        log_path = os.path.join(self.state_dir, LOG_NAME)
        argv = [sys.executable, "-m", "netcore.agent", "--state-dir", self.state_dir]
        if self.namespace:
            argv += ["--netns", self.namespace]
        with open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                    cwd="/",  # `-m` puts the working directory first on the path: never the caller's
                                    close_fds=True)
        deadline = time.monotonic() + START_TIMEOUT
        path = socket_path(self.state_dir)
        while True:
            try:
                return _connect(path)
            except (FileNotFoundError, ConnectionRefusedError):
                pass
            code = proc.poll()
            if code not in (None, 0):  # 0: another agent got the lock first; it is coming up
                raise NetcoreError(f"netcored did not start (exit status {code}): {_last_line(log_path)}")
            if time.monotonic() > deadline:
                raise NetcoreError(f"netcored did not answer within {START_TIMEOUT:.0f} s (its log: {log_path})")
            time.sleep(POLL)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Stop the agent as systemd stops it, SIGTERM to its pid (it finishes the command under way first), and
        wait until it is gone: for an agent of an older release, which refuses this release's requests (the
        pid file is the one the agent that answered wrote: it holds the state dir's lock). Whether it went."""
        try:
            with open(os.path.join(self.state_dir, PID_NAME)) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"netcore.agent" not in f.read():
                    return False  # not an agent: nothing of ours to stop
            os.kill(pid, 15)  # SIGTERM (the signal module's enums would cost every command)
        except (OSError, ValueError):
            return False
        deadline = time.monotonic() + timeout
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(POLL)
        return not os.path.exists(f"/proc/{pid}")

    def _pid_text(self) -> str:
        try:
            with open(os.path.join(self.state_dir, PID_NAME)) as f:
                return f"pid {int(f.read().strip())}"
        except (OSError, ValueError):
            return "pid unknown"


def _connect(path: str) -> _socket.socket:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError as err:
        sock.close()
        if err.errno == errno.ENOTDIR:
            raise FileNotFoundError(err.errno, err.strerror, path) from None
        raise
    return sock


def _last_line(path: str) -> str:
    """The last line of the agent's log, where its own one-line error is."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            lines = [line for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(its log is empty)"
