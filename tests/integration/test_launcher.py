"""The native `netcore` launcher (netcore/cli/launcher.c), as pip installed it next to this interpreter: what it
sends itself and what it leaves to the Python client give the same output and exit status as the Python
client (`python -m netcore`), and whatever it cannot do becomes the Python client before anything is sent.

Skipped, with the reason, where the install found no C compiler (then `netcore` is the Python script)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import pytest

LAUNCHER = os.path.join(os.path.dirname(sys.executable), "netcore")


@pytest.fixture
def launcher():
    with open(LAUNCHER, "rb") as f:
        if f.read(4) != b"\x7fELF":
            pytest.skip(f"{LAUNCHER} is the Python script: the install found no C compiler (setup.py)")
    return LAUNCHER


def both(sandbox, launcher, *args: str, user: list[str] = ()) -> tuple[subprocess.CompletedProcess, ...]:
    """The same command through the launcher and through the Python client, one after the other."""
    return tuple(subprocess.run([*user, *command, *args], env=sandbox.env, capture_output=True, text=True,
                                timeout=60, cwd=sandbox.state_dir)
                 for command in ([launcher], [sys.executable, "-m", "netcore"]))


def same(first: subprocess.CompletedProcess, second: subprocess.CompletedProcess) -> None:
    assert (first.returncode, first.stdout, first.stderr) == (second.returncode, second.stdout, second.stderr)


def test_the_launcher_says_what_the_python_client_says(sandbox, launcher):
    created = subprocess.run([launcher, "network", "create", "--subnet", "10.61.0.0/24", "app"], env=sandbox.env,
                             capture_output=True, text=True, timeout=60)  # no agent yet: the Python client starts it
    assert created.returncode == 0, created.stderr
    ran = subprocess.run([launcher, "run", "--name", "web", "--net", "app", "--net-alias", "www"], env=sandbox.env,
                         capture_output=True, text=True, timeout=60)  # sent by the launcher: the agent is up
    assert ran.returncode == 0 and len(ran.stdout.strip()) == 64, ran.stderr
    for args in (["ps"], ["ps", "-a", "--no-trunc"], ["inspect", "web"], ["network", "ls"],
                 ["--netns", sandbox.prefix, "network", "inspect", "app"],
                 ["inspect", "nosuch"],  # not found: one line, status 1
                 ["run", "--bogus"],  # a usage error: given back by the agent, said by the Python client
                 ["network", "prune", "--force"],  # left to the Python client
                 ["exec", "web", "--", "cat", "/etc/hostname"],  # runs in this terminal: the Python client
                 ["run", "--name", "web", "--net", "app"],  # a conflict
                 ["run", "--name", "x", "--net", "app", "--net-alias", "wé\tb\"\\"]):  # escapes both ways
        launched, python = both(sandbox, launcher, *args)
        same(launched, python)
    launched, python = both(sandbox, launcher, "rm", "nosuch", "web")  # an unknown ref: nothing is removed
    same(launched, python)
    assert launched.returncode == 1 and launched.stderr == "netcore: no such container: nosuch\n"
    removed = subprocess.run([launcher, "rm", "web"], env=sandbox.env, capture_output=True, text=True, timeout=60)
    assert (removed.returncode, removed.stdout) == (0, "web\n")
    status = subprocess.run([launcher, "agent", "status"], env=sandbox.env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and f"state dir {sandbox.state_dir}" in status.stdout


def test_without_an_agent_or_privileges_the_python_client_answers(sandbox, launcher):
    sandbox.nc("network", "create", "app")
    sandbox.nc("agent", "stop")
    ps = subprocess.run([launcher, "ps"], env=sandbox.env, capture_output=True, text=True, timeout=60)
    assert ps.returncode == 0 and ps.stdout.startswith("CONTAINER ID") and sandbox.agent_pid() is not None
    nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    launched, python = both(sandbox, launcher, "ps", user=nobody)
    assert launched.returncode != 0 and launched.stderr.count("\n") == 1
    if subprocess.run([*nobody, "/bin/sh", "-c", f"test -x {sys.executable}"]).returncode == 0:
        same(launched, python)  # the Python client's line: netcore must run as root ... (permission denied)
        assert "permission denied" in launched.stderr
    else:  # an interpreter the user may not run (a Python under /root): the launcher says so in one line
        assert launched.stderr.startswith("netcore: cannot run ") and "Permission denied" in launched.stderr


def test_an_agent_that_dies_mid_command_costs_one_line_and_no_second_try(sandbox, launcher):
    """Once the agent has the request the command is its own: the launcher never sends it twice."""
    sandbox.nc("network", "create", "app")
    pid = sandbox.agent_pid()
    follow = subprocess.Popen([launcher, "logs", "-f", "nosuch-yet"], env=sandbox.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    _, err = follow.communicate(timeout=60)
    assert follow.returncode == 1 and err.count("\n") == 1  # not found: the agent's one line
    sandbox.nc("run", "-d", "--name", "quiet", "--net", "app", "--", "sleep", "300")
    follow = subprocess.Popen([launcher, "logs", "-f", "quiet"], env=sandbox.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    with contextlib.suppress(subprocess.TimeoutExpired):
        follow.wait(timeout=0.5)  # following: it waits for the container's output
    os.kill(pid, 9)
    _, err = follow.communicate(timeout=60)
    assert follow.returncode == 1 and err.startswith("netcore: netcored ended before it answered"), err
    assert sandbox.nc("ps").returncode == 0  # the next command starts a new agent


def test_ctrl_c_is_the_python_clients_one_line_and_status(sandbox, launcher):
    sandbox.nc("network", "create", "app")
    sandbox.nc("run", "-d", "--name", "chatty", "--net", "app", "--", "sh", "-c", "echo hello; exec sleep 300")
    said = []
    for command in ([launcher], [sys.executable, "-m", "netcore"]):
        follow = subprocess.Popen([*command, "logs", "-f", "chatty"], env=sandbox.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=sandbox.state_dir)
        assert follow.stdout.readline() == "hello\n"  # following: the client is connected and waiting
        follow.send_signal(2)
        out, err = follow.communicate(timeout=60)
        said.append((follow.returncode, out, err))
    assert said[0] == said[1] == (130, "", "netcore: interrupted\n")
    assert sandbox.nc("ps").returncode == 0  # the agent serves on


COMPOSE = """services:
  web:
    container_name: ${WEB_NAME:-web}
    networks: [front]
    command: ["sh", "-c", "echo up from ${WEB_NAME:-web}; exec sleep 300"]
