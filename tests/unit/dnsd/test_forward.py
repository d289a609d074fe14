"""Forwarding to a scripted upstream on a loopback address."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable

import dnslib
import pytest

from dnsd.core.answer import Forward
from dnsd.core.snapshot import Upstream
from dnsd.core.wire import HEADER_SIZE, REFUSED, SERVFAIL, question_name_end
from dnsd.upstream.forward import Forwarder, NamespaceSockets
from netcore.system import linux

UPSTREAM = "127.0.0.153"
SECOND_UPSTREAM = "127.0.0.154"
NXDOMAIN = 3


def forward_of(query: bytes, *upstreams: tuple[str, int]) -> Forward:
    """A Forward to one list of servers (a client on one network)."""
    return forward_to_lists(query, upstreams)


def forward_to_lists(query: bytes, *lists: tuple[tuple[str, int], ...]) -> Forward:
    """A Forward to several lists of servers (a client on several networks), asked one list after the other:
    the question as the answering core cuts it (name, type, class), EDNS if the query has an OPT record."""
    question_end = question_name_end(query) + 4
    return Forward(query, query[HEADER_SIZE:question_end],
                   tuple(tuple(Upstream(*server) for server in servers) for servers in lists),
                   edns=int.from_bytes(query[10:12], "big") > 0)


def answer_with(dns, rcode=0, addresses=("192.0.2.10",), **flags) -> Callable[[bytes], list[bytes]]:
    return lambda query: [dns.reply(query, rcode, addresses, **flags)]


def silent(query: bytes) -> list[bytes]:
    return []


async def test_upstream_answer_is_relayed_with_the_client_id(dns, free_port, fake_upstream):
    query = dns.query("example.com", query_id=0x1111)
    async with fake_upstream(UPSTREAM, free_port, answer_with(dns)) as upstream:
        reply = await Forwarder(timeout=2).resolve(forward_of(query, (UPSTREAM, free_port)), tcp=False)
    parsed = dns.parse(reply)
    assert parsed.header.id == 0x1111
    assert dns.rdata(reply) == ["192.0.2.10"]
    assert [protocol for protocol, _ in upstream.queries] == ["udp"]
    assert upstream.queries[0][1][2:] == query[2:]  # the query itself, under an ID of our own


async def test_each_forwarded_query_gets_a_fresh_id(dns, free_port, fake_upstream):
    query = dns.query("example.com", query_id=0x1111)
    forwarder = Forwarder(timeout=2)
    async with fake_upstream(UPSTREAM, free_port, answer_with(dns)) as upstream:
        for _ in range(4):
            await forwarder.resolve(forward_of(query, (UPSTREAM, free_port)), tcp=False)
    assert len({sent[:2] for _, sent in upstream.queries}) > 1


async def test_upstream_nxdomain_is_passed_through(dns, free_port, fake_upstream):
    query = dns.query("nowhere.example")
    async with fake_upstream(UPSTREAM, free_port, answer_with(dns, NXDOMAIN, ())):
        reply = await Forwarder(timeout=2).resolve(forward_of(query, (UPSTREAM, free_port)), tcp=False)
    assert dns.parse(reply).header.rcode == NXDOMAIN


async def test_silent_upstream_gives_servfail_within_the_budget(dns, free_port, fake_upstream):
    query = dns.query("example.com", query_id=0x2222)
    async with fake_upstream(UPSTREAM, free_port, silent):
        reply = await Forwarder(timeout=0.3).resolve(forward_of(query, (UPSTREAM, free_port)), tcp=False)
    parsed = dns.parse(reply)
    assert parsed.header.rcode == SERVFAIL and parsed.header.id == 0x2222
    assert str(parsed.q.qname) == "example.com."


def _with_id(reply: bytes, query_id: bytes) -> bytes:
    return query_id + reply[2:]


async def test_replies_with_the_wrong_id_or_question_are_dropped_and_the_wait_goes_on(dns, free_port, fake_upstream):
    def respond(query):
        wrong_id = _with_id(dns.reply(query, answers=("192.0.2.66",)), bytes([query[0] ^ 0xFF, query[1]]))
        other = dnslib.DNSRecord.parse(dns.query("other.example"))
        other.header.id = int.from_bytes(query[:2], "big")
        wrong_question = dns.reply(bytes(other.pack()), answers=("192.0.2.67",))
        return [wrong_id, wrong_question, dns.reply(query, answers=("192.0.2.10",))]

    query = dns.query("example.com")
    async with fake_upstream(UPSTREAM, free_port, respond):
        reply = await Forwarder(timeout=2).resolve(forward_of(query, (UPSTREAM, free_port)), tcp=False)
    assert dns.rdata(reply) == ["192.0.2.10"]


async def test_only_mismatched_replies_give_servfail(dns, free_port, fake_upstream):
    def respond(query):
        return [_with_id(dns.reply(query), bytes([query[0] ^ 0xFF, query[1]]))]

    query = dns.query("example.com")
    async with fake_upstream(UPSTREAM, free_port, respond):
        reply = await Forwarder(timeout=0.3).resolve(forward_of(query, (UPSTREAM, free_port)), tcp=False)
    assert dns.parse(reply).header.rcode == SERVFAIL


async def test_a_reply_from_another_address_is_dropped(dns, free_port, fake_upstream):
    query = dns.query("example.com")
    async with fake_upstream(UPSTREAM, free_port, answer_with(dns), spoof_from=SECOND_UPSTREAM):
        reply = await Forwarder(timeout=0.3).resolve(forward_of(query, (UPSTREAM, free_port)), tcp=False)
    assert dns.parse(reply).header.rcode == SERVFAIL


async def test_truncated_upstream_reply_is_passed_on_with_tc(dns, free_port, fake_upstream):
    query = dns.query("big.example")
    async with fake_upstream(UPSTREAM, free_port, answer_with(dns, addresses=(), tc=1)):
        reply = await Forwarder(timeout=2).resolve(forward_of(query, (UPSTREAM, free_port)), tcp=False)
    assert dns.parse(reply).header.tc == 1


async def test_a_tcp_question_is_forwarded_over_tcp(dns, free_port, fake_upstream):
    query = dns.query("example.com", query_id=0x3333)
    async with fake_upstream(UPSTREAM, free_port, answer_with(dns)) as upstream:
        reply = await Forwarder(timeout=2).resolve(forward_of(query, (UPSTREAM, free_port)), tcp=True)
    assert dns.parse(reply).header.id == 0x3333 and dns.rdata(reply) == ["192.0.2.10"]
    assert [protocol for protocol, _ in upstream.queries] == ["tcp"]


async def test_tcp_reply_with_the_wrong_id_is_skipped(dns, free_port, fake_upstream):
    def respond(query):
        return [_with_id(dns.reply(query, answers=("192.0.2.66",)), bytes([query[0] ^ 0xFF, query[1]])),
                dns.reply(query, answers=("192.0.2.10",))]

    query = dns.query("example.com")
    async with fake_upstream(UPSTREAM, free_port, respond):
        reply = await Forwarder(timeout=2).resolve(forward_of(query, (UPSTREAM, free_port)), tcp=True)
    assert dns.rdata(reply) == ["192.0.2.10"]


@pytest.mark.parametrize("first", [silent, "servfail", "closed"])
async def test_servers_are_tried_in_order(dns, free_port, fake_upstream, first):
    query = dns.query("example.com")
    second = (SECOND_UPSTREAM, free_port)
    async with fake_upstream(SECOND_UPSTREAM, free_port, answer_with(dns)):
        if first == "closed":  # nothing listens there: the kernel's port-unreachable ends the wait at once
            reply = await Forwarder(timeout=2).resolve(forward_of(query, (UPSTREAM, free_port), second), tcp=False)
        else:
            respond = answer_with(dns, SERVFAIL, ()) if first == "servfail" else first
            async with fake_upstream(UPSTREAM, free_port, respond):
                reply = await Forwarder(timeout=1).resolve(forward_of(query, (UPSTREAM, free_port), second), tcp=False)
    assert dns.rdata(reply) == ["192.0.2.10"]


async def test_past_the_inflight_cap_queries_are_refused_at_once(dns, free_port, fake_upstream):
    forwarder = Forwarder(timeout=5, max_inflight=2)
    query = dns.query("example.com", query_id=0x4444)
    async with fake_upstream(UPSTREAM, free_port, silent):
        waiting = [asyncio.create_task(forwarder.resolve(forward_of(query, (UPSTREAM, free_port)), tcp=False))
                   for _ in range(2)]
        while forwarder.stats.in_flight < 2:
            await asyncio.sleep(0)
        reply = await forwarder.resolve(forward_of(query, (UPSTREAM, free_port)), tcp=False)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
    parsed = dns.parse(reply)
    assert parsed.header.rcode == REFUSED and parsed.header.id == 0x4444
    assert forwarder.stats.in_flight == 0


# -- several lists: one per network of the client --------------------------------------------------

THIRD_UPSTREAM = "127.0.0.155"


def answer_by_name(dns, known: dict[str, str]) -> Callable[[bytes], list[bytes]]:
    """An upstream that knows only ``known`` (name -> address) and says NXDOMAIN for everything else."""
    def respond(query):
        name = str(dns.parse(query).q.qname).rstrip(".")
        if name in known:
            return [dns.reply(query, 0, (known[name],))]
        return [dns.reply(query, NXDOMAIN, ())]
    return respond


@pytest.mark.parametrize("tcp", [False, True])
async def test_an_nxdomain_falls_through_to_the_next_networks_upstreams(dns, free_port, fake_upstream, tcp):
    query = dns.query("service.test", query_id=0x5555)
    first, second = (UPSTREAM, free_port), (SECOND_UPSTREAM, free_port)
    async with fake_upstream(UPSTREAM, free_port, answer_by_name(dns, {})) as net_a, \
            fake_upstream(SECOND_UPSTREAM, free_port, answer_by_name(dns, {"service.test": "192.0.2.53"})) as net_b:
        reply = await Forwarder(timeout=2).resolve(forward_to_lists(query, (first,), (second,)), tcp=tcp)
    parsed = dns.parse(reply)
    assert parsed.header.rcode == 0 and parsed.header.id == 0x5555
    assert dns.rdata(reply) == ["192.0.2.53"]
    assert len(net_a.queries) == 1 and len(net_b.queries) == 1


async def test_the_first_list_that_knows_the_name_answers(dns, free_port, fake_upstream):
    query = dns.query("both.test")
    async with fake_upstream(UPSTREAM, free_port, answer_by_name(dns, {"both.test": "192.0.2.1"})), \
            fake_upstream(SECOND_UPSTREAM, free_port, answer_by_name(dns, {"both.test": "192.0.2.2"})) as later:
        reply = await Forwarder(timeout=2).resolve(
            forward_to_lists(query, ((UPSTREAM, free_port),), ((SECOND_UPSTREAM, free_port),)), tcp=False)
    assert dns.rdata(reply) == ["192.0.2.1"]
    assert later.queries == []  # an answer is final: the next network's upstreams are not asked


async def test_within_one_list_nxdomain_from_the_first_server_that_answers_is_final(dns, free_port, fake_upstream):
    query = dns.query("service.test")
    async with fake_upstream(UPSTREAM, free_port, answer_by_name(dns, {})), \
            fake_upstream(SECOND_UPSTREAM, free_port, answer_by_name(dns, {"service.test": "192.0.2.53"})) as backup:
        reply = await Forwarder(timeout=2).resolve(
            forward_of(query, (UPSTREAM, free_port), (SECOND_UPSTREAM, free_port)), tcp=False)
    assert dns.parse(reply).header.rcode == NXDOMAIN
    assert backup.queries == []


async def test_nxdomain_everywhere_is_nxdomain(dns, free_port, fake_upstream):
    query = dns.query("nowhere.test", query_id=0x6666)
    async with fake_upstream(UPSTREAM, free_port, answer_by_name(dns, {})), \
            fake_upstream(SECOND_UPSTREAM, free_port, answer_by_name(dns, {})) as later:
        reply = await Forwarder(timeout=2).resolve(
            forward_to_lists(query, ((UPSTREAM, free_port),), ((SECOND_UPSTREAM, free_port),)), tcp=False)
    parsed = dns.parse(reply)
    assert parsed.header.rcode == NXDOMAIN and parsed.header.id == 0x6666
    assert len(later.queries) == 1


@pytest.mark.parametrize("later", [silent, "servfail", "closed"])
async def test_an_nxdomain_stands_when_the_later_lists_cannot_answer(dns, free_port, fake_upstream, later):
    query = dns.query("nowhere.test")
    lists = ((UPSTREAM, free_port),), ((SECOND_UPSTREAM, free_port),)
    async with fake_upstream(UPSTREAM, free_port, answer_by_name(dns, {})):
        if later == "closed":
            reply = await Forwarder(timeout=0.5).resolve(forward_to_lists(query, *lists), tcp=False)
        else:
            respond = answer_with(dns, SERVFAIL, ()) if later == "servfail" else later
            async with fake_upstream(SECOND_UPSTREAM, free_port, respond):
                reply = await Forwarder(timeout=0.5).resolve(forward_to_lists(query, *lists), tcp=False)
    assert dns.parse(reply).header.rcode == NXDOMAIN  # a definite answer beats a SERVFAIL of our own


async def test_failures_try_the_next_server_across_lists(dns, free_port, fake_upstream):
    query = dns.query("service.test")
    lists = ((UPSTREAM, free_port),), ((SECOND_UPSTREAM, free_port), (THIRD_UPSTREAM, free_port))
    async with fake_upstream(UPSTREAM, free_port, silent), \
            fake_upstream(SECOND_UPSTREAM, free_port, answer_with(dns, SERVFAIL, ())), \
            fake_upstream(THIRD_UPSTREAM, free_port, answer_with(dns, addresses=("192.0.2.53",))) as third:
        reply = await Forwarder(timeout=1.5).resolve(forward_to_lists(query, *lists), tcp=False)
    assert dns.rdata(reply) == ["192.0.2.53"] and len(third.queries) == 1


async def test_all_lists_share_one_time_budget(dns, free_port, fake_upstream):
    query = dns.query("service.test")
    lists = ((UPSTREAM, free_port),), ((SECOND_UPSTREAM, free_port),)
    loop = asyncio.get_running_loop()
    async with fake_upstream(UPSTREAM, free_port, silent) as first, \
            fake_upstream(SECOND_UPSTREAM, free_port, silent) as second:
        started = loop.time()
        reply = await Forwarder(timeout=0.4).resolve(forward_to_lists(query, *lists), tcp=False)
        took = loop.time() - started
    assert dns.parse(reply).header.rcode == SERVFAIL
    assert len(first.queries) == 1 and len(second.queries) == 1  # each list got its share
    assert took < 0.7  # a correctness bound: the budget is the query's; one budget per list would take 0.8 s


# -- upstreams asked from inside another network namespace -----------------------------------------


@pytest.fixture
def namespaces(tmp_path):
    """A NamespaceSockets over a directory of its own: `here` is this process's namespace, `fresh` a new empty one.

    `fresh` is made by a thread that unshares its own network namespace and is held by a file descriptor:
    only its loopback exists, and it is down. The test process's namespace never changes.
    """
    if os.geteuid() != 0:
        pytest.skip("entering a network namespace needs root")
    os.symlink(f"/proc/{os.getpid()}/ns/net", tmp_path / "here")
    held = []

    def make_fresh():
        linux.unshare(linux.CLONE_NEWNET)  # this thread alone; it ends right after
        held.append(os.open(linux.THREAD_NETNS, os.O_RDONLY))

    thread = threading.Thread(target=make_fresh)
    thread.start()
    thread.join()
    os.symlink(f"/proc/{os.getpid()}/fd/{held[0]}", tmp_path / "fresh")
    try:
        yield NamespaceSockets(str(tmp_path))
    finally:
        os.close(held[0])


@pytest.mark.parametrize("tcp", [False, True])
async def test_an_upstream_with_a_namespace_is_asked_from_inside_it(dns, free_port, fake_upstream, namespaces, tcp):
    query = dns.query("example.com", query_id=0x7777)
    forwarder = Forwarder(timeout=2, namespaces=namespaces)
    async with fake_upstream(UPSTREAM, free_port, answer_with(dns)) as upstream:
        reply = await forwarder.resolve(Forward(query, query[12:], ((Upstream(UPSTREAM, free_port, "here"),),), False),
                                        tcp=tcp)
        assert dns.parse(reply).header.id == 0x7777 and dns.rdata(reply) == ["192.0.2.10"]
        assert len(upstream.queries) == 1
        # the same address from inside the fresh namespace is another machine's loopback: nothing there
        reply = await forwarder.resolve(Forward(query, query[12:], ((Upstream(UPSTREAM, free_port, "fresh"),),), False),
                                        tcp=tcp)
        assert dns.parse(reply).header.rcode == SERVFAIL
        assert len(upstream.queries) == 1


@pytest.mark.parametrize("netns", ["gone", "../here", "."])
async def test_a_namespace_that_cannot_be_entered_tries_the_next_server(dns, free_port, fake_upstream, namespaces,
                                                                        netns):
    query = dns.query("example.com")
    servers = (Upstream(UPSTREAM, free_port, netns), Upstream(SECOND_UPSTREAM, free_port))
    async with fake_upstream(UPSTREAM, free_port, answer_with(dns, addresses=("192.0.2.66",))) as wrong, \
            fake_upstream(SECOND_UPSTREAM, free_port, answer_with(dns)):
        reply = await Forwarder(timeout=2, namespaces=namespaces).resolve(Forward(query, query[12:], (servers,), False),
                                                                          tcp=False)
    assert dns.rdata(reply) == ["192.0.2.10"]
    assert wrong.queries == []  # never asked from dnsd's own namespace instead


# -- against forged answers (issue 24 item 2: RFC 5452, DNSpooq) -----------------------------------


async def test_identical_questions_in_flight_are_merged_into_one_upstream_query(dns, free_port, fake_upstream):
    """DNSpooq's birthday attack needs many queries out for one question: 50 identical ones send one."""
    spellings = ["example.com", "EXAMPLE.com", "Example.Com"]
    forwarder = Forwarder(timeout=2)
    async with fake_upstream(UPSTREAM, free_port, answer_with(dns)) as upstream:
        replies = await asyncio.gather(*[
            forwarder.resolve(forward_of(dns.query(spellings[i % 3], query_id=1000 + i), (UPSTREAM, free_port)),
                              tcp=False) for i in range(50)])
    assert len(upstream.queries) == 1
    for i, reply in enumerate(replies):
        parsed = dns.parse(reply)
        assert parsed.header.id == 1000 + i and str(parsed.q.qname) == spellings[i % 3] + "."  # each its own
        assert dns.rdata(reply) == ["192.0.2.10"]
    assert forwarder.stats.forward_merged == 49 and forwarder.stats.forwarded == 50


