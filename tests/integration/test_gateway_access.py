"""What reaches the gateway namespace (the "host" in sandbox mode) from containers and from outside:
issue 23 item 2 (an --internal network reaches the host) and issue 24 item 1 (only real clients get
dnsd's answers), end to end with real clients (dig, ping, TCP and UDP peers) in sandbox mode.

Every attacker is a container or a namespace of the test's own sandbox; every upstream is
fake_upstream.py inside the sandbox's gateway namespace, logging what reaches it, so a test can tell
whether dnsd forwarded a query. Traffic goes only to addresses inside these namespaces.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from netcore.firewall import apply as nft_apply
from tests.support.dns import dig
from tests.support.tcp_peers import CONNECT, SEEN_ADDRESS_SERVER, UDP_ASK, UDP_NAME_SERVER
from tests.support.upstream import FAKE_UPSTREAM

if not nft_apply.shutil.which("nft", path=nft_apply.NFT_SEARCH_PATH):
    pytest.skip("nft is not installed (apt-get install nftables)", allow_module_level=True)

UPLINK, OUTSIDER = "198.51.100.1", "198.51.100.2"  # the gateway namespace's uplink, a namespace beyond it
UPSTREAM = "127.0.0.2"  # the fake upstream, on the gateway namespace's loopback (a network's --dns)


# ``UDP_SINK ADDRESS PORT``: prints ``ready`` once bound, then ``got SOURCE`` for every datagram, answering none.
UDP_SINK = """
import socket, sys
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    print("got", sink.recvfrom(512)[1][0], flush=True)
"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=check)


def namespace_of(box, container: str) -> str:
    return json.loads(box.nc("inspect", container).stdout)[0]["NetworkSettings"]["SandboxKey"].rsplit("/", 1)[1]


def ip_of(box, container: str, network: str, key: str = "IPAddress") -> str:
    return json.loads(box.nc("inspect", container).stdout)[0]["NetworkSettings"]["Networks"][network][key]


def in_container(box, container: str, *argv: str) -> None:
    """A command run as root inside the container's namespace (what a process that is root there can do)."""
    sh("ip", "netns", "exec", namespace_of(box, container), *argv)


def tcp(box, where: str, address: str, port: int) -> str:
    """What a TCP client in namespace ``where`` reads from ``address``:``port`` (``failed: ...`` if nothing)."""
    return sh("ip", "netns", "exec", where, sys.executable, "-c", CONNECT, address, str(port)).stdout.strip()


def udp(box, where: str, address: str, port: int) -> str:
    return sh("ip", "netns", "exec", where, sys.executable, "-c", UDP_ASK, address, str(port)).stdout.strip()


def pings(where: str, address: str) -> bool:
    return sh("ip", "netns", "exec", where, "ping", "-c1", "-W1", address, check=False).returncode == 0


def dig_from(where: str, *args: str) -> tuple[str, list[str]]:
    """(status, answers) of one dig run in namespace ``where``; NO-REPLY when nothing came back."""
    out = sh("ip", "netns", "exec", where, "dig", "+time=1", "+tries=1", "+noall", "+comments", "+answer",
             *args, check=False).stdout
    status = next((line.split("status: ")[1].split(",")[0] for line in out.splitlines() if "status: " in line),
                  "NO-REPLY")
    answers = [line.split()[-1] for line in out.splitlines() if line and not line.startswith(";")]
    return status, answers


