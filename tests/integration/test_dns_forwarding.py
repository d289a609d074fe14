"""Forwarding end to end, in sandbox mode, with real clients: dig, and musl's getaddrinfo (see tests/support/musl.py).

Every upstream here is tests/support/fake_upstream.py, started inside a namespace of the test's own sandbox.
"""

from __future__ import annotations

from tests.support.dns import MUSL_TIMEOUT, container_ns, dig, musl
from tests.support.upstream import start_upstream

FAILS_FAST = MUSL_TIMEOUT * 0.6  # a bound on correctness, not on speed: a client left to time out takes MUSL_TIMEOUT


# -- no way out: NXDOMAIN at once ------------------------------------------------------------------


def test_an_internal_network_fails_outside_names_at_once_for_musl(sandbox, musl_resolve):
    sandbox.nc("network", "create", "--internal", "--subnet", "10.66.0.0/24", "--dns", "127.0.0.1", "inside")
    sandbox.nc("run", "--name", "lonely", "--net", "inside")
    sandbox.nc("run", "--name", "neighbour", "--net", "inside")
    status, output, seconds = musl(sandbox, "lonely", musl_resolve, "outside.example")
    assert status == 2 and output[0].startswith("error:"), output
    assert seconds < FAILS_FAST, f"musl took {seconds:.1f} s to fail (its timeout is {MUSL_TIMEOUT:g} s)"
    assert dig(sandbox, "lonely", "outside.example")[:2] == ("NXDOMAIN", [])
    assert musl(sandbox, "lonely", musl_resolve, "neighbour")[:2] == (0, ["10.66.0.3"])


def test_a_network_without_any_upstream_fails_outside_names_at_once_for_musl(sandbox, musl_resolve):
    sandbox.nc("network", "create", "--subnet", "10.67.0.0/24", "plain")  # sandbox mode: dnsd has no --upstream
    sandbox.nc("run", "--name", "asker", "--net", "plain")
    status, output, seconds = musl(sandbox, "asker", musl_resolve, "nowhere.example", "any")
    assert status == 2 and output[0].startswith("error:"), output
    assert seconds < FAILS_FAST, f"musl took {seconds:.1f} s to fail (its timeout is {MUSL_TIMEOUT:g} s)"
    assert dig(sandbox, "asker", "nowhere.example")[:2] == ("NXDOMAIN", [])
    assert dig(sandbox, "asker", "+tcp", "nowhere.example", "AAAA")[:2] == ("NXDOMAIN", [])


# -- one upstream order per client -------------------------------------------------------------------


def test_a_name_only_one_networks_upstream_knows_resolves_through_every_gateway(sandbox, musl_resolve):
    sandbox.nc("network", "create", "--subnet", "10.68.0.0/24", "--dns", "127.0.0.2", "net-a")
    sandbox.nc("network", "create", "--subnet", "10.69.0.0/24", "--dns", "127.0.0.3", "net-b")
    # dnsd forwards a network's loopback --dns from the gateway namespace, where these two listen
    start_upstream(sandbox, sandbox.prefix, "127.0.0.2", "--nxdomain-unknown", "--answer", "both.test=192.0.2.1")
    start_upstream(sandbox, sandbox.prefix, "127.0.0.3", "--nxdomain-unknown", "--answer", "both.test=192.0.2.2",
                   "--answer", "service.test=192.0.2.53")
    sandbox.nc("run", "--name", "c", "--net", "net-a")
    sandbox.nc("network", "connect", "net-b", "c")
    resolv_conf = sandbox.exec("c", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 10.68.0.1" in resolv_conf and "nameserver 10.69.0.1" in resolv_conf
    for gateway in ("@10.68.0.1", "@10.69.0.1"):
        assert dig(sandbox, "c", gateway, "service.test")[:2] == ("NOERROR", ["192.0.2.53"]), gateway
        assert dig(sandbox, "c", gateway, "+tcp", "service.test")[:2] == ("NOERROR", ["192.0.2.53"]), gateway
        assert dig(sandbox, "c", gateway, "both.test")[:2] == ("NOERROR", ["192.0.2.1"]), gateway  # eth0's first
        assert dig(sandbox, "c", gateway, "nowhere.test")[:2] == ("NXDOMAIN", []), gateway
    # musl asks both gateways at once and keeps the first reply: every lookup must succeed
    outcomes = [musl(sandbox, "c", musl_resolve, "service.test")[:2] for _ in range(30)]
    assert outcomes.count((0, ["192.0.2.53"])) == 30, outcomes


# -- a container's loopback --dns is a resolver inside that container ------------------------------


def test_a_containers_loopback_dns_is_asked_inside_the_container(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.71.0.0/24", "app")
    sandbox.nc("network", "create", "--subnet", "10.72.0.0/24", "--dns", "127.0.0.1:5300", "lan")
    sandbox.nc("run", "--name", "agent", "--net", "app", "--dns", "127.0.0.1:5300")  # e.g. a consul agent inside
    sandbox.nc("run", "--name", "plain", "--net", "lan")
    # the same address and port in the container and in the gateway namespace, with different answers
    start_upstream(sandbox, container_ns(sandbox, "agent"), "127.0.0.1", "--port", "5300",
                   "--answer", "service.consul=192.0.2.8")
    start_upstream(sandbox, sandbox.prefix, "127.0.0.1", "--port", "5300", "--answer", "service.consul=192.0.2.9")
    assert dig(sandbox, "agent", "service.consul")[:2] == ("NOERROR", ["192.0.2.8"])
    assert dig(sandbox, "agent", "+tcp", "service.consul")[:2] == ("NOERROR", ["192.0.2.8"])
    assert dig(sandbox, "agent", "www.upstream.test")[:2] == ("NOERROR", ["192.0.2.1"])
    # a network's loopback --dns stays the gateway namespace's loopback
    assert dig(sandbox, "plain", "service.consul")[:2] == ("NOERROR", ["192.0.2.9"])
