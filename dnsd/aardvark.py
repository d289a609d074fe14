"""dnsd as Podman's DNS server: ``aardvark-dns --config DIR -p PORT run``, the process netavark starts.

The contract is aardvark-dns's (its ``src/main.rs``, ``src/commands/run.rs``
and ``src/server/serve.rs``; netavark's ``src/dns/aardvark.rs`` is the other
side):

* the command line: ``[-c|--config DIR] [-p|--port PORT]
  [-f|--filter-search-domain DOMAIN] run`` (netavark 1.4 and 2.x pass
  ``--config DIR -p PORT run``), and ``version``/``--version``;
* ``run`` forks: the child writes its pid to ``DIR/aardvark.pid`` (netavark
  reads it and sends SIGHUP to that pid on every change), loads the
  directory, opens its listeners, detaches (new session, stdio on /dev/null)
  and only then writes one byte to a pipe; the parent exits 0 once that byte
  arrives, or 1 (the child's error on stderr) if the pipe closes without it.
  netavark waits for that exit (2.x also reads stderr to its end, which is why
  the child lets go of it);
* SIGHUP re-reads every file, swaps the records whole, and opens or closes
  only the listeners that changed; with no network left it removes the pid
  file and exits 0. SIGTERM and SIGINT stop it too.

The records come from ``dnsd.sources.aardvark`` (``AardvarkRecords``, parsed
by ``dnsd.sources.aardvark_config``, pure); the serving is dnsd's own, put
together by ``dnsd.app.make_server``, answering by aardvark-dns's rules where
they differ from Docker's
(``dnsd.core.dialect.podman``: a client on several networks, reverse names, the
search domain, no reply when no upstream answered). Names not held go to the
container's upstreams, else its networks', else the nameservers of
``/etc/resolv.conf`` as dnsd finds it at start.

Logs go to syslog (as aardvark-dns's), and to the file named by
``DNSD_AARDVARK_LOG`` if set.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import logging.handlers
import os
import signal
import sys
from collections.abc import Callable

import dnsd
from dnsd import app
from dnsd.core.config import DnsdError, ServerConfig, port_number  # dnsd's own port argument: one rule
from dnsd.core.dialect import podman
from dnsd.core.snapshot import Upstream
from dnsd.sources.aardvark import AardvarkRecords
from dnsd.sources.aardvark_config import DEFAULT_SEARCH_DOMAIN, PID_FILE
from netcore.system import processes
from netcore.system.arguments import OneLineParser
from netcore.system.files import write_atomically

log = logging.getLogger("dnsd")

DEFAULT_PORT = 5533  # aardvark-dns's default when -p is not given
LOG_ENV = "DNSD_AARDVARK_LOG"
HELPER_NAME = "aardvark-dns"  # the name netavark looks for in helper_binaries_dir
VERSION = "1.4.0"  # the aardvark-dns release whose contract this follows (Debian 12's)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """aardvark-dns's command line; usage errors exit 2 with one line."""
    parser = OneLineParser(prog="aardvark-dns", description="dnsd in place of aardvark-dns, for netavark.",
                           error_name="aardvark-dns (dnsd)")
    parser.add_argument("-c", "--config", help="the config directory netavark writes (one file per network)")
    parser.add_argument("-p", "--port", type=port_number, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("-f", "--filter-search-domain", default=DEFAULT_SEARCH_DOMAIN,
                        help=f"search domain stripped from questions (default {DEFAULT_SEARCH_DOMAIN})")
    parser.add_argument("-V", "--version", action="store_true", help="print the version and exit")
    parser.add_argument("command", nargs="?", choices=("run", "version"))
    args = parser.parse_args(argv)
    if args.version or args.command == "version":
        return args
    if args.command is None:
        parser.error("a command is required: run or version")
    if not args.config:
        parser.error("run needs --config DIR")
    return args


def write_pid_file(directory: str) -> None:
    """``DIR/aardvark.pid``: our pid, no newline (netavark parses the whole file as a number), written by rename
    (its temporary a dot file, which the directory's reader skips)."""
    processes.write_pid_file(os.path.join(directory, PID_FILE), newline=False)


def remove_pid_file(directory: str) -> None:
    """Remove ``DIR/aardvark.pid`` if it still names us (a newer server may have written it)."""
    processes.remove_pid_file(os.path.join(directory, PID_FILE))


async def serve(records: AardvarkRecords, config: ServerConfig, ready_fd: int | None,
                nameservers: Callable[[], tuple[Upstream, ...]] | None = None) -> None:
    """Serve until SIGTERM/SIGINT or a SIGHUP leaves no network; ``ready_fd`` gets one byte once serving.

    ``nameservers()`` (``/etc/resolv.conf``'s: the upstreams of a container whose networks and itself name
    none) is read again at every SIGHUP, as aardvark-dns 1.4 does (it makes its servers anew then) and
    1.12 again (cc25b2f): a host whose resolv.conf changed is followed from the next container on.
    DnsdError if the directory names no network at start, or a listener cannot open (aardvark-dns fails
    its start then too); the caller reports it.
    """
    server = app.make_server(config, records)  # the one place dnsd's parts are put together
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.request_stop)
    reloads: set[asyncio.Task] = set()

    async def reload() -> None:
        try:
            if nameservers is not None:
                server.answerer.default_upstreams = tuple(Upstream(*server) for server in nameservers())
            await server.sync()
        except Exception as err:  # noqa: BLE001 - a directory that cannot be read now; the next SIGHUP retries
            log.error("reload failed: %s", err)
            return
        if records.network_count == 0:  # its listeners are closed by now (the sync above)
            log.info("no network left, stopping")
            remove_pid_file(records.directory)  # first, as aardvark-dns: the next network gets a new server
            server.request_stop()

    def on_hangup() -> None:
        records.mark_changed()
        task = loop.create_task(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    try:
        await server.start()
        if records.network_count == 0:
            raise DnsdError(f"no network in {records.directory}: nothing to serve")
        if server.down_listeners:
            raise DnsdError("; ".join(server.down_listeners.values()))
        log.info("serving %s on port %d for %d networks", records.directory, config.port, records.network_count)
        if ready_fd is not None:
            _detach()
            os.write(ready_fd, b"1")
            os.close(ready_fd)
        await server.wait_stopped()
    finally:
        for task in reloads:
            task.cancel()
        await server.close()
        remove_pid_file(records.directory)


def _detach() -> None:
    """aardvark-dns's daemonize: a session of our own, stdio on /dev/null (netavark 2.x reads stderr to its end)."""
    with contextlib.suppress(OSError):
        os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _setup_logging() -> None:
    handlers: list[logging.Handler] = []
    if os.path.exists("/dev/log"):
        with contextlib.suppress(OSError):
            syslog = logging.handlers.SysLogHandler(address="/dev/log")
            syslog.setFormatter(logging.Formatter("aardvark-dns(dnsd)[%(process)d]: %(levelname)s %(message)s"))
            handlers.append(syslog)
    if os.environ.get(LOG_ENV):
        with contextlib.suppress(OSError):
            handler = logging.FileHandler(os.environ[LOG_ENV])
            handler.setFormatter(logging.Formatter("%(asctime)s dnsd[%(process)d] %(levelname)s %(message)s"))
            handlers.append(handler)
    logging.basicConfig(level=logging.INFO, handlers=handlers or [logging.NullHandler()])


def run(directory: str, port: int, search_domain: str) -> int:
    """``run``: fork, serve in the child, exit in the parent once the child is ready (see the module docstring)."""
    if not os.path.isdir(directory):
        print(f"aardvark-dns (dnsd): config directory {directory} must exist and be a directory", file=sys.stderr)
        return 1
    read_end, write_end = os.pipe()
    child = os.fork()
    if child:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as ready:
            return 0 if ready.read(1) == b"1" else 1
    os.close(read_end)
    status = 1
    # netavark may signal as soon as the pid file exists; until the event loop takes SIGHUP over, one is
    # harmless to ignore: the first read of the directory comes after it
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        _setup_logging()
        write_pid_file(directory)
        config = ServerConfig(port=port, upstreams=app.host_nameservers(), dialect=podman(search_domain))
        app.run_loop(serve(AardvarkRecords(directory), config, write_end, app.host_nameservers))
        status = 0
    except DnsdError as err:
        print(f"aardvark-dns (dnsd): {err}", file=sys.stderr)
        remove_pid_file(directory)
    except OSError as err:
        print(f"aardvark-dns (dnsd): {err}", file=sys.stderr)
        remove_pid_file(directory)
    except BaseException as err:  # noqa: BLE001 - the parent must hear of it, and no traceback reaches netavark
        print(f"aardvark-dns (dnsd): unexpected error: {err!r}", file=sys.stderr)
        remove_pid_file(directory)
    finally:
        sys.stderr.flush()
        os._exit(status)  # the child never returns into the caller's code


def main(argv: list[str] | None = None) -> int:
    """The ``aardvark-dns`` entry point (the script ``helper_dir`` writes calls it)."""
    args = parse_args(argv)
    if args.version or args.command == "version":
        from importlib.metadata import PackageNotFoundError, version

        try:
            ours = version("netcore-dnsd")
        except PackageNotFoundError:  # run from a checkout
            ours = "unknown"
        print(f"aardvark-dns {VERSION} (dnsd {ours})")
        return 0
    return run(args.config, args.port, args.filter_search_domain)


HELPER_SCRIPT = """\
#!{interpreter}
# dnsd in aardvark-dns's place: netavark runs this as `aardvark-dns --config DIR -p PORT run`.
# Written by `dnsd podman-helper-dir` (dnsd.aardvark.helper_dir); rewritten when the interpreter changes.
import sys
sys.path.insert(0, {package_parent!r})  # the dnsd this was written by, however it was installed
from dnsd.aardvark import main
sys.exit(main())
"""


ROOT_HELPER_DIR = "/var/lib/dnsd/podman-helper"  # root: a state dir, kept across reboots as containers.conf is


def default_helper_dir(uid: int | None = None, environ: dict[str, str] | None = None) -> str:
    """Where ``dnsd podman-helper-dir`` writes the helper when no directory is named: for root
    ``ROOT_HELPER_DIR``, for anyone else (rootless Podman) ``$XDG_STATE_HOME/dnsd/podman-helper``
    (``~/.local/state`` when unset, as the XDG base directory spec says). Never inside the installed
    package (issue 23, item 9: an editable install wrote into the checkout). Pure given ``uid`` and
    ``environ`` (default: this process's)."""
    uid = os.getuid() if uid is None else uid
    environ = os.environ if environ is None else environ
    if uid == 0:
        return ROOT_HELPER_DIR
    state = environ.get("XDG_STATE_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"),
                                                         ".local", "state")
    return os.path.join(state, "dnsd", "podman-helper")


