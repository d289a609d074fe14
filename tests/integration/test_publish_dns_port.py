"""Publishing port 53 (issue 23 item 3): a Pi-hole or CoreDNS container takes `-p 53:53/udp -p 53:53/tcp`
as on Docker, while dnsd keeps answering every container's names on the gateway addresses.

In sandbox mode: a "LAN" namespace on a veth stands for the machines next to the host (the host is
192.0.2.1 there); the published container runs fake_upstream.py on its port 53, answering pi.test with
192.0.2.53, which dnsd (no upstream in sandbox mode) never answers. Traffic goes only to addresses
inside the sandbox's namespaces.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from netcore.firewall import apply as nft_apply
from tests.support.upstream import FAKE_UPSTREAM

if not nft_apply.shutil.which("nft", path=nft_apply.NFT_SEARCH_PATH):
    pytest.skip("nft is not installed (apt-get install nftables)", allow_module_level=True)

HOST_LAN, NEIGHBOUR = "192.0.2.1", "192.0.2.2"
PI = "192.0.2.53"  # what only the published container answers (for pi.test)


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=check)


def namespace_of(box, container: str) -> str:
    return json.loads(box.nc("inspect", container).stdout)[0]["NetworkSettings"]["SandboxKey"].rsplit("/", 1)[1]


def ip_of(box, container: str, network: str) -> str:
    return json.loads(box.nc("inspect", container).stdout)[0]["NetworkSettings"]["Networks"][network]["IPAddress"]


def dig_in(where: str, *args: str) -> tuple[str, list[str]]:
    """(status, answers) of one dig run in namespace ``where``; NO-REPLY when nothing came back."""
    out = sh("ip", "netns", "exec", where, "dig", "+time=2", "+tries=1", "+noall", "+comments", "+answer",
             *args, check=False).stdout
    status = next((line.split("status: ")[1].split(",")[0] for line in out.splitlines() if "status: " in line),
                  "NO-REPLY")
    return status, [line.split()[-1] for line in out.splitlines() if line and not line.startswith(";")]


def held(box) -> set[str]:
    return box.held_ports()


BIND = """
import socket, sys
kind = socket.SOCK_DGRAM if sys.argv[1] == "udp" else socket.SOCK_STREAM
family = socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET
s = socket.socket(family, kind)
s.bind((sys.argv[2], 53))
"""


REUSEPORT_SQUATTER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind((sys.argv[1], 53))
print("ready", flush=True)
time.sleep(3600)
"""


def can_bind(where: str, protocol: str, address: str) -> bool:
    """Whether a plain host process (no SO_REUSEADDR/SO_REUSEPORT) could take ``address`` port 53 now."""
    return sh("ip", "netns", "exec", where, sys.executable, "-c", BIND, protocol, address, check=False).returncode == 0


@pytest.fixture
def lan(sandbox):
    sandbox.nc("firewall-reload")  # the first action makes the gateway namespace
    sandbox.neighbour("lan", "lan0", HOST_LAN, NEIGHBOUR)
    return sandbox


