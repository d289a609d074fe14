"""The forwarded-answer cache: upstream replies kept for their TTL and served again without asking.

dnsd's local names are never here: only replies that came from an upstream and
passed the forwarder's ID, question and source checks (``dnsd.upstream.forward``). How
long a reply is kept is ``cache_ttl``, a pure rule:

* a positive answer: the smallest TTL of its records, at least
  ``POSITIVE_MIN`` and at most ``POSITIVE_MAX`` seconds (CoreDNS's cache
  plugin clamps the same way);
* a negative answer, NXDOMAIN or NODATA (NOERROR with no answer): the smaller
  of the SOA record's TTL and its MINIMUM field, at most ``NEGATIVE_MAX``; one
  without an SOA in its authority section is not cached (RFC 2308 section 5);
* SERVFAIL from an upstream: ``SERVFAIL_TTL`` seconds (RFC 2308 section 7.1
  allows at most five minutes; CoreDNS keeps 5 s);
* anything else (REFUSED, NOTIMP, FORMERR, a truncated reply): not cached.

A reply is served with each record's TTL counted down by the whole seconds it
has been kept (never above what the cache keeps it for), the asking client's
ID, question as asked (case included, for 0x20 clients) and RD bit.

Entries are keyed by the upstream lists asked (so each network or container
with its own --dns has its own answers), the question (its name case-blind,
its type and class exact: ``wire.fold_question``), whether the query had EDNS,
and its DO and CD bits. Memory is bounded in bytes: at most ``size`` entries
taking at most ``max_bytes`` together (32 MiB by default), least recently used
first out, and a reply over ``MAX_ENTRY_BYTES`` (16 KiB) is relayed but never
kept, so neither a flood of random names nor an upstream that answers 63 kB
over TCP for every name grows dnsd past its budget (issue 24). What a kept
reply holds is what the forwarder relayed (``dnsd.upstream.forward``: well-formed, its
unrelated answer records left out), less its EDNS options.

Threads: ``lookup`` runs in the UDP threads (the fast path: ``DnsServer``
calls it on every Forward the answerer gives), ``store`` on the event loop.
Every step is one operation of a dict or an OrderedDict under the GIL; a
lookup that races an eviction finds nothing and counts a miss.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Callable

from dnsd.core.answer import Forward
from dnsd.core.config import DEFAULT_CACHE_BYTES, DEFAULT_CACHE_SIZE
from dnsd.core.wire import (
    CD_FLAG,
    HEADER_SIZE,
    NOERROR,
    NXDOMAIN,
    SERVFAIL,
    TC_FLAG,
    TCP_MESSAGE_MAX,
    TYPE_OPT,
    TYPE_SOA,
    Layout,
    fold_question,
    parse_reply,
    truncate_reply,
    without_options,
)

POSITIVE_MIN = 5  # seconds a positive answer is kept at least, whatever its TTLs
POSITIVE_MAX = 3600  # ... and at most
NEGATIVE_MAX = 1800  # seconds an NXDOMAIN or NODATA is kept at most
SERVFAIL_TTL = 5  # seconds an upstream's SERVFAIL is kept
DEFAULT_SIZE = DEFAULT_CACHE_SIZE  # entries
DEFAULT_BYTES = DEFAULT_CACHE_BYTES  # what the entries may take in memory together, as ``_Entry.cost`` counts it
MAX_ENTRY_BYTES = 16 * 1024  # a reply larger than this is relayed, never kept
ENTRY_OVERHEAD = 1024  # bytes an entry takes besides its reply's two copies and its TTL fields (``_Entry.cost``)
_TTL = struct.Struct("!I")
_TTL_FIELD = struct.Struct("=HI")  # a TTL field's offset in the reply, and the TTL it counts down from

CacheKey = tuple

log = logging.getLogger("dnsd")


def cache_ttl(reply: bytes, layout: Layout | None = None) -> int | None:
    """How many seconds an upstream's ``reply`` may be kept (see the module's docstring); None: not at all,
    and so for a reply that is not well-formed (``parse_reply``; ``layout`` if already read). Never raises."""
    if len(reply) < HEADER_SIZE or reply[2] & TC_FLAG:
        return None
    rcode = reply[3] & 0x0F
    if rcode not in (NOERROR, NXDOMAIN, SERVFAIL):
        return None
    if layout is None:
        layout = parse_reply(reply)
        if layout is None:
            return None
    if rcode == SERVFAIL:
        return SERVFAIL_TTL
    ttls = [record.ttl for record in layout.answers if record.rtype != TYPE_OPT]
    if rcode == NOERROR and ttls:
        return min(max(min(ttls), POSITIVE_MIN), POSITIVE_MAX)
    for record in layout.records[layout.counts[0]:layout.counts[0] + layout.counts[1]]:
        if record.rtype == TYPE_SOA:
            minimum = int.from_bytes(reply[record.end - 4:record.end], "big")  # SOA's last field (RFC 1035 3.3.13)
            return min(record.ttl, minimum, NEGATIVE_MAX)
    return None  # negative without an SOA: RFC 2308 section 5 says not to cache it


def cache_key(forward: Forward) -> CacheKey:
    """What a cached reply is found by: upstream lists, the question as ``fold_question`` compares it (name
    case-blind, type and class exact), EDNS, DO and CD bits."""
    return (forward.upstream_groups, fold_question(forward.question), forward.edns, forward.dnssec_ok,
            forward.query[3] & CD_FLAG)


class _Entry:
    """One kept reply (its ID zeroed), where its TTL fields are and what they count down from, and its last
    rendering."""

    __slots__ = ("reply", "ttl_fields", "stored", "expires", "question_end", "rendered_age", "rendered")

    def __init__(self, reply: bytes, ttl_fields: bytes, stored: float, keep: int, question_end: int):
        self.reply = reply
        self.ttl_fields = ttl_fields  # (offset of the TTL field, TTL to count down from) of each record but OPT,
        # packed as ``_TTL_FIELD`` pairs: one small object whatever the number of records
        self.stored = stored
        self.expires = stored + keep
        self.question_end = question_end
        self.rendered_age = 0
        self.rendered = reply

    @property
    def cost(self) -> int:
        """Bytes in memory at most: the reply, its rendering of the current second, its TTL fields, and the rest
        (this object, the bytes' headers, the key and the OrderedDict's link: ``ENTRY_OVERHEAD``)."""
        return 2 * len(self.reply) + len(self.ttl_fields) + ENTRY_OVERHEAD

    def render(self, now: float) -> bytes:
        """The reply with its TTLs counted down by the whole seconds kept; the same bytes within one second."""
        age = int(now - self.stored)
        if age != self.rendered_age:
            message = bytearray(self.reply)
            for offset, ttl in _TTL_FIELD.iter_unpack(self.ttl_fields):
                _TTL.pack_into(message, offset, max(ttl - age, 0))
            self.rendered = bytes(message)
            self.rendered_age = age
        return self.rendered


def _reply_for(entry: _Entry, query: bytes, question: bytes, limit: int, now: float) -> bytes:
    """``entry``'s reply at ``now`` to ``query``: its ID and RD bit, ``question`` as asked, fitted to ``limit``."""
    body = entry.render(now)
    reply = b"".join((query[:2], bytes(((body[2] & 0xFE) | (query[2] & 0x01),)), body[3:HEADER_SIZE],
                      question, body[entry.question_end:]))
    return reply if len(reply) <= limit else truncate_reply(reply, limit)


