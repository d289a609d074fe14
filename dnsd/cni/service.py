"""dnsd's CNI socket: the CNI plugin's calls run inside ``dnsd --cni`` when it is up (issue 29).

A CNI plugin is a process per call, and a Python interpreter's start is most
of the time a Python plugin takes. So the ``netcore-dns`` executable (a small
C program, ``dnsd/cni/shim.c``, see ``dnsd.cni.install``) hands the call to the
dnsd serving its state dir, on ``STATE_DIR/cni.sock``, and only runs the whole
Python plugin (``dnsd.cni.plugin.main``) itself when no dnsd takes it: the
first ADD, which starts dnsd, and any call while dnsd is down or stopping.

The protocol, one call per connection: the client sends its ``CNI_*``
environment variables as ``NAME=VALUE`` entries each ended by a NUL byte, an
empty entry (one more NUL), then the plugin configuration (its stdin) up to
the end of its writing half. dnsd answers one ASCII digit, the exit status,
then the document for stdout, and closes. A connection closed without an
answer means "run the call yourself" (dnsd is stopping): every command is
safe to run twice (ADD replaces its registration, DEL of a missing one succeeds).

The call runs ``dnsd.cni.plugin.run`` (the very code of the plugin process) in
a worker thread, with ``ServingDnsd`` in place of the control-socket client:
its sync is this server's, and the stop after the last DEL closes the CNI and
control sockets at once (so a plugin that comes next starts a new dnsd rather
than register with this one) and stops this server once the answer is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor

from dnsd.cni.plugin import Dnsd, run
from dnsd.server import DnsServer

log = logging.getLogger("dnsd")

CNI_SOCKET_NAME = "cni.sock"
MAX_REQUEST = 4 * 2**20  # bytes: a configuration with its prevResult is a few KiB
WORKERS = 8  # calls run at once (the store serialises their writes)
SYNC_TIMEOUT = 30.0  # seconds a call waits for the snapshot to go live


def parse_call(data: bytes) -> tuple[dict[str, str], bytes]:
    """A call's bytes → (its environment, its stdin); ValueError if they are not laid out as the protocol says."""
    environ: dict[str, str] = {}
    offset = 0
    while True:
        end = data.find(b"\0", offset)
        if end < 0:
            raise ValueError("environment not ended by an empty entry")
        if end == offset:
            return environ, data[end + 1:]
        name, equals, value = data[offset:end].decode("utf-8", "replace").partition("=")
        if not equals or not name.startswith("CNI_"):
            raise ValueError(f"bad environment entry {name[:40]!r}")
        environ[name] = value
        offset = end + 1


def format_answer(status: int, document: dict | None) -> bytes:
    """The answer: the exit status as one digit, then the document (none for an empty stdout)."""
    return str(status).encode() + (json.dumps(document).encode() if document is not None else b"")


class ServingDnsd(Dnsd):
    """The dnsd this process is, as ``dnsd.cni.plugin``'s commands use it (called from worker threads)."""

    def __init__(self, state_dir: str, service: CniService):
        super().__init__(state_dir)
        self._service = service
        self.stopped_here = False  # this call was the last DEL, which stops dnsd

    def sync(self) -> dict[str, str]:
        return self._service.sync_from_worker()

    def running(self) -> bool:
        return not self._service.stopping

    def stop(self) -> None:
        self.stopped_here = True
        self._service.stop_from_worker()


class CniService:
    """The CNI socket of ``server`` (a ``dnsd --cni`` over ``state_dir``): see the module's docstring."""

    def __init__(self, server: DnsServer, state_dir: str):
        self.server = server
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, CNI_SOCKET_NAME)
        self.stopping = False
        self._listening: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="dnsd-cni")

    async def open(self) -> None:
        """Serve the socket (mode 0600). Called once dnsd serves: its control socket already made sure no
        other dnsd serves this state dir, so a socket file left behind is a dead one's."""
        self._loop = asyncio.get_running_loop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        old_umask = os.umask(0o177)
        try:
            self._listening = await asyncio.start_unix_server(self._serve, path=self.path)
        finally:
            os.umask(old_umask)

    def close(self) -> None:
        """Stop taking calls and remove the socket file (once; calls under way finish)."""
        if self._listening is not None:
            self._listening.close()
            self._listening = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        self._pool.shutdown(wait=False)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            data = await reader.read(MAX_REQUEST + 1)
            while data and len(data) <= MAX_REQUEST:
                more = await reader.read(MAX_REQUEST + 1 - len(data))
                if not more:
                    break
                data += more
            if self.stopping or len(data) > MAX_REQUEST:
                return  # no answer: the client runs the call itself
            try:
                environ, stdin = parse_call(data)
            except ValueError as err:
                log.warning("CNI call refused: %s", err)
                return
            dnsd = ServingDnsd(self.state_dir, self)
            status, document = await self._loop.run_in_executor(self._pool, run, environ, stdin, dnsd)
            if self.stopping and not dnsd.stopped_here:
                return  # it ran against a dnsd on its way out: the client runs it again, starting a new one
            writer.write(format_answer(status, document))
            await writer.drain()
        except (ConnectionError, RuntimeError) as err:  # the client went, or the pool is shut down (stopping)
            log.debug("CNI call dropped: %s", err)
        except Exception:  # a bug: logged; unanswered, the client runs the call itself
            log.exception("CNI call failed")
        finally:
            writer.close()
            if self.stopping:  # the last DEL is answered (or the call dropped): now stop
                self.server.request_stop()

    def sync_from_worker(self) -> dict[str, str]:
        """In a worker: this server's sync, waited for; {gateway: why it is down} as ``Dnsd.sync`` returns."""
        from dnsd.cni.plugin import NOT_AVAILABLE, CniError

        if self.stopping:
            raise CniError(NOT_AVAILABLE, "dnsd is stopping", "the call is run again by the plugin itself")
        asyncio.run_coroutine_threadsafe(self.server.sync(), self._loop).result(SYNC_TIMEOUT)
        return dict(self.server.down_listeners)

    def stop_from_worker(self) -> None:
        """In a worker holding the lock exclusively, nothing registered: take no more calls or commands now,
        stop once this call is answered."""
        async def close_now() -> None:
            self.stopping = True
            if self._listening is not None:
                self._listening.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                self._listening = None
            self.server.stop_taking_commands()

        asyncio.run_coroutine_threadsafe(close_now(), self._loop).result(SYNC_TIMEOUT)
