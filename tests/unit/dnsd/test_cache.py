"""The forwarded-answer cache against RFC 2308 and its own rules: TTLs, keys, countdown, bounds, truncation."""

from __future__ import annotations

import dnslib
import pytest

from dnsd.core.answer import Answerer, Forward
from dnsd.core.builder import build_snapshot
from dnsd.core.snapshot import Upstream
from dnsd.core.wire import HEADER_SIZE, NXDOMAIN, REFUSED, SERVFAIL, question_name_end, truncate_reply
from dnsd.upstream.cache import (
    NEGATIVE_MAX,
    POSITIVE_MAX,
    POSITIVE_MIN,
    SERVFAIL_TTL,
    AnswerCache,
    CachingResolver,
    cache_ttl,
)

GROUPS = ((Upstream("192.0.2.53", 53),),)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def query(name: str = "www.example", qtype: str = "A", *, query_id: int = 0x1234, do: bool = False,
          cd: bool = False, edns: int | None = None) -> bytes:
    message = dnslib.DNSRecord(dnslib.DNSHeader(id=query_id, rd=1, cd=int(cd)),
                               q=dnslib.DNSQuestion(name, getattr(dnslib.QTYPE, qtype)))
    if edns is not None or do:
        message.add_ar(dnslib.EDNS0(udp_len=edns or 1232, flags="do" if do else ""))
    return bytes(message.pack())


def forward_of(data: bytes, groups=GROUPS, udp_limit: int = 512) -> Forward:
    parsed = dnslib.DNSRecord.parse(data)
    question_end = question_name_end(data) + 4
    edns = any(record.rtype == 41 for record in parsed.ar)
    do = any(record.rtype == 41 and record.ttl & 0x8000 for record in parsed.ar)
    return Forward(data, data[HEADER_SIZE:question_end], groups, edns, do, udp_limit)


def reply(data: bytes, *, ttls: tuple[int, ...] = (), rcode: int = 0, soa: tuple[int, int] | None = None,
          tc: bool = False) -> bytes:
    """An upstream's reply: A records with these TTLs, and an SOA (TTL, MINIMUM) in the authority section."""
    request = dnslib.DNSRecord.parse(data)
    message = request.reply()
    message.header.rcode = rcode
    message.header.tc = int(tc)
    for i, ttl in enumerate(ttls):
        message.add_answer(dnslib.RR(request.q.qname, dnslib.QTYPE.A, rdata=dnslib.A(f"192.0.2.{i + 1}"), ttl=ttl))
    if any(record.rtype == 41 for record in request.ar):
        message.add_ar(dnslib.EDNS0(udp_len=1232))
    if soa is not None:
        ttl, minimum = soa
        message.add_auth(dnslib.RR("example.", dnslib.QTYPE.SOA, ttl=ttl, rdata=dnslib.SOA(
            "ns.example.", "admin.example.", (1, 3600, 600, 86400, minimum))))
    return bytes(message.pack())


# -- how long (RFC 2308) ---------------------------------------------------------------------------


def test_a_positive_answer_is_kept_for_its_smallest_ttl_clamped():
    assert cache_ttl(reply(query(), ttls=(300, 60, 120))) == 60
    assert cache_ttl(reply(query(), ttls=(1,))) == POSITIVE_MIN
    assert cache_ttl(reply(query(), ttls=(86400,))) == POSITIVE_MAX


def test_a_negative_answer_is_kept_for_the_smaller_of_soa_ttl_and_minimum():
    assert cache_ttl(reply(query(), rcode=NXDOMAIN, soa=(600, 30))) == 30
    assert cache_ttl(reply(query(), rcode=NXDOMAIN, soa=(20, 300))) == 20
    assert cache_ttl(reply(query(), rcode=NXDOMAIN, soa=(86400, 86400))) == NEGATIVE_MAX
    assert cache_ttl(reply(query(), soa=(600, 45))) == 45  # NODATA


def test_a_negative_answer_without_soa_is_not_kept():
    assert cache_ttl(reply(query(), rcode=NXDOMAIN)) is None
    assert cache_ttl(reply(query())) is None  # NODATA without SOA


def test_servfail_is_kept_five_seconds_and_refused_or_truncated_never():
    assert cache_ttl(reply(query(), rcode=SERVFAIL)) == SERVFAIL_TTL == 5
    assert cache_ttl(reply(query(), rcode=REFUSED)) is None
    assert cache_ttl(reply(query(), ttls=(60,), tc=True)) is None
    assert cache_ttl(b"\x00\x01garbage") is None