async def test_merged_clients_each_get_their_own_size_limit(dns, free_port, fake_upstream):
    addresses = tuple(f"192.0.2.{i}" for i in range(1, 61))  # some 1,000 bytes
    async with fake_upstream(UPSTREAM, free_port, answer_with(dns, addresses=addresses)) as upstream:
        small, large = (dns.query("big.example", query_id=i, edns_payload=size) for i, size in ((1, 512), (2, 1232)))
        forwarder = Forwarder(timeout=2)
        replies = await asyncio.gather(*[forwarder.resolve(
            Forward(query, query[12:-11], ((Upstream(UPSTREAM, free_port),),), edns=True, udp_limit=limit), tcp=False)
            for query, limit in ((small, 512), (large, 1232))])
    assert len(upstream.queries) == 1
    assert len(replies[0]) <= 512 and dns.parse(replies[0]).header.tc == 1
    assert dns.rdata(replies[1]) == list(addresses) and dns.parse(replies[1]).header.tc == 0


async def test_questions_that_differ_in_type_or_flags_are_not_merged(dns, free_port, fake_upstream):
    forwarder = Forwarder(timeout=2)
    queries = [dns.query("example.com"), dns.query("example.com", "AAAA"), dns.query("example.com", edns_payload=1232),
               dns.query("example.com", recursion_desired=False)]
    async with fake_upstream(UPSTREAM, free_port, answer_with(dns)) as upstream:
        replies = await asyncio.gather(*[forwarder.resolve(forward_of(query, (UPSTREAM, free_port)), tcp=False)
                                         for query in queries])
    assert len(upstream.queries) == 4
    assert [dns.parse(reply).header.rcode for reply in replies] == [0, 0, 0, 0]  # each answered, none timed out


