"""Asking upstream servers for the names dnsd does not hold.

Each forwarded query gets a fresh socket (so a random source port) and a fresh
random ID; the servers are tried in order and share one time budget; a reply
counts only if its source, ID and question match what was sent, anything else
is dropped while the wait goes on. The client's ID is restored in the reply.

The servers come as lists, one per network of the client (see
``Snapshot.upstreams_for``). Within a list, SERVFAIL, REFUSED, a timeout or an
unreachable server tries the next one, and any other reply is final, NXDOMAIN
included, as a stub resolver does. An NXDOMAIN ends only its own list: the next
list is asked, and only when none of them knows better does the first NXDOMAIN
go to the client. So a name that one network's upstream knows resolves
whichever gateway the client asked (containers/netavark#1348).
"""

from __future__ import annotations

import asyncio
import os
import socket

from .answer import HEADER_SIZE, NXDOMAIN, REFUSED, SERVFAIL, Forward
from .snapshot import Upstream

DEFAULT_TIMEOUT = 3.0  # seconds for all the servers of one query together
DEFAULT_MAX_INFLIGHT = 1024
_TRY_NEXT_SERVER = (SERVFAIL, REFUSED)  # an upstream that cannot help; another one may


class Forwarder:
    """Relays queries upstream over the protocol they came in on.

    At most ``max_inflight`` at once, and at most ``max_per_client`` of them for one
    client address, so that one client flooding a silent upstream cannot take
    every slot and have everyone else's questions refused.
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, max_inflight: int = DEFAULT_MAX_INFLIGHT,
                 max_per_client: int | None = None):
        self.timeout = timeout
        self.max_inflight = max_inflight
        self.max_per_client = max_per_client or max_inflight
        self.inflight = 0
        self._inflight_by_client: dict[str, int] = {}

    async def resolve(self, forward: Forward, tcp: bool, client: str = "") -> bytes:
        """The reply for the client: an upstream's, with the client's ID, or SERVFAIL or REFUSED of our own."""
        held = self._inflight_by_client.get(client, 0)
        if self.inflight >= self.max_inflight or held >= self.max_per_client:
            return forward.error_reply(REFUSED)
        self.inflight += 1
        self._inflight_by_client[client] = held + 1
        try:
            reply = await self._ask_in_turn(forward, tcp)
        finally:
            self.inflight -= 1
            remaining = self._inflight_by_client[client] - 1
            if remaining:
                self._inflight_by_client[client] = remaining
            else:
                del self._inflight_by_client[client]
        if reply is None:
            return forward.error_reply(SERVFAIL)
        return forward.query[:2] + reply[2:]

    async def _ask_in_turn(self, forward: Forward, tcp: bool) -> bytes | None:
        """The first final reply, else the first NXDOMAIN, else None (no server answered usefully)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        ask = _ask_over_tcp if tcp else _ask_over_udp
        left = sum(len(servers) for servers in forward.upstream_groups)  # servers not yet asked or skipped
        negative = None
        for servers in forward.upstream_groups:
            for position, upstream in enumerate(servers):
                share = (deadline - loop.time()) / left  # what is left, split among the rest
                left -= 1
                query_id = os.urandom(2)
                try:
                    async with asyncio.timeout(share):
                        reply = await ask(query_id + forward.query[2:], forward.question, upstream)
                except (TimeoutError, OSError, asyncio.IncompleteReadError):
                    continue
                rcode = reply[3] & 0x0F
                if rcode in _TRY_NEXT_SERVER:
                    continue
                if rcode != NXDOMAIN:
                    return reply
                if negative is None:
                    negative = reply
                left -= len(servers) - position - 1  # final for this list: its other servers get no share
                break
        return negative


def is_reply_to(reply: bytes, query_id: bytes, question: bytes) -> bool:
    """Whether ``reply`` answers the query with this ID and this question section (names compared case-blind)."""
    question_end = HEADER_SIZE + len(question)
    return (len(reply) >= question_end and reply[:2] == query_id and reply[2] & 0x80 != 0
            and reply[4:6] == b"\x00\x01" and reply[HEADER_SIZE:question_end].lower() == question.lower())


class _ReplyCollector(asyncio.DatagramProtocol):
    def __init__(self):
        self.datagrams: asyncio.Queue[tuple[bytes, tuple] | OSError] = asyncio.Queue()

    def datagram_received(self, data: bytes, source: tuple) -> None:
        self.datagrams.put_nowait((data, source))

    def error_received(self, exc: OSError) -> None:  # e.g. ICMP port unreachable
        self.datagrams.put_nowait(exc)


async def _ask_over_udp(query: bytes, question: bytes, upstream: Upstream) -> bytes:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in upstream[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect(upstream)  # a connected socket: the kernel drops datagrams from anyone else
    except OSError:
        sock.close()
        raise
    transport, collector = await loop.create_datagram_endpoint(_ReplyCollector, sock=sock)
    try:
        transport.sendto(query)
        while True:
            received = await collector.datagrams.get()
            if isinstance(received, OSError):
                raise received
            data, source = received
            if source[:2] == upstream and is_reply_to(data, query[:2], question):
                return data
    finally:
        transport.close()


async def _ask_over_tcp(query: bytes, question: bytes, upstream: Upstream) -> bytes:
    reader, writer = await asyncio.open_connection(*upstream)
    try:
        writer.write(len(query).to_bytes(2, "big") + query)
        await writer.drain()
        while True:
            length = int.from_bytes(await reader.readexactly(2), "big")
            data = await reader.readexactly(length)
            if is_reply_to(data, query[:2], question):
                return data
    finally:
        writer.close()
