"""The port holder process (netcore.ports.holder) on loopback, without root: a silent client never stalls it,
there is one holder per state dir, and ``stop`` ends even one that does not answer (issue 24, item 6: a client
that connected and sent nothing stalled ``run -p`` 20.7 s, a second holder was started beside the first, and a
holder outlived ``purge``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from typing import ClassVar

import pytest

from netcore.ports import HostPort
from netcore.ports.holder import CLIENT_TIMEOUT, EXIT_ALREADY_RUNNING, LOCK_NAME, HostPorts, locked_holder


def free_udp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def holder_pids(socket_path: str) -> list[int]:
    """Every live port holder process serving ``socket_path``, by command line."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if b"netcore.ports.holder" in argv and socket_path.encode() in argv:
                found.append(int(entry))
    return found


@pytest.fixture
def ports(tmp_path):
    held = HostPorts(str(tmp_path), None)
    first = HostPort("udp", "127.0.1.81", free_udp_port("127.0.1.81"))
    assert held.hold([first]) == {}
    try:
        yield held, first
    finally:
        held.stop()
        for pid in holder_pids(held.socket_path):  # only ones this test started (its own state dir)
            os.kill(pid, signal.SIGKILL)


def silent_client(path: str) -> socket.socket:
    """A client that connects to the holder's socket and sends nothing."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    client.connect(path)
    return client


def test_a_silent_client_stalls_nobody_and_is_dropped(ports):
    held, first = ports
    pid = held.pid()
    with silent_client(held.socket_path) as silent:
        assert held.held() == {first}  # answered beside the silent one (before: timed out, so None)
        second = HostPort("udp", "127.0.1.81", free_udp_port("127.0.1.81"))
        assert held.hold([second]) == {}
        assert held.held() == {first, second}
        assert holder_pids(held.socket_path) == [pid]  # no second holder started beside the first
        silent.settimeout(CLIENT_TIMEOUT + 4)  # a bound for the test, not a speed claim: the holder drops it
        assert silent.recv(64) == b""


def test_one_holder_per_state_dir(ports, tmp_path):
    held, _ = ports
    assert locked_holder(str(tmp_path / LOCK_NAME), held.socket_path) == held.pid()
    second = subprocess.run([sys.executable, "-m", "netcore.ports.holder", held.socket_path], capture_output=True,
                            timeout=30)
    assert second.returncode == EXIT_ALREADY_RUNNING
    assert held.pid() is not None and holder_pids(held.socket_path) == [held.pid()]


def test_stop_ends_a_holder_that_does_not_answer(ports):
    held, first = ports
    pid = held.pid()
    os.kill(pid, signal.SIGSTOP)  # it keeps its lock and its ports but answers nobody
    try:
        assert held.held() is None
        held.stop()  # what purge calls
        assert holder_pids(held.socket_path) == []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind((first.address, first.port))  # its port is free again
    finally:
        if holder_pids(held.socket_path):
            os.kill(pid, signal.SIGKILL)


def test_a_holder_that_does_not_answer_is_replaced_not_joined_by_a_second(ports):
    held, _ = ports
    pid = held.pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        second = HostPort("udp", "127.0.1.81", free_udp_port("127.0.1.81"))
        assert held.hold([second]) == {}
        assert holder_pids(held.socket_path) == [held.pid()] and held.pid() != pid
    finally:
        if pid in holder_pids(held.socket_path):
            os.kill(pid, signal.SIGKILL)


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
