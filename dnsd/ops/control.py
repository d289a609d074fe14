"""The control socket: a Unix socket in the state dir, one line in, one line out (netcore.dnsd_protocol speaks it).

``ping`` -> ``pong PID MODE``; ``sync`` (reload, then report) and ``status``
(report) -> ``ok GENERATION [{ADDRESS: WHY, ...}]`` (see
``netcore.dnsd_protocol.control.format_sync_reply``); ``stats`` -> one line of JSON,
``{"answered_udp":1234,...}`` (``DnsServer.stats_report``); ``stop`` -> ``ok``,
then dnsd stops; anything else -> ``error ...``. The words and reply formats
are netcore.dnsd_protocol.control's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from typing import Protocol

from dnsd.core.config import DnsdError
from netcore.dnsd_protocol import ERROR, OK, PING, STATS, STATUS, STOP, SYNC, format_pong, format_sync_reply

log = logging.getLogger("dnsd")

CONTROL_IDLE = 30.0  # seconds a control connection may stay silent


class Controlled(Protocol):
    """What the control socket drives: ``DnsServer`` is one."""

    @property
    def generation(self) -> int | None:
        """The store generation of the snapshot being served; None before the first."""

    @property
    def down_listeners(self) -> dict[str, str]:
        """Gateway address -> why dnsd cannot listen there."""

    async def sync(self) -> int:
        """Reload if the store changed; returns the generation served once the new snapshot is live."""

    def request_stop(self) -> None:
        """Have dnsd stop."""

    def stats_report(self) -> dict[str, int]:
        """dnsd's numbers by name."""


class ControlSocket:
    """The control socket at ``path`` (mode 0600) for ``server``; ``managed``: dnsd was started by netcore."""

    def __init__(self, path: str, server: Controlled, managed: bool):
        self.path = path
        self._server = server
        self._managed = managed
        self._listening: asyncio.Server | None = None
        self.up = asyncio.Event()  # set once dnsd serves: ``ping`` is answered only then

    async def open(self) -> None:
        """Start serving; DnsdError if another dnsd still answers on the socket (one left by a dead one is removed)."""
        path = self.path
        if os.path.exists(path):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(path)
                except (ConnectionRefusedError, FileNotFoundError):
                    os.unlink(path)  # left behind by a dnsd that died
                else:
                    raise DnsdError(f"another dnsd already serves {os.path.dirname(path) or '.'} (socket {path})")
        old_umask = os.umask(0o177)
        try:
            self._listening = await asyncio.start_unix_server(self._serve, path=path)
        finally:
            os.umask(old_umask)

    def close(self) -> None:
        """Stop serving and remove the socket file."""
        if self._listening is not None:
            self._listening.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: a reply line per command line, until EOF, ``stop`` or CONTROL_IDLE seconds of silence."""
        try:
            while True:
                async with asyncio.timeout(CONTROL_IDLE):
                    line = await reader.readline()
                if not line:
                    break
                command = line.decode(errors="replace").strip()
                reply = await self.reply(command)
                writer.write(reply.encode() + b"\n")
                await writer.drain()
                if command == STOP:
                    self._server.request_stop()
                    break
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    async def reply(self, command: str) -> str:
        """The reply line to one command (see the module's docstring)."""
        server = self._server
        if command == PING:  # only once dnsd is up, so a caller that got a pong finds its pid file written
            await self.up.wait()
            return format_pong(os.getpid(), self._managed)
        if command == SYNC:
            try:
                return format_sync_reply(await server.sync(), server.down_listeners)
            except Exception as err:  # noqa: BLE001 - reported to the caller, who retries or gives up
                log.warning("sync failed: %s", err)
                return f"{ERROR} {err}".replace("\n", " ")
        if command == STATUS:
            return format_sync_reply(server.generation, server.down_listeners)
        if command == STATS:
            return json.dumps(server.stats_report(), separators=(",", ":"))
        if command == STOP:
            return OK
        return f"{ERROR} unknown command {command[:40]!r}"
