"""The asyncio shell on 127.0.0.0/8 high ports: listeners, TCP, reloads and the control socket."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import stat

import pytest

from dnsd.app import make_server
from dnsd.core.config import DnsdError, ServerConfig
from dnsd.core.wire import FORMERR, NXDOMAIN, REFUSED, SERVFAIL
from dnsd.server import DnsServer
from tests.support.dnsd_lan import A1, B1, GATEWAY_A, GATEWAY_B, GATEWAY_C, SAFETY, tcp_ask, udp_ask

UPSTREAM = "127.0.0.153"


@pytest.fixture
async def start_server(lan, free_port, tmp_path):
    servers = []

    async def start(**options) -> DnsServer:
        config = ServerConfig(**{"port": free_port, "control_path": str(tmp_path / "dnsd.sock"), "tcp_idle": 1.0,
                                 "poll_interval": 60.0, **options})
        server = make_server(config, lan)
        servers.append(server)
        await server.start()
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def server(start_server) -> DnsServer:
    return await start_server()


async def control(path: str, *commands: str) -> list[str]:
    async with asyncio.timeout(SAFETY):
        reader, writer = await asyncio.open_unix_connection(path)
        try:
            replies = []
            for command in commands:
                writer.write(command.encode() + b"\n")
                replies.append((await reader.readline()).decode().strip())
            return replies
        finally:
            writer.close()


async def test_answers_over_udp_and_tcp(server, dns):
    port = server.config.port
    assert dns.rdata(await udp_ask(dns.query("a2"), GATEWAY_A, port)) == ["127.0.1.3"]
    replies = await tcp_ask([dns.query("a2", query_id=1), dns.query("web", query_id=2)], GATEWAY_A, port)
    assert [dns.parse(reply).header.id for reply in replies] == [1, 2]
    assert [dns.rdata(reply) for reply in replies] == [["127.0.1.3"], ["127.0.1.3"]]


async def test_listens_on_each_gateway_never_a_wildcard(server):
    assert server.listen_addresses == {GATEWAY_A, GATEWAY_B}


async def test_isolation_and_refusal_end_to_end(server, dns):
    port = server.config.port
    assert dns.rdata(await udp_ask(dns.query("b1"), GATEWAY_B, port, source=B1)) == ["127.0.2.2"]
    not_seen = dns.parse(await udp_ask(dns.query("b1"), GATEWAY_B, port, source=A1))
    assert not_seen.rr == [] and not_seen.header.rcode == NXDOMAIN  # not local, no upstream anywhere
    refused = dns.parse(await udp_ask(dns.query("a2"), GATEWAY_A, port, source="127.0.0.1"))
    assert refused.header.rcode == REFUSED


async def test_a_network_listener_comes_and_goes_without_disturbing_the_others(server, lan, dns):
    port = server.config.port
    answered = []

    async def keep_asking():
        for query_id in range(60):
            answered.append(dns.rdata(await udp_ask(dns.query("a2", query_id=query_id), GATEWAY_A, port)))

    asking = asyncio.create_task(keep_asking())
    net_c = lan.network("netc", "127.0.3.0/24", GATEWAY_C)
    lan.container("c1", net_c, "127.0.3.2")
    await server.sync()
    assert server.listen_addresses == {GATEWAY_A, GATEWAY_B, GATEWAY_C}
    assert dns.rdata(await udp_ask(dns.query("c1"), GATEWAY_C, port, source="127.0.3.2")) == ["127.0.3.2"]

    lan.remove_network(lan.net_b)
    await server.sync()
    assert server.listen_addresses == {GATEWAY_A, GATEWAY_C}
    with pytest.raises(ConnectionRefusedError):
        await udp_ask(dns.query("b1"), GATEWAY_B, port, source="127.0.2.2")
    with pytest.raises(ConnectionRefusedError):
        await tcp_ask([dns.query("b1")], GATEWAY_B, port, source="127.0.2.2")

    await asking
    assert answered == [["127.0.1.3"]] * 60


async def test_a_silent_or_slow_tcp_client_does_not_delay_others(server, dns):
    port = server.config.port
    stalled_reader, stalled = await asyncio.open_connection(GATEWAY_A, port, local_addr=(A1, 0))
    stalled.write(b"\x00")  # half a length prefix, then nothing
    _, never_reads = await asyncio.open_connection(GATEWAY_A, port, local_addr=(A1, 0))
    never_reads.write((len(dns.query("web")).to_bytes(2, "big") + dns.query("web")) * 5000)  # and never reads

    assert dns.rdata(await udp_ask(dns.query("a2"), GATEWAY_A, port)) == ["127.0.1.3"]
    assert dns.rdata((await tcp_ask([dns.query("a2")], GATEWAY_A, port))[0]) == ["127.0.1.3"]

    async with asyncio.timeout(SAFETY):  # the server gives up on the stalled connection after tcp_idle
        assert await stalled_reader.read() == b""
    stalled.close()
    never_reads.close()


async def test_at_the_cap_the_longest_open_connection_makes_room(start_server, dns):
    server = await start_server(tcp_max=1)
    port = server.config.port
    first_reader, first = await asyncio.open_connection(GATEWAY_A, port, local_addr=(A1, 0))
    first.write(len(dns.query("a2")).to_bytes(2, "big") + dns.query("a2"))
    async with asyncio.timeout(SAFETY):
        length = int.from_bytes(await first_reader.readexactly(2), "big")
        await first_reader.readexactly(length)  # the first connection is being served
        # a newcomer while the only slot is taken: it is served, the old connection is closed
        replies = await tcp_ask([dns.query("a2")], GATEWAY_A, port)
        assert dns.rdata(replies[0]) == ["127.0.1.3"]
        assert await first_reader.read() == b""
    first.close()


async def test_a_burst_of_garbage_then_it_still_answers(server, dns):
    port = server.config.port
    generator = random.Random(4)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((A1, 0))
        valid = dns.query("a2")
        for index in range(1000):
            garbage = bytes(generator.randrange(256) for _ in range(generator.randrange(40)))
            if index % 3 == 0:  # keep a valid-looking header so that the deeper checks run too
                garbage = valid[:generator.randrange(len(valid))] + garbage
            sock.sendto(garbage, (GATEWAY_A, port))
    assert dns.rdata(await udp_ask(dns.query("a2"), GATEWAY_A, port)) == ["127.0.1.3"]
    assert server.stats.malformed > 0


async def test_control_socket_ping_sync_and_stop(server, lan, dns):
    path = server.config.control_path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert await control(path, "ping") == [f"pong {os.getpid()} foreground"]

    lan.container("fresh", lan.net_a, "127.0.1.9")
    assert await control(path, "sync") == [f"ok {lan.generation()}"]
    # read-your-writes: answered the moment sync returns, with no sleep
    assert dns.rdata(await udp_ask(dns.query("fresh"), GATEWAY_A, server.config.port)) == ["127.0.1.9"]

    lan.remove_container(next(c for c in lan.containers if c.name == "fresh"))
    await control(path, "sync")
    gone = dns.parse(await udp_ask(dns.query("fresh"), GATEWAY_A, server.config.port))
    assert gone.rr == []

    assert (await control(path, "bogus"))[0].startswith("error")
    assert await control(path, "stop") == ["ok"]
    async with asyncio.timeout(SAFETY):
        await server.wait_stopped()


async def test_a_container_change_is_patched_in_a_network_change_rebuilds(server, lan, dns, monkeypatch):
    full_reads = []
    read_all = lan.dns_records
    monkeypatch.setattr(lan, "dns_records", lambda: full_reads.append(lan.generation()) or read_all())
    lan.container("patched", lan.net_a, "127.0.1.11", aliases=("web",))
    await server.sync()
    assert full_reads == [] and server.generation == lan.generation()
    assert sorted(dns.rdata(await udp_ask(dns.query("web"), GATEWAY_A, server.config.port))) == ["127.0.1.11",
                                                                                                 "127.0.1.3"]
    net_c = lan.network("netc", "127.0.3.0/24", GATEWAY_C)
    lan.container("c1", net_c, "127.0.3.2")
    await server.sync()
    assert full_reads == [lan.generation()] and server.listen_addresses == {GATEWAY_A, GATEWAY_B, GATEWAY_C}


async def test_replayed_answers_follow_every_change_of_a_name(server, lan, dns):
    """A quiet listener replays what it answered before (dnsd/io/_replay.c) from the answerer's memo, until
    the next snapshot: a container re-created with a new address is answered with it at once."""
    port = server.config.port
    moving = lan.container("moving", lan.net_a, "127.0.1.20")
    await server.sync()
    for query_id in range(1, 4):
        reply = await udp_ask(dns.query("moving", query_id=query_id), GATEWAY_A, port)
        assert dns.parse(reply).header.id == query_id and dns.rdata(reply) == ["127.0.1.20"]
    replies = server.answerer.replay_table(GATEWAY_A)[0][socket.inet_aton(A1)]
    assert dns.query("moving", query_id=9)[2:] in replies  # what the compiled loop answered from
    lan.remove_container(moving)
    lan.container("moving", lan.net_a, "127.0.1.21")
    await server.sync()
    for _ in range(2):
        assert dns.rdata(await udp_ask(dns.query("moving"), GATEWAY_A, port)) == ["127.0.1.21"]
    assert server.stats.answered_udp == 5


async def test_ping_reports_managed_mode(start_server):
    server = await start_server(managed=True)
    assert await control(server.config.control_path, "ping") == [f"pong {os.getpid()} managed"]


async def test_a_second_server_on_the_same_control_socket_is_refused(server, start_server):
    with pytest.raises(DnsdError, match="another dnsd"):
        await start_server()
    assert server.listen_addresses == {GATEWAY_A, GATEWAY_B}


async def test_generation_poll_is_a_backstop(start_server, lan, dns):
    server = await start_server(poll_interval=0.05)
    lan.container("polled", lan.net_a, "127.0.1.10")
    async with asyncio.timeout(SAFETY):
        while server.generation != lan.generation():
            await asyncio.sleep(0.05)
    assert dns.rdata(await udp_ask(dns.query("polled"), GATEWAY_A, server.config.port)) == ["127.0.1.10"]


async def test_forwards_to_the_networks_upstream_over_udp_and_tcp(world, free_port, tmp_path, dns, fake_upstream):
    net = world.network("neta", "127.0.1.0/24", GATEWAY_A, dns=(f"{UPSTREAM}:{free_port}",))
    world.container("a1", net, A1)
    config = ServerConfig(port=free_port, control_path=str(tmp_path / "dnsd.sock"), forward_timeout=2)
    server = make_server(config, world)
    await server.start()
    try:
        respond = lambda query: [dns.reply(query, answers=("192.0.2.10",))]  # noqa: E731
        async with fake_upstream(UPSTREAM, free_port, respond) as upstream:
            udp_reply = await udp_ask(dns.query("example.com", query_id=9), GATEWAY_A, free_port)
            tcp_reply = (await tcp_ask([dns.query("example.org", query_id=10)], GATEWAY_A, free_port))[0]
    finally:
        await server.close()
    assert dns.parse(udp_reply).header.id == 9 and dns.rdata(udp_reply) == ["192.0.2.10"]
    assert dns.parse(tcp_reply).header.id == 10 and dns.rdata(tcp_reply) == ["192.0.2.10"]
    assert [protocol for protocol, _ in upstream.queries] == ["udp", "tcp"]


async def test_a_taken_address_is_reported_with_its_holder_and_served_once_free(start_server, dns, free_port):
    """Issue 11, item 4: a listener dnsd cannot open is named, with what holds it, in the sync reply."""
    from netcore.dnsd_protocol import parse_sync_reply
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind((GATEWAY_B, free_port))
    try:
        server = await start_server()
        path = server.config.control_path
        assert server.listen_addresses == {GATEWAY_A}
        generation, down = parse_sync_reply((await control(path, "sync"))[0])
        assert list(down) == [GATEWAY_B]
        assert f"cannot listen on {GATEWAY_B} port {free_port}: address already in use" in down[GATEWAY_B]
        assert f"(pid {os.getpid()}, udp {GATEWAY_B}:{free_port})" in down[GATEWAY_B]
        assert parse_sync_reply((await control(path, "status"))[0]) == (generation, down)
    finally:
        squatter.close()
    assert await control(path, "sync") == [f"ok {generation}"]
    assert server.listen_addresses == {GATEWAY_A, GATEWAY_B} and server.down_listeners == {}
    assert dns.rdata(await udp_ask(dns.query("b1"), GATEWAY_B, free_port, source=B1)) == [B1]


async def test_stats_is_one_line_of_json_counting_what_the_server_did(world, free_port, tmp_path, dns, fake_upstream,
                                                                      monkeypatch):
    net = world.network("neta", "127.0.1.0/24", GATEWAY_A, dns=(f"{UPSTREAM}:{free_port}",))
    world.container("a1", net, A1)
    world.container("a2", net, "127.0.1.3")
    world.container("b1", world.network("netb", "127.0.2.0/24", GATEWAY_B, internal=True), B1)
    world.network("netc", "127.0.3.0/24", GATEWAY_C)  # its address is taken below: a listener down
    path = str(tmp_path / "dnsd.sock")
    config = ServerConfig(port=free_port, control_path=path, forward_timeout=1.5, max_inflight=1,
                          poll_interval=60.0)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind((GATEWAY_C, free_port))
    server = make_server(config, world)
    await server.start()

    async def stats() -> dict:
        line = (await control(path, "stats"))[0]
        assert "\n" not in line
        return json.loads(line)

    async def stats_become(expected: dict) -> None:
        """The counters of the UDP threads move just after their replies leave: wait a moment for them."""
        async with asyncio.timeout(SAFETY):
            while await stats() != expected:
                await asyncio.sleep(0.01)

    try:
        respond = lambda query: [] if b"silent" in query else [dns.reply(query, answers=("192.0.2.10",))]  # noqa
        async with fake_upstream(UPSTREAM, free_port, respond):
            await udp_ask(dns.query("a2"), GATEWAY_A, free_port)
            await udp_ask(dns.query("a2"), GATEWAY_A, free_port)  # remembered, counted all the same
            not_out = await udp_ask(dns.query("example.com"), GATEWAY_B, free_port, source=B1)  # internal only
            assert dns.parse(not_out).header.rcode == NXDOMAIN
            two_questions = bytearray(dns.query("a2"))
            two_questions[5] = 2
            assert dns.parse(await udp_ask(bytes(two_questions), GATEWAY_A, free_port)).header.rcode == FORMERR
            await tcp_ask([dns.query("a2")], GATEWAY_A, free_port)

            silent = asyncio.ensure_future(udp_ask(dns.query("silent.example"), GATEWAY_A, free_port))
            async with asyncio.timeout(SAFETY):
                while (await stats())["in_flight"] != 1:
                    await asyncio.sleep(0.01)
            refused = await udp_ask(dns.query("other.example"), GATEWAY_A, free_port)  # past the cap of 1
            assert dns.parse(refused).header.rcode == REFUSED
            assert dns.parse(await silent).header.rcode == SERVFAIL
            assert dns.rdata(await udp_ask(dns.query("ok.example"), GATEWAY_A, free_port)) == ["192.0.2.10"]

        world.container("fresh", net, "127.0.1.9")
        await control(path, "sync")  # a patch

        _, idle = await asyncio.open_connection(GATEWAY_A, free_port, local_addr=(A1, 0))
        monkeypatch.setattr(server.answerer, "handle", lambda *_: 1 / 0)  # a bug: the message is dropped
        reader, writer = await asyncio.open_connection(GATEWAY_A, free_port, local_addr=(A1, 0))
        writer.write(len(dns.query("a2")).to_bytes(2, "big") + dns.query("a2"))
        async with asyncio.timeout(SAFETY):
            assert await reader.read() == b""  # closed on the dropped message
        writer.close()

        await stats_become({"answered_udp": 4, "answered_tcp": 1, "forwarded": 2, "forward_servfail": 1,
                            "refused_inflight": 1, "nxdomain_no_upstream": 1, "malformed": 1, "internal_errors": 1,
                            "in_flight": 0, "reloads_full": 1, "reloads_patch": 1, "truncated_retried": 0,
                            "forward_merged": 0, "spoofed_replies": 0, "spoof_detected": 0, "forward_loops": 0,
                            "tcp_open": 1,
                            "generation": world.generation(), "listeners_up": 2, "listeners_down": 1})
        idle.close()
        await stats_become({**await stats(), "tcp_open": 0})
    finally:
        squatter.close()
        await server.close()


async def test_a_truncated_upstream_reply_is_asked_again_over_tcp_and_kept(world, free_port, tmp_path, dns,
                                                                          fake_upstream):
    """Issue 16, items 1 and 2: the client (no TCP fallback) gets the records; the next one gets them from the cache."""
    net = world.network("neta", "127.0.1.0/24", GATEWAY_A, dns=(f"{UPSTREAM}:{free_port}",))
    world.container("a1", net, A1)
    server = make_server(ServerConfig(port=free_port, control_path=str(tmp_path / "dnsd.sock"), forward_timeout=2),
                         world)
    await server.start()
    many = tuple(f"192.0.2.{i}" for i in range(1, 41))  # 40 A records: 652 bytes, over 512

    def respond(query: bytes) -> list[bytes]:
        full = dns.reply(query, answers=many)
        over_udp = upstream.queries[-1][0] == "udp"  # the query just received, as the fake counts it first
        return [dns.reply(query, tc=1) if len(full) > 512 and over_udp else full]

    try:
        async with fake_upstream(UPSTREAM, free_port, respond) as upstream:
            first = await udp_ask(dns.query("big.example", query_id=1), GATEWAY_A, free_port)
            second = await udp_ask(dns.query("big.example", query_id=2), GATEWAY_A, free_port)
    finally:
        await server.close()
    assert [protocol for protocol, _ in upstream.queries] == ["udp", "tcp"]  # the second reached no upstream
    for reply in (first, second):
        parsed = dns.parse(reply)
        assert len(reply) <= 512 and parsed.header.tc == 1 and 20 < len(parsed.rr) < 40
        assert dns.rdata(reply) == list(many[:len(parsed.rr)])
    assert server.stats.truncated_retried == 1 and server.cache.hits == 1


def metrics_config(free_port: int, tmp_path) -> tuple[ServerConfig, int]:
    """A server's config on ``free_port`` with /metrics on a free port of 127.0.0.1, and that port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    return ServerConfig(port=free_port, control_path=str(tmp_path / "dnsd.sock"), forward_timeout=1,
                        metrics=("127.0.0.1", metrics_port)), metrics_port