def helper_dir(directory: str | None = None) -> str:
    """Prepare ``directory`` (default ``default_helper_dir()``) to be listed first in containers.conf's
    ``helper_binaries_dir``, and return its absolute path: it holds ``aardvark-dns``, a script that runs
    dnsd with this interpreter from wherever this package is (editable, wheel, PYTHONPATH). The script is
    written on the first call and again if this interpreter or the package moved; the directory is made
    (0755) if missing. Podman runs what is there, as root for rootful Podman: OSError (EPERM) when the
    directory or the script is writable by others than its owner, and any OSError of the writing."""
    directory = os.path.abspath(directory or default_helper_dir())
    package = os.path.dirname(os.path.abspath(dnsd.__file__))
    path = os.path.join(directory, HELPER_NAME)
    text = HELPER_SCRIPT.format(interpreter=sys.executable, package_parent=os.path.dirname(package))
    os.makedirs(directory, mode=0o755, exist_ok=True)
    if os.stat(directory).st_mode & 0o022:
        raise OSError(errno.EPERM, f"{directory} is writable by others than its owner, and Podman would run "
                      "what they put there: use a directory only its owner can write")
    with contextlib.suppress(OSError), open(path) as script:
        if script.read() == text and os.access(path, os.X_OK) and not os.stat(path).st_mode & 0o022:
            return directory
    write_atomically(path, text, 0o755, durable=True)  # installed: it must survive a power cut
    return directory


def print_helper_dir(argv: list[str] = ()) -> int:
    """``dnsd podman-helper-dir [DIR]``: prepares ``helper_dir(DIR)`` and prints it; one line on stderr and
    exit 1 if it cannot be prepared, 2 for more than one argument."""
    if len(argv) > 1 or any(a.startswith("-") for a in argv):
        print("dnsd: usage: dnsd podman-helper-dir [DIR]", file=sys.stderr)
        return 2
    try:
        print(helper_dir(argv[0] if argv else None))
    except OSError as err:
        print(f"dnsd: cannot prepare the podman helper: {err.strerror or err}"
              + (f": {err.filename}" if err.filename else ""), file=sys.stderr)
        return 1
    return 0
