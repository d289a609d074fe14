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