class RememberedAnswer:
    """A kept reply as the answerer's memo holds it, keyed by the very bytes of a query after its ID (so the
    question's spelling, flags and EDNS size are those of the query it was made for)."""

    __slots__ = ("cache", "entry", "question", "limit", "rcode", "fresh_until", "tail")

    def __init__(self, cache: AnswerCache, entry: _Entry, question: bytes, limit: int):
        self.cache = cache
        self.entry = entry
        self.question = question
        self.limit = limit
        self.rcode = entry.reply[3] & 0x0F
        self.fresh_until = 0.0  # until when ``tail`` holds the TTLs of now (the next whole second, or expiry)
        self.tail = b""

    def reply(self, query: bytes) -> bytes | None:
        """The reply to ``query`` (its ID in front of the tail made for this second); None once expired.

        Two threads may render the same second at once: each gets a whole, correct reply.
        """
        cache = self.cache
        now = cache.clock()
        if now >= self.fresh_until:
            entry = self.entry
            if now >= entry.expires:
                return None
            self.tail = _reply_for(entry, query, self.question, self.limit, now)[2:]
            self.fresh_until = min(entry.stored + int(now - entry.stored) + 1, entry.expires)
        cache.hits += 1
        cache.rcode_hits[self.rcode] += 1
        return query[:2] + self.tail