networks:
  front:
    ipam:
      config: [{subnet: "${SUBNET}"}]
"""


# runs argv[1:] with this environment and WEB_NAME twice in it (first, then second): os.execve cannot
EXECVE_DOUBLED = """
import ctypes, os, sys
entries = [f"{k}={v}" for k, v in os.environ.items() if k != "WEB_NAME"] + ["WEB_NAME=first", "WEB_NAME=second"]
envp = (ctypes.c_char_p * (len(entries) + 1))(*[e.encode() for e in entries], None)
argv = (ctypes.c_char_p * len(sys.argv))(*[a.encode() for a in sys.argv[1:]], None)
ctypes.CDLL(None, use_errno=True).execve(sys.argv[1].encode(), argv, envp)
sys.exit(f"execve: {os.strerror(ctypes.get_errno())}")
"""


def test_compose_commands_go_with_the_directory_and_environment_and_say_what_the_python_client_says(
        sandbox, launcher, tmp_path):
    """A Compose command's line carries the client's directory (its files are found from there) and environment
    (interpolated as in this shell); -f -, which reads standard input, is the Python client's. An attached
    `up` is followed by the launcher itself."""
    project = tmp_path / "shop"
    project.mkdir()
    (project / "compose.yaml").write_text(COMPOSE)
    env = dict(sandbox.env, WEB_NAME="front-web", SUBNET="10.62.0.0/24")

    def run(command, *args, **kw):
        return subprocess.run([*command, *args], env=kw.pop("env", env), capture_output=True, text=True, timeout=60,
                              cwd=project, **kw)
    python = [sys.executable, "-m", "netcore"]
    sandbox.nc("network", "ls")  # an agent runs: the launcher sends what it can
    for args in (["compose", "config"], ["compose", "config", "--services"], ["compose", "ps"], ["compose", "ls"],
                 ["compose", "-f", "nosuch.yaml", "config"], ["compose", "-p", "Bad!", "config"]):
        same(run([launcher], *args), run(python, *args))
    same(run([launcher], "compose", "config", env=sandbox.env), run(python, "compose", "config", env=sandbox.env))
    doubled = [run([sys.executable, "-c", EXECVE_DOUBLED, *command, "compose", "config"]) for command in ([launcher],
                                                                                                          python)]
    same(*doubled)  # a variable set twice is the first, as os.environ and getenv(3) take it
    assert "container_name: first" in doubled[0].stdout, doubled[0].stderr
    piped = [run(command, "compose", "-p", "shop", "-f", "-", "config", input=COMPOSE) for command in ([launcher],
                                                                                                      python)]
    same(*piped)
    assert "container_name: front-web" in piped[0].stdout and "subnet: 10.62.0.0/24" in piped[0].stdout
    attached = subprocess.Popen([launcher, "compose", "up"], env=env, cwd=project, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    lines = [attached.stdout.readline() for _ in range(5)]
    assert lines[:4] == ["Network shop_front  Created\n", "Container front-web  Created\n",
                         "Container front-web  Started\n", "Attaching to front-web\n"], lines
    assert lines[4].endswith("up from front-web\n"), lines
    assert os.readlink(f"/proc/{attached.pid}/exe") == os.path.realpath(launcher)  # not the Python client
    attached.send_signal(2)
    attached.communicate(timeout=60)
    listed = ("compose", "ps", "-a", "--format", "{{.Name}} {{.Service}} {{.Project}}")  # no "N seconds ago"
    same(run([launcher], *listed), run(python, *listed))
    down = run([launcher], "compose", "down")
    assert down.returncode == 0 and "Container front-web  Removed" in down.stdout, down.stderr


STUBBORN = """services:
  web:
    container_name: ${WEB_NAME}
    command: ["sh", "-c", "${TRAP}echo ready; while :; do sleep 0.1; done"]
