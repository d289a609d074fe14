"""Hostile input against the live listeners, and a faulty upstream behind a live server (issue 5).

The server runs on loopback high ports in a thread of its own, so that hypothesis can
drive it from plain blocking sockets; after every hostile message, a valid query must
be answered correctly. The number of inputs tried is printed (pytest -s shows it).
"""

from __future__ import annotations

import asyncio
import socket
import threading

import dnslib
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dnsd.app import make_server
from dnsd.core.config import ServerConfig
from dnsd.core.snapshot import Upstream
from dnsd.core.wire import REFUSED, SERVFAIL
from dnsd.server import DnsServer
from tests.support.dnsd_lan import A1, GATEWAY_A, udp_ask

TRIED = {"udp": 0, "tcp": 0}
VALID = dnslib.DNSRecord.question("a2", "A")
EXPECTED = "127.0.1.3"


class ThreadedServer:
    """A DnsServer on its own event loop in a thread."""

    def __init__(self, server: DnsServer):
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> DnsServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self.server

    def __exit__(self, *exc_info) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def live(lan, free_port):
    with ThreadedServer(make_server(ServerConfig(port=free_port, tcp_idle=1.0, poll_interval=60.0), lan)) as server:
        yield server


def ask_valid_over_udp(port: int) -> list[str]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((A1, 0))
        sock.settimeout(5)
        sock.sendto(VALID.pack(), (GATEWAY_A, port))
        reply = dnslib.DNSRecord.parse(sock.recv(4096))
    assert reply.header.id == VALID.header.id
    return [str(rr.rdata) for rr in reply.rr]


def mutated(data: bytes, position: int, value: int) -> bytes:
    return data[:position % len(data)] + bytes([value]) + data[position % len(data) + 1:]


header = st.binary(min_size=12, max_size=12)
label = st.binary(min_size=0, max_size=80)
hostile = st.one_of(
    st.binary(max_size=600),  # random bytes, truncated headers included
    st.builds(lambda h, tail: h + tail, header, st.binary(max_size=300)),  # a header, then anything
    st.builds(mutated, st.just(VALID.pack()), st.integers(0, 200), st.integers(0, 255)),  # one byte changed
    st.builds(lambda n: VALID.pack()[:n], st.integers(0, 40)),  # cut anywhere
    # pointer loop
    st.builds(lambda h: h[:2] + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xc0\x0c\x00\x01\x00\x01", header),
    st.builds(lambda lab: VALID.pack()[:12] + bytes([len(lab)]) + lab + b"\x00\x00\x01\x00\x01", label),  # labels > 63
    st.builds(lambda n: VALID.pack()[:12] + b"\x3f" + b"a" * 63 + (b"\x3f" + b"b" * 63) * n + b"\x00\x00\x01\x00\x01",
              st.integers(3, 6)),  # names over 255
    # lying counts
    st.builds(lambda counts: VALID.pack()[:4] + counts + VALID.pack()[12:], st.binary(min_size=8, max_size=8)),
    st.builds(lambda size, code: VALID.pack()[:11] + b"\x01" + VALID.pack()[12:]
              + b"\x00\x00\x29\x10\x00\x00\x00\x00\x00"
              + (size + 4).to_bytes(2, "big") + code.to_bytes(2, "big") + size.to_bytes(2, "big") + b"x" * size,
              st.integers(0, 1400), st.integers(0, 65535)),  # EDNS options of every size
    # responses
    st.builds(lambda flags: VALID.pack()[:2] + bytes([0x80 | flags]) + VALID.pack()[3:], st.integers(0, 127)),
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=hostile)
def test_live_udp_listener_survives_hostile_datagrams(live, message):
    port = live.config.port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # open until the valid query is answered:
        sock.bind((A1, 0))  # a late reply to the hostile one cannot reach a new socket on the same port
        sock.sendto(message, (GATEWAY_A, port))
        TRIED["udp"] += 1
        assert ask_valid_over_udp(port) == [EXPECTED]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=hostile, framed=st.booleans())
def test_live_tcp_listener_survives_hostile_messages(live, message, framed):
    port = live.config.port
    with socket.create_connection((GATEWAY_A, port), timeout=5, source_address=(A1, 0)) as sock:
        sock.sendall(len(message).to_bytes(2, "big") + message if framed else message)
        sock.shutdown(socket.SHUT_WR)
        try:
            while sock.recv(65536):  # whatever comes back, until the server closes
                pass
        except (TimeoutError, ConnectionResetError):
            pass
    TRIED["tcp"] += 1
    with socket.create_connection((GATEWAY_A, port), timeout=5, source_address=(A1, 0)) as sock:
        sock.sendall(len(VALID.pack()).to_bytes(2, "big") + VALID.pack())
        size = int.from_bytes(sock.recv(2), "big")
        data = b""
        while len(data) < size:
            data += sock.recv(size - len(data))
    assert [str(rr.rdata) for rr in dnslib.DNSRecord.parse(data).rr] == [EXPECTED]


