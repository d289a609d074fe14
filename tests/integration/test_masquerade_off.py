"""What `com.docker.network.bridge.enable_ip_masquerade=false` means for published ports (issue 23 item 10,
moby/moby#46466): every source a published port's container sees, in sandbox mode.

A "LAN" namespace on a veth stands for the machines next to the host (the host is 192.0.2.1 there). The
container runs a TCP server that answers with the source address it sees. Traffic goes only to addresses
inside the sandbox's namespaces.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from netcore.firewall import apply as nft_apply
from tests.support.tcp_peers import CONNECT, SEEN_ADDRESS_SERVER

if not nft_apply.shutil.which("nft", path=nft_apply.NFT_SEARCH_PATH):
    pytest.skip("nft is not installed (apt-get install nftables)", allow_module_level=True)

HOST_LAN, NEIGHBOUR = "192.0.2.1", "192.0.2.2"
MASQUERADE_OFF = "com.docker.network.bridge.enable_ip_masquerade=false"


def sh(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=True)


def namespace_of(box, container: str) -> str:
    return json.loads(box.nc("inspect", container).stdout)[0]["NetworkSettings"]["SandboxKey"].rsplit("/", 1)[1]


def ip_of(box, container: str, network: str) -> str:
    return json.loads(box.nc("inspect", container).stdout)[0]["NetworkSettings"]["Networks"][network]["IPAddress"]


def seen_by_server(where: str, address: str, port: int) -> str:
    """The source address the server at ``address``:``port`` saw for a connection from namespace ``where``."""
    return sh("ip", "netns", "exec", where, sys.executable, "-c", CONNECT, address, str(port)).stdout.strip()


def serve(box, where: str, address: str, port: int) -> None:
    server = box.spawn_in(where, sys.executable, "-c", SEEN_ADDRESS_SERVER, address, str(port),
                          stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready"


def test_masquerade_off_rewrites_only_the_sources_a_published_port_cannot_work_without(sandbox):
    box, gw = sandbox, sandbox.prefix
    box.nc("firewall-reload")
    lan_ns = box.neighbour("lan", "lan0", HOST_LAN, NEIGHBOUR)
    sh("ip", "-n", lan_ns, "route", "add", "10.86.0.0/24", "via", HOST_LAN)  # the LAN routes the subnet to the host
    box.nc("network", "create", "--subnet", "10.86.0.0/24", "-o", MASQUERADE_OFF, "routed")
    box.nc("network", "create", "--subnet", "10.86.1.0/24", "-o", MASQUERADE_OFF, "routed2")
    box.nc("network", "create", "--subnet", "10.86.2.0/24", "nat")
    box.nc("run", "--name", "web", "--net", "routed", "-p", "8080:80")
    box.nc("run", "--name", "peer", "--net", "routed")
    box.nc("run", "--name", "far", "--net", "routed2")
    box.nc("run", "--name", "natted", "--net", "nat")
    serve(box, namespace_of(box, "web"), "0.0.0.0", 80)
    serve(box, lan_ns, NEIGHBOUR, 9000)
    web, far, natted = (namespace_of(box, name) for name in ("web", "far", "natted"))

    # the sources a reply reaches without help keep their own address
    assert seen_by_server(lan_ns, HOST_LAN, 8080) == NEIGHBOUR  # the outside
    assert seen_by_server(gw, HOST_LAN, 8080) == HOST_LAN  # the host through its own LAN address
    assert seen_by_server(far, HOST_LAN, 8080) == ip_of(box, "far", "routed2")  # another masquerade-off network
    # the two that cannot work without it are masqueraded to the gateway, as on every network: a neighbour
    # on the same bridge (the reply would go to it straight, past the reverse DNAT) and 127.0.0.1 (no
    # packet leaves the host with a loopback source)
    assert seen_by_server(namespace_of(box, "peer"), HOST_LAN, 8080) == "10.86.0.1"
    assert seen_by_server(web, HOST_LAN, 8080) == "10.86.0.1"  # the container through its own port
    assert seen_by_server(gw, "127.0.0.1", 8080) == "10.86.0.1"
    # a network that masquerades does so when its traffic leaves its bridge, published port or not
    assert seen_by_server(natted, HOST_LAN, 8080) == "10.86.0.1"
    # and on their way out, the containers of a masquerade-off network keep their addresses; a NAT one does not
    assert seen_by_server(web, NEIGHBOUR, 9000) == ip_of(box, "web", "routed")
    assert seen_by_server(natted, NEIGHBOUR, 9000) == HOST_LAN
