"""netcore.system.processes, without root: the one home of "is this pid alive" (a zombie is not; a reused pid is
not the process it was), of a process's network namespace, and of the pid files of netcore's and dnsd's
processes (issue 25, item 5)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from netcore.system import processes
from netcore.system.processes import (
    alive,
    namespace_identity,
    remove_pid_file,
    runs_in_namespace,
    start_ticks,
    stat_fields,
    write_pid_file,
)


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def _zombie() -> subprocess.Popen:
    """A child that has ended and is not reaped yet."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while (stat_fields(child.pid) or ["?"])[0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    return child


def test_a_running_process_is_alive_and_stays_so_only_under_its_start_time():
    child = _sleeper()
    try:
        ticks = start_ticks(child.pid)
        assert ticks is not None
        assert alive(child.pid) and alive(child.pid, ticks)
        assert not alive(child.pid, ticks + 1)  # the pid, reused by another program
    finally:
        child.kill()
        child.wait()
    assert not alive(child.pid) and start_ticks(child.pid) is None


def test_a_zombie_is_not_alive_whoever_asks():
    """The agent's supervisor, dnsd's control and the port holder each had a copy; dnsd's control raised on
    another user's process and took a dead (X) one for alive."""
    child = _zombie()
    try:
        assert stat_fields(child.pid)[0] == "Z"
        assert not alive(child.pid)
        assert not alive(child.pid, start_ticks(child.pid))
    finally:
        child.wait()


def test_another_users_process_is_alive():
    """pid 1 is root's: os.kill(1, 0) is refused to anyone else (EPERM), and it still runs."""
    assert alive(1)


def test_a_command_name_with_parentheses_and_spaces_is_skipped_whole(monkeypatch, tmp_path):
    real_open = open

    def fake_open(path, *args, **kwargs):
        if path == "/proc/4242/stat":
            path = tmp_path / "stat"
            path.write_text("4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 " + " ".join(["0"] * 12) + " 777 0\n")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    assert stat_fields(4242)[0] == "S"
    assert start_ticks(4242) == 777 and alive(4242, 777)


def test_namespace_identity_and_whether_a_process_runs_in_one(tmp_path):
    own = namespace_identity("/proc/self/ns/net")
    assert own is not None and own == namespace_identity(f"/proc/{os.getpid()}/ns/net")
    assert namespace_identity(str(tmp_path / "missing")) is None
    assert namespace_identity("bad\0path") is None
    assert runs_in_namespace(os.getpid(), "/proc/self/ns/net") is True
    assert runs_in_namespace(os.getpid(), str(tmp_path / "missing")) is None
    other = tmp_path / "other"
    other.write_text("")  # a file that is no namespace: another identity
    assert runs_in_namespace(os.getpid(), str(other)) is False


def test_a_pid_file_is_written_whole_and_removed_only_by_its_process(tmp_path):
    path = str(tmp_path / "dnsd.pid")
    write_pid_file(path)
    assert Path(path).read_text() == f"{os.getpid()}\n"
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    write_pid_file(path, newline=False)  # aardvark-dns's: netavark parses the whole file
    assert Path(path).read_text() == str(os.getpid())
    assert os.listdir(tmp_path) == ["dnsd.pid"]  # no temporary left
    remove_pid_file(path)
    assert not os.path.exists(path)
    remove_pid_file(path)  # gone: nothing to do

    with open(path, "w") as newer:
        newer.write("1\n")  # a newer process wrote its own
    remove_pid_file(path)
    assert Path(path).read_text() == "1\n"


def test_processes_is_the_only_home_of_the_liveness_rule():
    """No module of netcore or dnsd reads a process's state from /proc/PID/stat but this one."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    readers = []
    for package in ("netcore", "dnsd"):
        for directory, _, names in os.walk(os.path.join(root, package)):
            for name in names:
                path = os.path.join(directory, name)
                if name.endswith(".py") and path != processes.__file__:
                    with open(path) as source:
                        if '/stat"' in source.read():
                            readers.append(os.path.relpath(path, root))
    assert readers == []
