"""DNS on the wire: the numbers dnsd reads and writes, and the wire form of names.

The one home of record types, classes, rcodes and size limits (RFC 1035, RFC 6891
for EDNS, RFC 3225 for the DO bit), and of the byte strings built from them that
several modules share. Pure: no I/O, nothing from the rest of dnsd.
"""

from __future__ import annotations

import functools
import struct

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


TYPE_SOA = 6
TC_FLAG = 0x02  # of a header's third byte: the message was truncated (RFC 1035 section 4.1.1)
RR_FIXED = struct.Struct("!HHIH")  # after a record's name: type, class, TTL, rdata length (RFC 1035 section 4.1.3)


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


def record_spans(message: bytes) -> tuple[int, int, list[tuple[int, int, int, int]]] | None:
    """The layout of a message with one question: (question end, answer count, [(start, end, type, TTL) of each
    record]).

    Records are the answer, authority and additional sections in order (their
    counts in the header, RFC 1035 section 4.1.1); ``ttl_offset`` finds a
    record's TTL field. None if the message is not laid out as its header
    says (a record past its end, or bytes left over).
    """
    if len(message) < HEADER_SIZE or message[4:6] != b"\x00\x01":
        return None
    counts = struct.unpack_from("!HHH", message, 6)
    try:
        offset = skip_name(message, HEADER_SIZE) + 4
        question_end = offset
        spans = []
        for _ in range(sum(counts)):
            fixed = skip_name(message, offset)
            rtype, _, ttl, length = RR_FIXED.unpack_from(message, fixed)
            end = fixed + RR_FIXED.size + length
            if end > len(message):
                return None
            spans.append((offset, end, rtype, ttl))
            offset = end
    except (ValueError, struct.error):
        return None
    if question_end > len(message) or offset != len(message):
        return None
    return question_end, counts[0], spans


def ttl_offset(message: bytes, start: int) -> int:
    """The offset of the TTL field of the record that starts at ``start``."""
    return skip_name(message, start) + 4


def truncate_reply(reply: bytes, limit: int) -> bytes:
    """``reply`` made to fit ``limit`` bytes the way dnsd truncates its own answers: header, question, the
    answer records that fit whole, the OPT record if the reply had one, TC set; no authority, no other
    additional records (RFC 2181 section 9, RFC 1035 section 4.2.1). A reply that fits, or whose layout
    cannot be read, comes back as it is (and one that cannot be read is not made shorter)."""
    if len(reply) <= limit:
        return reply
    layout = record_spans(reply)
    if layout is None:
        return reply
    question_end, answer_count, spans = layout
    opt = next((reply[start:end] for start, end, rtype, _ in spans if rtype == TYPE_OPT), b"")
    room = limit - question_end - len(opt)
    kept_end, kept = question_end, 0
    for _, end, _, _ in spans[:answer_count]:
        if end - question_end > room:
            break
        kept_end, kept = end, kept + 1
    header = (reply[:2] + bytes((reply[2] | TC_FLAG, reply[3])) + b"\x00\x01" + kept.to_bytes(2, "big")
              + b"\x00\x00" + (b"\x00\x01" if opt else b"\x00\x00"))
    return header + reply[HEADER_SIZE:kept_end] + opt
