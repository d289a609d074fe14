"""Forwarding to a scripted upstream on a loopback address."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import dnslib
import pytest

from dnsd.answer import REFUSED, SERVFAIL, Forward
from dnsd.forward import Forwarder

UPSTREAM = "127.0.0.153"
SECOND_UPSTREAM = "127.0.0.154"
NXDOMAIN = 3


def forward_of(query: bytes, *upstreams: tuple[str, int]) -> Forward:
    return Forward(query, query[12:], tuple(upstreams), edns=False)


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
        while forwarder.inflight < 2:
            await asyncio.sleep(0)
        reply = await forwarder.resolve(forward_of(query, (UPSTREAM, free_port)), tcp=False)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
    parsed = dns.parse(reply)
    assert parsed.header.rcode == REFUSED and parsed.header.id == 0x4444
    assert forwarder.inflight == 0
