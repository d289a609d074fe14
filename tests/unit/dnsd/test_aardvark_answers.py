"""aardvark-dns's own integration suite (test/*.bats at its tag v1.4.0), its scenarios against dnsd's helper.

The suite runs netavark, which writes the config directory and starts the DNS
server; here the files are written as netavark 1.4 writes them and the helper
runs as netavark starts it (``aardvark-dns --config DIR -p PORT run``), on
loopback addresses, without root: each container is an address of 127/8, the
client socket bound to it as a container's would be. Scenarios and assertions
are the suite's (200-two-networks, 300-three-networks, 500-reverse-lookups);
tests/integration/test_podman.py runs them with real Podman. The suite's own
run, against Debian's aardvark-dns and against dnsd: docs (i23-dnsd).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading

import dnslib
import pytest

import dnsd.app
from dnsd import aardvark
from dnsd.app import RESOLV_CONF_ENV
from dnsd.core.config import ServerConfig
from dnsd.core.dialect import podman
from dnsd.core.snapshot import Upstream
from tests.support.aardvark import Server

ONE, TWO, ABTWO, CONE = "1" * 64, "2" * 64, "3" * 64, "4" * 64


def ask(server: Server, name: str, client: str, gateway: str, qtype: str = "A") -> dnslib.DNSRecord:
    """A query from the container at ``client`` (its own source address) to the gateway at ``gateway``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((client, 0))
        sock.settimeout(2)
        sock.sendto(dnslib.DNSRecord.question(name, qtype).pack(), (gateway, server.port))
        return dnslib.DNSRecord.parse(sock.recv(4096))


def addresses(reply: dnslib.DNSRecord) -> list[str]:
    return [str(record.rdata) for record in reply.rr]


