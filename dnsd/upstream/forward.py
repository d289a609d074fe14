"""Asking upstream servers for the names dnsd does not hold, against forged and hostile replies.

Each upstream query gets a fresh socket (so a random source port) and a fresh
random ID; the servers are tried in order and share one time budget; a reply
counts only if its source, ID and question match what was sent (the name
case-blind, RFC 4343; type and class exact: ``wire.fold_question``), anything
else is dropped while the wait goes on. The client's ID is restored in the
reply. On top of that, against forgery (RFC 5452, and the DNSpooq attacks on
dnsmasq, CVE-2020-25686):

* identical questions are merged: while one query for a question is out at an
  upstream, the same question to the same upstream (same protocol, RD, CD,
  EDNS and DO) waits for its reply instead of going out again, so a burst of
  identical queries cannot raise a forger's odds by the birthday paradox
  (RFC 5452 section 5). Each waiter gets the reply with its own ID and
  spelling, fitted to its own size limit, without the upstream's EDNS options
  when the query was not its own;
* a flood of mismatched replies is a forgery attempt: after
  ``SPOOF_THRESHOLD`` datagrams on an upstream socket that do not answer its
  query, the UDP query is abandoned and asked again over TCP, which a blind
  forger cannot answer (RFC 5452 section 9.2); both are counted;
* a reply must be well-formed (``wire.parse_reply``) to be relayed: one that
  is not counts as a failure of that server (the next one is asked; SERVFAIL
  if none answers), so a client never gets bytes dnsd cannot read;
* answer records that answer nothing asked (not on the question's CNAME
  chain) are left out of what is relayed and kept (``wire.related_answers_only``);
* no loops: an upstream that is one of dnsd's own listening addresses
  (``is_own``) is never asked, and a query that comes from the upstream dnsd
  is asking the same question, and would be forwarded to it again, is the
  query coming back: it is answered SERVFAIL (``forward_loops``).

The servers come as lists, one per network of the client (see
``Snapshot.upstreams_for``). Within a list, SERVFAIL, REFUSED, a timeout, an
unreadable reply or an unreachable server tries the next one, and any other
reply is final, NXDOMAIN included, as a stub resolver does. An NXDOMAIN ends
only its own list: the next list is asked, and only when none of them knows
better does the first NXDOMAIN go to the client. So a name that one network's
upstream knows resolves whichever gateway the client asked
(containers/netavark#1348).

An upstream with a namespace (a container's loopback --dns, see ``Upstream``)
is asked through a socket made inside that namespace by a helper thread
(``NamespaceSockets``); every other socket is dnsd's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from dnsd.core.answer import Forward
from dnsd.core.config import DEFAULT_FORWARD_TIMEOUT, DEFAULT_MAX_INFLIGHT
from dnsd.core.snapshot import Upstream
from dnsd.core.stats import Stats
from dnsd.core.wire import (
    CD_FLAG,
    HEADER_SIZE,
    NXDOMAIN,
    QR_FLAG,
    RD_FLAG,
    REFUSED,
    SERVFAIL,
    TC_FLAG,
    TCP_MESSAGE_MAX,
    Layout,
    bare_truncated,
    fold_question,
    parse_reply,
    related_answers_only,
    truncate_reply,
    without_options,
)
from netcore.system import linux

DEFAULT_TIMEOUT = DEFAULT_FORWARD_TIMEOUT  # seconds for all the servers of one query together
SPOOF_THRESHOLD = 3  # mismatched datagrams on one upstream socket before its query goes over TCP instead
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


class MalformedReply(Exception):
    """An upstream's reply to our query (its ID and question match) that is not a well-formed message."""


class SpoofSuspected(Exception):
    """``SPOOF_THRESHOLD`` datagrams came to an upstream socket that did not answer its query."""


class _Exchange:
    """One query out at one upstream (``Forwarder._carry_out`` in a task of its own) and how many asks wait for
    it: the last one to stop waiting cancels it."""

    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task):
        self.task = task
        self.waiters = 0


