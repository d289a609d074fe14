"""netcore's nftables firewall end to end (issue 13), in sandbox mode: every rule lives in the sandbox's
gateway namespace, and a "WAN" namespace on a veth, with no route back to any container subnet, stands
for the outside world. Traffic goes only to addresses inside these namespaces."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from netcore.firewall import apply as nft_apply, desired_state
from netcore.firewall.nftables import render
from netcore.store import Store
from tests.support.tcp_peers import CONNECT, SEEN_ADDRESS_SERVER

if not nft_apply.shutil.which("nft", path=nft_apply.NFT_SEARCH_PATH):
    pytest.skip("nft is not installed (apt-get install nftables)", allow_module_level=True)

UPLINK, WAN_ADDRESS = "198.51.100.1", "198.51.100.2"
def sh(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=True)


def ip_of(sandbox, container: str, network: str) -> str:
    return json.loads(sandbox.nc("inspect", container).stdout)[0]["NetworkSettings"]["Networks"][network]["IPAddress"]


def connect(sandbox, container: str, address: str, port: int) -> str:
    return sandbox.exec(container, sys.executable, "-c", CONNECT, address, str(port)).stdout.strip()


def pings(sandbox, container: str, address: str) -> bool:
    return sandbox.exec(container, "ping", "-c1", "-W1", address, check=False).returncode == 0


def namespace_of(sandbox, container: str) -> str:
    return json.loads(sandbox.nc("inspect", container).stdout)[0]["NetworkSettings"]["SandboxKey"].rsplit("/", 1)[1]


def pings_behind_netcores_back(namespace: str, address: str) -> bool:
    """ping from a container's namespace without a netcore command (which would put the table back)."""
    return subprocess.run(["ip", "netns", "exec", namespace, "ping", "-c1", "-W1", address],
                          capture_output=True, timeout=10, check=False).returncode == 0


def listen(sandbox, container: str) -> None:
    ns = namespace_of(sandbox, container)
    server = sandbox.spawn_in(ns, sys.executable, "-c", SEEN_ADDRESS_SERVER, "0.0.0.0", "9090", stdout=subprocess.PIPE,
                              text=True)
    assert server.stdout.readline().strip() == "ready"


def live_is_current(sandbox) -> bool:
    """The gateway namespace's table is what netcore renders from the store now."""
    store = Store.open_readonly(sandbox.state_dir)
    try:
        ruleset = render(desired_state(store.networks(), store.containers(), store.endpoints(), store.ports()))
    finally:
        store.close()
    return nft_apply.status(ruleset, sandbox.prefix) == nft_apply.CURRENT