# -- serving ----------------------------------------------------------------------------------------


def test_a_kept_reply_is_served_with_the_askers_id_and_spelling_and_ttls_counted_down():
    clock = Clock()
    cache = AnswerCache(100, clock)
    assert cache.store(forward_of(query()), reply(query(), ttls=(60, 300)))
    clock.now += 10.7
    asked = query("WWW.Example", query_id=0x4321)
    served = dnslib.DNSRecord.parse(cache.lookup(forward_of(asked), 512))
    assert served.header.id == 0x4321 and str(served.q.qname) == "WWW.Example."
    assert [record.ttl for record in served.rr] == [50, 50]  # never more than the cache keeps it: 60
    assert cache.hits == 1 and cache.misses == 0


def test_an_entry_expires_with_its_ttl():
    clock = Clock()
    cache = AnswerCache(100, clock)
    cache.store(forward_of(query()), reply(query(), rcode=NXDOMAIN, soa=(600, 30)))
    clock.now += 29.9
    assert dnslib.DNSRecord.parse(cache.lookup(forward_of(query()), 512)).header.rcode == NXDOMAIN
    clock.now += 0.1
    assert cache.lookup(forward_of(query()), 512) is None
    assert cache.misses == 1
    other = query("other.example")  # entries come and go on the event loop: the next store drops the expired one
    cache.store(forward_of(other), reply(other, ttls=(60,)))
    assert len(cache) == 1 and cache.lookup(forward_of(query()), 512) is None


@pytest.mark.parametrize("other", [
    query(do=True), query(cd=True), query(edns=1232), query(qtype="AAAA"), query("other.example"),
])
def test_the_key_holds_name_type_edns_do_and_cd(other):
    cache = AnswerCache(100, Clock())
    cache.store(forward_of(query()), reply(query(), ttls=(60,)))
    assert cache.lookup(forward_of(other), 512) is None
    assert cache.lookup(forward_of(query(query_id=7)), 512) is not None


def test_each_upstream_set_has_its_own_answers():
    cache = AnswerCache(100, Clock())
    cache.store(forward_of(query()), reply(query(), ttls=(60,)))
    assert cache.lookup(forward_of(query(), groups=((Upstream("192.0.2.54", 53),),)), 512) is None


def test_a_flood_of_names_keeps_at_most_size_entries_least_recently_used_out():
    cache = AnswerCache(3, Clock())
    for i in range(5):
        asked = query(f"n{i}.example")
        cache.store(forward_of(asked), reply(asked, ttls=(60,)))
        if i == 2:
            cache.lookup(forward_of(query("n0.example")), 512)  # n0 used: n1 goes first
    assert len(cache) == 3 and cache.evictions == 2
    assert cache.lookup(forward_of(query("n0.example")), 512) is not None
    assert cache.lookup(forward_of(query("n1.example")), 512) is None


def test_size_zero_keeps_nothing():
    cache = AnswerCache(0, Clock())
    assert not cache.store(forward_of(query()), reply(query(), ttls=(60,)))
    assert len(cache) == 0


def test_a_kept_reply_too_large_for_the_client_is_truncated_with_the_records_that_fit():
    cache = AnswerCache(100, Clock())
    big = query(edns=4096)
    cache.store(forward_of(big), reply(big, ttls=(60,) * 60))
    served = cache.lookup(forward_of(big), 512)
    parsed = dnslib.DNSRecord.parse(served)
    assert len(served) <= 512 and parsed.header.tc == 1 and 0 < len(parsed.rr) < 60
    assert parsed.ar and parsed.ar[0].rtype == 41  # the OPT record stays


def test_truncate_reply_leaves_a_reply_that_fits_alone():
    small = reply(query(), ttls=(60,))
    assert truncate_reply(small, 512) is small


# -- local names never reach the cache --------------------------------------------------------------


def test_local_names_are_answered_by_the_snapshot_and_never_kept(world):
    net = world.network("neta", "10.0.1.0/24", "10.0.1.1", dns=("192.0.2.53",))
    world.container("web", net, "10.0.1.2")
    answerer = Answerer(build_snapshot(*world.records()))
    assert type(answerer.handle(query("web"), "10.0.1.2", "10.0.1.1", False)) is bytes
    assert type(answerer.handle(query("www.example"), "10.0.1.2", "10.0.1.1", False)) is Forward


