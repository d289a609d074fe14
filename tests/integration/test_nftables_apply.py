"""netcore.nft_apply against the real nft and kernel, as root, in namespaces these tests create.

Every namespace is named nctnft<random>-<role>, lives only for one test and is
deleted in the fixture's finalizer, pass or fail; every nft call and sysctl
write happens inside one of them; the processes a test starts are killed by
PID. The "networks" are plain bridges with veths into small namespaces, built
with `ip -n`, so netcore's engine and store are not involved.
"""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import subprocess
import sys

import pytest

from netcore.errors import NetcoreError
from netcore.firewall import FirewallState, NetworkRules, apply as nft_apply
from netcore.firewall.nftables import render
from tests.support.tcp_peers import CONNECT, SEEN_ADDRESS_SERVER

if not shutil.which("nft", path=nft_apply.NFT_SEARCH_PATH):
    pytest.skip("nft is not installed (apt-get install nftables)", allow_module_level=True)

PREFIX = "nctnft"


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr}")
    return proc


class Lab:
    """Namespaces and processes of one test, all removed by ``close``."""

    def __init__(self):
        self.tag = f"{PREFIX}{secrets.token_hex(3)}"
        self.namespaces: list[str] = []
        self.started: list[subprocess.Popen] = []

    def netns(self, role: str) -> str:
        name = f"{self.tag}-{role}"
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def spawn(self, namespace: str, *argv: str) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", namespace, *argv], stdout=subprocess.PIPE, text=True)
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


@pytest.fixture
def lab():
    box = Lab()
    try:
        yield box
    finally:
        box.close()
        leftover = sh("ip", "netns", "list").stdout
        assert box.tag not in leftover, "teardown leaked namespaces"


def network(name: str, bridge: str, subnet: str, **kw) -> NetworkRules:
    return NetworkRules(id=secrets.token_hex(32) if "id" not in kw else kw.pop("id"), name=name, bridge=bridge,
                           subnet=subnet, gateway=str(ipaddress.ip_network(subnet)[1]), **kw)