def scrape(port: int, address: str = "127.0.0.1") -> dict[str, float]:
    """/metrics as {sample with its labels, as the text has it: value}."""
    import urllib.request
    with urllib.request.urlopen(f"http://{address}:{port}/metrics", timeout=SAFETY) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def test_metrics_count_requests_responses_cache_and_upstream_failures(world, free_port, tmp_path, dns,
                                                                           fake_upstream):
    """Issue 16, item 3: the counters move as the queries go, named as CoreDNS names its own."""
    net = world.network("neta", "127.0.1.0/24", GATEWAY_A, dns=(f"{UPSTREAM}:{free_port}",))
    world.container("a1", net, A1)
    world.container("a2", net, "127.0.1.3")
    config, metrics_port = metrics_config(free_port, tmp_path)
    server = make_server(config, world)
    await server.start()
    try:
        respond = lambda query: [] if b"silent" in query else [dns.reply(query, answers=("192.0.2.10",))]  # noqa
        async with fake_upstream(UPSTREAM, free_port, respond):
            for _ in range(3):
                await udp_ask(dns.query("a2"), GATEWAY_A, free_port)
            await udp_ask(dns.query("a2", "AAAA"), GATEWAY_A, free_port)  # NODATA
            await tcp_ask([dns.query("a2")], GATEWAY_A, free_port)
            await udp_ask(dns.query("out.example"), GATEWAY_A, free_port)  # forwarded, then kept
            await udp_ask(dns.query("out.example"), GATEWAY_A, free_port)  # from the cache
            await udp_ask(dns.query("silent.example"), GATEWAY_A, free_port)  # the upstream times out: SERVFAIL
            async with asyncio.timeout(SAFETY):
                while True:
                    samples = await asyncio.to_thread(scrape, metrics_port)
                    if samples.get('dnsd_requests_total{network="neta",proto="udp",type="A"}') == 6:
                        break
                    await asyncio.sleep(0.02)
    finally:
        await server.close()
    assert samples['dnsd_requests_total{network="neta",proto="udp",type="AAAA"}'] == 1
    assert samples['dnsd_requests_total{network="neta",proto="tcp",type="A"}'] == 1
    assert samples['dnsd_responses_total{rcode="NOERROR",source="local"}'] == 5
    assert samples['dnsd_responses_total{rcode="NOERROR",source="cache"}'] == 1
    assert samples['dnsd_responses_total{rcode="NOERROR",source="upstream"}'] == 1
    assert samples['dnsd_responses_total{rcode="SERVFAIL",source="upstream"}'] == 1
    assert samples["dnsd_cache_hits_total"] == 1 and samples["dnsd_cache_entries"] == 1
    assert samples["dnsd_cache_misses_total"] >= 2  # out.example and silent.example, each looked for twice
    assert samples[f'dnsd_forward_failures_total{{reason="timeout",to="{UPSTREAM}:{free_port}"}}'] == 1
    assert samples["dnsd_forward_requests_total"] == 2
    assert samples['dnsd_request_duration_seconds_count{source="upstream"}'] == 2
    # UDP replies the listener threads sent (4 local, 1 cached) are timed per batch as "local", TCP ones one by one
    assert samples['dnsd_request_duration_seconds_count{source="local"}'] == 6


