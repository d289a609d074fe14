"""dnsd.supervise: restart what died, stop with what stopped, give up on what cannot start (issue 11, item 6).

The child here is a stand-in script that plays dnsd's part as the supervisor sees it: it "comes up" by
writing its pid to the pid file, then exits or is killed as each test scripts it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dnsd import supervise
from netcore.dnsd_protocol import EXIT_ALREADY_SUPERVISED, PID_NAME, SUPERVISOR_PID_NAME

REPO = Path(__file__).resolve().parents[3]
SAFETY = 10.0  # seconds: only so that a broken supervisor fails the test instead of hanging it

# argv: STATE_DIR then one action per run: up-kill (come up, then SIGKILL itself), up-exit0, fail, up-wait
CHILD = r"""
import os, signal, sys, time
state_dir, script = sys.argv[1], sys.argv[2:]
runs = os.path.join(state_dir, "runs")
with open(runs, "a") as f:
    f.write(f"{os.getpid()}\n")
n = len(open(runs).read().split())
action = script[min(n, len(script)) - 1]
if action.startswith("up"):
    with open(os.path.join(state_dir, "dnsd.pid"), "w") as f:
        f.write(f"{os.getpid()}\n")
if action == "up-kill":
    time.sleep(0.1)
    os.kill(os.getpid(), signal.SIGKILL)
if action == "up-wait":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(1)
sys.exit(0 if action == "up-exit0" else 3)
"""


def supervisor_for(tmp_path: Path, *script: str) -> supervise.Supervisor:
    sup = supervise.Supervisor([], str(tmp_path))
    sup.argv = [sys.executable, "-c", CHILD, str(tmp_path), *script]
    return sup


def runs(tmp_path: Path) -> list[int]:
    return [int(pid) for pid in (tmp_path / "runs").read_text().split()]


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    monkeypatch.setattr(supervise, "RESTART_DELAY", 0.01)


def test_a_child_killed_after_coming_up_is_restarted_and_a_deliberate_stop_ends_it(tmp_path):
    assert supervisor_for(tmp_path, "up-kill", "up-kill", "up-exit0").run() == 0
    assert len(runs(tmp_path)) == 3


def test_restarts_that_never_come_up_are_bounded(tmp_path):
    assert supervisor_for(tmp_path, "up-kill", "fail").run() == 1
    assert len(runs(tmp_path)) == 1 + supervise.MAX_FAILURES


def test_a_restart_that_comes_up_resets_the_count(tmp_path):
    script = ["up-kill"] + ["fail"] * (supervise.MAX_FAILURES - 1) + ["up-kill"] + ["fail"] * supervise.MAX_FAILURES
    assert supervisor_for(tmp_path, *script).run() == 1
    assert len(runs(tmp_path)) == len(script)


def test_a_first_child_that_never_comes_up_is_not_retried(tmp_path):
    assert supervisor_for(tmp_path, "fail").run() == 3
    assert len(runs(tmp_path)) == 1


def test_delays_double_from_the_restart_delay():
    assert [supervise.restart_delay(n) for n in range(3)] == [supervise.RESTART_DELAY * f for f in (1, 2, 4)]
    assert supervise.describe_exit(-9) == "killed by SIGKILL" and supervise.describe_exit(1) == "exit status 1"


def test_state_dir_is_read_like_dnsd_reads_it(monkeypatch):
    monkeypatch.setenv("NETCORE_STATE_DIR", "/env")
    assert supervise.state_dir_of(["--netns", "x", "--state-dir", "/a"]) == "/a"
    assert supervise.state_dir_of(["--state-dir=/b"]) == "/b"
    assert supervise.state_dir_of(["--netns", "x"]) == "/env"
    monkeypatch.delenv("NETCORE_STATE_DIR")
    assert supervise.state_dir_of([]) is None


def _wait(predicate) -> None:
    deadline = time.monotonic() + SAFETY
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def supervised(tmp_path):
    """A real supervisor process, its child the stand-in kept waiting ("up-wait")."""
    code = ("import sys; from dnsd import supervise; sup = supervise.Supervisor([], sys.argv[1]); "
            f"sup.argv = [sys.executable, '-c', {CHILD!r}, sys.argv[1], 'up-wait']; "
            "import signal; [signal.signal(s, sup.request_stop) for s in (signal.SIGTERM, signal.SIGINT)]; "
            "sys.exit(sup.run())")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        _wait(lambda: (tmp_path / PID_NAME).exists() and (tmp_path / PID_NAME).read_text().strip())
        yield proc, int((tmp_path / PID_NAME).read_text())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_sigterm_is_forwarded_and_both_end(supervised):
    proc, child = supervised
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(SAFETY) == 0
    _wait(lambda: _gone(child))


def test_the_child_dies_with_a_killed_supervisor(supervised):
    proc, child = supervised
    proc.kill()
    proc.wait()
    _wait(lambda: _gone(child))


def test_one_supervisor_per_state_dir(tmp_path):
    held = supervise._hold_pid_file(str(tmp_path / SUPERVISOR_PID_NAME))
    try:
        assert (tmp_path / SUPERVISOR_PID_NAME).read_text() == f"{os.getpid()}\n"
        argv = [sys.executable, "-m", "dnsd.supervise", "--state-dir", str(tmp_path)]
        second = subprocess.run(argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                capture_output=True, text=True, timeout=SAFETY)
        assert second.returncode == EXIT_ALREADY_SUPERVISED and "another supervisor" in second.stderr
    finally:
        os.close(held)


def test_a_missing_state_dir_is_one_line_and_exit_1(tmp_path):
    argv = [sys.executable, "-m", "dnsd.supervise", "--state-dir", str(tmp_path / "nowhere")]
    proc = subprocess.run(argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=SAFETY)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "does not exist" in proc.stderr
