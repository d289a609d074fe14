"""DNS over TCP: length-prefixed queries, several per connection, on the event loop.

A connection is closed after ``idle`` seconds without a query, and a client
that does not read its answer within that time loses it; at ``max_open``
connections (all listeners together) the longest-open one makes room, so
abusers holding every slot never lock newcomers out. A connection closed on a
client that stopped reading is reset, never flushed.
"""

from __future__ import annotations

import asyncio
import fcntl
import struct
import termios
from collections.abc import Callable, Coroutine

from dnsd.core.answer import Forward
from dnsd.core.stats import Stats
from dnsd.upstream.forward import Resolver


class TcpConnections:
    """Serves TCP connections through ``answer``, asking ``resolver`` for names not held, and keeps count of them.

    ``answer(message, client_ip, listener_ip, tcp)`` as ``Answerer.handle``;
    ``spawn`` starts a task that the server cancels when it stops. The replies
    it gives itself are counted in ``stats.answered_tcp``.
    """

    def __init__(self, answer: Callable[[bytes, str, str, bool], bytes | Forward | None], resolver: Resolver,
                 spawn: Callable[[Coroutine], asyncio.Task], idle: float, max_open: int, stats: Stats):
        self._answer = answer
        self._resolver = resolver
        self._spawn = spawn
        self._stats = stats
        self.idle = idle
        self.max_open = max_open
        self._open: dict[asyncio.Task, asyncio.StreamWriter] = {}  # in the order they were opened

    @property
    def open_count(self) -> int:
        """Connections open now."""
        return len(self._open)

    async def serve(self, listener_ip: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One task per connection: several length-prefixed queries, closed when idle, slow or garbled."""
        if len(self._open) >= self.max_open:
            # the longest-open connection makes room: abusers holding every slot never lock newcomers out
            _close_now(next(iter(self._open.values())))
        connection = asyncio.current_task()
        self._open[connection] = writer
        client_ip = writer.get_extra_info("peername")[0]
        forwarding: set[asyncio.Task] = set()
        try:
            while True:
                try:
                    async with asyncio.timeout(self.idle):
                        length = int.from_bytes(await reader.readexactly(2), "big")
                        message = await reader.readexactly(length)
                except TimeoutError:
                    if forwarding:  # not idle: answers are on their way
                        await asyncio.wait(forwarding)
                    break
                result = self._answer(message, client_ip, listener_ip, True)
                if result is None:
                    break
                if type(result) is bytes:
                    self._stats.answered_tcp += 1
                    await self._write_message(writer, result)
                else:
                    task = self._spawn(self._forward_message(result, writer, client_ip))
                    forwarding.add(task)
                    task.add_done_callback(forwarding.discard)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            del self._open[connection]
            for task in forwarding:
                task.cancel()
            _close_now(writer)

    async def close(self) -> None:
        """Close every connection; returns once each has finished, or after ``idle`` seconds."""
        for writer in self._open.values():  # each connection's task sees its end and finishes
            writer.close()
        if self._open:
            await asyncio.wait(list(self._open), timeout=self.idle)

    async def _forward_message(self, forward: Forward, writer: asyncio.StreamWriter, client_ip: str) -> None:
        reply = await self._resolver.resolve(forward, tcp=True, client=client_ip)
        if reply is None:  # no upstream answered and the dialect sends nothing then (dnsd.core.dialect): it times out
            return
        try:
            await self._write_message(writer, reply)
        except (ConnectionError, TimeoutError):
            _close_now(writer)

    async def _write_message(self, writer: asyncio.StreamWriter, message: bytes) -> None:
        """Write one length-prefixed message; a client that does not read it in time loses the connection."""
        writer.write(len(message).to_bytes(2, "big") + message)
        async with asyncio.timeout(self.idle):
            await writer.drain()


def _close_now(writer: asyncio.StreamWriter) -> None:
    """Close a TCP connection without waiting on its client: unsent data is dropped (RST), not flushed.

    Unsent data may sit in the transport or in the kernel's send queue; either way a
    client that stopped reading must not keep buffers and an orphaned socket alive.
    """
    if writer.transport.get_write_buffer_size() or _kernel_send_queue(writer):
        writer.transport.abort()
    else:
        writer.close()


def _kernel_send_queue(writer: asyncio.StreamWriter) -> int:
    """Bytes the kernel still holds unsent (or unacknowledged) for this connection."""
    sock = writer.get_extra_info("socket")
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (OSError, AttributeError, ValueError):
        return 0
