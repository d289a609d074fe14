"""Issue 16 end to end, in sandbox mode: the forwarded-answer cache, TC from upstreams, metrics, the query log,
names from the gateway namespace and the host's own name, with real clients (dig, musl) and a fake upstream
(fake_upstream.py, in the gateway namespace) that logs every query it receives.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

from tests.support.dns import dig, musl
from tests.support.upstream import start_upstream

UPSTREAM = "127.0.0.2"  # a network's loopback --dns is asked from the gateway namespace, where the fake listens


def with_options(sandbox, *options: str) -> None:
    """Options for the dnsd netcore starts (netcore.dnsd_protocol.control.dnsd_options): before the first network."""
    with open(os.path.join(sandbox.state_dir, "dnsd.options"), "w") as file:
        file.write(" ".join(options) + "\n")


def forwarding_network(sandbox, subnet: str = "10.73.0.0/24", name: str = "app") -> str:
    """A network whose upstream is a logging fake upstream; returns the path of the upstream's query log."""
    log = os.path.join(sandbox.state_dir, "upstream.log")
    sandbox.nc("network", "create", "--subnet", subnet, "--dns", UPSTREAM, name)
    start_upstream(sandbox, sandbox.prefix, UPSTREAM, "--log", log)
    return log


def asked(log: str, name: str) -> list[str]:
    """The protocols over which the fake upstream was asked ``name``, in order."""
    with open(log) as file:
        return [line.split()[0] for line in file if line.split()[1] == name + "."]


def dig_records(sandbox, container: str, *args: str) -> tuple[str, list[tuple[int, str]], list[tuple[int, str]]]:
    """(status, [(TTL, type) of each answer record], [(TTL, type) of each authority record]) of one dig."""
    out = sandbox.exec(container, "dig", "+time=2", "+tries=1", *args, check=False).stdout
    status = re.search(r"status: (\w+)", out)
    sections: dict[str, list[tuple[int, str]]] = {"ANSWER": [], "AUTHORITY": []}
    section = None
    for line in out.splitlines():
        heading = re.match(r";; (\w+) SECTION", line)
        if heading:
            section = heading.group(1)
        elif not line.strip():
            section = None
        elif section in sections:
            fields = line.split()
            sections[section].append((int(fields[1]), fields[3]))
    return (status.group(1) if status else "NO-REPLY"), sections["ANSWER"], sections["AUTHORITY"]


def test_forwarded_answers_are_cached_by_rfc_2308_and_truncation_is_asked_again_over_tcp(sandbox, musl_resolve):
    log = forwarding_network(sandbox)
    sandbox.nc("run", "--name", "c", "--net", "app")
    status, first, _ = dig_records(sandbox, "c", "www.upstream.test")
    time.sleep(1.1)  # the TTL counts down in whole seconds
    _, second, _ = dig_records(sandbox, "c", "WWW.Upstream.Test")
    assert status == "NOERROR" and first[0][0] == 60
    assert second and second[0][0] < first[0][0], (first, second)
    assert asked(log, "www.upstream.test") == ["udp"]  # the second query reached no upstream

    for _ in range(2):  # NXDOMAIN with an SOA whose MINIMUM is 30: kept, for 30 s at most
        status, _, authority = dig_records(sandbox, "c", "nxsoa.upstream.test")
        assert status == "NXDOMAIN" and authority and authority[0][1] == "SOA" and authority[0][0] <= 30
    assert asked(log, "nxsoa.upstream.test") == ["udp"]
    for _ in range(2):  # NXDOMAIN without an SOA: not kept, asked again
        assert dig(sandbox, "c", "nx.upstream.test")[0] == "NXDOMAIN"
    assert asked(log, "nx.upstream.test") == ["udp", "udp"]

    # musl 1.2.3 never retries over TCP: dnsd does, and gives it the records that fit in 512 bytes
    status, output, _ = musl(sandbox, "c", musl_resolve, "big.upstream.test")
    assert status == 0 and output and all(line.startswith("192.0.2.") for line in output), output
    assert asked(log, "big.upstream.test") == ["udp", "tcp"]


SCRAPE = """
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
text = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5).read().decode()
print(json.dumps({sample.name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items())) + "}"
                                 if sample.labels else ""): sample.value
                  for family in text_string_to_metric_families(text) for sample in family.samples}))
"""