def test_port_53_published_forwards_host_addresses_while_dnsd_keeps_the_gateways(lan):
    box, gw, lan_ns = lan, lan.prefix, f"{lan.prefix}lan"
    box.nc("network", "create", "--subnet", "10.85.0.0/24", "--ipv6", "--subnet", "fd00:85::/64", "app")
    box.nc("network", "create", "--subnet", "10.85.1.0/24", "other")
    # a resolver of the host on one of its addresses keeps the port, as on Docker: even one that set
    # SO_REUSEPORT, which dnsd's listeners and the held port share it with
    squatter = box.spawn_in(gw, sys.executable, "-c", REUSEPORT_SQUATTER, HOST_LAN, stdout=subprocess.PIPE, text=True)
    assert squatter.stdout.readline().strip() == "ready"
    taken = box.nc("run", "--name", "pihole", "--net", "app", "-p", "53:53/udp", check=False)
    assert taken.returncode == 1 and len(taken.stderr.splitlines()) == 1
    assert taken.stderr.startswith("netcore: Bind for 0.0.0.0:53 failed: port is already allocated (udp, held by ")
    assert f"(pid {squatter.pid}, udp {HOST_LAN}:53)" in taken.stderr
    squatter.kill()
    squatter.wait()
    box.nc("run", "--name", "pihole", "--net", "app", "-p", "53:53/udp", "-p", "53:53/tcp")
    box.nc("run", "--name", "web", "--net", "app")
    box.nc("run", "--name", "far", "--net", "other")
    box.nc("run", "--name", "d0")  # the default bridge: no dnsd on its gateway
    server = box.spawn_in(namespace_of(box, "pihole"), sys.executable, FAKE_UPSTREAM, "--answer", f"pi.test={PI}",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready"
    assert {"udp 0.0.0.0:53", "tcp 0.0.0.0:53", "udp [::]:53", "tcp [::]:53"} <= held(box)
    assert box.nc("port", "pihole").stdout.splitlines() == [
        "53/tcp -> 0.0.0.0:53", "53/tcp -> [::]:53", "53/udp -> 0.0.0.0:53", "53/udp -> [::]:53"]
    web, pihole, far = ip_of(box, "web", "app"), ip_of(box, "pihole", "app"), ip_of(box, "far", "other")

    # every host address but dnsd's forwards to the published container, over UDP and TCP
    for where, server_address in ((lan_ns, HOST_LAN), (gw, HOST_LAN), (gw, "127.0.0.1"),
                                  (namespace_of(box, "far"), HOST_LAN), (namespace_of(box, "d0"), "172.17.0.1")):
        for proto in ("+notcp", "+tcp"):
            assert dig_in(where, f"@{server_address}", proto, "pi.test") == ("NOERROR", [PI]), (where, proto)

    # dnsd's addresses stay dnsd's: every container's names are answered as before, pihole's own included,
    # and so are the gateway namespace's questions to them
    for container, network, gateway in (("web", "app", "10.85.0.1"), ("pihole", "app", "10.85.0.1"),
                                        ("far", "other", "10.85.1.1")):
        ns = namespace_of(box, container)
        for proto in ("+notcp", "+tcp"):
            assert dig_in(ns, f"@{gateway}", proto, "web" if network == "app" else "far") == \
                ("NOERROR", [web if network == "app" else far]), (container, proto)
            assert dig_in(ns, f"@{gateway}", proto, "pi.test") == ("NXDOMAIN", []), (container, proto)
    assert box.exec("pihole", "getent", "ahostsv4", "web").stdout.split()[0] == web
    assert box.exec("web", "getent", "ahostsv4", "pihole").stdout.split()[0] == pihole
    assert dig_in(gw, "@10.85.0.1", "web.app") == ("NOERROR", [web])
    assert dig_in(gw, "@fd00:85::1", "+tcp", "pihole.app") == ("NOERROR", [pihole])

    # a network made afterwards gets its listener, and the port stays held against plain host processes
    box.nc("network", "create", "--subnet", "10.85.2.0/24", "later")
    box.nc("run", "--name", "late", "--net", "later")
    assert box.exec("late", "getent", "hosts", "late").stdout.split()[0] == ip_of(box, "late", "later")
    assert dig_in(lan_ns, f"@{HOST_LAN}", "pi.test") == ("NOERROR", [PI])
    for protocol in ("udp", "tcp"):
        for address in ("0.0.0.0", HOST_LAN, "127.0.0.1", "10.85.0.1", "::"):
            assert not can_bind(gw, protocol, address), (protocol, address)

    # removed: the port is free again, and dnsd still answers
    box.nc("rm", "pihole")
    assert not {"udp 0.0.0.0:53", "tcp 0.0.0.0:53", "udp [::]:53", "tcp [::]:53"} & held(box)
    assert can_bind(gw, "udp", HOST_LAN) and can_bind(gw, "tcp", HOST_LAN)
    assert not can_bind(gw, "udp", "0.0.0.0")  # dnsd's own listeners still take their addresses
    assert box.exec("web", "getent", "ahostsv4", "web").stdout.split()[0] == web

    # publishing on one of dnsd's own addresses is refused in one line, and changes nothing
    before = box.nc("ps").stdout
    taken = box.nc("run", "--name", "second", "--net", "app", "-p", "10.85.0.1:53:53/udp", check=False)
    assert taken.returncode == 1 and len(taken.stderr.splitlines()) == 1
    assert taken.stderr.startswith("netcore: Bind for 10.85.0.1:53 failed: port is already allocated (udp, held by ")
    assert box.nc("ps").stdout == before
    assert "udp 10.85.0.1:53)" in taken.stderr  # dnsd's own listener
