"""Shared helpers of the dnsd unit tests: a small world of model records, and dnslib to read and write messages."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dnslib
import pytest

from netcore.model import Attached, Container, Endpoint, Network, group_by_container


def _hex_id(kind: str, name: str) -> str:
    return hashlib.sha256(f"{kind}/{name}".encode()).hexdigest()


class DnsWorld:
    """Networks, containers and endpoints as netcore's store would hold them, with its generation and change feed.

    A ``dnsd.core.records.RecordSource``: every method that changes the world is one
    generation, and the feed records which container it touched (None: a network).
    """

    def __init__(self):
        self.networks: list[Network] = []
        self.containers: list[Container] = []
        self.endpoints: list[Endpoint] = []
        self.current_generation = 1
        self.changes: list[tuple[int, str | None]] = []  # (generation, container id, or None for a network)

    def _changed(self, container_id: str | None) -> None:
        self.current_generation += 1
        self.changes.append((self.current_generation, container_id))

    def network(self, name: str, subnet: str, gateway: str, *, subnet6: str | None = None,
                gateway6: str | None = None, internal: bool = False, dns: tuple[str, ...] = (),
                options: dict | None = None) -> Network:
        network = Network(id=_hex_id("network", name), name=name, bridge=f"br-{name}"[:15], subnet=subnet,
                          gateway=gateway, subnet6=subnet6, gateway6=gateway6, internal=internal, dns=dns,
                          options=dict(options or {}))
        self.networks.append(network)
        self._changed(None)
        return network

    def container(self, name: str, network: Network | None = None, ipv4: str | None = None, *,
                  ipv6: str | None = None, aliases: tuple[str, ...] = (), hostname: str | None = None,
                  dns: tuple[str, ...] = ()) -> Container:
        container = Container(id=_hex_id("container", name), name=name, hostname=hostname or name,
                              netns=f"ns-{name}", dns=dns)
        self.containers.append(container)
        self._changed(container.id)
        if network is not None:
            self.attach(container, network, ipv4, ipv6=ipv6, aliases=aliases)
        return container

    def attach(self, container: Container, network: Network, ipv4: str | None, *, ipv6: str | None = None,
               aliases: tuple[str, ...] = ()) -> Endpoint:
        taken = {e.ifname for e in self.endpoints if e.container_id == container.id}
        index = next(index for index in range(len(taken) + 1) if f"eth{index}" not in taken)
        endpoint = Endpoint(id=_hex_id("endpoint", f"{container.name}/{network.name}"), container_id=container.id,
                            network_id=network.id, ifname=f"eth{index}", host_ifname=f"veth{container.id[:7]}{index}",
                            mac="02:42:00:00:00:00", ipv4=ipv4, ipv6=ipv6, aliases=aliases)
        self.endpoints.append(endpoint)
        self._changed(container.id)
        return endpoint

    def detach(self, container: Container, network: Network) -> None:
        self.endpoints = [e for e in self.endpoints if (e.container_id, e.network_id) != (container.id, network.id)]
        self._changed(container.id)

    def remove_container(self, container: Container) -> None:
        self.containers.remove(container)
        self.endpoints = [e for e in self.endpoints if e.container_id != container.id]
        self._changed(container.id)

    def remove_network(self, network: Network) -> None:
        self.networks.remove(network)
        self.endpoints = [e for e in self.endpoints if e.network_id != network.id]
        self._changed(None)

    def records(self) -> tuple[list[Network], list[Container], list[Endpoint]]:
        return list(self.networks), list(self.containers), list(self.endpoints)

    # -- the RecordSource a DnsServer reads ------------------------------------

    def generation(self) -> int:
        return self.current_generation

    @contextmanager
    def dns_records(self) -> Iterator[tuple[list[Network], Iterator[Attached]]]:
        yield list(self.networks), iter(group_by_container(self.containers, self.endpoints))

    def changes_since(self, generation: int) -> tuple[int, set[str] | None]:
        if generation > self.current_generation:
            return self.current_generation, None
        touched = {container_id for changed_at, container_id in self.changes if changed_at > generation}
        return self.current_generation, None if None in touched else touched

    def container_records(self, ids: set[str]) -> list[Attached]:
        return group_by_container([c for c in self.containers if c.id in ids], self.endpoints)


class DnsMessages:
    """Queries built and replies read by dnslib, the reference these tests trust."""

    @staticmethod
    def query(name: str, qtype: str = "A", *, query_id: int = 0x1234, edns_payload: int | None = None,
              recursion_desired: bool = True) -> bytes:
        message = dnslib.DNSRecord(dnslib.DNSHeader(id=query_id, rd=int(recursion_desired)),
                                   q=dnslib.DNSQuestion(name, getattr(dnslib.QTYPE, qtype)))
        if edns_payload is not None:
            message.add_ar(dnslib.EDNS0(udp_len=edns_payload))
        return bytes(message.pack())

    @staticmethod
    def parse(data: bytes) -> dnslib.DNSRecord:
        return dnslib.DNSRecord.parse(data)

    @staticmethod
    def rdata(data: bytes) -> list[str]:
        """The answers' data in order: addresses, or names for PTR."""
        return [str(record.rdata) for record in dnslib.DNSRecord.parse(data).rr]

    @staticmethod
    def reply(query: bytes, rcode: int = 0, answers: tuple[str, ...] = (), **flags) -> bytes:
        """An upstream's reply to ``query`` with A records holding ``answers``."""
        request = dnslib.DNSRecord.parse(query)
        reply = request.reply()
        reply.header.rcode = rcode
        for name, value in flags.items():
            setattr(reply.header, name, value)
        for address in answers:
            reply.add_answer(dnslib.RR(request.q.qname, dnslib.QTYPE.A, rdata=dnslib.A(address), ttl=60))
        return bytes(reply.pack())


