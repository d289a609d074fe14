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

An upstream with a namespace (a container's loopback --dns, see ``Upstream``)
is asked through a socket made inside that namespace by a helper thread
(``NamespaceSockets``); every other socket is dnsd's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from netcore.system import linux

from .answer import Forward
from .snapshot import Upstream
from .stats import Stats
from .wire import HEADER_SIZE, NXDOMAIN, REFUSED, SERVFAIL, TC_FLAG, TCP_MESSAGE_MAX, truncate_reply

DEFAULT_TIMEOUT = 3.0  # seconds for all the servers of one query together
DEFAULT_MAX_INFLIGHT = 1024
_TRY_NEXT_SERVER = (SERVFAIL, REFUSED)  # an upstream that cannot help; another one may


class Resolver(Protocol):
    """The upstream path: what dnsd does with a name it does not hold.

    ``Forwarder`` is one. Another may wrap it and add something on the way (a
    cache, as CoreDNS's cache plugin wraps the next plugin); the server only
    calls ``resolve``.
    """

    async def resolve(self, forward: Forward, tcp: bool, client: str) -> bytes | None:
        """The reply for the client that asked ``forward`` (over TCP if ``tcp``; ``client`` is its address).

        Never raises for a failure upstream: the reply then is dnsd's own
        SERVFAIL or REFUSED (``Forward.error_reply``), or None where the
        dialect sends no reply (aardvark-dns's, when no upstream answered).
        """


class Forwarder:
    """Relays queries upstream over the protocol they came in on (a ``Resolver``).

    At most ``max_inflight`` at once, and at most ``max_per_client`` of them for one
    client address, so that one client flooding a silent upstream cannot take
    every slot and have everyone else's questions refused.
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, max_inflight: int = DEFAULT_MAX_INFLIGHT,
                 max_per_client: int | None = None, namespaces: NamespaceSockets | None = None,
                 stats: Stats | None = None):
        self.timeout = timeout
        self.namespaces = namespaces or NamespaceSockets()
        self.max_inflight = max_inflight
        self.max_per_client = max_per_client or max_inflight
        self.stats = stats if stats is not None else Stats()  # in flight, forwarded, SERVFAIL, refused at the cap
        self._inflight_by_client: dict[str, int] = {}

    async def resolve(self, forward: Forward, tcp: bool, client: str = "") -> bytes | None:
        """The reply for the client: an upstream's, with the client's ID and made to fit its UDP limit
        (``truncate_reply``), or SERVFAIL or REFUSED of our own (``Forward.error_reply``: None for no reply)."""
        reply = await self.ask(forward, tcp, client)
        if reply.__class__ is int:
            return forward.error_reply(reply)
        limit = TCP_MESSAGE_MAX if tcp else forward.udp_limit
        return reply if len(reply) <= limit else truncate_reply(reply, limit)

    async def ask(self, forward: Forward, tcp: bool, client: str = "") -> bytes | int:
        """An upstream's validated reply, with the client's ID, as it came (not yet fitted to the client);
        or the rcode of dnsd's own reply: REFUSED at an in-flight cap, SERVFAIL when no server answered."""
        stats = self.stats
        held = self._inflight_by_client.get(client, 0)
        if stats.in_flight >= self.max_inflight or held >= self.max_per_client:
            stats.refused_inflight += 1
            return REFUSED
        stats.in_flight += 1
        stats.forwarded += 1
        self._inflight_by_client[client] = held + 1
        try:
            reply = await self._ask_in_turn(forward, tcp)
        finally:
            stats.in_flight -= 1
            remaining = self._inflight_by_client[client] - 1
            if remaining:
                self._inflight_by_client[client] = remaining
            else:
                del self._inflight_by_client[client]
        if reply is None:
            stats.forward_servfail += 1
            return SERVFAIL
        return forward.query[:2] + reply[2:]

    async def _ask_in_turn(self, forward: Forward, tcp: bool) -> bytes | None:
        """The first final reply, else the first NXDOMAIN, else the first SERVFAIL, else None (no server
        replied in time).

        A UDP reply with TC set is asked again of the same server over TCP in
        what is left of its share, so a client that never retries over TCP
        (musl before 1.2.4, busybox) still gets the records (RFC 7766 section
        5); if that fails the truncated reply is final.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        ask = _ask_over_tcp if tcp else _ask_over_udp
        left = sum(len(servers) for servers in forward.upstream_groups)  # servers not yet asked or skipped
        negative = failure = None
        for servers in forward.upstream_groups:
            for position, upstream in enumerate(servers):
                share = (deadline - loop.time()) / left  # what is left, split among the rest
                left -= 1
                query = os.urandom(2) + forward.query[2:]
                try:
                    async with asyncio.timeout(share):
                        reply = await ask(query, forward.question, upstream, self.namespaces)
                except TimeoutError:
                    self.stats.upstream_failed(upstream, "timeout")
                    continue
                except (OSError, asyncio.IncompleteReadError):
                    self.stats.upstream_failed(upstream, "error")
                    continue
                if reply[2] & TC_FLAG and not tcp:
                    self.stats.truncated_retried += 1
                    with contextlib.suppress(TimeoutError, OSError, asyncio.IncompleteReadError):
                        async with asyncio.timeout_at(deadline):  # the records are worth the rest of the budget
                            reply = await _ask_over_tcp(query, forward.question, upstream, self.namespaces)
                rcode = reply[3] & 0x0F
                if rcode in _TRY_NEXT_SERVER:
                    if rcode == SERVFAIL and failure is None:
                        failure = reply
                    continue
                if rcode != NXDOMAIN:
                    return reply
                if negative is None:
                    negative = reply
                left -= len(servers) - position - 1  # final for this list: its other servers get no share
                break
        return negative or failure


class NamespaceSockets:
    """Makes sockets inside named network namespaces, in one helper thread of its own.

    setns(2) with CLONE_NEWNET moves only the calling thread, and a socket
    stays in the namespace it was made in for its whole life. So the helper
    thread enters /run/netns/NAME, makes the socket and comes back, and the
    event loop uses that socket like any other: dnsd's own threads never change
    namespace. Needs CAP_SYS_ADMIN (dnsd runs as root). The thread starts with
    the first such socket.
    """

    def __init__(self, directory: str = linux.NETNS_DIR):
        self.directory = directory
        self._thread: ThreadPoolExecutor | None = None

    async def socket(self, netns: str, family: int, kind: int) -> socket.socket:
        """A new non-blocking socket of ``family`` and ``kind`` inside the namespace named ``netns``.

        OSError if it cannot be made there: a bad name (EINVAL), a namespace
        that is gone (FileNotFoundError), no permission to enter it.
        """
        path = linux.netns_path(netns, self.directory)
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dnsd-netns")
        made = asyncio.get_running_loop().run_in_executor(self._thread, _socket_in, path, family, kind)
        try:
            return await asyncio.shield(made)
        except asyncio.CancelledError:  # the time share ran out: the socket still to come must not leak
            made.add_done_callback(_close_unclaimed)
            raise


def _socket_in(path: str, family: int, kind: int) -> socket.socket:
    """In the helper thread: a socket made inside the namespace at ``path``; the thread goes back to its own."""
    with linux.entered_netns(path):
        sock = socket.socket(family, kind)
    sock.setblocking(False)
    return sock


def _close_unclaimed(made: asyncio.Future) -> None:
    if not made.cancelled() and made.exception() is None:
        made.result().close()


async def _new_socket(upstream: Upstream, kind: int, namespaces: NamespaceSockets) -> socket.socket:
    """A non-blocking socket to reach ``upstream``: in its namespace if it has one, else in dnsd's own."""
    family = socket.AF_INET6 if ":" in upstream.address else socket.AF_INET
    if upstream.netns:
        return await namespaces.socket(upstream.netns, family, kind)
    sock = socket.socket(family, kind)
    sock.setblocking(False)
    return sock


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


async def _ask_over_udp(query: bytes, question: bytes, upstream: Upstream, namespaces: NamespaceSockets) -> bytes:
    loop = asyncio.get_running_loop()
    server = (upstream.address, upstream.port)
    sock = await _new_socket(upstream, socket.SOCK_DGRAM, namespaces)
    try:
        sock.connect(server)  # a connected socket: the kernel drops datagrams from anyone else
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
            if source[:2] == server and is_reply_to(data, query[:2], question):
                return data
    finally:
        transport.close()


async def _ask_over_tcp(query: bytes, question: bytes, upstream: Upstream, namespaces: NamespaceSockets) -> bytes:
    if upstream.netns:
        sock = await _new_socket(upstream, socket.SOCK_STREAM, namespaces)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (upstream.address, upstream.port))
            reader, writer = await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
    else:
        reader, writer = await asyncio.open_connection(upstream.address, upstream.port)
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
