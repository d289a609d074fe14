"""netcored, the per-state-dir agent every command goes through (issue 26), as root in sandboxes: killed at any
point it loses nothing, names are answered the moment `run` returns and gone the moment `rm` returns, only
what changed is committed to nftables, dnsd outlives the agent, and nobody but root reaches it."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time

from netcore.agent.client import SOCKET_NAME
from netcore.agent.protocol import PROTOCOL
from tests.support.consistency import assert_consistent
from tests.support.sandbox import wait_for


def _netns_of(sandbox, name: str) -> str:
    return json.loads(sandbox.nc("inspect", name).stdout)[0]["NetworkSettings"]["SandboxKey"].rsplit("/", 1)[1]


def getent(namespace: str, name: str) -> subprocess.CompletedProcess:
    """glibc's lookup of ``name`` inside ``namespace`` with its /etc/netns files, not through netcore: it
    works while no agent runs."""
    return subprocess.run(["ip", "netns", "exec", namespace, "getent", "hosts", name], capture_output=True, text=True,
                          timeout=30)


def test_the_agent_killed_during_any_action_loses_nothing_and_the_next_command_repairs(sandbox):
    rng = random.Random(26)
    sandbox.nc("network", "create", "--subnet", "10.93.0.0/24", "one")
    sandbox.nc("network", "create", "--subnet", "10.94.0.0/24", "two")
    sandbox.nc("run", "--name", "anchor", "--net", "one")
    notes = []
    for i in range(3):
        for command in (("run", "--name", f"k{i}", "--net", "one", "-p", f"{8100 + i}:80"),
                        ("network", "connect", "two", f"k{i}"), ("rm", "-f", f"k{i}"),
                        ("network", "create", f"net{i}"), ("network", "rm", f"net{i}")):
            client = sandbox.popen(*command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(rng.uniform(0.02, 0.3))
            agent = sandbox.agent_pid()
            if agent:
                os.kill(agent, signal.SIGKILL)  # mid-action, or between two
                # dead, its socket closed: a command that connects while the kernel is still ending it is
                # accepted into its backlog and reset (one line, as for any agent killed under a command)
                assert wait_for(lambda pid=agent: not os.path.exists(f"/proc/{pid}/fd"))
            client.wait(60)
            notes += [line for line in client.stderr.read().splitlines() if "ended before it answered" in line]
            followup = sandbox.nc("ps")  # starts a new agent; a half-done action is finished by the next action
            assert followup.returncode == 0, followup.stderr
    repaired = sandbox.nc("run", "--name", "after", "--net", "one")
    assert repaired.returncode == 0
    assert_consistent(sandbox)
    assert getent(_netns_of(sandbox, "anchor"), "after").returncode == 0
    assert notes, "no kill landed during an action: the test did not test what it says"


def test_names_follow_run_and_rm_at_once(sandbox):
    """Read-your-writes through the agent: 200 run/lookup pairs and their rm/lookup pairs, 0 stale."""
    sandbox.nc("network", "create", "--subnet", "10.95.0.0/22", "app")
    sandbox.nc("run", "--name", "asker", "--net", "app")
    asker = _netns_of(sandbox, "asker")
    stale = []
    for i in range(200):
        sandbox.nc("run", "--name", f"n{i}", "--net", "app")
        if getent(asker, f"n{i}").returncode != 0:
            stale.append(f"n{i} missing after run")
        sandbox.nc("rm", f"n{i}")
        if getent(asker, f"n{i}").returncode == 0:
            stale.append(f"n{i} answered after rm")
    assert stale == []


def test_a_run_that_changes_no_rule_commits_no_nftables_transaction(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.96.0.0/24", "app")
    sandbox.nc("run", "--name", "first", "--net", "app")
    monitor = sandbox.spawn_in(sandbox.prefix, "nft", "monitor", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    try:
        time.sleep(0.3)  # nft monitor subscribes
        sandbox.nc("run", "--name", "second", "--net", "app")
        sandbox.nc("ps")
        sandbox.nc("run", "--name", "third", "--net", "app", "-p", "8080:80")  # this one adds a mapping
        time.sleep(0.3)
    finally:
        monitor.terminate()
    seen = monitor.communicate(timeout=10)[0]
    transactions = seen.split("# new generation")[:-1]
    assert len(transactions) == 1 and "8080" in transactions[0], seen  # only the run with -p committed


def test_dnsd_outlives_the_agent_and_the_next_agent_watches_it(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.97.0.0/24", "app")
    sandbox.nc("run", "--name", "web", "--net", "app")
    sandbox.nc("run", "--name", "client", "--net", "app")
    client = _netns_of(sandbox, "client")
    agent, dnsd = sandbox.agent_pid(), sandbox.dnsd_pid()
    os.kill(agent, signal.SIGKILL)
    assert wait_for(lambda: not os.path.exists(f"/proc/{agent}/fd"))
    assert getent(client, "web").returncode == 0  # no agent runs: dnsd answers on
    assert sandbox.nc("ps").returncode == 0 and sandbox.agent_pid() not in (None, agent)
    assert sandbox.dnsd_pid() == dnsd  # the new agent took over the running dnsd
    os.kill(dnsd, signal.SIGKILL)  # ... and starts it again when it dies, without any command
    assert wait_for(lambda: sandbox.dnsd_pid() not in (None, dnsd) and getent(client, "web").returncode == 0,
                    timeout=10)


def test_agent_status_stop_and_one_agent_per_state_dir(sandbox):
    assert sandbox.nc("agent", "status", check=False).returncode == 1  # none runs yet
    sandbox.nc("network", "create", "app")
    status = sandbox.nc("agent", "status")
    pid = sandbox.agent_pid()
    assert f"pid {pid}" in status.stdout and f"protocol {PROTOCOL}" in status.stdout and sandbox.state_dir in \
        status.stdout
    second = subprocess.run([sys.executable, "-m", "netcore.agent", "--state-dir", sandbox.state_dir, "--netns",
                             sandbox.prefix], env=sandbox.env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0 and sandbox.agent_pid() == pid  # the lock: it left at once
    path = os.path.join(sandbox.state_dir, SOCKET_NAME)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and os.stat(path).st_uid == 0
    sandbox.nc("agent", "stop")
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}/fd"))
    assert sandbox.nc("agent", "status", check=False).returncode == 1
    assert sandbox.nc("network", "ls").returncode == 0 and sandbox.agent_pid() != pid  # started anew


def test_an_unprivileged_user_gets_one_line(sandbox):
    sandbox.nc("network", "create", "app")
    connect = f"import socket; socket.socket(socket.AF_UNIX).connect({os.path.join(sandbox.state_dir, SOCKET_NAME)!r})"
    for argv in (["-m", "netcore", "ps"], ["-c", connect]):
        proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
                               *argv], env=sandbox.env, capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0
        if argv[1] == "netcore":
            assert proc.stderr.count("\n") == 1 and "permission denied" in proc.stderr, proc.stderr
        else:
            assert "PermissionError" in proc.stderr  # the state dir and the socket are root's alone


def test_the_agent_and_dnsd_never_import_from_the_callers_working_directory(sandbox, tmp_path):
    # a directory holding a `netcore` and a `dnsd` of its own: `python -m` puts the working directory first on
    # the path, so an agent or a dnsd started from there as root would run that code (the client itself is run
    # with -P, as the installed script runs: its own directory, not the working one, on the path)
    marker = tmp_path / "imported"
    for package in ("netcore", "netcore/agent", "dnsd"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write({package!r} + '\\n')\n")
    proc = subprocess.run([sys.executable, "-P", "-m", "netcore", "network", "create", "app"], env=sandbox.env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sandbox.agent_pid() and not marker.exists(), marker.read_text()
    assert os.readlink(f"/proc/{sandbox.agent_pid()}/cwd") == "/"