@pytest.fixture
def nxdomain_upstream(tmp_path, monkeypatch):
    """An upstream on loopback answering NXDOMAIN to every query, the one the helper's resolv.conf names (the
    suite's tests with an upstream in every test): names dnsd forwards get an answer, and none leaves the
    machine."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                query, client = sock.recvfrom(4096)
            except TimeoutError:
                continue
            reply = dnslib.DNSRecord.parse(query).reply()
            reply.header.rcode = dnslib.RCODE.NXDOMAIN
            sock.sendto(reply.pack(), client)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    resolv = tmp_path / "upstream-resolv.conf"
    resolv.write_text(f"nameserver 127.0.0.1:{sock.getsockname()[1]}\n")
    monkeypatch.setenv(RESOLV_CONF_ENV, str(resolv))
    yield
    stop.set()
    thread.join()
    sock.close()


@pytest.fixture
def serve(helper, tmp_path, port, nxdomain_upstream):
    servers = []

    def start(files: dict[str, str]) -> Server:
        for name, text in files.items():
            (tmp_path / name).write_text(text)
        server = Server(helper, tmp_path, port)
        assert server.started.returncode == 0, server.started.stderr
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_two_subnets_with_isolated_containers_and_one_shared(serve):
    """200-two-networks.bats "two subnets with isolated container and one shared": abtwo, on both networks, asking
    its own name through either gateway gets both its addresses (dnsd answered only the asked network's)."""
    server = serve({"podman1": f"127.0.1.1\n{ONE} 127.0.1.2  aone\n{ABTWO} 127.0.1.3  abtwo\n",
                    "podman2": f"127.0.2.1\n{TWO} 127.0.2.2  bone\n{ABTWO} 127.0.2.3  abtwo\n"})
    assert addresses(ask(server, "abtwo", "127.0.1.2", "127.0.1.1")) == ["127.0.1.3"]  # aone sees abtwo on a
    assert addresses(ask(server, "bone", "127.0.1.2", "127.0.1.1")) == []  # ...and not bone
    assert addresses(ask(server, "abtwo", "127.0.2.2", "127.0.2.1")) == ["127.0.2.3"]
    assert addresses(ask(server, "aone", "127.0.2.2", "127.0.2.1")) == []
    assert addresses(ask(server, "aone", "127.0.1.3", "127.0.1.1")) == ["127.0.1.2"]
    assert addresses(ask(server, "bone", "127.0.2.3", "127.0.2.1")) == ["127.0.2.2"]
    for gateway in ("127.0.1.1", "127.0.2.1"):  # check ab2 from itself, from the a side and the b side
        assert sorted(addresses(ask(server, "abtwo", "127.0.1.3", gateway))) == ["127.0.1.3", "127.0.2.3"]


def test_three_subnets_one_container_on_two_of_them_network_connect(serve):
    """300-three-networks.bats "three subnets, one container on two of the subnets, network connect": aone (a and
    b, alias aone_nw on b) and cone (c and b, alias cone_nw on b) resolve each other, aliases included, through
    the gateways of their own first networks."""
    server = serve({"podman1": f"127.0.1.1\n{ONE} 127.0.1.2  aone\n",
                    "podman2": f"127.0.2.1\n{ONE} 127.0.2.2  aone,aone_nw\n{CONE} 127.0.2.3  cone,cone_nw\n",
                    "podman3": f"127.0.3.1\n{CONE} 127.0.3.2  cone\n"})
    assert addresses(ask(server, "cone", "127.0.1.2", "127.0.2.1")) == ["127.0.2.3"]
    assert addresses(ask(server, "cone", "127.0.1.2", "127.0.1.1")) == ["127.0.2.3"]
    assert addresses(ask(server, "cone_nw", "127.0.1.2", "127.0.1.1")) == ["127.0.2.3"]
    assert addresses(ask(server, "aone", "127.0.3.2", "127.0.2.1")) == ["127.0.2.2"]
    assert addresses(ask(server, "aone", "127.0.3.2", "127.0.3.1")) == ["127.0.2.2"]
    assert addresses(ask(server, "aone_nw", "127.0.3.2", "127.0.3.1")) == ["127.0.2.2"]


def test_reverse_lookups_answer_every_name_of_the_container(serve):
    """500-reverse-lookups.bats "check reverse lookups": the reverse name of a container's address answers its
    name and each alias, bare (``atwo.``, ``a2.``, ``2a.``; dnsd answered ``atwo.podman1.`` alone)."""
    server = serve({"podman1": f"127.0.1.1\n{ONE} 127.0.1.2  aone,a1,1a\n{TWO} 127.0.1.3  atwo,a2,2a\n"})
    reverse = ask(server, "3.1.0.127.in-addr.arpa", "127.0.1.2", "127.0.1.1", "PTR")
    assert [str(record.rdata) for record in reverse.rr] == ["atwo.", "a2.", "2a."]
    reverse = ask(server, "2.1.0.127.in-addr.arpa", "127.0.1.3", "127.0.1.1", "PTR")
    assert [str(record.rdata) for record in reverse.rr] == ["aone.", "a1.", "1a."]


async def test_a_sighup_reads_the_hosts_nameservers_again(tmp_path, free_port, monkeypatch):
    """aardvark-dns 1.4 makes its servers anew at every SIGHUP, reading /etc/resolv.conf again (1.12 again,
    cc25b2f): a container started after the host's resolver changed is forwarded to the new one. In process,
    the nameservers read from a list, the SIGHUP sent to this process."""
    (tmp_path / "net").write_text(f"127.0.0.1\n{ONE} 127.0.0.2  web\n")
    made, real = [], dnsd.app.make_server
    monkeypatch.setattr(dnsd.app, "make_server", lambda config, records: made.append(real(config, records))
                        or made[-1])
    read = iter([(("192.0.2.9", 53),)])
    config = ServerConfig(port=free_port, upstreams=(Upstream("192.0.2.1", 53),), dialect=podman())
    serving = asyncio.create_task(aardvark.serve(aardvark.AardvarkRecords(str(tmp_path)), config, None,
                                                 lambda: next(read)))

    def upstreams() -> tuple:
        forward = made[0].answerer.handle(bytes(dnslib.DNSRecord.question("example.com").pack()), "127.0.0.2",
                                          "127.0.0.1", False)
        return forward.upstream_groups

    try:
        async with asyncio.timeout(5):
            while not made or made[0].generation is None:
                await asyncio.sleep(0.01)
            assert upstreams() == ((Upstream("192.0.2.1", 53),),)
            os.kill(os.getpid(), signal.SIGHUP)
            while upstreams() != ((Upstream("192.0.2.9", 53),),):
                await asyncio.sleep(0.01)
    finally:
        made[0].request_stop()
        await serving
