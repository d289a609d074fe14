"""Published ports end to end (issue 14), in sandbox mode: a "LAN" namespace joined to the gateway namespace
by a veth stands for the machines next to the host; every rule, held port and conntrack entry lives in the
sandbox's namespaces, and traffic goes only to addresses inside them."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from netcore.firewall import apply as nft_apply, desired_state
from netcore.firewall.nftables import render
from netcore.store import Store
from tests.support.sandbox import wait_for
from tests.support.tcp_peers import CONNECT, SEEN_ADDRESS_SERVER, UDP_ASK, UDP_NAME_SERVER, UDP_STREAM

if not nft_apply.shutil.which("nft", path=nft_apply.NFT_SEARCH_PATH):
    pytest.skip("nft is not installed (apt-get install nftables)", allow_module_level=True)

HOST_LAN, NEIGHBOUR = "192.0.2.1", "192.0.2.2"  # the host's LAN address, a LAN neighbour's


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=check)


def in_ns(namespace: str, script: str, *args: str) -> str:
    return sh("ip", "netns", "exec", namespace, sys.executable, "-c", script, *args).stdout.strip()


def namespace_of(box, container: str) -> str:
    return json.loads(box.nc("inspect", container).stdout)[0]["NetworkSettings"]["SandboxKey"].rsplit("/", 1)[1]


def serve(box, container: str, tcp_port: int | None = None, udp_port: int | None = None) -> None:
    """A TCP server answering with the source it sees, and a UDP one answering ``NAME SOURCE``."""
    ns = namespace_of(box, container)
    if tcp_port:
        server = box.spawn_in(ns, sys.executable, "-c", SEEN_ADDRESS_SERVER, "0.0.0.0", str(tcp_port),
                              stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "ready"
    if udp_port:
        server = box.spawn_in(ns, sys.executable, "-c", UDP_NAME_SERVER, "0.0.0.0", str(udp_port), container,
                              stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "ready"


def tcp_from(box, where: str, address: str, port: int) -> str:
    """What a TCP client in namespace ``where`` (or in container ``where``) reads from ``address``:``port``."""
    if where in (box.prefix, f"{box.prefix}lan"):
        return in_ns(where, CONNECT, address, str(port))
    return box.exec(where, sys.executable, "-c", CONNECT, address, str(port)).stdout.strip()


def udp_from(box, where: str, address: str, port: int) -> str:
    if where in (box.prefix, f"{box.prefix}lan"):
        return in_ns(where, UDP_ASK, address, str(port))
    return box.exec(where, sys.executable, "-c", UDP_ASK, address, str(port)).stdout.strip()


def answers(client: subprocess.Popen) -> queue.Queue:
    """The lines ``client`` prints, as a queue a reader thread fills: a test waits on it with a bound and never
    blocks on a client that stopped getting answers."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in client.stdout:
            lines.put(line)
    threading.Thread(target=read, daemon=True).start()
    return lines


def first_answer_from(lines: queue.Queue, name: str, started: float, bound: float) -> float | None:
    """Seconds from ``started`` to the first answer by ``name`` (``UDP_STREAM``'s ``STAMP NAME SOURCE`` lines),
    or None if none came within ``bound`` seconds."""
    while time.monotonic() - started < bound:
        try:
            stamp, who, _source = lines.get(timeout=0.2).split()
        except queue.Empty:
            continue
        if who == name:
            return float(stamp) - started
    return None


def held(box) -> set[str]:
    """The ports netcore's port holder keeps, as ``tcp 0.0.0.0:8080``."""
    return box.held_ports()


def table(box) -> str:
    return sh("ip", "netns", "exec", box.prefix, "nft", "list", "table", "inet", "netcore", check=False).stdout


@pytest.fixture
def lan(sandbox):
    """The sandbox with its gateway namespace made and a LAN namespace on a veth (the host is 192.0.2.1)."""
    sandbox.nc("firewall-reload")  # the first action makes the gateway namespace
    sandbox.neighbour("lan", "lan0", HOST_LAN, NEIGHBOUR)
    return sandbox