async def test_a_flood_of_wrong_ids_abandons_udp_for_tcp_and_the_lucky_forgery_is_never_taken(dns, free_port,
                                                                                              fake_upstream):
    """Issue 24: after 3,000 forged replies with wrong IDs, one with the right ID was accepted and cached."""
    def respond(query):
        if upstream.queries[-1][0] == "tcp":  # a blind forger cannot answer over TCP
            return [dns.reply(query, answers=("192.0.2.10",))]
        forged = dns.reply(query, answers=("6.6.6.6",))
        wrong = [bytes([query[0], query[1] ^ (i + 1)]) + forged[2:] for i in range(200)]
        return [*wrong, forged]  # the flood, then the forger's lucky guess: the right ID

    forwarder = Forwarder(timeout=2)
    upstream = fake_upstream(UPSTREAM, free_port, respond)
    async with upstream:
        reply = await forwarder.resolve(forward_of(dns.query("bank.example"), (UPSTREAM, free_port)), tcp=False)
    assert dns.rdata(reply) == ["192.0.2.10"]
    assert [protocol for protocol, _ in upstream.queries] == ["udp", "tcp"]
    assert forwarder.stats.spoof_detected == 1 and forwarder.stats.spoofed_replies >= 3


async def test_a_reply_for_another_type_is_no_reply(dns, free_port, fake_upstream):
    """Issue 24: `.lower()` over the whole question took a TYPE97 reply for an HTTPS (65) question."""
    def respond(query):
        type97 = bytearray(dns.reply(query, answers=("6.6.6.6",)))
        question_end = 12 + len(query) - 12
        type97[question_end - 4:question_end - 2] = b"\x00\x61"
        return [bytes(type97), dns.reply(query)]

    query = dns.query("example.com", "HTTPS")
    async with fake_upstream(UPSTREAM, free_port, respond):
        reply = await Forwarder(timeout=2).resolve(forward_of(query, (UPSTREAM, free_port)), tcp=False)
    parsed = dns.parse(reply)
    assert parsed.q.qtype == 65 and parsed.rr == []


