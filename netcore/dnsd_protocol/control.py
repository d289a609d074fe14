"""netcore's side of dnsd: start it when the first DNS network appears, sync it after every change, stop it after
the last.

dnsd serves a control socket in the state dir. ``sync`` returns only once dnsd
has swapped in a snapshot built from the store as committed, which is what
makes `netcore run --name x && netcore exec y -- getent hosts x` work with no sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from netcore import dnsd_protocol
from netcore.dnsd_protocol import (
    EXIT_ALREADY_SUPERVISED,
    LOG_NAME,
    MANAGED,
    OPTIONS_NAME,
    PING,
    REPLY_TIMEOUT,
    SOCKET_NAME,
    START_TIMEOUT,
    STATUS,
    STOP,
    STOP_TIMEOUT,
    SUPERVISOR_PID_NAME,
    SYNC,
    parse_pong,
    parse_sync_reply,
)
from netcore.errors import NetcoreError
from netcore.system.files import write_atomically
from netcore.system.logfile import rotate_log
from netcore.system.processes import alive, runs_module


class DnsdControl:
    """The dnsd of one state dir. ``dnsd_args``: more arguments for the dnsd ``start`` runs, before those of
    ``dnsd.options`` (the CNI plugin's ``--cni``)."""

    def __init__(self, state_dir: str, namespace: str | None, dnsd_args: tuple[str, ...] = ()):
        self.state_dir = state_dir
        self.namespace = namespace
        self.dnsd_args = tuple(dnsd_args)
        self.socket_path = os.path.join(state_dir, SOCKET_NAME)

    def request(self, command: str, timeout: float = REPLY_TIMEOUT) -> str | None:
        """One line in, one line out; None when no dnsd answers on the socket (netcore.dnsd_protocol.request)."""
        return dnsd_protocol.request(self.socket_path, command, timeout)

    def status(self) -> tuple[int, str] | None:
        """(pid, 'managed' or 'foreground') of the dnsd serving this state dir, or None."""
        return parse_pong(self.request(PING, timeout=2.0))

    def start(self) -> int:
        """Start dnsd under its supervisor (dnsd.supervise) and return the serving dnsd's pid once it answers.

        NetcoreError, with dnsd's last log line, when it exits at start or does not come up within
        START_TIMEOUT. If another supervisor already serves the state dir (it is restarting its dnsd),
        this waits for that one's dnsd instead.
        """
        log_path = os.path.join(self.state_dir, LOG_NAME)
        argv = [sys.executable, "-m", "dnsd.supervise", *self.dnsd_argv()]
        rotate_log(log_path)
        # 0600 like the store: the log names clients and queries (the state dir is 0700 as well)
        with open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600), "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/",  # not the caller's
                                    start_new_session=True, close_fds=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = self.status()
            if found:
                return found[0]
            if proc.poll() not in (None, EXIT_ALREADY_SUPERVISED):
                raise NetcoreError(f"dnsd exited at start (status {proc.returncode}): {self._last_log_line(log_path)}")
            time.sleep(0.02)
        if proc.poll() is None:
            proc.kill()  # the child dies with it
            proc.wait()
        raise NetcoreError(f"dnsd did not come up within {START_TIMEOUT:.0f}s: see {log_path}")

    def dnsd_argv(self) -> list[str]:
        """The arguments the dnsd netcore starts gets now (its supervisor passes them on): the state dir,
        ``--managed``, the gateway namespace, ``dnsd_args``, then the words of ``STATE_DIR/dnsd.options``."""
        argv = ["--state-dir", self.state_dir, "--managed"]
        if self.namespace:
            argv += ["--netns", self.namespace]
        return [*argv, *self.dnsd_args, *dnsd_options(self.state_dir)]

    def options_changed(self, pid: int) -> bool:
        """Whether managed dnsd ``pid`` was started with other arguments than it would get now (``dnsd_argv``:
        ``dnsd.options`` was changed since); False when its command line cannot be read."""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0")[:-1]]
        except OSError:
            return False
        if "dnsd" not in argv:
            return False
        return argv[argv.index("dnsd") + 1:] != self.dnsd_argv()

    def rotate_log(self) -> None:
        """Keep ``dnsd.log`` bounded (``rotate_log``); every command calls it, as dnsd writes while it runs."""
        rotate_log(os.path.join(self.state_dir, LOG_NAME))

    @staticmethod
    def _last_log_line(path: str) -> str:
        try:
            with open(path, errors="replace") as f:
                lines = [line.strip() for line in f if line.strip()]
            return lines[-1] if lines else "no output"
        except OSError:
            return "no log"

    def sync(self) -> dict[str, str]:
        """Make sure dnsd runs and serves what the store holds now; start it if it is not running.

        Returns {gateway address: why dnsd cannot listen there} (empty when every listener is up);
        NetcoreError when dnsd cannot be started or does not confirm the change.
        """
        reply = self.request(SYNC)
        if reply is None:
            self.start()
            reply = self.request(SYNC)
        try:
            return parse_sync_reply(reply or "")[1]
        except ValueError:
            raise NetcoreError(f"dnsd did not confirm the change (reply {reply!r}): "
                               f"see {os.path.join(self.state_dir, LOG_NAME)}") from None

    def listeners_down(self) -> dict[str, str] | None:
        """{gateway address: why dnsd cannot listen there} as the running dnsd reports it; None if none answers."""
        reply = self.request(STATUS, timeout=2.0)
        try:
            return parse_sync_reply(reply)[1] if reply else None
        except ValueError:
            return None

    def supervisor_pid(self) -> int | None:
        """The pid of the dnsd supervisor serving this state dir, if one runs (checked against its command line)."""
        try:
            with open(os.path.join(self.state_dir, SUPERVISOR_PID_NAME)) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) and is_dnsd_process(pid, self.state_dir, supervisor=True) else None

    def stop(self, only_managed: bool = True) -> None:
        """Stop the dnsd netcore started and its supervisor, and return once neither runs
        (a foreground dnsd, one netcore did not start, is left alone)."""
        found = self.status()
        if found and only_managed and found[1] != MANAGED:
            return
        supervisor = self.supervisor_pid()
        if found:
            self.request(STOP)  # exits 0: its supervisor exits too
            _wait_gone(found[0], STOP_TIMEOUT)
        if supervisor:  # also the one waiting to restart a dnsd that died
            if alive(supervisor):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(supervisor, signal.SIGTERM)
            _wait_gone(supervisor, STOP_TIMEOUT)
        if found and alive(found[0]):
            os.kill(found[0], signal.SIGKILL)


