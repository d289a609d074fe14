"""dnsd's lifecycle faults replayed from public bug reports (issue 11): a squatter on port 53, dnsd killed,
the gateway namespace deleted and rebuilt under dnsd. Sandbox mode only; every helper process is
started here, by PID, and killed in teardown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

from netcore.dnsd_protocol import SOCKET_NAME
from netcore.system.linux import netns_path
from tests.support.consistency import assert_consistent, gateway_links
from tests.support.dns import container_ns, dig
from tests.support.sandbox import wait_for

SQUATTER = r"""
import socket, sys
address, kinds = sys.argv[1], sys.argv[2].split(",")
held = []
for kind in kinds:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND: before the bridge has the address, as dnsd does
    sock.bind((address, 53))
    if kind == "tcp":
        sock.listen()
    held.append(sock)
print("ready", flush=True)
sys.stdin.read()
"""


def start_squatter(sandbox, address: str, kinds: str = "udp") -> subprocess.Popen:
    """A resolver-like process holding ADDRESS:53 in the gateway namespace (created here if missing)."""
    if sandbox.prefix not in sandbox.namespaces():
        subprocess.run(["ip", "netns", "add", sandbox.prefix], check=True)
    proc = sandbox.spawn_in(sandbox.prefix, sys.executable, "-c", SQUATTER, address, kinds,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def control(sandbox, command: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(os.path.join(sandbox.state_dir, SOCKET_NAME))
        sock.sendall(command.encode() + b"\n")
        return sock.makefile().readline().strip()


def process_name(pid: int) -> str:
    """The name the kernel gives a process (its executable's, as ``python`` in a virtual environment)."""
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def dns_field(sandbox, network: str) -> dict:
    return json.loads(sandbox.nc("network", "inspect", network).stdout)[0]["DNS"]


def test_network_create_fails_and_names_the_squatter_then_works_once_it_is_gone(sandbox):
    squatter = start_squatter(sandbox, "10.87.0.1")
    proc = sandbox.nc("network", "create", "--subnet", "10.87.0.0/24", "app", check=False)
    assert proc.returncode != 0 and proc.stdout == ""
    # the first command of the sandbox also says, once, that it switched on forwarding (issue 13)
    *notices, error = proc.stderr.strip().splitlines()
    assert all(line.startswith("netcore: switched on net.ipv4.ip_forward") for line in notices), notices
    assert "Traceback" not in error, error
    assert error.startswith("netcore: network app not created: dnsd cannot listen on 10.87.0.1 port 53")
    assert f"{process_name(squatter.pid)} (pid {squatter.pid}, udp 10.87.0.1:53)" in error, error
    # the store and the kernel hold no trace of it
    assert "app" not in sandbox.nc("network", "ls").stdout.split()
    assert sorted(n for n, kind in gateway_links(sandbox).items() if kind == "bridge") == ["netcore0"]
    stop(squatter)
    sandbox.nc("network", "create", "--subnet", "10.87.0.0/24", "app")
    sandbox.nc("run", "--name", "web", "--net", "app")
    assert dig(sandbox, "web", "web")[:2] == ("NOERROR", ["10.87.0.2"])
    assert dns_field(sandbox, "app") == {"Enabled": True, "Servers": [], "Listening": True}


def test_a_wildcard_squatter_is_named_too(sandbox):
    squatter = start_squatter(sandbox, "0.0.0.0", "tcp")
    proc = sandbox.nc("network", "create", "--subnet", "10.88.0.0/24", "app", check=False)
    assert proc.returncode != 0
    assert f"{process_name(squatter.pid)} (pid {squatter.pid}, tcp 0.0.0.0:53)" in proc.stderr, proc.stderr
    assert "app" not in sandbox.nc("network", "ls").stdout.split()


def test_run_and_connect_fail_and_undo_while_a_listener_is_down_and_inspect_says_why(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.89.0.0/24", "app")
    sandbox.nc("network", "create", "--subnet", "10.90.0.0/24", "side")
    sandbox.nc("run", "--name", "web", "--net", "app")
    sandbox.nc("run", "--name", "other", "--net", "side")
    dnsd = sandbox.dnsd_pid()
    assert control(sandbox, "stop") == "ok"  # dnsd stops deliberately: nothing restarts it
    assert wait_for(lambda: not os.path.exists(f"/proc/{dnsd}"))
    squatter = start_squatter(sandbox, "10.89.0.1")
    run = sandbox.nc("run", "--name", "late", "--net", "app", check=False)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert run.stderr.startswith("netcore: container late not created: dnsd cannot listen on 10.89.0.1 port 53")
    assert f"(pid {squatter.pid}, udp 10.89.0.1:53)" in run.stderr and run.stderr.count("\n") == 1
    connect = sandbox.nc("network", "connect", "app", "other", check=False)
    assert connect.returncode != 0
    assert connect.stderr.startswith("netcore: container other not connected to network app: dnsd cannot listen")
    names = [line.split()[1] for line in sandbox.nc("ps").stdout.splitlines()[1:]]
    assert sorted(names) == ["other", "web"]
    other = json.loads(sandbox.nc("inspect", "other").stdout)[0]["NetworkSettings"]["Networks"]
    assert list(other) == ["side"]
    assert "nameserver 10.89.0.1" not in sandbox.exec("other", "cat", "/etc/resolv.conf").stdout
    state = dns_field(sandbox, "app")
    assert state["Listening"] is False and f"(pid {squatter.pid}, udp 10.89.0.1:53)" in state["Error"]
    assert dns_field(sandbox, "side")["Listening"] is True
    # a command that does not need the listener succeeds and warns
    rm = sandbox.nc("rm", "other")
    assert "warning: network app has no DNS: dnsd cannot listen on 10.89.0.1 port 53" in rm.stderr
    stop(squatter)
    # dnsd retries every second by itself
    assert wait_for(lambda: dns_field(sandbox, "app").get("Listening"), timeout=5)
    sandbox.nc("run", "--name", "late", "--net", "app")
    assert dig(sandbox, "late", "web")[:2] == ("NOERROR", ["10.89.0.2"])
    assert_consistent(sandbox)


def alive(pid: int | None) -> bool:
    """A process that runs (a zombie waiting for init to reap it does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except (OSError, TypeError):
        return False


def test_dnsd_killed_answers_again_within_two_seconds_with_no_command(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.92.0.0/24", "app")
    for name in ("a", "b", "c"):
        sandbox.nc("run", "--name", name, "--net", "app", "--net-alias", "shared")
    ns = container_ns(sandbox, "a")  # read before the kill: no netcore command from here on
    supervisor, pid = sandbox.agent_pid(), sandbox.dnsd_pid()  # netcored supervises dnsd (issue 26)
    assert alive(supervisor) and alive(pid)
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    answers = []
    while time.monotonic() - killed < 2.0 and sorted(answers) != ["10.92.0.2", "10.92.0.3", "10.92.0.4"]:
        answers = subprocess.run(["ip", "netns", "exec", ns, "dig", "+time=1", "+tries=1", "+short", "shared"],
                                 capture_output=True, text=True, timeout=10).stdout.split()
    assert sorted(answers) == ["10.92.0.2", "10.92.0.3", "10.92.0.4"], "no answer within 2 s of the kill"
    assert sandbox.dnsd_pid() not in (None, pid) and sandbox.agent_pid() == supervisor
    # and purge leaves neither behind
    new_pid = sandbox.dnsd_pid()
    sandbox.nc("purge")
    assert wait_for(lambda: not alive(supervisor)) and not alive(new_pid)


def test_gateway_namespace_deleted_under_dnsd_is_rebuilt_with_dnsd_in_it(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.93.0.0/24", "app")
    sandbox.nc("run", "--name", "web", "--net", "app")
    sandbox.nc("run", "--name", "client", "--net", "app")
    old_pid = sandbox.dnsd_pid()
    subprocess.run(["ip", "netns", "delete", sandbox.prefix], check=True)  # from outside netcore
    late = sandbox.nc("run", "--name", "late", "--net", "app")  # rebuilds the gateway namespace
    assert "reconciled: replaced dnsd" in late.stderr, late.stderr
    live = os.stat(netns_path(sandbox.prefix))
    theirs = os.stat(f"/proc/{sandbox.dnsd_pid()}/ns/net")
    assert (theirs.st_dev, theirs.st_ino) == (live.st_dev, live.st_ino) and not alive(old_pid)
    assert dig(sandbox, "late", "web")[:2] == ("NOERROR", ["10.93.0.2"])  # a new container, the new bridge
    assert dig(sandbox, "client", "late")[:2] == ("NOERROR", ["10.93.0.4"])  # an old one, moved onto it
    assert sandbox.exec("client", "ping", "-c1", "-W2", "web").returncode == 0
    assert_consistent(sandbox)
