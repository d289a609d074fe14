"""DNS on the wire: the numbers dnsd reads and writes, and the wire form of names.

The one home of record types, classes, rcodes and size limits (RFC 1035, RFC 6891
for EDNS, RFC 3225 for the DO bit), and of the byte strings built from them that
several modules share. Pure: no I/O, nothing from the rest of dnsd.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from typing import NamedTuple

TYPE_A = 1
TYPE_PTR = 12
TYPE_AAAA = 28
TYPE_OPT = 41
TYPE_ANY = 255
CLASS_IN = 1

# RCODEs (RFC 1035 section 4.1.1); BADVERS is an extended one (RFC 6891 section 9): its upper 8 bits go in the
# OPT record, its lower 4 in the header
NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5
BADVERS = 16

HEADER_SIZE = 12
MAX_LABEL = 63
MAX_NAME = 255  # octets of a name in wire form, length bytes and root included
UDP_PAYLOAD_PLAIN = 512  # without EDNS a UDP message must fit 512 bytes (RFC 1035 section 4.2.1)
TCP_MESSAGE_MAX = 65535  # a TCP message's 2-byte length prefix bounds it
DNSSEC_OK = 0x8000  # the DO bit of the OPT record's flags (RFC 3225)
OPT_FIXED = struct.Struct("!BHHBBHH")  # OPT record: root name, type, payload size, extended rcode, version, flags,
# rdata length (RFC 6891 section 6.1.2)


def type_and_class(rtype: int, rclass: int = CLASS_IN) -> bytes:
    """The 4 bytes that follow a name in a question or a record."""
    return rtype.to_bytes(2, "big") + rclass.to_bytes(2, "big")


A_IN = type_and_class(TYPE_A)
AAAA_IN = type_and_class(TYPE_AAAA)
PTR_IN = type_and_class(TYPE_PTR)
ANY_IN = type_and_class(TYPE_ANY)


def encode_name(name: str) -> bytes | None:
    """The wire form of a dotted name (one trailing dot allowed), or None if it cannot be one.

    None for a name that is not ASCII, has an empty label or one over ``MAX_LABEL``
    octets, or is longer than ``MAX_NAME`` octets in wire form (RFC 1035 section 2.3.4).
    """
    if name.endswith("."):
        name = name[:-1]
    try:
        labels = name.encode("ascii").split(b".")
    except UnicodeEncodeError:
        return None
    wire = bytearray()
    for label in labels:
        if not 0 < len(label) <= MAX_LABEL:
            return None
        wire.append(len(label))
        wire += label
    wire.append(0)
    return bytes(wire) if len(wire) <= MAX_NAME else None


def question_name_end(data: bytes) -> int | None:
    """Offset just past the question's name, if it is a plain (uncompressed) name of at most 255 bytes."""
    limit = min(len(data), HEADER_SIZE + MAX_NAME)  # the root label of the longest name sits just before it
    offset = HEADER_SIZE
    while offset < limit:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length > MAX_LABEL:  # a compression pointer or a reserved label type
            return None
        offset += length + 1
    return None


@functools.cache
def header_counts(answer_count: int) -> bytes:
    """QDCOUNT=1, ANCOUNT, NSCOUNT=0: the header fields between the flags and ARCOUNT (one object per count)."""
    return b"\x00\x01" + answer_count.to_bytes(2, "big") + b"\x00\x00"


ONE_ANSWER = header_counts(1)

_IN_ADDR_ARPA = [b"in-addr", b"arpa"]
_IP6_ARPA = [b"ip6", b"arpa"]
_HEX_NIBBLES = frozenset(b"%x" % value for value in range(16))