def test_report_inputs_tried():
    """Runs after the two above (file order): how many hostile inputs the live listeners took."""
    print(f"\nhostile inputs tried against live listeners: UDP {TRIED['udp']}, TCP {TRIED['tcp']}")
    assert TRIED["udp"] >= 1000 and TRIED["tcp"] >= 300


UPSTREAM = "127.0.0.154"


@pytest.mark.parametrize("fault", ["silent", "garbage", "wrong id", "wrong question", "spoofed source"])
async def test_faulty_upstream_gives_servfail_in_budget_while_local_names_keep_answering(
        world, free_port, dns, fake_upstream, fault):
    net = world.network("neta", "127.0.1.0/24", GATEWAY_A, dns=(f"{UPSTREAM}:{free_port}",))
    world.container("a1", net, A1)
    world.container("a2", net, EXPECTED)
    budget = 0.5
    server = make_server(ServerConfig(port=free_port, forward_timeout=budget, max_inflight=64,
                                    max_inflight_per_client=64), world)
    await server.start()

    def respond(query: bytes) -> list[bytes]:
        if fault == "silent":
            return []
        if fault == "garbage":
            return [b"\x00" * 7, query[:2] + b"\xff" * 30]
        parsed = dnslib.DNSRecord.parse(query)
        if fault == "wrong id":
            parsed.header.id ^= 0xFFFF
        elif fault == "wrong question":
            parsed = dnslib.DNSRecord.question("evil.example", "A")
            parsed.header.id = dnslib.DNSRecord.parse(query).header.id
        reply = parsed.reply()
        reply.add_answer(dnslib.RR(parsed.q.qname, dnslib.QTYPE.A, rdata=dnslib.A("6.6.6.6")))
        return [reply.pack()]

    try:
        async with fake_upstream(UPSTREAM, free_port, respond,
                                 spoof_from="127.0.0.155" if fault == "spoofed source" else None):
            loop = asyncio.get_running_loop()
            started = loop.time()
            forwarded = [asyncio.ensure_future(udp_ask(dns.query(f"x{i}.example", query_id=i), GATEWAY_A, free_port))
                         for i in range(40)]
            local = [await udp_ask(dns.query("a2", query_id=1000 + i), GATEWAY_A, free_port) for i in range(20)]
            assert all(dns.rdata(reply) == [EXPECTED] for reply in local)  # answered while 40 wait upstream
            replies = await asyncio.gather(*forwarded)
            elapsed = loop.time() - started
        assert all(dns.parse(r).header.rcode == SERVFAIL and dns.rdata(r) == [] for r in replies)  # never 6.6.6.6
        assert elapsed < budget + 2.0  # each ends when the budget does (generous slack for a busy machine)
        assert server.stats.in_flight == 0  # nothing left behind: memory stays flat
    finally:
        await server.close()


async def test_inflight_cap_holds_against_a_silent_upstream(world, free_port, dns, fake_upstream):
    net = world.network("neta", "127.0.1.0/24", GATEWAY_A, dns=(f"{UPSTREAM}:{free_port}",))
    world.container("a1", net, A1)
    server = make_server(ServerConfig(port=free_port, forward_timeout=1.0, max_inflight=10,
                                    max_inflight_per_client=10), world)
    await server.start()
    try:
        async with fake_upstream(UPSTREAM, free_port, lambda query: []):
            replies = await asyncio.gather(*[udp_ask(dns.query(f"y{i}.example", query_id=i), GATEWAY_A, free_port)
                                             for i in range(30)])
        codes = [dns.parse(r).header.rcode for r in replies]
        assert codes.count(REFUSED) == 20 and codes.count(SERVFAIL) == 10
        assert server.stats.in_flight == 0
    finally:
        await server.close()


async def test_one_flooding_client_cannot_take_every_forwarding_slot(world, free_port, dns, fake_upstream):
    net = world.network("neta", "127.0.1.0/24", GATEWAY_A, dns=(f"{UPSTREAM}:{free_port}",))
    world.container("a1", net, A1)
    world.container("a2", net, EXPECTED)
    server = make_server(ServerConfig(port=free_port, forward_timeout=1.0, max_inflight=40,
                                    max_inflight_per_client=10), world)
    await server.start()
    try:
        async with fake_upstream(UPSTREAM, free_port, lambda query: []):  # silent: every slot stays taken
            flood = [asyncio.ensure_future(udp_ask(dns.query(f"f{i}.example", query_id=i), GATEWAY_A, free_port))
                     for i in range(30)]
            await asyncio.sleep(0.2)
            other = await udp_ask(dns.query("o.example", query_id=99), GATEWAY_A, free_port, source=EXPECTED)
            flood_codes = [dns.parse(r).header.rcode for r in await asyncio.gather(*flood)]
        assert flood_codes.count(REFUSED) == 20 and flood_codes.count(SERVFAIL) == 10
        assert dns.parse(other).header.rcode == SERVFAIL  # forwarded and timed out, not refused
        assert server.stats.in_flight == 0
    finally:
        await server.close()


