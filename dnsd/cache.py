"""The forwarded-answer cache: upstream replies kept for their TTL and served again without asking.

dnsd's local names are never here: only replies that came from an upstream and
passed the forwarder's ID, question and source checks (``dnsd.forward``). How
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
with its own --dns has its own answers), the lower-cased question, whether the
query had EDNS, and its DO and CD bits. At most ``size`` entries are kept,
least recently used first out, so a flood of random names keeps memory flat.

Threads: ``lookup`` runs in the UDP threads (the fast path: ``DnsServer``
calls it on every Forward the answerer gives), ``store`` on the event loop.
Every step is one operation of a dict or an OrderedDict under the GIL; a
lookup that races an eviction finds nothing and counts a miss.
"""

from __future__ import annotations

import struct
import time
from collections import OrderedDict
from collections.abc import Callable

from .answer import Forward
from .wire import (
    HEADER_SIZE,
    NOERROR,
    NXDOMAIN,
    OPT_FIXED,
    SERVFAIL,
    TC_FLAG,
    TCP_MESSAGE_MAX,
    TYPE_OPT,
    TYPE_SOA,
    record_spans,
    truncate_reply,
    ttl_offset,
)

POSITIVE_MIN = 5  # seconds a positive answer is kept at least, whatever its TTLs
POSITIVE_MAX = 3600  # ... and at most
NEGATIVE_MAX = 1800  # seconds an NXDOMAIN or NODATA is kept at most
SERVFAIL_TTL = 5  # seconds an upstream's SERVFAIL is kept
DEFAULT_SIZE = 10000  # entries; a few kB each at most, so some tens of MB in the worst case
_CD = 0x10  # checking disabled, in the header's fourth byte (RFC 4035 section 3.2.2)
_TTL = struct.Struct("!I")

CacheKey = tuple


def cache_ttl(reply: bytes) -> int | None:
    """How many seconds an upstream's ``reply`` may be kept (see the module's docstring); None: not at all."""
    if len(reply) < HEADER_SIZE or reply[2] & TC_FLAG:
        return None
    rcode = reply[3] & 0x0F
    if rcode == SERVFAIL:
        return SERVFAIL_TTL
    if rcode not in (NOERROR, NXDOMAIN):
        return None
    layout = record_spans(reply)
    if layout is None:
        return None
    _, answer_count, spans = layout
    if rcode == NOERROR and answer_count:
        ttls = [ttl for _, _, rtype, ttl in spans if rtype != TYPE_OPT]
        return min(max(min(ttls), POSITIVE_MIN), POSITIVE_MAX)
    authority_end = answer_count + int.from_bytes(reply[8:10], "big")
    for _, end, rtype, ttl in spans[answer_count:authority_end]:
        if rtype == TYPE_SOA:
            minimum = int.from_bytes(reply[end - 4:end], "big")  # SOA's last field (RFC 1035 section 3.3.13)
            return min(ttl, minimum, NEGATIVE_MAX)
    return None  # negative without an SOA: RFC 2308 section 5 says not to cache it


def without_edns_options(reply: bytes) -> bytes:
    """``reply`` with the options of its OPT record left out (payload size, extended rcode, version and flags
    kept). A kept reply goes to other clients: an upstream's COOKIE option answers one client's cookie
    (RFC 7873 section 5.3), and a padding or client-subnet option is as personal; dnsd's own answers carry
    no options either. A reply without options, or whose layout cannot be read, comes back as it is."""
    layout = record_spans(reply)
    if layout is None:
        return reply
    for start, end, rtype, _ in layout[2]:
        if rtype == TYPE_OPT and end - start > OPT_FIXED.size:
            return reply[:start] + reply[start:start + OPT_FIXED.size - 2] + b"\x00\x00" + reply[end:]
    return reply


def cache_key(forward: Forward) -> CacheKey:
    """What a cached reply is found by: upstream lists, lower-cased question, EDNS, DO and CD bits."""
    return (forward.upstream_groups, forward.question.lower(), forward.edns, forward.dnssec_ok,
            forward.query[3] & _CD)