class AnswerCache:
    """Upstream replies by ``cache_key``: at most ``size`` of them, taking at most ``max_bytes`` together (as
    ``_Entry.cost`` counts them), least recently used out first; a reply over ``max_entry`` bytes (at most
    ``max_bytes``) is never kept. ``size`` or ``max_bytes`` 0 keeps none.

    ``clock`` gives seconds (monotonic). Counts ``hits`` (and ``rcode_hits``,
    by the rcode served), ``misses``, ``evictions`` (entries pushed out for
    room, not expired ones) and ``too_large`` (replies not kept for their size);
    ``bytes`` is what the entries take now.

    Threads: ``lookup`` and ``remembered`` (the UDP threads) only read the
    dict and move an entry to its end; every entry comes in and goes out on
    the event loop (``store``, ``flush``), so ``bytes`` has one writer. An
    expired entry stays until its key is stored again or it is pushed out
    (counted in ``bytes`` until then).
    """

    def __init__(self, size: int = DEFAULT_SIZE, clock: Callable[[], float] = time.monotonic,
                 max_bytes: int = DEFAULT_BYTES, max_entry: int = MAX_ENTRY_BYTES):
        self.size = size
        self.max_bytes = max_bytes
        self.max_entry = min(max_entry, max_bytes)
        self.clock = clock
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.rcode_hits = [0] * 16  # hits by the rcode of the reply served (for dnsd_responses_total)
        self.misses = 0
        self.evictions = 0
        self.too_large = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, forward: Forward, limit: int, count: bool = True) -> bytes | None:
        """The kept reply for ``forward``'s client, made to fit ``limit`` bytes (``truncate_reply``); None
        on a miss or an expired entry. ``count``: count it as a hit or miss."""
        key = cache_key(forward)
        entry = self._entries.get(key)
        if entry is None:
            self.misses += count
            return None
        now = self.clock()
        if now >= entry.expires:
            self.misses += count
            return None
        try:  # noqa: SIM105 - a try costs nothing on this hot path, contextlib.suppress does
            self._entries.move_to_end(key)
        except KeyError:  # pushed out by the event loop just now: still served, this once
            pass
        if count:
            self.hits += 1
            self.rcode_hits[entry.reply[3] & 0x0F] += 1
        return _reply_for(entry, forward.query, forward.question, limit, now)

    def remembered(self, forward: Forward, limit: int) -> RememberedAnswer | None:
        """The kept reply for ``forward`` as an object the answerer's memo can hold (``Answerer.remember_reply``):
        the next identical UDP query is answered from it on the fast path, TTLs counted down, until it expires.
        None if there is no such entry (any more)."""
        entry = self._entries.get(cache_key(forward))
        return RememberedAnswer(self, entry, forward.question, limit) if entry is not None else None

    def store(self, forward: Forward, reply: bytes) -> _Entry | None:
        """Keep an upstream's validated ``reply`` to ``forward`` for ``cache_ttl`` seconds; the entry, or None if
        it may not be kept (not to be kept that long, not well-formed, larger than ``max_entry``). On the event
        loop only."""
        if self.size <= 0 or self.max_bytes <= 0:
            return None
        if len(reply) > self.max_entry:
            self.too_large += 1
            return None
        layout = parse_reply(reply)
        keep = cache_ttl(reply, layout)
        if not keep:
            return None
        stripped = without_options(reply, layout)
        if stripped is not reply:
            reply, layout = stripped, parse_reply(stripped)
        fields = [(record.rdata - 6, min(record.ttl, keep)) for record in layout.records if record.rtype != TYPE_OPT]
        stored = bytearray(reply)
        stored[0:2] = b"\x00\x00"
        for offset, ttl in fields:  # the first rendering already says no more than the cache keeps the reply
            _TTL.pack_into(stored, offset, ttl)
        key = cache_key(forward)
        entry = _Entry(bytes(stored), b"".join(_TTL_FIELD.pack(*field) for field in fields), self.clock(), keep,
                       layout.question_end)
        entries = self._entries
        old = entries.pop(key, None)
        if old is not None:
            self.bytes -= old.cost
        entries[key] = entry
        self.bytes += entry.cost
        while len(entries) > self.size or self.bytes > self.max_bytes:
            _, pushed = entries.popitem(last=False)
            self.bytes -= pushed.cost
            self.evictions += 1
        while entries:  # expired entries the least recently used end holds go too (lookups leave them)
            first = next(iter(entries))
            if entries[first].expires > entry.stored:
                break
            self.bytes -= entries.pop(first).cost
        return entry

    def flush(self) -> None:
        """Forget every entry (the upstreams of a network or container changed). On the event loop only."""
        self._entries.clear()
        self.bytes = 0


class CachingResolver:
    """A ``Resolver`` that keeps what ``forwarder`` brings back in ``cache`` (as CoreDNS's cache wraps the
    next plugin). A query finds the cache before it gets here (``DnsServer`` looks on the fast path); this
    looks once more, for replies that came in while the query was on its way to the event loop."""

    def __init__(self, forwarder, cache: AnswerCache):
        self.forwarder = forwarder
        self.cache = cache

    async def resolve(self, forward: Forward, tcp: bool, client: str = "") -> bytes | None:
        """The reply for the client: a kept one, else the forwarder's (kept if it may be, and then with the TTLs
        the cache gives it: an NXDOMAIN's SOA says how long it is kept, RFC 2308 section 3). Never raises: a
        bug on the way is counted (``Stats.internal_errors``) and answered SERVFAIL."""
        try:
            limit = TCP_MESSAGE_MAX if tcp else forward.udp_limit
            cached = self.cache.lookup(forward, limit, count=False)  # counted where it is answered: as upstream
            if cached is not None:
                return cached
            reply = await self.forwarder.ask(forward, tcp, client)
            if reply.__class__ is int:
                return forward.error_reply(reply)
            entry = self.cache.store(forward, reply)
            if entry is not None:  # as the cache will serve it: TTLs no longer than it keeps the reply
                return _reply_for(entry, forward.query, forward.question, limit, entry.stored)
            return reply if len(reply) <= limit else truncate_reply(reply, limit)
        except Exception as err:  # noqa: BLE001 - a bug must cost the client one SERVFAIL, never its answer
            return self.forwarder.failed(forward, err)