def route_loopback_to_the_host(lan_ns: str) -> None:
    """The moby/moby#45610 neighbour: it sends packets for 127.0.0.1 to the host (a rule before the local
    table, and route_localnet so its kernel lets them out)."""
    for command in (["sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1"],
                    ["ip", "rule", "add", "pref", "10", "to", "127.0.0.1", "lookup", "100"],
                    ["ip", "rule", "del", "pref", "0"], ["ip", "rule", "add", "pref", "100", "lookup", "local"],
                    ["ip", "route", "add", "127.0.0.1/32", "via", HOST_LAN, "dev", "eth0", "table", "100"]):
        sh("ip", "netns", "exec", lan_ns, *command)


def test_a_published_port_reaches_who_docker_lets_reach_it_and_nobody_else(lan):
    box, lan_ns, gw = lan, f"{lan.prefix}lan", lan.prefix
    box.nc("network", "create", "--subnet", "10.81.0.0/24", "pub")
    box.nc("network", "create", "--subnet", "10.81.1.0/24", "other")
    box.nc("run", "--name", "web", "--net", "pub", "-p", "8080:80", "-p", "8053:53/udp", "-p", "127.0.0.1:8081:80",
           "-p", "127.0.0.1:8054:53/udp")
    box.nc("run", "--name", "peer", "--net", "pub")
    box.nc("run", "--name", "far", "--net", "other")
    serve(box, "web", tcp_port=80, udp_port=53)
    serve(box, "web", tcp_port=90)  # listening, never published

    # TCP: the server answers with the source address it sees
    assert tcp_from(box, lan_ns, HOST_LAN, 8080) == NEIGHBOUR  # the outside, not masqueraded
    assert tcp_from(box, gw, "127.0.0.1", 8080) == "10.81.0.1"  # the host through loopback (masqueraded)
    assert tcp_from(box, gw, HOST_LAN, 8080) == HOST_LAN  # the host through its own address
    assert tcp_from(box, "far", HOST_LAN, 8080) == "10.81.0.1"  # another network, despite isolation
    assert tcp_from(box, "peer", HOST_LAN, 8080) == "10.81.0.1"  # the same network: hairpin
    assert tcp_from(box, "web", HOST_LAN, 8080) == "10.81.0.1"  # the container through its own port
    assert tcp_from(box, gw, "127.0.0.1", 8081) == "10.81.0.1"  # published on loopback: the host reaches it
    # UDP: the same paths, answered by web
    for where, address in ((lan_ns, HOST_LAN), (gw, "127.0.0.1"), (gw, HOST_LAN), ("far", HOST_LAN),
                           ("peer", HOST_LAN), ("web", HOST_LAN)):
        assert udp_from(box, where, address, 8053).startswith("web "), where
    assert udp_from(box, gw, "127.0.0.1", 8054).startswith("web ")

    # nothing else: the ports published on 127.0.0.1 stay the host's even for a neighbour that routes
    # 127.0.0.1 and the container subnet to it; unpublished ports stay closed from outside and other networks
    route_loopback_to_the_host(lan_ns)
    sh("ip", "-n", lan_ns, "route", "add", "10.81.0.0/24", "via", HOST_LAN)
    assert tcp_from(box, lan_ns, "127.0.0.1", 8081).startswith("failed")
    assert tcp_from(box, lan_ns, "127.0.0.1", 8080).startswith("failed")
    assert udp_from(box, lan_ns, "127.0.0.1", 8054) == "no answer"
    assert tcp_from(box, lan_ns, "10.81.0.2", 80).startswith("failed")  # the container's address, directly
    assert tcp_from(box, lan_ns, "10.81.0.2", 90).startswith("failed")
    assert tcp_from(box, lan_ns, HOST_LAN, 90).startswith("failed")  # nothing published there
    assert tcp_from(box, "far", "10.81.0.2", 80).startswith("failed")
    assert tcp_from(box, lan_ns, HOST_LAN, 8080) == NEIGHBOUR  # and the published one still works
    assert box.nc("port", "web").stdout.splitlines() == [
        "53/udp -> 0.0.0.0:8053", "53/udp -> 127.0.0.1:8054", "80/tcp -> 0.0.0.0:8080", "80/tcp -> 127.0.0.1:8081"]
    # nft lists the live table as netcore rendered it, so a read-only command does not re-apply it
    store = Store.open_readonly(box.state_dir)
    try:
        ruleset = render(desired_state(store.networks(), store.containers(), store.endpoints(), store.ports()))
    finally:
        store.close()
    assert nft_apply.status(ruleset, gw) == nft_apply.CURRENT