def reverse_name(packed: bytes) -> bytes:
    """The wire form of the reverse name of an address in network order: 4 bytes under in-addr.arpa (RFC 1035
    section 3.5: ``2.0.89.10.in-addr.arpa.`` for 10.89.0.2), 16 under ip6.arpa, a nibble a label (RFC 3596
    section 2.5). Lower case, as dnsd keys names."""
    if len(packed) == 4:
        labels = [str(octet).encode() for octet in reversed(packed)] + _IN_ADDR_ARPA
    else:
        labels = [nibble.encode() for nibble in reversed(packed.hex())] + _IP6_ARPA
    return b"".join(len(label).to_bytes(1, "big") + label for label in labels) + b"\x00"


def reverse_name_address(name: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address whose reverse name (``reverse_name``) the lower-cased wire name ``name`` is; None for any
    other name (a partial one, a bad octet or nibble, a name outside in-addr.arpa and ip6.arpa)."""
    labels = []
    offset = 0
    while name[offset]:
        labels.append(name[offset + 1:offset + 1 + name[offset]])
        offset += 1 + name[offset]
    try:
        if len(labels) == 6 and labels[4:] == _IN_ADDR_ARPA:
            return ipaddress.IPv4Address(b".".join(reversed(labels[:4])).decode())
        if len(labels) == 34 and labels[32:] == _IP6_ARPA and all(n in _HEX_NIBBLES for n in labels[:32]):
            return ipaddress.IPv6Address(int(b"".join(reversed(labels[:32])), 16))
    except ValueError:
        pass
    return None


TYPE_NS = 2
TYPE_SOA = 6
TYPE_CNAME = 5
TYPE_DNAME = 39
TC_FLAG = 0x02  # of a header's third byte: the message was truncated (RFC 1035 section 4.1.1)
QR_FLAG = 0x80  # of a header's third byte: a response
RD_FLAG = 0x01  # of a header's third byte: recursion desired
CD_FLAG = 0x10  # of a header's fourth byte: checking disabled (RFC 4035 section 3.2.2)
RR_FIXED = struct.Struct("!HHIH")  # after a record's name: type, class, TTL, rdata length (RFC 1035 section 4.1.3)
_NAME = None  # a domain name in an RDATA layout (below); an int is that many octets of anything

# What the RDATA of a type holds, where it may hold a compressed name (RFC 1035 section 3.3 and RFC 3597
# section 4: NS, MD, MF, CNAME, SOA, MB, MG, MR, PTR, MINFO, MX; RP, AFSDB, RT, PX, SRV and KX are read
# compressed too) or has a fixed size (A, AAAA). Any other type's RDATA is opaque: names in it are never
# compressed (RFC 3597 section 4), so it can be copied as it is.
RDATA_LAYOUTS: dict[int, tuple[int | None, ...]] = {
    TYPE_A: (4,), TYPE_AAAA: (16,),
    TYPE_NS: (_NAME,), 3: (_NAME,), 4: (_NAME,), TYPE_CNAME: (_NAME,), 7: (_NAME,), 8: (_NAME,), 9: (_NAME,),
    TYPE_PTR: (_NAME,), TYPE_DNAME: (_NAME,),
    TYPE_SOA: (_NAME, _NAME, 20), 14: (_NAME, _NAME), 17: (_NAME, _NAME),
    15: (2, _NAME), 18: (2, _NAME), 21: (2, _NAME), 36: (2, _NAME), 26: (2, _NAME, _NAME), 33: (6, _NAME),
}


def fold_question(question: bytes) -> bytes:
    """A question section (name in wire form, type, class) as dnsd compares and keys it: the name's ASCII
    letters lower-cased, every other octet as it is (RFC 4343 section 3), type and class exact.

    A label's length octet is at most 63, below every letter, so only the name's letters change; the type and
    class are never folded: a TYPE97 question is not an HTTPS (type 65) one (issue 24).
    """
    return question[:-4].lower() + question[-4:]


def skip_name(message: bytes, offset: int) -> int:
    """The offset just past the name at ``offset``: labels up to the root, or up to a compression pointer.

    ValueError if the name runs past the message or uses a reserved label type (RFC 1035 section 4.1.4).
    """
    while True:
        if offset >= len(message):
            raise ValueError("name runs past the message")
        length = message[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            if offset + 2 > len(message):
                raise ValueError("pointer runs past the message")
            return offset + 2
        if length > MAX_LABEL:
            raise ValueError("reserved label type")
        offset += length + 1


def read_name(message: bytes, offset: int) -> tuple[bytes, int]:
    """(the name at ``offset`` in wire form, uncompressed and spelled as it is; the offset just past it).

    ValueError if it is malformed (RFC 1035 sections 2.3.4 and 4.1.4): it runs past the message, has a label
    of a reserved type, is over ``MAX_NAME`` octets once uncompressed, or has a compression pointer into the
    header or not back before the name's start, or before the last pointer's target. Pointers that only go
    back are what bounds the walk: no loop can be made of them.
    """
    name = bytearray()
    end = None
    limit = offset  # the next pointer must point before this
    size = len(message)
    while True:
        if offset >= size:
            raise ValueError("name runs past the message")
        length = message[offset]
        if length == 0:
            name.append(0)
            return bytes(name), end if end is not None else offset + 1
        if length & 0xC0 == 0xC0:
            if offset + 2 > size:
                raise ValueError("pointer runs past the message")
            target = (length & 0x3F) << 8 | message[offset + 1]
            if not HEADER_SIZE <= target < limit:
                raise ValueError("compression pointer that does not point back")
            if end is None:
                end = offset + 2
            offset = limit = target
            continue
        if length > MAX_LABEL:
            raise ValueError("reserved label type")
        name += message[offset:offset + length + 1]
        if len(name) >= MAX_NAME:  # the root label still to come
            raise ValueError("name longer than 255 octets")
        offset += length + 1


class Record(NamedTuple):
    """Where one record of a message sits: its bytes are ``message[start:end]``."""

    start: int  # offset of its owner name
    end: int  # offset just past its RDATA
    owner: bytes  # its owner name in wire form, uncompressed, spelled as it is
    rtype: int
    ttl: int
    rdata: int  # offset of its RDATA; its TTL field is at ``rdata - 6``


class Layout(NamedTuple):
    """A well-formed reply read by ``parse_reply``."""

    question_end: int  # offset just past the one question
    counts: tuple[int, int, int]  # records in the answer, authority and additional sections
    records: list[Record]  # all of them, in the message's order

    @property
    def answers(self) -> list[Record]:
        return self.records[:self.counts[0]]

    @property
    def opt(self) -> Record | None:
        """The OPT record (RFC 6891), if the reply has one."""
        return next((record for record in self.records[self.counts[0] + self.counts[1]:] if record.rtype == TYPE_OPT),
                    None)


def parse_reply(message: bytes) -> Layout | None:
    """The layout of a well-formed reply to a query, or None if ``message`` is not one.

    Well-formed: QR set, opcode QUERY, one question; every name readable (``read_name``); every record laid
    out as the header counts them and nothing after the last (RFC 1035 section 4.1); the RDATA of the types
    of ``RDATA_LAYOUTS`` exactly what they must hold; at most one OPT record, in the additional section,
    owned by the root, its options laid out to the end of its RDATA (RFC 6891 sections 6.1.1 and 6.1.2).
    Reads at most the message: the work is linear in its size.
    """
    size = len(message)
    if size < HEADER_SIZE or message[2] & QR_FLAG == 0 or message[2] & 0x78 or message[4:6] != b"\x00\x01":
        return None
    counts = struct.unpack_from("!HHH", message, 6)
    additional_from = counts[0] + counts[1]
    records = []
    has_opt = False
    try:
        offset = read_name(message, HEADER_SIZE)[1] + 4
        question_end = offset
        for index in range(additional_from + counts[2]):
            owner, fixed = read_name(message, offset)
            rtype, _, ttl, length = RR_FIXED.unpack_from(message, fixed)
            rdata = fixed + RR_FIXED.size
            end = rdata + length
            if end > size:
                return None
            if rtype == TYPE_OPT:
                if index < additional_from or has_opt or owner != b"\x00" or not _options_fill(message, rdata, end):
                    return None
                has_opt = True
            else:
                layout = RDATA_LAYOUTS.get(rtype)
                if layout is not None and _rdata_end(message, rdata, end, layout) != end:
                    return None
            records.append(Record(offset, end, owner, rtype, ttl, rdata))
            offset = end
    except (ValueError, struct.error):
        return None
    if question_end > size or offset != size:
        return None
    return Layout(question_end, counts, records)


def record_spans(message: bytes) -> tuple[int, int, list[tuple[int, int, int, int]]] | None:
    """``parse_reply``'s layout in the shape ``dnsd.cni.check`` reads: (question end, answer count, [(start,
    end, type, TTL) of each record]); None if ``message`` is not a well-formed reply."""
    layout = parse_reply(message)
    if layout is None:
        return None
    return layout.question_end, layout.counts[0], [(r.start, r.end, r.rtype, r.ttl) for r in layout.records]


def _options_fill(message: bytes, start: int, end: int) -> bool:
    """Whether EDNS options (code, length, data) fill ``message[start:end]`` exactly (RFC 6891 section 6.1.2)."""
    while start < end:
        if start + 4 > end:
            return False
        start += 4 + int.from_bytes(message[start + 2:start + 4], "big")
    return start == end


def _rdata_end(message: bytes, start: int, end: int, layout: tuple[int | None, ...]) -> int:
    """Where RDATA laid out as ``layout`` that starts at ``start`` ends; ValueError on an unreadable name."""
    for part in layout:
        if part is _NAME:
            start = read_name(message, start)[1]
        else:
            start += part
        if start > end:
            return -1
    return start


def _record_uncompressed(message: bytes, record: Record) -> bytes:
    """One record of a well-formed message with every name in it uncompressed: it reads the same anywhere."""
    rdata = record.rdata
    layout = RDATA_LAYOUTS.get(record.rtype)
    if layout is None or _NAME not in layout:
        body = message[rdata:record.end]
    else:
        parts = []
        for part in layout:
            if part is _NAME:
                name, rdata = read_name(message, rdata)
                parts.append(name)
            else:
                parts.append(message[rdata:rdata + part])
                rdata += part
        body = b"".join(parts)
    fixed = message[record.rdata - RR_FIXED.size:record.rdata - 2]  # type, class, TTL
    return b"".join((record.owner, fixed, len(body).to_bytes(2, "big"), body))


def answer_chain(message: bytes, layout: Layout) -> set[bytes]:
    """The names the answer section answers for: the question's name and every name its CNAMEs lead to, in
    any order (RFC 1034 section 3.6.2), all lower-cased (``fold_question``'s rule)."""
    chain = {bytes(message[HEADER_SIZE:layout.question_end - 4]).lower()}
    aliases = {record.owner.lower(): record for record in layout.answers if record.rtype == TYPE_CNAME}
    name = next(iter(chain))
    while name in aliases:
        name = read_name(message, aliases.pop(name).rdata)[0].lower()
        chain.add(name)
    return chain


def related_answers_only(message: bytes, layout: Layout) -> tuple[bytes, Layout]:
    """``message`` without the answer records that answer nothing asked, and its layout; the same objects when
    every answer belongs.

    An answer belongs if its owner is on the ``answer_chain`` (the records asked for, CNAMEs, their
    signatures), or is a DNAME owner above a name of it (RFC 6672 section 2), or is that DNAME's owner (its
    signature). Unbound scrubs what is left the same way; a stub takes it for an answer (musl's
    getaddrinfo reads every A and AAAA record of the answer section, whatever its owner). The authority and
    additional sections are relayed as they are (DNSSEC proofs live there; no stub resolver reads them as
    answers). A message with records left out has every name uncompressed: a pointer never leads into a
    record that is gone.
    """
    answers = layout.answers
    chain = answer_chain(message, layout)
    dname_owners = {record.owner.lower() for record in answers if record.rtype == TYPE_DNAME
                    and any(name != record.owner.lower() and name.endswith(record.owner.lower())
                            and _at_label_boundary(name, len(name) - len(record.owner)) for name in chain)}
    keep = [record for record in answers if record.owner.lower() in chain or record.owner.lower() in dname_owners]
    if len(keep) == len(answers):
        return message, layout
    rest = layout.records[len(answers):]
    rebuilt = b"".join((message[:6], len(keep).to_bytes(2, "big"), message[8:layout.question_end],
                        *(_record_uncompressed(message, record) for record in keep),
                        *(_record_uncompressed(message, record) for record in rest)))
    return rebuilt, parse_reply(rebuilt)


def _at_label_boundary(name: bytes, offset: int) -> bool:
    """Whether ``offset`` of a wire-form ``name`` starts one of its labels."""
    position = 0
    while position < offset:
        position += name[position] + 1
    return position == offset


def without_options(message: bytes, layout: Layout) -> bytes:
    """``message`` with the options of its OPT record left out (payload size, extended rcode, version and flags
    kept); the same object if it has none. An upstream's COOKIE option answers one client's cookie (RFC 7873
    section 5.3), a padding or client-subnet option is as personal: a reply that goes to others carries none."""
    opt = layout.opt
    if opt is None or opt.end == opt.rdata:
        return message
    return message[:opt.rdata - 2] + b"\x00\x00" + message[opt.end:]


def bare_truncated(message: bytes) -> bytes:
    """The header and question of a reply whose records cannot be read, TC set and no record: what a client
    limited in size can be given of it (it asks again over TCP). Only the header if the question cannot be
    read either. At most 12 + 259 octets."""
    try:
        question_end = read_name(message, HEADER_SIZE)[1] + 4 if message[4:6] == b"\x00\x01" else HEADER_SIZE
    except ValueError:
        question_end = HEADER_SIZE
    if question_end > len(message):
        question_end = HEADER_SIZE
    count = b"\x00\x01" if question_end > HEADER_SIZE else b"\x00\x00"
    return (message[:2] + bytes((message[2] | TC_FLAG, message[3])) + count + b"\x00" * 6
            + message[HEADER_SIZE:question_end])


def truncate_reply(reply: bytes, limit: int, layout: Layout | None = None) -> bytes:
    """``reply`` made to fit ``limit`` bytes (at least 512) the way dnsd truncates its own answers: header,
    question, the answer records that fit whole, the OPT record without options if the reply had one, TC set;
    no authority, no other additional records (RFC 2181 section 9, RFC 1035 section 4.2.1). A reply that fits
    comes back as it is; one whose layout cannot be read (``parse_reply``; ``layout`` if already read) as
    ``bare_truncated``: never more than ``limit``."""
    if len(reply) <= limit:
        return reply
    if layout is None:
        layout = parse_reply(reply)
    if layout is None:
        return bare_truncated(reply)
    question_end = layout.question_end
    opt = layout.opt
    opt_bytes = reply[opt.start:opt.rdata - 2] + b"\x00\x00" if opt is not None else b""
    room = limit - question_end - len(opt_bytes)
    kept_end, kept = question_end, 0
    for record in layout.answers:
        if record.end - question_end > room:
            break
        kept_end, kept = record.end, kept + 1
    header = (reply[:2] + bytes((reply[2] | TC_FLAG, reply[3])) + b"\x00\x01" + kept.to_bytes(2, "big")
              + b"\x00\x00" + (b"\x00\x01" if opt_bytes else b"\x00\x00"))
    return header + reply[HEADER_SIZE:kept_end] + opt_bytes