class Forwarder:
    """Relays queries upstream over the protocol they came in on (a ``Resolver``).

    At most ``max_inflight`` at once, and at most ``max_per_client`` of them for one
    client address, so that one client flooding a silent upstream cannot take
    every slot and have everyone else's questions refused. ``is_own(upstream)``
    says whether an upstream is dnsd itself (one of its listening addresses and
    its port): such a one is never asked. ``spoof_threshold``: see the module's
    docstring.
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, max_inflight: int = DEFAULT_MAX_INFLIGHT,
                 max_per_client: int | None = None, namespaces: NamespaceSockets | None = None,
                 stats: Stats | None = None, is_own: Callable[[Upstream], bool] | None = None,
                 spoof_threshold: int = SPOOF_THRESHOLD):
        self.timeout = timeout
        self.namespaces = namespaces or NamespaceSockets()
        self.max_inflight = max_inflight
        self.max_per_client = max_per_client or max_inflight
        self.stats = stats if stats is not None else Stats()  # in flight, forwarded, SERVFAIL, refused at the cap
        self.is_own = is_own
        self.spoof_threshold = spoof_threshold
        self._inflight_by_client: dict[str, int] = {}
        self._exchanges: dict[tuple, _Exchange] = {}  # (upstream, protocol, question, flags) -> its query
        self._asking: dict[tuple[str, bytes], int] = {}  # (upstream address, folded question) -> queries out

    async def resolve(self, forward: Forward, tcp: bool, client: str = "") -> bytes | None:
        """The reply for the client: an upstream's, with the client's ID and made to fit its UDP limit
        (``truncate_reply``), or SERVFAIL or REFUSED of our own (``Forward.error_reply``: None for no reply).
        Never raises (see ``failed``)."""
        try:
            reply = await self.ask(forward, tcp, client)
            if reply.__class__ is int:
                return forward.error_reply(reply)
            limit = TCP_MESSAGE_MAX if tcp else forward.udp_limit
            return reply if len(reply) <= limit else truncate_reply(reply, limit)
        except Exception as err:  # noqa: BLE001 - a bug must cost the client one SERVFAIL, never its answer
            return self.failed(forward, err)

    def failed(self, forward: Forward, err: Exception) -> bytes | None:
        """dnsd's SERVFAIL for ``forward`` (``Forward.error_reply``: None where the dialect sends none), after a
        bug (``err``) on its way: counted in ``internal_errors``, and so reported once a second by the server,
        never a traceback per query."""
        self.stats.internal_errors += 1
        self.stats.last_internal_error = repr(err)
        return forward.error_reply(SERVFAIL)

    async def ask(self, forward: Forward, tcp: bool, client: str = "") -> bytes | int:
        """An upstream's validated reply, with the client's ID and question, as it came (not yet fitted to the
        client); or the rcode of dnsd's own reply: REFUSED at an in-flight cap, SERVFAIL when no server answered
        or the query came back to dnsd through an upstream (a loop)."""
        stats = self.stats
        question = fold_question(forward.question)
        if (client, question) in self._asking and self._asks(forward, client):
            stats.forward_loops += 1
            return SERVFAIL
        held = self._inflight_by_client.get(client, 0)
        if stats.in_flight >= self.max_inflight or held >= self.max_per_client:
            stats.refused_inflight += 1
            return REFUSED
        stats.in_flight += 1
        stats.forwarded += 1
        self._inflight_by_client[client] = held + 1
        try:
            found = await self._ask_in_turn(forward, tcp, question)
        finally:
            stats.in_flight -= 1
            remaining = self._inflight_by_client[client] - 1
            if remaining:
                self._inflight_by_client[client] = remaining
            else:
                del self._inflight_by_client[client]
        if found is None:
            stats.forward_servfail += 1
            return SERVFAIL
        reply, layout, joined = found
        if joined:  # another client's query: its EDNS options answered that client's
            reply = without_options(reply, layout)
        question_end = HEADER_SIZE + len(forward.question)
        return b"".join((forward.query[:2], reply[2:HEADER_SIZE], forward.question, reply[question_end:]))

    @staticmethod
    def _asks(forward: Forward, address: str) -> bool:
        """Whether ``forward`` would be asked of the upstream at ``address`` (in dnsd's own namespace)."""
        return any(upstream.address == address and not upstream.netns
                   for servers in forward.upstream_groups for upstream in servers)

    async def _ask_in_turn(self, forward: Forward, tcp: bool, question: bytes) -> tuple[bytes, Layout, bool] | None:
        """The first final reply, else the first NXDOMAIN, else the first SERVFAIL, else None (no server
        replied in time); with its layout and whether it came from another client's query (merged).

        A UDP reply with TC set is asked again of the same server over TCP in
        what is left of its share, so a client that never retries over TCP
        (musl before 1.2.4, busybox) still gets the records (RFC 7766 section
        5); if that fails the truncated reply is final.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        left = sum(len(servers) for servers in forward.upstream_groups)  # servers not yet asked or skipped
        negative = failure = None
        for servers in forward.upstream_groups:
            for position, upstream in enumerate(servers):
                share = (deadline - loop.time()) / left  # what is left, split among the rest
                left -= 1
                if self.is_own is not None and self.is_own(upstream):  # asking it would be asking ourselves
                    self.stats.forward_loops += 1
                    self.stats.upstream_failed(upstream, "loop")
                    continue
                try:
                    found = await self._exchange(forward, question, upstream, tcp, loop.time() + share)
                except TimeoutError:
                    self.stats.upstream_failed(upstream, "timeout")
                    continue
                except MalformedReply:
                    self.stats.upstream_failed(upstream, "malformed")
                    continue
                except (OSError, asyncio.IncompleteReadError):
                    self.stats.upstream_failed(upstream, "error")
                    continue
                reply = found[0]
                if reply[2] & TC_FLAG and not tcp:
                    self.stats.truncated_retried += 1
                    with contextlib.suppress(TimeoutError, OSError, asyncio.IncompleteReadError, MalformedReply):
                        # the records are worth the rest of the budget
                        found = await self._exchange(forward, question, upstream, True, deadline)
                        reply = found[0]
                rcode = reply[3] & 0x0F
                if rcode in _TRY_NEXT_SERVER:
                    if rcode == SERVFAIL and failure is None:
                        failure = found
                    continue
                if rcode != NXDOMAIN:
                    return found
                if negative is None:
                    negative = found
                left -= len(servers) - position - 1  # final for this list: its other servers get no share
                break
        return negative or failure

    async def _exchange(self, forward: Forward, question: bytes, upstream: Upstream, tcp: bool,
                        deadline: float) -> tuple[bytes, Layout, bool]:
        """``upstream``'s checked reply (``_carry_out``) to ``forward``'s question, its layout, and whether it
        was another client's query that this one joined; raises as ``_carry_out`` does, or TimeoutError at
        ``deadline`` (loop time).

        An identical query already out (same upstream, protocol, question as ``fold_question`` compares it,
        RD, CD, EDNS and DO) is waited for instead of asking again (RFC 5452 section 5); it ends at the
        deadline of the query that sent it.
        """
        key = (upstream, tcp, question, forward.query[2] & RD_FLAG, forward.query[3] & CD_FLAG, forward.edns,
               forward.dnssec_ok)
        exchange = self._exchanges.get(key)
        joined = exchange is not None
        if joined:
            self.stats.forward_merged += 1
        else:
            query = os.urandom(2) + forward.query[2:]
            exchange = self._exchanges[key] = _Exchange(asyncio.get_running_loop().create_task(
                self._carry_out(query, forward.question, upstream, tcp, deadline)))
            asking = (upstream.address, question)
            self._asking[asking] = self._asking.get(asking, 0) + 1
            exchange.task.add_done_callback(functools.partial(self._exchange_done, key, asking, exchange))
        exchange.waiters += 1
        try:
            async with asyncio.timeout_at(deadline):
                reply, layout = await asyncio.shield(exchange.task)  # one waiter giving up leaves it to the others
        finally:
            exchange.waiters -= 1
            if not exchange.waiters and not exchange.task.done():  # the last one: its socket closes now
                if self._exchanges.get(key) is exchange:
                    del self._exchanges[key]
                exchange.task.cancel()
        return reply, layout, joined

    def _exchange_done(self, key: tuple, asking: tuple[str, bytes], exchange: _Exchange, task: asyncio.Task) -> None:
        if self._exchanges.get(key) is exchange:
            del self._exchanges[key]
        remaining = self._asking[asking] - 1
        if remaining:
            self._asking[asking] = remaining
        else:
            del self._asking[asking]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have given up before it ended

    async def _carry_out(self, query: bytes, question: bytes, upstream: Upstream, tcp: bool,
                         deadline: float) -> tuple[bytes, Layout]:
        """Ask ``upstream`` ``query`` until ``deadline`` (loop time); its reply, checked, and the reply's layout.

        Over UDP, a flood of mismatched datagrams (``SpoofSuspected``) has the
        query asked again, under a new ID, over TCP. A reply that is not
        well-formed raises MalformedReply, unless it came over UDP with TC set
        (a server may cut a record short: it is then relayed as
        ``bare_truncated``, and asked again over TCP); one that is has the answer records
        that answer nothing asked left out (``related_answers_only``). Raises
        TimeoutError, OSError or IncompleteReadError when the server cannot be
        asked or does not answer in time.
        """
        async with asyncio.timeout_at(deadline):
            if tcp:
                reply = await _ask_over_tcp(query, question, upstream, self.namespaces)
            else:
                try:
                    reply = await _ask_over_udp(query, question, upstream, self.namespaces, self._mismatched,
                                                self.spoof_threshold)
                except SpoofSuspected:
                    self.stats.spoof_detected += 1
                    reply = await _ask_over_tcp(os.urandom(2) + query[2:], question, upstream, self.namespaces)
        layout = parse_reply(reply)
        if layout is None:
            if tcp or not reply[2] & TC_FLAG:
                raise MalformedReply
            reply = bare_truncated(reply)
            layout = parse_reply(reply)
        return related_answers_only(reply, layout)

    def _mismatched(self) -> None:
        """Count one datagram on an upstream socket that did not answer its query."""
        self.stats.spoofed_replies += 1


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
    """Whether ``reply`` answers the query with this ID and this question section: QR set, one question, the
    same name but for the case of its letters (RFC 4343), the same type and class octets (``fold_question``)."""
    question_end = HEADER_SIZE + len(question)
    return (len(reply) >= question_end and reply[:2] == query_id and reply[2] & QR_FLAG != 0
            and reply[4:6] == b"\x00\x01" and fold_question(reply[HEADER_SIZE:question_end]) == fold_question(question))


class _ReplyCollector(asyncio.DatagramProtocol):
    def __init__(self):
        self.datagrams: asyncio.Queue[tuple[bytes, tuple] | OSError] = asyncio.Queue()

    def datagram_received(self, data: bytes, source: tuple) -> None:
        self.datagrams.put_nowait((data, source))

    def error_received(self, exc: OSError) -> None:  # e.g. ICMP port unreachable
        self.datagrams.put_nowait(exc)


async def _ask_over_udp(query: bytes, question: bytes, upstream: Upstream, namespaces: NamespaceSockets,
                        mismatched: Callable[[], None], threshold: int) -> bytes:
    """The first datagram from ``upstream`` that answers ``query`` (``is_reply_to``); SpoofSuspected once
    ``threshold`` others came (each one counted by ``mismatched()``): the socket is connected, so the kernel
    drops anything from other sources, and what comes from the server's address with the wrong ID or
    question is forged, or a server too broken to ask (RFC 5452 sections 9.1 and 9.2)."""
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
            mismatched()
            threshold -= 1
            if threshold <= 0:
                raise SpoofSuspected
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
