"""Issue 24 end to end, in sandbox mode: a forger flooding dnsd's upstream port from an outside namespace, a
container's burst of identical queries (DNSpooq's birthday attack), and forwarding loops through netcore's
CLI and through a resolver container, with real clients (dig) and real sockets in the test's own namespaces.

The upstream is tests/support/fake_upstream.py in a namespace next to the gateway namespace (the WAN); the
attacker processes are tests/integration/dns_attacker.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from netcore.dnsd_protocol.control import DnsdControl
from tests.support.dns import dig
from tests.support.upstream import start_upstream

ATTACKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dns_attacker.py")
GATEWAY_SIDE, UPSTREAM = "10.250.0.1", "10.250.0.2"  # the WAN link: the gateway namespace's end, the upstream's


def wan_upstream(sandbox, *options: str) -> tuple[str, str]:
    """A WAN namespace next to the gateway namespace (which the first netcore action makes) with a logging fake
    upstream on UPSTREAM; (its namespace, the path of its query log)."""
    wan = sandbox.neighbour("w", "wan0", GATEWAY_SIDE, UPSTREAM)
    log = os.path.join(sandbox.state_dir, "upstream.log")
    start_upstream(sandbox, wan, UPSTREAM, "--log", log, *options)
    return wan, log


def asked(log: str, name: str) -> list[str]:
    """The protocols over which the fake upstream was asked ``name``, in order."""
    with open(log) as file:
        return [line.split()[0] for line in file if line.split()[1] == name + "."]


def dnsd_stats(sandbox) -> dict:
    return json.loads(DnsdControl(sandbox.state_dir, sandbox.prefix).request("stats"))


def test_a_forger_flooding_the_upstream_port_never_gets_an_answer_in(sandbox):
    """Issue 24: after 3,000 forged replies with wrong IDs on the upstream port, one with the right ID was
    accepted, cached for 3,600 s and served to another container; nothing noticed the flood."""
    sandbox.nc("network", "create", "--subnet", "10.76.0.0/24", "--dns", UPSTREAM, "app")
    wan, log = wan_upstream(sandbox, "--delay", "800")  # the real answer comes late: the forger has time
    sandbox.nc("run", "--name", "victim", "--net", "app")
    sandbox.nc("run", "--name", "other", "--net", "app")
    forger = sandbox.spawn_in(wan, sys.executable, ATTACKER, "forge", log, "bank.upstream.test", UPSTREAM,
                              GATEWAY_SIDE, "--wrong", "3000", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    status, answers, _ = dig(sandbox, "victim", "+time=5", "bank.upstream.test")
    out, err = forger.communicate(timeout=30)
    assert out.strip() == "sent 3001", err
    assert (status, answers) == ("NOERROR", ["192.0.2.1"])  # the upstream's answer, asked again over TCP
    assert dig(sandbox, "other", "bank.upstream.test")[:2] == ("NOERROR", ["192.0.2.1"])  # and so is the cached one
    assert asked(log, "bank.upstream.test") == ["udp", "tcp"]
    stats = dnsd_stats(sandbox)
    assert stats["spoof_detected"] == 1 and stats["spoofed_replies"] >= 3, stats


def test_a_burst_of_identical_queries_reaches_the_upstream_once(sandbox):
    """Issue 24: 50 identical queries within 50 ms reached the upstream as 50 queries from 50 ports (the
    birthday attack of DNSpooq, CVE-2020-25686)."""
    sandbox.nc("network", "create", "--subnet", "10.77.0.0/24", "--dns", UPSTREAM, "app")
    _, log = wan_upstream(sandbox, "--delay", "300")
    sandbox.nc("run", "--name", "asker", "--net", "app")
    out = sandbox.exec("asker", sys.executable, ATTACKER, "burst", "10.77.0.1", "www.upstream.test", "50").stdout
    replies = dict(line.split() for line in out.splitlines())
    assert len(replies) == 50 and set(replies.values()) == {"192.0.2.1"}, out
    assert asked(log, "www.upstream.test") == ["udp"]
    assert dnsd_stats(sandbox)["forward_merged"] == 49


def test_a_dns_server_that_is_dnsds_own_address_is_refused_in_one_line(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.78.0.0/24", "first")
    for args in (["network", "create", "--subnet", "10.79.0.0/24", "--dns", "10.78.0.1", "second"],
                 ["network", "create", "--subnet", "10.79.0.0/24", "--dns", "10.79.0.1", "second"],
                 ["run", "--name", "c", "--net", "first", "--dns", "10.78.0.1"]):
        proc = sandbox.nc(*args, check=False)
        assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "is where dnsd serves network" in proc.stderr and "Traceback" not in proc.stderr
    networks = json.loads(sandbox.nc("network", "inspect", "first").stdout)
    assert networks and sandbox.nc("network", "inspect", "second", check=False).returncode != 0


def test_a_query_that_comes_back_through_a_resolver_container_is_not_forwarded_again(sandbox):
    """Issue 24: a forwarding loop turned one query for an NXDOMAIN name into 129 forwarded queries. Here the
    network's --dns is a resolver container that forwards to dnsd, as a Pi-hole in front of it would."""
    sandbox.nc("network", "create", "--subnet", "10.80.0.0/24", "--dns", "10.80.0.5", "app")
    sandbox.nc("run", "--name", "pihole", "--net", "app", "--ip", "10.80.0.5")
    sandbox.nc("run", "--name", "c", "--net", "app")
    relay = sandbox.popen("exec", "pihole", "--", sys.executable, ATTACKER, "relay", "10.80.0.5", "10.80.0.1",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = relay.stdout.readline().split()
    assert ready[:1] == ["ready"], relay.stderr.read() if relay.poll() is not None else ready
    try:
        status, answers, _ = dig(sandbox, "c", "+time=5", "nowhere.example")
    finally:
        os.kill(int(ready[1]), signal.SIGKILL)  # the relay itself: `netcore exec` runs it as its child
    asked_relay = [line for line in relay.communicate(timeout=10)[0].splitlines() if line.startswith("asked")]
    assert (status, answers) == ("SERVFAIL", [])
    assert asked_relay == ["asked nowhere.example."]  # once: dnsd saw its own question come back
    stats = dnsd_stats(sandbox)
    assert stats["forward_loops"] == 1 and stats["forwarded"] == 1, stats