async def test_metrics_count_forgeries_merges_loops_and_cache_bytes(world, free_port, tmp_path, dns, fake_upstream):
    """Issue 24: a flood of mismatched replies, merged questions, a loop and the cache's bytes are all counted."""
    net = world.network("neta", "127.0.1.0/24", GATEWAY_A, dns=(f"{UPSTREAM}:{free_port}",))
    world.container("a1", net, A1)
    looping = world.network("netb", "127.0.2.0/24", GATEWAY_B, dns=(f"{GATEWAY_B}:{free_port}",))  # dnsd itself
    world.container("b1", looping, B1)
    config, metrics_port = metrics_config(free_port, tmp_path)
    server = make_server(config, world)
    await server.start()

    def respond(query):
        if b"silent" in query:  # the five identical questions all wait for the first one's query
            return []
        if b"forged" in query and box.queries[-1][0] == "udp":
            return [bytes([query[0] ^ 0xFF, i]) + dns.reply(query, answers=("6.6.6.6",))[2:] for i in range(3)]
        return [dns.reply(query, answers=("192.0.2.10",))]

    try:
        box = fake_upstream(UPSTREAM, free_port, respond)
        async with box:
            assert dns.rdata(await udp_ask(dns.query("forged.example"), GATEWAY_A, free_port)) == ["192.0.2.10"]
            await asyncio.gather(*[udp_ask(dns.query("silent.example", query_id=i), GATEWAY_A, free_port)
                                   for i in range(5)])
            looped = await udp_ask(dns.query("any.example"), GATEWAY_B, free_port, source=B1)
            assert dns.parse(looped).header.rcode == SERVFAIL
            samples = await asyncio.to_thread(scrape, metrics_port)
    finally:
        await server.close()
    assert samples["dnsd_forward_spoofed_replies_total"] == 3 and samples["dnsd_forward_spoof_detected_total"] == 1
    assert samples["dnsd_forward_merged_total"] == 4 and len([q for q in box.queries if b"silent" in q[1]]) == 1
    assert samples["dnsd_forward_loops_total"] == 1
    assert samples[f'dnsd_forward_failures_total{{reason="loop",to="{GATEWAY_B}:{free_port}"}}'] == 1
    assert samples["dnsd_cache_entries"] == 1 and samples["dnsd_cache_bytes"] == server.cache.bytes > 0
    assert samples["dnsd_cache_too_large_total"] == 0


async def test_a_metrics_address_in_use_is_one_clear_error(lan, free_port, tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = make_server(ServerConfig(port=free_port, control_path=str(tmp_path / "dnsd.sock"),
                                          metrics=("127.0.0.1", port)), lan)
        try:
            with pytest.raises(DnsdError, match=f"cannot serve metrics on 127.0.0.1 port {port}: "):
                await server.start()
        finally:
            await server.close()


@pytest.mark.parametrize(("text", "expected"), [
    ("", ("127.0.0.1", 9153)), (":9100", ("127.0.0.1", 9100)), ("10.0.0.1", ("10.0.0.1", 9153)),
    ("10.0.0.1:9100", ("10.0.0.1", 9100)), ("[::1]:9100", ("::1", 9100)), ("::1", ("::1", 9153)),
])
def test_metrics_endpoints_parse_with_defaults(text, expected):
    from dnsd.ops.metrics import parse_endpoint
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text", ["nowhere:1", "10.0.0.1:0", "10.0.0.1:x", "[::1]x"])
def test_bad_metrics_endpoints_are_refused(text):
    from dnsd.ops.metrics import parse_endpoint
    with pytest.raises(ValueError):
        parse_endpoint(text)
