"""dnsd.core.wire on upstream replies: what is well-formed, how a reply is fitted to a size, which answers belong."""

from __future__ import annotations

import ipaddress

import dnslib
import pytest
from hypothesis import given, strategies as st

from dnsd.core.wire import (
    encode_name,
    fold_question,
    parse_reply,
    read_name,
    related_answers_only,
    reverse_name,
    reverse_name_address,
    truncate_reply,
    without_options,
)


def reply_to(name: str = "www.example", qtype: str = "A", *, answers=(), authority=(), additional=(),
             edns: dnslib.EDNS0 | None = None, tc: bool = False) -> bytes:
    """A reply packed by dnslib (names compressed) with these records."""
    message = dnslib.DNSRecord(dnslib.DNSHeader(id=7, qr=1, rd=1, ra=1, tc=int(tc)),
                               q=dnslib.DNSQuestion(name, getattr(dnslib.QTYPE, qtype)))
    for record in answers:
        message.add_answer(record)
    for record in authority:
        message.add_auth(record)
    for record in additional:
        message.add_ar(record)
    if edns is not None:
        message.add_ar(edns)
    return bytes(message.pack())


def a(name: str, address: str, ttl: int = 60) -> dnslib.RR:
    return dnslib.RR(name, dnslib.QTYPE.A, rdata=dnslib.A(address), ttl=ttl)


def cname(name: str, target: str) -> dnslib.RR:
    return dnslib.RR(name, dnslib.QTYPE.CNAME, rdata=dnslib.CNAME(target), ttl=60)


def opt_record(owner: bytes = b"\x00", options: bytes = b"") -> bytes:
    return owner + b"\x00\x29\x04\xd0\x00\x00\x00\x00" + len(options).to_bytes(2, "big") + options


def with_counts(message: bytes, answers: int, authority: int, additional: int) -> bytes:
    return message[:6] + answers.to_bytes(2, "big") + authority.to_bytes(2, "big") + additional.to_bytes(2, "big") \
        + message[12:]


# -- the question: name case-blind, type and class exact ------------------------------------------------


def test_a_question_is_folded_in_its_name_only():
    https = dnslib.DNSRecord.question("WWW.Example", "HTTPS").pack()[12:]
    type97 = https[:-4] + b"\x00\x61\x00\x01"  # 0x41 'A' would fold to 0x61 'a': HTTPS (65) to TYPE97
    assert fold_question(https) == dnslib.DNSRecord.question("www.example", "HTTPS").pack()[12:]
    assert fold_question(https) != fold_question(type97)


# -- well-formed or not ---------------------------------------------------------------------------------


def test_a_plain_reply_with_compressed_names_is_well_formed():
    message = reply_to(answers=[cname("www.example", "web.example"), a("web.example", "192.0.2.1")],
                       edns=dnslib.EDNS0(udp_len=1232))
    layout = parse_reply(message)
    assert layout is not None and layout.counts == (2, 0, 1)
    assert [record.owner for record in layout.answers] == [b"\x03www\x07example\x00", b"\x03web\x07example\x00"]
    assert layout.opt is layout.records[-1]


@pytest.mark.parametrize("broken", [
    "opt in the answer section", "two opt records", "opt not owned by the root", "options past the rdata",
    "a record cut short", "bytes after the last record", "a counts lie", "a pointer forward", "a pointer loop",
    "an A of 5 bytes", "a CNAME longer than its rdata", "not a response", "no question",
])
def test_what_is_not_well_formed(broken):
    plain = reply_to(answers=[a("www.example", "192.0.2.1")])
    question_end = 12 + len(dnslib.DNSRecord.question("www.example").pack()) - 12
    messages = {
        "opt in the answer section": with_counts(reply_to() + opt_record(), 1, 0, 0),
        "two opt records": with_counts(reply_to() + opt_record() + opt_record(), 0, 0, 2),
        "opt not owned by the root": with_counts(reply_to() + opt_record(owner=b"\xc0\x0c"), 0, 0, 1),
        "options past the rdata": with_counts(reply_to() + opt_record(options=b"\x00\x0a\x00\x08abc"), 0, 0, 1),
        "a record cut short": plain[:-1],
        "bytes after the last record": plain + b"\x00",
        "a counts lie": with_counts(plain, 2, 0, 0),
        "a pointer forward": plain[:question_end] + b"\xc0\xff" + plain[question_end + 2:],
        "a pointer loop": with_counts(reply_to() + b"\x00\x00\x00\x01\xc0\x1d\x00\x00\x01\x00\x01" + bytes(4)
                                      + b"\x00\x04" + bytes(4), 1, 0, 0),
        "an A of 5 bytes": plain[:-6] + b"\x00\x05" + plain[-4:] + b"\x00",
        "a CNAME longer than its rdata": with_counts(reply_to() + b"\xc0\x0c\x00\x05\x00\x01" + bytes(4)
                                                     + b"\x00\x03\x03www\x00", 1, 0, 0),
        "not a response": bytes((plain[0], plain[1], plain[2] & 0x7F)) + plain[3:],
        "no question": plain[:4] + b"\x00\x00" + plain[6:],
    }
    assert parse_reply(messages[broken]) is None