async def test_answers_unrelated_to_the_question_are_not_relayed(dns, free_port, fake_upstream):
    """musl's getaddrinfo takes every A record of the answer section, whatever its owner: only the chain goes."""
    def respond(query):
        message = dnslib.DNSRecord.parse(dns.reply(query, answers=("192.0.2.10",)))
        message.add_answer(dnslib.RR("bank.example", dnslib.QTYPE.A, rdata=dnslib.A("6.6.6.6"), ttl=3600))
        return [bytes(message.pack())]

    async with fake_upstream(UPSTREAM, free_port, respond):
        reply = await Forwarder(timeout=2).resolve(forward_of(dns.query("example.com"), (UPSTREAM, free_port)),
                                                   tcp=False)
    assert dns.rdata(reply) == ["192.0.2.10"]


# -- whatever an upstream sends (issue 24 item 3) ------------------------------------------------------


def _answer_only_opt(query: bytes) -> bytes:
    """A reply whose answer section holds one OPT record (raised in cache_ttl)."""
    reply = dnslib.DNSRecord.parse(query).reply().pack()
    return reply[:6] + b"\x00\x01" + reply[8:] + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"


def _servfail_unreadable(query: bytes) -> bytes:
    """A SERVFAIL whose counts promise a record that is not there (raised in store)."""
    reply = bytearray(dnslib.DNSRecord.parse(query).reply().pack())
    reply[3] = (reply[3] & 0xF0) | SERVFAIL
    reply[7] = 1
    return bytes(reply) + b"\xc0\x0c\x00\x01"