def build_network(gw: str, container: str, bridge: str, subnet: str) -> str:
    """A bridge in ``gw`` holding the subnet's first address, and ``container`` on it with the second,
    routing everything through the bridge. Returns the container's address."""
    net = ipaddress.ip_network(subnet)
    gateway, address = str(net[1]), str(net[2])
    sh("ip", "-n", gw, "link", "add", bridge, "type", "bridge")
    sh("ip", "-n", gw, "addr", "add", f"{gateway}/{net.prefixlen}", "dev", bridge)
    sh("ip", "-n", gw, "link", "set", bridge, "up")
    veth = f"v{bridge}"[:15]
    sh("ip", "-n", gw, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", container)
    sh("ip", "-n", gw, "link", "set", veth, "master", bridge, "up")
    sh("ip", "-n", container, "addr", "add", f"{address}/{net.prefixlen}", "dev", "eth0")
    sh("ip", "-n", container, "link", "set", "eth0", "up")
    sh("ip", "-n", container, "route", "add", "default", "via", gateway)
    return address


def pings(namespace: str, address: str) -> bool:
    return sh("ip", "netns", "exec", namespace, "ping", "-c", "1", "-W", "1", address, check=False).returncode == 0


# -- the shell ----------------------------------------------------------------------------------


def test_apply_list_replace_detect_a_flush_and_delete(lab):
    gw = lab.netns("gw")
    one = render(FirewallState((network("front", "br-front", "10.201.1.0/24"),)))
    two = render(FirewallState((network("front", "br-front", "10.201.1.0/24", id="a" * 64),
                                network("back", "br-back", "10.201.2.0/24", id="b" * 64))))

    assert nft_apply.status(one, gw) == nft_apply.MISSING
    nft_apply.apply(one, gw)
    assert nft_apply.status(one, gw) == nft_apply.CURRENT
    assert f"netcore ruleset {one.digest}" in nft_apply.live_table(gw)

    nft_apply.apply(two, gw)  # the whole table replaced: nothing of the first rendering is left
    assert nft_apply.status(two, gw) == nft_apply.CURRENT
    assert nft_apply.status(one, gw) == nft_apply.DIFFERENT
    assert "10.201.2.0/24" in nft_apply.live_table(gw)

    sh("ip", "netns", "exec", gw, "nft", "flush", "ruleset")
    assert nft_apply.ensure(two, gw) == nft_apply.MISSING  # put back ...
    assert nft_apply.ensure(two, gw) == nft_apply.CURRENT  # ... and then left alone
    assert nft_apply.status(two, gw) == nft_apply.CURRENT

    sh("ip", "netns", "exec", gw, "nft", "flush", "table", "inet", "netcore")  # chains kept, rules gone
    assert nft_apply.ensure(two, gw) == nft_apply.DIFFERENT
    assert nft_apply.status(two, gw) == nft_apply.CURRENT

    sh("ip", "netns", "exec", gw, "nft", "delete", "rule", "inet", "netcore", "input", "handle",
       _first_handle(gw, "input"))  # one rule removed by hand
    assert nft_apply.status(two, gw) == nft_apply.DIFFERENT
    nft_apply.apply(two, gw)

    nft_apply.delete(gw)
    assert nft_apply.live_table(gw) is None
    assert nft_apply.status(render(FirewallState()), gw) == nft_apply.CURRENT
    nft_apply.delete(gw)  # deleting what is gone is no error
    nft_apply.apply(render(FirewallState()), gw)  # nor is applying the empty rendering


def _first_handle(namespace: str, chain: str) -> str:
    listing = sh("ip", "netns", "exec", namespace, "nft", "-a", "list", "chain", "inet", "netcore", chain).stdout
    handles = [line.rsplit("# handle ", 1)[1] for line in listing.splitlines()
               if "# handle" in line and "chain " not in line]
    return handles[0]


def test_a_rejected_script_changes_nothing_and_says_why_in_one_line(lab):
    gw = lab.netns("gw")
    good = render(FirewallState((network("front", "br-front", "10.201.1.0/24"),)))
    nft_apply.apply(good, gw)
    broken = good.script.replace("policy accept;", "policy acept;", 1)
    with pytest.raises(NetcoreError) as caught:
        nft_apply.apply(broken, gw)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("nft rejected netcore's ruleset in namespace") \
        and "Error" in message
    assert nft_apply.status(good, gw) == nft_apply.CURRENT  # the transaction was all or nothing


def test_forwarding_is_switched_on_once_in_the_namespace(lab):
    gw = lab.netns("gw")

    def read(key: str) -> str:
        return sh("ip", "netns", "exec", gw, "sysctl", "-n", key).stdout.strip()

    assert read("net.ipv4.ip_forward") == "0"
    assert nft_apply.enable_forwarding(gw) is True
    assert read("net.ipv4.ip_forward") == "1"
    assert nft_apply.enable_forwarding(gw) is False
    assert read("net.ipv6.conf.all.forwarding") == "0"
    assert nft_apply.enable_forwarding(gw, ipv6=True) is True
    assert read("net.ipv6.conf.all.forwarding") == "1"
    assert nft_apply.enable_forwarding(gw, ipv6=True) is False


# -- what the rules do to packets ---------------------------------------------------------------


def test_two_networks_cannot_reach_each_other_with_the_table_and_can_without(lab):
    gw, a, b = lab.netns("gw"), lab.netns("a"), lab.netns("b")
    address_a = build_network(gw, a, "br-a", "10.201.1.0/24")
    address_b = build_network(gw, b, "br-b", "10.201.2.0/24")
    nft_apply.enable_forwarding(gw)
    assert pings(a, address_b) and pings(b, address_a), "the gateway namespace does not route at all"

    ruleset = render(FirewallState((network("a", "br-a", "10.201.1.0/24"), network("b", "br-b", "10.201.2.0/24"))))
    nft_apply.apply(ruleset, gw)
    assert not pings(a, address_b)
    assert not pings(b, address_a)
    assert pings(a, "10.201.1.1"), "a container no longer reaches its own gateway"

    nft_apply.delete(gw)
    assert pings(a, address_b)


def test_masquerade_shows_the_uplink_address_to_the_outside(lab):
    gw, a, wan = lab.netns("gw"), lab.netns("a"), lab.netns("wan")
    build_network(gw, a, "br-a", "10.201.1.0/24")
    sh("ip", "-n", gw, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", wan)
    sh("ip", "-n", gw, "addr", "add", "198.51.100.1/24", "dev", "up0")
    sh("ip", "-n", gw, "link", "set", "up0", "up")
    sh("ip", "-n", wan, "addr", "add", "198.51.100.2/24", "dev", "eth0")
    sh("ip", "-n", wan, "link", "set", "eth0", "up")  # and no route back to 10.201.1.0/24
    nft_apply.enable_forwarding(gw)
    server = lab.spawn(wan, sys.executable, "-c", SEEN_ADDRESS_SERVER, "0.0.0.0", "8080")
    assert server.stdout.readline().strip() == "ready"

    def peer_seen() -> str:
        return sh("ip", "netns", "exec", a, sys.executable, "-c", CONNECT, "198.51.100.2", "8080").stdout.strip()

    assert peer_seen().startswith("failed"), "the outside answers a private source: the test proves nothing"
    plain = network("a", "br-a", "10.201.1.0/24")
    nft_apply.apply(render(FirewallState((plain,))), gw)
    assert peer_seen() == "198.51.100.1"

    nft_apply.apply(render(FirewallState((network("a", "br-a", "10.201.1.0/24", masquerade=False),))), gw)
    assert peer_seen().startswith("failed")
    nft_apply.apply(render(FirewallState((network("a", "br-a", "10.201.1.0/24", internal=True),))), gw)
    assert peer_seen().startswith("failed")
    sh("ip", "-n", wan, "route", "add", "10.201.1.0/24", "via", "198.51.100.1")  # a way back now exists ...
    assert peer_seen().startswith("failed"), "an internal network let a connection out"  # ... still nothing


UDP_ECHO = """
import socket
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("10.201.1.1", 53))
print("ready", flush=True)
while True:
    data, peer = server.recvfrom(512)
    server.sendto(data, peer)
"""

UDP_ASK = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
s.sendto(b"q", ("10.201.1.1", 53))
try:
    print(s.recv(512).decode())
except OSError:
    print("no answer")
"""


def test_dns_to_the_gateway_passes_netcores_table_but_a_host_drop_policy_needs_its_own_accept(lab):
    """What nftables.py documents: an accept ends only its own base chain, a drop anywhere is final."""
    gw, a = lab.netns("gw"), lab.netns("a")
    build_network(gw, a, "br-a", "10.201.1.0/24")
    server = lab.spawn(gw, sys.executable, "-c", UDP_ECHO)
    assert server.stdout.readline().strip() == "ready"

    def asks() -> str:
        return sh("ip", "netns", "exec", a, sys.executable, "-c", UDP_ASK).stdout.strip()

    nft_apply.apply(render(FirewallState((network("a", "br-a", "10.201.1.0/24"),))), gw)
    assert asks() == "q"
    host = "add table inet host { chain input { type filter hook input priority filter; policy drop; }; }"
    sh("ip", "netns", "exec", gw, "nft", host)
    assert asks() == "no answer"  # netcore's accept at priority -10 does not override it
    sh("ip", "netns", "exec", gw, "nft", "add rule inet host input iifname br-a meta l4proto { tcp, udp } "
       "th dport 53 accept")
    assert asks() == "q"
