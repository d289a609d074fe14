"""Faults replayed from public bug reports (issue 11): what running processes see, and removal with shared
namespaces."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time

import pytest

# A long-running process inside a container: asks glibc for `web` every 0.2 s and says when it gets an address.
RESOLVER_LOOP = """
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[1])
print("started", flush=True)
while time.monotonic() < deadline:
    try:
        address = socket.getaddrinfo("web", None, socket.AF_INET)[0][4][0]
    except socket.gaierror:
        time.sleep(0.2)
        continue
    print("resolved", address, time.monotonic(), flush=True)
    sys.exit(0)
print("gave up", flush=True)
sys.exit(1)
"""


def test_a_running_process_resolves_names_of_a_network_connected_after_it_started(sandbox):
    """podman#11042: the container's resolv.conf must change in place, under the bind mount `exec` made."""
    sandbox.nc("run", "--name", "client")  # the default bridge only: the host's servers, no embedded DNS
    resolv = sandbox.exec("client", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 172.17.0.1" in resolv and "10.71.0.1" not in resolv
    proc = sandbox.popen("exec", "client", "--", "python3", "-c", RESOLVER_LOOP, "12",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.5)  # it has failed to resolve `web` at least once: glibc has read the old resolv.conf
    sandbox.nc("network", "create", "--subnet", "10.71.0.0/24", "thatnet")
    sandbox.nc("run", "--name", "web", "--net", "thatnet")
    sandbox.nc("network", "connect", "thatnet", "client")
    connected = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, (out, err)
    word, address, when = out.split()
    assert (word, address) == ("resolved", "10.71.0.2")
    assert float(when) - connected < 3.0  # it re-read the file on its next lookups, within a few seconds


def shared_pair(sandbox) -> str:
    """web on network app, side in web's namespace (--net container:web); returns web's namespace."""
    sandbox.nc("network", "create", "--subnet", "10.72.0.0/24", "app")
    web_id = sandbox.nc("run", "--name", "web", "--net", "app").stdout.strip()
    sandbox.nc("run", "--name", "side", "--net", "container:web")
    namespace = f"{sandbox.prefix}-{web_id[:12]}"
    assert sandbox.namespaces() == sorted([sandbox.prefix, namespace])
    return namespace


def assert_clean_one_line(proc) -> None:
    assert "Traceback" not in proc.stderr and "constraint" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 1, proc.stderr


def test_purge_with_a_shared_namespace_removes_everything(sandbox):
    namespace = shared_pair(sandbox)
    proc = sandbox.nc("purge", check=False)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert sandbox.namespaces() == [] and not os.path.exists(f"/etc/netns/{namespace}")


def test_purge_keeps_going_past_a_failure_and_still_deletes_the_gateway_namespace(sandbox):
    shared_pair(sandbox)
    sandbox.nc("run", "--name", "other", "--net", "app")
    with sqlite3.connect(os.path.join(sandbox.state_dir, "netcore.db")) as db:  # a trigger that refuses one delete
        db.execute("CREATE TRIGGER keep_other BEFORE DELETE ON containers WHEN old.name = 'other' "
                   "BEGIN SELECT RAISE(ABORT, 'refused by test'); END")
    proc = sandbox.nc("purge", check=False)
    assert proc.returncode == 1 and "other" in proc.stderr and "refused by test" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert sandbox.namespaces() == []  # every namespace went, the gateway's too


@pytest.mark.parametrize("args", [["-f", "web", "side"], ["-f", "side", "web"], ["web", "side"], ["-f", "web"]],
                         ids=["force-owner-first", "force-dependent-first", "both-named", "force-owner-only"])
def test_rm_removes_a_shared_namespace_in_any_order(sandbox, args):
    namespace = shared_pair(sandbox)
    proc = sandbox.nc("rm", *args, check=False)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    assert proc.stdout.split() == ["side", "web"]  # the dependent goes first
    assert sandbox.nc("ps", "-q").stdout == "" and sandbox.namespaces() == [sandbox.prefix]
    assert not os.path.exists(f"/etc/netns/{namespace}")
    sandbox.nc("network", "rm", "app")


def test_rm_of_an_owner_alone_is_refused_and_an_unknown_name_changes_nothing(sandbox):
    shared_pair(sandbox)
    before = (sandbox.nc("ps").stdout, sandbox.namespaces())
    for args, message in ((["web"], "shares its namespace with side"),
                          (["-f", "web", "ghost"], "no such container: ghost")):
        proc = sandbox.nc("rm", *args, check=False)
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr
        assert_clean_one_line(proc)
        assert (sandbox.nc("ps").stdout, sandbox.namespaces()) == before
    refused = sandbox.nc("network", "rm", "app", check=False)
    assert refused.returncode == 1 and "web" in refused.stderr
    assert_clean_one_line(refused)


def write(tmp_path, text: str) -> str:
    path = tmp_path / "compose.yaml"
    path.write_text(text)
    return str(path)


def test_down_removes_a_declared_owner_and_dependent(sandbox, tmp_path):
    path = write(tmp_path, "name: t\nnetworks:\n  app: {name: app, ipam: {config: [{subnet: 10.73.0.0/24}]}}\n"
                           "services:\n  web: {container_name: web, networks: [app]}\n"
                           "  side: {container_name: side, network_mode: 'service:web'}\n")
    sandbox.nc("up", "-f", path)
    proc = sandbox.nc("down", "-f", path, check=False)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    assert proc.stdout.splitlines() == ["Container side  Removed", "Container web  Removed", "Network app  Removed"]
    assert sandbox.nc("ps", "-q").stdout == "" and sandbox.namespaces() == [sandbox.prefix]


def test_down_refuses_to_remove_a_container_it_does_not_declare(sandbox, tmp_path):
    """The file declares web only; side was run by hand in web's namespace: down names it and changes nothing."""
    path = write(tmp_path, "name: t\nnetworks:\n  app: {ipam: {config: [{subnet: 10.74.0.0/24}]}}\n"
                           "services:\n  web: {container_name: web, networks: [app]}\n")
    sandbox.nc("up", "-f", path)
    sandbox.nc("run", "--name", "side", "--net", "container:web")
    before = (sandbox.nc("ps").stdout, sandbox.nc("network", "ls").stdout, sandbox.namespaces())
    proc = sandbox.nc("down", "-f", path, check=False)
    assert proc.returncode == 1 and "side" in proc.stderr and "not the project's" in proc.stderr, proc.stderr
    assert_clean_one_line(proc)
    assert (sandbox.nc("ps").stdout, sandbox.nc("network", "ls").stdout, sandbox.namespaces()) == before
    sandbox.nc("rm", "side")
    sandbox.nc("down", "-f", path)
    assert sandbox.nc("ps", "-q").stdout == "" and sandbox.namespaces() == [sandbox.prefix]


@pytest.mark.parametrize("half_removed", [("web", "side"), ("web",)], ids=["both", "owner-only"])
def test_half_removed_shared_namespace_is_reconciled_by_the_next_command(sandbox, half_removed):
    """What `rm -f web` killed after recording its work leaves; the next command (here network rm) finishes it."""
    namespace = shared_pair(sandbox)
    with sqlite3.connect(os.path.join(sandbox.state_dir, "netcore.db")) as db:
        db.executemany("UPDATE containers SET state = 'removing' WHERE name = ?", [(n,) for n in half_removed])
        db.execute("UPDATE endpoints SET state = 'removing' WHERE container_id = (SELECT id FROM containers "
                   "WHERE name = 'web')")
    proc = sandbox.nc("network", "rm", "app", check=False)
    assert proc.returncode == 0, proc.stderr
    assert "reconciled: removed half-removed container web" in proc.stderr
    assert "side" in proc.stderr and "Traceback" not in proc.stderr
    assert sandbox.nc("ps", "-q").stdout == "" and sandbox.namespaces() == [sandbox.prefix]
    assert not os.path.exists(f"/etc/netns/{namespace}")



def test_repeating_a_killed_rm_succeeds_and_ps_shows_the_half_removed_container(sandbox):
    """Issue 23, item 7: after an ``rm`` killed part way (its rows recorded as removing, its namespace already
    deleted), ``ps`` says so, and ``rm X`` again prints X and exits 0 (it printed "no such container: X" and
    exited 1, stopping a ``set -e`` script). ``network rm`` and ``disconnect`` alike."""
    sandbox.nc("network", "create", "--subnet", "10.75.0.0/24", "app")
    sandbox.nc("network", "create", "--subnet", "10.76.0.0/24", "spare")
    web_id = sandbox.nc("run", "--name", "web", "--net", "app").stdout.strip()
    sandbox.nc("run", "--name", "db", "--net", "app")
    sandbox.nc("network", "connect", "spare", "db")
    with sqlite3.connect(os.path.join(sandbox.state_dir, "netcore.db")) as db:
        db.execute("UPDATE containers SET state = 'removing' WHERE name = 'web'")
        db.execute("UPDATE endpoints SET state = 'removing' WHERE container_id = ?", (web_id,))
    subprocess.run(["ip", "netns", "delete", f"{sandbox.prefix}-{web_id[:12]}"], check=True)
    status = {line.split()[1]: line for line in sandbox.nc("ps").stdout.splitlines()[1:]}
    assert "removing (interrupted)" in status["web"] and status["db"].split()[2] == "Up"  # a sandbox without a process
    proc = sandbox.nc("rm", "web", check=False)
    assert (proc.returncode, proc.stdout) == (0, "web\n"), proc.stderr
    assert "reconciled: removed half-removed container web" in proc.stderr and "no such" not in proc.stderr
    assert sandbox.nc("rm", "web", check=False).returncode == 1  # a third time it is unknown, as in Docker

    with sqlite3.connect(os.path.join(sandbox.state_dir, "netcore.db")) as db:  # a killed disconnect, network rm
        db.execute("UPDATE endpoints SET state = 'removing' WHERE network_id = (SELECT id FROM networks "
                   "WHERE name = 'spare')")
    proc = sandbox.nc("network", "disconnect", "spare", "db", check=False)
    assert proc.returncode == 0 and "reconciled: removed half-disconnected endpoint" in proc.stderr, proc.stderr
    with sqlite3.connect(os.path.join(sandbox.state_dir, "netcore.db")) as db:
        db.execute("UPDATE networks SET state = 'removing' WHERE name = 'spare'")
    proc = sandbox.nc("network", "rm", "spare", check=False)
    assert (proc.returncode, proc.stdout) == (0, "spare\n"), proc.stderr
    assert "reconciled: removed half-removed network spare" in proc.stderr
    db_id = sandbox.nc("ps", "-q").stdout.split()
    assert sandbox.namespaces() == sorted([sandbox.prefix, *(f"{sandbox.prefix}-{i}" for i in db_id)])
    assert len(db_id) == 1
