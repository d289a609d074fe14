"""Whatever an upstream sends, the client gets an answer within its limit, never an exception (issue 24 item 3).

Hypothesis builds replies the way an upstream could (dnslib: records of many
types, owners on and off the question's chain, OPT records right and wrong,
every rcode, TC) and then damages them where ``dnsd.core.wire`` knows the structure
is (counts, RDATA lengths, compression pointers, cuts and trailing bytes). A
fake upstream on loopback sends each one, under the query's ID, to a real
Forwarder behind the cache; the reply the client gets must be the upstream's
when the upstream's was well-formed, dnsd's SERVFAIL otherwise, always within
the client's size limit, and again from the cache.
"""

from __future__ import annotations

import asyncio

import dnslib
from hypothesis import HealthCheck, given, settings, strategies as st

from dnsd.core.answer import Forward
from dnsd.core.snapshot import Upstream
from dnsd.core.wire import NXDOMAIN, REFUSED, SERVFAIL, TC_FLAG, parse_reply, question_name_end
from dnsd.upstream.cache import AnswerCache, CachingResolver
from dnsd.upstream.forward import Forwarder

UPSTREAM = "127.0.0.153"
SAFETY = 5.0  # seconds: only so that a broken forwarder fails the test instead of hanging it
TRIED = {"examples": 0, "well-formed": 0}

names = st.sampled_from(["www.example", "WWW.Example", "web.example", "bank.example", "x.www.example", "example",
                         "a" * 63 + ".example"])
addresses = st.integers(0, 2**32 - 1).map(lambda n: dnslib.A(".".join(str(n >> s & 255) for s in (24, 16, 8, 0))))
rdatas = st.one_of(
    st.tuples(st.just(dnslib.QTYPE.A), addresses),
    st.tuples(st.just(dnslib.QTYPE.AAAA), st.binary(min_size=16, max_size=16).map(lambda b: dnslib.AAAA(list(b)))),
    st.tuples(st.just(dnslib.QTYPE.CNAME), names.map(dnslib.CNAME)),
    st.tuples(st.just(dnslib.QTYPE.NS), names.map(dnslib.NS)),
    st.tuples(st.just(dnslib.QTYPE.PTR), names.map(dnslib.PTR)),
    st.tuples(st.just(dnslib.QTYPE.MX), st.builds(dnslib.MX, names, st.integers(0, 65535))),
    st.tuples(st.just(dnslib.QTYPE.TXT), st.lists(st.binary(max_size=300), min_size=1, max_size=4).map(dnslib.TXT)),
    st.tuples(st.just(dnslib.QTYPE.SOA), st.builds(lambda m, r, t: dnslib.SOA(m, r, t), names, names,
                                                 st.tuples(*[st.integers(0, 2**32 - 1)] * 5))),
    st.tuples(st.integers(256, 65279), st.binary(max_size=200).map(dnslib.RD)),  # a type dnsd does not know
)
records = st.builds(lambda name, rdata, ttl: dnslib.RR(name, rdata[0], rdata=rdata[1], ttl=ttl),
                    names, rdatas, st.integers(0, 2**32 - 1))
options = st.lists(st.builds(dnslib.EDNSOption, st.integers(0, 65535), st.binary(max_size=600)), max_size=3)
edns_records = st.builds(lambda size, opts: dnslib.EDNS0(udp_len=size, opts=opts), st.integers(0, 65535), options)


@st.composite
def replies(draw, query: bytes) -> bytes:
    """An upstream's reply to ``query``: built, then perhaps damaged."""
    message = dnslib.DNSRecord.parse(query).reply()
    message.header.rcode = draw(st.sampled_from([0, 0, 0, 1, 2, 3, 4, 5, 9, 15]))
    message.header.tc = draw(st.sampled_from([0, 0, 0, 1]))
    for record in draw(st.lists(records, max_size=6)):
        message.add_answer(record)
    for record in draw(st.lists(records, max_size=3)):
        message.add_auth(record)
    for record in draw(st.lists(records, max_size=3)):
        message.add_ar(record)
    for record in draw(st.lists(edns_records, max_size=2)):  # none, one, or two OPT records
        message.add_ar(record)
    if draw(st.booleans()):
        message.add_answer(*draw(st.lists(edns_records, max_size=1)))  # OPT where it does not belong
    data = bytearray(message.pack())
    for _ in range(draw(st.integers(0, 3))):
        data = damage(data, draw(st.integers(0, 5)), draw(st.integers(0, 2**16)), draw(st.binary(max_size=8)))
    return bytes(data)