class _Entry:
    """One kept reply (its ID zeroed), its TTL fields, and its last rendering."""

    __slots__ = ("reply", "ttl_fields", "stored", "expires", "question_end", "rendered_age", "rendered")

    def __init__(self, reply: bytes, ttl_fields: tuple[tuple[int, int], ...], stored: float, keep: int,
                 question_end: int):
        self.reply = reply
        self.ttl_fields = ttl_fields  # (offset, TTL to count down from) of each record but OPT
        self.stored = stored
        self.expires = stored + keep
        self.question_end = question_end
        self.rendered_age = 0
        self.rendered = reply

    def render(self, now: float) -> bytes:
        """The reply with its TTLs counted down by the whole seconds kept; the same bytes within one second."""
        age = int(now - self.stored)
        if age != self.rendered_age:
            message = bytearray(self.reply)
            for offset, ttl in self.ttl_fields:
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
    """Upstream replies by ``cache_key``, at most ``size`` of them (LRU); ``size`` 0 keeps none.

    ``clock`` gives seconds (monotonic). Counts ``hits`` (and ``rcode_hits``,
    by the rcode served), ``misses`` and ``evictions`` (entries pushed out for
    room, not expired ones).
    """

    def __init__(self, size: int = DEFAULT_SIZE, clock: Callable[[], float] = time.monotonic):
        self.size = size
        self.clock = clock
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self.hits = 0
        self.rcode_hits = [0] * 16  # hits by the rcode of the reply served (for dnsd_responses_total)
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, forward: Forward, limit: int, count: bool = True) -> bytes | None:
        """The kept reply for ``forward``'s client, made to fit ``limit`` bytes (``truncate_reply``); None
        on a miss (or an expired entry, which goes). ``count``: count it as a hit or miss."""
        key = cache_key(forward)
        entry = self._entries.get(key)
        if entry is None:
            self.misses += count
            return None
        now = self.clock()
        if now >= entry.expires:
            self._entries.pop(key, None)
            self.misses += count
            return None
        try:  # noqa: SIM105 - a try costs nothing on this hot path, contextlib.suppress does
            self._entries.move_to_end(key)
        except KeyError:  # evicted by another thread just now: still served, this once
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
        it may not be kept."""
        if self.size <= 0:
            return None
        keep = cache_ttl(reply)
        if not keep:
            return None
        reply = without_edns_options(reply)
        question_end, _, spans = record_spans(reply)  # cache_ttl read it: it has a layout
        fields = tuple((ttl_offset(reply, start), min(ttl, keep)) for start, _, rtype, ttl in spans
                       if rtype != TYPE_OPT)
        stored = bytearray(reply)
        stored[0:2] = b"\x00\x00"
        for offset, ttl in fields:  # the first rendering already says no more than the cache keeps it
            _TTL.pack_into(stored, offset, ttl)
        key = cache_key(forward)
        entries = self._entries
        entry = entries[key] = _Entry(bytes(stored), fields, self.clock(), keep, question_end)
        entries.move_to_end(key)
        while len(entries) > self.size:
            try:
                entries.popitem(last=False)
            except KeyError:
                break
            self.evictions += 1
        return entry

    def flush(self) -> None:
        """Forget every entry (the upstreams of a network or container changed)."""
        self._entries.clear()


class CachingResolver:
    """A ``Resolver`` that keeps what ``forwarder`` brings back in ``cache`` (as CoreDNS's cache wraps the
    next plugin). A query finds the cache before it gets here (``DnsServer`` looks on the fast path); this
    looks once more, for replies that came in while the query was on its way to the event loop."""

    def __init__(self, forwarder, cache: AnswerCache):
        self.forwarder = forwarder
        self.cache = cache

    async def resolve(self, forward: Forward, tcp: bool, client: str = "") -> bytes | None:
        """The reply for the client: a kept one, else the forwarder's (kept if it may be, and then with the TTLs
        the cache gives it: an NXDOMAIN's SOA says how long it is kept, RFC 2308 section 3)."""
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

