"""The answering core, sans I/O: query bytes in, reply bytes or a decision to forward out.

The fast path reads the 12-byte header and the one question by hand (plus a
single OPT record), looks the lower-cased name up in the snapshot and joins
header, question as asked and ready-made answer records. Anything unusual goes
to dnslib, which either finds a query worth answering after all or tells us
to reply FORMERR. ``handle`` never raises on any input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import dnslib

from dnsd.core.dialect import DOCKER, Dialect
from dnsd.core.snapshot import MAX_UPSTREAMS, RecordSet, Scope, Snapshot, Upstream, host_names, lookup, name_under
from dnsd.core.stats import Stats
from dnsd.core.wire import (
    BADVERS,
    DNSSEC_OK,
    FORMERR,
    HEADER_SIZE,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    ONE_ANSWER,
    OPT_FIXED,
    REFUSED,
    SERVFAIL,
    TCP_MESSAGE_MAX,
    TYPE_OPT,
    UDP_PAYLOAD_PLAIN,
    header_counts,
    question_name_end,
)

EDNS_PAYLOAD = 1232  # what dnsd advertises in its OPT record (DNS flag day 2020)
REPLY_MEMO_SIZE = 16384  # remembered replies, all scopes together (a few MB at most)
REPLAY_CLIENTS = 4096  # client keys a listener's replay table holds (see Answerer.remember_client)

_PLAIN_QUERY_COUNTS = b"\x00\x01\x00\x00\x00\x00"  # QDCOUNT=1 ANCOUNT=0 NSCOUNT=0
_OPT_START = b"\x00" + TYPE_OPT.to_bytes(2, "big")  # root name, then type OPT


def _opt_record(extended_rcode: int = 0, dnssec_ok: bool = False) -> bytes:
    """dnsd's OPT record (RFC 6891 section 6.1.2): its payload size, EDNS version 0, no options.

    The DO bit is copied from the query (RFC 3225 section 3): dnsd signs nothing, but says it was asked.
    """
    flags = DNSSEC_OK if dnssec_ok else 0
    return (_OPT_START + EDNS_PAYLOAD.to_bytes(2, "big") + bytes((extended_rcode, 0)) + flags.to_bytes(2, "big")
            + b"\x00\x00")


_OPT = _opt_record()
_OPT_DO = _opt_record(dnssec_ok=True)


def _response_flags(query: bytes, rcode: int, truncated: bool = False) -> bytes:
    """QR and RA set, opcode, RD and CD copied; never AA: dnsd is no authority."""
    return bytes((0x80 | (query[2] & 0x79) | (0x02 if truncated else 0), 0x80 | (query[3] & 0x10) | (rcode & 0x0F)))


# NOERROR flags of a plain query, indexed by its RD bit | CD bit (a tuple: indexing it beats a dict lookup)
_NOERROR_FLAGS = tuple(_response_flags(bytes((0, 0, bits & 0x01, bits & 0x10)), NOERROR) for bits in range(0x12))


def reply_without_answers(query: bytes, question_end: int, rcode: int, edns: bool, truncated: bool = False,
                          dnssec_ok: bool = False) -> bytes:
    """A reply to ``query`` echoing its question (none if ``question_end`` is the header's end).

    ``edns``: the query had an OPT record, so the reply has one (RFC 6891 section 7), with DO as asked.
    """
    question_count = b"\x00\x01" if question_end > HEADER_SIZE else b"\x00\x00"
    opt = _opt_record(rcode >> 4, dnssec_ok) if edns else b""
    return b"".join((query[:2], _response_flags(query, rcode, truncated), question_count, b"\x00\x00\x00\x00",
                     b"\x00\x01" if edns else b"\x00\x00", query[HEADER_SIZE:question_end], opt))


class RememberedReply(Protocol):
    """A reply the memo holds that may expire: ``reply(query)`` is the reply with the query's ID, or None once
    expired."""

    def reply(self, query: bytes) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Forward:
    """The name is not local: ask these upstream servers in order and relay the reply.

    ``upstream_groups`` are the client's lists of servers (its own --dns, else
    one list per network: ``Snapshot.upstreams_for``), each asked in order;
    an NXDOMAIN from one list falls through to the next (``dnsd.upstream.forward``).
    """

    query: bytes  # as the client sent it, its ID included
    question: bytes  # the question section as asked: a reply must carry the same
    upstream_groups: tuple[tuple[Upstream, ...], ...]
    edns: bool
    dnssec_ok: bool = False  # the query's DO bit, copied into the OPT of an error reply of dnsd's own
    udp_limit: int = UDP_PAYLOAD_PLAIN  # bytes a UDP reply to this client may have (``_udp_limit``)
    listener_ip: str = ""  # the gateway address it was asked at (for the metrics and the query log)
    answer_failure: bool = True  # SERVFAIL when no upstream answered; False: no reply (``Dialect``)

    def error_reply(self, rcode: int) -> bytes | None:
        """The reply dnsd gives itself when forwarding fails (SERVFAIL) or is refused (REFUSED); None for a
        failure the dialect leaves unanswered (aardvark-dns sends nothing when no upstream answered)."""
        if rcode == SERVFAIL and not self.answer_failure:
            return None
        return reply_without_answers(self.query, HEADER_SIZE + len(self.question), rcode, self.edns,
                                     dnssec_ok=self.dnssec_ok)


def _lone_edns0(data: bytes, question_end: int) -> tuple[int, bool] | None:
    """(UDP payload size, DO bit) of an EDNS version 0 OPT record that fills the message after the question.

    Its options, whatever they are, are skipped: unknown options are ignored (RFC 6891 section 6.1.2).
    """
    if len(data) < question_end + OPT_FIXED.size:
        return None
    root, rtype, payload, _, version, flags, rdata_length = OPT_FIXED.unpack_from(data, question_end)
    if root == 0 and rtype == TYPE_OPT and version == 0 and len(data) == question_end + OPT_FIXED.size + rdata_length:
        return payload, bool(flags & DNSSEC_OK)
    return None


def _udp_limit(edns_payload: int | None) -> int:
    """How large a UDP reply may be: 512 without EDNS; else the requester's size, at least 512 (RFC 6891
    section 6.2.5) and at most what dnsd advertises itself, so no reply needs IP fragments (DNS flag day 2020)."""
    if edns_payload is None:
        return UDP_PAYLOAD_PLAIN
    return min(max(edns_payload, UDP_PAYLOAD_PLAIN), EDNS_PAYLOAD)


def fit_records(records: bytes, room: int) -> tuple[bytes, int]:
    """The leading whole records of ``records`` (answer records in wire form, names compressed to 2 bytes)
    that fit ``room`` bytes, and their count. A truncated UDP reply carries these with TC set, as Docker's
    embedded DNS does, so a client that never retries over TCP (musl before 1.2.4, busybox) still gets
    addresses (RFC 2181 section 9 allows it; RFC 1035 section 4.2.1 defines TC)."""
    end = count = 0
    while end + 12 <= len(records):
        size = 12 + int.from_bytes(records[end + 10:end + 12], "big")  # name pointer, type, class, TTL, length
        if end + size > room:
            break
        end += size
        count += 1
    return records[:end], count


class Answerer:
    """Holds the current snapshot and the rotation turns; turns queries into replies.

    Assign ``answerer.snapshot = new`` to swap in a new snapshot: turns are kept
    per rotation slot, and a record set keeps its slot across the snapshots of
    one builder, so its turn carries over.

    Replies that only the snapshot and the query decide (a plain UDP query
    without EDNS for a name of ours whose records do not rotate) are remembered
    per scope, keyed by the query after its ID: a query asked before is answered
    with one lookup and its ID in front. So are forwarded answers the cache
    holds, until they expire (``remember_reply``). The memo lives and dies with
    its snapshot and holds at most ``REPLY_MEMO_SIZE`` replies.

    A listener may have the memo looked up without a call into this class
    (``dnsd.io._replay``, the compiled loop of a quiet listener): ``replay_table``
    gives it a cell whose item maps a client key (any bytes the listener derives
    from the sender's address) to that client's scope's memo, as
    ``remember_client`` fills it in; the item is a fresh dict with every snapshot
    and every time the memo is dropped, so nothing stale is replayed.
    """

    def __init__(self, snapshot: Snapshot, default_upstreams: tuple[tuple[str, int], ...] = (),
                 stats: Stats | None = None, host_names: frozenset[bytes] = host_names(), dialect: Dialect = DOCKER):
        self.default_upstreams = tuple(Upstream(*server) for server in default_upstreams)  # dnsd's own namespace
        # swapped in one step: the snapshot, its memo (scope -> query[2:] -> reply[2:]) and the replay
        # tables made from that memo (listener address -> client key -> the client's scope's memo)
        self._current: tuple[Snapshot, dict[Scope, dict[bytes, bytes]], dict[str, dict[bytes, dict]]] = (
            snapshot, {}, {})
        self._replay_cells: dict[str, list[dict[bytes, dict]]] = {}  # listener address -> [its current table]
        self._memo_size = 0
        self._turns = [0] * snapshot.rotation_slots
        self.stats = stats if stats is not None else Stats()  # malformed messages, NXDOMAIN for want of upstreams
        self.host_names = host_names  # wire names answered with the asked gateway's addresses (Snapshot.host_entry)
        self._search_suffix = dialect.search_suffix  # names under it are ours: never forwarded
        self._answer_failure = dialect.answer_upstream_failure

    @property
    def snapshot(self) -> Snapshot:
        return self._current[0]

    @snapshot.setter
    def snapshot(self, new: Snapshot) -> None:
        if new.rotation_slots > len(self._turns):
            self._turns += [0] * (new.rotation_slots - len(self._turns))
        self._current = (new, {}, self._fresh_replay_tables())
        self._memo_size = 0

    def handle(self, data: bytes, client_ip: str, listener_ip: str, tcp: bool) -> bytes | Forward | None:
        """The reply to send, a Forward to carry out, or None to drop the message."""
        snapshot, memo, _ = self._current
        scope_slot = snapshot.clients.get(client_ip)
        if scope_slot is not None:
            scope = snapshot.scopes[scope_slot]
            if scope.by_listener is not None:  # on several networks: the asked network's names first
                scope = scope.by_listener.get(listener_ip, scope)
        else:
            scope = snapshot.stranger_scope(client_ip, listener_ip)
        if not tcp and scope is not None:
            replies = memo.get(scope)
            if replies is not None:
                tail = replies.get(data[2:])
                if tail is not None:
                    if tail.__class__ is bytes:
                        return data[:2] + tail
                    reply = tail.reply(data)  # a forwarded answer the cache holds (``remember_reply``)
                    if reply is not None:
                        return reply
                    replies.pop(data[2:], None)  # expired: ask again
        size = len(data)
        if size < HEADER_SIZE + 5 or data[2] & 0xF8 or data[4:10] != _PLAIN_QUERY_COUNTS:
            return self._handle_unusual(data, client_ip, listener_ip, tcp)  # not QR=0 QUERY with 1 question
        name_end = question_name_end(data)
        if name_end is None:
            return self._handle_unusual(data, client_ip, listener_ip, tcp)
        question_end = name_end + 4
        additional = data[10:12]
        if additional == b"\x00\x00" and question_end == size:
            reply = self._answer(data, name_end, None, client_ip, listener_ip, tcp, snapshot, scope)
            if not tcp and type(reply) is bytes and scope is not None:
                self._remember(memo, scope, data, reply)
            return reply
        if additional == b"\x00\x01":
            edns = _lone_edns0(data, question_end)
            if edns is not None:
                return self._answer(data, name_end, edns[0], client_ip, listener_ip, tcp, snapshot, scope, edns[1])
        return self._handle_unusual(data, client_ip, listener_ip, tcp)

    def remember_reply(self, query: bytes, client_ip: str, listener_ip: str, remembered: RememberedReply) -> None:
        """Have the next UDP query with the same bytes after its ID, from a source with the same scope, answered
        by ``remembered`` (a forwarded answer the cache holds, ``dnsd.upstream.cache``) until it says it has expired.

        The memo stays sans-IO: whatever clock the reply needs is its own. It is forgotten with the snapshot.
        """
        snapshot, memo, _ = self._current
        scope = snapshot.scope_of(client_ip, listener_ip)
        if scope is not None:
            self._memo_put(memo, scope, query[2:], remembered)

    def replay_table(self, listener_ip: str) -> list[dict[bytes, dict]]:
        """The replay cell of the listener on ``listener_ip``: a one-item list whose item is the current table
        (client key -> that client's scope's memo, query[2:] -> reply[2:] bytes, or something else that is
        not to be replayed as is). The item is replaced, never changed in place, when the snapshot or the
        memo is; ``forget_replay`` when the listener closes."""
        cell = self._replay_cells.get(listener_ip)
        if cell is None:
            cell = self._replay_cells[listener_ip] = [self._current[2].setdefault(listener_ip, {})]
        return cell

    def forget_replay(self, listener_ip: str) -> None:
        """Stop keeping a replay table for ``listener_ip`` (its listener closed)."""
        self._replay_cells.pop(listener_ip, None)
        self._current[2].pop(listener_ip, None)

    def remember_client(self, key: bytes, client_ip: str, listener_ip: str) -> None:
        """Let the replay table of ``listener_ip`` lead ``key`` (the listener's key for ``client_ip``) to the memo
        of the scope ``client_ip`` gets there: queries it asks again are then replayed without a call here.

        Called after answering the client; a key already in the table, a listener without a table and a
        client that gets no scope (REFUSED) change nothing. The table holds at most ``REPLAY_CLIENTS`` keys.
        """
        snapshot, memo, tables = self._current  # one generation: a table never leads to an older memo
        table = tables.get(listener_ip)
        if table is None or key in table:
            return
        scope = snapshot.scope_of(client_ip, listener_ip)
        if scope is None:
            return
        replies = memo.get(scope)
        if replies is None:
            replies = memo[scope] = {}
        if len(table) >= REPLAY_CLIENTS:
            table.clear()
        table[key] = replies

    def _fresh_replay_tables(self) -> dict[str, dict[bytes, dict]]:
        """New, empty replay tables for every listener that has a cell, put in the cells (see ``replay_table``)."""
        tables = {listener_ip: {} for listener_ip in self._replay_cells}
        for listener_ip, cell in self._replay_cells.items():
            cell[0] = tables[listener_ip]
        return tables

    def _remember(self, memo: dict[Scope, dict[bytes, bytes]], scope: Scope, query: bytes, reply: bytes) -> None:
        """Keep a reply that the next identical query may have as is (see the class docstring)."""
        name_end = len(query) - 4
        entry = scope.entry(query[HEADER_SIZE:name_end].lower())
        records = lookup(entry, query[name_end:]) if entry is not None else None
        if records is None or (records.__class__ is RecordSet and records.rotation_slot >= 0):
            return  # forwarded, an error, NODATA or a rotating set: not remembered
        self._memo_put(memo, scope, query[2:], reply[2:])

    def _memo_put(self, memo: dict[Scope, dict], scope: Scope, key: bytes, tail: bytes | RememberedReply) -> None:
        """One more memo entry; the whole memo is dropped first when it holds ``REPLY_MEMO_SIZE``."""
        if self._memo_size >= REPLY_MEMO_SIZE:
            memo.clear()
            self._memo_size = 0
            snapshot, current_memo, _ = self._current
            if current_memo is memo:  # the tables lead to the memo's old scope dicts: new ones, empty
                self._current = (snapshot, memo, self._fresh_replay_tables())
        replies = memo.get(scope)
        if replies is None:
            replies = memo[scope] = {}
        replies[key] = tail
        self._memo_size += 1

    def _answer(self, data: bytes, name_end: int, edns_payload: int | None, client_ip: str, listener_ip: str,
                tcp: bool, snapshot: Snapshot | None = None, scope: Scope | None = None,
                dnssec_ok: bool = False) -> bytes | Forward:
        """The reply from ``snapshot`` (default: the current one) to a query found well-formed up to ``name_end``.

        ``edns_payload`` is the requester's UDP payload size, None for a query without EDNS.
        """
        if snapshot is None:
            snapshot = self._current[0]
            scope = snapshot.scope_of(client_ip, listener_ip)
        question_end = name_end + 4
        if scope is None:
            return reply_without_answers(data, question_end, REFUSED, edns_payload is not None, dnssec_ok=dnssec_ok)
        name = data[HEADER_SIZE:name_end].lower()
        entry = scope.names.get(name)
        if entry is None:
            entry = scope.qualified_entry(name)
        if entry is None and name in self.host_names:
            entry = snapshot.host_entry(listener_ip)
        if entry is None:
            return self._not_local(snapshot, scope, data, name, question_end, edns_payload, dnssec_ok, listener_ip)
        records = lookup(entry, data[name_end:question_end])
        if records is None:  # the name exists, with no record of this type: NODATA, never NXDOMAIN
            return reply_without_answers(data, question_end, NOERROR, edns_payload is not None, dnssec_ok=dnssec_ok)
        if records.__class__ is bytes:  # a lone record
            answers, counts = records, ONE_ANSWER
        else:
            answers = records.wire if records.rotation_slot < 0 else self._rotated(records)
            counts = records.header_counts
        if edns_payload is None:
            opt = b""
            additional_count = b"\x00\x00"
            limit = TCP_MESSAGE_MAX if tcp else UDP_PAYLOAD_PLAIN
        else:
            opt = _OPT_DO if dnssec_ok else _OPT
            additional_count = b"\x00\x01"
            limit = TCP_MESSAGE_MAX if tcp else _udp_limit(edns_payload)
        flags = _NOERROR_FLAGS[(data[2] & 0x01) | (data[3] & 0x10)]
        room = limit - question_end - len(opt)
        if len(answers) > room:  # the records that fit, TC set: a client that never retries over TCP gets those
            answers, count = fit_records(answers, room)
            counts = header_counts(count)
            flags = _response_flags(data, NOERROR, truncated=True)
        return b"".join((data[:2], flags, counts, additional_count, data[HEADER_SIZE:question_end],
                         answers, opt))

    def _rotated(self, records: RecordSet) -> bytes:
        """The records starting one further on each time: every holder comes first in turn."""
        slot = records.rotation_slot
        turn = self._turns[slot] % records.count  # a slot given to a new set may hold a larger turn
        self._turns[slot] = turn + 1
        start = turn * records.record_size
        return records.doubled[start:start + len(records.wire)]

    def _not_local(self, snapshot: Snapshot, scope: Scope, data: bytes, name: bytes, question_end: int,
                   edns_payload: int | None, dnssec_ok: bool = False, listener_ip: str = "") -> bytes | Forward:
        """A name dnsd does not hold: NXDOMAIN where there is no way out, else a Forward.

        No upstream for this source (its networks are all internal, or none is
        configured anywhere) is NXDOMAIN, as aardvark-dns answers for internal
        networks: every libc gives up at once, where musl ignores REFUSED and
        retries SERVFAIL until its 5 s timeout. SERVFAIL is kept for upstreams
        that were asked and failed (``dnsd.upstream.forward``). The reverse name of a
        served subnet's address, and a name under the dialect's search domain
        (``.dns.podman``: aardvark-dns answers those NXDOMAIN in every release),
        are ours: NXDOMAIN, never forwarded.
        """
        edns = edns_payload is not None
        suffix = self._search_suffix
        if snapshot.owns_reverse_name(name) or (  # an address of ours this source may not see, or no one's
                suffix is not None and (name == suffix or name_under(name, suffix) is not None)):
            return reply_without_answers(data, question_end, NXDOMAIN, edns, dnssec_ok=dnssec_ok)
        groups = snapshot.upstreams_for(scope, self.default_upstreams, MAX_UPSTREAMS)  # whichever gateway was asked
        if not groups:
            self.stats.nxdomain_no_upstream += 1
            return reply_without_answers(data, question_end, NXDOMAIN, edns, dnssec_ok=dnssec_ok)
        return Forward(data, data[HEADER_SIZE:question_end], groups, edns, dnssec_ok, _udp_limit(edns_payload),
                       listener_ip, self._answer_failure)

    def _handle_unusual(self, data: bytes, client_ip: str, listener_ip: str, tcp: bool) -> bytes | Forward | None:
        """Everything the fast path does not take: validate fully, then answer, reply an error or drop.

        An error reply to a query with one well-formed OPT record carries an OPT record too, DO copied
        (RFC 6891 section 7, RFC 3225 section 3); one to a query with a malformed OPT does not.
        """
        if len(data) < HEADER_SIZE:
            return self._bad_input("message shorter than a header", client_ip)
        if data[2] & 0x80:
            return self._bad_input("a response where a query belongs", client_ip)
        if data[2] & 0x78:
            self._bad_input("opcode other than QUERY", client_ip)
            edns, dnssec_ok = _edns_of(data)
            return reply_without_answers(data, HEADER_SIZE, NOTIMP, edns, dnssec_ok=dnssec_ok)
        if data[4:6] != b"\x00\x01":
            self._bad_input("not exactly one question", client_ip)
            edns, dnssec_ok = _edns_of(data)
            return reply_without_answers(data, HEADER_SIZE, FORMERR, edns, dnssec_ok=dnssec_ok)
        name_end = question_name_end(data)
        if name_end is None or name_end + 4 > len(data):
            self._bad_input("malformed question", client_ip)
            return reply_without_answers(data, HEADER_SIZE, FORMERR, False)
        question_end = name_end + 4
        try:
            message = dnslib.DNSRecord.parse(data)
        except Exception:  # noqa: BLE001 - dnslib raises many kinds of errors on garbage, RecursionError among them
            self._bad_input("malformed records after the question", client_ip)
            return reply_without_answers(data, question_end, FORMERR, False)
        option = _lone_option(message)
        if option is False:
            self._bad_input("malformed EDNS", client_ip)
            return reply_without_answers(data, question_end, FORMERR, False)
        if option is None:
            return self._answer(data, name_end, None, client_ip, listener_ip, tcp)
        dnssec_ok = bool(option.ttl & DNSSEC_OK)
        if (option.ttl >> 16) & 0xFF:  # an EDNS version other than 0 (RFC 6891 section 6.1.3)
            return reply_without_answers(data, question_end, BADVERS, True, dnssec_ok=dnssec_ok)
        return self._answer(data, name_end, option.rclass, client_ip, listener_ip, tcp, dnssec_ok=dnssec_ok)

    def _bad_input(self, reason: str, client_ip: str) -> None:
        stats = self.stats
        stats.malformed += 1
        stats.last_malformed = (reason, client_ip)


def _lone_option(message: dnslib.DNSRecord) -> dnslib.RR | bool | None:
    """The message's OPT record; None if it has none; False if OPT is malformed (several, misplaced, or not
    owned by the root), which RFC 6891 section 6.1.1 answers with FORMERR."""
    options = [record for record in message.ar if record.rtype == TYPE_OPT]
    misplaced = any(record.rtype == TYPE_OPT for record in message.rr + message.auth)
    if misplaced or len(options) > 1 or (options and options[0].rname.label != ()):
        return False
    return options[0] if options else None


def _edns_of(data: bytes) -> tuple[bool, bool]:
    """(has one well-formed OPT record, its DO bit) of a message the fast path did not take."""
    try:
        option = _lone_option(dnslib.DNSRecord.parse(data))
    except Exception:  # noqa: BLE001 - garbage: no EDNS we can vouch for
        return False, False
    if not option:
        return False, False
    return True, bool(option.ttl & DNSSEC_OK)
