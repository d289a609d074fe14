"""Faults replayed from public bug reports (issue 11), with the clients users have: dig, glibc's getent and
ping, and musl's getaddrinfo (Alpine's resolver up to 3.17)."""

from __future__ import annotations

import json

from tests.support.dns import container_ip, dig


def test_name_network_answers_in_any_case_and_the_ptr_target_resolves_back(sandbox):
    """moby/moby#28689: WebApp.Net1 was NXDOMAIN while its PTR answered `WebApp.Net1.`."""
    sandbox.nc("network", "create", "--subnet", "10.62.0.0/24", "Net1")
    sandbox.nc("run", "--name", "WebApp", "--net", "Net1")
    sandbox.nc("run", "--name", "client", "--net", "Net1")
    for name in ("webapp", "WEBAPP", "WebApp.Net1", "webapp.net1", "WEBAPP.NET1"):
        assert dig(sandbox, "client", name)[:2] == ("NOERROR", ["10.62.0.2"]), name
    status, [target], _ = dig(sandbox, "client", "-x", "10.62.0.2")
    assert status == "NOERROR"
    assert sandbox.exec("client", "getent", "hosts", target).stdout.split()[0] == "10.62.0.2"


def test_a_name_leads_to_an_address_the_client_can_reach(sandbox, musl_resolve):
    """moby/moby#46162: pinga and pingb on `uplink` (enable_icc=false) and on `interconnect`; `ping pingb`
    from pinga failed every second time, as answers rotated over pingb's two addresses."""
    sandbox.nc("network", "create", "--subnet", "10.63.1.0/24", "-o", "com.docker.network.bridge.enable_icc=false",
               "uplink")
    sandbox.nc("network", "create", "--subnet", "10.63.2.0/24", "interconnect")
    for name in ("pinga", "pingb"):
        sandbox.nc("run", "--name", name, "--net", "uplink")
        sandbox.nc("network", "connect", "interconnect", name)
    reachable = container_ip(sandbox, "pingb", "interconnect")
    for _ in range(4):
        ping = sandbox.exec("pinga", "ping", "-c1", "-W1", "pingb", check=False)
        assert ping.returncode == 0 and reachable in ping.stdout, ping.stdout
        # musl asks both gateways at once and keeps the first reply: each must name the reachable address
        assert sandbox.exec("pinga", musl_resolve, "pingb", "4").stdout.split() == [reachable]
    for gateway in ("10.63.1.1", "10.63.2.1"):
        assert dig(sandbox, "pinga", f"@{gateway}", "pingb")[:2] == ("NOERROR", [reachable]), gateway


def test_a_client_on_two_networks_gets_the_address_on_the_network_it_asked(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.64.1.0/24", "front")
    sandbox.nc("network", "create", "--subnet", "10.64.2.0/24", "back")
    for name in ("api", "client"):
        sandbox.nc("run", "--name", name, "--net", "front")
        sandbox.nc("network", "connect", "back", name)
    assert dig(sandbox, "client", "@10.64.1.1", "api")[:2] == ("NOERROR", [container_ip(sandbox, "api", "front")])
    assert dig(sandbox, "client", "@10.64.2.1", "api")[:2] == ("NOERROR", [container_ip(sandbox, "api", "back")])


def test_a_truncated_reply_carries_what_fits_so_musl_gets_addresses(sandbox, musl_resolve, tmp_path):
    """alpinelinux/docker-alpine#326, coredns/coredns#5362: an alias held by 40 containers does not fit
    512 bytes; musl before 1.2.4 never retries over TCP and got "Name does not resolve"."""
    compose = {"name": "wide", "networks": {"wide": {"name": "wide", "ipam": {"config": [{"subnet": "10.65.0.0/24"}]}}},
               "services": {"big": {"deploy": {"replicas": 40}, "networks": ["wide"]},
                            "client": {"container_name": "client", "networks": ["wide"]}}}
    path = tmp_path / "compose.yaml"
    path.write_text(json.dumps(compose))  # YAML is a superset of JSON
    sandbox.nc("up", "-f", str(path), timeout=240)
    holders = {container_ip(sandbox, f"wide-big-{index}", "wide") for index in range(1, 41)}
    musl = sandbox.exec("client", musl_resolve, "big", "4")
    assert musl.returncode == 0, musl.stdout
    got = musl.stdout.split()
    assert len(got) == 30 and set(got) <= holders  # 30 records of 16 bytes fit 512
    status, answers, flags = dig(sandbox, "client", "+ignore", "+noedns", "big")
    assert status == "NOERROR" and "tc" in flags.split() and len(answers) == 30
    assert sorted(dig(sandbox, "client", "+noedns", "big")[1]) == sorted(holders)  # dig retries over TCP
    assert len(sandbox.exec("client", "getent", "ahostsv4", "big").stdout.split("\n")) > 1  # glibc too


def test_dig_dnssec_gets_do_back_over_udp_and_tcp(sandbox):
    """RFC 3225: a server that supports EDNS copies DO into its reply."""
    sandbox.nc("network", "create", "--subnet", "10.66.0.0/24", "sec")
    sandbox.nc("run", "--name", "web", "--net", "sec")
    sandbox.nc("run", "--name", "client", "--net", "sec")
    for transport in ("+notcp", "+tcp"):
        out = sandbox.exec("client", "dig", "+time=2", "+tries=1", "+dnssec", transport, "web").stdout
        assert "status: NOERROR" in out and "10.66.0.2" in out
        assert "; EDNS: version: 0, flags: do;" in out, out
        plain = sandbox.exec("client", "dig", "+time=2", "+tries=1", transport, "web").stdout
        assert "; EDNS: version: 0, flags:;" in plain, plain