def test_host_ports_are_taken_for_real_and_land_where_docker_puts_them(lan):
    box, gw = lan, lan.prefix
    box.nc("network", "create", "--subnet", "10.82.0.0/24", "pub")
    box.nc("run", "--name", "web", "--net", "pub", "-p", "8080:80")
    assert held(box) == {"tcp 0.0.0.0:8080"}
    before = (box.nc("ps").stdout, table(box))

    taken = box.nc("run", "--name", "second", "--net", "pub", "-p", "8080:80", check=False)
    assert taken.returncode == 1
    assert taken.stderr.strip() == ("netcore: Bind for 0.0.0.0:8080 failed: port is already allocated "
                                    "(tcp, published by container web)")
    squatter = box.spawn_in(gw, sys.executable, "-c", SEEN_ADDRESS_SERVER, HOST_LAN, "9999",
                            stdout=subprocess.PIPE, text=True)
    assert squatter.stdout.readline().strip() == "ready"
    busy = box.nc("run", "--name", "second", "--net", "pub", "-p", "9999:80", check=False)
    assert busy.returncode == 1 and len(busy.stderr.splitlines()) == 1
    assert busy.stderr.startswith("netcore: Bind for 0.0.0.0:9999 failed: port is already allocated (tcp, held by ")
    assert f"pid {squatter.pid}, tcp {HOST_LAN}:9999" in busy.stderr
    assert (box.nc("ps").stdout, table(box)) == before  # nothing changed by either

    # while the mapping lives, no host process can take its port
    grab = sh("ip", "netns", "exec", gw, sys.executable, "-c", SEEN_ADDRESS_SERVER, "0.0.0.0", "8080", check=False)
    assert grab.returncode != 0 and "Address already in use" in grab.stderr

    # a range for one port: the first free of it (9999 is the squatter's); an ephemeral port: the first of
    # ip_local_port_range that is not reserved, then the next (Docker's allocator)
    sh("ip", "netns", "exec", gw, "sysctl", "-qw", "net.ipv4.ip_local_port_range=40000 40010",
       "net.ipv4.ip_local_reserved_ports=40000")
    box.nc("run", "--name", "ranged", "--net", "pub", "-p", "9999-10001:80", "-p", "80", "-p", "81")
    assert box.nc("port", "ranged").stdout.splitlines() == ["80/tcp -> 0.0.0.0:10000", "80/tcp -> 0.0.0.0:40001",
                                                            "81/tcp -> 0.0.0.0:40002"]
    assert box.nc("port", "ranged", "81").stdout.strip() == "0.0.0.0:40002"
    missing = box.nc("port", "ranged", "82/udp", check=False)
    assert (missing.returncode, missing.stderr.strip()) == (1, "netcore: no public port '82/udp' published for ranged")
    inspected = json.loads(box.nc("inspect", "ranged").stdout)[0]
    assert inspected["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "9999-10001"},
                                                                  {"HostIp": "", "HostPort": ""}],
                                                       "81/tcp": [{"HostIp": "", "HostPort": ""}]}
    assert inspected["NetworkSettings"]["Ports"]["81/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "40002"}]
    assert held(box) == {"tcp 0.0.0.0:8080", "tcp 0.0.0.0:10000", "tcp 0.0.0.0:40001", "tcp 0.0.0.0:40002"}

    # malformed specs: one line, exit 2, before anything is written
    for spec in ("80:", "70000:80", "8000-8002:80-81", "1.2.3.4.5::80", "80/icmp"):
        bad = box.nc("run", "--name", "bad", "-p", spec, check=False)
        assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1 and spec in bad.stderr, spec
    assert "bad" not in box.nc("ps").stdout


def test_udp_reaches_the_new_container_within_a_second_after_a_restart(lan):
    """moby/moby#8795: a client sending from one source port kept following a stale conntrack entry."""
    box, lan_ns = lan, f"{lan.prefix}lan"
    box.nc("network", "create", "--subnet", "10.83.0.0/24", "pub")
    box.nc("run", "--name", "old", "--net", "pub", "-p", "7000:7000/udp")
    serve(box, "old", udp_port=7000)
    client = box.spawn_in(lan_ns, sys.executable, "-c", UDP_STREAM, HOST_LAN, "7000", "40500",
                          stdout=subprocess.PIPE, text=True)
    assert client.stdout.readline().strip() == "ready"
    lines = answers(client)
    assert first_answer_from(lines, "old", time.monotonic(), 5) is not None
    box.nc("rm", "old")
    box.nc("run", "--name", "new", "--net", "pub", "-p", "7000:7000/udp")
    serve(box, "new", udp_port=7000)
    answered = first_answer_from(lines, "new", time.monotonic(), 5)
    assert answered is not None and answered < 1.0, answered


def test_udp_reaches_a_new_container_with_another_address_and_only_the_gateways_entries_go(lan):
    """Issue 24, item 6 (moby/moby#8795 class): the new container got another address, so a stale entry in
    the gateway namespace would keep the client on the old one; netcore deleted the host's entries instead
    (its test passed because the new container reused the old address). A flow the gateway namespace
    forwards to the LAN's port 7000 is another flow, and stays."""
    box, lan_ns, gw = lan, f"{lan.prefix}lan", lan.prefix
    box.nc("network", "create", "--subnet", "10.85.0.0/24", "pub")
    box.nc("run", "--name", "old", "--net", "pub", "-p", "7000:7000/udp")
    serve(box, "old", udp_port=7000)
    outbound = box.spawn_in(lan_ns, sys.executable, "-c", UDP_NAME_SERVER, "0.0.0.0", "7000", "lanside",
                            stdout=subprocess.PIPE, text=True)
    assert outbound.stdout.readline().strip() == "ready"
    assert udp_from(box, "old", NEIGHBOUR, 7000).startswith("lanside ")  # a forwarded flow to the LAN's 7000
    client = box.spawn_in(lan_ns, sys.executable, "-c", UDP_STREAM, HOST_LAN, "7000", "40501",
                          stdout=subprocess.PIPE, text=True)
    assert client.stdout.readline().strip() == "ready"
    lines = answers(client)
    assert first_answer_from(lines, "old", time.monotonic(), 5) is not None
    box.nc("rm", "old")
    box.nc("run", "--name", "spacer", "--net", "pub")  # takes old's address (10.85.0.2)
    box.nc("run", "--name", "new", "--net", "pub", "-p", "7000:7000/udp")
    assert json.loads(box.nc("inspect", "new").stdout)[0]["NetworkSettings"]["Networks"]["pub"]["IPAddress"] \
        == "10.85.0.3"
    serve(box, "new", udp_port=7000)
    answered = first_answer_from(lines, "new", time.monotonic(), 10)  # a bound for the test, not a speed claim
    assert answered is not None, "the client still follows the removed container's stale entry"
    from pyroute2 import Conntrack

    conntrack = Conntrack(netns=gw)  # the sandbox's gateway namespace, never the host's
    try:
        flows = [(e.tuple_orig.daddr, e.tuple_orig.dport) for e in conntrack.dump_entries()]
    finally:
        conntrack.close()
    assert (NEIGHBOUR, 7000) in flows  # the forwarded flow to the LAN's own port 7000 was left alone


def test_rm_purge_and_a_killed_agent_leave_no_rule_and_no_held_port_behind(lan):
    box = lan
    box.nc("network", "create", "--subnet", "10.84.0.0/24", "pub")
    box.nc("run", "--name", "web", "--net", "pub", "-p", "8080:80", "-p", "8053:53/udp")
    assert held(box) == {"tcp 0.0.0.0:8080", "udp 0.0.0.0:8053"}
    agent = box.agent_pid()
    os.kill(agent, signal.SIGKILL)  # the ports go with netcored, which holds them ...
    assert wait_for(lambda: not os.path.exists(f"/proc/{agent}/fd")) and held(box) == set()
    box.nc("ps")  # ... and the next command, even one that reads, starts a new one, which takes them again
    assert box.agent_pid() != agent and held(box) == {"tcp 0.0.0.0:8080", "udp 0.0.0.0:8053"}
    box.nc("rm", "web")
    assert held(box) == set() and "published" not in table(box)
    box.nc("run", "--name", "web", "--net", "pub", "-p", "8080:80")
    agent = box.agent_pid()
    box.nc("purge")
    assert table(box) == "" and wait_for(lambda: not os.path.exists(f"/proc/{agent}/fd"))