# -- forwarding loops (issue 24 item 5) ------------------------------------------------------------------


@pytest.mark.parametrize("configured", ["network --dns", "dnsd --upstream"])
async def test_an_upstream_that_is_dnsd_itself_is_never_asked(world, free_port, dns, configured):
    """Issue 24: a network whose --dns is a gateway of dnsd's turned one query into 129 forwarded ones."""
    own = f"{GATEWAY_A}:{free_port}"
    net = world.network("neta", "127.0.1.0/24", GATEWAY_A, dns=(own,) if configured == "network --dns" else ())
    world.container("a1", net, A1)
    upstreams = (Upstream(GATEWAY_A, free_port),) if configured == "dnsd --upstream" else ()
    server = make_server(ServerConfig(port=free_port, forward_timeout=2.0, upstreams=upstreams), world)
    await server.start()
    try:
        reply = await udp_ask(dns.query("nowhere.example"), GATEWAY_A, free_port)
        assert dns.parse(reply).header.rcode == SERVFAIL
        assert server.stats.upstream_errors == {(own, "loop"): 1}  # never sent: no answer of its own to read
        assert server.stats.forwarded == 1 and server.stats.forward_loops == 1
    finally:
        await server.close()


class Relay:
    """A resolver at ``address`` that forwards every query to dnsd (``to``) and relays what comes back: a
    resolver container on a network whose --dns is that container (Pi-hole's usual setup)."""

    def __init__(self, address: str, port: int, to: tuple[str, int]):
        self.address, self.port, self.to = address, port, to
        self.queries = 0
        self._relaying: set[asyncio.Task] = set()

    async def __aenter__(self) -> Relay:
        relay = self

        class Protocol(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, source):
                relay.queries += 1
                task = asyncio.ensure_future(self.relay(data, source))
                relay._relaying.add(task)
                task.add_done_callback(relay._relaying.discard)

            async def relay(self, data, source):
                try:
                    reply = await udp_ask(data, *relay.to, source=relay.address)
                except TimeoutError:
                    return
                self.transport.sendto(reply, source)

        self._transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            Protocol, local_addr=(self.address, self.port))
        return self

    async def __aexit__(self, *exc_info):
        self._transport.close()
        for task in self._relaying:
            task.cancel()
        await asyncio.gather(*self._relaying, return_exceptions=True)


async def test_a_query_that_comes_back_through_its_upstream_is_answered_servfail_not_forwarded(world, free_port, dns):
    resolver = "127.0.1.5"
    net = world.network("neta", "127.0.1.0/24", GATEWAY_A, dns=(f"{resolver}:{free_port}",))
    world.container("a1", net, A1)
    world.container("pihole", net, resolver)
    server = make_server(ServerConfig(port=free_port, forward_timeout=2.0), world)
    await server.start()
    try:
        async with Relay(resolver, free_port, (GATEWAY_A, free_port)) as relay:
            reply = await udp_ask(dns.query("nowhere.example"), GATEWAY_A, free_port)
        assert dns.parse(reply).header.rcode == SERVFAIL
        assert relay.queries == 1 and server.stats.forward_loops == 1
        assert server.stats.forwarded == 1  # the query that came back was never asked of anyone
    finally:
        await server.close()


async def test_a_resolver_in_front_of_dnsd_is_no_loop(world, free_port, dns, fake_upstream):
    """A network asks a resolver container, which asks dnsd as a client of another network: forwarded."""
    resolver = "127.0.1.5"
    net_a = world.network("neta", "127.0.1.0/24", GATEWAY_A, dns=(f"{resolver}:{free_port}",))
    net_b = world.network("netb", "127.0.2.0/24", "127.0.2.1", dns=(f"{UPSTREAM}:{free_port}",))
    world.container("a1", net_a, A1)
    world.container("filter", net_b, resolver)
    server = make_server(ServerConfig(port=free_port, forward_timeout=2.0), world)
    await server.start()
    try:
        async with Relay(resolver, free_port, ("127.0.2.1", free_port)) as relay, \
                fake_upstream(UPSTREAM, free_port, lambda query: [dns.reply(query, answers=("192.0.2.10",))]):
            reply = await udp_ask(dns.query("www.example"), GATEWAY_A, free_port)
        assert dns.rdata(reply) == ["192.0.2.10"]
        assert relay.queries == 1 and server.stats.forward_loops == 0 and server.stats.forwarded == 2
    finally:
        await server.close()
