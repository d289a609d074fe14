"""Overlay networks across three hosts (issue 27), end to end: three gateway namespaces on an underlay namespace,
each a "host" with its own state dir and netcored, joined to a 3-member etcd on loopback (Debian's
etcd-server); real VXLAN, nftables, dnsd, ping, dig's peers (dnslib queries from inside containers).

One set of hosts and one etcd cluster serve the whole module (tests/integration/overlay_hosts.py); each test
removes what it made, and the tests that kill an agent or etcd members start them again. The module's
teardown purges every host (each leaves the cluster) and checks that etcd holds no key of netcore's, and that
no namespace, link or entry is left. Times are printed (-s), never asserted: bench/overlay.py measures.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.support.etcd_cluster import have_etcd
from tests.support.overlay_hosts import Hosts, Resolver, in_ns, pings
from tests.support.sandbox import cleanup, new_sandbox, wait_for
from tests.support.tcp_peers import CONNECT, SEEN_ADDRESS_SERVER

pytestmark = pytest.mark.skipif(not have_etcd(), reason="needs etcd and etcdctl (Debian's etcd-server, etcd-client)")

TTL = 3
GATEWAY = "10.0.0.1"  # the first overlay network's gateway, on every host


@pytest.fixture(scope="module")
def hosts():
    world = Hosts(3, ttl=TTL)
    try:
        world.start()
        yield world
        world.purge()  # every host purged: each leaves the cluster
        leftover = world.etcd_keys()
    finally:
        world.close()
    assert leftover == [], leftover
    assert not [box for box in world.boxes if box.namespaces()], "namespaces left behind"


def names_of(resolver: Resolver, name: str, qtype: str = "A") -> list[str]:
    return sorted(resolver.ask(name, qtype) or [])


def wait_answer(resolver: Resolver, name: str, expected, timeout: float = 30.0) -> float:
    """Seconds until ``name`` is answered ``expected`` (a sorted list; [] for gone); AssertionError past
    ``timeout`` (a bound against hanging, not a promise: the figures are bench/overlay.py's)."""
    started = time.monotonic()
    assert wait_for(lambda: names_of(resolver, name) == expected, timeout=timeout), \
        f"{name}: {names_of(resolver, name)} != {expected}"
    return time.monotonic() - started


def fdb(host_ns: str, device: str) -> list[str]:
    out = subprocess.run(["bridge", "-n", host_ns, "fdb", "show", "dev", device], capture_output=True, text=True,
                         timeout=30).stdout
    return sorted(line for line in out.splitlines() if "dst" in line)


def links(host_ns: str, kind: str) -> list[str]:
    out = subprocess.run(["ip", "-n", host_ns, "-j", "link", "show", "type", kind], capture_output=True, text=True,
                         timeout=30).stdout
    return sorted(link["ifname"] for link in json.loads(out or "[]"))


def test_containers_on_three_hosts_talk_and_resolve_each_other_as_on_one_bridge(hosts):
    """ping, TCP and UDP across hosts; the MTU (1422-byte DF passes at 1450, 1472 does not); names, aliases
    rotating across hosts, hostnames, NAME.NETWORK and PTR from every host; network ls/inspect everywhere."""
    hosts.nc(0, "network", "create", "-d", "overlay", "--label", "tier=web", "app")
    for n in range(3):
        listed = hosts.nc(n, "network", "ls").stdout
        assert any(line.split()[1:] == ["app", "overlay", "global"] for line in listed.splitlines()[1:]), listed
    c = [hosts.run(n, f"c{n}", "--net", "app", "--net-alias", "api", "--hostname", f"host{n}") for n in range(3)]
    address = {x.name: json.loads(hosts.nc(x.host, "inspect", x.name).stdout)[0]["NetworkSettings"]["Networks"]
               ["app"]["IPAddress"] for x in c}
    assert len(set(address.values())) == 3 and all(a.startswith("10.0.0.") for a in address.values())
    for x in c:
        with Resolver(x.netns, GATEWAY) as dns:
            # a remote container is named once this host's watch brought it (a moment after its run returned)
            wait_answer(dns, "api", sorted(address.values()))
            for y in c:
                assert names_of(dns, y.name) == [address[y.name]]
                assert names_of(dns, f"{y.name}.app") == [address[y.name]]
                assert names_of(dns, f"host{y.host}") == [address[y.name]]
                reverse = ".".join(reversed(address[y.name].split("."))) + ".in-addr.arpa"
                assert names_of(dns, reverse, "PTR") == [f"{y.name}.app."]
            assert names_of(dns, "api") == sorted(address.values())
            firsts = {dns.ask("api")[0] for _ in range(12)}
            assert firsts == set(address.values()), firsts  # rotating across the hosts' containers
        for y in c:
            if y is not x:
                result = pings(x.netns, y.name)
                assert result.returncode == 0, result.stdout + result.stderr
    # the MTU: the overlay is 1450 on a 1500 underlay, and so is every container's interface
    assert pings(c[0].netns, address["c2"], size=1422).returncode == 0
    too_big = pings(c[0].netns, address["c2"], size=1472)
    assert too_big.returncode != 0 and "message too long" in (too_big.stdout + too_big.stderr).lower()
    assert "mtu 1450" in in_ns(c[1].netns, "ip", "link", "show", "eth0").stdout
    # TCP and UDP across hosts
    server = subprocess.Popen(["ip", "netns", "exec", c[2].netns, sys.executable, "-c", SEEN_ADDRESS_SERVER,
                               "0.0.0.0", "9000"], stdout=subprocess.PIPE, text=True)
    udp = subprocess.Popen(["ip", "netns", "exec", c[2].netns, sys.executable, "-c",
                            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                            "s.bind(('0.0.0.0', 9001)); print('ready', flush=True)\n"
                            "while True:\n d, a = s.recvfrom(100); s.sendto(d.upper(), a)"],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready" and udp.stdout.readline().strip() == "ready"
        seen = in_ns(c[0].netns, sys.executable, "-c", CONNECT, "c2", "9000").stdout.strip()
        assert seen == address["c0"]  # no NAT inside the overlay: c2 sees c0's own address
        echo = in_ns(c[1].netns, sys.executable, "-c",
                     "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); "
                     "s.sendto(b'hello', ('c2', 9001)); print(s.recv(100).decode())").stdout.strip()
        assert echo == "HELLO"
    finally:
        for process in (server, udp):
            process.kill()
            process.wait()
    document = json.loads(hosts.nc(1, "network", "inspect", "app").stdout)[0]
    assert (document["Scope"], document["Driver"], document["Labels"]) == ("global", "overlay", {"tier": "web"})
    assert sorted(p["Name"] for p in document["Peers"]) == ["h1", "h2", "h3"]
    assert [v["Name"] for v in document["Containers"].values()] == ["c1"]
    # remove: gone from every host's names; each host's network goes with its last container
    hosts.nc(0, "rm", "c0")
    with Resolver(c[1].netns, GATEWAY) as dns:
        wait_answer(dns, "c0", [])
        assert names_of(dns, "api") == sorted([address["c1"], address["c2"]])
    assert links(hosts.boxes[0].prefix, "vxlan") == []
    assert [name for name in links(hosts.boxes[0].prefix, "bridge") if name.startswith("ov-")] == []
    hosts.nc(1, "rm", "c1")
    hosts.nc(2, "rm", "c2")
    hosts.nc(1, "network", "rm", "app")
    for n in range(3):
        assert "app" not in hosts.nc(n, "network", "ls").stdout
        assert not links(hosts.boxes[n].prefix, "vxlan")


def test_isolation_from_another_overlay_and_from_a_local_bridge_ways_out_and_published_ports(hosts):
    hosts.nc(0, "network", "create", "-d", "overlay", "--subnet", "10.0.10.0/24", "front")
    hosts.nc(0, "network", "create", "-d", "overlay", "--subnet", "10.0.11.0/24", "back")
    hosts.nc(0, "network", "create", "-d", "overlay", "--subnet", "10.0.12.0/24", "--internal", "vault")
    hosts.nc(1, "network", "create", "--subnet", "10.77.0.0/24", "lan")
    wan = hosts.boxes[1].neighbour("wan", "up0", "198.51.100.1", "198.51.100.2")
    server = subprocess.Popen(["ip", "netns", "exec", wan, sys.executable, "-c", SEEN_ADDRESS_SERVER, "198.51.100.2",
                               "8080"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        f1 = hosts.run(0, "f1", "--net", "front")
        f2 = hosts.run(1, "f2", "--net", "front", "-p", "8081:9000")
        b2 = hosts.run(1, "b2", "--net", "back")
        v1 = hosts.run(0, "v1", "--net", "vault")
        v2 = hosts.run(1, "v2", "--net", "vault")
        local = hosts.run(1, "local", "--net", "lan")
        assert pings(f1.netns, "f2").returncode == 0
        assert pings(v1.netns, "v2").returncode == 0  # an internal overlay still spans hosts
        with Resolver(f1.netns, "10.0.10.1") as dns:
            assert names_of(dns, "b2") == [] and names_of(dns, "local") == []  # names of its networks only
        b2_address = json.loads(hosts.nc(1, "inspect", "b2").stdout)[0]["NetworkSettings"]["Networks"]["back"][
            "IPAddress"]
        f2_address = json.loads(hosts.nc(1, "inspect", "f2").stdout)[0]["NetworkSettings"]["Networks"]["front"][
            "IPAddress"]
        assert pings(f2.netns, b2_address, wait=1).returncode != 0  # overlays apart on the same host
        assert pings(local.netns, f2_address, wait=1).returncode != 0  # and apart from a local bridge
        assert pings(b2.netns, f2_address, wait=1).returncode != 0
        # connect and disconnect: the local container joins the overlay, reaches f1 on the other host, leaves
        hosts.nc(1, "network", "connect", "--alias", "bridged", "front", "local")
        assert pings(local.netns, "f1").returncode == 0
        with Resolver(f1.netns, "10.0.10.1") as dns:
            assert wait_for(lambda: len(names_of(dns, "bridged")) == 1, timeout=30), names_of(dns, "bridged")
            hosts.nc(1, "network", "disconnect", "front", "local")
            wait_answer(dns, "bridged", [])
        # out of the host, masqueraded (docker_gwbridge's job), from a non-internal overlay only
        out = in_ns(f2.netns, sys.executable, "-c", CONNECT, "198.51.100.2", "8080").stdout.strip()
        assert out == "198.51.100.1"
        assert in_ns(v2.netns, sys.executable, "-c", CONNECT, "198.51.100.2", "8080").stdout.startswith("failed")
        # -p on the host that runs the container
        listener = subprocess.Popen(["ip", "netns", "exec", f2.netns, sys.executable, "-c", SEEN_ADDRESS_SERVER,
                                     "0.0.0.0", "9000"], stdout=subprocess.PIPE, text=True)
        try:
            assert listener.stdout.readline().strip() == "ready"
            reached = in_ns(wan, sys.executable, "-c", CONNECT, "198.51.100.1", "8081").stdout.strip()
            assert reached and not reached.startswith("failed"), reached
        finally:
            listener.kill()
            listener.wait()
    finally:
        server.kill()
        server.wait()
    for n, names in ((0, ["f1", "v1"]), (1, ["f2", "b2", "v2", "local"])):
        hosts.nc(n, "rm", *names)
    for name in ("front", "back", "vault"):
        hosts.nc(2, "network", "rm", name)
    hosts.nc(1, "network", "rm", "lan")


def test_twenty_runs_at_once_on_three_hosts_get_twenty_addresses(hosts):
    hosts.nc(0, "network", "create", "-d", "overlay", "--subnet", "10.0.20.0/24", "burst")
    procs = [hosts.boxes[n % 3].popen("run", "--name", f"p{n}", "--net", "burst", stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for n in range(20)]
    failures = [p.communicate(timeout=120)[1] for p in procs if p.wait(timeout=120) != 0]
    assert failures == []
    endpoints = hosts.values("/netcore/v1/endpoints/")
    addresses = [e["ipv4"] for e in endpoints.values() if e["container_name"].startswith("p")]
    assert len(addresses) == 20 and len(set(addresses)) == 20
    for n in range(3):
        hosts.nc(n, "rm", *[f"p{m}" for m in range(n, 20, 3)])
    hosts.nc(0, "network", "rm", "burst")


def test_a_host_whose_agent_is_killed_leaves_and_comes_back_with_the_same_addresses(hosts):
    hosts.nc(0, "network", "create", "-d", "overlay", "--subnet", "10.0.30.0/24", "life")
    watcher = hosts.run(0, "watcher", "--net", "life")
    k1 = hosts.run(2, "k1", "--net", "life", "--net-alias", "kk")
    k2 = hosts.run(2, "k2", "--net", "life", "--net-alias", "kk")
    with Resolver(watcher.netns, "10.0.30.1") as dns:
        # another host learns of k2 through its watch, a moment after k2's run returned (a race under load)
        assert wait_for(lambda: len(names_of(dns, "kk")) == 2, timeout=30), names_of(dns, "kk")
        before = names_of(dns, "kk")
        pid = hosts.agent_pid(2)
        os.kill(pid, signal.SIGKILL)
        gone = wait_answer(dns, "kk", [], timeout=10 * TTL)
        print(f"\nagent killed: names gone from another host after {gone:.2f} s (TTL {TTL} s)")
        hosts.nc(2, "ps")  # the next command starts netcored again
        back = wait_answer(dns, "kk", before)
        print(f"agent restarted: names back after {back:.2f} s")
        assert pings(watcher.netns, "k1").returncode == 0
    hosts.nc(2, "rm", k1.name, k2.name)
    hosts.nc(0, "rm", watcher.name)
    hosts.nc(0, "network", "rm", "life")


def test_the_etcd_leader_killed_during_a_burst_of_runs_loses_nothing(hosts):
    hosts.nc(0, "network", "create", "-d", "overlay", "--subnet", "10.0.40.0/24", "storm")
    leader = hosts.etcd.leader()
    procs = []
    for n in range(12):
        procs.append(hosts.boxes[n % 3].popen("run", "--name", f"s{n}", "--net", "storm", stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True))
        if n == 4:
            hosts.etcd.kill(leader)
    results = [(p.wait(timeout=120), p.communicate(timeout=120)[1]) for p in procs]
    assert [err for code, err in results if code != 0] == []
    try:
        endpoints = hosts.values("/netcore/v1/endpoints/")
        names = sorted(e["container_name"] for e in endpoints.values() if e["container_name"].startswith("s"))
        assert names == sorted(f"s{n}" for n in range(12))
        assert len({e["ipv4"] for e in endpoints.values() if e["container_name"].startswith("s")}) == 12
        assert sorted(hosts.values("/netcore/v1/hosts/")) == [f"/netcore/v1/hosts/h{n}" for n in (1, 2, 3)]
    finally:
        hosts.etcd.start_member(leader)
        hosts.etcd.wait_healthy()
    for n in range(3):
        hosts.nc(n, "rm", *[f"s{m}" for m in range(n, 12, 3)])
    hosts.nc(0, "network", "rm", "storm")


def test_with_every_store_member_down_local_work_goes_on_overlay_runs_fail_and_all_converges_after(hosts):
    hosts.nc(0, "network", "create", "-d", "overlay", "--subnet", "10.0.50.0/24", "dark")
    d0 = hosts.run(0, "d0", "--net", "dark")
    hosts.run(1, "d1", "--net", "dark")
    with Resolver(d0.netns, "10.0.50.1") as dns:
        assert wait_for(lambda: names_of(dns, "d1") != [], timeout=30)  # once the watch brought it
        for member in hosts.etcd.members:
            hosts.etcd.kill(member)
        try:
            hosts.nc(0, "network", "create", "--subnet", "10.78.0.0/24", "island")
            island = hosts.run(0, "island1", "--net", "island")
            assert pings(island.netns, "10.78.0.1").returncode == 0
            started = time.monotonic()
            refused = hosts.nc(0, "run", "--name", "d2", "--net", "dark", check=False)
            print(f"\noverlay run with the store down failed after {time.monotonic() - started:.2f} s")
            assert refused.returncode != 0
            lines = refused.stderr.strip().splitlines()
            assert len(lines) == 1 and "cluster store etcd://127.0.0.1:" in lines[0] and "unreachable" in lines[0]
            assert names_of(dns, "d1") != []  # dnsd answers the last names it knew
            assert pings(d0.netns, "d1").returncode == 0  # and the data plane stays
            hosts.nc(1, "rm", "d1")  # the store does not know yet; netcored tells it when it returns
        finally:
            for member in hosts.etcd.members:
                hosts.etcd.start_member(member)
            hosts.etcd.wait_healthy()
        converged = wait_answer(dns, "d1", [], timeout=60)
        print(f"store back: converged without a command after {converged:.2f} s")
    hosts.nc(0, "rm", "d0", "island1")
    hosts.nc(0, "network", "rm", "dark", "island")
    assert not [k for k in hosts.etcd_keys() if "/endpoints/" in k or "/addresses/" in k]


def test_compaction_while_a_watch_is_broken_misses_no_delete(hosts):
    """h1's netcored is frozen while etcd restarts under it (its watch stream breaks), a container of h2 goes,
    and etcd compacts past that delete: h1 lists again when it resumes and drops the name."""
    hosts.nc(0, "network", "create", "-d", "overlay", "--subnet", "10.0.60.0/24", "squash")
    w = hosts.run(0, "w", "--net", "squash")
    gone = hosts.run(1, "gone", "--net", "squash")
    with Resolver(w.netns, "10.0.60.1") as dns:
        assert wait_for(lambda: names_of(dns, "gone") != [], timeout=30)  # once the watch brought it
        agent = hosts.agent_pid(0)
        os.kill(agent, signal.SIGSTOP)
        try:
            for member in hosts.etcd.members:
                hosts.etcd.kill(member)
                hosts.etcd.start_member(member)
            hosts.etcd.wait_healthy()
            hosts.nc(1, "rm", gone.name)
            revision = json.loads(hosts.etcd.etcdctl("endpoint", "status", "-w", "json").stdout)[0]["Status"][
                "header"]["revision"]
            hosts.etcd.etcdctl("compact", str(revision))
        finally:
            os.kill(agent, signal.SIGCONT)
        wait_answer(dns, "gone", [], timeout=60)
    hosts.nc(0, "rm", "w")
    hosts.nc(0, "network", "rm", "squash")


def test_bad_input_is_one_line_and_changes_nothing(hosts, tmp_path_factory):
    box = new_sandbox("ncov", state_dir=str(tmp_path_factory.mktemp("lone")))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def not_etcd():  # a TCP server that is not etcd: it closes every connection
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                conn.close()
            except OSError:
                pass

    thread = threading.Thread(target=not_etcd, daemon=True)
    thread.start()
    try:
        subprocess.run(["ip", "netns", "add", box.prefix], check=True)
        subprocess.run(["ip", "-n", box.prefix, "link", "set", "lo", "up"], check=True)  # 127.0.0.1: its address
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        nobody = free.getsockname()[1]
        free.close()
        cases = [
            (["network", "create", "-d", "overlay", "x"], "this host has not joined a cluster"),
            (["cluster", "join", "--store", f"etcd://127.0.0.1:{nobody}", "--advertise-address", "127.0.0.1"],
             "unreachable"),
            (["cluster", "join", "--store", "http://127.0.0.1:2379", "--advertise-address", "127.0.0.1"],
             "bad store URL"),
            (["cluster", "join", "--store", f"etcd://127.0.0.1:{listener.getsockname()[1]}",
              "--advertise-address", "127.0.0.1"], "cluster store"),
            (["cluster", "join", "--store", hosts.etcd.url, "--advertise-address", "192.0.2.77"],
             "advertise address 192.0.2.77 is not an address of this host"),
            (["cluster", "ls"], "this host has not joined a cluster"),
        ]
        for argv, message in cases:
            result = box.nc(*argv, check=False)
            lines = result.stderr.strip().splitlines()
            assert result.returncode != 0 and len(lines) == 1 and message in lines[0], (argv, result.stderr)
            assert not os.path.exists(os.path.join(box.state_dir, "cluster.json"))
        assert not [k for k in hosts.etcd_keys() if "/hosts/" in k and not k.endswith(("/h1", "/h2", "/h3"))]
    finally:
        stop.set()
        thread.join()
        listener.close()
        cleanup(box)
    # on a joined host: a subnet overlapping a local network of another joined host, an MTU that does not fit
    hosts.nc(2, "network", "create", "--subnet", "10.0.70.0/24", "mine")
    wait_for(lambda: "10.0.70.0/24" in hosts.values("/netcore/v1/hosts/")["/netcore/v1/hosts/h3"]["local_subnets"])
    for argv, message in (
            (["--subnet", "10.0.70.0/25", "dup"], "overlaps 10.0.70.0/24 of a local network of host h3"),
            (["-o", "com.docker.network.driver.mtu=1451", "big"], "at most 1450"),
            (["mine"], "in use by a local network on host h3")):
        result = hosts.nc(0, "network", "create", "-d", "overlay", *argv, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1 and message in lines[0], (argv, result.stderr)
    assert not [k for k in hosts.etcd_keys() if "/networks/" in k]
    hosts.nc(2, "network", "rm", "mine")


def test_leaving_and_a_clean_teardown(hosts):
    """network rm removes an overlay network from every host (devices, entries); leave removes every key of
    the host; afterwards nothing of netcore's is in etcd but the other hosts' own keys."""
    hosts.nc(0, "network", "create", "-d", "overlay", "--subnet", "10.0.80.0/24", "last")
    a = hosts.run(0, "a", "--net", "last")
    b = hosts.run(1, "b", "--net", "last")
    device = links(hosts.boxes[0].prefix, "vxlan")
    assert len(device) == 1
    assert wait_for(lambda: len(fdb(hosts.boxes[0].prefix, device[0])) == 1)
    assert hosts.nc(2, "cluster", "leave").stdout.startswith("left etcd://")  # h3 has no container on an overlay
    refused = hosts.nc(0, "cluster", "leave", check=False)
    assert refused.returncode != 0 and "containers on overlay networks run here: a (on last)" in refused.stderr
    hosts.nc(0, "rm", a.name)
    hosts.nc(1, "rm", b.name)
    hosts.nc(0, "network", "rm", "last")
    for n in range(2):
        assert links(hosts.boxes[n].prefix, "vxlan") == []
    assert not [k for k in hosts.etcd_keys() if "/h3" in k]
    hosts.join(2)  # h3 again, for the module's teardown to purge
