"""netcored: the one long-lived agent of a state dir, which runs every netcore command (issue 26).

It holds the state dir's agent lock for its whole life (two agents never serve one state dir), keeps one
Engine open (the store, the netlink socket in the gateway namespace), and serves requests on
``STATE_DIR/netcored.sock`` (root's, mode 0600) in the protocol of netcore.agent.protocol.

Threads: the accept loop runs in the main thread; each connection gets a thread that reads its request
(a client that sends nothing within ``REQUEST_TIMEOUT`` is dropped, so it never holds up anyone) and
streams the reply; every command runs in the one engine thread, in arrival order, so the SQLite connection
and the netlink sockets stay on the thread that made them and actions never overlap. A command runs to its
end even when its client went away: an action is never left half-done by a client.

A killed agent leaves what a killed CLI used to leave: rows in a transitional state, repaired by the next
action under the state dir's lock (netcore.engine), which the next command's new agent takes.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import io
import json
import logging
import os
import selectors
import socket
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from netcore.agent import protocol
from netcore.agent.client import LOCK_NAME, PID_NAME, SOCKET_NAME
from netcore.agent.dnsd import SupervisedDnsd
from netcore.agent.processes import ProcessSupervisor
from netcore.agent.protocol import PROTOCOL, LineReader, ProtocolError, Request, decode_request, encode
from netcore.cli import CONTEXT_COMMANDS, LINE_COMMANDS, NOT_AS_LINE
from netcore.cli.handlers import HANDLERS, READ_ONLY
from netcore.cli.parser import ParseFailed, build_parser, command_name, request_params
from netcore.engine import Engine
from netcore.errors import NetcoreError, os_error_text
from netcore.firewall.apply import NftablesFirewall
from netcore.ports.holder import stop_legacy_holder
from netcore.system.processes import remove_pid_file, write_pid_file

log = logging.getLogger("netcored")

REQUEST_TIMEOUT = 1.0  # seconds a client has to send its request line once connected
IDLE_CHECK = 10.0  # seconds between checks that the socket file is still this agent's
AGENT_VERBS = frozenset({"agent status", "agent stop"})
VERBS = frozenset(HANDLERS) | AGENT_VERBS


class _Reply(io.TextIOBase):
    """A command's stdout, sent to its client as ``out`` lines as it is written; writes to a client that went
    away are dropped (the command goes on). ``interrupted``: the client asked for the graceful end of a reply
    marked interruptible (netcore.agent.protocol: Ctrl-C)."""

    def __init__(self, conn: socket.socket):
        self._conn = conn
        self.gone = False
        self.interrupted = False
        self._heard = b""  # what the client wrote after its request, not yet a whole line

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text:
            self.send({"out": text})
        return len(text)

    def send(self, message: dict) -> None:
        if self.gone:
            return
        try:
            self._conn.sendall(encode(message))
        except OSError:
            self.gone = True

    def error_line(self, text: str) -> None:
        """One line for the client's stderr now, in order with the output (a warning of a long command)."""
        self.send({"err": text})

    def interruptible(self, text: str) -> None:
        """``text`` for the client's stdout, marking the reply interruptible: from here the client's Ctrl-C is
        a request for the command's graceful end (``interrupted``), not the end of the connection."""
        self.send({"out": text, "interruptible": True})

    def peer_closed(self) -> bool:
        """Whether the client went away (it closed its end: ^C on ``logs -f``); without waiting. What it wrote
        since its request is read on the way: an interrupt line sets ``interrupted``, anything else is
        dropped (at most a line's worth kept)."""
        while not self.gone:
            try:
                data = self._conn.recv(4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError:
                self.gone = True
                break
            if not data:
                self.gone = True
                break
            lines = (self._heard + data).split(b"\n")
            self._heard = lines.pop()[-len(protocol.INTERRUPT):]
            self.interrupted = self.interrupted or any(line + b"\n" == protocol.INTERRUPT for line in lines)
        return self.gone


class Agent:
    """The agent of ``state_dir`` for gateway namespace ``namespace`` (None: the host's own).

    ``engine_factory`` makes its one Engine, on the engine thread (default: the real one, with the nftables
    firewall, dnsd supervised by this process: netcore.agent.dnsd, and the published ports held by it:
    netcore.ports.holder); unit tests give an engine on an in-memory kernel."""

    def __init__(self, state_dir: str, namespace: str | None, engine_factory: Callable[[], Engine] | None = None):
        self.state_dir = state_dir
        self.namespace = namespace
        self._engine_factory = engine_factory or (lambda: Engine(
            state_dir, namespace, firewall=NftablesFirewall(namespace), dnsd=SupervisedDnsd(state_dir, namespace),
            processes=self.processes))
        self.socket_path = os.path.join(state_dir, SOCKET_NAME)
        self.started = time.monotonic()
        self.processes = ProcessSupervisor(state_dir)  # containers' main processes: this agent is their parent
        self._stopping = threading.Event()
        self._wake_read, self._wake_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)  # stop() wakes the accept loop
        self._listener: socket.socket | None = None
        self._engine: Engine | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netcored-engine")
        self._parser: argparse.ArgumentParser | None = None  # for command lines (``_parse``), made at the first
        self._parser_lock = threading.Lock()

    # -- life ----------------------------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped (``agent stop``, ``purge``, ``stop()``: netcore.agent's SIGTERM and SIGINT); 0 also
        when another agent already serves the state dir (it got the lock first). NetcoreError/OSError for a
        state dir it cannot use."""
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        lock = os.open(os.path.join(self.state_dir, LOCK_NAME), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            log.info("another netcored serves %s", self.state_dir)
            return 0
        try:
            self._worker.submit(self._open_engine).result()  # the engine lives on its thread
            self._listener = self._listen()
            write_pid_file(os.path.join(self.state_dir, PID_NAME))
            _sd_notify("READY=1")
            log.info("serving %s (%s), protocol %d", self.state_dir, self.namespace or "host namespace", PROTOCOL)
            self._accept_loop()
        finally:
            self._shutdown()
            os.close(lock)
        return 0

    def stop(self) -> None:
        """Stop accepting; the command under way finishes first."""
        self._stopping.set()
        listener = self._listener
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)

    def _listen(self) -> socket.socket:
        """The socket, made anew (a stale one of a killed agent is removed: this agent holds the lock)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # 0600 from birth: no moment in which another user could connect
        try:
            listener.bind(self.socket_path)
        finally:
            os.umask(old_umask)
        listener.listen(128)
        self._socket_inode = os.stat(self.socket_path).st_ino
        return listener

    def _accept_loop(self) -> None:
        """Accept until stop() writes to the wake pipe; every ``IDLE_CHECK`` seconds without a client, check
        that the socket file is still this agent's (the state dir was not removed under it)."""
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while not self._stopping.is_set():
                ready = selector.select(IDLE_CHECK)
                if not ready:
                    if not self._still_ours():
                        log.info("socket %s is gone or another's: stopping", self.socket_path)
                        return
                    continue
                if any(key.fileobj is self._listener for key, _ in ready) and not self._stopping.is_set():
                    self._accept()

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        threading.Thread(target=self._serve_connection, args=(conn,), daemon=True,
                             name="netcored-client").start()

    def _still_ours(self) -> bool:
        """Whether the socket file is still the one this agent bound (the state dir was not removed under it)."""
        try:
            return os.stat(self.socket_path).st_ino == self._socket_inode
        except OSError:
            return False

    def _shutdown(self) -> None:
        if self._listener is not None:
            self._listener.close()
            if self._still_ours():
                os.unlink(self.socket_path)
        self._worker.submit(self._close_engine).result()
        self._worker.shutdown(wait=True)
        self.processes.close()  # the main processes run on; the next agent finds them again
        os.close(self._wake_read)
        os.close(self._wake_write)
        remove_pid_file(os.path.join(self.state_dir, PID_NAME))

    # -- the engine thread ---------------------------------------------------------------------------------

    def _open_engine(self) -> None:
        """Make the engine, then take over from what ran before this agent: a port holder process of an older
        release is ended; a dnsd already serving is watched (netcore.agent.dnsd); the published ports are
        bound and held again and the firewall checked (a killed agent's ports went with it); a state dir that
        joined a cluster gets its member, which runs as long as this engine (issue 27). A failure of these is
        logged: the commands say it again, one line each."""
        engine = self._engine = self._engine_factory()
        stop_legacy_holder(self.state_dir)
        adopt = getattr(engine.dnsd, "adopt", None)
        if adopt is not None:
            adopt()
        engine.begin_request()
        engine.assert_firewall()
        for line in (*engine.notes, *engine.notices, *engine.warnings):
            log.warning("at start: %s", line)
        try:
            engine.start_cluster()
        except NetcoreError as err:
            log.warning("cluster member not started: %s", err)

    def _close_engine(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def _execute(self, verb: str, args: argparse.Namespace, reply: _Reply, debug: bool) -> dict:
        """Run one command on the engine thread. Its notes, notices and warnings go to the client as ``err``
        lines, then its error if it failed (the order the CLI printed them in before the agent)."""
        engine = self._engine
        engine.begin_request()
        failure: list[str] = []
        try:
            if verb in READ_ONLY:
                if not engine.firewall_settled():  # somebody changed nftables, or the namespace was made anew:
                    engine.assert_firewall()  # a read puts the table and the ports back (else: no lock, no look)
                engine.revive_dnsd()  # ... and a dnsd that should run, with the options of dnsd.options
            result = HANDLERS[verb](engine, args, reply)
            return result if isinstance(result, dict) else {"exit": result}
        except NetcoreError as err:
            failure.append(str(err))
            return {"exit": err.exit_code}
        except sqlite3.Error as err:  # a read, or a write outside Store.transaction(): never half a change either
            failure.append(f"{verb}: the store in {self.state_dir} failed: {err}; nothing was half-written "
                           "(every change is one transaction, rolled back on error)")
            return {"exit": 1}
        except OSError as err:
            failure.append(f"{verb}: {os_error_text(err)}")
            return {"exit": 1}
        except Exception as err:  # a bug: one line to the client, the traceback to the log; the agent serves on
            log.exception("%s failed", verb)
            if debug:
                failure += traceback.format_exc().rstrip().splitlines()
            failure.append(f"{verb}: internal error in netcored: {type(err).__name__}: {err} "
                           f"(traceback in {os.path.join(self.state_dir, 'netcored.log')})")
            return {"exit": 1}
        finally:
            lines = [*(f"reconciled: {note}" for note in engine.notes), *engine.notices,
                     *(f"warning: {warning}" for warning in engine.warnings), *failure]
            for line in lines:
                reply.send({"err": line})

    # -- one connection ------------------------------------------------------------------------------------

    def _serve_connection(self, conn: socket.socket) -> None:
        with conn:
            reply = _Reply(conn)
            try:
                conn.settimeout(REQUEST_TIMEOUT)
                line = LineReader(conn).readline()
                conn.settimeout(None)
                if line is None:
                    return
                request = decode_request(line, VERBS)
                namespace = request.netns
                if namespace != self.namespace:
                    raise ProtocolError(f"state dir {self.state_dir} serves "
                                        f"{'namespace ' + self.namespace if self.namespace else 'the host namespace'}"
                                        f", not {'namespace ' + namespace if namespace else 'the host namespace'}:"
                                        " one state dir serves one gateway namespace")
            except (ProtocolError, TimeoutError, OSError) as err:
                text = str(err) if isinstance(err, ProtocolError) else "no request within " \
                    f"{REQUEST_TIMEOUT:g} s" if isinstance(err, TimeoutError) else f"cannot read the request: {err}"
                reply.send({"err": text})
                reply.send({"exit": protocol.USAGE})
                return
            command = False
            if request.argv is not None:
                parsed = self._parse(request)
                if isinstance(parsed, str):
                    reply.send({"exit": protocol.USAGE, "parse": parsed})
                    return
                request, command = parsed
            if request.verb in AGENT_VERBS:
                reply.send(self._agent_verb(request.verb))
                return
            args = argparse.Namespace(**request.params)
            result = self._worker.submit(self._execute, request.verb, args, reply, request.debug).result()
            stream = result.pop("stream", None)
            if stream is not None:  # what follows needs no engine: this connection's own thread, engine free
                result["exit"] = self._stream(stream, reply)
            if command:
                result["command"] = True
            reply.send(result)
            if request.verb == "purge" and result.get("exit") == 0:
                self.stop()  # nothing left to serve; the next command starts a new agent

    def _parse(self, request: Request) -> tuple[Request, bool] | str:
        """A command line (``request.argv``) as the command request the client would have sent, with whether it
        is ``run ... -- CMD``; or why the client must parse it itself: it does not parse or asks for help (the
        client says why in the parser's words), its command is not one of ``LINE_COMMANDS``, or it is a
        Compose command sent without the client's directory and environment, or one that reads the client's
        standard input (``-f -``)."""
        with self._parser_lock:  # a parser is not made for two parses at once
            if self._parser is None:
                self._parser = build_parser(quiet=True)
            try:
                args = self._parser.parse_args(request.argv)
            except ParseFailed:
                return "the command line does not parse: the client parses it and says why"
        verb = command_name(args)
        first = verb.split()[0]
        if first not in LINE_COMMANDS or verb in NOT_AS_LINE:
            return f"{verb} is sent as a command: the client completes it"
        params = json.loads(json.dumps(request_params(args)))  # the JSON values a command request carries
        if first in CONTEXT_COMMANDS:
            if request.cwd is None or request.environ is None:
                return f"{verb} needs the client's directory and environment: the client completes it"
            if "-" in params.get("files", ()):
                return f"{verb} reads the client's standard input: the client completes it"
            params.update(cwd=request.cwd, environ=request.environ)
        return (Request(verb, params, request.netns, request.debug),
                verb == "run" and bool(getattr(args, "cmd", None)))

    def _stream(self, stream: Callable, reply: _Reply) -> int:
        """Run a handler's ``stream`` (``logs -f``: the log as it grows) on the connection's thread; its exit
        status, or 1 with one line for an error it raised (a bug's traceback goes to the log)."""
        try:
            return stream(reply)
        except NetcoreError as err:
            reply.error_line(str(err))
            return err.exit_code
        except Exception as err:  # a bug: one line to the client, the traceback to the log
            log.exception("streaming failed")
            reply.error_line(f"internal error in netcored: {type(err).__name__}: {err}")
            return 1

    def _agent_verb(self, verb: str) -> dict:
        if verb == "agent stop":
            self.stop()
            return {"exit": 0}
        return {"exit": 0, "agent": {"pid": os.getpid(), "protocol": PROTOCOL,
                                     "uptime": round(time.monotonic() - self.started, 3),
                                     "state_dir": self.state_dir, "netns": self.namespace}}
def _sd_notify(state: str) -> None:
    """Tell systemd (``Type=notify``) ``state`` through $NOTIFY_SOCKET, if it set one (sd_notify(3)'s protocol:
    one datagram to a unix socket, ``@`` for the abstract namespace). Nothing when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError as err:
            log.warning("cannot notify systemd: %s", err)