def start_upstream(box, log: str) -> None:
    """fake_upstream.py on the gateway namespace's 127.0.0.2:53, appending each query it gets to ``log``."""
    proc = box.spawn_in(box.prefix, sys.executable, FAKE_UPSTREAM, "--address", UPSTREAM, "--log", log,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.poll() is not None else ""


def asked_upstream(log: str) -> str:
    with open(log) as f:
        return f.read()


def serve_in_gateway(box, tcp_port: int, udp_port: int, address: str = "0.0.0.0", family: int = 4) -> None:
    """A TCP server answering with the source it sees and a UDP one answering ``gw SOURCE``, in the gateway
    namespace on every address (a host service: sshd, a database, a host's own resolver)."""
    tcp_server = SEEN_ADDRESS_SERVER if family == 4 else SEEN_ADDRESS_SERVER.replace(
        "socket.socket()", "socket.socket(socket.AF_INET6)")
    server = box.spawn_in(box.prefix, sys.executable, "-c", tcp_server, address, str(tcp_port),
                          stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready"
    if udp_port:
        server = box.spawn_in(box.prefix, sys.executable, "-c", UDP_NAME_SERVER, address, str(udp_port), "gw",
                              stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "ready"


@pytest.fixture
def uplink(sandbox):
    """The sandbox's gateway namespace with an "outside" namespace on a veth (the gateway namespace is
    198.51.100.1 there, the outsider 198.51.100.2)."""
    sandbox.nc("firewall-reload")  # the first action makes the gateway namespace
    sandbox.neighbour("out", "up0", UPLINK, OUTSIDER)
    return sandbox


# -- issue 23 item 2: an internal network reaches nothing of the gateway namespace but its DNS ------------------


def test_an_internal_network_reaches_only_dns_on_its_own_gateway(uplink):
    box, gw = uplink, uplink.prefix
    box.nc("network", "create", "--internal", "--subnet", "10.77.1.0/24", "--ipv6", "--subnet", "fd00:77:1::/64",
           "vault")
    box.nc("network", "create", "--subnet", "10.77.2.0/24", "app")
    box.nc("run", "--name", "v1", "--net", "vault")
    box.nc("run", "--name", "v2", "--net", "vault")
    box.nc("run", "--name", "a1", "--net", "app")
    serve_in_gateway(box, 9090, 9091)
    serve_in_gateway(box, 9092, 0, "::", family=6)
    v1 = namespace_of(box, "v1")
    # root in its namespace, v1 routes everything through its gateway (Docker gives it no default route)
    in_container(box, "v1", "ip", "route", "add", "default", "via", "10.77.1.1")
    in_container(box, "v1", "ip", "-6", "route", "add", "default", "via", "fd00:77:1::1")

    for address in ("10.77.1.1", UPLINK, "10.77.2.1", "172.17.0.1"):  # its gateway, the uplink, other gateways
        assert tcp(box, v1, address, 9090).startswith("failed"), address
        assert udp(box, v1, address, 9091) == "no answer", address
        assert not pings(v1, address), address
    assert tcp(box, v1, "fd00:77:1::1", 9092).startswith("failed")
    assert not pings(v1, "fd00:77:1::1")
    # its DNS still works, over UDP and TCP, IPv4 and IPv6 (neighbour discovery passes), and between
    # its containers everything does
    v2 = ip_of(box, "v2", "vault")
    assert dig_from(v1, "@10.77.1.1", "v2") == ("NOERROR", [v2])
    assert dig_from(v1, "@10.77.1.1", "+tcp", "v2") == ("NOERROR", [v2])
    assert dig_from(v1, "@fd00:77:1::1", "v2") == ("NOERROR", [v2])
    assert box.exec("v1", "getent", "ahostsv4", "v2").stdout.split()[0] == v2
    assert pings(v1, v2)
    # the gateway namespace still reaches its containers (moby/moby#47356), replies included
    assert pings(gw, v2) and pings(gw, ip_of(box, "v2", "vault", "GlobalIPv6Address"))
    # a normal network's containers reach the gateway namespace's services, as on Docker (README decision)
    a1 = namespace_of(box, "a1")
    assert tcp(box, a1, "10.77.2.1", 9090) == ip_of(box, "a1", "app")
    assert udp(box, a1, UPLINK, 9091).startswith("gw ")


def test_an_internal_network_does_not_reach_published_ports_through_a_host_address(uplink):
    """The same hole by way of DNAT: a published port of another network is a host address too. No reply
    comes back either way (the internal network's own chain drops it), so the test watches what arrives:
    a datagram that reaches the published container is data out of the internal network."""
    box = uplink
    box.nc("network", "create", "--internal", "--subnet", "10.77.3.0/24", "vault")
    box.nc("network", "create", "--subnet", "10.77.4.0/24", "app")
    box.nc("run", "--name", "v1", "--net", "vault")
    box.nc("run", "--name", "web", "--net", "app", "-p", "8080:80", "-p", "8053:53/udp")
    web = namespace_of(box, "web")
    server = box.spawn_in(web, sys.executable, "-c", SEEN_ADDRESS_SERVER, "0.0.0.0", "80", stdout=subprocess.PIPE,
                          text=True)
    assert server.stdout.readline().strip() == "ready"
    sink = box.spawn_in(web, sys.executable, "-c", UDP_SINK, "0.0.0.0", "53", stdout=subprocess.PIPE, text=True)
    assert sink.stdout.readline().strip() == "ready"
    v1 = namespace_of(box, "v1")
    in_container(box, "v1", "ip", "route", "add", "default", "via", "10.77.3.1")
    for address in (UPLINK, "10.77.3.1", "10.77.4.1"):
        assert tcp(box, v1, address, 8080).startswith("failed"), address
        assert udp(box, v1, address, 8053) == "no answer", address
    assert tcp(box, box.prefix, UPLINK, 8080) == UPLINK  # published and reachable from elsewhere
    assert udp(box, box.prefix, UPLINK, 8053) == "no answer"  # the sink answers nothing ...
    assert sink.stdout.readline().split() == ["got", UPLINK]  # ... and this is the first datagram it got


# -- issue 24 item 1: only a network's own clients get dnsd's answers --------------------------------------------


def test_an_internal_container_with_a_spare_address_gets_no_forwarded_answer(sandbox, tmp_path):
    """Attack (a), the class of Docker's CVE-2024-29018: a DNS tunnel out of an internal network through
    another network's gateway, from an unused address of its own subnet (a source that is no container)."""
    box, log = sandbox, str(tmp_path / "upstream.log")
    box.nc("network", "create", "--subnet", "10.78.2.0/24", "--dns", UPSTREAM, "app")
    box.nc("network", "create", "--internal", "--subnet", "10.78.1.0/24", "vault")
    box.nc("run", "--name", "a1", "--net", "app")
    box.nc("run", "--name", "v1", "--net", "vault")
    start_upstream(box, log)
    assert dig(box, "a1", "@10.78.2.1", "real.upstream.test")[:2] == ("NOERROR", ["192.0.2.1"])  # the way out works
    assert "real.upstream.test" in asked_upstream(log)

    v1 = namespace_of(box, "v1")
    in_container(box, "v1", "ip", "addr", "add", "10.78.1.77/24", "dev", "eth0")
    in_container(box, "v1", "ip", "route", "add", "10.78.2.1/32", "dev", "eth0")  # app's gateway, via its bridge
    for source in ("10.78.1.77", ip_of(box, "v1", "vault")):
        for proto in ("+notcp", "+tcp"):
            name = f"tunnel{source.rsplit('.', 1)[1]}{proto[1:]}.upstream.test"
            status, answers = dig_from(v1, "-b", source, "@10.78.2.1", proto, name)
            assert "192.0.2.1" not in answers and status in ("NO-REPLY", "REFUSED"), (source, proto, status)
            assert name not in asked_upstream(log), (source, proto)
    # and through its own gateway, from either address: local names, never a forwarded answer
    assert dig_from(v1, "-b", "10.78.1.77", "@10.78.1.1", "tunnel.upstream.test") == ("NXDOMAIN", [])
    assert dig_from(v1, "-b", "10.78.1.77", "@10.78.1.1", "v1") == ("NOERROR", [ip_of(box, "v1", "vault")])
    assert "tunnel.upstream.test" not in asked_upstream(log)


def test_a_spoofed_source_from_the_uplink_is_neither_answered_nor_forwarded(uplink, tmp_path):
    """Attack (b): blind recursion for outsiders, from a namespace on the gateway namespace's uplink with a
    source inside a served subnet (an unused address, and a container's own)."""
    box, log = uplink, str(tmp_path / "upstream.log")
    box.nc("network", "create", "--subnet", "10.79.1.0/24", "--dns", UPSTREAM, "app")
    box.nc("run", "--name", "a1", "--net", "app")
    start_upstream(box, log)
    outsider = f"{box.prefix}out"
    a1 = ip_of(box, "a1", "app")
    for spoofed in ("10.79.1.99", a1):
        sh("ip", "-n", outsider, "addr", "add", f"{spoofed}/32", "dev", "eth0")
    sh("ip", "-n", outsider, "route", "add", "10.79.1.1/32", "via", UPLINK)
    for spoofed in ("10.79.1.99", a1):
        for proto in ("+notcp", "+tcp"):
            name = f"spoof{spoofed.rsplit('.', 1)[1]}{proto[1:]}.upstream.test"
            assert dig_from(outsider, "-b", spoofed, "@10.79.1.1", proto, name) == ("NO-REPLY", []), spoofed
            # dig gave up after its timeout: a forwarded query would have reached the upstream by now
            assert name not in asked_upstream(log), (spoofed, proto)
    assert dig(box, "a1", "@10.79.1.1", "real.upstream.test")[:2] == ("NOERROR", ["192.0.2.1"])  # a1 itself is
    assert "real.upstream.test" in asked_upstream(log)
    # the gateway namespace itself still asks any gateway (README "Names from the host")
    assert dig_from(box.prefix, "@10.79.1.1", "a1.app") == ("NOERROR", [a1])