class FakeUpstream:
    """A DNS server on loopback that answers each query with whatever ``respond(query)`` lists (nothing: silent)."""

    def __init__(self, address: str, port: int, respond: Callable[[bytes], list[bytes]], spoof_from: str | None = None):
        self.address = address
        self.port = port
        self.respond = respond
        self.spoof_from = spoof_from  # send UDP replies from this other address instead
        self.queries: list[tuple[str, bytes]] = []  # (protocol, query)
        self._udp = None
        self._tcp = None
        self._connections: set[asyncio.Task] = set()

    async def __aenter__(self) -> FakeUpstream:
        loop = asyncio.get_running_loop()
        upstream = self

        class Protocol(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, source):
                upstream.queries.append(("udp", data))
                for reply in upstream.respond(data):
                    if upstream.spoof_from:
                        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                            other.bind((upstream.spoof_from, 0))
                            other.sendto(reply, source)
                    else:
                        self.transport.sendto(reply, source)

        self._udp, _ = await loop.create_datagram_endpoint(Protocol, local_addr=(self.address, self.port))
        self._tcp = await asyncio.start_server(self._serve_tcp, self.address, self.port)
        return self

    async def _serve_tcp(self, reader, writer):
        self._connections.add(asyncio.current_task())
        try:
            while True:
                length = int.from_bytes(await reader.readexactly(2), "big")
                query = await reader.readexactly(length)
                self.queries.append(("tcp", query))
                for reply in self.respond(query):
                    writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aexit__(self, *exc_info):
        self._udp.close()
        self._tcp.close()
        if self._connections:  # the forwarder closes its end; let each connection see that and end
            await asyncio.wait(self._connections, timeout=2)


@pytest.fixture(autouse=True, scope="session")
def no_host_nameservers(tmp_path_factory):
    """Every dnsd these tests start reads its host nameservers from an empty file, never the machine's
    /etc/resolv.conf: no unit test sends a query to the machine's own upstream DNS (a test that needs an
    upstream names one of its own on loopback)."""
    from dnsd.app import RESOLV_CONF_ENV

    empty = tmp_path_factory.mktemp("resolv") / "resolv.conf"
    empty.write_text("# no nameserver: the unit tests' dnsd forwards nowhere unless a test says where\n")
    mp = pytest.MonkeyPatch()
    mp.setenv(RESOLV_CONF_ENV, str(empty))
    yield
    mp.undo()


@pytest.fixture(autouse=True, scope="session")
def no_agent_started(tmp_path_factory):
    """No unit test starts netcored or reaches one of the machine's: a command a test runs through the CLI goes
    to a state dir of the session's own (never /var/lib/netcore, where a command once started a host-mode
    agent), and starting an agent there fails the test with one line instead of touching the kernel (tests
    that need an agent run one in a thread on the in-memory kernel: tests/unit/netcore/test_agent.py)."""
    from netcore.agent.client import AgentClient
    from netcore.errors import NetcoreError

    def refuse(self):
        raise NetcoreError(f"the unit tests start no netcored (state dir {self.state_dir})")

    mp = pytest.MonkeyPatch()
    mp.setenv("NETCORE_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    mp.delenv("NETCORE_NETNS", raising=False)
    mp.setattr(AgentClient, "_start", refuse)
    yield
    mp.undo()


@pytest.fixture
def world() -> DnsWorld:
    return DnsWorld()


@pytest.fixture
def new_world() -> type[DnsWorld]:
    """For tests that need a fresh world per example (hypothesis)."""
    return DnsWorld


@pytest.fixture
def dns() -> type[DnsMessages]:
    return DnsMessages


@pytest.fixture
def fake_upstream() -> type[FakeUpstream]:
    return FakeUpstream


@pytest.fixture
def free_port() -> int:
    """A high UDP and TCP port free on 127.0.0.1, used on every 127.0.0.0/8 address of the test.

    Free for TCP as the servers bind (SO_REUSEADDR, as dnsd's listeners and asyncio's servers do) on any
    address: the TCP probe binds the wildcard (and never listens). A port the kernel hands out for UDP may
    still be held for TCP by an earlier connection in TIME_WAIT (the forwarder's connections to fake upstreams
    leave hundreds): such a port is passed over for another.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise OSError("no port free for both UDP and TCP in 100 tries")