def _opt_not_owned_by_root(query: bytes) -> bytes:
    """A reply with an OPT record owned by the question's name (raised in without_edns_options)."""
    reply = dnslib.DNSRecord.parse(query).reply()
    reply.add_answer(dnslib.RR(reply.q.qname, dnslib.QTYPE.A, rdata=dnslib.A("192.0.2.10"), ttl=60))
    packed = reply.pack()
    return packed[:11] + b"\x01" + packed[12:] + b"\xc0\x0c\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x06\x00\x0a\x00\x02ab"


def _unreadable_3k(query: bytes) -> bytes:
    reply = dnslib.DNSRecord.parse(query).reply()
    for i in range(1, 180):
        reply.add_answer(dnslib.RR(reply.q.qname, dnslib.QTYPE.A, rdata=dnslib.A(f"192.0.2.{i}"), ttl=60))
    packed = bytearray(reply.pack())
    packed[6:8] = (200).to_bytes(2, "big")  # counts that lie
    return bytes(packed)


@pytest.mark.parametrize("hostile", [_answer_only_opt, _servfail_unreadable, _opt_not_owned_by_root, _unreadable_3k])
@pytest.mark.parametrize("cached", [False, True])
async def test_a_reply_that_is_not_well_formed_gets_the_client_a_servfail_within_its_limit(
        dns, free_port, fake_upstream, hostile, cached):
    """Issue 24: these raised in dnsd's cache (no answer at all) or went out whole (2,910 bytes to a 512 client)."""
    from dnsd.upstream.cache import AnswerCache, CachingResolver

    forwarder = Forwarder(timeout=1)
    resolver = CachingResolver(forwarder, AnswerCache()) if cached else forwarder
    query = dns.query("example.com", query_id=0x2424)
    async with fake_upstream(UPSTREAM, free_port, lambda query: [hostile(query)]):
        reply = await resolver.resolve(forward_of(query, (UPSTREAM, free_port)), tcp=False)
    parsed = dns.parse(reply)
    assert len(reply) <= 512 and parsed.header.id == 0x2424 and parsed.header.rcode == SERVFAIL
    assert forwarder.stats.internal_errors == 0
    assert forwarder.stats.upstream_errors == {(f"{UPSTREAM}:{free_port}", "malformed"): 1}