class _Forwarder:
    def __init__(self, answer):
        self.answer = answer
        self.asked = 0

    async def ask(self, forward, tcp, client=""):
        self.asked += 1
        return self.answer if isinstance(self.answer, int) else forward.query[:2] + self.answer[2:]


async def test_the_caching_resolver_asks_once_and_keeps_only_upstream_replies():
    cache = AnswerCache(100, Clock())
    upstream = _Forwarder(reply(query(), ttls=(60,)))
    resolver = CachingResolver(upstream, cache)
    for query_id in (1, 2, 3):
        served = await resolver.resolve(forward_of(query(query_id=query_id)), tcp=False)
        assert dnslib.DNSRecord.parse(served).header.id == query_id
    assert upstream.asked == 1
    refusing = CachingResolver(_Forwarder(REFUSED), AnswerCache(100, Clock()))
    assert dnslib.DNSRecord.parse(await refusing.resolve(forward_of(query()), tcp=False)).header.rcode == REFUSED
    assert len(refusing.cache) == 0  # dnsd's own reply: never kept


def test_a_kept_answer_is_served_from_the_answerers_memo_until_it_expires(world):
    """The fast path: the cached reply costs one memo lookup, as a local name does, and counts as a hit."""
    net = world.network("neta", "10.0.1.0/24", "10.0.1.1", dns=("192.0.2.53",))
    world.container("web", net, "10.0.1.2")
    answerer = Answerer(build_snapshot(*world.records()))
    clock = Clock()
    cache = AnswerCache(100, clock)
    forward = answerer.handle(query(query_id=1), "10.0.1.2", "10.0.1.1", False)
    cache.store(forward, reply(forward.query, ttls=(60,)))
    answerer.remember_reply(forward.query, "10.0.1.2", "10.0.1.1", cache.remembered(forward, 512))
    clock.now += 2.5
    served = answerer.handle(query(query_id=2), "10.0.1.2", "10.0.1.1", False)
    parsed = dnslib.DNSRecord.parse(served)
    assert parsed.header.id == 2 and [record.ttl for record in parsed.rr] == [58] and cache.hits == 1
    assert type(answerer.handle(query(query_id=3), "10.0.1.2", "10.0.1.1", True)) is Forward  # TCP: no memo
    clock.now += 60
    assert type(answerer.handle(query(query_id=4), "10.0.1.2", "10.0.1.1", False)) is Forward  # expired


def test_the_cache_is_flushed_when_a_networks_or_containers_upstreams_change(new_world):
    """DnsServer.sync flushes the cache when ``upstreams_changed`` says so; a container coming or going does not."""
    from dnsd.core.snapshot import upstreams_changed

    def snapshot(network_dns=("192.0.2.53",), container_dns=(), extra=False):
        world = new_world()
        net = world.network("neta", "10.0.1.0/24", "10.0.1.1", dns=network_dns)
        world.container("web", net, "10.0.1.2", dns=container_dns)
        if extra:
            world.container("db", net, "10.0.1.3")
        return build_snapshot(*world.records())

    base = snapshot()
    assert not upstreams_changed(base, snapshot(extra=True))
    assert upstreams_changed(base, snapshot(network_dns=("192.0.2.54",)))
    assert upstreams_changed(base, snapshot(container_dns=("192.0.2.55",)))


def test_an_upstreams_edns_options_are_not_kept_for_other_clients():
    """An upstream's COOKIE answers one client's cookie (RFC 7873): a kept reply carries no options."""
    asked = query(edns=1232)
    message = dnslib.DNSRecord.parse(reply(asked, ttls=(60,)))
    message.ar = [dnslib.EDNS0(udp_len=1232, opts=[dnslib.EDNSOption(10, b"\x01" * 24)])]  # COOKIE
    cache = AnswerCache(100, Clock())
    cache.store(forward_of(asked), bytes(message.pack()))
    served = dnslib.DNSRecord.parse(cache.lookup(forward_of(query(edns=1232, query_id=9)), 1232))
    (opt,) = served.ar
    assert opt.rtype == 41 and opt.rclass == 1232 and opt.rdata == [] and [str(r.rdata) for r in served.rr] == [
        "192.0.2.1"]


# -- the question compared exactly (issue 24 item 2) -------------------------------------------------