def test_a_name_never_loops_and_never_passes_255_octets():
    header = bytes(12)
    with pytest.raises(ValueError):
        read_name(header + b"\xc0\x0c", 12)  # points at itself
    with pytest.raises(ValueError):
        read_name(header + b"\x01a\xc0\x0c", 12)  # back to its own start
    long = header + (b"\x3f" + b"a" * 63) * 4 + b"\x00"
    with pytest.raises(ValueError):
        read_name(long, 12)
    assert read_name(header + b"\x01b\x00" + b"\x01a\xc0\x0c", 15) == (b"\x01a\x01b\x00", 19)


# -- fitting a reply to a size -------------------------------------------------------------------------


def test_an_unreadable_reply_is_cut_to_its_question_with_tc_never_relayed_whole():
    """Issue 24: an unreadable 3 kB reply went out whole (2,910 bytes) to a client limited to 512."""
    unreadable = with_counts(reply_to(answers=[a("www.example", f"192.0.2.{i}") for i in range(1, 180)]), 200, 0, 0)
    assert parse_reply(unreadable) is None and len(unreadable) > 2800
    cut = truncate_reply(unreadable, 512)
    parsed = dnslib.DNSRecord.parse(cut)
    assert len(cut) <= 512 and parsed.header.tc == 1 and parsed.rr == [] and str(parsed.q.qname) == "www.example."


def test_a_truncated_reply_keeps_its_opt_record_without_the_options():
    big_options = b"\x00\x0c" + (3000).to_bytes(2, "big") + bytes(3000)  # padding (RFC 7830)
    message = with_counts(reply_to(answers=[a("www.example", "192.0.2.1")]) + opt_record(options=big_options),
                          1, 0, 1)
    assert parse_reply(message) is not None
    cut = truncate_reply(message, 1232)
    parsed = dnslib.DNSRecord.parse(cut)
    assert len(cut) <= 1232 and parsed.header.tc == 1
    assert [str(record.rdata) for record in parsed.rr] == ["192.0.2.1"]
    (opt,) = parsed.ar
    assert opt.rtype == 41 and opt.rdata == []


def test_options_are_left_out_of_a_reply_for_others():
    message = reply_to(answers=[a("www.example", "192.0.2.1")],
                       edns=dnslib.EDNS0(udp_len=1232, opts=[dnslib.EDNSOption(10, b"\x01" * 24)]))
    plain = without_options(message, parse_reply(message))
    (opt,) = dnslib.DNSRecord.parse(plain).ar
    assert opt.rdata == [] and opt.rclass == 1232 and len(plain) == len(message) - 28
    assert without_options(plain, parse_reply(plain)) is plain


# -- which answers belong ------------------------------------------------------------------------------


def test_answers_off_the_cname_chain_are_left_out_and_names_uncompressed():
    message = reply_to(answers=[a("bank.example", "6.6.6.6"), cname("www.example", "web.example"),
                                a("web.example", "192.0.2.1"), a("web.example.evil", "6.6.6.7")],
                       authority=[dnslib.RR("example", dnslib.QTYPE.NS, rdata=dnslib.NS("ns.web.example"))],
                       additional=[a("ns.web.example", "192.0.2.53")])
    kept, layout = related_answers_only(message, parse_reply(message))
    parsed = dnslib.DNSRecord.parse(kept)
    assert [(str(r.rname), str(r.rdata)) for r in parsed.rr] == [("www.example.", "web.example."),
                                                                  ("web.example.", "192.0.2.1")]
    assert [str(r.rdata) for r in parsed.auth] == ["ns.web.example."]  # the other sections as they were
    assert [str(r.rdata) for r in parsed.ar] == ["192.0.2.53"]
    assert layout == parse_reply(kept)
    assert all(kept[record.start] < 0xC0 for record in layout.records)  # no owner is a pointer any more


def test_a_reply_whose_answers_all_belong_is_the_same_object():
    message = reply_to(answers=[cname("WWW.example", "web.example"), a("Web.Example", "192.0.2.1")])
    layout = parse_reply(message)
    assert related_answers_only(message, layout) == (message, layout)


def test_a_dname_above_the_name_and_its_synthesized_cname_belong():
    message = reply_to("www.old.example", answers=[
        dnslib.RR("old.example", dnslib.QTYPE.DNAME, rdata=dnslib.CNAME("new.example"), ttl=60),
        cname("www.old.example", "www.new.example"), a("www.new.example", "192.0.2.1"),
        dnslib.RR("ld.example", dnslib.QTYPE.DNAME, rdata=dnslib.CNAME("x.example"), ttl=60)])  # no label boundary
    kept, _ = related_answers_only(message, parse_reply(message))
    assert [str(r.rname) for r in dnslib.DNSRecord.parse(kept).rr] == ["old.example.", "www.old.example.",
                                                                        "www.new.example."]


# -- reverse names: made by the builder, read back by the snapshot, one home here (issue 25 item 5) ---------------

@given(st.ip_addresses())
def test_a_reverse_name_is_the_one_the_standard_library_spells_and_reads_back(address):
    name = reverse_name(address.packed)
    assert name == encode_name(address.reverse_pointer)
    assert reverse_name_address(name) == address


@pytest.mark.parametrize("text", ["1.89.10.in-addr.arpa", "256.0.89.10.in-addr.arpa", "2.0.89.10.in-addr.arpb",
                                  "web", "x" + ipaddress.ip_address("fd00::1").reverse_pointer[1:], "arpa"])
def test_other_names_are_no_reverse_names(text):
    assert reverse_name_address(encode_name(text)) is None
