"""Containers' main processes, as root in sandboxes (issue 28, item 2): `run -d -- CMD` with a real server, its
output (`logs`, `logs -f`), `stop`/`start`/`restart`, `rm` refusing a running container and `rm -f` leaving no
process of it behind (checked through /proc/*/ns/net), a restarted agent finding its processes again, and
Docker's exit statuses (125, 126, 127, the command's own)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from netcore.agent.processes import processes_in
from tests.support.sandbox import wait_for

SERVER = (sys.executable, "-u", "-m", "http.server", "8000")


def ended(pid: int) -> bool:
    """Whether process ``pid`` is gone (or a zombie: ended, waiting for its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def state(sandbox, name: str) -> dict:
    return json.loads(sandbox.nc("inspect", name).stdout)[0]["State"]


def netns(sandbox, name: str) -> str:
    return os.path.basename(json.loads(sandbox.nc("inspect", name).stdout)[0]["NetworkSettings"]["SandboxKey"])


def served(sandbox, client: str, url: str) -> bool:
    return bool(wait_for(lambda: sandbox.exec(client, "curl", "-sf", "-m", "2", "-o", "/dev/null", url,
                                              check=False).returncode == 0, 10, 0.2))


def test_a_server_as_main_process_logs_stops_starts_and_rm_f_leaves_nothing(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.93.0.0/24", "app")
    run = sandbox.nc("run", "-d", "--name", "web", "--net", "app", "--", *SERVER)
    assert len(run.stdout.strip()) == 64  # returns at once with the ID, the server running on
    sandbox.nc("run", "--name", "client", "--net", "app")
    assert served(sandbox, "client", "http://web:8000/")
    first = state(sandbox, "web")
    assert first["Status"] == "running" and first["Running"] and first["Pid"] > 0
    assert "Serving HTTP on 0.0.0.0 port 8000" in sandbox.nc("logs", "web").stdout
    assert '"GET / HTTP/1.1" 200' in sandbox.nc("logs", "--tail", "1", "web").stdout
    assert sandbox.nc("ps", "--filter", "status=running", "--format", "{{.Names}} {{.Status}}").stdout \
        .splitlines()[0].startswith("web Up")
    # logs -f streams until the process ends
    follower = sandbox.popen("logs", "-f", "web", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sandbox.exec("client", "curl", "-s", "-o", "/dev/null", "http://web:8000/followed")  # a 404, logged
    sandbox.nc("stop", "-t", "5", "web")
    out, _ = follower.communicate(timeout=30)
    assert follower.returncode == 0 and "GET /followed" in out
    stopped = state(sandbox, "web")
    assert (stopped["Status"], stopped["ExitCode"], stopped["Running"]) == ("exited", 143, False)  # 128 + SIGTERM
    assert "web" not in sandbox.nc("ps", "--format", "{{.Names}}").stdout.split()  # ps without -a: what runs
    assert "Exited (143)" in sandbox.nc("ps", "-a").stdout
    sandbox.nc("start", "web")
    assert served(sandbox, "client", "http://web:8000/") and state(sandbox, "web")["Pid"] != first["Pid"]
    sandbox.nc("restart", "-t", "5", "web")
    assert state(sandbox, "web")["Running"]
    # a process left in the namespace by exec, beside the main process
    namespace = netns(sandbox, "web")
    sandbox.popen("exec", "web", "--", "sleep", "300", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: len(processes_in(namespace)) >= 2)
    inside = processes_in(namespace)
    refused = sandbox.nc("rm", "web", check=False)
    assert refused.returncode == 1 and refused.stderr.startswith("netcore: cannot remove container web: it is "
                                                                 "running (its main process") \
        and refused.stderr.count("\n") == 1
    assert processes_in(namespace) == inside  # refused: nothing stopped
    assert sandbox.nc("rm", "-f", "web").stdout.split() == ["web"]
    assert all(ended(pid) for pid in inside)  # no process of the container left
    assert namespace not in sandbox.namespaces()


def test_rm_of_a_sandbox_without_process_needs_no_force_and_ends_what_exec_left(sandbox):
    sandbox.nc("run", "--name", "plain")
    assert sandbox.nc("ps", "--format", "{{.Names}} {{.Status}}").stdout.split() == ["plain", "Up"]
    namespace = netns(sandbox, "plain")
    sandbox.popen("exec", "plain", "--", "sleep", "300", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: processes_in(namespace))
    left = processes_in(namespace)
    assert sandbox.nc("rm", "plain").stdout.split() == ["plain"]
    assert all(ended(pid) for pid in left)  # main left it running in a namespace without a name


def test_a_restarted_agent_finds_its_processes_again_or_marks_them_exited(sandbox):
    sandbox.nc("run", "-d", "--name", "long", "--", "sleep", "300")
    sandbox.nc("run", "-d", "--name", "short", "--", "sleep", "300")
    pid, short = state(sandbox, "long")["Pid"], state(sandbox, "short")["Pid"]
    agent = sandbox.agent_pid()
    sandbox.nc("agent", "stop")
    assert wait_for(lambda: not os.path.exists(f"/proc/{agent}"))
    os.kill(short, signal.SIGKILL)  # ends while no agent is its parent
    assert wait_for(lambda: ended(short))
    again = state(sandbox, "long")  # a new agent answers
    assert sandbox.agent_pid() != agent and (again["Status"], again["Pid"]) == ("running", pid)
    gone = state(sandbox, "short")
    assert (gone["Status"], gone["ExitCode"]) == ("exited", 255) and "exit status is unknown" in gone["Error"]
    sandbox.nc("stop", "-t", "1", "long")  # stopped, but not by its parent: how it ended is not known
    assert (state(sandbox, "long")["Status"], state(sandbox, "long")["ExitCode"]) == ("exited", 255)


def test_exit_statuses_are_dockers(sandbox):
    missing = sandbox.nc("run", "-d", "--name", "missing", "--", "/no/such/program", check=False)
    assert missing.returncode == 127 and "executable file not found" in missing.stderr
    created = state(sandbox, "missing")
    assert created["Status"] == "created" and created["ExitCode"] == 127  # kept, as Docker keeps it
    assert "/no/such/program" in sandbox.nc("logs", "missing").stdout
    assert sandbox.nc("run", "--name", "x", "--net", "nowhere", "--", "true", check=False).returncode == 125
    assert sandbox.nc("run", "--nam", "y", "--", "true", check=False).returncode == 125  # a usage error of run
    assert sandbox.nc("run", "--name", "own", "--", "sh", "-c", "exit 3", check=False).returncode == 3
    assert sandbox.nc("run", "--name", "dir", "--", "/", check=False).returncode == 126
    assert sandbox.nc("ps", "--nam", check=False).returncode == 2  # no abbreviations


def test_a_closed_pipe_ends_quietly(sandbox):
    for index in range(30):
        sandbox.nc("network", "create", f"n{index}")
    proc = subprocess.run(f"{sys.executable} -m netcore network ls | head -1", shell=True, env=sandbox.env,
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.startswith("NETWORK ID") and proc.stderr == ""