def scrape(sandbox, address: str = "127.0.0.1:9153") -> dict[str, float]:
    """/metrics of the dnsd of the sandbox, fetched from inside the gateway namespace (where it binds), as
    {sample name with its labels sorted: value}."""
    out = subprocess.run(["ip", "netns", "exec", sandbox.prefix, sys.executable, "-c", SCRAPE, address],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return json.loads(out)


def test_metrics_names_from_the_gateway_namespace_and_the_hosts_own_name(sandbox):
    with_options(sandbox, "--metrics")
    forwarding_network(sandbox)
    sandbox.nc("network", "create", "--subnet", "10.74.0.0/24", "--ipv6", "--subnet", "fd00:74::/64", "db")
    sandbox.nc("run", "--name", "web", "--net", "app")
    sandbox.nc("run", "--name", "pg", "--net", "db")
    before = scrape(sandbox)
    for _ in range(3):
        assert dig(sandbox, "web", "www.upstream.test")[:2] == ("NOERROR", ["192.0.2.1"])
    assert dig(sandbox, "web", "web", "AAAA")[0] == "NOERROR"

    # the host's own name: the gateway the asking container's network has, A and AAAA
    assert dig(sandbox, "web", "host.netcore.internal")[:2] == ("NOERROR", ["10.73.0.1"])
    assert dig(sandbox, "pg", "host.docker.internal")[:2] == ("NOERROR", ["10.74.0.1"])
    assert dig(sandbox, "pg", "host.containers.internal", "AAAA")[:2] == ("NOERROR", ["fd00:74::1"])

    # the gateway namespace (the host outside sandbox mode) sees every network through any gateway
    def from_gateway(*args: str) -> list[str]:
        return subprocess.run(["ip", "netns", "exec", sandbox.prefix, "dig", "+short", "+time=2", "+tries=1", *args],
                              capture_output=True, text=True, timeout=30).stdout.split()
    assert from_gateway("@10.73.0.1", "web.app") == ["10.73.0.2"]
    assert from_gateway("@10.73.0.1", "pg") == ["10.74.0.2"]  # one network alone has it
    assert from_gateway("@10.74.0.1", "web") == ["10.73.0.2"]

    after = scrape(sandbox)

    def moved(sample: str) -> float:
        return after.get(sample, 0) - before.get(sample, 0)
    # at app's gateway: 3 outside, host.netcore.internal, 2 from the gateway namespace
    assert moved('dnsd_requests_total{network="app",proto="udp",type="A"}') == 6
    assert moved('dnsd_requests_total{network="app",proto="udp",type="AAAA"}') == 1
    assert moved('dnsd_responses_total{rcode="NOERROR",source="upstream"}') == 1
    assert moved('dnsd_responses_total{rcode="NOERROR",source="cache"}') == 2
    assert moved("dnsd_cache_hits_total") == 2 and after["dnsd_cache_entries"] == 1
    assert moved("dnsd_forward_requests_total") == 1
    assert after['dnsd_request_duration_seconds_count{source="upstream"}'] == 1


def test_the_query_log_holds_one_line_per_query_and_stops_at_its_rate(sandbox):
    path = os.path.join(sandbox.state_dir, "queries.log")
    with_options(sandbox, "--query-log", path, "--query-log-rate", "5")
    sandbox.nc("network", "create", "--subnet", "10.75.0.0/24", "app")
    sandbox.nc("run", "--name", "web", "--net", "app")
    time.sleep(1.0)  # a fresh second of the rate window (and nothing else asks)
    assert dig(sandbox, "web", "web")[:2] == ("NOERROR", ["10.75.0.2"])
    with open(path) as file:
        (line,) = [json.loads(text) for text in file]
    assert {key: line[key] for key in ("client", "network", "name", "type", "rcode", "source")} == {
        "client": "10.75.0.2", "network": "app", "name": "web.", "type": "A", "rcode": "NOERROR", "source": "local"}
    assert line["duration_us"] >= 0 and line["time"].endswith("Z")

    time.sleep(1.0)
    sandbox.exec("web", "dig", "+time=2", "+tries=1", *["web"] * 30)  # 30 queries in one run, well within 1 s
    time.sleep(1.0)
    dig(sandbox, "web", "web")  # the next second: written after a line counting what was left out
    with open(path) as file:
        lines = [json.loads(text) for text in file][1:]
    queries = [line for line in lines if "name" in line]
    dropped = sum(line.get("dropped", 0) for line in lines)
    assert 6 <= len(queries) <= 11, lines  # 5 a second (the burst may straddle two), then the last one
    assert len(queries) + dropped == 31