@pytest.fixture
def wan(sandbox):
    """The sandbox with its gateway namespace made, plus a WAN namespace on a veth and a TCP server there
    that answers with the address it sees; the WAN has no route to any container subnet."""
    first = sandbox.nc("firewall-reload")  # the first action makes the gateway namespace and the default bridge
    assert "switched on net.ipv4.ip_forward in namespace" in first.stderr  # said once, on the first command
    wan_ns = sandbox.neighbour("wan", "up0", UPLINK, WAN_ADDRESS)
    server = sandbox.spawn_in(wan_ns, sys.executable, "-c", SEEN_ADDRESS_SERVER, WAN_ADDRESS, "8080",
                              stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready"
    assert "switched on" not in sandbox.nc("network", "ls").stderr  # once only
    return sandbox


def test_masquerade_lets_containers_out_and_the_outside_sees_the_uplink(wan):
    wan.nc("network", "create", "--subnet", "10.70.1.0/24", "out")
    wan.nc("network", "create", "--subnet", "10.70.2.0/24", "-o",
           "com.docker.network.bridge.enable_ip_masquerade=false", "routed")
    wan.nc("run", "--name", "c1", "--net", "out")
    wan.nc("run", "--name", "c2", "--net", "routed")
    wan.nc("run", "--name", "c0")  # the default bridge masquerades too
    assert connect(wan, "c1", WAN_ADDRESS, 8080) == UPLINK
    assert connect(wan, "c0", WAN_ADDRESS, 8080) == UPLINK
    assert connect(wan, "c2", WAN_ADDRESS, 8080).startswith("failed")  # its own address, and no route back
    options = json.loads(wan.nc("network", "inspect", "out", "routed").stdout)
    assert [o["Options"]["com.docker.network.bridge.enable_ip_masquerade"] for o in options] == ["true", "false"]
    assert options[0]["Options"]["com.docker.network.bridge.enable_icc"] == "true"


def test_networks_are_isolated_both_ways_and_a_container_on_both_reaches_both(wan):
    wan.nc("network", "create", "--subnet", "10.71.1.0/24", "neta")
    wan.nc("network", "create", "--subnet", "10.71.2.0/24", "netb")
    wan.nc("run", "--name", "a1", "--net", "neta")
    wan.nc("run", "--name", "b1", "--net", "netb")
    wan.nc("run", "--name", "d1")  # the default bridge is isolated as well
    wan.nc("run", "--name", "ab", "--net", "neta")
    wan.nc("network", "connect", "netb", "ab")
    for name in ("a1", "b1", "d1"):
        listen(wan, name)
    a1, b1, d1 = ip_of(wan, "a1", "neta"), ip_of(wan, "b1", "netb"), ip_of(wan, "d1", "bridge")
    for source, target in (("a1", b1), ("b1", a1), ("a1", d1), ("d1", a1), ("b1", d1)):
        assert not pings(wan, source, target), (source, target)
        assert connect(wan, source, target, 9090).startswith("failed"), (source, target)
    assert pings(wan, "ab", a1) and pings(wan, "ab", b1)
    assert connect(wan, "ab", b1, 9090) == ip_of(wan, "ab", "netb")  # b1 sees ab's own address on netb
    assert pings(wan, "a1", "10.71.1.1")  # its own gateway


def test_an_internal_network_stays_inside_yet_resolves_its_neighbours(wan):
    wan.nc("network", "create", "--subnet", "10.72.1.0/24", "--internal", "vault")
    wan.nc("run", "--name", "v1", "--net", "vault")
    wan.nc("run", "--name", "v2", "--net", "vault")
    assert connect(wan, "v1", WAN_ADDRESS, 8080).startswith("failed")
    assert wan.exec("v1", "getent", "hosts", "v2").stdout.split()[0] == ip_of(wan, "v2", "vault")
    assert pings(wan, "v1", ip_of(wan, "v2", "vault"))
    # nothing comes in either: the gateway namespace routes to it, but a packet from the WAN side does not cross
    assert not pings(wan, "v1", UPLINK)


def test_icc_off_blocks_neighbours_but_not_dns(wan):
    wan.nc("network", "create", "--subnet", "10.73.1.0/24", "-o", "com.docker.network.bridge.enable_icc=false",
           "quiet")
    wan.nc("run", "--name", "q1", "--net", "quiet")
    wan.nc("run", "--name", "q2", "--net", "quiet")
    listen(wan, "q2")
    q2 = wan.exec("q1", "getent", "hosts", "q2").stdout.split()[0]  # dnsd on the gateway answers
    assert q2 == ip_of(wan, "q2", "quiet")
    assert not pings(wan, "q1", q2)
    assert connect(wan, "q1", q2, 9090).startswith("failed")
    assert connect(wan, "q1", WAN_ADDRESS, 8080) == UPLINK  # and it still goes out


def test_a_flushed_ruleset_comes_back_with_firewall_reload_or_any_command(wan):
    wan.nc("network", "create", "--subnet", "10.74.1.0/24", "neta")
    wan.nc("network", "create", "--subnet", "10.74.2.0/24", "netb")
    wan.nc("run", "--name", "a1", "--net", "neta")
    wan.nc("run", "--name", "b1", "--net", "netb")
    b1, a1 = ip_of(wan, "b1", "netb"), namespace_of(wan, "a1")
    assert live_is_current(wan) and not pings(wan, "a1", b1)
    sh("ip", "netns", "exec", wan.prefix, "nft", "flush", "ruleset")
    assert pings_behind_netcores_back(a1, b1)  # nothing keeps them apart now
    wan.nc("firewall-reload")
    assert live_is_current(wan) and not pings_behind_netcores_back(a1, b1)
    sh("ip", "netns", "exec", wan.prefix, "nft", "flush", "ruleset")
    assert pings_behind_netcores_back(a1, b1)
    wan.nc("ps")  # a command that changes nothing puts it back as well
    assert live_is_current(wan) and not pings_behind_netcores_back(a1, b1)


def test_removing_the_networks_removes_their_rules(wan):
    ids = [wan.nc("network", "create", "--subnet", f"10.75.{i}.0/24", f"gone{i}").stdout.strip() for i in (1, 2)]
    listed = nft_apply.live_table(wan.prefix)
    assert all(f"in-{i[:12]}" in listed for i in ids)
    wan.nc("network", "rm", "gone1", "gone2")
    listed = nft_apply.live_table(wan.prefix)
    assert not any(i[:12] in listed for i in ids) and "gone" not in listed
    assert live_is_current(wan)  # only the default bridge's rules are left
    wan.nc("purge")
    assert not os.path.exists(f"/run/netns/{wan.prefix}")


def test_kill_9_during_run_leaves_a_table_the_next_command_repairs(wan):
    wan.nc("network", "create", "--subnet", "10.76.1.0/24", "app")
    rng = random.Random(13)
    for attempt in range(6):
        proc = wan.popen("run", "--name", f"k{attempt}", "--net", "app", stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.6))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if attempt % 2:
            sh("ip", "netns", "exec", wan.prefix, "nft", "flush", "ruleset")
        wan.nc("network", "ls")
        assert live_is_current(wan), attempt
