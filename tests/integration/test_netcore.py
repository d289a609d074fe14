"""netcore against the real kernel, in sandbox mode: what the CLI builds is checked through netlink."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

from pyroute2 import IPRoute


def links(namespace: str) -> dict[str, dict]:
    with IPRoute(netns=namespace) as ipr:
        raw = list(ipr.link("dump"))
        by_index = {link["index"]: link.get("ifname") for link in raw}
        result = {}
        for link in raw:
            name = link.get("ifname")
            result[name] = {"mtu": link.get("mtu"), "master": by_index.get(link.get("master")),
                            "mac": link.get("address"), "kind": link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")),
                            "up": link["flags"] & 1 == 1}
        for addr in ipr.addr("dump"):
            if addr.get("address", "").startswith("fe80:"):
                continue  # link-local addresses come with every interface
            result[by_index[addr["index"]]].setdefault("addresses", []).append(
                f"{addr.get('address')}/{addr['prefixlen']}")
        return result


def default_gateway(namespace: str) -> str | None:
    with IPRoute(netns=namespace) as ipr:
        for route in ipr.route("dump", family=2, table=254):
            if route["dst_len"] == 0:
                return route.get("gateway")
    return None


def inspect(sandbox, *args):
    return json.loads(sandbox.nc(*args).stdout)


def test_network_create_builds_a_bridge_and_inspect_shows_it(sandbox):
    network_id = sandbox.nc("network", "create", "--subnet", "10.77.0.0/16", "--ip-range", "10.77.5.0/24",
                            "--gateway", "10.77.0.254", "-o", "com.docker.network.driver.mtu=1400",
                            "lab").stdout.strip()
    assert len(network_id) == 64 and int(network_id, 16) >= 0
    bridge = f"br-{network_id[:12]}"
    gw_links = links(sandbox.prefix)
    assert gw_links[bridge]["kind"] == "bridge"
    assert gw_links[bridge]["mtu"] == 1400
    assert "10.77.0.254/16" in gw_links[bridge]["addresses"]
    assert gw_links["netcore0"]["addresses"] == ["172.17.0.1/16"]  # the default bridge exists from first use
    [doc] = inspect(sandbox, "network", "inspect", "lab")
    assert doc["Name"] == "lab" and doc["Id"] == network_id and doc["Driver"] == "bridge" and doc["Scope"] == "local"
    assert doc["IPAM"]["Config"] == [{"Subnet": "10.77.0.0/16", "IPRange": "10.77.5.0/24", "Gateway": "10.77.0.254"}]
    assert doc["Internal"] is False and doc["EnableIPv6"] is False
    listing = sandbox.nc("network", "ls").stdout.splitlines()
    assert listing[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert {line.split()[1] for line in listing[1:]} == {"bridge", "lab"}


def test_default_pools_and_named_bridge(sandbox):
    sandbox.nc("network", "create", "a")
    sandbox.nc("network", "create", "-o", "com.docker.network.bridge.name=br-mine", "b")
    subnets = [inspect(sandbox, "network", "inspect", n)[0]["IPAM"]["Config"][0] for n in ("a", "b")]
    assert subnets == [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"},
                       {"Subnet": "172.19.0.0/16", "Gateway": "172.19.0.1"}]
    assert "br-mine" in links(sandbox.prefix)


def test_containers_get_veths_addresses_routes_and_reach_each_other(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.50.0.0/24", "-o", "com.docker.network.driver.mtu=1450", "app")
    web_id = sandbox.nc("run", "--name", "web", "--net", "app").stdout.strip()
    sandbox.nc("run", "--name", "client", "--net", "app", "--ip", "10.50.0.99")
    [web] = inspect(sandbox, "inspect", "web")
    settings = web["NetworkSettings"]["Networks"]["app"]
    assert web["Id"] == web_id and web["Name"] == "/web" and web["Config"]["Hostname"] == web_id[:12]
    assert settings["IPAddress"] == "10.50.0.2" and settings["IPPrefixLen"] == 24
    assert settings["Gateway"] == "10.50.0.1" and settings["MacAddress"] == "02:42:0a:32:00:02"
    namespace = f"{sandbox.prefix}-{web_id[:12]}"
    assert namespace in sandbox.namespaces()
    inside = links(namespace)
    assert inside["eth0"]["addresses"] == ["10.50.0.2/24"] and inside["eth0"]["mtu"] == 1450
    assert inside["eth0"]["mac"] == "02:42:0a:32:00:02" and inside["lo"]["up"]
    assert default_gateway(namespace) == "10.50.0.1"
    bridge = json.loads(sandbox.nc("network", "inspect", "app").stdout)[0]["Id"][:12]
    veths = {n: link for n, link in links(sandbox.prefix).items() if link["master"] == f"br-{bridge}"}
    assert len(veths) == 2 and all(n.startswith("veth") and len(n) == 11 for n in veths)
    assert all(link["mtu"] == 1450 for link in veths.values())
    assert sandbox.exec("web", "ping", "-c1", "-W2", "10.50.0.99").returncode == 0
    resolv = sandbox.exec("web", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 10.50.0.1" in resolv


def test_container_interfaces_take_no_router_advertisements_and_ipv6_only_where_the_network_has_it(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.54.0.0/24", "four")
    sandbox.nc("network", "create", "--ipv6", "--subnet", "10.55.0.0/24", "--subnet", "fd00:55::/64", "six")
    cid = sandbox.nc("run", "--name", "x", "--net", "four").stdout.strip()
    sandbox.nc("network", "connect", "six", "x")  # eth1, configured at runtime

    def setting(ifname: str, key: str) -> str:
        return sandbox.exec("x", "cat", f"/proc/sys/net/ipv6/conf/{ifname}/{key}").stdout.strip()

    assert (setting("eth0", "disable_ipv6"), setting("eth1", "disable_ipv6")) == ("1", "0")
    assert (setting("eth0", "accept_ra"), setting("eth1", "accept_ra")) == ("0", "0")
    with IPRoute(netns=f"{sandbox.prefix}-{cid[:12]}") as ipr:
        eth0 = ipr.link_lookup(ifname="eth0")[0]
        assert not [a for a in ipr.addr("dump", family=socket.AF_INET6) if a["index"] == eth0]  # not even fe80::
    assert links(f"{sandbox.prefix}-{cid[:12]}")["eth1"]["addresses"] == ["10.55.0.2/24", "fd00:55::2/64"]
    assert sandbox.exec("x", "ping", "-6", "-c1", "-W2", "fd00:55::1").returncode == 0


def test_containers_on_different_bridges_cannot_reach_each_other(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.51.0.0/24", "one")
    sandbox.nc("network", "create", "--subnet", "10.52.0.0/24", "two")
    sandbox.nc("run", "--name", "a", "--net", "one")
    sandbox.nc("run", "--name", "b", "--net", "two")
    assert sandbox.exec("a", "ping", "-c1", "-W1", "10.52.0.2", check=False).returncode != 0
    assert sandbox.exec("a", "ping", "-c1", "-W1", "10.51.0.1").returncode == 0  # its own gateway answers


def test_internal_network_has_no_default_route(sandbox):
    sandbox.nc("network", "create", "--internal", "--subnet", "10.53.0.0/24", "sealed")
    cid = sandbox.nc("run", "--name", "x", "--net", "sealed").stdout.strip()
    assert default_gateway(f"{sandbox.prefix}-{cid[:12]}") is None
    assert inspect(sandbox, "network", "inspect", "sealed")[0]["Internal"] is True


def test_connect_and_disconnect_at_runtime(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.54.0.0/24", "front")
    sandbox.nc("network", "create", "--subnet", "10.55.0.0/24", "back")
    cid = sandbox.nc("run", "--name", "svc", "--net", "front").stdout.strip()
    namespace = f"{sandbox.prefix}-{cid[:12]}"
    sandbox.nc("network", "connect", "--alias", "api", "back", "svc")
    inside = links(namespace)
    assert inside["eth1"]["addresses"] == ["10.55.0.2/24"]
    assert default_gateway(namespace) == "10.54.0.1"  # the first network keeps the default route, as on Docker
    [doc] = inspect(sandbox, "inspect", "svc")
    assert set(doc["NetworkSettings"]["Networks"]) == {"front", "back"}
    assert doc["NetworkSettings"]["Networks"]["back"]["Aliases"] == ["api"]
    assert inspect(sandbox, "network", "inspect", "back")[0]["Containers"][cid]["IPv4Address"] == "10.55.0.2/24"
    sandbox.nc("network", "disconnect", "front", "svc")
    inside = links(namespace)
    assert "eth0" not in inside and "eth1" in inside
    assert default_gateway(namespace) == "10.55.0.1"  # the default route moved to the remaining network
    assert inspect(sandbox, "network", "inspect", "front")[0]["Containers"] == {}


def test_network_modes_host_none_container(sandbox):
    sandbox.nc("network", "create", "app")
    sandbox.nc("run", "--name", "base", "--net", "app")
    sandbox.nc("run", "--name", "side", "--net", "container:base")
    sandbox.nc("run", "--name", "lonely", "--net", "none")
    sandbox.nc("run", "--name", "hosty", "--net", "host")
    assert "172.18.0.2/16" in sandbox.exec("side", "ip", "-o", "addr").stdout
    assert set(links(json.loads(sandbox.nc("inspect", "lonely").stdout)[0]["NetworkSettings"]["SandboxKey"]
                     .rsplit("/", 1)[1])) == {"lo"}
    assert "172.18.0.1/16" in sandbox.exec("hosty", "ip", "-o", "addr").stdout
    for name in ("side", "lonely", "hosty"):
        refused = sandbox.nc("network", "connect", "app", name, check=False)
        assert refused.returncode != 0 and "cannot be connected" in refused.stderr
    refused = sandbox.nc("rm", "base", check=False)
    assert refused.returncode != 0 and "side" in refused.stderr
    assert sandbox.nc("rm", "-f", "base").stdout.split() == ["side", "base"]


def veths_settled(namespace: str, expected: int, wait: float = 5.0) -> dict[str, dict]:
    """The veths of ``namespace`` once ``expected`` are left, or those left after ``wait`` seconds: the veths of
    removed containers go with their namespaces, which the kernel deletes in its own time."""
    deadline = time.monotonic() + wait
    while True:
        left = {name: link for name, link in links(namespace).items() if link["kind"] == "veth"}
        if len(left) == expected or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def test_rm_removes_namespace_veth_and_address_and_frees_it(sandbox):
    """`rm` takes the veth down and off the bridge and deletes the namespace, which takes the pair along in the
    kernel's own time: when `rm` returns the veth carries nothing, and it is gone soon after. The address is
    free at once, and the next container given it (with the same MAC, derived from it) is reachable."""
    sandbox.nc("network", "create", "--subnet", "10.56.0.0/24", "app")
    cid = sandbox.nc("run", "--name", "gone", "--net", "app").stdout.strip()
    assert sandbox.nc("rm", "gone").stdout.strip() == "gone"
    left = {name: link for name, link in links(sandbox.prefix).items() if link["kind"] == "veth"}
    assert all(not link["up"] and link["master"] is None for link in left.values()), left
    assert f"{sandbox.prefix}-{cid[:12]}" not in sandbox.namespaces()
    assert not os.path.exists(f"/etc/netns/{sandbox.prefix}-{cid[:12]}")
    sandbox.nc("run", "--name", "next", "--net", "app")
    assert inspect(sandbox, "inspect", "next")[0]["NetworkSettings"]["Networks"]["app"]["IPAddress"] == "10.56.0.2"
    assert sandbox.nc("ps", "-q").stdout.split() == [inspect(sandbox, "inspect", "next")[0]["Id"][:12]]
    assert sandbox.exec("next", "ping", "-c", "1", "-W", "2", "10.56.0.1").returncode == 0
    sandbox.nc("rm", "next")
    assert veths_settled(sandbox.prefix, 0) == {}  # the kernel deleted both pairs with their namespaces


def test_network_rm_refuses_while_containers_are_attached(sandbox):
    sandbox.nc("network", "create", "app")
    sandbox.nc("run", "--name", "one", "--net", "app")
    sandbox.nc("run", "--name", "two", "--net", "app")
    refused = sandbox.nc("network", "rm", "app", check=False)
    assert refused.returncode == 1 and "one, two" in refused.stderr
    sandbox.nc("rm", "one", "two")
    sandbox.nc("network", "rm", "app")
    assert not any(name.startswith("br-") for name in links(sandbox.prefix))


def test_default_bridge_refuses_aliases_and_has_no_dns_names(sandbox):
    refused = sandbox.nc("run", "--name", "x", "--net-alias", "y", check=False)
    assert refused.returncode == 1 and "user-defined networks" in refused.stderr
    sandbox.nc("run", "--name", "x")
    [doc] = inspect(sandbox, "inspect", "x")
    assert doc["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == "172.17.0.2"
    assert doc["NetworkSettings"]["Networks"]["bridge"]["DNSNames"] == []


def test_bad_input_gets_one_line_and_changes_nothing(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.57.0.0/24", "app")
    sandbox.nc("run", "--name", "web", "--net", "app")
    before = (sandbox.nc("network", "ls").stdout, sandbox.nc("ps").stdout, sorted(links(sandbox.prefix)),
              sandbox.namespaces())
    cases = [
        (["network", "create", "--subnet", "10.0.0.0/33", "x"], "invalid subnet"),
        (["network", "create", "--subnet", "10.60.0.0/24", "--gateway", "10.61.0.1", "x"], "not inside subnet"),
        (["network", "create", "--subnet", "10.60.0.0/24", "--ip-range", "10.62.0.0/25", "x"], "not inside subnet"),
        (["network", "create", "app"], "already exists"),
        (["network", "create", "--subnet", "10.57.0.0/16", "x"], "overlaps"),
        (["network", "create", "-o", "com.docker.network.driver.mtu=9", "x"], "mtu"),
        (["network", "create", "bad/name"], "invalid network name"),
        (["run", "--name", "web", "--net", "app"], "already in use"),
        (["run", "--name", "z", "--net", "nowhere"], "no such network: nowhere"),
        (["run", "--name", "z", "--net", "app", "--ip", "10.57.0.2"], "already in use"),
        (["run", "--name", "z", "--net", "app", "--ip", "10.99.0.2"], "not inside subnet"),
        (["rm", "ghost"], "no such container: ghost"),
        (["network", "connect", "app", "web"], "already connected"),
        (["network", "disconnect", "bridge", "web"], "not connected"),
        (["network", "rm", "bridge"], "pre-defined"),
        (["exec", "web", "--", "/no/such/binary"], "command not found"),
    ]
    for args, message in cases:
        proc = sandbox.nc(*args, check=False)
        assert proc.returncode != 0, args
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
    after = (sandbox.nc("network", "ls").stdout, sandbox.nc("ps").stdout, sorted(links(sandbox.prefix)),
             sandbox.namespaces())
    assert after == before


def test_twenty_concurrent_runs_get_twenty_addresses(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.58.0.0/24", "busy")
    procs = [sandbox.popen("run", "--name", f"c{i}", "--net", "busy", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(20)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    doc = inspect(sandbox, "network", "inspect", "busy")[0]
    addresses = [c["IPv4Address"] for c in doc["Containers"].values()]
    assert len(addresses) == 20 and len(set(addresses)) == 20
    assert len(sandbox.namespaces()) == 1 + 20


def test_topology_up_is_idempotent_and_down_removes_it(sandbox):
    example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "custom-ipam.yaml")
    first = sandbox.nc("up", "-f", example).stdout
    assert "Network lab  Created" in first and "Container fixed  Created" in first
    state = (sandbox.nc("network", "ls").stdout, sandbox.nc("ps").stdout)
    second = sandbox.nc("up", "-f", example).stdout
    assert "Created" not in second and (sandbox.nc("network", "ls").stdout, sandbox.nc("ps").stdout) == state
    net = inspect(sandbox, "network", "inspect", "lab")[0]
    addresses = sorted(c["IPv4Address"] for c in net["Containers"].values())
    assert addresses == ["10.123.5.0/16", "10.123.5.200/16"]
    sandbox.nc("down", "-f", example)
    assert sandbox.nc("ps", "-q").stdout == ""
    assert "lab" not in sandbox.nc("network", "ls").stdout


def test_killed_commands_are_reconciled(sandbox):
    """kill -9 netcore at arbitrary points of run/rm: the next command cleans up and nothing leaks."""
    sandbox.nc("network", "create", "--subnet", "10.59.0.0/24", "app")
    for i, delay in enumerate([0.05, 0.15, 0.25, 0.35, 0.45, 0.6]):
        proc = sandbox.popen("run", "--name", f"k{i}", "--net", "app", stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    sandbox.nc("run", "--name", "after", "--net", "app")
    containers = inspect(sandbox, "network", "inspect", "app")[0]["Containers"]
    stored = {c["Name"] for c in containers.values()}
    assert "after" in stored
    addresses = [c["IPv4Address"] for c in containers.values()]
    assert len(addresses) == len(set(addresses))
    # every namespace belongs to a stored container, every veth to a stored endpoint
    ids = json.loads(sandbox.nc("inspect", *sandbox.nc("ps", "-q").stdout.split()).stdout)
    assert sorted(sandbox.namespaces()) == sorted([sandbox.prefix] + [f"{sandbox.prefix}-{d['Id'][:12]}" for d in ids])
    assert len(veths_settled(sandbox.prefix, len(ids))) == len(ids)


def test_icc_false_isolates_containers_but_not_the_gateway(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.66.0.0/24", "-o", "com.docker.network.bridge.enable_icc=false",
               "quiet")
    sandbox.nc("run", "--name", "a", "--net", "quiet")
    sandbox.nc("run", "--name", "b", "--net", "quiet")
    assert sandbox.exec("a", "ping", "-c1", "-W1", "10.66.0.3", check=False).returncode != 0
    assert sandbox.exec("a", "ping", "-c1", "-W1", "10.66.0.1").returncode == 0


def test_run_with_a_command_runs_it_inside_and_returns_its_status(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.67.0.0/24", "app")
    proc = sandbox.nc("run", "--name", "once", "--net", "app", "--", "sh", "-c", "ip -o -4 addr show eth0; exit 3",
                      check=False)
    assert proc.returncode == 3 and "10.67.0.2/24" in proc.stdout
    assert "once" in sandbox.nc("ps").stdout  # like docker run without --rm, the container stays


def test_without_privileges_a_command_says_so_in_one_line_and_changes_nothing(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.68.0.0/24", "app")
    before = (sandbox.nc("network", "ls").stdout, sandbox.namespaces())
    # root without a single capability: what a container or a locked-down service account gets
    proc = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-m", "netcore",
                           "run", "--name", "x", "--net", "app"], env=sandbox.env, capture_output=True, text=True)
    assert proc.returncode == 1 and "permission denied" in proc.stderr and "CAP_NET_ADMIN" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert (sandbox.nc("network", "ls").stdout, sandbox.namespaces()) == before
    assert "x" not in sandbox.nc("ps").stdout


def test_the_default_bridge_is_listed_from_the_first_use_and_gets_the_hosts_name_servers(sandbox):
    """Issue 23, item 5: ``network ls`` listed nothing before the first mutating command, and a container on the
    default bridge got a resolv.conf with no name server at all. The sandbox's "host" is its gateway namespace,
    whose resolv.conf is /etc/netns/<prefix>/resolv.conf (sandbox.SANDBOX_RESOLV_CONF): nothing is sent to it."""
    listed = sandbox.nc("network", "ls").stdout.splitlines()
    assert len(listed) == 2 and listed[1].split()[1:] == ["bridge", "bridge", "local"]
    assert sandbox.namespaces() == []  # a read: nothing built
    sandbox.nc("run", "--name", "plain")
    assert sandbox.nc("network", "ls").stdout.splitlines()[1].split()[0] == listed[1].split()[0]  # the same ID
    resolv = sandbox.exec("plain", "cat", "/etc/resolv.conf").stdout.splitlines()
    assert resolv[1:] == ["nameserver 172.17.0.1", "search sandbox.test",  # 127.0.0.1 left out, as Docker does
                          "options timeout:1 attempts:1"]
    assert resolv[0].startswith(f"# written by netcore: the name servers of /etc/netns/{sandbox.prefix}/resolv.conf")