def dnsd_options(state_dir: str) -> list[str]:
    """The words of STATE_DIR/dnsd.options (whitespace-separated, a ``#`` starts a comment to the end of its
    line), passed to the dnsd netcore starts after its own options; [] without the file.

    One file per state dir, as there is one dnsd: e.g. ``--metrics`` serves Prometheus metrics on loopback of
    the gateway namespace, ``--query-log /var/log/dnsd-queries.log`` writes a query log. An option dnsd
    rejects stops it at start, and netcore reports dnsd's one-line error.
    """
    try:
        with open(os.path.join(state_dir, OPTIONS_NAME)) as options:
            return [word for line in options for word in line.split("#", 1)[0].split()]
    except FileNotFoundError:
        return []


OPTIONS_HEADER = "# dnsd's options, set by `netcore dns-options set` (words as on dnsd's command line)\n"


def write_dnsd_options(state_dir: str, words: list[str]) -> None:
    """Replace STATE_DIR/dnsd.options with ``words`` (one line, after a comment), atomically and 0600; no file
    at all for no words. OSError if it cannot be written."""
    path = os.path.join(state_dir, OPTIONS_NAME)
    if not words:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    write_atomically(path, OPTIONS_HEADER + " ".join(words) + "\n", 0o600, durable=True)  # a setting: kept


def is_dnsd_process(pid: int, state_dir: str, supervisor: bool = False) -> bool:
    """Whether ``pid`` is a dnsd (or, with ``supervisor``, a dnsd supervisor) of this state dir, by its command line."""
    return runs_module(pid, "dnsd.supervise" if supervisor else "dnsd", state_dir)


def _wait_gone(pid: int, timeout: float) -> None:
    """Wait for ``pid`` to end; SIGKILL it when it has not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.02)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


