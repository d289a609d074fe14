"""The aardvark-dns run mode as netavark drives it, on loopback without root: the helper, fork, ready, SIGHUP, exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import dnslib
import pytest

from tests.support.aardvark import Server, wait_gone

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ID1, ID2 = "a" * 64, "b" * 64


def test_run_forks_writes_the_pid_file_and_returns_once_serving(helper, tmp_path, port):
    (tmp_path / "net").write_text(f"127.0.0.1\n{ID1} 127.0.0.2  web,www\n")
    server = Server(helper, tmp_path, port)
    try:
        assert server.started.returncode == 0 and server.started.stderr == "", server.started.stderr
        pid = server.pid
        assert pid is not None and os.getsid(pid) == pid  # detached: a session of its own
        assert [str(rr.rdata) for rr in server.ask("web").rr] == ["127.0.0.2"]  # no wait: ready means serving
        assert [str(rr.rdata) for rr in server.ask("www.dns.podman", tcp=True).rr] == ["127.0.0.2"]
        with open(f"/proc/{pid}/fd/2", "rb"):
            assert os.readlink(f"/proc/{pid}/fd/2") == "/dev/null"  # netavark 2.x reads stderr to its end
    finally:
        server.stop()
    assert not (tmp_path / "aardvark.pid").exists()


def test_sighup_swaps_the_records_and_the_last_network_gone_ends_it(helper, tmp_path, port):
    (tmp_path / "net").write_text(f"127.0.0.1\n{ID1} 127.0.0.2  web\n")
    server = Server(helper, tmp_path, port)
    pid = server.pid
    try:
        (tmp_path / "net").write_text(f"127.0.0.1\n{ID2} 127.0.0.3  db\n")
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + 2
        while server.ask("db").rr == [] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [str(rr.rdata) for rr in server.ask("db").rr] == ["127.0.0.3"]
        assert server.ask("web").header.rcode == dnslib.RCODE.NXDOMAIN
        (tmp_path / "net").unlink()
        os.kill(pid, signal.SIGHUP)
        assert wait_gone(pid), "still running with no network left"
        assert not (tmp_path / "aardvark.pid").exists()
    finally:
        server.stop()


def test_a_port_that_cannot_be_bound_fails_the_start_with_one_line(helper, tmp_path, port):
    (tmp_path / "net").write_text(f"127.0.0.1\n{ID1} 127.0.0.2  web\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", port))
        server = Server(helper, tmp_path, port)
    assert server.started.returncode == 1
    assert server.started.stderr.count("\n") == 1 and "cannot listen on 127.0.0.1" in server.started.stderr
    assert not (tmp_path / "aardvark.pid").exists()


@pytest.mark.parametrize(("argv", "status", "message"), [
    (["run"], 2, "run needs --config DIR"),
    (["--config", "/nonexistent-dir", "run"], 1, "config directory /nonexistent-dir must exist"),
    (["-p", "0", "--config", "/tmp", "run"], 2, "invalid port (1 to 65535) value"),
    ([], 2, "a command is required"),
])
def test_usage_errors_are_one_line(helper, argv, status, message):
    result = subprocess.run([helper, *argv], capture_output=True, text=True, timeout=30)
    assert result.returncode == status and message in result.stderr and result.stderr.count("\n") == 1


def test_version(helper):
    result = subprocess.run([helper, "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.startswith("aardvark-dns 1.4.0 (dnsd ")


# -- issue 23, item 9: the helper is written where the user says, or under a state dir; never into the package ---


def test_the_helper_goes_where_it_is_told_and_never_into_the_installed_package(tmp_path):
    package_helper = os.path.join(REPO, "dnsd", "podman_helper")
    before = os.path.exists(package_helper) and sorted(os.listdir(package_helper))
    named = tmp_path / "helpers"
    out = subprocess.run([sys.executable, "-m", "dnsd", "podman-helper-dir", str(named)], capture_output=True,
                         text=True, cwd=REPO)
    assert (out.returncode, out.stdout, out.stderr) == (0, f"{named}\n", "")
    assert sorted(os.listdir(named)) == ["aardvark-dns"]
    assert oct(os.stat(named / "aardvark-dns").st_mode & 0o777) == "0o755"
    assert (os.path.exists(package_helper) and sorted(os.listdir(package_helper))) == before
    again = subprocess.run([sys.executable, "-m", "dnsd", "podman-helper-dir", str(named)], capture_output=True,
                           text=True, cwd=REPO)
    assert again.returncode == 0 and sorted(os.listdir(named)) == ["aardvark-dns"]


def test_the_default_helper_dir_is_a_state_dir_not_the_package():
    from dnsd.aardvark import ROOT_HELPER_DIR, default_helper_dir

    assert default_helper_dir(0, {}) == ROOT_HELPER_DIR == "/var/lib/dnsd/podman-helper"
    assert default_helper_dir(1000, {"HOME": "/home/u"}) == "/home/u/.local/state/dnsd/podman-helper"
    assert default_helper_dir(1000, {"HOME": "/home/u", "XDG_STATE_HOME": "/x"}) == "/x/dnsd/podman-helper"


def test_a_helper_dir_others_can_write_is_refused_in_one_line(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    out = subprocess.run([sys.executable, "-m", "dnsd", "podman-helper-dir", str(shared)], capture_output=True,
                         text=True, cwd=REPO)
    assert out.returncode == 1 and out.stdout == "" and os.listdir(shared) == []
    assert out.stderr.startswith("dnsd: cannot prepare the podman helper: ") and out.stderr.count("\n") == 1
    assert "writable by others" in out.stderr
    usage = subprocess.run([sys.executable, "-m", "dnsd", "podman-helper-dir", "a", "b"], capture_output=True,
                           text=True, cwd=REPO)
    assert (usage.returncode, usage.stderr) == (2, "dnsd: usage: dnsd podman-helper-dir [DIR]\n")