def damage(data: bytearray, kind: int, at: int, junk: bytes) -> bytearray:
    """Damage a reply where the structure is: counts, an RDATA length, a name made a pointer, a cut, bytes
    appended, a byte flipped after the question (the ID and question stay: the reply must still be taken as
    the answer to its query)."""
    question_end = question_name_end(bytes(data)) + 4
    after = question_end + at % max(len(data) - question_end, 1)
    if kind == 0:  # counts that lie
        data[6 + at % 6] = junk[0] if junk else 0xFF
    elif kind == 1 and after + 2 <= len(data):  # a length or a name octet changed: RDATA lengths among them
        data[after:after + 2] = (junk + b"\xff\xff")[:2]
    elif kind == 2 and after + 2 <= len(data):  # a compression pointer to anywhere, back, forward or to itself
        data[after:after + 2] = bytes((0xC0 | (at >> 8) & 0x3F, at & 0xFF))
    elif kind == 3:
        del data[max(after, question_end):]  # cut short
    elif kind == 4:
        data += junk or b"\x00"  # bytes after the last record
    elif kind == 5 and after < len(data):
        data[after] ^= 1 << at % 8
    return data


def forward_of(query: bytes, port: int, udp_limit: int, edns: bool) -> Forward:
    question_end = question_name_end(query) + 4
    return Forward(query, query[12:question_end], ((Upstream(UPSTREAM, port),),), edns, udp_limit=udp_limit)


async def exchange(fake_upstream, port: int, query: bytes, hostile: bytes, tcp: bool, udp_limit: int):
    """The client's reply to ``query`` when the upstream answers ``hostile`` (under the query's ID), then the
    reply the cache gives the next client, and the forwarder's counts."""
    forwarder = Forwarder(timeout=0.5)
    resolver = CachingResolver(forwarder, AnswerCache())
    forward = forward_of(query, port, udp_limit, edns=udp_limit != 512)
    async with fake_upstream(UPSTREAM, port, lambda sent: [sent[:2] + hostile[2:]]):
        async with asyncio.timeout(SAFETY):
            first = await resolver.resolve(forward, tcp=tcp)
            again = await resolver.resolve(forward_of(query, port, udp_limit, edns=udp_limit != 512), tcp=tcp)
    return first, again, forwarder.stats


QUERIES = [dnslib.DNSRecord.question("www.example", "A"), dnslib.DNSRecord.question("www.example", "TXT")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(data=st.data(), which=st.integers(0, 1), client=st.sampled_from([("udp", 512), ("udp", 1232), ("tcp", 65535)]))
def test_whatever_an_upstream_sends_the_client_gets_a_well_formed_answer_within_its_limit(
        data, which, client, free_port, fake_upstream):
    protocol, limit = client
    asked = QUERIES[which]
    if limit == 1232:
        asked.add_ar(dnslib.EDNS0(udp_len=1232))
    query = bytes(asked.pack())
    if limit == 1232:
        asked.ar = []
    hostile = data.draw(replies(query))
    first, again, stats = asyncio.run(exchange(fake_upstream, free_port, query, hostile, protocol == "tcp", limit))
    TRIED["examples"] += 1
    hostile_layout = parse_reply(hostile)
    question_end = question_name_end(query) + 4
    for reply in (first, again):
        assert len(reply) <= limit
        assert parse_reply(reply) is not None, reply
        assert reply[:2] == query[:2] and reply[12:question_end] == query[12:question_end]
    assert stats.internal_errors == 0
    rcode = first[3] & 0x0F
    hostile_rcode = hostile[3] & 0x0F
    if hostile_layout is None and not (protocol == "udp" and hostile[2] & TC_FLAG):
        assert rcode == SERVFAIL and first[6:12] == b"\x00\x00\x00\x00" + first[10:12]
        assert stats.upstream_errors.get((f"{UPSTREAM}:{free_port}", "malformed"), 0) >= 1
    elif hostile_layout is not None and hostile_rcode not in (SERVFAIL, REFUSED):
        TRIED["well-formed"] += 1
        assert rcode == hostile_rcode  # the upstream's own answer, whatever it says
    elif hostile_layout is not None:
        assert rcode == SERVFAIL  # an upstream that cannot help: dnsd's SERVFAIL (or its own, relayed)
    if rcode in (0, NXDOMAIN) and hostile_layout is not None and not hostile[2] & TC_FLAG:
        assert (again[3] & 0x0F) == rcode  # the cache serves what was relayed


def test_report_replies_tried():
    """Runs after the fuzz test (file order): how many upstream replies it tried, how many were well-formed."""
    print(f"\nupstream replies tried: {TRIED['examples']}, well-formed among them: {TRIED['well-formed']}")
    assert TRIED["examples"] >= 300 and TRIED["well-formed"] >= 30