"""


def test_ctrl_c_on_an_attached_up_stops_its_services_first_and_again_forces_as_compose_does(sandbox, launcher,
                                                                                           tmp_path):
    """Docker Compose's attached `up`: the first Ctrl-C says so, stops the services (a line each) and exits 130
    once they are stopped; a second one ends the client at once. The same through both clients."""
    sandbox.nc("network", "ls")
    for n, command in enumerate(([launcher], [sys.executable, "-m", "netcore"])):
        project = tmp_path / f"p{n}"
        project.mkdir()
        (project / "compose.yaml").write_text(STUBBORN)
        for trap, forced in (("", False), ("trap '' TERM; ", True)):  # the second ignores SIGTERM: 10 s to stop
            env = dict(sandbox.env, WEB_NAME=f"web{n}", TRAP=trap)
            up = subprocess.Popen([*command, "compose", "up"], env=env, cwd=project, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
            while not up.stdout.readline().endswith("ready\n"):
                assert up.poll() is None, up.stderr.read()
            up.send_signal(2)
            if forced:
                time.sleep(0.5)  # stopping: its SIGTERM is ignored, the agent waits out the grace period
                assert up.poll() is None
                up.send_signal(2)
            started = time.monotonic()
            out, err = up.communicate(timeout=60)
            assert up.returncode == 130, (out, err)
            assert "Gracefully stopping... (press Ctrl+C again to force)" in err.splitlines(), err
            if forced:
                assert time.monotonic() - started < 5 and err.splitlines()[-1] == "netcore: interrupted", err
            else:
                assert out.endswith(f"Container web{n}  Stopped\n"), out  # stopped when the client returns
                state = subprocess.run([*command, "ps", "-a", "--format", "{{.Status}}", "--filter",
                                        f"name=web{n}"], env=env, capture_output=True, text=True, timeout=60)
                assert state.stdout.startswith("Exited"), state
            assert subprocess.run([*command, "compose", "down", "-t", "0"], env=env, cwd=project,
                                  capture_output=True, timeout=60).returncode == 0
