"""Whether a sandbox's store and kernel agree, as every test that kills or abuses something checks afterwards."""

from __future__ import annotations

import json
import time

from pyroute2 import IPRoute


def gateway_links(sandbox) -> dict[str, str | None]:
    """Link name -> kind, in the sandbox's gateway namespace."""
    with IPRoute(netns=sandbox.prefix) as ipr:
        return {link.get("ifname"): link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) for link in ipr.link("dump")}


def assert_consistent(sandbox) -> None:
    """Store and kernel agree: a namespace per container, a veth per endpoint, a bridge per network,
    no address twice on a network, and every container on a user-defined network answered by name."""
    ids = sandbox.nc("ps", "-q").stdout.split()
    containers = json.loads(sandbox.nc("inspect", *ids).stdout) if ids else []
    network_ids = [line.split()[1] for line in sandbox.nc("network", "ls").stdout.splitlines()[1:]]
    networks = json.loads(sandbox.nc("network", "inspect", *network_ids).stdout)
    own = [c for c in containers if c["HostConfig"]["NetworkMode"] not in ("host",) and
           not c["HostConfig"]["NetworkMode"].startswith("container:")]
    assert sorted(sandbox.namespaces()) == sorted([sandbox.prefix] + [f"{sandbox.prefix}-{c['Id'][:12]}" for c in own])
    endpoints = sum(len(c["NetworkSettings"]["Networks"]) for c in containers)
    # a removed container's veth goes with its namespace, which the kernel deletes in its own time (cleanup_net)
    deadline = time.monotonic() + 5
    while True:
        links = gateway_links(sandbox)
        veths = sum(1 for kind in links.values() if kind == "veth")
        if veths == endpoints or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert veths == endpoints
    assert sorted(n for n, kind in links.items() if kind == "bridge") == sorted(
        n["Options"].get("com.docker.network.bridge.name", f"br-{n['Id'][:12]}") for n in networks)
    for network in networks:
        addresses = [c["IPv4Address"] for c in network["Containers"].values()]
        assert len(addresses) == len(set(addresses)), network["Name"]
    for network in networks:
        if network["Name"] == "bridge" or not network["Containers"]:
            continue
        members = [c["Name"] for c in network["Containers"].values()]
        # one member asks for every member's name; getent exits 2 if any one is missing
        assert sandbox.exec(members[0], "getent", "hosts", *members).returncode == 0, network["Name"]
