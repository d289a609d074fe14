"""netcored's ProcessSupervisor, for real and without root: processes started in this namespace (None), their
output in the container's log, their exit statuses from the Popen it keeps, SIGTERM then SIGKILL, a bounded
log, and a process it did not start (an earlier agent's) found by pid and start time."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from netcore.agent import processes as module
from netcore.agent.processes import ProcessSupervisor
from netcore.engine.context import StopTarget
from netcore.errors import NetcoreError
from netcore.model import EXIT_UNKNOWN
from netcore.system.processes import start_ticks

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def wait(predicate, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def supervisor(tmp_path):
    sup = ProcessSupervisor(str(tmp_path))
    yield sup
    sup.close()


def test_output_goes_to_the_log_and_the_exit_status_is_kept_for_poll(supervisor):
    pid, ticks = supervisor.start("c1", None, ("sh", "-c", "echo out; echo err >&2; exit 3"), ENV)
    assert ticks == start_ticks(pid) or ticks == 0
    assert wait(lambda: not supervisor.alive(pid, ticks))
    assert supervisor.poll("c1", pid, ticks) == 3
    with open(supervisor.log_path("c1")) as f:
        assert f.read() == "out\nerr\n"


def test_a_missing_program_is_127_with_its_reason_in_the_log(supervisor):
    with pytest.raises(NetcoreError) as failed:
        supervisor.start("c2", None, ("/no/such/program",), ENV)
    assert failed.value.exit_code == 127
    with open(supervisor.log_path("c2")) as f:
        assert "executable file not found" in f.read()


def test_stop_sends_sigterm_then_sigkill_to_the_session(supervisor):
    pid, ticks = supervisor.start("c3", None, ("sh", "-c", "trap '' TERM; sleep 300 & wait"), ENV)
    assert wait(lambda: len(supervisor.running(StopTarget(pid, ticks))) == 2)  # sh and its sleep, one session
    started = time.monotonic()
    supervisor.stop([StopTarget(pid, ticks)], grace=0.5)
    assert time.monotonic() - started >= 0.5 and supervisor.running(StopTarget(pid, ticks)) == []
    assert supervisor.poll("c3", pid, ticks) == 137  # SIGTERM ignored: SIGKILL after the grace period
    quick, quick_ticks = supervisor.start("c4", None, ("sleep", "300"), ENV)
    supervisor.stop([StopTarget(quick, quick_ticks)], grace=10)
    assert supervisor.poll("c4", quick, quick_ticks) == 143


def test_a_process_it_did_not_start_is_found_by_pid_and_start_time(supervisor):
    other = subprocess.Popen(["sleep", "300"])
    try:
        ticks = start_ticks(other.pid)
        assert supervisor.poll("c5", other.pid, ticks) is None
        assert supervisor.poll("c5", other.pid, ticks + 1) == EXIT_UNKNOWN  # a reused pid is another process
        other.kill()
        other.wait()
        assert supervisor.poll("c5", other.pid, ticks) == EXIT_UNKNOWN
    finally:
        other.kill()
        other.wait()


def test_the_log_is_kept_bounded(supervisor, monkeypatch):
    monkeypatch.setattr(module, "LOG_MAX_BYTES", 4096)
    monkeypatch.setattr(module, "ROTATE_EVERY", 0.05)
    script = "import sys, time\nfor i in range(400):\n    print('x' * 99, flush=True)\n    time.sleep(0.002)\n"
    pid, ticks = supervisor.start("c6", None, (sys.executable, "-c", script), ENV)
    assert wait(lambda: not supervisor.alive(pid, ticks), 30)
    time.sleep(0.2)  # one more look of the rotating thread
    path = supervisor.log_path("c6")
    assert os.path.exists(f"{path}.1") and os.path.getsize(path) + os.path.getsize(f"{path}.1") < 40_000
    supervisor.forget("c6")
    assert not os.path.exists(path) and not os.path.exists(f"{path}.1")