async def test_after_an_unreadable_reply_the_next_server_is_asked(dns, free_port, fake_upstream):
    query = dns.query("example.com")
    async with fake_upstream(UPSTREAM, free_port, lambda query: [_unreadable_3k(query)]), \
            fake_upstream(SECOND_UPSTREAM, free_port, answer_with(dns)):
        reply = await Forwarder(timeout=2).resolve(
            forward_of(query, (UPSTREAM, free_port), (SECOND_UPSTREAM, free_port)), tcp=False)
    assert dns.rdata(reply) == ["192.0.2.10"]


async def test_a_bug_on_the_way_costs_one_servfail_never_an_exception(dns, free_port, fake_upstream, monkeypatch):
    forwarder = Forwarder(timeout=1)
    monkeypatch.setattr(forwarder, "_ask_in_turn", lambda *args: 1 / 0)
    reply = await forwarder.resolve(forward_of(dns.query("example.com"), (UPSTREAM, free_port)), tcp=False)
    assert dns.parse(reply).header.rcode == SERVFAIL and forwarder.stats.internal_errors == 1


async def test_a_merged_query_goes_on_while_anyone_waits_and_stops_with_the_last(dns, free_port, fake_upstream):
    """A TCP client that hangs up cancels its wait, not the others'; with nobody left the socket closes at once
    (an exchange never outlives everyone who asked, so hang-ups cannot pile up open sockets)."""
    forwarder = Forwarder(timeout=5)
    forward = forward_of(dns.query("example.com"), (UPSTREAM, free_port))
    async with fake_upstream(UPSTREAM, free_port, silent) as upstream:
        first, second = (asyncio.ensure_future(forwarder.resolve(forward, tcp=False)) for _ in range(2))
        while forwarder.stats.forward_merged < 1 or not upstream.queries:
            await asyncio.sleep(0.01)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        (exchange,) = forwarder._exchanges.values()
        assert not exchange.task.done() and exchange.waiters == 1
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
        await asyncio.sleep(0)  # the cancelled exchange ends on the loop's next round
        assert exchange.task.cancelled() and forwarder._exchanges == {} and forwarder._asking == {}
    assert len(upstream.queries) == 1
