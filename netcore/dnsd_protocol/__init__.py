"""The names and the line protocol shared by dnsd and whoever drives it: netcore's engine, the CNI plugin.

The one home of these facts. It imports only ``json``, so the ``netcore-dns``
CNI plugin (``dnsd.cni.plugin``), which pays for every import on every call,
speaks the control socket without loading ``netcore.dnsd_control``'s process
management; ``netcore.dnsd_control`` re-exports every name here.
"""

from __future__ import annotations

import json
import socket

# the one home of these names: dnsd, its supervisor and the test sandbox import them from here
SOCKET_NAME = "dnsd.sock"
PID_NAME = "dnsd.pid"  # the serving dnsd's pid, while it serves
SUPERVISOR_PID_NAME = "dnsd-supervisor.pid"  # dnsd.supervise's pid, locked while it runs
LOG_NAME = "dnsd.log"
OPTIONS_NAME = "dnsd.options"  # more dnsd options for the dnsd netcore starts (--metrics, --query-log ...)
EXIT_ALREADY_SUPERVISED = 75  # dnsd.supervise: another supervisor serves this state dir
STOP_TIMEOUT = 5.0
START_TIMEOUT = 10.0
REPLY_TIMEOUT = 10.0

# the words of the control socket's line protocol, one command a line (dnsd.ops.control answers them)
PING = "ping"  # -> format_pong
SYNC = "sync"  # reload, then -> format_sync_reply
STATUS = "status"  # -> format_sync_reply, without reloading
STATS = "stats"  # -> one line of JSON: dnsd's counters by name
STOP = "stop"  # -> OK, then dnsd stops
OK = "ok"
ERROR = "error"  # the first word of a reply to a command that failed or is unknown
MANAGED, FOREGROUND = "managed", "foreground"  # how dnsd runs: started by netcore, or by someone else


def request(socket_path: str, command: str, timeout: float = REPLY_TIMEOUT) -> str | None:
    """Send one command line to dnsd's control socket at ``socket_path`` and return its one-line reply
    (stripped), or None when no dnsd answers there within ``timeout`` seconds (no socket, refused, timed out,
    or an empty reply). The one client of the control socket: netcore's DnsdControl and the CNI plugin."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.sendall(command.encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
            return reply.decode().strip() or None
    except OSError:  # TimeoutError, FileNotFoundError, ConnectionRefusedError among them
        return None


def format_pong(pid: int, managed: bool) -> str:
    """dnsd's reply to ``ping``: ``pong PID MODE``, MODE ``managed`` or ``foreground``."""
    return f"pong {pid} {MANAGED if managed else FOREGROUND}"


def parse_pong(reply: str | None) -> tuple[int, str] | None:
    """(pid, mode) of a ``format_pong`` line; None if ``reply`` is none."""
    fields = (reply or "").split()
    if len(fields) != 3 or fields[0] != "pong" or not fields[1].isdigit():
        return None
    return int(fields[1]), fields[2]


def format_sync_reply(generation: int | None, down: dict[str, str]) -> str:
    """dnsd's reply to ``sync`` and ``status``: ``ok GENERATION``, followed, when some listener is down,
    by a JSON object on the same line mapping each gateway address dnsd cannot listen on to why
    (``ok 17 {"10.89.0.1": "cannot listen on 10.89.0.1 port 53: ..."}``)."""
    reply = f"{OK} {generation if generation is not None else 0}"
    if down:
        reply += " " + json.dumps(dict(sorted(down.items())), separators=(",", ":"))
    return reply


def parse_sync_reply(reply: str) -> tuple[int, dict[str, str]]:
    """(generation, {address: why it is down}) of a ``format_sync_reply`` line; ValueError if it is none."""
    fields = reply.split(" ", 2)
    if len(fields) < 2 or fields[0] != OK or not fields[1].isdigit():
        raise ValueError(f"not a sync reply: {reply[:80]!r}")
    down = json.loads(fields[2]) if len(fields) == 3 else {}
    if not isinstance(down, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in down.items()):
        raise ValueError(f"bad listener report in sync reply: {reply[:80]!r}")
    return int(fields[1]), down
