"""Published host ports held by the agent's own process (netcore.ports.holder.HostPorts), on loopback without
root: a held port is taken for anyone else, released ones are free again, a gateway namespace made anew drops
what the old one held; conntrack is cleared inside the gateway namespace only (issue 24, item 6); and a port
holder process a release before netcored left running is ended (its ports go to the agent)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from typing import ClassVar

import pytest

from netcore.ports import HostPort
from netcore.ports.holder import LEGACY_SOCKET_NAME, HostPorts, PortError, stop_legacy_holder
from netcore.system.processes import alive


def free_udp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def bindable(port: HostPort) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if port.protocol == "udp" else socket.SOCK_STREAM) as s:
        try:
            s.bind((port.address, port.port))
        except OSError:
            return False
        return True


def test_a_held_port_is_taken_until_it_is_released(tmp_path):
    ports = HostPorts(str(tmp_path), None)
    first = HostPort("udp", "127.0.1.81", free_udp_port("127.0.1.81"))
    second = HostPort("tcp", "127.0.1.81", free_udp_port("127.0.1.81"))
    assert ports.held() is None and ports.pid() is None
    assert ports.hold([first, second]) == {}
    assert ports.hold([first]) == {}  # held already: nothing new
    assert ports.held() == {first, second} and ports.pid() == os.getpid()
    assert not bindable(first) and not bindable(second)
    ports.release([first])
    assert bindable(first) and ports.held() == {second}
    ports.stop()
    assert bindable(second) and ports.held() is None


def test_a_port_in_use_is_one_line_naming_its_holder(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.1.82", 0))
        taken = HostPort("udp", "127.0.1.82", squatter.getsockname()[1])
        ports = HostPorts(str(tmp_path), None)
        failures = ports.hold([taken])
        assert list(failures) == [taken] and failures[taken].startswith(f"Bind for 127.0.1.82:{taken.port} failed")
        assert "\n" not in failures[taken] and ports.held() is None
        with pytest.raises(PortError):
            ports.check(taken)


def test_sockets_of_a_gateway_namespace_made_anew_are_let_go(tmp_path, monkeypatch):
    ports = HostPorts(str(tmp_path), None)
    port = HostPort("udp", "127.0.1.83", free_udp_port("127.0.1.83"))
    identity = iter([1, 1, 2])  # bound in namespace 1; the live one is 2 by the next look
    monkeypatch.setattr(ports, "_gateway_identity", lambda: next(identity))
    assert ports.hold([port]) == {} and ports.held() == {port}
    assert ports.held() is None and bindable(port)


LEGACY = textwrap.dedent("""
    import os, socket, sys, time
    path = sys.argv[2]
    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.bind(path)
    server.listen()
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        if conn.recv(100) == b"list":
            conn.send(f"pid {os.getpid()}".encode())
        conn.close()
""")


def test_a_port_holder_process_of_an_older_release_is_ended(tmp_path):
    path = str(tmp_path / LEGACY_SOCKET_NAME)
    legacy = subprocess.Popen([sys.executable, "-c", LEGACY, "netcore.port_holder", path], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert legacy.stdout.readline().strip() == "ready"
        assert stop_legacy_holder(str(tmp_path)) == legacy.pid
        legacy.wait(10)
        assert not alive(legacy.pid) and not os.path.exists(path)
        assert stop_legacy_holder(str(tmp_path)) is None  # none left: nothing to do
    finally:
        if legacy.poll() is None:
            legacy.kill()
            legacy.wait()


class FakeConntrack:
    """pyroute2's Conntrack as forget uses it: whether the thread was in the gateway namespace at each step
    (``inside``, set by the test's stand-in for entering it), its entries, what it deleted."""

    inside = False
    steps: ClassVar[list[tuple[str, bool]]] = []
    entries: ClassVar[list] = []
    deleted: ClassVar[list] = []

    def __init__(self, **kwargs):
        FakeConntrack.steps.append(("made", FakeConntrack.inside))
        self.family = kwargs["nfgen_family"]

    def dump_entries(self):
        FakeConntrack.steps.append(("dump", FakeConntrack.inside))
        return [e for e in FakeConntrack.entries if e.family == self.family]

    def delete(self, entry):
        FakeConntrack.steps.append(("delete", FakeConntrack.inside))
        FakeConntrack.deleted.append(entry)

    def close(self):
        FakeConntrack.steps.append(("close", FakeConntrack.inside))


def test_forget_uses_conntrack_only_inside_the_gateway_namespace_and_deletes_only_the_ports_flows(monkeypatch,
                                                                                               tmp_path):
    """pyroute2 opens its socket at the first request: one made under a temporary setns and used after it
    deleted the host's entries. Every step happens inside the gateway namespace now, and the flows match
    exactly."""
    import contextlib
    from types import SimpleNamespace

    import pyroute2

    from netcore.kernel import netlink

    def entry(family, proto, daddr, dport):
        return SimpleNamespace(family=family, tuple_orig=SimpleNamespace(proto=proto, daddr=daddr, dport=dport))

    @contextlib.contextmanager
    def in_gateway():
        FakeConntrack.inside = True
        try:
            yield
        finally:
            FakeConntrack.inside = False

    to_host = entry(socket.AF_INET, socket.IPPROTO_UDP, "192.0.2.1", 7000)
    forwarded = entry(socket.AF_INET, socket.IPPROTO_UDP, "198.51.100.7", 7000)  # a container's, to elsewhere
    other_port = entry(socket.AF_INET, socket.IPPROTO_UDP, "192.0.2.1", 7001)
    FakeConntrack.steps, FakeConntrack.entries, FakeConntrack.deleted = [], [to_host, forwarded, other_port], []
    monkeypatch.setattr(pyroute2, "Conntrack", FakeConntrack)
    seen = []
    monkeypatch.setattr(netlink, "local_addresses",
                        lambda namespace: seen.append((namespace, FakeConntrack.inside)) or {"192.0.2.1"})
    ports = HostPorts(str(tmp_path), "gw-ns")
    monkeypatch.setattr(ports, "_in_gateway", in_gateway)
    assert ports.forget([HostPort("udp", "0.0.0.0", 7000)]) == 1
    assert FakeConntrack.deleted == [to_host]
    assert seen == [(None, True)]  # the addresses of the namespace the thread is in: the gateway's
    assert [step for step, _ in FakeConntrack.steps] == ["made", "dump", "delete", "close", "made", "dump", "close"]
    assert all(inside for _, inside in FakeConntrack.steps)
