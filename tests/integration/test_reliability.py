"""Reliability under churn, concurrency, kills and abuse, in sandbox mode (issue 5)."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time

from tests.support.consistency import assert_consistent
from tests.support.dns import PROBE, container_ns, dig
from tests.support.dns_probe import check_churn
from tests.support.sandbox import wait_for


def test_churn_under_load_never_gives_a_wrong_or_missing_answer(sandbox, tmp_path):
    """While names come and go (run/rm and connect/disconnect), every answer names an address that
    container held at some moment during the query, and a name is answered while it surely exists."""
    sandbox.nc("network", "create", "--subnet", "10.80.0.0/24", "churn")
    sandbox.nc("network", "create", "--subnet", "10.81.0.0/24", "side")
    sandbox.nc("run", "--name", "client", "--net", "churn")
    names = [f"ch{i}" for i in range(4)]
    stopfile = str(tmp_path / "stop")
    with open(tmp_path / "answers.jsonl", "w") as log:  # the probe writes to its own copy of the descriptor
        probe = sandbox.spawn_in(container_ns(sandbox, "client"), sys.executable, PROBE,
                                 "churn", "10.80.0.1", stopfile, *names, stdout=log)
    visible: dict[str, list[tuple[str, float, float, float, float]]] = {n: [] for n in names}
    operations = 0
    for cycle in range(3):
        for name in names:
            via_connect = (cycle + names.index(name)) % 2 == 1
            t0 = time.monotonic()
            if via_connect:  # visible from connect to disconnect
                sandbox.nc("run", "--name", name, "--net", "side")
                t0 = time.monotonic()
                sandbox.nc("network", "connect", "churn", name)
            else:
                sandbox.nc("run", "--name", name, "--net", "churn")
            t1 = time.monotonic()
            ip = json.loads(sandbox.nc("inspect", name).stdout)[0]["NetworkSettings"]["Networks"]["churn"]["IPAddress"]
            visible[name].append([ip, t0, t1, None, None])
            operations += 2 if via_connect else 1
        for name in names:
            t2 = time.monotonic()
            if (cycle + names.index(name)) % 2 == 1:
                sandbox.nc("network", "disconnect", "churn", name)
                t3 = time.monotonic()
                sandbox.nc("rm", name)
                operations += 2
            else:
                sandbox.nc("rm", name)
                t3 = time.monotonic()
                operations += 1
            visible[name][-1][3:] = [t2, t3]
    open(stopfile, "w").close()
    assert probe.wait(timeout=10) == 0
    with open(tmp_path / "answers.jsonl") as lines:
        answers = [json.loads(line) for line in lines]
    wrong, missing, unanswered = check_churn(answers, visible)
    print(f"churn: {operations} operations, {len(answers)} queries, {len(answers) - unanswered} answered, "
          f"{len(wrong)} wrong, {len(missing)} missing")
    assert operations >= 30 and len(answers) > 500
    assert wrong == [] and missing == [] and unanswered == 0


def test_fifty_concurrent_runs_and_twenty_concurrent_network_creates(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.82.0.0/24", "busy")
    runs = [sandbox.popen("run", "--name", f"c{i}", "--net", "busy", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for i in range(50)]
    creates = [sandbox.popen("network", "create", f"n{i}", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for i in range(20)]
    for proc in runs + creates:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    busy = json.loads(sandbox.nc("network", "inspect", "busy").stdout)[0]
    addresses = [c["IPv4Address"] for c in busy["Containers"].values()]
    assert len(addresses) == 50 and len(set(addresses)) == 50
    subnets = [json.loads(sandbox.nc("network", "inspect", f"n{i}").stdout)[0]["IPAM"]["Config"][0]["Subnet"]
               for i in range(20)]
    assert len(set(subnets)) == 20
    assert sandbox.exec("c0", "getent", "hosts", *[f"c{i}" for i in range(50)]).returncode == 0
    assert_consistent(sandbox)


def test_kill_minus_nine_during_any_command_is_reconciled(sandbox):
    """kill -9 netcore at random points of run, connect, disconnect, rm and network create."""
    rng = random.Random(5)
    sandbox.nc("network", "create", "--subnet", "10.83.0.0/24", "one")
    sandbox.nc("network", "create", "--subnet", "10.84.0.0/24", "two")
    sandbox.nc("run", "--name", "anchor", "--net", "one")
    commands = []
    for i in range(4):
        commands += [("run", "--name", f"k{i}", "--net", "one"), ("network", "connect", "two", f"k{i}"),
                     ("network", "disconnect", "one", f"k{i}"), ("rm", f"k{i}"),
                     ("network", "create", f"net{i}")]
    for command in commands:
        proc = sandbox.popen(*command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.1, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    after = sandbox.nc("run", "--name", "after", "--net", "one")
    assert after.returncode == 0
    assert_consistent(sandbox)
    assert sandbox.exec("anchor", "getent", "hosts", "after").returncode == 0


def test_dnsd_killed_comes_back_with_every_name(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.85.0.0/24", "app")
    for name in ("a", "b", "c"):
        sandbox.nc("run", "--name", name, "--net", "app", "--net-alias", "shared")
    pid = sandbox.dnsd_pid()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"))
    status, answers, _ = dig(sandbox, "a", "shared")  # `exec` restarts it before running dig
    assert status == "NOERROR" and sorted(answers) == ["10.85.0.2", "10.85.0.3", "10.85.0.4"]


def test_store_log_and_control_socket_are_root_only(sandbox):
    sandbox.nc("network", "create", "app")
    files = [os.path.join(sandbox.state_dir, name) for name in ("netcore.db", "dnsd.sock", "dnsd.log")]
    for path in (sandbox.state_dir, *files):
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, path
    assert stat.S_IMODE(os.stat(sandbox.state_dir).st_mode) == 0o700


def test_names_are_validated_before_they_reach_the_store(sandbox):
    sandbox.nc("network", "create", "app")
    before = sandbox.nc("ps").stdout
    for bad in ("../etc", "a/b", "-lead", "with space", "x" * 64, "ünï", "a;b", ""):
        for args in (("run", f"--name={bad}", "--net", "app"), ("network", "create", "--", bad),
                     ("run", "--name", "ok", "--net", "app", f"--net-alias={bad}"),
                     ("run", "--name", "ok", "--net", "app", f"--hostname={bad}")):
            proc = sandbox.nc(*args, check=False)
            assert proc.returncode != 0 and "invalid" in proc.stderr and "Traceback" not in proc.stderr, \
                (args, proc.stderr)
    assert sandbox.nc("ps").stdout == before


def test_tcp_abuse_does_not_starve_well_behaved_clients(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.86.0.0/24", "app")
    sandbox.nc("run", "--name", "web", "--net", "app")
    sandbox.nc("run", "--name", "abuser", "--net", "app")
    sandbox.nc("run", "--name", "client", "--net", "app")
    abuser = sandbox.spawn_in(container_ns(sandbox, "abuser"), sys.executable, PROBE, "tcp-abuse", "10.86.0.1",
                              "600", stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert abuser.stdout.readline().strip() == "ready"
    for _ in range(3):
        assert dig(sandbox, "client", "web")[:2] == ("NOERROR", ["10.86.0.2"])
        assert dig(sandbox, "client", "+tcp", "web")[:2] == ("NOERROR", ["10.86.0.2"])
    abuser.stdin.close()  # now the server's idle timeout (3 s) must close every abusive connection
    closed = int(abuser.stdout.readline())
    assert closed == 600