def test_a_reply_for_another_type_never_answers_this_one():
    """Issue 24: `.lower()` over the whole question keyed an HTTPS (65) query to a TYPE97 answer."""
    https = query(qtype="HTTPS")
    type97 = https[:-4] + b"\x00\x61" + https[-2:]
    cache = AnswerCache(100, Clock())
    cache.store(forward_of(type97), reply(type97, ttls=(60,)))
    assert cache.lookup(forward_of(https), 512) is None
    assert cache.lookup(forward_of(type97[:12] + type97[12:].upper()[:-4] + type97[-4:]), 512) is not None


# -- memory bounded in bytes (issue 24 item 4) ---------------------------------------------------------


def big_reply(data: bytes, records: int) -> bytes:
    """A reply to ``data`` with ``records`` A records (16 bytes each, names compressed), built without dnslib."""
    header = data[:2] + b"\x81\x80" + data[4:6] + records.to_bytes(2, "big") + b"\x00\x00\x00\x00"
    question = data[12:question_name_end(data) + 4]
    return header + question + b"".join(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + i.to_bytes(4, "big")
                                         for i in range(records))


def test_the_entries_never_take_more_than_the_byte_budget_least_recently_used_out_first():
    cache = AnswerCache(10_000, Clock(), max_bytes=200_000)
    for i in range(100):
        asked = query(f"n{i}.example")
        assert cache.store(forward_of(asked), big_reply(asked, 300)) is not None  # some 4.8 kB each
        if i >= 1:
            assert cache.lookup(forward_of(query("n0.example")), 65535) is not None  # n0 stays in use
        assert cache.bytes <= 200_000
    assert 10 < len(cache) < 100 and cache.evictions == 100 - len(cache)
    assert cache.lookup(forward_of(query("n1.example")), 65535) is None  # the least recently used went first


def test_a_reply_over_the_largest_entry_is_relayed_but_never_kept():
    cache = AnswerCache(100, Clock())
    asked = query()
    assert cache.store(forward_of(asked), big_reply(asked, 1100)) is None  # 17.6 kB
    assert cache.lookup(forward_of(asked), 65535) is None and cache.too_large == 1 and cache.bytes == 0
    assert cache.store(forward_of(asked), big_reply(asked, 1000)) is not None  # 16 kB: kept


@pytest.mark.parametrize("count", [100, 400, 700])
def test_what_the_budget_counts_is_at_least_what_the_entries_take(count):
    """The accounting is an upper bound of the memory Python allocates for the entries, renderings included."""
    import gc
    import tracemalloc

    clock = Clock()
    cache = AnswerCache(10_000, clock)
    names = [query(f"name{i}.example") for i in range(count)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i, asked in enumerate(names):
            cache.store(forward_of(asked), big_reply(asked, 1 + i % 40))
        clock.now += 2  # every entry rendered anew: its second copy
        for asked in names:
            cache.lookup(forward_of(asked), 65535)
        gc.collect()
        taken = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(cache) == count and taken <= cache.bytes, (taken, cache.bytes)


async def test_an_upstream_that_answers_63_kb_over_tcp_for_every_name_leaves_memory_flat(dns, free_port,
                                                                                       fake_upstream):
    """Issue 24: such a name was cached whole, 87 kB an entry, some 850 MB for a full default cache."""
    import gc
    import tracemalloc

    from dnsd.upstream.forward import Forwarder

    def respond(asked):
        if box.queries[-1][0] == "udp":
            return [asked[:2] + b"\x83\x80" + asked[4:]]  # TC set, no records: ask over TCP
        return [big_reply(asked, 3900)]  # 62.4 kB

    cache = AnswerCache()
    resolver = CachingResolver(Forwarder(timeout=5), cache)
    groups = ((Upstream("127.0.0.153", free_port),),)

    async def ask_names(first: int, count: int) -> int:
        """Ask ``count`` new names; Python's memory in use afterwards."""
        for i in range(first, first + count):
            served = await resolver.resolve(forward_of(query(f"big{i}.example"), groups), tcp=False)
            assert len(served) <= 512 and dnslib.DNSRecord.parse(served).header.tc == 1
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    box = fake_upstream("127.0.0.153", free_port, respond)
    async with box:
        tracemalloc.start()
        try:
            settled = await ask_names(0, 3)  # the last reply read may linger until the loop's next round
            grown = await ask_names(3, 12) - settled
        finally:
            tracemalloc.stop()
    assert grown < 500_000, grown  # kept whole, 12 of them would take over 1 MB
    assert len(cache) == 0 and cache.too_large == 15
